"""Transformer reference architectures: ``gpt`` (GPT-2), ``bert`` and ``llama``.

Each is composed from the catalogue's rules exactly as ``lc.analyze`` costs the transformers
model it mirrors: a module with a rule (``Linear``, ``LayerNorm``, ``Embedding``, ...) by that
rule, everything else (transformers' ``Conv1D``, which is ``addmm``; the attention of the
math backend of ``scaled_dot_product_attention``; residual adds; python-written activations
and norms) by the functional rules of the ATen operators it runs (``formulas/functional.toml``).

Hyperparameters: ``d_model`` (width), ``n_layer`` (blocks), ``n_head`` (attention heads,
dividing ``d_model``), ``d_ff`` (width of the feed-forward layer), ``vocab`` (vocabulary),
``n_ctx`` (context: the length of the sequences processed, which is also the size of the
learned position table of ``gpt`` and ``bert``, as in Kaplan et al. 2020 and Megatron-LM), and
for ``llama`` ``n_kv_head`` (key/value heads of grouped-query attention, dividing ``n_head``).
The batch is the glossary symbol ``N``: a cost is that of one forward pass over ``N``
sequences of ``n_ctx`` tokens, in inference mode (dropout is the identity).

>>> import layercost_sym as lc
>>> gpt2 = lc.architecture("gpt", d_model=768, n_layer=12, n_head=12, d_ff=3072, vocab=50257,
...                        n_ctx=1024)
>>> gpt2.params                                   # GPT2LMHeadModel(GPT2Config()): tied head
124439808
>>> gpt2.at(N=1).cost("torch")                    # FLOPs of one sequence of 1024 tokens
291648307200
>>> n_layer, d = lc.symbols("n_layer d_model")
>>> lc.architecture("gpt", d_ff=4 * d).breakdown("macs")["attention.qkv"]
(n_layer*(3*d_model**2 + 3*d_model), 3*N*d_model**2*n_ctx*n_layer)
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import sympy

from ..cache import catalogue
from ..composition import Cost, Part, as_exact, symbols
from ..errors import ArchitectureError
from ..quantities import quantities
from . import Hyperparameter, register

__all__ = ["bert", "gpt", "llama"]

_N = symbols("N")  # the batch: the glossary's symbol, so it meets the rules' N


def _rule(rule: str, part: str, **values: Any) -> Cost:
    """``rule`` bound to ``values``, as one part called ``part``.  Data-dependent symbols
    (an Embedding's distinct rows ``V_d``) take the rule's default, as :func:`lc.bind
    <layercost_sym.bind>` does; here they only meet a constraint (no model renormalises)."""
    r = catalogue().get(rule)
    data = r.data_defaults()
    for symbol, default in data.items():
        if symbol.name not in values:
            bound = {
                s: as_exact(s.name, values[s.name])
                for s in default.free_symbols
                if s.name in values
            }
            values[symbol.name] = default.xreplace(bound)
    return r.at(name=part, **values)


def _embedding(part: str, rows: Any, width: Any, lookups: Any) -> Cost:
    """An ``nn.Embedding`` as the models build it (dense gradients, ``norm_type`` 2, no
    ``max_norm``, no ``scale_grad_by_freq``): the variant ``Embedding.p2``, which states the
    backward (the weight's gradient) the sparse base rule does not."""
    return _rule("Embedding.p2", part, V=rows, E=width, N=lookups, renorm=0, scale_freq=0)


def _ops(part: str, *ops: tuple[str, Any]) -> Cost:
    """Elementwise ATen operators ``(name, output numel)``, summed into one part."""
    return sum((_rule(op, part, N=numel) for op, numel in ops), Cost(()))


def _with_weights(cost: Cost, params: Any) -> Cost:
    """A functional product (``addmm`` of transformers' ``Conv1D``) with the parameters of the
    module that calls it: the rule of an operator owns none."""
    (part,) = cost.parts
    values = {**part.values, ("params", "count"): part.params + params}
    weighted = Part(part.name, values, part.rule)
    return Cost([weighted], cost.output_shape, cost.conditions)


def _rms_norm(part: str, rows: Any, d: Any) -> Cost:
    """An RMSNorm written in python (LlamaRMSNorm, DeepseekV3RMSNorm) over ``rows`` rows of
    ``d``: x^2, mean, + eps, rsqrt, x * rrms, * weight; its weight (``d``) as the parameters."""
    width = rows * d
    mean = _rule("mean", part, N=rows, N_in=width)
    ops = _ops(part, ("pow", width), ("add", rows), ("rsqrt", rows), ("mul", width))
    return _with_weights((mean + ops + _rule("mul", part, N=width)).group(part), d)


def _check(**hp: Any) -> None:
    """Divisibility where the numbers decide it (symbols are taken to divide)."""
    for big, small in (("d_model", "n_head"), ("n_head", "n_kv_head")):
        a, b = hp.get(big), hp.get(small)
        if a is None or b is None:
            continue
        ratio = as_exact(big, a) / as_exact(small, b)
        if ratio.is_number and not ratio.is_integer:
            raise ArchitectureError(f"{small}={b} must divide {big}={a}")


_HYPERPARAMETERS = (
    Hyperparameter("d_model", "width of the residual stream (hidden size)"),
    Hyperparameter("n_layer", "number of transformer blocks"),
    Hyperparameter("n_head", "attention heads (dividing d_model)"),
    Hyperparameter("d_ff", "width of the feed-forward layer (intermediate size)"),
    Hyperparameter("vocab", "vocabulary size"),
    Hyperparameter(
        "n_ctx", "context: sequence length processed (and, for learned positions, table size)"
    ),
    Hyperparameter("n_kv_head", "key/value heads of grouped-query attention (dividing n_head)"),
)


def _hyperparameters(**defaults: int) -> tuple[Hyperparameter, ...]:
    """The hyperparameters named in ``defaults``, each with its default (the reference
    configuration's value), in the order of ``_HYPERPARAMETERS``."""
    return tuple(
        replace(h, default=defaults[h.name]) for h in _HYPERPARAMETERS if h.name in defaults
    )


def _attention_core(n_ctx: Any, n_head: Any, head_dim: Any, *, causal: bool) -> Cost:
    """``F.scaled_dot_product_attention`` on the math backend, as its operators:

    q and k (keys repeated to every query head first) scaled by sqrt(1/sqrt(head_dim)) each,
    QK^T per head, the causal mask built from ``n_ctx`` x ``n_ctx`` index
    comparisons (sub, le, logical_and, where) and added, ``_safe_softmax``, weights x values.
    """
    rows = _N * n_head  # (batch, head) pairs: the bmm batch
    q_elems = rows * n_ctx * head_dim
    parts = [
        _ops("attention.scale", ("mul", q_elems), ("mul", q_elems)),
        _rule("bmm", "attention.scores", N=rows, Q=n_ctx, S=n_ctx, E=head_dim),
    ]
    if causal:
        square = n_ctx**2
        parts.append(
            _ops(
                "attention.mask",
                *((op, square) for op in ("sub", "le", "logical_and", "where")),
                ("add", rows * square),
            )
        )
        parts.append(_masked_pairs(rows, n_ctx, head_dim))
    parts += [
        _rule("_safe_softmax", "attention.softmax", N=rows * n_ctx**2, S=n_ctx),
        _rule("bmm", "attention.values", N=rows, Q=n_ctx, S=head_dim, E=n_ctx),
    ]
    return sum(parts, Cost(()))


def _masked_pairs(rows: Any, n_ctx: Any, head_dim: Any) -> Cost:
    """What a causal mask makes useless, under ``useful`` alone (0 in every other quantity and
    convention): the ``scaled_dot_product_attention`` rule's ``useful - exact``, the pairs the
    mask drops and the mask's own arithmetic, as ``lc.analyze`` adds it for each ``is_causal``
    call (:mod:`layercost_sym.torchtools.masked`)."""
    (sdpa,) = _rule(
        "scaled_dot_product_attention",
        "attention.masked",
        N=rows,
        N_kv=rows,
        Q=n_ctx,
        S=n_ctx,
        E=head_dim,
        E_v=head_dim,
        causal=1,
        gqa=1,
    ).parts
    flops = sdpa.values
    values = {(q, c): sympy.Integer(0) for q in quantities() for c in quantities()[q].conventions}
    values[("flops", "useful")] = flops[("flops", "useful")] - flops[("flops", "exact")]
    return Cost([Part("attention.masked", values)])


@register(
    "gpt",
    # GPT2Config(): n_embd 768, n_layer 12, n_head 12, n_inner None (4 * n_embd),
    # vocab_size 50257, n_positions 1024
    hyperparameters=_hyperparameters(
        d_model=768, n_layer=12, n_head=12, d_ff=3072, vocab=50257, n_ctx=1024
    ),
    defaults_from="GPT-2 small: transformers GPT2Config()",
    mirrors=(
        "transformers GPT2LMHeadModel(GPT2Config(n_embd=d_model, n_layer=n_layer, "
        "n_head=n_head, n_inner=d_ff, vocab_size=vocab, n_positions=n_ctx)) in eval mode on "
        "input ids of shape (N, n_ctx), n_ctx >= 2: Conv1D projections (addmm), gelu_new, "
        "SDPA math backend with is_causal, tied lm_head"
    ),
)
def gpt(
    d_model: Any, n_layer: Any, n_head: Any, d_ff: Any, vocab: Any, n_ctx: Any, **_: Any
) -> Cost:
    """GPT-2: learned token and position embeddings, pre-norm blocks (LayerNorm, causal
    multi-head attention with biased projections, LayerNorm, MLP with gelu_new), a final
    LayerNorm and an output head tied to the token embedding.

    Part per part, as ``analyze`` sees ``GPT2LMHeadModel``:

    * ``embedding.tokens``, ``embedding.positions``: the lookups (no arithmetic) of the
      ``vocab`` x ``d_model`` and ``n_ctx`` x ``d_model`` tables, and the position ids
      ``arange(n_ctx) + 0`` (one integer add each); ``embedding.add``: their sum.
    * per block (``n_layer`` times): ``attention.norm`` (ln_1), ``attention.qkv`` (c_attn:
      addmm d_model -> 3 d_model), ``attention.scale`` ... ``attention.values`` (SDPA with
      is_causal), ``attention.project`` (c_proj), ``attention.residual``; ``mlp.norm`` (ln_2),
      ``mlp.up`` (c_fc: d_model -> d_ff), ``mlp.act`` (gelu_new written in python:
      0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), eight elementwise operators),
      ``mlp.down`` (c_proj), ``mlp.residual``.
    * ``final_norm`` (ln_f) and ``head`` (lm_head: d_model -> vocab, no bias, tied: no
      parameters of its own).

    At ``n_ctx = 1`` transformers does not ask SDPA for a causal mask, so the exact cost there
    is ``n_layer (n_head N + 4)`` lower (the ``attention.mask`` part); ``torch`` and ``macs``
    do not count the mask.

    >>> import layercost_sym as lc
    >>> small = lc.architecture("gpt", d_model=16, n_layer=1, n_head=2, d_ff=64, vocab=50,
    ...                         n_ctx=8)
    >>> small.params, small.at(N=1).cost("macs")
    (4240, 33024)
    """
    _check(d_model=d_model, n_head=n_head)
    d, head_dim = d_model, d_model / n_head
    tokens = _N * n_ctx
    width = tokens * d  # elements of the residual stream

    def layer_norm(part: str) -> Cost:
        return _rule("LayerNorm", part, N=width, M=d, a=1, b=1)

    def conv1d(part: str, c_in: Any, c_out: Any) -> Cost:
        product = _rule("addmm", part, N=tokens, C_in=c_in, C_out=c_out, N_in=c_out)
        return _with_weights(product, c_in * c_out + c_out)

    embedding = (
        _embedding("embedding.tokens", vocab, d, tokens)
        + _embedding("embedding.positions", n_ctx, d, n_ctx)
        + _rule("add", "embedding.positions", N=n_ctx)  # position ids: arange(n_ctx) + 0
        + _rule("add", "embedding.add", N=width)
    )
    act = tokens * d_ff
    block = (
        layer_norm("attention.norm")
        + conv1d("attention.qkv", d, 3 * d)
        + _attention_core(n_ctx, n_head, head_dim, causal=True)
        + conv1d("attention.project", d, d)
        + _rule("add", "attention.residual", N=width)
        + layer_norm("mlp.norm")
        + conv1d("mlp.up", d, d_ff)
        # gelu_new: 0.5*x, x**3, 0.044715*x^3, x + ., sqrt(2/pi)*(.), tanh, 1 + ., product
        + _ops(
            "mlp.act",
            *((op, act) for op in ("mul", "pow", "mul", "add", "mul")),
            ("tanh", act),
            ("add", act),
            ("mul", act),
        )
        + conv1d("mlp.down", d_ff, d)
        + _rule("add", "mlp.residual", N=width)
    )
    head = _rule("Linear", "head", C_in=d, C_out=vocab, N=tokens, b=0).tied()
    return embedding + n_layer * block + layer_norm("final_norm") + head


@register(
    "bert",
    # BertConfig(): hidden_size 768, num_hidden_layers 12, num_attention_heads 12,
    # intermediate_size 3072, vocab_size 30522, max_position_embeddings 512
    hyperparameters=_hyperparameters(
        d_model=768, n_layer=12, n_head=12, d_ff=3072, vocab=30522, n_ctx=512
    ),
    defaults_from="BERT-base: transformers BertConfig()",
    mirrors=(
        "transformers BertModel(BertConfig(hidden_size=d_model, num_hidden_layers=n_layer, "
        "num_attention_heads=n_head, intermediate_size=d_ff, vocab_size=vocab, "
        "max_position_embeddings=n_ctx, type_vocab_size=2)) in eval mode on input ids of "
        "shape (N, n_ctx) (no attention mask, token types from the buffer): SDPA math backend, "
        "erf GELU, pooler"
    ),
)
def bert(
    d_model: Any, n_layer: Any, n_head: Any, d_ff: Any, vocab: Any, n_ctx: Any, **_: Any
) -> Cost:
    """BERT encoder: token, token-type (2 types) and position embeddings summed and
    normalised, post-norm blocks (bidirectional multi-head attention with biased
    projections, residual, LayerNorm; MLP with erf GELU, residual, LayerNorm) and the pooler
    (a d_model x d_model Linear and tanh on the first token of each sequence).

    Parts: ``embedding.tokens``, ``embedding.token_types``, ``embedding.positions`` (lookups,
    no arithmetic; the position ids come from a buffer), ``embedding.add`` (two sums),
    ``embedding.norm``; per block ``attention.qkv`` (three Linear), ``attention.scale``,
    ``attention.scores``, ``attention.softmax``, ``attention.values``, ``attention.project``,
    ``attention.residual``, ``attention.norm``, ``mlp.up``, ``mlp.act``, ``mlp.down``,
    ``mlp.residual``, ``mlp.norm``; ``pooler.dense``, ``pooler.act``.

    >>> import layercost_sym as lc
    >>> base = lc.architecture("bert", d_model=768, n_layer=12, n_head=12, d_ff=3072,
    ...                        vocab=30522, n_ctx=512)
    >>> base.params                                   # BertModel(BertConfig())
    109482240
    """
    _check(d_model=d_model, n_head=n_head)
    d, head_dim = d_model, d_model / n_head
    tokens = _N * n_ctx
    width = tokens * d

    def linear(part: str, c_in: Any, c_out: Any, rows: Any = tokens) -> Cost:
        return _rule("Linear", part, C_in=c_in, C_out=c_out, N=rows, b=1)

    def layer_norm(part: str) -> Cost:
        return _rule("LayerNorm", part, N=width, M=d, a=1, b=1)

    embedding = (
        _embedding("embedding.tokens", vocab, d, tokens)
        + _embedding("embedding.token_types", 2, d, tokens)
        + _embedding("embedding.positions", n_ctx, d, n_ctx)
        + 2 * _rule("add", "embedding.add", N=width)
        + layer_norm("embedding.norm")
    )
    block = (
        3 * linear("attention.qkv", d, d)  # query, key, value: three Linear d -> d
        + _attention_core(n_ctx, n_head, head_dim, causal=False)
        + linear("attention.project", d, d)
        + _rule("add", "attention.residual", N=width)
        + layer_norm("attention.norm")
        + linear("mlp.up", d, d_ff)
        + _rule("gelu", "mlp.act", N=tokens * d_ff)
        + linear("mlp.down", d_ff, d)
        + _rule("add", "mlp.residual", N=width)
        + layer_norm("mlp.norm")
    )
    pooler = linear("pooler.dense", d, d, rows=_N) + _rule("Tanh", "pooler.act", N=_N * d)
    return embedding + n_layer * block + pooler


@register(
    "llama",
    # LlamaConfig(): hidden_size 4096, num_hidden_layers 32, num_attention_heads 32,
    # intermediate_size 11008, vocab_size 32000, max_position_embeddings 2048,
    # num_key_value_heads None (= num_attention_heads)
    hyperparameters=_hyperparameters(
        d_model=4096, n_layer=32, n_head=32, d_ff=11008, vocab=32000, n_ctx=2048, n_kv_head=32
    ),
    defaults_from="LLaMA-7B: transformers LlamaConfig()",
    mirrors=(
        "transformers LlamaForCausalLM(LlamaConfig(hidden_size=d_model, "
        "num_hidden_layers=n_layer, num_attention_heads=n_head, num_key_value_heads=n_kv_head, "
        "intermediate_size=d_ff, vocab_size=vocab)) (head_dim = d_model / n_head, no biases, "
        "default rotary, untied head) in eval mode on input ids of shape (N, n_ctx), "
        "n_ctx >= 2: SDPA math backend with is_causal after repeat_kv"
    ),
)
def llama(
    d_model: Any,
    n_layer: Any,
    n_head: Any,
    d_ff: Any,
    vocab: Any,
    n_ctx: Any,
    n_kv_head: Any,
    **_: Any,
) -> Cost:
    """LLaMA: token embedding, rotary position embeddings, pre-norm blocks (RMSNorm,
    grouped-query causal attention without biases, RMSNorm, SwiGLU MLP), a final RMSNorm and
    an untied output head.

    Parts: ``embedding`` (lookup); ``rotary.table`` (position ids, then cos and sin of
    position x inverse frequency, each times the attention scaling: once per forward); per
    block ``attention.norm`` (LlamaRMSNorm: x^2, mean, + eps, rsqrt, x * rrms, * weight),
    ``attention.qkv`` (q: d_model -> d_model, k and v: d_model -> n_kv_head head_dim),
    ``attention.rotary`` (q cos + rotate_half(q) sin, the same for k: mul, neg of half, mul,
    add), ``attention.scale`` ... ``attention.values`` (SDPA with is_causal on keys and values
    repeated to n_head heads: data movement), ``attention.project``, ``attention.residual``,
    ``mlp.norm``, ``mlp.gate``, ``mlp.act`` (SiLU), ``mlp.up``, ``mlp.mul`` (gate x up),
    ``mlp.down``, ``mlp.residual``; ``final_norm``; ``head`` (d_model -> vocab, its own
    weights).

    >>> import layercost_sym as lc
    >>> tiny = lc.architecture("llama", d_model=16, n_layer=2, n_head=4, n_kv_head=2,
    ...                        d_ff=24, vocab=50, n_ctx=8)
    >>> tiny.params
    5520
    """
    _check(d_model=d_model, n_head=n_head, n_kv_head=n_kv_head)
    d, head_dim = d_model, d_model / n_head
    kv = n_kv_head * head_dim  # width of keys and values
    tokens = _N * n_ctx
    width = tokens * d

    def linear(part: str, c_in: Any, c_out: Any) -> Cost:
        return _rule("Linear", part, C_in=c_in, C_out=c_out, N=tokens, b=0)

    def rms_norm(part: str) -> Cost:
        return _rms_norm(part, tokens, d)

    def rotate(elements: Any) -> Cost:
        # x * cos + rotate_half(x) * sin; rotate_half negates one half and concatenates
        return _ops(
            "attention.rotary",
            ("mul", elements),
            ("neg", elements / 2),
            ("mul", elements),
            ("add", elements),
        )

    half = head_dim / 2
    rotary_table = _ops(
        "rotary.table",
        ("add", n_ctx),  # position ids: arange(n_ctx) + 0
        ("mul", n_ctx * half),  # position x inverse frequency
        *((op, n_ctx * head_dim) for op in ("cos", "mul", "sin", "mul")),  # x attention_scaling
    )
    block = (
        rms_norm("attention.norm")
        + linear("attention.qkv", d, d)
        + 2 * linear("attention.qkv", d, kv)
        + rotate(tokens * d)
        + rotate(tokens * kv)
        + _attention_core(n_ctx, n_head, head_dim, causal=True)
        + linear("attention.project", d, d)
        + _rule("add", "attention.residual", N=width)
        + rms_norm("mlp.norm")
        + linear("mlp.gate", d, d_ff)
        + _rule("silu", "mlp.act", N=tokens * d_ff)
        + linear("mlp.up", d, d_ff)
        + _rule("mul", "mlp.mul", N=tokens * d_ff)
        + linear("mlp.down", d_ff, d)
        + _rule("add", "mlp.residual", N=width)
    )
    embedding = _embedding("embedding", vocab, d, tokens)
    head = _rule("Linear", "head", C_in=d, C_out=vocab, N=tokens, b=0)
    return embedding + rotary_table + n_layer * block + rms_norm("final_norm") + head
