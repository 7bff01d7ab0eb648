"""Counting rules for the resampling and shape family (Upsample, Fold/Unfold, padding).

* ``bitwise_or``: torch's decomposition of ``clamp`` (used for the source indices and weights of
  linear / cubic interpolation) is ``where(isnan(x) | (x >= lo), x, lo)``; the ``|`` of two bool
  tensors is one logical operation per element, as ``logical_or`` is.  Shared with the
  activation family (Hardtanh's clamp): registered by whichever family module is imported first.
* ``pad``: ``aten.pad`` (reached from the im2col / col2im decompositions of Unfold / Fold) only
  copies the input into a larger zero-filled tensor, or crops it: data movement.
* ``_unsafe_index_put``: col2im (Fold) sums the overlapping blocks with
  ``zeros._unsafe_index_put(indices, blocks, accumulate=True)``, i.e. ``out[idx] += value`` for
  every value: one add per indexed value (the destination's own values are not known to be
  zero, so the first value into a position is an add too).  Without accumulate it is a scatter:
  data movement.  (Its decomposition reaches ``index_put``, which the table counts as movement
  whatever ``accumulate`` is.)
"""

from __future__ import annotations

import torch

from ..optable import CUSTOM, OP_TABLE, register_op


def _register_shared(name: str, kind: str) -> None:
    if name not in OP_TABLE and name not in CUSTOM:  # another family may have registered it
        register_op(name, kind=kind)


_register_shared("bitwise_or", "elementwise")
register_op("pad", kind="movement")


@register_op("_unsafe_index_put")
def _index_put_accumulate(args: tuple, kwargs: dict, out) -> int:
    accumulate = args[3] if len(args) > 3 else kwargs.get("accumulate", False)
    if not accumulate:
        return 0
    self, indices, values = args[0], args[1], args[2]
    # the number of (position, value) pairs: the shape of self[indices], worked out on "meta"
    meta = [None if i is None else i.to("meta") for i in indices]
    indexed = torch.ops.aten.index.Tensor(self.to("meta"), meta).shape
    return torch.broadcast_shapes(indexed, values.shape).numel()
