"""Roofline time and crossovers (layercost_sym.roofline), on chips written out here.

Expected values come from the arithmetic in the comments, never from the code under test.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

import pytest
import sympy

from layercost_sym.errors import EvaluationError, UnknownHardwareError
from layercost_sym.roofline import Work, crossover, roofline, time_bound

N = sympy.Symbol("N", integer=True, positive=True)
H = sympy.Symbol("H", integer=True, positive=True)


@dataclass(frozen=True)
class FakeChip:
    name: str
    bandwidth: int  # bytes/s
    matrix: Mapping[str, int]  # FLOP/s
    vector: Mapping[str, int]


def Toy() -> FakeChip:
    """Round numbers: 1000 FLOP/s matrix, 100 FLOP/s vector in fp32, 10 B/s."""
    return FakeChip("toy", 10, {"fp32": 1000, "bf16": 4000}, {"fp32": 100})


def H100Like() -> FakeChip:
    """Dense bf16 tensor-core peak 989.4 TFLOP/s, 3.35 TB/s (H100 SXM's datasheet figures)."""
    return FakeChip("H100-like", 3_350_000_000_000, {"bf16": 989_400_000_000_000}, {})


def test_times_per_unit_and_bottleneck():
    # matrix 2000 FLOPs / 1000 = 2 s; other 50 FLOPs / 100 = 1/2 s; 30 bytes / 10 = 3 s
    work = Work("a", sympy.Integer(2000), sympy.Integer(50), sympy.Integer(30))
    row = roofline([work], Toy(), "fp32").rows[0]
    assert row.compute_time == Fraction(5, 2) and row.memory_time == 3
    assert row.time == 3 and row.bottleneck == "memory"
    assert row.intensity == Fraction(2050, 30)
    # bf16 has no vector peak: other work runs at the matrix peak, 2050 / 4000 s
    row = roofline([work], Toy(), "bf16").rows[0]
    assert row.compute_time == Fraction(2050, 4000) and row.bottleneck == "memory"


def test_a_model_is_the_sum_of_its_layers_bounds():
    a = Work("a", sympy.Integer(5000), sympy.Integer(0), sympy.Integer(10))  # 5 s vs 1 s
    b = Work("b", sympy.Integer(0), sympy.Integer(100), sympy.Integer(70))  # 1 s vs 7 s
    r = roofline([a, b], Toy(), "fp32")
    assert [row.bottleneck for row in r.rows] == ["compute", "memory"]
    assert r.time == 5 + 7 and r.bottlenecks() == {"compute": 1, "memory": 1}
    assert "total" in r.table() and "toy, fp32, bytes: min" in r.table()


def test_time_bound_is_a_closed_form():
    work = Work("a", 1000 * N, sympy.Integer(0), 20 * N + 100)
    # compute N s, memory (20 N + 100) / 10 = 2 N + 10 s: always memory-bound
    assert time_bound(work, Toy(), "fp32") == sympy.Max(N, 2 * N + 10)


def test_linear_crossover_on_an_h100_like_chip():
    # bias-free d x d Linear in bf16 (2 bytes an element), N tokens:
    # compute 2 N d^2 / P, memory 2 (N d + d^2 + N d) / B; equal where
    # N d^2 B = P (2 N d + d^2), N = P d / (d B - 2 P)
    d = 4096
    p, bw = 989_400_000_000_000, 3_350_000_000_000
    work = Work("fc", 2 * N * d * d, sympy.Integer(0), 2 * (2 * N * d + d * d))
    at = crossover(work, H100Like(), "bf16", N)
    assert at == sympy.Rational(p * d, d * bw - 2 * p)
    assert 345 < at < 346  # "a few hundred tokens"
    below = roofline([work], H100Like(), "bf16", {"N": 345}).rows[0]
    above = roofline([work], H100Like(), "bf16", {"N": 346}).rows[0]
    assert (below.bottleneck, above.bottleneck) == ("memory", "compute")


def test_crossover_with_floors_is_the_first_compute_bound_integer():
    # a stride-2 layer: matrix work 1000 * floor(H/2) FLOPs (floor(H/2) s), 100 bytes (10 s):
    # compute-bound from floor(H/2) >= 10, i.e. H = 20
    work = Work("s2", 1000 * sympy.floor(H / 2), sympy.Integer(0), sympy.Integer(100))
    assert crossover(work, Toy(), "fp32", "H") == 20


def test_crossover_refusals_name_the_problem():
    always_memory = Work("m", 1000 * N, sympy.Integer(0), 20 * N)  # N s vs 2 N s
    with pytest.raises(EvaluationError, match="never turns compute-bound"):
        crossover(always_memory, Toy(), "fp32", N)
    flat = Work("f", sympy.Integer(10), sympy.Integer(0), sympy.Integer(10))
    with pytest.raises(EvaluationError, match="do not depend on N"):
        crossover(flat, Toy(), "fp32", "N")
    with pytest.raises(UnknownHardwareError, match="toy states no peak for 'fp8'"):
        roofline([flat], Toy(), "fp8")


def test_missing_sizes_are_named_with_the_layer():
    work = Work("conv", 1000 * N, sympy.Integer(0), 20 * N)
    with pytest.raises(EvaluationError, match=r"conv: matrix FLOPs: .*N"):
        roofline([work], Toy(), "fp32", {})


def test_chips_of_the_table_by_name():
    # A100's tensor cores take no fp32: all fp32 work runs on the CUDA cores, 19.5 TFLOP/s
    # (datasheet row 'FP32'); bf16 matrix work on tensor cores at 312 TFLOP/s, other bf16
    # arithmetic at the whitepaper's non-tensor 39 TFLOP/s
    from layercost_sym.hardware import hardware
    from layercost_sym.roofline import peaks

    a100 = hardware("A100-SXM-80GB")
    assert peaks(a100, "fp32") == (19_500_000_000_000, 19_500_000_000_000)
    assert peaks(a100, "bf16") == (312_000_000_000_000, 39_000_000_000_000)
    # 1.95e13 FLOPs of matrix work in fp32 take one second; 2,039 GB moved take one second
    work = Work("w", sympy.Integer(19_500_000_000_000), sympy.Integer(0), sympy.Integer(0))
    assert roofline([work], "A100-SXM-80GB", "fp32").time == 1
    moved = Work("m", sympy.Integer(0), sympy.Integer(0), sympy.Integer(2_039_000_000_000))
    assert roofline([moved], "a100-sxm-80gb", "bf16").time == 1


# -- whole models ---------------------------------------------------------------------------------

AT = {"N": 1, "H": 224, "W": 224}


@functools.cache
def resnet18_analysis():
    import torchvision

    import layercost_sym as lc

    return lc.analyze(torchvision.models.resnet18(weights=None), ("N", 3, "H", "W"))


@pytest.mark.parametrize("chip", ["A100-SXM-80GB", "H100-SXM"])
def test_resnet18_roofline_rows_are_the_analysis_layers(chip):
    import layercost_sym as lc

    a = resnet18_analysis()
    r = a.roofline(chip, AT, dtype="fp32")
    assert [row.name for row in r.rows] == [layer.name for layer in a.layers]
    assert r.total_bytes == lc.evaluate(a.quantity("bytes", "min"), AT)
    # matrix work: the torch convention (2 per multiply-accumulate) of the whole model
    assert sum(row.matrix for row in r.rows) == lc.evaluate(a.cost("torch"), AT)
    assert r.time == sum(max(row.compute_time, row.memory_time) for row in r.rows)
    for layer, row in zip(a.layers, r.rows, strict=True):
        if row.time == 0:  # a view, or the sums of a residual's gradients: no forward work
            assert row.bottleneck == "-" and (layer.rule == "view" or "gradient" in layer.name)
            continue
        assert (row.bottleneck == "compute") == (row.compute_time >= row.memory_time)
        if layer.rule in ("BatchNorm2d", "ReLU", "add"):  # < 1 FLOP per byte moved
            assert row.bottleneck == "memory" and row.matrix == 0, layer.name
    # layer1.0.conv1: 64 -> 64 channels, 3x3, no bias, 56x56 at batch 1, float32:
    # 2*64*64*9*56*56 = 231,211,008 FLOPs on the fp32 (CUDA-core) peak;
    # 4*(64*56*56 + 64*64*9 + 64*56*56) = 1,753,088 bytes
    row = r.rows[[layer.name for layer in a.layers].index("layer1.0.conv1")]
    peak = lc.hardware(chip).peak("fp32", "vector")
    assert (row.matrix, row.other, row.bytes) == (231_211_008, 0, 1_753_088)
    assert row.compute_time == Fraction(231_211_008, peak) and row.bottleneck == "compute"
    assert row.memory_time == Fraction(1_753_088, lc.hardware(chip).bandwidth)


def test_resnet18_fc_crossover_in_the_batch():
    # fc: Linear(512, 1000) with bias, float32 on an A100 (fp32: 19.5 TFLOP/s, 2,039 GB/s):
    # compute 2*N*512*1000 / 19.5e12, memory 4*(512 N + 513,000 + 1000 N) / 2.039e12; equal at
    # 1,024,000 * 2,039 N = 78,000 * (1,512 N + 513,000), N = 40,014,000,000 / 1,970,000,000
    a = resnet18_analysis()
    at = a.crossover("A100-SXM-80GB", "N", {"H": 224, "W": 224}, dtype="fp32", layer="fc")
    assert at == sympy.Rational(40_014_000_000, 1_970_000_000)
    rows = {n: a.roofline("A100-SXM-80GB", dict(AT, N=n), dtype="fp32").rows[-1] for n in (20, 21)}
    assert (rows[20].bottleneck, rows[21].bottleneck) == ("memory", "compute")
    # the whole model: its summed compute time passes its summed memory time below batch 1
    # (the convolutions' work outweighs every byte moved), though most calls are memory-bound
    whole = a.crossover("A100-SXM-80GB", "N", {"H": 224, "W": 224}, dtype="fp32")
    r = a.roofline("A100-SXM-80GB", AT, dtype="fp32")
    assert 0 < whole < 1
    assert sum(x.compute_time for x in r.rows) > sum(x.memory_time for x in r.rows)
    assert r.bottlenecks()["memory"] > r.bottlenecks()["compute"]


def _gpt2(n_positions: int = 256):
    import transformers

    import layercost_sym as lc

    config = transformers.GPT2Config(
        n_layer=1,
        n_embd=64,
        n_head=2,
        vocab_size=1000,
        n_positions=n_positions,
        bos_token_id=0,
        eos_token_id=0,
    )
    return lc.analyze(transformers.GPT2LMHeadModel(config).eval(), ("N", "L"), use_cache=False)


def test_gpt2_lm_head_crossover_in_tokens():
    # lm_head: 64 -> 1000 without bias over N*L tokens, float32 on an H100 SXM (fp32 on CUDA
    # cores 66.9 TFLOP/s, 3.35 TB/s): compute 2*64*1000 T / 66.9e12, memory 4*(64 T + 64,000
    # + 1000 T) / 3.35e12; equal at 128,000 * 3,350 T = 267,600 * (1,064 T + 64,000):
    # T = 17,126,400,000 / 144,078,400 tokens, N = T / 16 at L = 16
    a = _gpt2()
    tokens = sympy.Rational(17_126_400_000, 428_800_000 - 267_600 * 1064)
    at = a.crossover("H100-SXM", "N", {"L": 16}, dtype="fp32", layer="lm_head")
    assert at == tokens / 16
    lm = lambda n: a.roofline("H100-SXM", {"N": n, "L": 16}, dtype="fp32").rows[-1]  # noqa: E731
    assert (lm(7).bottleneck, lm(8).bottleneck) == ("memory", "compute")
    assert a.layers[-1].name == "lm_head"


def test_llama_mlp_projection_crossover_and_intensity():
    import transformers

    import layercost_sym as lc

    config = transformers.LlamaConfig(
        hidden_size=64,
        intermediate_size=176,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=101,
        max_position_embeddings=128,
    )
    model = transformers.LlamaForCausalLM(config).eval()
    a = lc.analyze(model, ("N", "L"), use_cache=False)
    # gate_proj: 64 -> 176, no bias, T = N*L tokens, float32 on an A100 (fp32 19.5 TFLOP/s,
    # 2,039 GB/s): compute 2*64*176 T / 19.5e12, memory 4*(64 T + 64*176 + 176 T) / 2.039e12;
    # equal at 22,528 * 2,039 T = 78,000 * (240 T + 11,264)
    tokens = sympy.Rational(78_000 * 11_264, 22_528 * 2_039 - 78_000 * 240)
    name = "model.layers.0.mlp.gate_proj"
    assert a.crossover("A100-SXM-80GB", "N", {"L": 8}, dtype="fp32", layer=name) == tokens / 8
    intensity = a.intensity()
    assert intensity.free_symbols == {lc.parse("N"), lc.parse("L")}
    # FLOPs per byte at N = 2, L = 8 is the two totals' quotient (at N = 1 the bytes are
    # refused: a trace at batch 1 moves other bytes; analyse N = 1 as a number for them)
    at = {"N": 2, "L": 8}
    assert intensity.subs({lc.parse(k): v for k, v in at.items()}) == sympy.Rational(
        lc.evaluate(a.cost("exact"), at), lc.evaluate(a.quantity("bytes"), at)
    )


def test_cli_model_hardware_table_and_json(capsys):
    import json

    from layercost_sym.cli import main

    args = ["model", "torchvision.models:resnet18", "--input", "N,3,H,W", "--at", "N=1,H=64,W=64"]
    assert main([*args, "--hardware", "A100-SXM-80GB"]) == 0
    out = capsys.readouterr().out
    assert "A100-SXM-80GB, fp32, bytes: min" in out and "bound by" in out
    assert main([*args, "--hardware", "A100-SXM-80GB", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)["roofline"]
    expected = resnet18_analysis().roofline(
        "A100-SXM-80GB", {"N": 1, "H": 64, "W": 64}, dtype="fp32"
    )
    assert data["seconds"]["exact"] == str(expected.time)
    assert [r["bottleneck"] for r in data["rows"]] == [r.bottleneck for r in expected.rows]
    assert data["bytes"] == expected.total_bytes
    # eager bytes: what the kernels move, more than the fused bound
    assert main([*args, "--hardware", "A100-SXM-80GB", "--bytes", "eager", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)["roofline"]
    eager = resnet18_analysis().roofline(
        "A100-SXM-80GB", {"N": 1, "H": 64, "W": 64}, dtype="fp32", bytes="eager"
    )
    assert data["bytes"] == eager.total_bytes > expected.total_bytes
    assert data["bytes_convention"] == "eager"
    # symbolic inputs and no sizes: one error line naming what to give
    assert (
        main(["model", "torchvision.models:resnet18", "--input", "N,3,H,W", "--hardware", "T4"])
        == 2
    )
    assert "--hardware needs sizes for N, H, W" in capsys.readouterr().err


def test_measure_script_says_when_there_is_no_cuda():
    import subprocess
    import sys
    from pathlib import Path

    import torch

    script = Path(__file__).parent / "benchmarks" / "measure_roofline.py"
    ran = subprocess.run(
        [sys.executable, str(script), "--chip", "H100-SXM"], capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stderr
    if not torch.cuda.is_available():
        assert "no CUDA device here" in ran.stdout
