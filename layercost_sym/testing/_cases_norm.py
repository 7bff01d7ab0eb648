"""Hypothesis strategies for the normalisation family, valid by construction.

Every strategy draws a :class:`~layercost_sym.testing.strategies.LayerCase` for one torch.nn
normalisation class, covering the options torch offers (affine, track_running_stats, momentum,
eps, bias, normalized_shape of several dimensions, groups, unbatched input, ...).  Sizes are kept
small: statistics need at least two values, so a size that would leave only one is grown rather
than filtered.

>>> from layercost_sym.testing._cases_norm import layer_norm_cases
>>> case = layer_norm_cases().example()              # doctest: +SKIP
>>> case.name                                        # doctest: +SKIP
'LayerNorm'
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

from .case import LayerCase

__all__ = [
    "batchnorm1d_cases",
    "batchnorm3d_cases",
    "cross_map_lrn2d_cases",
    "group_norm_cases",
    "instance_norm_cases",
    "layer_norm_cases",
    "local_response_norm_cases",
    "rms_norm_cases",
    "sync_batchnorm_cases",
]


def _sizes(draw, count: int, max_size: int) -> list[int]:
    return [draw(st.integers(1, max_size)) for _ in range(count)]


def _batchnorm_kwargs(draw, channels: int) -> dict[str, Any]:
    return dict(
        num_features=channels,
        affine=draw(st.booleans()),
        track_running_stats=draw(st.booleans()),
        momentum=draw(st.sampled_from([0.1, 0.5, None])),
        eps=draw(st.sampled_from([1e-5, 1e-3])),
    )


def _batchnorm_case(
    draw,
    name: str,
    spatial_dims: int,
    max_batch: int,
    max_channels: int,
    max_size: int,
    training: bool | None,
) -> LayerCase:
    train = draw(st.booleans()) if training is None else training
    c = draw(st.integers(1, max_channels))
    kwargs = _batchnorm_kwargs(draw, c)
    n = draw(st.integers(1, max_batch))
    spatial = _sizes(draw, spatial_dims, max_size)
    if name == "BatchNorm1d" and draw(st.booleans()):
        spatial = []  # BatchNorm1d also takes (N, C)
    if (train or not kwargs["track_running_stats"]) and n * math.prod(spatial) < 2:
        n += 1  # batch statistics need more than one value per channel
    return LayerCase(name, kwargs, ((n, c, *spatial),), training=train)


@st.composite
def batchnorm1d_cases(
    draw,
    *,
    max_batch: int = 3,
    max_channels: int = 5,
    max_size: int = 5,
    training: bool | None = None,
) -> LayerCase:
    """``torch.nn.BatchNorm1d`` on (N, C, L) or (N, C) with affine, track_running_stats,
    momentum (incl. None), eps, in training or inference mode (drawn unless ``training`` is
    given)."""
    return _batchnorm_case(draw, "BatchNorm1d", 1, max_batch, max_channels, max_size, training)


@st.composite
def batchnorm3d_cases(
    draw,
    *,
    max_batch: int = 2,
    max_channels: int = 4,
    max_size: int = 3,
    training: bool | None = None,
) -> LayerCase:
    """``torch.nn.BatchNorm3d`` on (N, C, D, H, W), options as :func:`batchnorm1d_cases`."""
    return _batchnorm_case(draw, "BatchNorm3d", 3, max_batch, max_channels, max_size, training)


@st.composite
def sync_batchnorm_cases(
    draw,
    *,
    max_batch: int = 3,
    max_channels: int = 4,
    max_size: int = 3,
    training: bool | None = None,
) -> LayerCase:
    """``torch.nn.SyncBatchNorm`` (no process group: it runs plain batch norm on CPU) on
    (N, C, *) inputs of rank 2 to 5, options as :func:`batchnorm1d_cases`."""
    spatial_dims = draw(st.integers(0, 3))
    return _batchnorm_case(
        draw, "SyncBatchNorm", spatial_dims, max_batch, max_channels, max_size, training
    )


def _normalized_shape(draw, max_dims: int, max_size: int) -> tuple[tuple[int, ...], Any]:
    """The normalised trailing dimensions, and how they are passed (an int for one dim, or a
    list/tuple)."""
    dims = tuple(_sizes(draw, draw(st.integers(1, max_dims)), max_size))
    style = (
        draw(st.sampled_from(["int", "tuple", "list"]))
        if len(dims) == 1
        else draw(st.sampled_from(["tuple", "list"]))
    )
    return dims, dims[0] if style == "int" else (list(dims) if style == "list" else dims)


@st.composite
def layer_norm_cases(
    draw, *, max_leading: int = 3, max_dims: int = 3, max_size: int = 4
) -> LayerCase:
    """``torch.nn.LayerNorm`` with normalized_shape of 1 to ``max_dims`` trailing dimensions
    (int, tuple or list), elementwise_affine, bias, eps, on 0 to ``max_leading`` leading
    dimensions."""
    dims, shape_arg = _normalized_shape(draw, max_dims, max_size)
    leading = tuple(_sizes(draw, draw(st.integers(0, max_leading)), max_size))
    kwargs = dict(
        normalized_shape=shape_arg,
        eps=draw(st.sampled_from([1e-5, 1e-2])),
        elementwise_affine=draw(st.booleans()),
        bias=draw(st.booleans()),
    )
    return LayerCase("LayerNorm", kwargs, ((*leading, *dims),), training=draw(st.booleans()))


@st.composite
def rms_norm_cases(
    draw, *, max_leading: int = 3, max_dims: int = 3, max_size: int = 4
) -> LayerCase:
    """``torch.nn.RMSNorm`` with normalized_shape of 1 to ``max_dims`` trailing dimensions,
    eps None or a float, elementwise_affine, on 0 to ``max_leading`` leading dimensions."""
    dims, shape_arg = _normalized_shape(draw, max_dims, max_size)
    leading = tuple(_sizes(draw, draw(st.integers(0, max_leading)), max_size))
    kwargs = dict(
        normalized_shape=shape_arg,
        eps=draw(st.sampled_from([None, 1e-6, 1e-2])),
        elementwise_affine=draw(st.booleans()),
    )
    return LayerCase("RMSNorm", kwargs, ((*leading, *dims),), training=draw(st.booleans()))


@st.composite
def group_norm_cases(
    draw,
    *,
    max_batch: int = 3,
    max_groups: int = 3,
    max_per_group: int = 3,
    max_size: int = 4,
    max_trailing: int = 3,
) -> LayerCase:
    """``torch.nn.GroupNorm`` on (N, C, *) with 0 to ``max_trailing`` dimensions after the
    channels, num_groups dividing num_channels, affine and eps; without affine the input's
    channels may differ from num_channels (any multiple of num_groups), as torch allows."""
    g = draw(st.integers(1, max_groups))
    c = g * draw(st.integers(1, max_per_group))
    affine = draw(st.booleans())
    c_input = c if affine else g * draw(st.integers(1, max_per_group))
    n = draw(st.integers(1, max_batch))
    trailing = _sizes(draw, draw(st.integers(0, max_trailing)), max_size)
    if n * (c_input // g) * math.prod(trailing) < 2:  # a group needs more than one value
        trailing = [*trailing[:-1], trailing[-1] + 1] if trailing else [2]
    kwargs = dict(
        num_groups=g, num_channels=c, affine=affine, eps=draw(st.sampled_from([1e-5, 1e-3]))
    )
    shape = (n, c_input, *trailing)
    return LayerCase("GroupNorm", kwargs, (shape,), training=draw(st.booleans()))


@st.composite
def instance_norm_cases(
    draw,
    *,
    dims: int | None = None,
    max_batch: int = 3,
    max_channels: int = 4,
    max_size: int = 4,
    training: bool | None = None,
    unbatched: bool = True,
) -> LayerCase:
    """``torch.nn.InstanceNorm1d/2d/3d`` (``dims`` spatial dimensions, drawn unless given) with
    affine, track_running_stats, momentum (incl. None), eps, batched or unbatched input, in
    training or inference mode; with neither affine nor running stats the input's channels may
    differ from num_features (torch only warns)."""
    d = draw(st.integers(1, 3)) if dims is None else dims
    train = draw(st.booleans()) if training is None else training
    c = draw(st.integers(1, max_channels))
    kwargs = _batchnorm_kwargs(draw, c)
    plain = not kwargs["affine"] and not kwargs["track_running_stats"]
    c_input = draw(st.integers(1, max_channels)) if plain else c
    spatial = _sizes(draw, d, 3 if d == 3 else max_size)
    if (train or not kwargs["track_running_stats"]) and math.prod(spatial) < 2:
        spatial[-1] += 1  # input statistics need more than one spatial element
    shape: tuple[int, ...] = (c_input, *spatial)
    if not (unbatched and draw(st.booleans())):
        shape = (draw(st.integers(1, max_batch)), *shape)
    return LayerCase(f"InstanceNorm{d}d", kwargs, (shape,), training=train)


@st.composite
def local_response_norm_cases(
    draw, *, max_batch: int = 2, max_channels: int = 6, max_size: int = 3, max_window: int = 7
) -> LayerCase:
    """``torch.nn.LocalResponseNorm`` with size (window wider or narrower than C), alpha, beta,
    k, on (N, C, *) inputs of rank 3 to 5."""
    spatial = _sizes(draw, draw(st.integers(1, 3)), max_size)
    shape = (draw(st.integers(1, max_batch)), draw(st.integers(1, max_channels)), *spatial)
    kwargs = dict(
        size=draw(st.integers(1, max_window)),
        alpha=draw(st.sampled_from([1e-4, 0.5])),
        beta=draw(st.sampled_from([0.75, 2.0])),
        k=draw(st.sampled_from([1.0, 2.0])),
    )
    return LayerCase("LocalResponseNorm", kwargs, (shape,), training=draw(st.booleans()))


@st.composite
def cross_map_lrn2d_cases(
    draw, *, max_batch: int = 2, max_channels: int = 7, max_size: int = 3, max_window: int = 9
) -> LayerCase:
    """``torch.nn.CrossMapLRN2d`` on (N, C, H, W) with size (odd or even, up to wider than C),
    alpha, beta, k."""
    shape = (
        draw(st.integers(1, max_batch)),
        draw(st.integers(1, max_channels)),
        *_sizes(draw, 2, max_size),
    )
    kwargs = dict(
        size=draw(st.integers(1, max_window)),
        alpha=draw(st.sampled_from([1e-4, 0.5])),
        beta=draw(st.sampled_from([0.75, 2.0])),
        k=draw(st.sampled_from([1, 2])),
    )
    return LayerCase("CrossMapLRN2d", kwargs, (shape,), training=draw(st.booleans()))
