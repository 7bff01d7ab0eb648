"""Hypothesis strategies for the embedding family, valid by construction (no torch import).

Index tensors are either random (``LayerCase.integer_inputs``: values below ``num_embeddings``)
or literal (``LayerCase.literal_inputs``), when a case needs to control the values: EmbeddingBag
offsets (sorted, from 0), indices that avoid ``padding_idx``, distinct indices.

>>> from layercost_sym.testing._cases_embedding import embedding_bag_cases
>>> embedding_bag_cases().example().name                  # doctest: +SKIP
'EmbeddingBag'
"""

from __future__ import annotations

import math

from hypothesis import strategies as st

from .case import LayerCase

__all__ = ["embedding_bag_cases", "embedding_cases"]

# ATen's norm kernel has special cases for these p (see formulas/embedding.toml).
NORM_TYPES = (2.0, 1.0, 0.0, math.inf, -math.inf, 3.0, 0.5)


def _table(draw, max_rows: int, max_dim: int) -> dict:
    """num_embeddings, embedding_dim, padding_idx (None, or in [-V, V) for V >= 2),
    scale_grad_by_freq and sparse (neither changes the forward)."""
    rows, dim = draw(st.integers(1, max_rows)), draw(st.integers(1, max_dim))
    padding = draw(st.one_of(st.none(), st.integers(-rows, rows - 1))) if rows >= 2 else None
    return dict(
        num_embeddings=rows,
        embedding_dim=dim,
        padding_idx=padding,
        scale_grad_by_freq=draw(st.booleans()),
        sparse=draw(st.booleans()),
    )


def _renorm(draw, max_norm: bool | str) -> dict:
    """max_norm None (False), drawn (True) or tiny, so that every nonzero row exceeds it
    ("exceed"); norm_type drawn among the p the rules distinguish."""
    if not max_norm:
        return dict(max_norm=None, norm_type=draw(st.sampled_from(NORM_TYPES)))
    value = 1e-20 if max_norm == "exceed" else draw(st.sampled_from([1e-20, 0.5, 1.0, 2.0, 1e20]))
    return dict(max_norm=value, norm_type=draw(st.sampled_from(NORM_TYPES)))


@st.composite
def embedding_cases(
    draw,
    *,
    max_rows: int = 12,
    max_dim: int = 6,
    max_rank: int = 3,
    max_size: int = 4,
    max_norm: bool | str = False,
    distinct: bool = False,
) -> LayerCase:
    """``torch.nn.Embedding`` with padding_idx, scale_grad_by_freq, sparse, norm_type and
    max_norm (None unless ``max_norm``; ``"exceed"``: tiny) on an index tensor of any rank (0 to
    ``max_rank``).  ``distinct``: literal indices, all different and none the padding row (needs
    no padding_idx), so that renormalisation visits Min(N, V) = N rows."""
    kwargs = _table(draw, max_rows, max_dim)
    kwargs.update(_renorm(draw, max_norm))
    rows = kwargs["num_embeddings"]
    if distinct:
        kwargs["padding_idx"] = None
        values = draw(st.permutations(range(rows)))
        count = draw(st.integers(1, rows))
        return LayerCase(
            "Embedding",
            kwargs,
            ((count,),),
            literal_inputs={0: tuple(values[:count])},
            training=draw(st.booleans()),
        )
    shape = tuple(draw(st.lists(st.integers(1, max_size), min_size=0, max_size=max_rank)))
    return LayerCase(
        "Embedding", kwargs, (shape,), integer_inputs={0: rows}, training=draw(st.booleans())
    )


@st.composite
def embedding_bag_cases(
    draw,
    *,
    modes: tuple[str, ...] = ("sum", "mean", "max"),
    max_rows: int = 10,
    max_dim: int = 5,
    max_indices: int = 12,
    max_norm: bool | str = False,
    clean: bool = True,
    per_sample_weights: bool | None = False,
    two_d: bool | None = False,
    max_bags: int = 4,
    max_bag_size: int = 4,
) -> LayerCase:
    """``torch.nn.EmbeddingBag`` called as ``bag(indices, offsets)`` (1-d indices, sorted
    offsets from 0) or, with ``two_d`` (None: drawn), as ``bag(indices)`` on 2-d indices (B bags
    of L, no offsets; at most ``max_bags`` x ``max_bag_size``), with mode, include_last_offset,
    padding_idx, scale_grad_by_freq, sparse, norm_type and max_norm (None unless ``max_norm``).

    ``clean``: every bag non-empty and no index equal to padding_idx (where the rules are exact);
    otherwise bags may be empty and indices may hit the padding row.  ``per_sample_weights``
    (mode 'sum' only; None: drawn) is recorded in ``notes``: a test passes the weights tensor
    itself, since it is a forward argument, not a shape.
    """
    mode = draw(st.sampled_from(modes))
    kwargs = _table(draw, max_rows, max_dim)
    kwargs.update(_renorm(draw, max_norm), mode=mode, include_last_offset=draw(st.booleans()))
    if mode == "max":  # torch's max mode rejects both in forward
        kwargs.update(sparse=False, scale_grad_by_freq=False)
    rows, padding = kwargs["num_embeddings"], kwargs["padding_idx"]
    pad_row = None if padding is None else padding % rows
    allowed = [i for i in range(rows) if not (clean and i == pad_row)]
    weighted = (
        (mode == "sum" and draw(st.booleans()))
        if per_sample_weights is None
        else (per_sample_weights and mode == "sum")
    )
    if draw(st.booleans()) if two_d is None else two_d:  # B bags of L indices, no offsets
        shape = (draw(st.integers(1, max_bags)), draw(st.integers(1, max_bag_size)))
        size = shape[0] * shape[1]
        values = draw(st.lists(st.sampled_from(allowed), min_size=size, max_size=size))
        return LayerCase(
            "EmbeddingBag",
            kwargs,
            (shape,),
            literal_inputs={0: tuple(values)},
            notes={"per_sample_weights": weighted},
            training=draw(st.booleans()),
        )
    values = draw(st.lists(st.sampled_from(allowed), min_size=1, max_size=max_indices))
    n = len(values)
    if clean:  # strictly increasing starts: every bag holds at least one index
        bags = draw(st.integers(1, n))
        starts = [
            0,
            *sorted(
                draw(st.sets(st.integers(1, n - 1), min_size=bags - 1, max_size=bags - 1))
                if n > 1
                else []
            ),
        ]
    else:
        starts = [0, *sorted(draw(st.lists(st.integers(0, n), min_size=0, max_size=n)))]
    offsets = (*starts, n) if kwargs["include_last_offset"] else tuple(starts)
    return LayerCase(
        "EmbeddingBag",
        kwargs,
        ((n,), (len(offsets),)),
        literal_inputs={0: tuple(values), 1: offsets},
        notes={"per_sample_weights": weighted},
        training=draw(st.booleans()),
    )
