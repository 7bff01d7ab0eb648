"""Counting rules for the backward kernels autograd runs on CPU (``loss.backward()``) that have
no decomposition in ``torch._decomp`` (or, for ``scatter_add`` and the ``&`` / ``|`` operators,
whose decompositions reach operators with none).

Conventions, shared with the forward rules: every scalar add, multiply, divide, comparison or
select the kernel performs is one operation; a ``k``-term sum is ``k - 1`` adds; a gradient
*accumulated* into a zero-filled buffer (``grad_input[i] += value``) costs one add per value,
the first value into a position included (as ``_unsafe_index_put`` with ``accumulate=True`` is
counted in :mod:`.resampling`: the kernel does not know the destination is zero); integer index
bookkeeping is 0.  Each rule below states what it counts.

* ``convolution_backward(grad_output, input, weight, bias_sizes, stride, padding, dilation,
  transposed, output_padding, groups, output_mask)``: :func:`conv_backward_exact`.
* ``scatter_add`` (a scatter of values into a tensor at given indices): one add per scattered
  value, ``index.numel()``.
* ``max_pool2d_with_indices_backward`` (MaxPool1d and MaxPool2d): the CPU kernel
  (``cpu_max_pool_backward`` in ``aten/src/ATen/native/cpu/MaxPoolKernel.cpp``, and its
  channels-last twin) loops over the outputs and does ``grad_input[index] += grad_output`` at
  each saved index: ``grad_output.numel()`` adds, what torch's decomposition (a ``scatter_add``
  of ``grad_output`` at the indices) also counts.  Counted here rather than through the
  decomposition, which fails with an index error where a window lies wholly in the padding (a
  dilated window whose taps all miss the input: the forward keeps the -inf start and, as its
  index, its first tap moved past the left padding, which may lie outside the input plane; the
  kernel then adds outside ``grad_input``, so ``formulas/pooling.toml`` states MaxPool's
  backward only where no window can lie wholly in the padding).
* ``max_pool3d_with_indices_backward``, ``adaptive_max_pool{2,3}d_backward``,
  ``fractional_max_pool{2,3}d_backward``: the same scatter-add of ``grad_output`` at the saved
  indices (the 3-d and adaptive / fractional kernels loop over the outputs and do
  ``grad_input[index] += grad_output``): ``grad_output.numel()`` adds.
* ``avg_pool{2,3}d_backward`` (AvgPool, LPPool, LocalResponseNorm): the CPU kernel visits each
  output's window clipped to the input (the ``m`` in-range elements the forward sums), divides
  the output's gradient once by the divisor and adds it into each of the ``m`` positions:
  ``m + 1`` per output (contiguous).  The channels-last kernel divides inside the loop,
  ``gin[d] += gout[d] / divide_factor``: ``2m`` per output.
* ``_adaptive_avg_pool{2,3}d_backward``: the contiguous kernel computes
  ``grad_delta = grad_output / kh / kw`` (``/ kd / kh / kw`` in 3-d): one divide per axis, then
  adds it into each of the ``m`` window positions: ``m + n_axes`` per output.  The
  channels-last kernels are not counted (raise): their vectorised and scalar tails divide
  differently.
* ``_embedding_bag_backward`` / ``_embedding_bag_dense_backward`` (dense; ``sparse=True``
  raises): ``sum`` / ``mean``: for every index that is not ``padding_idx`` the kernel forms a
  scale (``/ count`` with ``scale_grad_by_freq``: 1 divide; ``mean``: ``/ bag_size``: 1 divide;
  the per-sample weight is read, not computed) and runs ``axpy``, ``grad_weight[idx] += scale *
  grad[bag]``: ``E`` multiplies (by 1.0 too: BLAS multiplies) and ``E`` adds.  ``max``:
  ``index_add_`` of each non-empty bag's gradient row at its argmax rows: ``E`` adds per
  non-empty bag.
* ``_embedding_bag_per_sample_weights_backward``: per non-padding index, the dot product of the
  bag's gradient row with the embedding row: ``2E - 1``.
* ``hardshrink_backward`` / ``softshrink_backward``: the kernel is
  ``(x >= -lambd && x <= lambd) ? 0 : grad``: two comparisons, their ``and`` and the select,
  4 per element, as torch's decomposition of ``hardtanh_backward``
  (``where((x <= lo) | (x >= hi), 0, grad)``) is counted.
* ``upsample_nearest{1,2,3}d_backward``, ``_upsample_nearest_exact{1,2,3}d_backward``: each
  output gradient is added into its one source position: ``grad_output.numel()`` adds.
* ``replication_pad{1,2,3}d_backward``: each output gradient is added into the input position it
  copied (the clamped one): ``grad_output.numel()`` adds.
* ``__and__`` / ``__or__`` / ``__xor__`` (Python's ``&``, ``|``, ``^`` in the decompositions of
  ``hardtanh_backward`` and ``hardsigmoid_backward``, and transformers' masks): one logical
  operation per element, as ``bitwise_and`` / ``logical_and``.
* ``mkldnn_rnn_layer_backward`` (LSTM's fused oneDNN kernel): :func:`lstm_layer_backward_exact`,
  the arithmetic of the backward of torch's reference path, the path the forward rule of
  :mod:`.recurrent` counts.

Elsewhere: ``nn.Bilinear``'s backward calls ``_trilinear`` with other expand / sum dims, counted
by the rule of :mod:`.activation`; the interpolating upsampling modes' backward kernels are
counted in :mod:`.resampling`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ...errors import UncountedOpError
from ..optable import CUSTOM, OP_TABLE, register_op
from .conv import transposed_conv_exact

__all__ = [
    "conv_backward_exact",
    "lstm_layer_backward_exact",
]


def _register_shared(name: str, kind: str) -> None:
    if name not in OP_TABLE and name not in CUSTOM:  # another family may have registered it
        register_op(name, kind=kind)


for _name in ("__and__", "__or__", "__xor__"):
    _register_shared(_name, "elementwise")


def _bind(func_args: Sequence[str], args: tuple, kwargs: dict) -> dict[str, Any]:
    bound = dict(zip(func_args, args, strict=False))
    bound.update(kwargs)
    return bound


def _per_axis(value: Any, n: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * n
    value = [int(v) for v in value]
    return tuple(value * n) if len(value) == 1 else tuple(value)


# ---------------------------------------------------------------------------------- convolution


def _tap_counts(size: int, kernel: int, stride: int, padding: int, dilation: int, out: int):
    """Per tap ``j`` of one axis of a transposed convolution: how many input positions ``i``
    scatter inside the output (``0 <= i*stride - padding + j*dilation < out``)."""
    return [
        sum(1 for i in range(size) if 0 <= i * stride - padding + j * dilation < out)
        for j in range(kernel)
    ]


def conv_backward_exact(
    grad_output_shape: Sequence[int],
    input_shape: Sequence[int],
    weight_shape: Sequence[int],
    bias: bool,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    transposed: bool,
    groups: int,
    output_mask: Sequence[bool],
) -> tuple[int, int, int]:
    """``exact`` counts of ``convolution_backward``: ``(grad_input, grad_weight, grad_bias)``,
    each 0 where ``output_mask`` (or ``bias``) leaves it out.

    Ordinary convolution: ``x (N, C_in, *in)``, ``w (C_out, C_in/g, *k)``, ``gy (N, C_out,
    *out)``; ``y[n, co, o] = sum over ci in the group and taps j of x_pad[n, ci, o*s - p + j*d] *
    w[co, ci, j]``.

    * ``grad_input = conv_transpose(gy, w)`` without bias: each ``gy`` element multiplies the
      ``C_in/g`` weights of each tap and adds the products into ``grad_input`` at ``o*s - p +
      j*d`` where that lies in the input; a product landing in the padding is never formed.
      That is exactly a transposed convolution of ``gy``, counted by
      :func:`~.conv.transposed_conv_exact` (``2P - R``, no bias).
    * ``grad_weight[co, ci, j] = sum over n, o of x_pad[n, ci, o*s - p + j*d] * gy[n, co, o]``:
      ``N * prod(out)`` products and ``N * prod(out) - 1`` adds per weight element, the products
      with the zero padding *included*.  Convention: the forward counts each output's full
      window over the padded input, so every product ``x_pad * w`` the forward counts has its
      mirror ``x_pad * gy`` here (the multiplies of ``grad_weight`` equal those of the forward);
      the CPU kernels (im2col of the padded input, then a GEMM) do form them.
    * ``grad_bias[co] = sum over n, o of gy``: ``N * prod(out) - 1`` adds per channel.

    Transposed convolution (``w (C_in, C_out/g, *k)``, the forward a scatter from ``x`` that
    keeps only the products landing inside the output, :func:`~.conv.transposed_conv_exact`):

    * ``grad_input`` is the ordinary convolution of ``gy`` with ``w`` (same stride, padding,
      dilation): one full window of ``C_out/g * prod(k)`` taps over the zero-padded ``gy`` per
      input element, counted as the forward ``conv`` kind counts it: ``numel(x) * (2 *
      C_out/g * prod(k) - 1)``.
    * ``grad_weight[ci, co, j] = sum over n, i of x[n, ci, i] * gy[n, co, i*s - p + j*d]`` over
      the positions the forward kept: ``t_j = N * prod over axes of kept_a(j_a)`` products and
      ``t_j - 1`` adds for each tap with ``t_j > 0`` (one no position reaches stays 0):
      ``C_in * C_out/g * (2 * N * prod_a sum_j kept_a(j) - prod_a #{j: kept_a(j) > 0})``.
    * ``grad_bias``: as above, per output channel.

    >>> conv_backward_exact((1, 1, 3), (1, 1, 5), (1, 1, 3), True, (1,), (0,), (1,), False, 1,
    ...                     (True, True, True))  # 9 products onto 5 inputs; 3 weights; 1 bias
    (13, 15, 2)
    """
    spatial = len(weight_shape) - 2
    batched = len(grad_output_shape) == spatial + 2
    n = grad_output_shape[0] if batched else 1
    out_sizes = tuple(grad_output_shape[-spatial:]) if spatial else ()
    in_sizes = tuple(input_shape[-spatial:]) if spatial else ()
    kernel = tuple(weight_shape[2:])
    c_out = grad_output_shape[-spatial - 1]
    grad_input = grad_weight = grad_bias = 0
    if not transposed:
        if output_mask[0]:
            grad_input = transposed_conv_exact(
                grad_output_shape,
                weight_shape,
                False,
                stride,
                padding,
                dilation,
                (0,) * spatial,
                groups,
                input_shape,
            )
        if output_mask[1]:
            terms = n * math.prod(out_sizes)
            grad_weight = math.prod(weight_shape) * (2 * terms - 1) if terms else 0
    else:
        if output_mask[0]:
            taps = weight_shape[1] * math.prod(kernel)
            grad_input = math.prod(input_shape) * (2 * taps - 1)
        if output_mask[1]:
            kept = live = 1
            for a in range(spatial):
                counts = _tap_counts(
                    in_sizes[a], kernel[a], stride[a], padding[a], dilation[a], out_sizes[a]
                )
                kept *= sum(counts)
                live *= sum(1 for c in counts if c)
            if n * kept:
                grad_weight = weight_shape[0] * weight_shape[1] * (2 * n * kept - live)
    if output_mask[2] and bias:
        per_channel = n * math.prod(out_sizes)
        grad_bias = c_out * (per_channel - 1) if per_channel else 0
    return grad_input, grad_weight, grad_bias


_CONV_BACKWARD_ARGS = tuple(
    """
    grad_output input weight bias_sizes stride padding dilation transposed output_padding
    groups output_mask
    """.split()
)


@register_op("convolution_backward")
def _convolution_backward(args: tuple, kwargs: dict, out) -> int:
    a = _bind(_CONV_BACKWARD_ARGS, args, kwargs)
    weight = a["weight"]
    spatial = weight.dim() - 2
    return sum(
        conv_backward_exact(
            tuple(a["grad_output"].shape),
            tuple(a["input"].shape),
            tuple(weight.shape),
            a["bias_sizes"] is not None,
            _per_axis(a["stride"], spatial),
            _per_axis(a["padding"], spatial),
            _per_axis(a["dilation"], spatial),
            bool(a["transposed"]),
            int(a["groups"]),
            tuple(bool(m) for m in a["output_mask"]),
        )
    )


# -------------------------------------------------------------------------------------- pooling


@register_op("scatter_add")
def _scatter_add(args: tuple, kwargs: dict, out) -> int:
    index = args[2] if len(args) > 2 else kwargs["index"]
    return index.numel()  # one add per scattered value


def _grad_output_adds(args: tuple, kwargs: dict, out) -> int:
    grad_output = args[0] if args else next(iter(kwargs.values()))
    return grad_output.numel()


register_op(
    "max_pool2d_with_indices_backward",
    "max_pool3d_with_indices_backward",
    "adaptive_max_pool2d_backward",
    "adaptive_max_pool3d_backward",
    "fractional_max_pool2d_backward",
    "fractional_max_pool3d_backward",
    "upsample_nearest1d_backward",
    "upsample_nearest2d_backward",
    "upsample_nearest3d_backward",
    "_upsample_nearest_exact1d_backward",
    "_upsample_nearest_exact2d_backward",
    "_upsample_nearest_exact3d_backward",
    "replication_pad1d_backward",
    "replication_pad2d_backward",
    "replication_pad3d_backward",
)(_grad_output_adds)


def _channels_last(t: torch.Tensor) -> bool:
    if t.is_contiguous():
        return False
    fmt = torch.channels_last if t.dim() == 4 else torch.channels_last_3d
    return t.dim() in (4, 5) and t.is_contiguous(memory_format=fmt)


def _clipped_window_sum(size: int, outputs: int, kernel: int, stride: int, pad: int) -> int:
    """Sum over the windows of one axis of the in-range elements each covers."""
    return sum(
        max(0, min(i * stride - pad + kernel, size) - max(i * stride - pad, 0))
        for i in range(outputs)
    )


def _adaptive_window_sum(size: int, outputs: int) -> int:
    """Sum over the adaptive windows of one axis (``[floor(i*n/o), ceil((i+1)*n/o))``) of their
    lengths."""
    return sum(-(-(i + 1) * size // outputs) - i * size // outputs for i in range(outputs))


_AVG_BACKWARD_ARGS = ("grad_output", "self", "kernel_size", "stride", "padding")


def _avg_pool_backward(n: int):
    def count(args: tuple, kwargs: dict, out: Any) -> int:
        a = _bind(_AVG_BACKWARD_ARGS, args, kwargs)
        grad_output, x = a["grad_output"], a["self"]
        kernel = _per_axis(a["kernel_size"], n)
        stride = _per_axis(a["stride"], n) if len(a["stride"]) else kernel
        pad = _per_axis(a["padding"], n)
        out_sizes = grad_output.shape[-n:]
        covered = math.prod(
            _clipped_window_sum(x.shape[-n + i], out_sizes[i], kernel[i], stride[i], pad[i])
            for i in range(n)
        )  # sum over output positions of m
        lead = math.prod(grad_output.shape[:-n])
        if _channels_last(grad_output):
            return lead * 2 * covered  # a divide and an add per (output, window element)
        return lead * (covered + math.prod(out_sizes))  # m adds + 1 divide per output

    return count


register_op("avg_pool2d_backward")(_avg_pool_backward(2))
register_op("avg_pool3d_backward")(_avg_pool_backward(3))


def _adaptive_avg_pool_backward(n: int):
    def count(args: tuple, kwargs: dict, out: Any) -> int:
        grad_output = args[0] if args else kwargs["grad_output"]
        x = args[1] if len(args) > 1 else kwargs["self"]
        if _channels_last(grad_output):
            raise UncountedOpError(
                "_adaptive_avg_pool backward is counted for contiguous gradients only"
            )
        out_sizes = grad_output.shape[-n:]
        covered = math.prod(_adaptive_window_sum(x.shape[-n + i], out_sizes[i]) for i in range(n))
        lead = math.prod(grad_output.shape[:-n])
        return lead * (covered + n * math.prod(out_sizes))  # m adds + n divides per output

    return count


register_op("_adaptive_avg_pool2d_backward")(_adaptive_avg_pool_backward(2))
register_op("_adaptive_avg_pool3d_backward")(_adaptive_avg_pool_backward(3))


# ---------------------------------------------------------------------------- activation family


@register_op("hardshrink_backward", "softshrink_backward")
def _shrink_backward(args: tuple, kwargs: dict, out) -> int:
    return 4 * out.numel()  # x >= -l, x <= l, their and, the select


# ------------------------------------------------------------------------------------ embedding

_SUM, _MEAN, _MAX = 0, 1, 2
_BAG_BACKWARD_ARGS = tuple(
    """
    grad indices offsets offset2bag bag_size maximum_indices num_weights scale_grad_by_freq
    mode sparse per_sample_weights padding_idx
    """.split()
)
_BAG_DENSE_BACKWARD_ARGS = tuple(
    """
    grad indices offset2bag bag_size maximum_indices num_weights scale_grad_by_freq mode
    per_sample_weights padding_idx
    """.split()
)


def _bag_dense_backward(a: dict[str, Any]) -> int:
    grad, mode = a["grad"], int(a["mode"])
    dim = grad.shape[1]
    if mode == _MAX:  # index_add_ of each non-empty bag's row
        return int((a["bag_size"] != 0).sum()) * dim
    pad = a.get("padding_idx", -1)
    pad = -1 if pad is None else int(pad)
    kept = sum(1 for i in a["indices"].reshape(-1).tolist() if i != pad)
    scalar = int(bool(a["scale_grad_by_freq"])) + int(mode == _MEAN)
    return kept * (2 * dim + scalar)  # the scale's divides, then axpy: E multiplies, E adds


@register_op("_embedding_bag_backward")
def _embedding_bag_backward(args: tuple, kwargs: dict, out) -> int:
    a = _bind(_BAG_BACKWARD_ARGS, args, kwargs)
    if a["sparse"]:
        raise UncountedOpError("_embedding_bag_backward with sparse=True is not counted")
    return _bag_dense_backward(a)


@register_op("_embedding_bag_dense_backward")
def _embedding_bag_dense_backward(args: tuple, kwargs: dict, out) -> int:
    return _bag_dense_backward(_bind(_BAG_DENSE_BACKWARD_ARGS, args, kwargs))


@register_op("_embedding_bag_per_sample_weights_backward")
def _per_sample_weights_backward(args: tuple, kwargs: dict, out) -> int:
    a = _bind(
        ("grad", "weight", "indices", "offsets", "offset2bag", "mode", "padding_idx"), args, kwargs
    )
    pad = int(a.get("padding_idx", -1))
    kept = sum(1 for i in a["indices"].reshape(-1).tolist() if i != pad)
    return kept * (2 * a["grad"].shape[1] - 1)  # a dot product of E terms per index


# ------------------------------------------------------------------------------------ recurrent

_LSTM_MODE = 2
_RNN_BACKWARD_ARGS = tuple(
    """
    input weight1 weight2 weight3 weight4 hx_ cx_tmp output hy_ cy_ grad_output grad_hy grad_cy
    reverse mode hidden_size num_layers has_biases train bidirectional batch_sizes batch_first
    workspace
    """.split()
)


def lstm_layer_backward_exact(
    steps: int,
    batch: int,
    input_size: int,
    hidden: int,
    bias: bool,
    grad_output: bool,
    grad_hy: bool,
    grad_cy: bool,
) -> int:
    """``exact`` count of the backward of one LSTM layer and direction, all gradients
    (input, ``W_ih``, ``W_hh``, biases, ``h0``, ``c0``) computed, as ``mkldnn_rnn_layer_backward``
    computes them; ``grad_output`` / ``grad_hy`` / ``grad_cy``: whether those incoming
    gradients are defined.

    The forward rule (:mod:`.recurrent`) counts torch's reference path: ``x @ W_ih^T + b_ih``
    for all ``T*B`` rows at once, then per step ``gates = h @ W_hh^T + b_hh + that``,
    ``i, f, g, o`` (sigmoid, sigmoid, tanh, sigmoid), ``c' = f*c + i*g``, ``h' = o*tanh(c')``.
    Its backward, as autograd runs it (``G = 4H``, ``R = T*B``), per step and element of
    ``B x H``: ``h' = o*tanh(c')``: 2 multiplies; ``tanh_backward`` ``g*(1 - y*y)``: 3; ``c'``:
    4 multiplies (grads of ``f``, ``c``, ``i``, ``g``); three ``sigmoid_backward``
    ``g*(y*(1 - y))`` and one ``tanh_backward``: 12; ``21 * T*B*H`` in all (the last step's first
    5 are skipped when no gradient reaches its ``h``).  Gradient sums autograd forms: ``h_t``
    gets ``grad_output[t]`` plus the gradient from step ``t+1`` (``(T-1)*B*H`` adds, ``B*H``
    more when both ``grad_output`` and ``grad_hy`` reach the last step); ``c_t`` gets the
    ``tanh`` path plus step ``t+1``'s (``(T-1)*B*H``, ``B*H`` more with ``grad_cy`` at the last
    step); ``W_hh`` and ``b_hh`` are used ``T`` times: ``(T-1)*(G*H + b*G)`` adds.  Products:
    ``grad_x = ggates_ih @ W_ih``: ``R*I*(2G - 1)``; ``grad_W_ih``: ``G*I*(2R - 1)``; per step
    ``grad_h = ggates @ W_hh``: ``B*H*(2G - 1)``, ``grad_W_hh``: ``G*H*(2B - 1)``; bias sums
    ``b*(G*(R - 1) + T*G*(B - 1))``.  Checked against the counter running that reference path
    (``torch.backends.mkldnn`` disabled) in the tests.

    >>> lstm_layer_backward_exact(1, 1, 1, 1, True, True, True, True)  # 21 + 2 + 22
    45
    """
    t, b, i, h = steps, batch, input_size, hidden
    g, rows, biased = 4 * hidden, steps * batch, int(bias)
    h_last = grad_output or grad_hy
    elementwise = 21 * t * b * h - (0 if h_last else 5 * b * h)
    adds = (t - 1) * b * h if grad_output else 0
    adds += b * h if (grad_output and grad_hy) else 0
    adds += (t - 1) * b * h + (b * h if (grad_cy and h_last) else 0)
    adds += (t - 1) * (g * h + biased * g)
    products = rows * i * (2 * g - 1) + g * i * (2 * rows - 1)
    products += t * (b * h * (2 * g - 1) + g * h * (2 * b - 1))
    sums = biased * (g * (rows - 1) + t * g * (b - 1))
    return elementwise + adds + products + sums


@register_op("mkldnn_rnn_layer_backward")
def _mkldnn_rnn_layer_backward(args: tuple, kwargs: dict, out) -> int:
    a = _bind(_RNN_BACKWARD_ARGS, args, kwargs)
    x = a["input"]
    if int(a["mode"]) != _LSTM_MODE:
        raise UncountedOpError(
            f"mkldnn_rnn_layer_backward in mode {a['mode']}: only LSTM (mode 2) is counted"
        )
    if len(a["batch_sizes"]) or x.dim() != 3:
        raise UncountedOpError("mkldnn_rnn_layer_backward: packed or unbatched input")
    # torch transposes a batch_first input before the kernel and passes the flag on unread:
    # the input here is time-major either way
    steps, batch = x.shape[0], x.shape[1]
    return lstm_layer_backward_exact(
        steps,
        batch,
        x.shape[2],
        int(a["hidden_size"]),
        bool(a["has_biases"]),
        a["grad_output"] is not None,
        a["grad_hy"] is not None,
        a["grad_cy"] is not None,
    )
