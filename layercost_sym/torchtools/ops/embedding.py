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

``embedding_renorm_`` (``max_norm``; in place, no decomposition) is counted *before* it runs
(``register_op(..., before=True)``), from the weights it is about to overwrite.  ATen's kernel
sorts the indices and visits every DISTINCT row once: ``norm = row.norm(p)``, one comparison
``norm > max_norm``, and only for a row above the bound ``scale = max_norm / (norm + 1e-7)`` (an
add and a divide) and ``row *= scale`` (``E`` multiplies).  The norm of ``E`` entries (ATen's
norm kernel): ``p = 2``: ``E`` squares, ``E - 1`` adds, a square root = ``2E``; ``p`` in
``{1, 0, inf, -inf}``: ``E`` abs (or ``!= 0``) and ``E - 1`` adds (or max / min) = ``2E - 1``; any
other ``p``: ``E`` abs, ``E`` powers, ``E - 1`` adds, a root = ``3E``.  Which rows exceed is
decided here exactly as the kernel decides it: the row's norm in the weight's dtype, as a double,
against ``max_norm``.
"""

from __future__ import annotations

import math

from ..optable import register_op

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


def norm_terms(p: float, dim: int) -> int:
    """Operations of ATen's ``p``-norm of ``dim`` entries (see the module docstring)."""
    if p == 2:
        return 2 * dim
    if p in (1, 0, math.inf, -math.inf):
        return 2 * dim - 1
    return 3 * dim


@register_op("embedding_renorm_", before=True)
def embedding_renorm(args: tuple, kwargs: dict, out) -> int:
    names = ("weight", "indices", "max_norm", "norm_type")
    a = {**dict(zip(names, args, strict=False)), **kwargs}
    weight, max_norm, p = a["weight"], float(a["max_norm"]), float(a["norm_type"])
    dim = weight.shape[1]
    total = 0
    for row in sorted(set(a["indices"].reshape(-1).tolist())):
        total += norm_terms(p, dim) + 1  # the norm and the comparison with max_norm
        if weight[row].norm(p).item() > max_norm:
            total += 2 + dim  # scale = max_norm / (norm + 1e-7), then row *= scale
    return total
