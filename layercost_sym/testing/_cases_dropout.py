"""Hypothesis strategies for the dropout family, valid by construction (no torch import).

>>> from layercost_sym.testing._cases_dropout import dropout_cases
>>> dropout_cases().example().name in ("Dropout", "AlphaDropout")   # doctest: +SKIP
True
"""

from __future__ import annotations

from hypothesis import strategies as st

from .case import LayerCase

__all__ = ["channel_dropout_cases", "dropout_cases"]

# The probabilities torch treats specially (0: identity, 1: input * 0) and ordinary ones.
_P = st.one_of(st.sampled_from([0.0, 1.0, 0.5]), st.floats(0.01, 0.99))

# Documented input rank (without batch) of each channel-wise form, and whether torch accepts the
# unbatched form (Dropout2d treats a 3-d input as (N, C, L); FeatureAlphaDropout treats any rank
# >= 2 as (N, C, ...): only their batched forms are covered by the rules).
_CHANNEL_FORMS = {
    "Dropout1d": (1, True),
    "Dropout2d": (2, False),
    "Dropout3d": (3, True),
    "FeatureAlphaDropout": (3, False),
}


@st.composite
def dropout_cases(
    draw,
    *,
    names: tuple[str, ...] = ("Dropout", "AlphaDropout"),
    max_rank: int = 4,
    max_size: int = 5,
    training: bool | None = None,
) -> LayerCase:
    """``torch.nn.Dropout`` / ``AlphaDropout`` with p (incl. 0 and 1) and inplace, on an input of
    any rank (0 to ``max_rank``), in training or eval mode (drawn unless ``training`` is given)."""
    name = draw(st.sampled_from(names))
    shape = tuple(draw(st.lists(st.integers(1, max_size), min_size=0, max_size=max_rank)))
    train = draw(st.booleans()) if training is None else training
    kwargs = dict(p=draw(_P), inplace=draw(st.booleans()))
    return LayerCase(name, kwargs, (shape,), training=train)


@st.composite
def channel_dropout_cases(
    draw,
    *,
    names: tuple[str, ...] = tuple(sorted(_CHANNEL_FORMS)),
    max_batch: int = 3,
    max_channels: int = 4,
    max_size: int = 4,
    training: bool | None = None,
) -> LayerCase:
    """``torch.nn.Dropout1d`` / ``Dropout2d`` / ``Dropout3d`` / ``FeatureAlphaDropout`` with p
    (incl. 0 and 1) and inplace, on (N, C, *spatial) input (unbatched (C, *spatial) where torch
    supports it), in training or eval mode (drawn unless ``training`` is given)."""
    name = draw(st.sampled_from(names))
    spatial, unbatched_ok = _CHANNEL_FORMS[name]
    shape = (
        draw(st.integers(1, max_channels)),
        *(draw(st.integers(1, max_size)) for _ in range(spatial)),
    )
    if not (unbatched_ok and draw(st.booleans())):
        shape = (draw(st.integers(1, max_batch)), *shape)
    train = draw(st.booleans()) if training is None else training
    kwargs = dict(p=draw(_P), inplace=draw(st.booleans()))
    return LayerCase(name, kwargs, (shape,), training=train)
