"""Hypothesis strategies for the distance family (no torch import).

>>> from layercost_sym.testing._cases_distance import cosine_similarity_cases
>>> cosine_similarity_cases().example().name                  # doctest: +SKIP
'CosineSimilarity'
"""

from __future__ import annotations

from hypothesis import strategies as st

from .case import LayerCase

__all__ = ["cosine_similarity_cases"]


@st.composite
def cosine_similarity_cases(draw, *, max_rank: int = 4, max_size: int = 4) -> LayerCase:
    """``torch.nn.CosineSimilarity`` over any ``dim`` (negative or not) of two inputs of the
    same shape, rank 1 to ``max_rank``, with eps."""
    shape = tuple(draw(st.lists(st.integers(1, max_size), min_size=1, max_size=max_rank)))
    dim = draw(st.integers(-len(shape), len(shape) - 1))
    kwargs = {"dim": dim, "eps": draw(st.sampled_from([1e-8, 1e-3]))}
    return LayerCase("CosineSimilarity", kwargs, (shape, shape), training=draw(st.booleans()))
