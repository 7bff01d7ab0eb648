"""Hypothesis strategies for the pooling family, valid by construction.

Kernels, strides, padding and dilation are drawn first, then an input just large enough for at
least one output window (in ceil_mode a window may hang over the end of the input).  ``dims``
picks the 1-d, 2-d or 3-d module; inputs are batched or unbatched.

>>> from layercost_sym.testing._cases_pooling import max_pool_cases
>>> case = max_pool_cases(dims=2).example()   # doctest: +SKIP
>>> case.name                                 # doctest: +SKIP
'MaxPool2d'
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from .case import LayerCase

__all__ = [
    "adaptive_pool_cases",
    "avg_pool_cases",
    "fractional_max_pool_cases",
    "lp_pool_cases",
    "max_pool_cases",
    "max_unpool_cases",
]


def _sides(draw, dims: int, values: st.SearchStrategy[Any]) -> tuple[Any, ...]:
    """One value per axis: all equal (square) or each drawn."""
    if draw(st.booleans()):
        return (draw(values),) * dims
    return tuple(draw(values) for _ in range(dims))


def _form(draw, sides: tuple[Any, ...]) -> Any:
    """How the option is passed: an int when all sides agree (sometimes), else the tuple."""
    if len(set(sides)) == 1 and draw(st.booleans()):
        return sides[0]
    return sides


def _shape(
    draw, channels: int, sizes: list[int], max_batch: int, unbatched: bool
) -> tuple[int, ...]:
    shape = (channels, *sizes)
    if not (unbatched and draw(st.booleans())):
        shape = (draw(st.integers(1, max_batch)), *shape)
    return shape


def _smallest(span: int, pad: int, stride: int, ceil_mode: bool) -> int:
    """Smallest input size with one output window: span <= size + 2*pad, or, in ceil_mode, the
    window may start at -pad and hang over the end by up to stride - 1."""
    return max(1, span - 2 * pad - (stride - 1 if ceil_mode else 0))


@st.composite
def max_pool_cases(
    draw,
    *,
    dims: int = 2,
    max_batch: int = 2,
    max_channels: int = 3,
    max_kernel: int = 3,
    max_extra: int = 4,
    unbatched: bool = True,
) -> LayerCase:
    """``torch.nn.MaxPool{dims}d`` with kernel, stride (incl. the default None = kernel),
    padding (up to half the kernel), dilation, ceil_mode and return_indices."""
    kernel = _sides(draw, dims, st.integers(1, max_kernel))
    stride = None if draw(st.booleans()) else _sides(draw, dims, st.integers(1, 3))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    dilation = _sides(draw, dims, st.integers(1, 3))
    ceil_mode = draw(st.booleans())
    strides = kernel if stride is None else stride
    sizes = [
        _smallest(dilation[a] * (kernel[a] - 1) + 1, padding[a], strides[a], ceil_mode)
        + draw(st.integers(0, max_extra))
        for a in range(dims)
    ]
    kwargs = dict(
        kernel_size=_form(draw, kernel),
        stride=stride and _form(draw, stride),
        padding=_form(draw, padding),
        dilation=_form(draw, dilation),
        ceil_mode=ceil_mode,
        return_indices=draw(st.booleans()),
    )
    shape = _shape(draw, draw(st.integers(1, max_channels)), sizes, max_batch, unbatched)
    return LayerCase(f"MaxPool{dims}d", kwargs, (shape,), training=draw(st.booleans()))


@st.composite
def avg_pool_cases(
    draw,
    *,
    dims: int = 2,
    max_batch: int = 2,
    max_channels: int = 3,
    max_kernel: int = 4,
    max_extra: int = 4,
    unbatched: bool = True,
) -> LayerCase:
    """``torch.nn.AvgPool{dims}d`` with kernel, stride (incl. None), padding (up to half the
    kernel), ceil_mode, count_include_pad and divisor_override (``AvgPool1d`` has none)."""
    kernel = _sides(draw, dims, st.integers(1, max_kernel))
    stride = None if draw(st.booleans()) else _sides(draw, dims, st.integers(1, 3))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    ceil_mode = draw(st.booleans())
    strides = kernel if stride is None else stride
    # avg_pool3d also rejects an unpadded input smaller than the kernel
    sizes = [
        max(_smallest(kernel[a], padding[a], strides[a], ceil_mode), kernel[a] if dims == 3 else 1)
        + draw(st.integers(0, max_extra))
        for a in range(dims)
    ]
    kwargs = dict(
        kernel_size=_form(draw, kernel),
        stride=stride and _form(draw, stride),
        padding=_form(draw, padding),
        ceil_mode=ceil_mode,
        count_include_pad=draw(st.booleans()),
    )
    if dims > 1:
        kwargs["divisor_override"] = draw(st.sampled_from([None, 1, 2, 5]))
    shape = _shape(draw, draw(st.integers(1, max_channels)), sizes, max_batch, unbatched)
    return LayerCase(f"AvgPool{dims}d", kwargs, (shape,), training=draw(st.booleans()))


@st.composite
def lp_pool_cases(
    draw,
    *,
    dims: int = 2,
    max_batch: int = 2,
    max_channels: int = 3,
    max_kernel: int = 3,
    max_extra: int = 4,
    unbatched: bool = True,
) -> LayerCase:
    """``torch.nn.LPPool{dims}d`` with norm_type, kernel (an int for 1-d: torch's lp_pool1d
    multiplies by it), a stride (None, the default, means the kernel size) and ceil_mode."""
    kernel = _sides(draw, dims, st.integers(1, max_kernel))
    default_stride = draw(st.booleans())
    stride = kernel if default_stride else _sides(draw, dims, st.integers(1, 3))
    ceil_mode = draw(st.booleans())
    sizes = [
        max(_smallest(kernel[a], 0, stride[a], ceil_mode), kernel[a] if dims == 3 else 1)
        + draw(st.integers(0, max_extra))
        for a in range(dims)
    ]  # avg_pool3d: size >= kernel
    # LPPool1d multiplies by kernel_size itself: torch accepts only an int there
    kwargs = dict(
        norm_type=draw(st.sampled_from([1, 2, 3, 1.5])),
        kernel_size=kernel[0] if dims == 1 else _form(draw, kernel),
        stride=None if default_stride else _form(draw, stride),
        ceil_mode=ceil_mode,
    )
    shape = _shape(draw, draw(st.integers(1, max_channels)), sizes, max_batch, unbatched)
    return LayerCase(f"LPPool{dims}d", kwargs, (shape,), training=draw(st.booleans()))


@st.composite
def adaptive_pool_cases(
    draw,
    *,
    dims: int = 2,
    kind: str = "Avg",
    max_batch: int = 2,
    max_channels: int = 3,
    max_size: int = 9,
    max_output: int = 6,
    unbatched: bool = True,
) -> LayerCase:
    """``torch.nn.Adaptive{kind}Pool{dims}d`` (``kind`` "Avg" or "Max") with an output size
    smaller, equal to or larger than the input, uneven and overlapping windows, 1x1 outputs,
    and return_indices for Max; for 2-d and 3-d, entries of None (keep that axis's size)."""
    sizes = [draw(st.integers(1, max_size)) for _ in range(dims)]
    outputs: tuple[int | None, ...] = _sides(draw, dims, st.integers(1, max_output))
    if dims > 1 and draw(st.booleans()):  # None keeps the input's size (a tuple only)
        keep = draw(st.lists(st.booleans(), min_size=dims, max_size=dims))
        outputs = tuple(None if k else o for k, o in zip(keep, outputs, strict=True))
    none = None in outputs
    kwargs: dict[str, Any] = dict(output_size=outputs if none else _form(draw, outputs))
    if kind == "Max":
        kwargs["return_indices"] = draw(st.booleans())
    shape = _shape(draw, draw(st.integers(1, max_channels)), sizes, max_batch, unbatched)
    return LayerCase(f"Adaptive{kind}Pool{dims}d", kwargs, (shape,), training=draw(st.booleans()))


@st.composite
def fractional_max_pool_cases(
    draw,
    *,
    dims: int = 2,
    max_batch: int = 2,
    max_channels: int = 3,
    max_kernel: int = 3,
    max_output: int = 4,
    max_extra: int = 3,
    unbatched: bool = True,
) -> LayerCase:
    """``torch.nn.FractionalMaxPool{dims}d`` (2-d, 3-d) with kernel, output_size or output_ratio
    (floats in (0, 1): k/8 and awkward decimals such as 0.29, whose double product 100*0.29 is
    28.999999999999996), and return_indices."""
    kernel = _sides(draw, dims, st.integers(1, max_kernel))
    strict = 1 if dims == 3 else 0  # torch: output + kernel - 1 <= size (2-d), < size (3-d)
    if draw(st.booleans()):
        outputs = _sides(draw, dims, st.integers(1, max_output))
        sizes = [
            outputs[a] + kernel[a] - 1 + strict + draw(st.integers(0, max_extra))
            for a in range(dims)
        ]
        option: dict[str, Any] = {"output_size": _form(draw, outputs)}
    else:
        ratio = st.one_of(
            st.integers(1, 7).map(lambda k: k / 8), st.sampled_from([0.29, 0.3, 0.7, 0.9])
        )
        ratios = _sides(draw, dims, ratio)
        # smallest side whose output int(side*r) (torch's double product) is >= 1 and fits
        smallest = [
            next(n for n in range(1, 64) if int(n * r) >= 1 and int(n * r) + k - 1 + strict <= n)
            for r, k in zip(ratios, kernel, strict=True)
        ]
        sizes = [lo + draw(st.integers(0, max_extra)) for lo in smallest]
        option = {"output_ratio": _form(draw, ratios)}
    kwargs = dict(
        kernel_size=_form(draw, kernel),
        **option,
        return_indices=draw(st.booleans()),
    )
    shape = _shape(draw, draw(st.integers(1, max_channels)), sizes, max_batch, unbatched)
    return LayerCase(f"FractionalMaxPool{dims}d", kwargs, (shape,), training=draw(st.booleans()))


@st.composite
def max_unpool_cases(
    draw,
    *,
    dims: int = 2,
    max_batch: int = 2,
    max_channels: int = 3,
    max_kernel: int = 3,
    max_size: int = 4,
    unbatched: bool = True,
) -> LayerCase:
    """``torch.nn.MaxUnpool{dims}d`` with kernel, stride (incl. None) and padding, on an input
    and random indices into each output plane (the second input)."""
    kernel = _sides(draw, dims, st.integers(1, max_kernel))
    stride = None if draw(st.booleans()) else _sides(draw, dims, st.integers(1, 3))
    strides = kernel if stride is None else stride
    sizes, outputs, padding = [], [], []
    for a in range(dims):
        size = draw(st.integers(1, max_size))
        full = (size - 1) * strides[a] + kernel[a]  # output size before cropping the padding
        pad = draw(st.integers(0, (full - 1) // 2))  # keeps at least one output position
        sizes.append(size)
        padding.append(pad)
        outputs.append(full - 2 * pad)
    kwargs = dict(
        kernel_size=_form(draw, kernel),
        stride=stride and _form(draw, stride),
        padding=_form(draw, tuple(padding)),
    )
    shape = _shape(draw, draw(st.integers(1, max_channels)), sizes, max_batch, unbatched)
    plane = 1
    for o in outputs:
        plane *= o
    return LayerCase(
        f"MaxUnpool{dims}d",
        kwargs,
        (shape, shape),
        integer_inputs={1: plane},
        training=draw(st.booleans()),
    )
