"""Counting the convolution family's operators that the ``conv`` kind does not cover.

``aten.convolution`` is counted by the ``conv`` kind of
:data:`~layercost_sym.torchtools.opcount.OP_TABLE`; this module registers no operator (a second
registration of ``convolution`` would collide).  It provides :func:`transposed_conv_exact`, the
arithmetic of a *transposed* ``aten.convolution`` call, for ``_conv_cost`` to call when the
call's ``transposed`` flag is set.

>>> transposed_conv_exact((1, 1, 3), (1, 1, 2), False, (1,), (0,), (1,), (0,), 1, (1, 1, 4))
8
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["transposed_axis_counts", "transposed_conv_exact"]


def transposed_axis_counts(
    size: int, kernel: int, stride: int, padding: int, dilation: int, out_size: int
) -> tuple[int, int]:
    """Along one spatial axis of a transposed convolution: ``(kept, reached)``.

    Input position ``i`` (``0 <= i < size``) and kernel tap ``j`` (``0 <= j < kernel``) scatter
    to output position ``t = i*stride - padding + j*dilation``; the output keeps
    ``0 <= t < out_size`` (padding crops both ends, output_padding extends the far end).
    ``kept`` is the number of pairs ``(i, j)`` whose ``t`` is kept, ``reached`` the number of
    output positions that at least one pair reaches.

    >>> transposed_axis_counts(3, 2, 1, 0, 1, 4)   # t = i + j: 6 pairs onto 4 positions
    (6, 4)
    >>> transposed_axis_counts(1, 1, 3, 1, 1, 1)   # the only pair lands at -1: cropped
    (0, 0)
    """
    kept = 0
    reached = bytearray(max(out_size, 0))
    for j in range(kernel):
        for i in range(size):
            t = i * stride - padding + j * dilation
            if 0 <= t < out_size:
                kept += 1
                reached[t] = 1
    return kept, sum(reached)


def transposed_conv_exact(
    x_shape: Sequence[int],
    weight_shape: Sequence[int],
    bias_present: bool,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    output_padding: Sequence[int],
    groups: int,
    out_shape: Sequence[int],
) -> int:
    """``exact`` count of a transposed convolution, the scatter as it runs from the input.

    Shapes are those of ``aten.convolution(x, weight, bias, stride, padding, dilation,
    transposed=True, output_padding, groups)``: ``x`` is ``(N, C_in, *size)`` (or unbatched
    ``(C_in, *size)``), ``weight`` is ``(C_in, C_out/g, *kernel)``, ``out`` is
    ``(N, C_out, *out_size)``.  ``output_padding`` only enlarges ``out_shape``, which is given.

    Derivation.  Input element ``x[n, ci, i...]`` is multiplied by each weight
    ``w[ci, co', j...]`` of its group (``C_out/g`` output channels times ``prod(kernel)`` taps)
    and the product is added into ``out[n, g(ci)*C_out/g + co', i*s - p + j*d ...]``, where that
    position lies inside the output; a product landing outside (cropped by padding) is never
    formed.  So:

    * multiplies: ``P = N * C_in * (C_out/g) * prod over axes of kept_axis``, the pairs
      ``(i, j)`` factorise over the spatial axes (:func:`transposed_axis_counts`);
    * adds: an output element receiving ``m >= 1`` products accumulates them with ``m - 1``
      adds (one receiving none is 0, or the bias); summed over outputs, ``P - R`` with
      ``R = N * C_out * prod over axes of reached_axis`` the outputs receiving any product
      (every output channel's group has ``C_in/g >= 1`` input channels);
    * bias: one add per output element when a bias is given.

    ``exact = 2*P - R + bias * numel(out)``.  ``stride``, ``padding``, ``dilation`` and
    ``output_padding`` are per-axis sequences; ``groups`` divides ``C_in`` and ``C_out``.
    """
    spatial = len(weight_shape) - 2
    batched = len(x_shape) == spatial + 2
    n = x_shape[0] if batched else 1
    c_in = x_shape[-spatial - 1]
    c_out_per_group = weight_shape[1]
    c_out = c_out_per_group * groups
    sizes = x_shape[-spatial:]
    out_sizes = out_shape[-spatial:]
    kept_product = reached_product = 1
    for axis in range(spatial):
        kept, reached = transposed_axis_counts(
            sizes[axis],
            weight_shape[2 + axis],
            stride[axis],
            padding[axis],
            dilation[axis],
            out_sizes[axis],
        )
        kept_product *= kept
        reached_product *= reached
    products = n * c_in * c_out_per_group * kept_product
    reached_outputs = n * c_out * reached_product
    bias_adds = n * c_out * math.prod(out_sizes) if bias_present else 0
    return 2 * products - reached_outputs + bias_adds
