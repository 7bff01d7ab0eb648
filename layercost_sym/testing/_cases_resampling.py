"""Hypothesis strategies for the resampling and shape family, valid by construction.

Upsample (every mode, size or a scale factor (one, or per axis; whole or not), align_corners,
recompute_scale_factor; nearest on 3-, 4- and 5-d input),
UpsamplingNearest2d, UpsamplingBilinear2d, PixelShuffle, PixelUnshuffle, ChannelShuffle, the
fifteen padding layers, Unfold and Fold.  Sizes are drawn first, then options that fit them (a
reflection pad smaller than the side, channels a multiple of the groups, ...).
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from .case import LayerCase

__all__ = [
    "AWKWARD_SCALES",
    "PADDING_LAYERS",
    "UPSAMPLE_MODES",
    "channel_shuffle_cases",
    "fold_cases",
    "padding_cases",
    "pixel_shuffle_cases",
    "pixel_unshuffle_cases",
    "unfold_cases",
    "upsample_cases",
    "upsampling_bilinear2d_cases",
    "upsampling_nearest2d_cases",
]

UPSAMPLE_MODES = {  # mode -> the numbers of resized (spatial) axes torch accepts
    "nearest": (1, 2, 3),
    "nearest-exact": (1, 2, 3),
    "linear": (1,),
    "bilinear": (2,),
    "bicubic": (2,),
    "trilinear": (3,),
    "area": (1, 2, 3),
}
PADDING_LAYERS = tuple(
    f"{kind}Pad{nd}d"
    for kind in ("Zero", "Constant", "Reflection", "Replication", "Circular")
    for nd in (1, 2, 3)
)


# Scale factors that are not whole: quarters (exact in binary) and awkward decimals whose double
# products land just below or above a whole number (0.7*10 = 7.000000000000001, 0.29*100 =
# 28.999999999999996: torch gives 28, an exact rational 29).
AWKWARD_SCALES = (0.29, 0.3, 0.7, 1.1, 1.3, 2.3, 2.9)


def _factor(draw, max_scale: int, fractional: bool) -> float | int:
    """One scale factor: a whole one up to ``max_scale`` (int, or float as users write 2.0), or,
    with ``fractional``, sometimes k/4 (0.25 .. max_scale) or an awkward decimal."""
    kind = draw(st.sampled_from(["whole", "quarter", "awkward"] if fractional else ["whole"]))
    if kind == "quarter":
        return draw(st.integers(1, 4 * max_scale)) / 4
    if kind == "awkward":
        return draw(st.sampled_from(AWKWARD_SCALES))
    whole = draw(st.integers(1, max_scale))
    return float(whole) if draw(st.booleans()) else whole


def _resize(
    draw, axes: int, max_size: int, max_out: int, max_scale: int = 5, fractional: bool = False
) -> tuple[tuple[int, ...], dict]:
    """Spatial input sizes and the size / scale_factor keyword arguments (a scale factor up to
    ``max_scale``: one for every axis or one per axis; whole (int or float, as users write them)
    or, with ``fractional``, not whole).  Each output side floor(side*s) is at least 1, as torch
    requires: a side is drawn large enough for its factor."""
    if draw(st.booleans()):
        spatial = tuple(draw(st.integers(1, max_size)) for _ in range(axes))
        if draw(st.booleans()):  # one int for every axis
            return spatial, {"size": draw(st.integers(1, max_out))}
        return spatial, {"size": tuple(draw(st.integers(1, max_out)) for _ in range(axes))}
    if draw(st.booleans()):
        scale: Any = _factor(draw, max_scale, fractional)
        factors = (scale,) * axes
    else:
        scale = tuple(_factor(draw, max_scale, fractional) for _ in range(axes))
        factors = scale
    # smallest side with floor(side*s) >= 1 in torch's double arithmetic
    smallest = [next(n for n in range(1, 9) if int(n * float(f)) >= 1) for f in factors]
    spatial = tuple(draw(st.integers(lo, max(lo, max_size))) for lo in smallest)
    kwargs: dict[str, Any] = {"scale_factor": scale}
    kwargs["recompute_scale_factor"] = draw(st.sampled_from([None, False, True]))
    return spatial, kwargs


@st.composite
def upsample_cases(
    draw,
    *,
    mode: str | None = None,
    max_batch: int = 2,
    max_channels: int = 3,
    max_size: int = 4,
    max_out: int = 7,
    fractional: bool = False,
) -> LayerCase:
    """``torch.nn.Upsample`` in every mode (``mode`` fixes one), with size (int or tuple) or a
    scale factor (one or per axis; whole, as int or float, or with ``fractional`` not whole: k/4
    or awkward decimals such as 0.7 and 2.3; recompute_scale_factor None/False/True),
    align_corners None/False/True for the interpolating modes; input of a rank the mode takes
    (nearest and area: 3-, 4- or 5-d)."""
    mode = draw(st.sampled_from(sorted(UPSAMPLE_MODES))) if mode is None else mode
    axes = draw(st.sampled_from(UPSAMPLE_MODES[mode]))
    spatial, kwargs = _resize(draw, axes, max_size, max_out, fractional=fractional)
    if mode in ("linear", "bilinear", "bicubic", "trilinear"):  # torch: only these take it
        kwargs["align_corners"] = draw(st.sampled_from([None, False, True]))
    shape = (draw(st.integers(1, max_batch)), draw(st.integers(1, max_channels)), *spatial)
    return LayerCase("Upsample", {"mode": mode, **kwargs}, (shape,))


@st.composite
def upsampling_nearest2d_cases(
    draw,
    *,
    max_batch: int = 2,
    max_channels: int = 3,
    max_size: int = 4,
    max_out: int = 7,
    fractional: bool = False,
) -> LayerCase:
    """``torch.nn.UpsamplingNearest2d`` with size (int or tuple) or a scale factor (whole, or
    with ``fractional`` not whole)."""
    spatial, kwargs = _resize(draw, 2, max_size, max_out, fractional=fractional)
    kwargs.pop("recompute_scale_factor", None)  # not an argument of this class
    shape = (draw(st.integers(1, max_batch)), draw(st.integers(1, max_channels)), *spatial)
    return LayerCase("UpsamplingNearest2d", kwargs, (shape,))


@st.composite
def upsampling_bilinear2d_cases(
    draw,
    *,
    max_batch: int = 2,
    max_channels: int = 3,
    max_size: int = 4,
    max_out: int = 7,
    fractional: bool = False,
) -> LayerCase:
    """``torch.nn.UpsamplingBilinear2d`` (align_corners=True) with size or a scale factor (whole,
    or with ``fractional`` not whole)."""
    spatial, kwargs = _resize(draw, 2, max_size, max_out, fractional=fractional)
    kwargs.pop("recompute_scale_factor", None)
    shape = (draw(st.integers(1, max_batch)), draw(st.integers(1, max_channels)), *spatial)
    return LayerCase("UpsamplingBilinear2d", kwargs, (shape,))


def _leading(draw, max_leading: int, max_batch: int) -> tuple[int, ...]:
    return tuple(draw(st.lists(st.integers(1, max_batch), min_size=0, max_size=max_leading)))


@st.composite
def pixel_shuffle_cases(
    draw,
    *,
    max_leading: int = 2,
    max_batch: int = 2,
    max_factor: int = 3,
    max_channels: int = 2,
    max_size: int = 4,
) -> LayerCase:
    """``torch.nn.PixelShuffle`` on (*, C*r^2, H, W) with 0 to ``max_leading`` leading dims."""
    r = draw(st.integers(1, max_factor))
    c = r * r * draw(st.integers(1, max_channels))
    h, w = draw(st.integers(1, max_size)), draw(st.integers(1, max_size))
    shape = (*_leading(draw, max_leading, max_batch), c, h, w)
    return LayerCase("PixelShuffle", {"upscale_factor": r}, (shape,))


@st.composite
def pixel_unshuffle_cases(
    draw,
    *,
    max_leading: int = 2,
    max_batch: int = 2,
    max_factor: int = 3,
    max_channels: int = 3,
    max_blocks: int = 3,
) -> LayerCase:
    """``torch.nn.PixelUnshuffle`` on (*, C, H*r, W*r) with 0 to ``max_leading`` leading dims."""
    r = draw(st.integers(1, max_factor))
    h, w = (r * draw(st.integers(1, max_blocks)) for _ in range(2))
    shape = (*_leading(draw, max_leading, max_batch), draw(st.integers(1, max_channels)), h, w)
    return LayerCase("PixelUnshuffle", {"downscale_factor": r}, (shape,))


@st.composite
def channel_shuffle_cases(
    draw,
    *,
    max_batch: int = 2,
    max_groups: int = 4,
    max_per_group: int = 3,
    max_size: int = 4,
    max_trailing: int = 3,
) -> LayerCase:
    """``torch.nn.ChannelShuffle`` on (N, C, *) with 1 to ``max_trailing`` dimensions after the
    channels; channels a multiple of ``groups``."""
    g = draw(st.integers(1, max_groups))
    c = g * draw(st.integers(1, max_per_group))
    trailing = draw(st.lists(st.integers(1, max_size), min_size=1, max_size=max_trailing))
    shape = (draw(st.integers(1, max_batch)), c, *trailing)
    return LayerCase("ChannelShuffle", {"groups": g}, (shape,))


@st.composite
def padding_cases(
    draw,
    *,
    name: str | None = None,
    max_leading: int = 2,
    max_batch: int = 2,
    max_size: int = 4,
    max_pad: int = 4,
) -> LayerCase:
    """A padding layer (``name`` fixes one of :data:`PADDING_LAYERS`) with an int or a per-side
    tuple padding.  Constant and zero pads take any number of leading dimensions; reflection,
    replication and circular pads take (C, *) or (N, C, *).  Reflection padding is drawn below
    the side it pads, circular padding at most the side."""
    name = draw(st.sampled_from(PADDING_LAYERS)) if name is None else name
    nd = int(name[-2])
    sides = tuple(draw(st.integers(1, max_size)) for _ in range(nd))
    limit = [max_pad] * nd
    if name.startswith("Reflection"):
        limit = [min(max_pad, s - 1) for s in sides]
    elif name.startswith("Circular"):
        limit = [min(max_pad, s) for s in sides]
    # torch's order: (left, right) of the last axis, then (top, bottom), then (front, back)
    if draw(st.booleans()):
        padding: Any = draw(st.integers(0, min(limit)))
    else:
        padding = tuple(draw(st.integers(0, lim)) for lim in reversed(limit) for _ in range(2))
    kwargs: dict[str, Any] = {"padding": padding}
    if name.startswith("Constant"):
        kwargs["value"] = draw(st.sampled_from([0.0, -1.5, 2.0]))
    if name.startswith(("Zero", "Constant")):
        leading = _leading(draw, max_leading, max_batch)
    else:
        leading = (draw(st.integers(1, max_batch)),)  # C
        if draw(st.booleans()):
            leading = (draw(st.integers(1, max_batch)), *leading)  # N
    return LayerCase(name, kwargs, ((*leading, *sides),))


def _blocks(draw, max_kernel: int, max_extra: int) -> tuple[dict, tuple[int, int], tuple[int, int]]:
    """Fold/Unfold options (each an int or a pair), an image size they fit, and the number of
    sliding blocks along each axis."""
    options: dict[str, Any] = {}
    per_axis: dict[str, tuple[int, int]] = {}
    for key, low, high in (
        ("kernel_size", 1, max_kernel),
        ("dilation", 1, 2),
        ("padding", 0, 2),
        ("stride", 1, 3),
    ):
        if draw(st.booleans()):
            value = draw(st.integers(low, high))
            options[key], per_axis[key] = value, (value, value)
        else:
            pair = (draw(st.integers(low, high)), draw(st.integers(low, high)))
            options[key], per_axis[key] = pair, pair
    size, blocks = [], []
    for axis in range(2):
        k, d, p, s = (
            per_axis[key][axis] for key in ("kernel_size", "dilation", "padding", "stride")
        )
        span = d * (k - 1) + 1
        side = max(1, span - 2 * p) + draw(st.integers(0, max_extra))  # at least one block
        size.append(side)
        blocks.append((side + 2 * p - span) // s + 1)
    return options, (size[0], size[1]), (blocks[0], blocks[1])


@st.composite
def unfold_cases(
    draw, *, max_batch: int = 2, max_channels: int = 3, max_kernel: int = 3, max_extra: int = 4
) -> LayerCase:
    """``torch.nn.Unfold`` with kernel_size, dilation, padding, stride (ints or pairs), on a
    batched or unbatched image at least one block large."""
    options, (h, w), _ = _blocks(draw, max_kernel, max_extra)
    shape: tuple[int, ...] = (draw(st.integers(1, max_channels)), h, w)
    if draw(st.booleans()):
        shape = (draw(st.integers(1, max_batch)), *shape)
    return LayerCase("Unfold", options, (shape,))


@st.composite
def fold_cases(
    draw, *, max_batch: int = 2, max_channels: int = 3, max_kernel: int = 3, max_extra: int = 4
) -> LayerCase:
    """``torch.nn.Fold`` with output_size (int or pair), kernel_size, dilation, padding, stride
    (ints or pairs), on batched or unbatched (C*k_h*k_w, L) blocks, L the number of blocks."""
    options, (h, w), (b_h, b_w) = _blocks(draw, max_kernel, max_extra)
    kernel = options["kernel_size"]
    k_h, k_w = (kernel, kernel) if isinstance(kernel, int) else kernel
    output_size: Any = h if h == w and draw(st.booleans()) else (h, w)
    shape: tuple[int, ...] = (draw(st.integers(1, max_channels)) * k_h * k_w, b_h * b_w)
    if draw(st.booleans()):
        shape = (draw(st.integers(1, max_batch)), *shape)
    return LayerCase("Fold", {"output_size": output_size, **options}, (shape,))
