"""``lc.generation``: prefill, decode step and whole generation of a causal LM as closed forms,
equal to what torch counts stepping the real model by hand as ``model.generate`` does.

Three tiny models (2 layers, width 32, 4 heads, vocabulary 50): GPT-2, LLaMA with grouped-query
attention (2 key/value heads) and Mistral with a sliding window of 8, shorter than the
sequences generated, so that its decode steps run on both sides of the window.
"""

import itertools
from functools import cache

import pytest
import sympy
import torch
from torch.utils.flop_counter import FlopCounterMode

import layercost_sym as lc
from layercost_sym.errors import TraceError
from layercost_sym.torchtools.generation import cache_argument
from layercost_sym.torchtools.opcount import ExactCounter
from layercost_sym.torchtools.patches import math_sdpa

WINDOW = 8


def build(family: str) -> torch.nn.Module:
    import transformers  # a test dependency (pyproject's test extra): never skipped

    torch.manual_seed(0)
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, vocab_size=50)
    small.update(num_attention_heads=4, num_key_value_heads=2)
    if family == "gpt2":
        config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=50)
        config.bos_token_id = config.eos_token_id = 0
        return transformers.GPT2LMHeadModel(config).eval()
    if family == "llama":
        return transformers.LlamaForCausalLM(transformers.LlamaConfig(**small)).eval()
    config = transformers.MistralConfig(sliding_window=WINDOW, **small)
    return transformers.MistralForCausalLM(config).eval()


@cache
def traced(family: str):
    model = build(family)
    return model, lc.generation(model)


def hand_steps(model, batch: int, prompt: int, new: int, counter: str) -> list[tuple[int, ...]]:
    """Generate ``new`` tokens from a random prompt as ``model.generate`` does (prefill with
    positions 0..P-1, then one token per call with its position), each call counted by the
    ``counter`` (``"exact"``: ExactCounter, ``"torch"``: FlopCounterMode): per call, (count,
    bytes the cache holds after it, bytes the exact counter saw the kernels move or 0)."""
    import transformers

    cache_ = transformers.DynamicCache(config=model.config)
    ids = torch.randint(0, 50, (batch, prompt))
    # contiguous, as generate makes them from the attention mask (cumsum - 1)
    positions = torch.arange(prompt).unsqueeze(0).expand(batch, -1).contiguous()
    out = []
    for step in range(new):
        mode = ExactCounter() if counter == "exact" else FlopCounterMode(display=False)
        with torch.enable_grad(), math_sdpa(), mode:
            logits = model(
                ids,
                position_ids=positions,
                use_cache=True,
                logits_to_keep=1,
                **{cache_argument(model): cache_},
            ).logits
        value = mode.total if isinstance(mode, ExactCounter) else mode.get_total_flops()
        held = sum(t.numel() * t.element_size() for c in cache_.layers for t in (c.keys, c.values))
        moved = mode.bytes if isinstance(mode, ExactCounter) else 0
        out.append((int(value), held, moved))
        ids = logits[:, -1].argmax(-1, keepdim=True)
        positions = torch.full((batch, 1), prompt + step)
    return out


def _right_or_refused_at_batch_1(bytes_, at, moved):
    """Eager bytes equal the kernels' at ``at``; at N = 1 they may be refused instead, naming a
    copy traced at N >= 2 that may be a view there (the prefill's were 2560 bytes over at
    N = 1, P = 5 before the generation carried those conditions), never a wrong number."""
    try:
        value = lc.evaluate(bytes_, at)
    except lc.DomainError as refusal:
        assert at["N"] == 1 and "N >= 2" in str(refusal), refusal
    else:
        assert value == moved, at


# (N, P, G); Mistral's window of 8: decode steps below it, across it and beyond it; a one-token
# prompt (P = 1) was 24 FLOPs over under exact: transformers builds no causal mask for it
SHAPES = [(1, 3, 4), (2, 5, 7), (2, 9, 3), (2, 1, 3)]  # P = 1: no causal mask


@pytest.mark.parametrize("family", ["gpt2", "llama", "mistral"])
def test_closed_forms_equal_hand_stepped_counts(family):
    model, gen = traced(family)
    for n, p, g in SHAPES:
        at = {"N": n, "P": p, "G": g}
        for convention in ("exact", "torch"):
            steps = hand_steps(model, n, p, g, convention)
            assert lc.evaluate(gen.prefill_cost("flops", convention), at) == steps[0][0]
            if convention == "exact":
                _right_or_refused_at_batch_1(gen.prefill_cost("bytes", "eager"), at, steps[0][2])
            for k, (counted, _held, moved) in enumerate(steps[1:]):
                at_t = {"N": n, "t": p + k}  # the decode step at position t: t positions cached
                assert lc.evaluate(gen.step("flops", convention), at_t) == counted
                if convention == "exact":  # the bytes each kernel reads and writes
                    _right_or_refused_at_batch_1(gen.step("bytes", "eager"), at_t, moved)
            total = gen.total("flops", convention)
            assert lc.evaluate(total, at) == sum(c for c, *_ in steps), (convention, at)
        macs = gen.total("flops", "macs")
        assert 2 * lc.evaluate(macs, at) == sum(c for c, *_ in steps)  # torch = 2 * macs
        # the cache after the call that processed position P + k - 1 holds P + k positions
        for k, (_counted, held, _moved) in enumerate(steps):
            assert lc.evaluate(gen.kv_cache(), {"N": n, "t": p + k}) == held
        assert lc.evaluate(gen.kv_peak(), at) == max(h for _, h, _ in steps)


def test_a_batch_of_one_given_as_a_number_has_its_eager_bytes():
    # the symbolic batch refuses eager bytes at N = 1 (copies traced at N >= 2 may be views
    # there); traced at N = 1, the prefill's and the steps' bytes are the kernels'
    model = build("llama")
    gen = lc.generation(model, batch=1)
    assert gen.batch == 1
    for p, g in [(3, 4), (5, 2)]:
        steps = hand_steps(model, 1, p, g, "exact")
        assert lc.evaluate(gen.prefill_cost("bytes", "eager"), {"P": p}) == steps[0][2]
        for k, (_counted, _held, moved) in enumerate(steps[1:]):
            assert lc.evaluate(gen.step("bytes", "eager"), {"t": p + k}) == moved
        assert lc.evaluate(gen.total("flops", "exact"), {"P": p, "G": g}) == sum(
            c for c, *_ in steps
        )


N, P, G, t = sympy.symbols("N P G t", integer=True, positive=True)
# LLaMA of build("llama"): width 32, 2 layers, 4 query heads and 2 key/value heads of 8, SwiGLU
# of 64, vocabulary 50.  Weights a layer: q, o 32 x 32; k, v 32 x 16; gate, up, down 32 x 64.
LAYER_WEIGHTS = 2 * 32 * 32 + 2 * 32 * 16 + 3 * 32 * 64  # 9216
# torch FLOPs: 2 a weight and token; attention 2 products * 4 heads * 8 * 2 = 128 a query and
# key in each layer; the head (32 x 50) on the last position only (generate's logits_to_keep=1)
PREFILL = 2 * 2 * LAYER_WEIGHTS * N * P + 2 * 128 * N * P**2 + 2 * 32 * 50 * N
STEP = 2 * 2 * LAYER_WEIGHTS * N + 2 * 128 * N * (t + 1) + 2 * 32 * 50 * N  # t + 1 keys
TOTAL = PREFILL + sympy.summation(STEP, (t, P, P + G - 2))  # G - 1 decode steps
KV_CACHE = 2 * 2 * 2 * 8 * 4 * N * t  # layers * (keys, values) * heads * 8 * 4 bytes


def test_llama_generation_equals_the_arithmetic():
    _model, gen = traced("llama")
    assert (gen.batch, gen.prompt, gen.new, gen.position) == (N, P, G, t)
    assert sympy.expand(gen.prefill_cost("flops", "torch") - PREFILL) == 0
    assert sympy.expand(gen.step("flops", "torch") - STEP) == 0
    assert sympy.expand(gen.total("flops", "torch") - TOTAL) == 0
    assert gen.kv_cache() == KV_CACHE
    assert gen.kv_peak() == KV_CACHE.subs(t, P + G - 1)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_full_attention_total_is_a_polynomial(family):
    _model, gen = traced(family)
    for convention in ("exact", "torch", "macs"):
        total = gen.total("flops", convention)
        if convention == "exact":  # a one-token prompt builds no causal mask: its own piece
            pieces = total.atoms(sympy.Piecewise)
            assert len(pieces) == 1 and next(iter(pieces)).args[0].cond == (gen.prompt <= 1)
            total = total.replace(
                lambda e: isinstance(e, sympy.Piecewise), lambda e: e.args[-1].expr
            )
        assert not total.has(sympy.Piecewise, sympy.Min, sympy.Max)
        assert total.is_polynomial(gen.batch, gen.prompt, gen.new)
    # torch: the attention scores and weighted values of the G - 1 decode steps are
    # 2 (products) * 2 (layers) * 2 * 4 heads * 8 per head = 256 N per key; step t has t + 1
    # keys, 256 N t more than step 0: sum_{t=P}^{P+G-2} 256 N t = 128 N (G - 1)(2P + G - 2)
    n, p, g = gen.batch, gen.prompt, gen.new
    step = gen.step("flops", "torch")
    assert sympy.expand(step - step.subs(gen.position, 0) - 256 * n * gen.position) == 0
    keys = sympy.expand(128 * n * (g - 1) * (2 * p + g - 2))
    rest = sympy.expand(gen.total("flops", "torch") - gen.prefill_cost("flops", "torch"))
    assert sympy.expand(rest - keys - (g - 1) * step.subs(gen.position, 0)) == 0


def test_sliding_window_is_flat_beyond_the_window():
    model, gen = traced("mistral")
    step = gen.step("flops", "torch")
    t = gen.position
    assert step.has(sympy.Min)  # grows with t up to the window, then flat
    values = [lc.evaluate(step, {"N": 2, "t": k}) for k in range(1, 3 * WINDOW)]
    assert all(a < b for a, b in itertools.pairwise(values[: WINDOW - 1]))
    assert len(set(values[WINDOW - 2 :])) == 1
    exact = gen.step("flops", "exact")
    assert exact.has(sympy.Piecewise) or exact.has(sympy.Min)
    assert t in exact.free_symbols
    # a prompt longer than the window, many steps beyond it: equal to the counts
    steps = hand_steps(model, 1, 11, 6, "exact")
    at = {"N": 1, "P": 11, "G": 6}
    assert lc.evaluate(gen.total("flops", "exact"), at) == sum(c for c, *_ in steps)
    # the cache stops growing at the window: w - 1 positions kept per layer
    assert lc.evaluate(gen.kv_peak(), at) == lc.evaluate(gen.kv_cache(), {"N": 1, "t": WINDOW})


def test_generate_runs_the_steps_counted():
    """``model.generate`` makes one prefill call and G - 1 decode calls, with the inputs the
    hand stepping gives, and FlopCounterMode over all of generate gives the closed form."""
    model, gen = traced("llama")
    seen = []

    def record(_module, _args, kwargs):
        seen.append((tuple(kwargs["input_ids"].shape), tuple(kwargs["position_ids"].shape)))

    hook = model.register_forward_pre_hook(record, with_kwargs=True)
    counter = FlopCounterMode(display=False)
    try:
        ids = torch.randint(0, 50, (2, 6))
        with torch.enable_grad(), math_sdpa(), counter:
            model.generate(ids, max_new_tokens=5, min_new_tokens=5, do_sample=False)
    finally:
        hook.remove()
    assert seen == [((2, 6), (2, 6))] + [((2, 1), (2, 1))] * 4
    at = {"N": 2, "P": 6, "G": 5}
    assert lc.evaluate(gen.total("flops", "torch"), at) == counter.get_total_flops()


def test_time_to_first_token_and_per_output_token():
    _model, gen = traced("mistral")
    chip = lc.hardware("H100-SXM")
    peak = chip.peak("fp32", "vector") if "fp32" in chip.vector else chip.peak("fp32")
    ttft = gen.ttft("H100-SXM", {"N": 1, "P": 64}, dtype="fp32")
    # a lower bound at least the whole prefill's torch FLOPs at the fp32 peak
    flops = lc.evaluate(gen.prefill_cost("flops", "torch"), {"N": 1, "P": 64})
    assert ttft >= sympy.Rational(flops, peak) > 0
    tpot = [gen.tpot("H100-SXM", {"N": 1, "t": t}, dtype="fp32") for t in (WINDOW + 1, 30)]
    assert tpot[0] == tpot[1] > 0  # flat beyond the window
    # a decode step's bound is at least its own torch FLOPs at the peak
    step = lc.evaluate(gen.step("flops", "torch"), {"N": 1, "t": 30})
    assert tpot[1] >= sympy.Rational(step, peak)
    with pytest.raises(lc.ShapeError, match="missing value for t"):
        gen.tpot("H100-SXM", {"N": 1}, dtype="fp32")


def test_not_a_causal_lm_is_refused():
    with pytest.raises(TraceError, match="causal LM"):
        lc.generation(torch.nn.Linear(2, 2))
