"""One attention layer, every variant a user meets: ``attention`` (multi-head, grouped-query and
multi-query; bidirectional, causal and sliding-window masks; queries against a longer key/value
sequence: decode against a cache, cross-attention) and ``mla`` (DeepSeek's multi-head latent
attention, with its compressed cache).

A layer here is its projections and its core: ``lc.count`` of the torch module it mirrors is
the cost (the mask, the rotary cos/sin and the cache are the model's inputs to the layer, made
once per forward and shared by every layer; their own making is not counted).  The core is
``F.scaled_dot_product_attention`` on the math backend (its rule,
``scaled_dot_product_attention``), which computes every (query, key) score whatever the mask;
a mask is a boolean (or additive float) ``(n_q, n_kv)`` tensor, aligned as a cache aligns it:
the ``n_q`` queries are the last positions of the ``n_kv`` keys, so query ``i`` sits at
position ``n_kv - n_q + i`` and sees the keys up to it (causal), or the last ``window`` of
them (sliding, as transformers' ``sliding_window``).  (One decoded token keeps every key
under a causal mask: ``mask="none"`` is the same pairs without the mask's kernels, what
transformers runs when it passes no mask.)

Two conventions of FLOPs tell the masked work apart: ``exact`` is what the kernel executes (the
full square, plus the mask's conversion and addition), ``useful`` only the work of the pairs
the mask keeps (their scores, softmax and weighted values; the scales and projections in
full).  :func:`masked_work` is their difference, a formula.

>>> import layercost_sym as lc
>>> a = lc.architecture("attention", d_model=8, n_head=4, n_kv_head=2, head_dim=2, n_q=3,
...                     n_kv=5, mask="sliding", window=2)
>>> a.params, a.at(N=1).cost("exact"), a.at(N=1).cost("useful")
(192, 2299, 1684)
>>> masked_work(a.at(N=1))    # 4 heads x (15 - 6) dropped pairs x (4*2 + 7), the mask 15 + 4*15
615
>>> masked_work(lc.architecture("attention", mask="causal"))  # dropped pairs, mask kernels
N*n_head*n_q*(4*head_dim + 7)*(n_q - 1)/2 + n_kv*n_q*(N*n_head + 1)

(See :func:`pairs` for the kept pairs.)  ``bytes`` (``eager``) is stated for both: each
kernel's reads and writes, as the rules count them, with the copies torch makes where the
heads' transposed views reach a matmul (``e_a`` the activations' element size, ``e_w`` the
weights').
"""

from __future__ import annotations

from typing import Any

import sympy

from ..composition import Cost, Part, symbols
from ..domain import Condition, with_domain
from ..errors import ArchitectureError
from . import Hyperparameter, register
from .transformers import _check, _rms_norm, _rule

__all__ = ["attention", "masked_work", "mla", "mla_sizes", "pairs"]

_N = symbols("N")  # the batch: the glossary's symbol, so it meets the rules' N
_e_a = symbols("e_a")  # bytes per activation element: the glossary's, as the rules name it
# the math backend computes 16-bit inputs in float32
_e_math = sympy.Piecewise((4, _e_a < 4), (_e_a, True))
_FLOPS = ("exact", "macs", "torch", "useful")  # the conventions these compositions prove
_MASKS = ("none", "causal", "sliding")
_EAGER = ("bytes", "eager")


def _triangle(x: Any) -> sympy.Expr:
    """``1 + 2 + ... + x``: the keys seen by the queries at positions ``0..x-1``, causal."""
    return x * (x + 1) / 2


def pairs(n_q: Any, n_kv: Any, mask: str, window: Any = None) -> sympy.Expr:
    """The (query, key) pairs a mask keeps, per head: queries at positions ``n_kv - n_q ..
    n_kv - 1``, each seeing the keys up to its own (``causal``) or the last ``window`` of them
    (``sliding``: ``min(position + 1, window)``); ``none`` keeps all ``n_q n_kv``.

    >>> pairs(4, 4, "causal"), pairs(1, 9, "causal"), pairs(4, 4, "sliding", 2)  # 10, 9, 1+2+2+2
    (10, 9, 7)
    >>> n_q, n_kv, w = symbols("n_q n_kv window")
    >>> pairs(n_q, n_kv, "sliding", w)  # doctest: +NORMALIZE_WHITESPACE
    Piecewise((n_q*(2*n_kv - n_q + 1)/2, n_kv <= window),
              (Piecewise((n_q*window, window <= n_kv - n_q),
                         (window*(n_kv - window) + window*(window + 1)/2
                          - (n_kv - n_q)*(n_kv - n_q + 1)/2, True)), True))

    (No row clipped by the window; else every row clipped; else the rows between.)
    """
    if mask not in _MASKS:
        raise ArchitectureError(f"mask {mask!r} is not one of {', '.join(_MASKS)}")
    n_q, n_kv = sympy.sympify(n_q), sympy.sympify(n_kv)
    if mask == "none":
        return n_q * n_kv
    before = n_kv - n_q  # keys before the first query's position
    causal = sympy.factor(_triangle(n_kv) - _triangle(before))
    if mask == "causal":
        return causal
    if window is None:
        raise ArchitectureError("a sliding mask needs its window")
    w = sympy.sympify(window)
    between = _triangle(w) - _triangle(before) + (n_kv - w) * w
    # nested two-way choices: the form the catalogue's grammar (and a card) writes
    clipped = sympy.Piecewise((n_q * w, before >= w), (between, True))
    return sympy.Piecewise((causal, n_kv <= w), (clipped, True))


def _only(cost: Cost, *keep: tuple[str, str]) -> Cost:
    """The cost with only the quantities these compositions prove (params, the FLOPs
    conventions, and ``keep``)."""
    wanted = {("params", "count"), *(("flops", c) for c in _FLOPS), *keep}
    parts = [
        Part(p.name, {k: v for k, v in p.values.items() if k in wanted}, p.rule) for p in cost.parts
    ]
    return Cost(parts, cost.output_shape, cost.conditions)


def _useful(cost: Cost, useful: Any) -> Cost:
    """``cost`` (one part) with its ``useful`` FLOPs replaced."""
    (part,) = cost.parts
    values = {**part.values, ("flops", "useful"): sympy.sympify(useful)}
    return Cost([Part(part.name, values, part.rule)], cost.output_shape, cost.conditions)


def _movement(name: str, moved: Any) -> Cost:
    """Data movement (copies, concatenation): no FLOPs, ``moved`` bytes read and written."""
    zero = sympy.Integer(0)
    values = {**{("flops", c): zero for c in _FLOPS}, ("bytes", "eager"): sympy.sympify(moved)}
    return Cost([Part(name, {("params", "count"): zero, **values})])


def _core(
    n_q: Any,
    n_kv: Any,
    heads: Any,
    kv_heads: Any,
    d_qk: Any,
    d_v: Any,
    mask: str,
    window: Any,
    mask_input: str,
) -> Cost:
    """The math backend's core (rule ``scaled_dot_product_attention``, keys and values
    repeated to every query head first when there are fewer), and the mask: a boolean one made
    float (``where`` over its ``n_q n_kv`` entries, two 0-d scalars) and added to every score,
    an additive float one added, or ``is_causal`` (the rule's own).  ``useful`` keeps the
    scales and, per kept pair, its score, softmax and weighted value."""
    rows, kv_rows = _N * heads, _N * kv_heads
    causal = int(mask_input == "is_causal")
    gqa = 0 if sympy.simplify(heads - kv_heads) == 0 else 1
    core = _rule(
        "scaled_dot_product_attention", "attention.core", N=rows, N_kv=kv_rows, Q=n_q, S=n_kv,
        E=d_qk, E_v=d_v, causal=causal, gqa=gqa,
    )  # fmt: skip
    # the rule's exact at causal = 0 is scales + rows (n_q n_kv (2 d_qk + 7 + 2 d_v) - n_q (3 +
    # d_v)); the kept pairs alone: the square replaced by the pairs, and no mask arithmetic
    square = n_q * n_kv
    kept = pairs(n_q, n_kv, mask, window)
    unmasked = _rule(
        "scaled_dot_product_attention", "attention.core", N=rows, N_kv=kv_rows, Q=n_q, S=n_kv,
        E=d_qk, E_v=d_v, causal=0, gqa=gqa,
    ).parts[0].values[("flops", "exact")]  # fmt: skip
    useful = unmasked - rows * (square - kept) * (2 * d_qk + 7 + 2 * d_v)
    out = _only(_useful(core, useful), ("bytes", "eager"))
    if mask == "none" or causal:
        return out
    scores = rows * square
    # the mask is made in the inputs' dtype (1-byte bools read), the scores are in float32 for
    # 16-bit inputs: add reads both and writes the scores
    added = 2 * scores * _e_math + square * _e_a
    if mask_input == "bool":  # where(mask, 0, -inf) with two 0-d scalar tensors
        flops = {"exact": square + scores}
        moved = 2 * _e_a + (square + 2 * _e_a + square * _e_a) + added
    else:
        flops = {"exact": scores}
        moved = added
    zero = sympy.Integer(0)
    values = {
        ("params", "count"): zero,
        ("flops", "exact"): sympy.sympify(flops["exact"]),
        **{("flops", c): zero for c in ("macs", "torch", "useful")},
        ("bytes", "eager"): sympy.sympify(moved),
    }
    return out + Cost([Part("attention.mask", values)])


def masked_work(architecture: Any) -> sympy.Expr:
    """``exact - useful`` of an architecture (or cost), part by part: the work the kernel
    spends on the pairs its mask drops (each a score, its softmax and its weighted values),
    and on the mask itself (made float, added to every score), as one formula.

    >>> import layercost_sym as lc
    >>> masked_work(lc.architecture("attention", mask="none"))
    0
    >>> masked_work(lc.architecture("attention", mask="causal", n_q=1))  # decode: nothing dropped
    n_kv*(N*n_head + 1)
    """
    architecture.cost("useful")  # one clear error where a part does not state it
    parts = architecture.parts
    total = sympy.Add(
        *(sympy.factor(p.values[("flops", "exact")] - p.values[("flops", "useful")]) for p in parts)
    )
    return with_domain(total, architecture.domain_of("flops"))


def _order(n_q: Any, n_kv: Any, origin: str) -> tuple[Condition, ...]:
    """Masked queries, and queries after a cache, are the last positions of the keys:
    ``n_q <= n_kv``."""
    cond = sympy.Le(sympy.sympify(n_q), sympy.sympify(n_kv))
    if cond is sympy.true:
        return ()
    if cond is sympy.false:
        raise ArchitectureError(
            f"{origin}: the queries are the last n_q of the n_kv positions (a mask or a cache): "
            f"needs n_q <= n_kv, got n_q={n_q}, n_kv={n_kv}"
        )
    return (
        Condition(
            cond, "n_q <= n_kv", "the queries are the last n_q of the n_kv positions", origin
        ),
    )


_SHARED = (
    Hyperparameter("n_q", "queries: the tokens this call processes (1 to decode one token)"),
    Hyperparameter("n_kv", "keys and values attended to (context, or cache plus the new tokens)"),
    Hyperparameter("d_model", "width of the residual stream (hidden size)"),
    Hyperparameter("n_head", "query heads"),
    Hyperparameter(
        "window", "sliding window: keys each query sees, its own included (mask='sliding')"
    ),
)


def _with(defaults: dict[str, Any], *extra: Hyperparameter) -> tuple[Hyperparameter, ...]:
    from dataclasses import replace

    return (*(replace(h, default=defaults[h.name]) for h in _SHARED), *extra)


@register(
    "attention",
    # Mistral-7B-v0.1 config.json: hidden_size 4096, num_attention_heads 32,
    # num_key_value_heads 8, head_dim 128 (4096 / 32), sliding_window 4096; 4096 tokens
    hyperparameters=_with(
        dict(n_q=4096, n_kv=4096, d_model=4096, n_head=32, window=4096),
        Hyperparameter(
            "n_kv_head", "key/value heads: n_head (MHA), 1 (MQA), between (GQA)", default=8
        ),
        Hyperparameter("head_dim", "width of each head", default=128),
        Hyperparameter("mask", "which pairs are attended", choices=_MASKS, default="causal"),
        Hyperparameter(
            "mask_input",
            "how the kernel gets the mask: a bool or additive float (n_q, n_kv) "
            "tensor, or is_causal (torch's tril: needs n_q = n_kv)",
            choices=("bool", "float", "is_causal"),
            default="bool",
        ),
        Hyperparameter(
            "kv_from",
            "keys and values projected from a context of n_kv tokens (self- or "
            "cross-attention), or from the n_q new tokens appended to a cache of n_kv - n_q",
            choices=("context", "cache"),
            default="context",
        ),
        Hyperparameter(
            "bias",
            "biases on the four projections (1, True) or none (0)",
            choices=(0, 1),
            default=0,
        ),
    ),
    defaults_from="Mistral 7B: mistralai/Mistral-7B-v0.1 config.json",
    mirrors=(
        "q, k, v = nn.Linear(d_model, n_head*head_dim), nn.Linear(d_model, n_kv_head*head_dim) "
        "x2 (bias=bias) on x (N, n_q, d_model) and the context (N, n_kv, d_model) or the new "
        "tokens (kv_from='cache': torch.cat to the cached (N, n_kv_head, n_kv - n_q, head_dim) "
        "keys and values), each .view(N, L, heads, head_dim).transpose(1, 2); "
        "F.scaled_dot_product_attention (math backend) with attn_mask (n_q, n_kv) or is_causal "
        "and enable_gqa=(n_kv_head < n_head); output .transpose(1, 2).reshape(N, n_q, "
        "n_head*head_dim) through nn.Linear(n_head*head_dim, d_model)"
    ),
)
def attention(
    n_q: Any, n_kv: Any, d_model: Any, n_head: Any, window: Any, n_kv_head: Any, head_dim: Any,
    mask: str, mask_input: str, kv_from: str, bias: int, **_: Any,
) -> Cost:  # fmt: skip
    """Multi-head attention with ``n_kv_head`` key/value heads (grouped-query; 1: multi-query;
    ``n_head``: multi-head), each ``head_dim`` wide, under a mask.

    Parts: ``attention.q``, ``attention.k``, ``attention.v``, ``attention.o`` (the
    projections), ``attention.cache`` (kv_from='cache': the concatenation, data movement),
    ``attention.core`` (the math backend), ``attention.mask`` (a mask tensor made float and
    added), ``attention.layout`` (the copies matmul makes of the heads' transposed views, and
    of the output; data movement).

    >>> import layercost_sym as lc
    >>> decode = lc.architecture("attention", n_q=1, kv_from="cache", mask="causal")
    >>> decode.breakdown("macs")["attention.core"]    # one token against n_kv keys, every head
    (0, 2*N*head_dim*n_head*n_kv)
    >>> decode.breakdown("macs")["attention.k"][1]   # only the new token is projected
    N*d_model*head_dim*n_kv_head
    """
    _check(n_head=n_head, n_kv_head=n_kv_head)
    if mask_input == "is_causal" and mask != "causal":
        raise ArchitectureError(f"mask_input='is_causal' is torch's causal mask, not {mask!r}")
    conditions: tuple[Condition, ...] = ()
    if mask != "none" or kv_from == "cache":
        conditions += _order(n_q, n_kv, "attention")
    if mask_input == "is_causal":  # torch's tril is aligned to the first key: n_q = n_kv only
        same = sympy.Eq(sympy.sympify(n_q), sympy.sympify(n_kv))
        if same is sympy.false:
            raise ArchitectureError(f"is_causal needs n_q = n_kv (torch's tril), got {n_q}, {n_kv}")
        if same is not sympy.true:
            conditions += (
                Condition(
                    same, "n_q == n_kv", "is_causal aligns the mask to the first key", "attention"
                ),
            )
    b = int(bool(bias))
    width, kv_width = n_head * head_dim, n_kv_head * head_dim
    projected = _N * (n_kv if kv_from == "context" else n_q)  # rows k and v are projected for

    def linear(part: str, c_in: Any, c_out: Any, rows: Any) -> Cost:
        return _only(_rule("Linear", part, C_in=c_in, C_out=c_out, N=rows, b=b), ("bytes", "eager"))

    cost = (
        linear("attention.q", d_model, width, _N * n_q)
        + linear("attention.k", d_model, kv_width, projected)
        + linear("attention.v", d_model, kv_width, projected)
    )
    if kv_from == "cache":  # cat of the cache and the new keys (values): read both, write n_kv
        cost += _movement("attention.cache", 2 * 2 * _N * kv_width * n_kv * _e_a)
    cost += _core(n_q, n_kv, n_head, n_kv_head, head_dim, head_dim, mask, window, mask_input)
    cost += _movement("attention.layout", _layout(n_q, n_kv, n_head, n_kv_head, head_dim, kv_from))
    cost += linear("attention.o", width, d_model, _N * n_q)
    return Cost(cost.parts, None, (*cost.conditions, *conditions))


def _layout(n_q: Any, n_kv: Any, heads: Any, kv_heads: Any, d: Any, kv_from: str) -> sympy.Expr:
    """Bytes of the copies of the heads' views: ``view(N, L, heads, d).transpose(1, 2)`` keeps
    the ``(N, L, heads, d)`` layout through the scales, and matmul folding ``(N, heads)`` into
    one batch copies it unless ``N``, ``heads`` or ``L`` is 1 (then it is a view): the query
    always, keys and values where nothing made them contiguous before (neither the cache's cat
    nor enable_gqa's repeat); the output ``transpose(1, 2).reshape`` copies unless ``n_q`` or
    the heads are 1.  The copies before the output's are of the float32 tensors the math
    backend computes 16-bit inputs in."""
    # keys and values from a context: without enable_gqa (as many key/value as query heads)
    kv = sympy.Piecewise((2 * _copied(heads, n_kv, d), sympy.Eq(heads, kv_heads)), (0, True))
    out = (_copied(heads, n_q, d) + (kv if kv_from == "context" else 0)) * _e_math
    return out + _output_copy(n_q, heads, d)


def _copied(heads: Any, length: Any, d: Any) -> sympy.Expr:
    """Elements matmul reads and writes copying a ``(N, length, heads, d)`` layout viewed as
    ``(N, heads, length, d)`` to fold ``(N, heads)`` into one batch: none where ``N``, the
    heads or the length is 1 (a view)."""
    single = sympy.Eq(_N, 1) | sympy.Eq(heads, 1) | sympy.Eq(length, 1)
    return sympy.Piecewise((0, single), (2 * _N * heads * length * d, True))


def _output_copy(n_q: Any, heads: Any, d: Any) -> sympy.Expr:
    """Bytes of the output's ``transpose(1, 2)`` made contiguous (a view for one query or
    one head)."""
    single = sympy.Eq(n_q, 1) | sympy.Eq(heads, 1)
    return sympy.Piecewise((0, single), (2 * _N * heads * n_q * d * _e_a, True))


def _moved(rule: str, e_in: Any = _e_a, e_out: Any = _e_a, **shape: Any) -> sympy.Expr:
    """Eager bytes of one catalogue kernel, its operands' sizes and element sizes bound."""
    return _rule(rule, rule, e_a=e_in, e_o=e_out, **shape).quantity(*_EAGER)


def _rms_norm_eager(part: str, rows: Any, d: Any) -> Cost:
    """DeepseekV3RMSNorm over ``rows`` rows of ``d`` (``_rms_norm``) with its kernels' bytes:
    pow, mean, + eps, rsqrt, x * rrms in float32 whatever the input (``_to_copy`` there and
    back where ``e_a != 4``), then weight (read at ``e_w``, the rule reads ``e_a``) times x."""
    width, f = rows * d, 4
    inner = (
        _moved("pow", f, f, N=width, N_1=width, N_2=0)
        + _moved("mean", f, f, N=rows, N_in=width)
        + _moved("add", f, f, N=rows, N_1=rows, N_2=0)
        + _moved("rsqrt", f, f, N=rows)
        + _moved("mul", f, f, N=width, N_1=width, N_2=rows, x_2=1)
    )
    casts = _moved("_to_copy", _e_a, f, N=width) + _moved("_to_copy", f, _e_a, N=width)
    weighted = _moved("mul", N=width, N_1=0, N_2=width, x_2=1) + d * symbols("e_w")
    moved = inner + sympy.Piecewise((0, sympy.Eq(_e_a, f)), (casts, True)) + weighted
    (norm,) = _only(_rms_norm(part, rows, d)).parts
    return Cost([Part(part, {**norm.values, _EAGER: moved}, norm.rule)])


def mla_sizes(
    d_model: Any, n_head: Any, q_rank: Any, kv_rank: Any, d_nope: Any, d_rope: Any, d_v: Any
) -> dict[str, sympy.Expr]:
    """Multi-head latent attention's weights, as DeepSeek-V2/V3 lay them out: ``q_a``
    (``d_model -> q_rank``), ``q_b`` (``q_rank -> n_head (d_nope + d_rope)``), ``kv_a``
    (``d_model -> kv_rank + d_rope``: the latent and the shared rotary key), ``kv_b``
    (``kv_rank -> n_head (d_nope + d_v)``), ``o`` (``n_head d_v -> d_model``); the two
    RMSNorms' weights (``q_rank``, ``kv_rank``) apart.  Each is also the MACs per token of its
    product.

    >>> mla_sizes(16, 4, 12, 8, 4, 2, 4)["kv_b"]
    256
    """
    return {
        "q_a": sympy.sympify(d_model * q_rank),
        "q_b": sympy.sympify(q_rank * n_head * (d_nope + d_rope)),
        "kv_a": sympy.sympify(d_model * (kv_rank + d_rope)),
        "kv_b": sympy.sympify(kv_rank * n_head * (d_nope + d_v)),
        "o": sympy.sympify(n_head * d_v * d_model),
    }


@register(
    "mla",
    # DeepSeek-V3 config.json: hidden_size 7168, num_attention_heads 128, q_lora_rank 1536,
    # kv_lora_rank 512, qk_nope_head_dim 128, qk_rope_head_dim 64, v_head_dim 128
    hyperparameters=_with(
        dict(n_q=4096, n_kv=4096, d_model=7168, n_head=128, window=4096),
        Hyperparameter("q_rank", "rank of the queries' projection (q_lora_rank)", default=1536),
        Hyperparameter(
            "kv_rank", "rank of the compressed keys and values (kv_lora_rank)", default=512
        ),
        Hyperparameter("d_nope", "query/key head width without rotary positions", default=128),
        Hyperparameter("d_rope", "query/key head width with rotary positions (even)", default=64),
        Hyperparameter("d_v", "value head width (v_head_dim)", default=128),
        Hyperparameter("mask", "which pairs are attended", choices=_MASKS, default="causal"),
    ),
    defaults_from="DeepSeek-V3: deepseek-ai/DeepSeek-V3 config.json",
    mirrors=(
        "transformers DeepseekV3Attention(DeepseekV3Config(hidden_size=d_model, "
        "num_attention_heads=n_head, num_key_value_heads=n_head, q_lora_rank=q_rank, "
        "kv_lora_rank=kv_rank, qk_nope_head_dim=d_nope, qk_rope_head_dim=d_rope, v_head_dim=d_v, "
        "rope_interleave=True, attention_bias=False), 'sdpa' on the math backend) called on "
        "hidden states (N, n_q, d_model) with the rotary cos/sin, a bool (n_q, n_kv) mask (none: "
        "is_causal off, no mask) and, for n_kv > n_q, a cache holding n_kv - n_q compressed "
        "latents: parameters, FLOPs (exact, macs, torch, useful) and eager bytes"
    ),
)
def mla(
    n_q: Any, n_kv: Any, d_model: Any, n_head: Any, window: Any, q_rank: Any, kv_rank: Any,
    d_nope: Any, d_rope: Any, d_v: Any, mask: str, **_: Any,
) -> Cost:  # fmt: skip
    """Multi-head latent attention (DeepSeek-V2/V3): queries through a rank-``q_rank``
    bottleneck with its RMSNorm; keys and values from a ``kv_rank`` latent (normed) and one
    shared rotary key of ``d_rope``, which is what the cache keeps: a call projects the ``n_q``
    new tokens down, then every one of the ``n_kv`` cached latents up (``kv_b``), as
    transformers does.

    Parts: ``attention.q`` (q_a, RMSNorm, q_b), ``attention.kv`` (kv_a, RMSNorm, and kv_b over
    the ``n_kv`` latents), ``attention.rotary`` (interleaved rotary positions on the queries'
    and the shared key's rotary halves: two products and a sum per element),
    ``attention.cache`` (the new latents appended to the cached ones), ``attention.core``,
    ``attention.mask``, ``attention.layout`` (the query and key assembled from their halves,
    the copies matmul makes of the values and the output), ``attention.o``; ``bytes`` under
    ``eager`` as ``attention`` states it (norms in float32, the core too for 16-bit inputs).

    >>> import layercost_sym as lc
    >>> tiny = lc.architecture("mla", d_model=16, n_head=4, q_rank=12, kv_rank=8, d_nope=4,
    ...                        d_rope=2, d_v=4, n_q=3, n_kv=5)
    >>> tiny.params, tiny.at(N=1).cost("macs")  # (192 + 288 + 160 + 256) x 3 + 256 x 5, 600 core
    (1172, 4568)
    """
    rope_pairs = sympy.sympify(d_rope) / 2
    if rope_pairs.is_number and not rope_pairs.is_integer:
        raise ArchitectureError(f"mla: d_rope={d_rope} must be even (rotary pairs)")
    conditions = _order(n_q, n_kv, "mla")  # a mask, or a cache of n_kv - n_q latents
    new, cached = _N * n_q, _N * n_kv  # tokens projected down; latents projected up
    d_qk = d_nope + d_rope

    def linear(part: str, c_in: Any, c_out: Any, rows: Any) -> Cost:
        return _only(_rule("Linear", part, C_in=c_in, C_out=c_out, N=rows, b=0), _EAGER)

    q = (
        linear("attention.q", d_model, q_rank, new)
        + _rms_norm_eager("attention.q", new, q_rank)
        + linear("attention.q", q_rank, n_head * d_qk, new)
    )
    kv = (
        linear("attention.kv", d_model, kv_rank + d_rope, new)
        + _rms_norm_eager("attention.kv", new, kv_rank)
        + linear("attention.kv", kv_rank, n_head * (d_nope + d_v), cached)
    )
    # x1 cos - x2 sin, x2 cos + x1 sin on the even and odd halves of the queries' (every head)
    # and the shared key's rotary part, cos and sin read at their own size, then a cat of both
    cost = q + kv
    for heads in (n_head, 1):
        half, angle = new * heads * d_rope / 2, new * d_rope / 2
        for op in ("mul", "mul", "sub", "mul", "mul", "add"):
            bound = dict(N=half, N_1=half, N_2=half if op in ("sub", "add") else angle, x_2=1)
            cost += _only(_rule(op, "attention.rotary", e_o=_e_a, **bound), _EAGER)
        cost += _movement("attention.rotary", _moved("cat", N=2 * half, N_r=2 * half))
    # the cache's cat of the new latents and rotary keys to its own (none at prefill: no cache)
    appended = sum(_moved("cat", N=cached * d, N_r=cached * d) for d in (kv_rank, d_rope))
    appended = sympy.Piecewise((0, sympy.Eq(n_q, n_kv)), (appended, True))
    cost += _movement("attention.cache", appended)
    # the query cat of its halves; the key written into new_empty by two copy_ (the shared
    # rotary key broadcast to the heads, read once); the values, a slice of kv_b's output in
    # its (N, n_kv, heads, .) layout, copied by matmul; the output made contiguous
    query = _moved("cat", N=new * n_head * d_qk, N_r=new * n_head * d_qk)
    key = (2 * n_head * d_nope + (n_head + 1) * d_rope) * cached * _e_a
    layout = query + key + _copied(n_head, n_kv, d_v) * _e_math
    cost += _core(n_q, n_kv, n_head, n_head, d_qk, d_v, mask, window, "bool")
    cost += _movement("attention.layout", layout + _output_copy(n_q, n_head, d_v))
    cost += linear("attention.o", n_head * d_v, d_model, new)
    return Cost(cost.parts, None, (*cost.conditions, *conditions))
