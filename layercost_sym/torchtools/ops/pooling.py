"""Counting rules for the pooling family (MaxPool, AvgPool, LPPool, adaptive, fractional, unpool).

Every pooling kernel is counted per output window, from the op's arguments and shapes; the
registered function replaces torch's decomposition where one exists (see each function for why).

* ``max_pool2d_with_indices`` / ``max_pool3d_with_indices`` (MaxPool1d/2d/3d; 1-d runs the 2-d op
  on a unit axis): a max over the *whole* ``prod(kernel)`` window of the input padded with
  ``-inf``: ``prod(kernel) - 1`` comparisons per output.  That is torch's definition of the padding
  ("implicit negative infinity padding") and exactly the ``max`` its decomposition runs.  The
  decomposition also computes the flat ``indices`` output with a dozen integer ops per output
  (``floor_divide``, ``remainder``, ``mul``, ``add``): bookkeeping of where the max came from, not
  arithmetic of the layer, counted 0 here.  (The CPU kernel skips padded positions, which never
  win; counting only in-range elements under dilation is a lattice-point sum with no closed form.)
* ``avg_pool2d`` / ``avg_pool3d`` (AvgPool1d/2d/3d, LPPool; no decomposition): the kernel clips
  each window to the input, sums the ``m`` in-range elements and divides once: ``m - 1`` adds and
  1 divide, ``m`` per output, whatever ``count_include_pad`` or ``divisor_override`` choose as the
  divisor (choosing it is integer index arithmetic).
* ``_adaptive_avg_pool2d`` / ``_adaptive_avg_pool3d``: window ``i`` of an axis of size ``n`` with
  ``o`` outputs is ``[floor(i*n/o), ceil((i+1)*n/o))``; per output ``m - 1`` adds and 1 divide by
  the window size (as torch's ``mean`` path for a 1x1 output counts it).  The decomposition pads
  uneven windows to the longest one and masks; the real windows are counted here.
* ``adaptive_max_pool2d`` / ``adaptive_max_pool3d``: the same windows, ``m - 1`` comparisons.
* ``fractional_max_pool2d`` / ``fractional_max_pool3d``: every window is a full ``kernel`` block
  inside the input (only its start is pseudo-random): ``prod(kernel) - 1`` comparisons per output.
* ``max_unpool2d`` / ``max_unpool3d``: zero-fill and scatter, data movement.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ..optable import register_op

__all__: list[str] = []


def _arg(args: tuple, kwargs: dict, index: int, name: str, default: Any) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _per_axis(value: Any, n: int, default: Sequence[int] | None = None) -> tuple[int, ...]:
    """An int or a 1- or n-element list as n ints (torch's expand_param_if_needed); an empty
    list means ``default`` (stride defaults to the kernel)."""
    if isinstance(value, int):
        return (value,) * n
    value = list(value)
    if not value:
        assert default is not None
        return tuple(default)
    return tuple(int(v) for v in value) * (n if len(value) == 1 else 1)


def _values(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, tuple | list) else out


def _lead(out: torch.Tensor, n: int) -> int:
    """Outputs per window position: batch x channels (the tensor's leading dimensions)."""
    return math.prod(out.shape[:-n])


def _clipped_window_sum(size: int, outputs: int, kernel: int, stride: int, pad: int) -> int:
    """Sum over the windows of one axis of the in-range elements each covers."""
    total = 0
    for i in range(outputs):
        start = i * stride - pad
        total += max(0, min(start + kernel, size) - max(start, 0))
    return total


def _adaptive_window_sum(size: int, outputs: int) -> int:
    """Sum over the adaptive windows of one axis of their lengths."""
    return sum(-(-(i + 1) * size // outputs) - i * size // outputs for i in range(outputs))


def _full_window_max(n: int):
    def count(args: tuple, kwargs: dict, out: Any) -> int:
        kernel = _per_axis(_arg(args, kwargs, 1, "kernel_size", None), n)
        return _values(out).numel() * (math.prod(kernel) - 1)

    return count


register_op("max_pool2d_with_indices")(_full_window_max(2))
register_op("max_pool3d_with_indices")(_full_window_max(3))
register_op("fractional_max_pool2d")(_full_window_max(2))
register_op("fractional_max_pool3d")(_full_window_max(3))


def _avg_pool(n: int):
    def count(args: tuple, kwargs: dict, out: Any) -> int:
        x, out = args[0], _values(out)
        kernel = _per_axis(_arg(args, kwargs, 1, "kernel_size", None), n)
        stride = _per_axis(_arg(args, kwargs, 2, "stride", []), n, kernel)
        pad = _per_axis(_arg(args, kwargs, 3, "padding", 0), n)
        sums = [
            _clipped_window_sum(x.shape[-n + a], out.shape[-n + a], kernel[a], stride[a], pad[a])
            for a in range(n)
        ]
        return _lead(out, n) * math.prod(sums)  # m - 1 adds + 1 divide per window

    return count


register_op("avg_pool2d")(_avg_pool(2))
register_op("avg_pool3d")(_avg_pool(3))


def _adaptive(n: int, is_max: bool):
    def count(args: tuple, kwargs: dict, out: Any) -> int:
        x, out = args[0], _values(out)
        outputs = out.shape[-n:]
        sums = [_adaptive_window_sum(x.shape[-n + a], outputs[a]) for a in range(n)]
        per_position = math.prod(sums)
        if is_max:  # m - 1 comparisons per window
            per_position -= math.prod(outputs)
        return _lead(out, n) * per_position  # avg: m - 1 adds + 1 divide per window

    return count


register_op("_adaptive_avg_pool2d")(_adaptive(2, is_max=False))
register_op("_adaptive_avg_pool3d")(_adaptive(3, is_max=False))
register_op("adaptive_max_pool2d")(_adaptive(2, is_max=True))
register_op("adaptive_max_pool3d")(_adaptive(3, is_max=True))

register_op("max_unpool2d", "max_unpool3d", kind="movement")
