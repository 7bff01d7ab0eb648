"""Hypothesis strategies for the attention family, valid by construction (no torch import).

``MultiheadAttention`` cases draw heads first and the head dimension next (so ``num_heads``
divides ``embed_dim``); the transformer layers reuse that; ``scaled_dot_product_attention`` cases
draw the key's leading dimensions from the query's (equal, or 1 to broadcast; with
``enable_gqa`` the query's heads a multiple of the key's).

``notes["shared"]`` says which inputs of a case are to be one and the same tensor: ``"qkv"``
(self-attention: torch projects q, k and v with one packed matmul), ``"kv"`` (key is value: q
alone, k and v packed) or ``""`` (three tensors).

>>> from layercost_sym.testing._cases_attention import mha_cases
>>> mha_cases().example().name                     # doctest: +SKIP
'MultiheadAttention'
"""

from __future__ import annotations

from hypothesis import strategies as st

from .case import LayerCase

__all__ = [
    "mha_cases",
    "sdpa_cases",
    "transformer_decoder_layer_cases",
    "transformer_encoder_layer_cases",
]

# The activation forms torch records as relu (activation_relu_or_gelu = 1) or erf-GELU (2), as
# strings or as modules (built by the test: no torch import here).
ACTIVATIONS = ("relu", "gelu", "ReLU()", "GELU()")


def _heads_and_embed(draw, max_heads: int, max_embed: int) -> tuple[int, int]:
    heads = draw(st.integers(1, max_heads))
    head_dim = draw(st.integers(1, max(1, max_embed // heads)))
    return heads, heads * head_dim


def _seq_shape(batch_first: bool, length: int, features: int, batch: int | None) -> tuple[int, ...]:
    if batch is None:  # unbatched: (L, E) whatever batch_first says
        return (length, features)
    return (batch, length, features) if batch_first else (length, batch, features)


@st.composite
def mha_cases(
    draw,
    *,
    max_heads: int = 3,
    max_embed: int = 8,
    max_len: int = 4,
    max_batch: int = 3,
    max_kv_features: int = 6,
    training: bool | None = None,
) -> LayerCase:
    """``torch.nn.MultiheadAttention`` with num_heads, kdim/vdim (or E), bias, add_bias_kv,
    add_zero_attn, batch_first, dropout (0 in training; also 0.1 in eval, where it does nothing),
    the forward kwargs need_weights and average_attn_weights (each also left out: the default),
    separate query / key lengths, self-attention (one tensor for q, k, v) and key-is-value
    inputs; unbatched (Q, E) input with batch_first only (the rule's sequence-first input
    pattern is (Q, N, E))."""
    heads, embed = _heads_and_embed(draw, max_heads, max_embed)
    train = draw(st.booleans()) if training is None else training
    separate = draw(st.booleans())
    kdim = draw(st.integers(1, max_kv_features)) if separate else embed
    vdim = draw(st.integers(1, max_kv_features)) if separate else embed
    batch_first = draw(st.booleans())
    batch = (
        draw(st.none() | st.integers(1, max_batch))
        if batch_first
        else draw(st.integers(1, max_batch))
    )
    shared = ""
    if kdim == vdim:
        shared = draw(st.sampled_from(["", "kv", "qkv"] if kdim == embed else ["", "kv"]))
    q_len = draw(st.integers(1, max_len))
    s_len = q_len if shared == "qkv" else draw(st.integers(1, max_len))
    kwargs = dict(
        embed_dim=embed,
        num_heads=heads,
        bias=draw(st.booleans()),
        add_bias_kv=draw(st.booleans()),
        add_zero_attn=draw(st.booleans()),
        batch_first=batch_first,
        dropout=0.0 if train else draw(st.sampled_from([0.0, 0.1])),
    )
    if separate or draw(st.booleans()):  # kdim=None/vdim=None mean embed_dim
        kwargs.update(kdim=kdim, vdim=vdim)
    call: dict = {}
    for name in ("need_weights", "average_attn_weights"):
        flag = draw(st.none() | st.booleans())
        if flag is not None:
            call[name] = flag
    shapes = (
        _seq_shape(batch_first, q_len, embed, batch),
        _seq_shape(batch_first, s_len, kdim, batch),
        _seq_shape(batch_first, s_len, vdim, batch),
    )
    return LayerCase(
        "MultiheadAttention",
        kwargs,
        shapes,
        training=train,
        call_kwargs=call,
        notes={"shared": shared},
    )


def _layer_kwargs(
    draw,
    heads: int,
    embed: int,
    max_ff: int,
    train: bool,
    activations: tuple[str, ...] = ACTIVATIONS,
) -> dict:
    return dict(
        d_model=embed,
        nhead=heads,
        dim_feedforward=draw(st.integers(1, max_ff)),
        dropout=0.0 if train else draw(st.sampled_from([0.0, 0.1])),
        activation=draw(st.sampled_from(activations)),
        layer_norm_eps=draw(st.sampled_from([1e-5, 1e-3])),
        batch_first=draw(st.booleans()),
        norm_first=draw(st.booleans()),
        bias=draw(st.booleans()),
    )


@st.composite
def transformer_encoder_layer_cases(
    draw,
    *,
    max_heads: int = 3,
    max_embed: int = 8,
    max_ff: int = 8,
    max_len: int = 4,
    max_batch: int = 3,
    training: bool | None = None,
) -> LayerCase:
    """``torch.nn.TransformerEncoderLayer`` with d_model, nhead, dim_feedforward, activation
    (relu / gelu, as a string or a module: ``kwargs["activation"]`` is one of
    :data:`ACTIVATIONS`, turned into a module by the test), layer_norm_eps, batch_first,
    norm_first, bias, dropout (0 in training); batched, or unbatched with batch_first."""
    heads, embed = _heads_and_embed(draw, max_heads, max_embed)
    train = draw(st.booleans()) if training is None else training
    kwargs = _layer_kwargs(draw, heads, embed, max_ff, train)
    bf = kwargs["batch_first"]
    batch = draw(st.none() | st.integers(1, max_batch)) if bf else draw(st.integers(1, max_batch))
    shape = _seq_shape(bf, draw(st.integers(1, max_len)), embed, batch)
    return LayerCase("TransformerEncoderLayer", kwargs, (shape,), training=train)


@st.composite
def transformer_decoder_layer_cases(
    draw,
    *,
    max_heads: int = 3,
    max_embed: int = 8,
    max_ff: int = 8,
    max_len: int = 4,
    max_batch: int = 3,
    training: bool | None = None,
) -> LayerCase:
    """``torch.nn.TransformerDecoderLayer`` as :func:`transformer_encoder_layer_cases`, on
    (tgt, memory) with their own lengths.  Not ``GELU()`` as a module: a deep copy of the decoder
    layer (as ``lc.count`` makes) gets ``F.relu`` instead (torch's ``__setstate__`` looks for
    ``activation`` in ``__dict__``, where a module activation is not)."""
    heads, embed = _heads_and_embed(draw, max_heads, max_embed)
    train = draw(st.booleans()) if training is None else training
    kwargs = _layer_kwargs(draw, heads, embed, max_ff, train, ("relu", "gelu", "ReLU()"))
    bf = kwargs["batch_first"]
    batch = draw(st.none() | st.integers(1, max_batch)) if bf else draw(st.integers(1, max_batch))
    shapes = (
        _seq_shape(bf, draw(st.integers(1, max_len)), embed, batch),
        _seq_shape(bf, draw(st.integers(1, max_len)), embed, batch),
    )
    return LayerCase("TransformerDecoderLayer", kwargs, shapes, training=train)


@st.composite
def sdpa_cases(
    draw,
    *,
    max_leading: int = 2,
    max_size: int = 3,
    max_heads: int = 2,
    max_len: int = 4,
    max_dim: int = 4,
) -> LayerCase:
    """``torch.nn.functional.scaled_dot_product_attention`` (a function: the test wraps it in a
    module) on query (N..., Q, E), key (N_kv..., S, E), value (N_kv..., S, E_v) with 0 to
    ``max_leading`` batch dimensions (key's equal to the query's or 1, broadcast), and the
    keyword arguments is_causal, scale (None, positive, negative) and enable_gqa (query heads a
    multiple of the key's heads).  Each keyword is also left out (the default)."""
    gqa = draw(st.booleans())
    batch = draw(st.lists(st.integers(1, max_size), min_size=0, max_size=max_leading))
    if gqa:  # a heads dimension: the key's, times a group size, for the query
        kv_heads = draw(st.integers(1, max_heads))
        q_lead = [*batch, kv_heads * draw(st.integers(1, max_heads))]
        kv_lead = [*batch, kv_heads]
    else:
        q_lead = batch
        kv_lead = [d if draw(st.booleans()) else 1 for d in batch]  # broadcast where 1
    q_len, s_len = draw(st.integers(1, max_len)), draw(st.integers(1, max_len))
    e, e_v = draw(st.integers(1, max_dim)), draw(st.integers(1, max_dim))
    call: dict = {}
    if gqa or draw(st.booleans()):
        call["enable_gqa"] = gqa
    for name, values in (
        ("is_causal", st.booleans()),
        ("scale", st.none() | st.sampled_from([0.5, 2.0, -0.25])),
    ):
        if draw(st.booleans()):
            call[name] = draw(values)
    shapes = ((*q_lead, q_len, e), (*kv_lead, s_len, e), (*kv_lead, s_len, e_v))
    return LayerCase("scaled_dot_product_attention", {}, shapes, call_kwargs=call)
