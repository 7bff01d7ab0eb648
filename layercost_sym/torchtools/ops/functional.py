"""Counting rules for operators models call between modules (the functional rules of
``formulas/functional.toml``) that the table of :mod:`..opcount` does not list.

* ``bitwise_and``, ``bitwise_xor``, ``bitwise_not``: one logical operation per output element,
  as ``logical_and`` is.  transformers combines attention-mask conditions with ``&`` of bool
  tensors (``masking_utils.and_masks``: padding mask and causal mask), which torch's
  decomposition turns into ``prims.bitwise_and``.  ``bitwise_or`` is registered by the
  activation / resampling families (clamp's decomposition uses it).
* ``scatter``: ``self.scatter(dim, index, src)`` copies ``src`` into ``self`` at the indices
  (data movement: the backward of ``max(x, dim)`` scatters the gradient into zeros); with
  ``reduce`` (``"add"``, ``"multiply"``) one operation per index element.
"""

from __future__ import annotations

from ..optable import CUSTOM, OP_TABLE, register_op


def _register_shared(name: str, kind: str) -> None:
    if name not in OP_TABLE and name not in CUSTOM:  # another family may have registered it
        register_op(name, kind=kind)


for _name in ("bitwise_and", "bitwise_xor", "bitwise_not"):
    _register_shared(_name, "elementwise")


@register_op("scatter")
def _scatter(args: tuple, kwargs: dict, out: object) -> int:
    reduce = args[4] if len(args) > 4 else kwargs.get("reduce")
    return 0 if reduce is None else int(args[2].numel())
