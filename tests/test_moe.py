"""Mixture of experts: transformers' Mixtral, DeepSeek-V3 and Qwen2-MoE analysed in symbolic
``(N, L)`` (the routed experts run as ``batched_mm``: :mod:`layercost_sym.torchtools.experts`),
equal to FlopCounterMode and the op counter on real runs whatever the routing; total and
active parameters; the ``mixtral`` and ``deepseek`` architectures equal to those analyses and
to the parameter counts their papers state."""

from functools import cache
from typing import Any

import sympy
import torch
import transformers  # a test dependency (pyproject's test extra): never skipped
from torch.utils.flop_counter import FlopCounterMode

import layercost_sym as lc
from layercost_sym.torchtools.experts import routed_experts
from layercost_sym.torchtools.opcount import ExactCounter
from layercost_sym.torchtools.patches import math_sdpa
from layercost_sym.zoo import defaults

N, L = sympy.symbols("N L", integer=True, positive=True)

# d 16, F 24 per expert, E 4 experts, k 2 per token; 4 heads of 4, 2 key/value heads
MIXTRAL = dict(d_model=16, n_layer=1, n_head=4, n_kv_head=2, d_ff=24, vocab=50, n_expert=4,
               top_k=2)  # fmt: skip
# MLA: q rank 12, kv rank 8, heads 4 of 4 + 2 (nope + rope) for q.k and 4 for v; one dense
# block (F 40) then one MoE block (8 experts of 8, k 2, one shared expert of 8)
DEEPSEEK = dict(d_model=16, n_layer=2, n_dense=1, n_head=4, q_rank=12, kv_rank=8, d_nope=4,
                d_rope=2, d_v=4, d_ff=40, d_expert=8, n_expert=8, n_shared=1, top_k=2,
                vocab=50)  # fmt: skip


def _mixtral(hp: dict) -> torch.nn.Module:
    config = transformers.MixtralConfig(
        hidden_size=hp["d_model"],
        num_hidden_layers=hp["n_layer"],
        num_attention_heads=hp["n_head"],
        num_key_value_heads=hp["n_kv_head"],
        intermediate_size=hp["d_ff"],
        vocab_size=hp["vocab"],
        num_local_experts=hp["n_expert"],
        num_experts_per_tok=hp["top_k"],
        max_position_embeddings=64,
    )
    return transformers.MixtralForCausalLM(config).eval()


def _deepseek(hp: dict) -> torch.nn.Module:
    config = transformers.DeepseekV3Config(
        hidden_size=hp["d_model"],
        num_hidden_layers=hp["n_layer"],
        first_k_dense_replace=hp["n_dense"],
        num_attention_heads=hp["n_head"],
        num_key_value_heads=hp["n_head"],
        q_lora_rank=hp["q_rank"],
        kv_lora_rank=hp["kv_rank"],
        qk_nope_head_dim=hp["d_nope"],
        qk_rope_head_dim=hp["d_rope"],
        v_head_dim=hp["d_v"],
        intermediate_size=hp["d_ff"],
        moe_intermediate_size=hp["d_expert"],
        n_routed_experts=hp["n_expert"],
        n_shared_experts=hp["n_shared"],
        num_experts_per_tok=hp["top_k"],
        n_group=2,
        topk_group=1,
        vocab_size=hp["vocab"],
        max_position_embeddings=64,
    )
    return transformers.DeepseekV3ForCausalLM(config).eval()


@cache
def analysed(name: str) -> tuple[torch.nn.Module, Any]:
    torch.manual_seed(0)
    model = {"mixtral": lambda: _mixtral(MIXTRAL), "deepseek": lambda: _deepseek(DEEPSEEK)}[name]()
    return model, lc.analyze(model, input_ids=("N", "L"), use_cache=False)


def _at(expr: sympy.Expr, n: int, length: int) -> int:
    return int(expr.xreplace({N: n, L: length}))


def _torch_flops(model: torch.nn.Module, ids: torch.Tensor, implementation: str) -> int:
    model.config._experts_implementation = implementation
    try:
        # attention on the math backend, as analyze traces it (the fused CPU kernel counts 0)
        with FlopCounterMode(display=False) as counter, torch.no_grad(), math_sdpa():
            model(ids, use_cache=False)
    finally:
        model.config._experts_implementation = "grouped_mm"
    return counter.get_total_flops()


def test_mixtral_closed_form_and_active_parameters():
    model, a = analysed("mixtral")
    assert model.config._experts_implementation == "grouped_mm"  # restored after the trace
    # per token: q, o 16 x 16; k, v 16 x 8 (2 heads of 4); router 16 x 4; k = 2 experts of
    # 3 * 16 * 24 = 1152; head 16 x 50.  MACs: 768 + 64 + 2 * 1152 + 800 = 3936 per token;
    # attention 4 heads x 4 wide, scores and values: 2 * 16 per (query, key) pair
    assert sympy.expand(a.cost("torch") - (2 * 3936 * N * L + 2 * 32 * N * L**2)) == 0
    assert sympy.expand(2 * a.cost("macs") - a.cost("torch")) == 0
    # parameters: embedding 800, attention 768, norms 32, router 64, experts 4 * 1152, final
    # norm 16, head 800; a token uses 2 of the 4 experts: 2 * 1152 fewer
    assert a.params == sum(p.numel() for p in model.parameters()) == 7088
    assert a.active_params == 7088 - 2 * 1152
    (experts,) = a.experts
    assert (experts.experts, experts.top_k, experts.configured) == (4, 2, "grouped_mm")
    assert "batched_mm" in a.notes[0] and "no capacity limit" in a.notes[0]
    assert "active per token" in a.table() and a.to_json()["active_params"] == "4784"
    # the router's topk has no exact count (its comparisons depend on the values): named
    assert {u.what for u in a.unsupported if u.kind == "op"} == {"aten.topk.default"}


def test_routed_work_is_the_same_for_every_routing_and_implementation():
    # FlopCounterMode on real runs: a trained-like router (random weights: tokens spread over
    # the experts) and a zero router (every token picks the same 2 experts: the eager loop
    # skips the 2 empty ones), with the eager loop and batched_mm: all equal the closed form
    model, a = analysed("mixtral")
    n, length = 2, 5
    ids = torch.randint(
        0, MIXTRAL["vocab"], (n, length), generator=torch.Generator().manual_seed(1)
    )
    gate = model.model.layers[0].mlp.gate
    chosen: list[torch.Tensor] = []
    hook = gate.register_forward_hook(lambda m, i, out: chosen.append(out[2]))
    saved = gate.weight.detach().clone()
    try:
        for zero in (False, True):
            if zero:
                with torch.no_grad():
                    gate.weight.zero_()
            for implementation in ("eager", "batched_mm"):
                chosen.clear()
                assert _torch_flops(model, ids, implementation) == _at(a.cost("torch"), n, length)
                used = len(set(chosen[0].flatten().tolist()))
                assert used == 2 if zero else used > 2, used
    finally:
        hook.remove()
        with torch.no_grad():
            gate.weight.copy_(saved)


def test_experts_exact_count_does_not_depend_on_routing():
    # the op counter on the experts module alone (batched_mm), balanced and all-to-two
    # routings of T = 10 tokens: both equal the analysis' experts rows at N L = 10.  By hand:
    # 20 pairs through 48 x 16 (20 * 48 * 31) and 16 x 24 (20 * 16 * 47) products, silu as
    # sigmoid and mul (2 * 20 * 24), gate x up (20 * 24), weights (20 * 16), the sum of each
    # token's 2 outputs (10 * 16)
    model, a = analysed("mixtral")
    experts = model.model.layers[0].mlp.experts
    by_hand = 20 * 48 * 31 + 20 * 16 * 47 + 3 * 20 * 24 + 20 * 16 + 10 * 16
    rows = sympy.Add(*(r.cost("exact") for r in a.layers if ".mlp.experts" in r.name))
    assert _at(rows, 2, 5) == by_hand
    tokens = torch.arange(10)
    hidden, weights = torch.randn(10, 16), torch.rand(10, 2)
    model.config._experts_implementation = "batched_mm"
    try:
        for index in (torch.stack([tokens % 4, (tokens + 1) % 4], 1), torch.tensor([[0, 1]] * 10)):
            counter = ExactCounter()
            with counter, torch.no_grad():
                experts(hidden, index, weights)
            assert counter.total == by_hand
    finally:
        model.config._experts_implementation = "grouped_mm"


def test_deepseek_v3_closed_form_equals_flop_counter():
    model, a = analysed("deepseek")
    # per token MACs: MLA q 16*12 + 12*24, kv 16*10 + 8*32, o 16*16 (1152 per block, 2
    # blocks); dense SwiGLU 3*16*40; router 16*8, 2 routed experts and 1 shared of 3*16*8;
    # head 16*50.  Attention: 4 heads, q.k 6 wide and values 4 wide, per block
    per_token = 2 * 1152 + 3 * 16 * 40 + 16 * 8 + 3 * (3 * 16 * 8) + 16 * 50
    assert sympy.expand(a.cost("torch") - 2 * (per_token * N * L + 2 * 40 * N * L**2)) == 0
    assert a.params == sum(p.numel() for p in model.parameters())
    assert a.active_params == a.params - 6 * 3 * 16 * 8  # 6 of the 8 routed experts unused
    ids = torch.randint(0, DEEPSEEK["vocab"], (2, 5))
    assert _torch_flops(model, ids, "eager") == _at(a.cost("torch"), 2, 5)


def test_qwen2_moe_shared_expert_and_active_parameters():
    config = transformers.Qwen2MoeConfig(
        hidden_size=16,
        intermediate_size=32,
        moe_intermediate_size=8,
        shared_expert_intermediate_size=12,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_experts=6,
        num_experts_per_tok=2,
        vocab_size=50,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    model = transformers.Qwen2MoeForCausalLM(config).eval()
    (found,) = routed_experts(model)
    assert (found.experts, found.top_k, found.params) == (6, 2, 6 * 3 * 16 * 8)
    a = lc.analyze(model, input_ids=("N", "L"), use_cache=False)
    assert a.params == sum(p.numel() for p in model.parameters())
    assert a.active_params == a.params - 4 * 3 * 16 * 8
    ids = torch.randint(0, 50, (3, 4))
    assert _torch_flops(model, ids, "eager") == _at(a.cost("torch"), 3, 4)


def _same(ours: sympy.Expr, theirs: sympy.Expr, what: str) -> None:
    assert sympy.expand(ours - theirs) == 0, what


def test_architectures_equal_the_analyses():
    n_ctx = sympy.Symbol("n_ctx", integer=True, positive=True)
    for name, hp in (("mixtral", MIXTRAL), ("deepseek", DEEPSEEK)):
        _model, a = analysed(name)
        arch = lc.architecture(name, **hp)
        assert arch.params == a.params and arch.active_params == a.active_params, name
        for convention in ("macs", "torch"):
            _same(arch.cost(convention).xreplace({n_ctx: L}), a.cost(convention), name)


def test_exact_is_refused_by_the_architectures():
    try:
        lc.architecture("mixtral", **MIXTRAL).cost("exact")
    except lc.ConventionError as e:
        assert "moe.router" in str(e)
    else:
        raise AssertionError("the mixtral architecture stated an exact count")


def test_papers_parameter_counts():
    # the defaults are the public config.json values; transformers' configs default to them
    mixtral, deepseek = defaults("mixtral"), defaults("deepseek")
    mc, dc = transformers.MixtralConfig(), transformers.DeepseekV3Config()
    assert (mc.hidden_size, mc.intermediate_size, mc.num_hidden_layers) == (4096, 14336, 32)
    assert (mc.num_local_experts, mc.num_experts_per_tok, mc.vocab_size) == (8, 2, 32000)
    assert (mixtral["d_model"], mixtral["d_ff"], mixtral["n_expert"]) == (4096, 14336, 8)
    assert (dc.hidden_size, dc.num_hidden_layers, dc.first_k_dense_replace) == (7168, 61, 3)
    assert (dc.n_routed_experts, dc.num_experts_per_tok, dc.moe_intermediate_size) == (
        256,
        8,
        2048,
    )
    assert (dc.q_lora_rank, dc.kv_lora_rank, dc.vocab_size) == (1536, 512, 129280)
    assert (deepseek["q_rank"], deepseek["kv_rank"], deepseek["vocab"]) == (1536, 512, 129280)
    # Mixtral of Experts (Jiang et al. 2024) and its release: 46.7B total, 12.9B active
    m = lc.architecture("mixtral", **mixtral)
    assert round(m.params / 10**8) == 467 and round(m.active_params / 10**8) == 129
    # DeepSeek-V3 Technical Report (2024): 671B total, 37B activated per token (the main
    # model, without the 14B multi-token-prediction module).  Activated here 37.55B: the
    # report's 37 is its integer part (rounded it would be 38; without the embedding table,
    # a lookup reading one row, it is 36.63B, which rounds to 37)
    d = lc.architecture("deepseek", **deepseek)
    assert round(d.params / 10**9) == 671 and d.active_params // 10**9 == 37
    assert round((d.active_params - 129280 * 7168 + 7168) / 10**9) == 37


def tiny_mixtral() -> torch.nn.Module:
    """The factory ``layercost model test_moe:tiny_mixtral`` builds."""
    torch.manual_seed(0)
    return _mixtral(MIXTRAL)


def test_cli_shows_active_parameters(capsys, monkeypatch):
    from pathlib import Path

    from layercost_sym.cli import main

    hp = [f"{k}={v}" for k, v in MIXTRAL.items()]
    assert main(["arch", "mixtral", *hp, "n_ctx=8"]) == 0
    out = capsys.readouterr().out
    # exact is not stated by the architecture: the table falls back to macs and says so
    assert "active        4784 parameters per token" in out and "convention    macs" in out
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    argv = ["model", "test_moe:tiny_mixtral", "--input", "N,L", "--dtype", "long"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    (row,) = [line for line in out.splitlines() if line.startswith("active per token")]
    assert row.split()[-1] == "4784"  # the table's row under the total
    assert "note: model.layers.0.mlp.experts (MixtralExperts, 2 of 4 experts" in out


def test_experts_without_a_stated_top_k_are_refused():
    import types

    import pytest

    class Experts(torch.nn.Module):  # what use_experts_implementation makes, without a k
        _apply_gate = None

        def __init__(self) -> None:
            super().__init__()
            self.num_experts = 4
            self.config = types.SimpleNamespace(_experts_implementation="eager")

    with pytest.raises(lc.TraceError, match="num_experts_per_tok"):
        routed_experts(torch.nn.Sequential(Experts()))
