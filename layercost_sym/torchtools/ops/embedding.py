"""Counting rules for the embedding family (Embedding, EmbeddingBag).

``embedding`` itself (a row lookup) is data movement in :data:`~..opcount.OP_TABLE`.

* ``_embedding_bag`` / ``_embedding_bag_forward_only`` (EmbeddingBag's kernel; no decomposition in
  torch): bag ``j`` holds the indices ``offsets[j] : offsets[j + 1]`` (the last bag runs to the end
  of ``indices``, or, with ``include_last_offset``, ``offsets`` has one more entry that closes the
  last bag).  Entries equal to ``padding_idx`` are skipped.  For a bag of ``c > 0`` remaining
  entries and embedding dimension ``E``:

  - ``sum``:  a ``c``-term reduction per output element, ``(c - 1) * E`` adds, plus ``c * E``
    multiplies when ``per_sample_weights`` scale the rows;
  - ``mean``: the sum and one divide per output element, ``c * E``;
  - ``max``:  a ``c``-term max per output element, ``(c - 1) * E`` comparisons.

  An empty bag (``c = 0``) is filled with zeros: data movement.

``embedding_renorm_`` (``max_norm``) is deliberately *not* registered: its work depends on which
rows exceed ``max_norm`` *before* the in-place call, and a counting function only sees the
arguments after the op has run (a renormalised row and a row already at ``max_norm`` look the
same), so it cannot be counted exactly; the counter raises ``UncountedOpError`` for it rather than
guess.
"""

from __future__ import annotations

from ..opcount import register_op

_SUM, _MEAN, _MAX = 0, 1, 2
_DEFAULTS = (None, None, None, False, _SUM, False, None, False, -1)
_NAMES = (
    "weight",
    "indices",
    "offsets",
    "scale_grad_by_freq",
    "mode",
    "sparse",
    "per_sample_weights",
    "include_last_offset",
    "padding_idx",
)


def _arguments(args: tuple, kwargs: dict) -> dict:
    values = dict(zip(_NAMES, _DEFAULTS, strict=True))
    values.update(zip(_NAMES, args, strict=False))
    values.update(kwargs)
    return values


@register_op("_embedding_bag", "_embedding_bag_forward_only")
def embedding_bag(args: tuple, kwargs: dict, out) -> int:
    a = _arguments(args, kwargs)
    dim = a["weight"].shape[1]
    indices = a["indices"].reshape(-1).tolist()
    offsets = a["offsets"].reshape(-1).tolist()
    ends = offsets[1:] if a["include_last_offset"] else [*offsets[1:], len(indices)]
    starts = offsets[: len(ends)]
    pad = a["padding_idx"] if a["padding_idx"] is not None else -1
    weighted = a["per_sample_weights"] is not None
    total = 0
    for start, end in zip(starts, ends, strict=True):
        c = sum(1 for i in indices[start:end] if i != pad)
        if c == 0:
            continue  # an empty bag is zeros
        if a["mode"] == _MEAN:
            total += c * dim
        else:
            total += (c - 1) * dim
            if weighted:
                total += c * dim
    return total
