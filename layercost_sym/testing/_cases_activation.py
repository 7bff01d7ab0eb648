"""Hypothesis strategies for the activation and linear families, valid by construction.

Every strategy draws a :class:`~layercost_sym.testing.strategies.LayerCase` (no torch import):
the module's options are drawn first, then an input that fits them (an even halving dimension for
GLU, a channel dimension for PReLU, sizes whose product is the unflattened dimension, ...).  The
mode (training or eval) is drawn too: RReLU is random in training.

>>> from layercost_sym.testing._cases_activation import activation_cases
>>> activation_cases("Hardtanh").example().name   # doctest: +SKIP
'Hardtanh'
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

from .case import LayerCase

__all__ = [
    "ELEMENTWISE",
    "SOFTMAX_LIKE",
    "activation_cases",
    "bilinear_cases",
    "flatten_cases",
    "glu_cases",
    "identity_cases",
    "prelu_cases",
    "softmax2d_cases",
    "softmax_cases",
    "unflatten_cases",
]

ELEMENTWISE = (
    "CELU",
    "ELU",
    "GELU",
    "Hardshrink",
    "Hardsigmoid",
    "Hardswish",
    "Hardtanh",
    "LeakyReLU",
    "LogSigmoid",
    "Mish",
    "RReLU",
    "ReLU",
    "ReLU6",
    "SELU",
    "SiLU",
    "Sigmoid",
    "Softplus",
    "Softshrink",
    "Softsign",
    "Tanh",
    "Tanhshrink",
    "Threshold",
)
"""Activation classes that act per element on an input of any shape and have no parameters."""

SOFTMAX_LIKE = ("LogSoftmax", "Softmax", "Softmin")
"""Activation classes that normalise over one dimension ``dim``."""

_INPLACE = {
    "CELU",
    "ELU",
    "Hardsigmoid",
    "Hardswish",
    "Hardtanh",
    "LeakyReLU",
    "Mish",
    "RReLU",
    "ReLU",
    "ReLU6",
    "SELU",
    "SiLU",
    "Threshold",
}
_FLOATS = st.sampled_from([0.05, 0.5, 1.0, 1.5, 2.0])


def _options(draw, name: str) -> dict[str, Any]:
    """Constructor options of an elementwise activation (floats, as torch declares them)."""
    kwargs: dict[str, Any] = {}
    if name in ("ELU", "CELU"):
        kwargs["alpha"] = draw(_FLOATS)  # 1.0 included: CELU's decomposition differs there
    elif name == "GELU":
        kwargs["approximate"] = draw(st.sampled_from(["none", "tanh"]))
    elif name == "Hardtanh":
        low = draw(st.sampled_from([-3.0, -1.0, 0.0, 0.5]))
        kwargs.update(min_val=low, max_val=low + draw(st.sampled_from([0.5, 1.0, 6.0])))
    elif name == "Softplus":
        kwargs.update(beta=draw(_FLOATS), threshold=draw(st.sampled_from([0.5, 5.0, 20.0])))
    elif name == "Threshold":
        kwargs.update(
            threshold=draw(st.sampled_from([-1.0, 0.0, 0.1])),
            value=draw(st.sampled_from([0.0, 20.0, -2.0])),
        )
    elif name in ("Hardshrink", "Softshrink"):
        kwargs["lambd"] = draw(st.sampled_from([0.0, 0.5, 2.0]))
    elif name == "LeakyReLU":
        kwargs["negative_slope"] = draw(st.sampled_from([0.01, 0.2, 1.5]))
    elif name == "RReLU":
        lower = draw(st.sampled_from([0.0, 0.125, 0.3]))
        kwargs.update(lower=lower, upper=lower + draw(st.sampled_from([0.0, 0.2, 1.0])))
    if name in _INPLACE:
        kwargs["inplace"] = draw(st.booleans())
    return kwargs


def _shape(draw, min_rank: int, max_rank: int, max_size: int) -> tuple[int, ...]:
    sizes = st.integers(1, max_size)
    return tuple(draw(st.lists(sizes, min_size=min_rank, max_size=max_rank)))


@st.composite
def activation_cases(
    draw, name: str | None = None, *, max_rank: int = 4, max_size: int = 4
) -> LayerCase:
    """An elementwise activation of :data:`ELEMENTWISE` (``name``, or drawn) with its options
    (inplace too) on an input of any rank from 0 to ``max_rank``, in training or eval mode."""
    name = draw(st.sampled_from(ELEMENTWISE)) if name is None else name
    kwargs = _options(draw, name)
    shape = _shape(draw, 0, max_rank, max_size)
    return LayerCase(name, kwargs, (shape,), training=draw(st.booleans()))


@st.composite
def prelu_cases(draw, *, max_rank: int = 4, max_size: int = 4, max_channels: int = 5) -> LayerCase:
    """``torch.nn.PReLU`` with one weight (any input) or one per channel: an (N, C, *) input."""
    channels = draw(st.sampled_from([1, draw(st.integers(1, max_channels))]))
    if channels == 1:
        shape = _shape(draw, 0, max_rank, max_size)
    else:
        rest = _shape(draw, 0, max_rank - 2, max_size)
        shape = (draw(st.integers(1, max_size)), channels, *rest)
    kwargs = dict(num_parameters=channels, init=draw(st.sampled_from([0.25, -0.5])))
    return LayerCase("PReLU", kwargs, (shape,), training=draw(st.booleans()))


@st.composite
def softmax_cases(
    draw, name: str | None = None, *, max_rank: int = 4, max_size: int = 5
) -> LayerCase:
    """``Softmax``, ``LogSoftmax`` or ``Softmin`` over any ``dim`` of an input of rank 0 to
    ``max_rank`` (negative and non-negative dims)."""
    name = draw(st.sampled_from(SOFTMAX_LIKE)) if name is None else name
    shape = tuple(draw(st.lists(st.integers(1, max_size), min_size=0, max_size=max_rank)))
    rank = max(len(shape), 1)  # a 0-d input takes dim 0 or -1
    dim = draw(st.integers(-rank, rank - 1))
    return LayerCase(name, {"dim": dim}, (shape,), training=draw(st.booleans()))


@st.composite
def softmax2d_cases(draw, *, max_size: int = 4) -> LayerCase:
    """``torch.nn.Softmax2d`` on a (C, H, W) or (N, C, H, W) input."""
    shape = _shape(draw, 3, 4, max_size)
    return LayerCase("Softmax2d", {}, (shape,), training=draw(st.booleans()))


@st.composite
def glu_cases(draw, *, max_rank: int = 4, max_size: int = 4) -> LayerCase:
    """``torch.nn.GLU`` over any ``dim`` (negative or not) of an input of rank 1 to
    ``max_rank``, that dimension of even length."""
    shape = list(draw(st.lists(st.integers(1, max_size), min_size=1, max_size=max_rank)))
    dim = draw(st.integers(-len(shape), len(shape) - 1))
    shape[dim] = 2 * draw(st.integers(1, max_size))
    return LayerCase("GLU", {"dim": dim}, (tuple(shape),), training=draw(st.booleans()))


@st.composite
def bilinear_cases(
    draw, *, max_leading: int = 3, max_size: int = 4, max_features: int = 6
) -> LayerCase:
    """``torch.nn.Bilinear`` with or without bias on inputs (*, in1) and (*, in2) with the same
    0 to ``max_leading`` leading dimensions."""
    in1, in2, out = (draw(st.integers(1, max_features)) for _ in range(3))
    leading = _shape(draw, 0, max_leading, max_size)
    kwargs = dict(in1_features=in1, in2_features=in2, out_features=out, bias=draw(st.booleans()))
    return LayerCase(
        "Bilinear", kwargs, ((*leading, in1), (*leading, in2)), training=draw(st.booleans())
    )


@st.composite
def identity_cases(draw, *, max_rank: int = 4, max_size: int = 5) -> LayerCase:
    """``torch.nn.Identity`` (its constructor ignores any arguments) on an input of any rank."""
    kwargs = draw(st.sampled_from([{}, {"unused": 3}]))
    return LayerCase("Identity", kwargs, (_shape(draw, 0, max_rank, max_size),))


@st.composite
def flatten_cases(draw, *, max_rank: int = 5, max_size: int = 4) -> LayerCase:
    """``torch.nn.Flatten`` with any (start_dim, end_dim) torch accepts (each negative or not,
    start not after end) on an input of rank 1 to ``max_rank``, the default (1, -1) often, and
    (0, -1) / (-1, -1) also on a 0-d input."""
    if draw(st.integers(0, 5)) == 0:  # the default on a 4-d input (the CNN head)
        shape = _shape(draw, 4, 4, max_size)
        return LayerCase("Flatten", {}, (shape,), training=draw(st.booleans()))
    rank = draw(st.integers(0, max_rank))
    shape = _shape(draw, rank, rank, max_size)
    if rank == 0:  # torch flattens a 0-d input to 1-d; 0 and -1 are its dims
        start, end = draw(st.sampled_from([(0, -1), (-1, -1), (0, 0), (-1, 0)]))
    else:
        first = draw(st.integers(0, rank - 1))
        last = draw(st.integers(first, rank - 1))
        start = first - rank if draw(st.booleans()) else first
        end = last - rank if draw(st.booleans()) else last
    return LayerCase(
        "Flatten", {"start_dim": start, "end_dim": end}, (shape,), training=draw(st.booleans())
    )


@st.composite
def unflatten_cases(draw, *, max_rank: int = 4, max_size: int = 4, max_sizes: int = 8) -> LayerCase:
    """``torch.nn.Unflatten``: any ``dim`` (negative or not) of an input of rank 1 to
    ``max_rank``, split into 1 to ``max_sizes`` sizes (mostly small), one of them sometimes
    ``-1``; the split dimension is the product of the drawn sizes."""
    count = draw(st.integers(1, max_sizes))
    sizes = [draw(st.integers(1, max_size if count <= 3 else 2)) for _ in range(count)]
    rank = draw(st.integers(1, max_rank))
    dim = draw(st.integers(-rank, rank - 1))
    shape = [draw(st.integers(1, max_size)) for _ in range(rank)]
    shape[dim] = math.prod(sizes)
    if draw(st.booleans()):
        sizes[draw(st.integers(0, count - 1))] = -1  # inferred by torch from the others
    return LayerCase(
        "Unflatten",
        {"dim": dim, "unflattened_size": tuple(sizes)},
        (tuple(shape),),
        training=draw(st.booleans()),
    )
