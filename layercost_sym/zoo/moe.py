"""Mixture-of-experts reference architectures: ``mixtral`` and ``deepseek`` (DeepSeek-V3:
multi-head latent attention, dense first layers, shared and routed experts).

Each token goes to ``top_k`` of ``n_expert`` routed experts, so the routed work is
``N n_ctx top_k`` tokens through one expert each whatever the routing (transformers drops no
token: no capacity limit), and the parameters one token uses are fewer than the model's:
:attr:`Cost.active_params <layercost_sym.composition.Cost.active_params>` beside ``params``.

These compositions state parameters and the ``macs`` and ``torch`` conventions, as
``lc.analyze`` costs the transformers models they mirror (the experts run as transformers'
``batched_mm``: :mod:`layercost_sym.torchtools.experts`); ``exact`` and ``bytes`` are not
stated (the router's ``topk`` has no exact count: its comparisons depend on the values), so
asking for them is an error naming the parts.  The batch is the glossary's ``N``; a cost is
one forward pass over ``N`` sequences of ``n_ctx`` tokens, attention on the math backend.

>>> import layercost_sym as lc
>>> from layercost_sym.zoo import defaults
>>> m = lc.architecture("mixtral", **defaults("mixtral"))    # Mixtral 8x7B
>>> m.params, m.active_params
(46702792704, 12879925248)
>>> m.cost("exact")
Traceback (most recent call last):
...
layercost_sym.errors.ConventionError: flops under convention 'exact' is not defined for ...
"""

from __future__ import annotations

from typing import Any

import sympy

from ..composition import Cost, Part, symbols
from ..errors import ArchitectureError
from . import Hyperparameter, register
from .attention import mla_sizes
from .transformers import _check

__all__ = ["deepseek", "mixtral"]

_N = symbols("N")  # the batch: the glossary's symbol, so it meets analyze's N


def _part(name: str, params: Any, macs: Any, active: Any = None) -> Cost:
    """One part: its parameters, its multiply-accumulates (``torch`` counts 2 FLOPs each), and
    where a token uses fewer parameters than the part has, those (``active``)."""
    part = Part.of(name, params, {"macs": sympy.sympify(macs), "torch": 2 * sympy.sympify(macs)})
    if active is not None:
        part = Part(name, {**part.values, ("active_params", "count"): sympy.sympify(active)})
    return Cost([part])


def _routed(tokens: Any, d: Any, d_ff: Any, n_expert: Any, top_k: Any) -> Cost:
    """The router (a d -> n_expert product, no bias) and the routed SwiGLU experts: every
    token through ``top_k`` experts of ``3 d d_ff`` weights each; the ``topk`` selection and
    the gates' softmax, sigmoid and sums are no products."""
    experts = 3 * d * d_ff
    return _part("moe.router", n_expert * d, tokens * d * n_expert) + _part(
        "moe.experts", n_expert * experts, tokens * top_k * experts, active=top_k * experts
    )


def _hp(*names_defaults: tuple[str, str, int]) -> tuple[Hyperparameter, ...]:
    return tuple(Hyperparameter(n, meaning, default=v) for n, meaning, v in names_defaults)


_COMMON = (
    ("d_model", "width of the residual stream (hidden size)"),
    ("n_layer", "number of transformer blocks"),
    ("n_head", "attention heads"),
    ("vocab", "vocabulary size"),
    ("n_ctx", "context: sequence length processed"),
    ("n_expert", "routed experts per layer (E)"),
    ("top_k", "routed experts per token (k)"),
)


@register(
    "mixtral",
    # Mixtral-8x7B-v0.1 config.json (mistralai, and transformers' MixtralConfig() defaults):
    # hidden_size 4096, num_hidden_layers 32, num_attention_heads 32, num_key_value_heads 8,
    # intermediate_size 14336, vocab_size 32000, num_local_experts 8, num_experts_per_tok 2;
    # n_ctx 4096 (a length; max_position_embeddings is 32768)
    hyperparameters=_hp(
        *((n, m, v) for (n, m), v in zip(_COMMON, (4096, 32, 32, 32000, 4096, 8, 2), strict=True)),
        ("n_kv_head", "key/value heads of grouped-query attention (dividing n_head)", 8),
        ("d_ff", "width of each expert's SwiGLU (intermediate size)", 14336),
    ),
    defaults_from="Mixtral 8x7B: mistralai/Mixtral-8x7B-v0.1 config.json",
    mirrors=(
        "transformers MixtralForCausalLM(MixtralConfig(hidden_size=d_model, "
        "num_hidden_layers=n_layer, num_attention_heads=n_head, num_key_value_heads=n_kv_head, "
        "intermediate_size=d_ff, vocab_size=vocab, num_local_experts=n_expert, "
        "num_experts_per_tok=top_k)) in eval mode on input ids of shape (N, n_ctx), experts "
        "as batched_mm, SDPA math backend: parameters and the macs and torch conventions"
    ),
)
def mixtral(
    d_model: Any,
    n_layer: Any,
    n_head: Any,
    vocab: Any,
    n_ctx: Any,
    n_expert: Any,
    top_k: Any,
    n_kv_head: Any,
    d_ff: Any,
    **_: Any,
) -> Cost:
    """Mixtral: LLaMA's blocks (RMSNorm, grouped-query causal attention with rotary
    positions, no biases) with the SwiGLU MLP replaced by a sparse mixture of ``n_expert``
    experts, ``top_k`` per token (softmax router, top-k, renormalised weights); untied head.

    Parts: ``embedding``; per block ``attention.qkv``, ``attention.scores``,
    ``attention.values``, ``attention.project``, ``norms`` (two RMSNorm weights),
    ``moe.router``, ``moe.experts`` (active: ``top_k`` of the ``n_expert``); ``final_norm``;
    ``head``.

    >>> import layercost_sym as lc
    >>> tiny = lc.architecture("mixtral", d_model=16, n_layer=1, n_head=4, n_kv_head=2,
    ...                        d_ff=24, vocab=50, n_ctx=8, n_expert=4, top_k=2)
    >>> tiny.params, tiny.active_params
    (7088, 4784)
    """
    _check(d_model=d_model, n_head=n_head, n_kv_head=n_kv_head)
    d = d_model
    kv = n_kv_head * d / n_head  # width of keys and values
    tokens = _N * n_ctx
    block = (
        _part("attention.qkv", d * d + 2 * d * kv, tokens * (d * d + 2 * d * kv))
        # the math backend: q k^T and weights x values for every head, keys repeated (GQA)
        + _part("attention.scores", 0, _N * n_ctx**2 * d)
        + _part("attention.values", 0, _N * n_ctx**2 * d)
        + _part("attention.project", d * d, tokens * d * d)
        + _part("norms", 2 * d, 0)
        + _routed(tokens, d, d_ff, n_expert, top_k)
    )
    return (
        _part("embedding", vocab * d, 0)
        + n_layer * block
        + _part("final_norm", d, 0)
        + _part("head", d * vocab, tokens * d * vocab)
    )


@register(
    "deepseek",
    # DeepSeek-V3 config.json (deepseek-ai/DeepSeek-V3, and transformers' DeepseekV3Config()
    # defaults): hidden_size 7168, num_hidden_layers 61, first_k_dense_replace 3,
    # num_attention_heads 128, q_lora_rank 1536, kv_lora_rank 512, qk_nope_head_dim 128,
    # qk_rope_head_dim 64, v_head_dim 128, intermediate_size 18432, moe_intermediate_size 2048,
    # n_routed_experts 256, n_shared_experts 1, num_experts_per_tok 8, vocab_size 129280
    hyperparameters=_hp(
        *(
            (n, m, v)
            for (n, m), v in zip(_COMMON, (7168, 61, 128, 129280, 4096, 256, 8), strict=True)
        ),
        ("n_dense", "first blocks with a dense MLP (first_k_dense_replace)", 3),
        ("n_shared", "shared experts (every token goes through them)", 1),
        ("d_ff", "width of the dense blocks' SwiGLU (intermediate size)", 18432),
        ("d_expert", "width of each expert's SwiGLU (moe_intermediate_size)", 2048),
        ("q_rank", "rank of the queries' low-rank projection (q_lora_rank)", 1536),
        ("kv_rank", "rank of the compressed keys and values (kv_lora_rank)", 512),
        ("d_nope", "query/key head width without rotary positions (qk_nope_head_dim)", 128),
        ("d_rope", "query/key head width with rotary positions (qk_rope_head_dim)", 64),
        ("d_v", "value head width (v_head_dim)", 128),
    ),
    defaults_from="DeepSeek-V3: deepseek-ai/DeepSeek-V3 config.json",
    mirrors=(
        "transformers DeepseekV3ForCausalLM(DeepseekV3Config(hidden_size=d_model, "
        "num_hidden_layers=n_layer, first_k_dense_replace=n_dense, num_attention_heads=n_head, "
        "q_lora_rank=q_rank, kv_lora_rank=kv_rank, qk_nope_head_dim=d_nope, "
        "qk_rope_head_dim=d_rope, v_head_dim=d_v, intermediate_size=d_ff, "
        "moe_intermediate_size=d_expert, n_routed_experts=n_expert, n_shared_experts=n_shared, "
        "num_experts_per_tok=top_k, vocab_size=vocab)) in eval mode on input ids of shape "
        "(N, n_ctx), experts as batched_mm, SDPA math backend, no multi-token-prediction "
        "module: parameters and the macs and torch conventions"
    ),
)
def deepseek(
    d_model: Any,
    n_layer: Any,
    n_head: Any,
    vocab: Any,
    n_ctx: Any,
    n_expert: Any,
    top_k: Any,
    n_dense: Any,
    n_shared: Any,
    d_ff: Any,
    d_expert: Any,
    q_rank: Any,
    kv_rank: Any,
    d_nope: Any,
    d_rope: Any,
    d_v: Any,
    **_: Any,
) -> Cost:
    """DeepSeek-V3: multi-head latent attention (queries through a rank-``q_rank``
    projection, keys and values from a rank-``kv_rank`` latent plus a shared rotary key of
    ``d_rope``), ``n_dense`` blocks with a dense SwiGLU MLP, then blocks with a mixture of
    ``n_shared`` shared experts and ``n_expert`` routed ones, ``top_k`` per token (sigmoid
    router, group-limited top-k: no products); untied head.

    Parts: ``embedding``; per block ``attention.q`` (q_a, its RMSNorm, q_b),
    ``attention.kv`` (kv_a with the rotary key, its RMSNorm, kv_b), ``attention.scores``,
    ``attention.values``, ``attention.project``, ``norms``; dense blocks ``mlp``; MoE blocks
    ``moe.router``, ``moe.experts`` (active: ``top_k`` of the ``n_expert``), ``moe.shared``;
    ``final_norm``; ``head``.

    >>> import layercost_sym as lc
    >>> tiny = lc.architecture("deepseek", d_model=16, n_layer=2, n_dense=1, n_head=4,
    ...     q_rank=12, kv_rank=8, d_nope=4, d_rope=2, d_v=4, d_ff=40, d_expert=8, n_expert=8,
    ...     n_shared=1, top_k=2, vocab=50, n_ctx=8)
    >>> tiny.params, tiny.active_params
    (9528, 7224)
    """
    moe_layers = sympy.sympify(n_layer - n_dense)
    if moe_layers.is_number and moe_layers < 0:
        raise ArchitectureError(f"n_dense={n_dense} exceeds n_layer={n_layer}")
    d, heads = d_model, n_head
    tokens = _N * n_ctx
    q_width = heads * (d_nope + d_rope)
    sizes = mla_sizes(d, heads, q_rank, kv_rank, d_nope, d_rope, d_v)  # weights: MACs per token
    q = sizes["q_a"] + sizes["q_b"]
    kv = sizes["kv_a"] + sizes["kv_b"]
    attention = (
        _part("attention.q", q + q_rank, tokens * q)
        + _part("attention.kv", kv + kv_rank, tokens * kv)
        + _part("attention.scores", 0, _N * n_ctx**2 * q_width)
        + _part("attention.values", 0, _N * n_ctx**2 * heads * d_v)
        + _part("attention.project", sizes["o"], tokens * sizes["o"])
        + _part("norms", 2 * d, 0)
    )
    shared = 3 * d * d_expert * n_shared
    moe = _routed(tokens, d, d_expert, n_expert, top_k) + _part(
        "moe.shared", shared, tokens * shared
    )
    dense = _part("mlp", 3 * d * d_ff, tokens * 3 * d * d_ff)
    return (
        _part("embedding", vocab * d, 0)
        + n_layer * attention
        + n_dense * dense
        + moe_layers * moe
        + _part("final_norm", d, 0)
        + _part("head", d * vocab, tokens * d * vocab)
    )
