"""A small LLaMA (grouped-query attention, rotary embeddings, RMSNorm, SwiGLU, untied head) as
one symbolic analysis in ``(N, L)``, equal to what torch counts on the real model at drawn
shapes: parameters by numel, ``torch`` by FlopCounterMode (grad enabled, math SDPA), ``macs``
= torch / 2, ``exact`` by the package's op counter.

The analysis this file pins is ``llama_analysis()`` (config ``LLAMA_CONFIG``):
``lc.analyze(LlamaForCausalLM(LlamaConfig(**LLAMA_CONFIG)).eval(), ("N", "L"), dtype=torch.long,
use_cache=False)``.
"""

from functools import cache

import pytest
import sympy
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import layercost_sym as lc

LLAMA_CONFIG = dict(
    hidden_size=64,
    intermediate_size=176,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=101,
    max_position_embeddings=128,
)


@cache
def llama_analysis():
    import transformers  # a test dependency (pyproject's test extra): never skipped

    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**LLAMA_CONFIG)).eval()
    analysis = lc.analyze(model, ("N", "L"), dtype=torch.long, use_cache=False)
    return model, analysis


@cache
def llama_analysis_of_one_token():
    model, _ = llama_analysis()
    return lc.analyze(model, ("N", 1), dtype=torch.long, use_cache=False)


def test_llama_pinned_closed_forms():
    model, analysis = llama_analysis()
    n, length = sympy.symbols("N L", integer=True, positive=True)
    # d = 64, 4 query heads and 2 key/value heads of 64/4 = 16: q and o 64 x 64, k and v 64 x 32;
    # SwiGLU gate, up 64 x 176 and down 176 x 64; per layer 2 RMSNorm weights of 64.
    per_layer = 2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 176  # 46080, no biases
    embeddings = 101 * 64  # the token table; the head 64 x 101 is a separate (untied) matrix
    assert analysis.params == embeddings + 2 * (per_layer + 2 * 64) + 64 + 64 * 101 == 105_408
    assert analysis.params == sum(p.numel() for p in model.parameters())
    # torch: 2 FLOPs per weight per token (the embedding lookup is no product) plus, per layer,
    # token and key, the 4 heads' scores q.k and weighted values of 16 each: 2 * 2 * 4 * 16
    weights = 2 * per_layer + 64 * 101
    expected = 2 * weights * n * length + 2 * (2 * 2 * 4 * 16) * n * length**2
    assert sympy.expand(analysis.cost("torch") - expected) == 0
    assert sympy.expand(2 * analysis.cost("macs") - expected) == 0
    # the only entries without a rule: the RMSNorm modules (costed by their operators:
    # pow, mean, add eps, rsqrt, mul, cast, mul weight), none of the operators
    assert analysis.unsupported == []
    assert {m.what for m in analysis.costed_by_operators} == {"LlamaRMSNorm"}
    assert len(analysis.costed_by_operators) == 2 * 2 + 1
    # rotary embeddings: no position table, no length limit; a one-token call takes another
    # branch of transformers' masking (no causal mask): L = 1 is refused, not miscounted
    assert analysis.range == ["L >= 2"]
    assert "masking_utils.py" in analysis.guard_sources[sympy.Ge(lc.symbols("L"), 2)]
    assert {"cos", "sin", "neg", "cat", "rsqrt", "mean", "silu", "Linear", "bmm"} <= {
        layer.rule for layer in analysis.layers
    }


# A drawn shape costs two real forward passes of a tiny model (~0.1 s); 25 examples cover
# batch 1-3 and lengths 1-48 (the model accepts any length: rotary positions).
@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3), length=st.integers(1, 48))
def test_llama_closed_form_equals_counters_at_drawn_shapes(n, length):
    model, analysis = llama_analysis()
    ids = torch.randint(0, LLAMA_CONFIG["vocab_size"], (n, length))
    counted = lc.count(model, ids, use_cache=False)
    at = {"N": n, "L": length}
    if length == 1:
        # transformers' SDPA wrapper passes is_causal=False and the real run skips the causal
        # mask's operations; torch traces sizes from 2, so the closed form refuses L = 1 and
        # the analysis with L given as 1 answers there
        with pytest.raises(lc.DomainError, match="L >= 2"):
            analysis.evaluate(at, "exact")
        analysis, at = llama_analysis_of_one_token(), {"N": n}
    assert analysis.evaluate(at, quantity="params") == counted.params
    for convention in ("exact", "macs", "torch"):
        assert analysis.evaluate(at, convention) == counted.cost(convention), convention
