"""Hypothesis strategies for the convolution family, valid by construction.

Kernels, dilations and strides are drawn first, then an input large enough for them; groups
divide both channel counts by construction; output_padding is drawn below max(stride,
dilation), as torch requires.  No torch import here (see :mod:`.strategies`).

>>> from layercost_sym.testing._cases_conv import conv_transpose2d_cases
>>> conv_transpose2d_cases().example().name          # doctest: +SKIP
'ConvTranspose2d'
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from .case import LayerCase

__all__ = [
    "conv1d_cases",
    "conv2d_cases",
    "conv3d_cases",
    "conv_transpose1d_cases",
    "conv_transpose2d_cases",
    "conv_transpose3d_cases",
    "lazy_kwargs",
]


def _axes(draw, values: st.SearchStrategy[int], dims: int, square: bool) -> tuple[int, ...]:
    """One value per spatial axis, or the same value on every axis when ``square``."""
    if square:
        return (draw(values),) * dims
    return tuple(draw(values) for _ in range(dims))


def _channels(draw, max_channels: int, max_groups: int) -> tuple[int, int, int]:
    groups = draw(st.integers(1, max_groups))
    c_in = groups * draw(st.integers(1, max(1, max_channels // groups)))
    c_out = groups * draw(st.integers(1, max(1, max_channels // groups)))
    return groups, c_in, c_out


def _batched(draw, shape: tuple[int, ...], max_batch: int, unbatched: bool) -> tuple[int, ...]:
    if unbatched and draw(st.booleans()):
        return shape
    return (draw(st.integers(1, max_batch)), *shape)


@st.composite
def _conv_cases(
    draw,
    dims: int,
    *,
    max_batch: int,
    max_channels: int,
    max_kernel: int,
    max_dilation: int,
    max_stride: int,
    max_padding: int,
    max_extra: int,
    unbatched: bool,
) -> LayerCase:
    """``torch.nn.Conv{dims}d`` with every option torch offers (see :func:`conv1d_cases`)."""
    groups, c_in, c_out = _channels(draw, max_channels, 3)
    square = draw(st.booleans())
    kernel = _axes(draw, st.integers(1, max_kernel), dims, square)
    dilation = _axes(draw, st.integers(1, max_dilation), dims, square)
    mode = draw(st.sampled_from(["int", "int", "same", "valid"]))
    stride = (
        (1,) * dims if mode == "same" else _axes(draw, st.integers(1, max_stride), dims, square)
    )
    padding: Any = mode if mode != "int" else _axes(draw, st.integers(0, max_padding), dims, square)
    padding_mode = draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"]))
    sizes = []
    for axis in range(dims):
        span = dilation[axis] * (kernel[axis] - 1) + 1
        if mode == "same":  # torch pads span - 1 in total, the larger half at the end
            pad = (span - 1) - (span - 1) // 2
        else:
            pad = padding[axis] if mode == "int" else 0
        smallest = max(1, span - 2 * pad)
        if padding_mode != "zeros":  # reflect needs pad < size; circular pad <= size
            smallest = max(smallest, pad + 1)
        sizes.append(smallest + draw(st.integers(0, max_extra)))
    shape = _batched(draw, (c_in, *sizes), max_batch, unbatched)
    kwargs = dict(
        in_channels=c_in,
        out_channels=c_out,
        kernel_size=kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias=draw(st.booleans()),
        padding_mode=padding_mode,
    )
    return LayerCase(f"Conv{dims}d", kwargs, (shape,))


def conv2d_cases(
    *,
    max_batch: int = 3,
    max_channels: int = 6,
    max_kernel: int = 4,
    max_extra: int = 6,
    unbatched: bool = True,
) -> st.SearchStrategy[LayerCase]:
    """``torch.nn.Conv2d`` with stride, padding (int, 'same', 'valid'), dilation, groups, bias,
    padding_mode, square or rectangular kernels, batched or unbatched input."""
    return _conv_cases(
        2,
        max_batch=max_batch,
        max_channels=max_channels,
        max_kernel=max_kernel,
        max_dilation=3,
        max_stride=3,
        max_padding=3,
        max_extra=max_extra,
        unbatched=unbatched,
    )


def conv1d_cases(
    *,
    max_batch: int = 3,
    max_channels: int = 6,
    max_kernel: int = 5,
    max_extra: int = 6,
    unbatched: bool = True,
) -> st.SearchStrategy[LayerCase]:
    """``torch.nn.Conv1d`` with stride, padding (int, 'same', 'valid'), dilation, groups, bias,
    padding_mode (zeros, reflect, replicate, circular), batched or unbatched input."""
    return _conv_cases(
        1,
        max_batch=max_batch,
        max_channels=max_channels,
        max_kernel=max_kernel,
        max_dilation=3,
        max_stride=3,
        max_padding=3,
        max_extra=max_extra,
        unbatched=unbatched,
    )


def conv3d_cases(
    *,
    max_batch: int = 2,
    max_channels: int = 4,
    max_kernel: int = 3,
    max_extra: int = 3,
    unbatched: bool = True,
) -> st.SearchStrategy[LayerCase]:
    """``torch.nn.Conv3d`` with the options of :func:`conv1d_cases`, cubic or not; small
    sizes (the cost is a product of three axes)."""
    return _conv_cases(
        3,
        max_batch=max_batch,
        max_channels=max_channels,
        max_kernel=max_kernel,
        max_dilation=2,
        max_stride=2,
        max_padding=2,
        max_extra=max_extra,
        unbatched=unbatched,
    )


@st.composite
def _transposed_axis(
    draw, max_kernel: int, max_step: int, max_padding: int, max_extra: int, max_dilation: int
) -> tuple[int, ...]:
    """(kernel, stride, dilation, padding, output_padding, size) of one axis."""
    kernel = draw(st.integers(1, max_kernel))
    stride = draw(st.integers(1, max_step))
    dilation = draw(st.integers(1, max_dilation))
    output_padding = draw(st.integers(0, max(stride, dilation) - 1))
    # the rule's closed form needs stride and dilation to divide one another where padding
    # crops (its constraint); other pairs are drawn unpadded
    divides = stride % dilation == 0 or dilation % stride == 0
    padding = draw(st.integers(0, max_padding)) if divides else 0
    # out = (size - 1)*stride - 2*padding + dilation*(kernel - 1) + output_padding + 1 >= 1
    short = max(0, 2 * padding - dilation * (kernel - 1) - output_padding)
    size = 1 + -(-short // stride) + draw(st.integers(0, max_extra))
    return kernel, stride, dilation, padding, output_padding, size


@st.composite
def _conv_transpose_cases(
    draw,
    dims: int,
    *,
    max_batch: int,
    max_channels: int,
    max_kernel: int,
    max_step: int,
    max_padding: int,
    max_extra: int,
    unbatched: bool,
    undilated: bool,
) -> LayerCase:
    """``torch.nn.ConvTranspose{dims}d`` (see :func:`conv_transpose1d_cases`)."""
    groups, c_in, c_out = _channels(draw, max_channels, 3)
    axis = _transposed_axis(
        max_kernel, max_step, max_padding, max_extra, 1 if undilated else max_step
    )
    if draw(st.booleans()):  # the same options on every axis
        axes = [draw(axis)] * dims
    else:
        axes = [draw(axis) for _ in range(dims)]
    kernel, stride, dilation, padding, output_padding, sizes = (
        tuple(v) for v in zip(*axes, strict=True)
    )
    shape = _batched(draw, (c_in, *sizes), max_batch, unbatched)
    kwargs = dict(
        in_channels=c_in,
        out_channels=c_out,
        kernel_size=kernel,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        groups=groups,
        bias=draw(st.booleans()),
        dilation=dilation,
        padding_mode="zeros",
    )
    return LayerCase(f"ConvTranspose{dims}d", kwargs, (shape,))


def conv_transpose1d_cases(
    *,
    max_batch: int = 3,
    max_channels: int = 6,
    max_kernel: int = 5,
    max_extra: int = 5,
    unbatched: bool = True,
    undilated: bool = False,
) -> st.SearchStrategy[LayerCase]:
    """``torch.nn.ConvTranspose1d`` with stride, padding (also beyond dilation*(kernel-1)),
    output_padding, dilation, groups, bias, batched or unbatched input; ``undilated`` draws
    dilation 1 only (the rule's ``undilated`` variant).  torch supports only padding_mode='zeros'
    and integer padding for transposed convolution."""
    return _conv_transpose_cases(
        1,
        max_batch=max_batch,
        max_channels=max_channels,
        max_kernel=max_kernel,
        max_step=4,
        max_padding=6,
        max_extra=max_extra,
        unbatched=unbatched,
        undilated=undilated,
    )


def conv_transpose2d_cases(
    *,
    max_batch: int = 2,
    max_channels: int = 6,
    max_kernel: int = 4,
    max_extra: int = 4,
    unbatched: bool = True,
    undilated: bool = False,
) -> st.SearchStrategy[LayerCase]:
    """``torch.nn.ConvTranspose2d`` with the options of :func:`conv_transpose1d_cases`."""
    return _conv_transpose_cases(
        2,
        max_batch=max_batch,
        max_channels=max_channels,
        max_kernel=max_kernel,
        max_step=4,
        max_padding=5,
        max_extra=max_extra,
        unbatched=unbatched,
        undilated=undilated,
    )


def conv_transpose3d_cases(
    *,
    max_batch: int = 2,
    max_channels: int = 4,
    max_kernel: int = 3,
    max_extra: int = 2,
    unbatched: bool = True,
    undilated: bool = False,
) -> st.SearchStrategy[LayerCase]:
    """``torch.nn.ConvTranspose3d`` with the options of :func:`conv_transpose1d_cases`; small
    sizes."""
    return _conv_transpose_cases(
        3,
        max_batch=max_batch,
        max_channels=max_channels,
        max_kernel=max_kernel,
        max_step=3,
        max_padding=3,
        max_extra=max_extra,
        unbatched=unbatched,
        undilated=undilated,
    )


def lazy_kwargs(case: LayerCase) -> dict[str, Any]:
    """Constructor arguments of the case's ``Lazy`` twin (``torch.nn.Lazy<name>``): the same
    options without ``in_channels``, which the first forward infers."""
    return {k: v for k, v in case.kwargs.items() if k != "in_channels"}
