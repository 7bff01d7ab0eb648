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
* ``upsample_linear1d_backward``, ``upsample_bilinear2d_backward``,
  ``upsample_trilinear3d_backward``: :func:`upsample_linear_backward_exact`;
  ``upsample_bicubic2d_backward``: :func:`upsample_bicubic_backward_exact`.  The CPU kernels
  (``cpu_upsample_linear_backward`` and its channels-last twin in
  ``aten/src/ATen/native/cpu/UpSampleKernel.cpp``, ``upsample_bicubic2d_backward_out_frame`` in
  ``aten/src/ATen/native/UpSampleBicubic2d.cpp``, the index and weight helpers of
  ``aten/src/ATen/native/UpSample.h``) are counted as the forward decompositions of these modes
  are (``formulas/resampling.toml``): the source index and the weights of each output position
  along each resized axis once (the kernels recompute them for every plane, and the width's for
  every row: values of the index, not of the data, counted once as the forward's index tensors
  are), the index arithmetic included (``std::min`` / ``std::max``: one operation each, as
  ``minimum`` / ``maximum``; a ternary ``c ? a : b``: a comparison and a select); constants and
  per-call scalars (the scale ``in / out``, ``size - 1``, products of the constant ``A``) are 0,
  as the forward's Python scalars; then, per output element and tap, the products the kernel
  forms and an add into ``grad_input``.  The float accumulation buffer of bfloat16 / half
  gradients, copied back into ``grad_input``, is a conversion (data movement).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ..optable import CUSTOM, OP_TABLE, register_op

__all__ = ["upsample_bicubic_backward_exact", "upsample_linear_backward_exact"]


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


# the backward kernels of the interpolating modes
# per output position along an axis, compute_source_index_and_lambda (UpSample.h): the source
# index scale*(i + 0.5) - 0.5 (add, mul, sub) and, not align_corners, its bound to 0
# (src < 0 ? 0 : src: comparison, select): 5; align_corners: scale*i, 1.  Then
# guard_index_and_lambda: i0 = min(floor(src), size - 1) (floor, min) and
# lambda1 = min(max(src - i0, 0), 1) (sub, max, min): 5; i1 = i0 + (i0 < size - 1 ? 1 : 0)
# (comparison, select, add): 3; lambda0 = 1 - lambda1: 1.
_LINEAR_INDEX = {False: 5 + 5 + 3 + 1, True: 1 + 5 + 3 + 1}  # 14, 10
# per output position along an axis, upsample_bicubic2d_backward_out_frame: the source index
# (cubic: no bound to 0) 3, align_corners 1; guard_index_and_lambda 5; the four cubic-convolution
# weights of get_cubic_upsample_coefficients (t + 1, 1 - t, (1 - t) + 1: 3; two
# cubic_convolution1, 5 each, two cubic_convolution2, 6 each: the forward's 3 + 2*11); and, for
# each of the 16 taps of the 4x4 window, this axis's index i - 1 + k (2 adds) and its bound
# max(min(., size - 1), 0) in upsample_increment_value_bounded (2): 64.
_CUBIC_INDEX = {False: 3 + 5 + 25 + 64, True: 1 + 5 + 25 + 64}  # 97, 95


def upsample_linear_backward_exact(
    out_sizes: Sequence[int],
    in_sizes: Sequence[int],
    batch: int,
    channels: int,
    align_corners: bool,
    channels_last: bool = False,
) -> int:
    """``exact`` count of ``upsample_{linear1d,bilinear2d,trilinear3d}_backward`` on the CPU:
    ``d`` resized axes of sizes ``in_sizes`` -> ``out_sizes``, ``batch * channels`` planes.

    * Per output position along each axis, ``compute_source_index_and_lambda``: 14 (10 with
      ``align_corners``; see ``_LINEAR_INDEX``), and 0 on an axis whose output size equals its
      input size (the kernel then takes ``i0 = i1 = i``, ``lambda0 = 1``, ``lambda1 = 0``).
    * Per output element and each of its ``2**d`` taps, ``cpu_upsample_linear_backward`` does
      ``grad_input[tap] += l_a * l_b * ... * grad_output``: ``d`` multiplies (the tap's ``d``
      weights and the gradient) and an add, ``2**d * (d + 1)`` per element (4, 12, 32), the taps
      of an axis that is not resized (weight 0) too.
    * Channels-last ``grad_output`` (4-d / 5-d and ``is_contiguous`` in that format, which a
      contiguous gradient also is where ``C == 1`` or one output pixel): the twin kernel forms
      each tap's weight product once per output pixel (``d - 1`` multiplies) and then, per
      channel, ``grad_input += weight * grad_output`` (a multiply and an add).

    >>> upsample_linear_backward_exact((3,), (2,), 1, 1, False)  # 3*14 + 3*2*(1 + 1)
    54
    >>> upsample_linear_backward_exact((2, 3), (2, 2), 2, 1, True)  # 3*10 + 12*2*6
    174
    """
    d = len(out_sizes)
    taps = 2**d
    pixels = math.prod(out_sizes)
    elements = batch * channels * pixels
    index = sum(
        0 if o == i else o * _LINEAR_INDEX[bool(align_corners)]
        for o, i in zip(out_sizes, in_sizes, strict=True)
    )
    if channels_last:
        return index + taps * (d - 1) * batch * pixels + 2 * taps * elements
    return index + taps * (d + 1) * elements


def upsample_bicubic_backward_exact(
    out_sizes: Sequence[int],
    in_sizes: Sequence[int],
    batch: int,
    channels: int,
    align_corners: bool,
) -> int:
    """``exact`` count of ``upsample_bicubic2d_backward`` on the CPU (``out_sizes``,
    ``in_sizes``: ``(H, W)``).  Where both output sides equal the input's, the kernel copies
    ``grad_output`` into ``grad_input``: 0.  Otherwise per output position along each axis 97
    (95 with ``align_corners``; see ``_CUBIC_INDEX``), and per output element, for each of the
    16 taps, ``grad_input[tap] += grad_output * y_coeff * x_coeff``: 2 multiplies and an add,
    48 (``upsample_bicubic2d_backward_out_frame`` makes ``grad_output`` contiguous: one kernel).

    >>> upsample_bicubic_backward_exact((3, 1), (2, 1), 1, 2, False)  # 97*(3 + 1) + 48*2*3
    676
    """
    if tuple(out_sizes) == tuple(in_sizes):
        return 0
    per_position = _CUBIC_INDEX[bool(align_corners)]
    return per_position * sum(out_sizes) + 48 * batch * channels * math.prod(out_sizes)


_UPSAMPLE_BACKWARD_ARGS = ("grad_output", "output_size", "input_size", "align_corners")


def _upsample_backward(bicubic: bool):
    def count(args: tuple, kwargs: dict, out: Any) -> int:
        a = dict(zip(_UPSAMPLE_BACKWARD_ARGS, args, strict=False)) | kwargs
        grad_output = a["grad_output"]
        in_shape = [int(s) for s in a["input_size"]]
        d = grad_output.dim() - 2
        out_sizes = tuple(int(s) for s in grad_output.shape[2:])
        in_sizes, (batch, channels) = tuple(in_shape[2:]), in_shape[:2]
        align = bool(a["align_corners"])
        if bicubic:
            return upsample_bicubic_backward_exact(out_sizes, in_sizes, batch, channels, align)
        # the kernel's own dispatch: upsample_{bilinear2d,trilinear3d}_backward_kernel_impl
        fmt = {2: torch.channels_last, 3: torch.channels_last_3d}.get(d)
        last = fmt is not None and grad_output.is_contiguous(memory_format=fmt)
        return upsample_linear_backward_exact(out_sizes, in_sizes, batch, channels, align, last)

    return count


register_op(
    "upsample_linear1d_backward", "upsample_bilinear2d_backward", "upsample_trilinear3d_backward"
)(_upsample_backward(bicubic=False))
register_op("upsample_bicubic2d_backward")(_upsample_backward(bicubic=True))
