"""Counting rules for the attention family's operators.

``aten._safe_softmax`` is the softmax of the math backend of ``scaled_dot_product_attention``
(and so of ``MultiheadAttention`` with ``need_weights=False`` and the transformer layers).  Its
decomposition in ``torch._decomp`` calls ``torch.softmax``, which reaches the counter as
``aten.softmax.int``, an op with no decomposition of its own; so the decomposition is replayed
here with that call written as what ``softmax.int`` is, ``aten._softmax`` (after the optional
dtype cast), counted per row as the counter counts those operators (derivation beside it).
"""

from __future__ import annotations

from ..optable import register_op

__all__: list[str] = []


@register_op("_safe_softmax")
def _count_safe_softmax(args: tuple, kwargs: dict, out) -> int:
    # torch._decomp's safe_softmax: out = softmax(x, dim, dtype); rows of x that are all -inf
    # become 0: where(all(x == -inf, dim, keepdim), 0, out).  Per row of n terms: softmax
    # (amax n-1, sub n, exp n, sum n-1, div n) then eq n, all n-1, where n: 8n - 3 (the dtype
    # cast and zeros_like move data)
    x, dim = args[0], args[1]
    n = x.shape[dim] if x.dim() else 1
    rows = x.numel() // n if n else 0
    return rows * (8 * n - 3)
