"""Roofline time and crossovers (layercost_sym.roofline), on chips written out here.

Expected values come from the arithmetic in the comments, never from the code under test.
"""

from __future__ import annotations

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
