"""Inverse questions (layercost_sym/inverse.py): every answer checked on both sides with
``lc.evaluate`` (or the roofline's own sum), points outside a domain skipped, budgets below the
minimum answered None, a decreasing formula refused, and the search against a brute-force loop
(Hypothesis)."""

from __future__ import annotations

from fractions import Fraction

import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

import layercost_sym as lc
from layercost_sym.ledger import Weights, training_memory
from layercost_sym.roofline import roofline, works_of

N, L, n_ctx = lc.symbols("N L n_ctx")

# GPT-2 small's hyperparameters but the context (transformers GPT2Config())
GPT2 = dict(d_model=768, n_layer=12, n_head=12, d_ff=3072, vocab=50257)


def _multiple_of(k: int) -> lc.Domain:
    return lc.Domain((lc.Condition(sympy.Eq(sympy.Mod(L, k), 0), f"L % {k} == 0", "tiles", "t"),))


def test_the_largest_context_under_a_training_flops_budget_is_checked_on_both_sides():
    flops = lc.training_flops(lc.architecture("gpt", **GPT2))
    budget = 10**15
    a = lc.largest_answer(flops, budget, "n_ctx", at={"N": 8})
    assert a.monotone == "proved"  # a polynomial in n_ctx with positive coefficients
    assert lc.evaluate(flops, {"N": 8, "n_ctx": a.value}) <= budget
    assert lc.evaluate(flops, {"N": 8, "n_ctx": a.value + 1}) > budget
    assert a.over == a.value + 1 and a.skipped == 0
    # the batch under the same budget at a 1024-token context, from the Cost directly
    batch = lc.largest(flops, budget, "N", at={"n_ctx": 1024})
    assert lc.evaluate(flops, {"N": batch, "n_ctx": 1024}) <= budget
    assert lc.evaluate(flops, {"N": batch + 1, "n_ctx": 1024}) > budget


def test_a_rules_cost_and_its_text():
    proj = lc.rule("Linear").at(C_in=64, C_out=64, N=L, b=1)
    for convention in ("torch", "exact"):
        n = lc.largest(proj, 10**6, "L", convention=convention)
        cost = proj.quantity("flops", convention)
        assert lc.evaluate(cost, {"L": n}) <= 10**6 < lc.evaluate(cost, {"L": n + 1})
    # text: 3 L (L + 1) / 2 is 975 at 25 and 1053 at 26
    assert lc.largest("3 * L * (L + 1) / 2", 1000, "L") == 25
    assert lc.largest("3 * L * (L + 1) / 2", 1053, "L") == 26


def test_a_domain_violating_region_is_skipped_not_answered():
    e = lc.with_domain(L * (L + 1), _multiple_of(8))
    a = lc.largest_answer(e, 10_000, "L")
    # L (L + 1) <= 10000 up to L = 99 (9900; 100 gives 10100): the largest multiple of 8 is 96
    assert (a.value, a.over, a.skipped) == (96, 100, 3)
    assert lc.evaluate(e, {"L": 96}) <= 10_000
    for n in (97, 98, 99):
        with pytest.raises(lc.DomainError, match="tiles"):
            lc.evaluate(e, {"L": n})
    assert lc.evaluate(L * (L + 1), {"L": 100}) > 10_000  # the crossing, outside the domain too
    # a lower bound on the domain above the crossing: no answer
    at_least = lc.Domain((lc.Condition(sympy.Ge(L, 200), "L >= 200", "too short", "t"),))
    assert lc.largest(lc.with_domain(L * (L + 1), at_least), 10_000, "L") is None


def test_a_rules_constraint_is_honoured():
    # Conv2d's kernel must fit the input: a 9x9 kernel, no padding, H = W = 16 fixed; over the
    # batch the constraint is decided by the fixed sizes alone and refused before any search
    conv = lc.rule("Conv2d").at(C_in=3, C_out=8, k=9, s=1, p=0, d=1, g=1, b=0, W=16)
    macs = conv.quantity("flops", "macs")
    h = lc.largest(macs, 10**6, "H", at={"N": 1})
    assert lc.evaluate(macs, {"N": 1, "H": h}) <= 10**6 < lc.evaluate(macs, {"N": 1, "H": h + 1})
    least = 8 * 3 * 81 * 8  # macs at H = 9, the least H the kernel fits (H_out = 1, W_out = 8)
    assert lc.largest(macs, least, "H", at={"N": 1}) == 9
    # one less: H = 9 is over budget, and below it the formula's numbers (0 and negative at
    # H <= 8) look within budget but lie outside the domain: no answer
    a = lc.largest_answer(macs, least - 1, "H", at={"N": 1})
    assert (a.value, a.over, a.skipped) == (None, 9, 8)
    with pytest.raises(lc.DomainError, match="kernel size"):
        lc.largest(macs, 10**6, "N", at={"H": 8})


def test_budgets_below_the_minimum_and_above_every_value():
    assert lc.largest("2 * L + 5", 6, "L") is None  # 7 at L = 1
    assert lc.largest("2 * L + 5", 7, "L") == 1
    with pytest.raises(lc.EvaluationError, match="stays within the budget"):
        lc.largest("0 * L + 3", 10, "L")
    with pytest.raises(lc.EvaluationError, match="negative"):
        lc.largest("L", -1, "L")
    with pytest.raises(lc.MissingSymbolError, match="'N'"):
        lc.largest("N * L", 10, "L")


def test_a_formula_that_decreases_is_refused():
    with pytest.raises(lc.EvaluationError, match="decreases"):
        lc.largest("(L - 10)**2", 90, "L")  # 81, 64, 36, 4 at 1, 2, 4, 8, then 36 at 16
    with pytest.raises(lc.EvaluationError, match="decreases"):
        lc.largest("(L - 10)**2", 50, "L")  # over budget at 1, under it at 8
    # not proved but not decreasing: answered from the samples
    a = lc.largest_answer("L - Mod(L, 2)", 101, "L")  # 2 floor(L / 2)
    assert (a.value, a.monotone) == (101, "sampled")


@settings(max_examples=40, deadline=None)
@given(
    a=st.integers(0, 5),
    b=st.integers(1, 50),
    c=st.integers(0, 1000),
    k=st.integers(1, 7),
    budget=st.integers(0, 100_000),
)
def test_the_search_agrees_with_a_brute_force_loop(a, b, c, k, budget):
    f = a * L**2 + b * L + c
    e = lc.with_domain(f, _multiple_of(k))
    brute = None
    n = 1
    while a * n * n + b * n + c <= budget:  # b >= 1: the loop ends
        if n % k == 0:
            brute = n
        n += 1
    assert lc.largest(e, budget, "L") == brute


def test_the_width_that_meets_a_parameter_budget():
    d = lc.symbols("d_model")
    gpt = dict(n_layer=12, n_head=12, d_ff=4 * d, vocab=50257, n_ctx=1024)
    small = 124439808  # GPT-2 small's parameters, GPT2LMHeadModel(GPT2Config()), tied head
    assert lc.meets_budget("gpt", budget=small, **gpt) == 768
    width = lc.meets_budget("gpt", budget=small - 1, **gpt)
    assert width == 756  # 757 ... 767 are not multiples of n_head = 12
    below = lc.architecture("gpt", **{**gpt, "d_ff": 4 * 756}, d_model=756)
    assert lc.evaluate(below.params, {}) <= small - 1
    for n in range(757, 768):
        with pytest.raises(lc.ArchitectureError, match="must divide"):
            lc.architecture("gpt", **{**gpt, "d_ff": 4 * n}, d_model=n)
    # the depth of LLaMA-7B: 6738415616 parameters (LlamaForCausalLM(LlamaConfig()))
    llama = dict(d_model=4096, n_head=32, n_kv_head=32, d_ff=11008, vocab=32000, n_ctx=2048)
    assert lc.meets_budget("llama", budget=6738415616, vary="n_layer", **llama) == 32
    assert lc.meets_budget("llama", budget=6738415615, vary="n_layer", **llama) == 31
    # GPT-2's depth under 10**8 parameters, d_ff given as 4 d_model beside d_model = 768
    shallow = {k: v for k, v in gpt.items() if k != "n_layer"}
    depth = lc.meets_budget("gpt", budget=10**8, vary="n_layer", **shallow, d_model=768)
    params = [
        lc.architecture("gpt", **{**shallow, "d_ff": 3072}, d_model=768, n_layer=n).params
        for n in (depth, depth + 1)
    ]
    assert params[0] <= 10**8 < params[1]
    # a FLOPs budget, sizes at `at`
    flops = lc.meets_budget("gpt", "flops", budget=10**12, convention="torch", at={"N": 1}, **gpt)
    cost = lc.architecture("gpt", **{**gpt, "d_ff": 4 * flops}, d_model=flops).cost("torch")
    assert lc.evaluate(cost, {"N": 1}) <= 10**12
    assert lc.meets_budget("gpt", budget=10, **gpt) is None


def test_meets_budget_refuses_unclear_questions():
    with pytest.raises(lc.ArchitectureError, match="give d_ff"):
        lc.meets_budget("gpt", budget=10**8, n_layer=12, n_head=12, vocab=50257, n_ctx=1024)
    with pytest.raises(lc.ArchitectureError, match="what varies"):
        lc.meets_budget("gpt", budget=10**8, **GPT2, n_ctx=1024)  # d_model among them
    with pytest.raises(lc.ArchitectureError, match="no numeric hyperparameter 'depth'"):
        lc.meets_budget("gpt", budget=10**8, vary="depth", **GPT2)


def test_training_flops_equal_the_traced_model():
    # README, "Training: backward work and memory": lc.analyze(GPT2LMHeadModel(GPT2Config()),
    # ("N", "L"), backward=True).cost("torch") / (N L) = 110592 L + 741192192 (traced by torch)
    flops = lc.training_flops(lc.architecture("gpt", **GPT2))
    assert sympy.expand(flops / (N * n_ctx)) == 110592 * n_ctx + 741192192
    with pytest.raises(lc.ConventionError, match="gradient sums"):
        lc.training_flops(lc.architecture("gpt", **GPT2), "exact")


def test_an_iso_flop_grid_spends_the_compute_within_one_token():
    compute = 1e20  # a float budget is its decimal: 10**20 exactly
    sizes = [
        dict(d_model=512, n_layer=8, n_head=8),
        dict(d_model=768, n_layer=12, n_head=12),
        dict(d_model=1024, n_layer=24, n_head=16),
    ]
    sizes = [{**s, "d_ff": 4 * s["d_model"]} for s in sizes]
    rows = lc.iso_flop("gpt", compute=compute, sizes=sizes, vocab=50257, n_ctx=1024)
    assert [r.hyperparameters for r in rows] == sizes
    assert rows[1].params == 124439808  # GPT-2 small
    # GPT-2 small's per-token cost from the traced formula above, at L = 1024
    assert rows[1].per_token == 110592 * 1024 + 741192192
    for r in rows:
        arch = lc.architecture("gpt", **r.hyperparameters, vocab=50257, n_ctx=1024)
        flops = lc.training_flops(arch)
        assert r.flops == r.tokens * r.per_token <= 10**20 < r.flops + r.per_token
        assert r.per_token * 1024 == lc.evaluate(flops, {"N": 1})
        sequences = r.tokens // 1024  # whole sequences: the formula itself, on both sides
        assert (
            lc.evaluate(flops, {"N": sequences})
            <= 10**20
            < lc.evaluate(flops, {"N": sequences + 1})
        )
        assert r.params == lc.evaluate(arch.params, {})
        assert r.six_nd == 6 * r.params * r.tokens
    assert rows[0].tokens > rows[1].tokens > rows[2].tokens  # bigger models, fewer tokens
    with pytest.raises(lc.ArchitectureError, match="give n_ctx"):
        lc.iso_flop("gpt", compute=10**18, sizes=sizes, vocab=50257)


def test_a_time_budget_on_a_chip():
    linear = lc.rule("Linear")
    arch = linear.at(C_in=1024, C_out=4096, N=N, b=1, name="up") + linear.at(
        C_in=4096, C_out=1024, N=N, b=1, name="down"
    )  # an MLP over N tokens
    element = {"e_a": 2, "e_w": 2}  # bf16 activations and weights
    budget = Fraction(1, 10**4)  # seconds
    n = lc.largest(arch, budget, "N", at=element, quantity="time", chip="H100-SXM", dtype="bf16")
    # the roofline's own sum of per-layer bounds, on both sides
    works = works_of([(p.name, lc.Cost([p], None, arch.conditions)) for p in arch.parts])

    def time(batch: int) -> Fraction:
        return roofline(works, "H100-SXM", "bf16", {"N": batch, **element}).time

    assert time(n) <= budget < time(n + 1)
    with pytest.raises(lc.EvaluationError, match="chip"):
        lc.largest(arch, budget, "N", at=element, quantity="time")


def test_the_ledger_shares_the_search():
    weights = [Weights(numel=1000, element_size=2, trainable=True, tensors=2)]
    ledger = training_memory(weights, activations=48 * N, optimizer="adamw")
    capacity = 2**20
    assert ledger.largest("N", capacity) == lc.largest(ledger, capacity, "N")
    n = ledger.largest("N", capacity)
    assert lc.evaluate(ledger.total, {"N": n}) <= capacity < lc.evaluate(ledger.total, {"N": n + 1})


@pytest.mark.parametrize("name", ["gpt", "llama"])
def test_training_flops_equal_a_traced_small_model(name):
    # the composition's forward + backward against lc.analyze(..., backward=True) of the
    # transformers model it mirrors (torch's trace), under both conventions it is stated in
    import torch
    import transformers

    hp = dict(d_model=32, n_layer=2, n_head=4, d_ff=48, vocab=100, n_ctx=16)
    if name == "gpt":
        config = transformers.GPT2Config(
            n_embd=32,
            n_layer=2,
            n_head=4,
            n_inner=48,
            vocab_size=100,
            n_positions=16,
            bos_token_id=0,
            eos_token_id=0,
        )
        model = transformers.GPT2LMHeadModel(config).eval()
    else:
        hp["n_kv_head"] = 2
        config = transformers.LlamaConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=48,
            vocab_size=100,
            max_position_embeddings=16,
            bos_token_id=0,
            eos_token_id=0,
        )
        model = transformers.LlamaForCausalLM(config).eval()
    analysis = lc.analyze(model, ("N", 16), dtype=torch.long, backward=True)
    arch = lc.architecture(name, **hp)
    for convention in ("torch", "macs"):
        traced = analysis.cost(convention)
        assert sympy.expand(lc.training_flops(arch, convention) - traced) == 0, convention
