"""Roofline time: the lower bound ``max(work / peak, bytes / bandwidth)`` of each layer on a chip.

A layer's *work* is split by the units that run it: **matrix** work, the FLOPs of weighted sums
(2 per multiply-accumulate: convolution, linear, matmul, attention's products, recurrent
gates; the ``torch`` convention), runs against the chip's matrix (tensor-core) peak of the
dtype; **other** arithmetic (the ``exact`` FLOPs of a layer with no weighted sum:
normalisation, activation, pooling, elementwise) runs against the chip's vector peak of the
dtype where the spec gives one, else its matrix peak.  The non-matrix arithmetic inside a
matrix layer (a bias add, attention's softmax) is not timed apart: it is small beside the
products and overlaps them.  *Bytes* are one convention of the ``bytes`` quantity (``min``:
inputs, parameters and outputs once each).  Each layer's bound is

    time = max(matrix / peak_matrix + other / peak_vector, bytes / bandwidth)

and it is *compute-bound* where the first term is larger, *memory-bound* otherwise.  A model's
bound is the sum of its layers' (layers run one after another).  Times are exact fractions of a
second: FLOPs, bytes, peaks and bandwidths are integers.

>>> import sympy
>>> from layercost_sym.roofline import Work, crossover, roofline
>>> N = sympy.Symbol("N", integer=True, positive=True)
>>> d = 4096  # a bias-free d x d Linear in bf16 (2 bytes an element) over N tokens
>>> fc = Work("fc", matrix=2 * N * d * d, other=sympy.Integer(0), bytes=2 * (2 * N * d + d * d))
>>> at = crossover(fc, "H100-SXM", "bf16", N)  # 2 N d^2 / P = 2 (2 N d + d^2) / B
>>> at, round(float(at), 2)
(10131456/29357, 345.11)
>>> [roofline([fc], "H100-SXM", "bf16", {"N": n}).rows[0].bottleneck for n in (345, 346)]
['memory', 'compute']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

import sympy

from .errors import EvaluationError, UnknownHardwareError
from .evaluation import evaluate, least_integer

__all__ = [
    "ChipLike",
    "Roofline",
    "RooflineRow",
    "Work",
    "as_chip",
    "crossover",
    "peaks",
    "roofline",
    "time_bound",
]


class ChipLike(Protocol):
    """What the roofline needs of a chip (:class:`layercost_sym.hardware.Chip` has it)."""

    @property
    def name(self) -> str: ...

    @property
    def bandwidth(self) -> int:  # bytes/s
        ...

    @property
    def matrix(self) -> Mapping[str, int]:  # dtype -> dense FLOP/s of the matrix units
        ...

    @property
    def vector(self) -> Mapping[str, int]:  # dtype -> FLOP/s of the other units (may be empty)
        ...


@dataclass(frozen=True)
class Work:
    """One layer's work and traffic, as expressions (or numbers)."""

    name: str
    matrix: sympy.Expr  # FLOPs of weighted sums (2 per multiply-accumulate)
    other: sympy.Expr  # other arithmetic
    bytes: sympy.Expr  # bytes moved, under the convention the caller chose

    @property
    def flops(self) -> sympy.Expr:
        return self.matrix + self.other


def peaks(chip: ChipLike, dtype: str) -> tuple[int, int]:
    """``(matrix peak, vector peak)`` of ``chip`` for ``dtype``, in FLOP/s.  A dtype the matrix
    units do not take (fp32 on tensor cores) runs all its work on the vector units; a dtype
    with no vector peak runs its other arithmetic at the matrix peak."""
    matrix = chip.matrix.get(dtype, chip.vector.get(dtype))
    if matrix is None:
        raise UnknownHardwareError(
            f"{chip.name} states no peak for {dtype!r}; matrix: "
            f"{', '.join(chip.matrix) or 'none'}; vector: {', '.join(chip.vector) or 'none'}"
        )
    return int(matrix), int(chip.vector.get(dtype, matrix))


def as_chip(chip: ChipLike | str) -> ChipLike:
    """A chip, or the chip of ``formulas/hardware.toml`` named ``chip``."""
    if isinstance(chip, str):
        from .hardware import hardware

        return hardware(chip)
    return chip


def _times(work: Work, chip: ChipLike | str, dtype: str) -> tuple[sympy.Expr, sympy.Expr]:
    chip = as_chip(chip)
    matrix_peak, vector_peak = peaks(chip, dtype)
    compute = work.matrix / sympy.Integer(matrix_peak) + work.other / sympy.Integer(vector_peak)
    return compute, work.bytes / sympy.Integer(chip.bandwidth)


def time_bound(work: Work, chip: ChipLike | str, dtype: str) -> sympy.Expr:
    """The layer's time lower bound in seconds, a closed form in its free symbols:
    ``Max(compute time, memory time)``."""
    compute, memory = _times(work, chip, dtype)
    return sympy.Max(compute, memory)


@dataclass(frozen=True)
class RooflineRow:
    """One layer on one chip at given sizes: its work, bytes and the times they take."""

    name: str
    matrix: int
    other: int
    bytes: int
    compute_time: Fraction  # seconds
    memory_time: Fraction  # seconds

    @property
    def flops(self) -> int:
        return self.matrix + self.other

    @property
    def time(self) -> Fraction:
        """The lower bound: the larger of the two times."""
        return max(self.compute_time, self.memory_time)

    @property
    def bottleneck(self) -> str:
        """``"compute"`` or ``"memory"`` (a tie counts as compute: the units are saturated);
        ``"-"`` for a call that neither computes nor moves anything (a view)."""
        if not self.compute_time and not self.memory_time:
            return "-"
        return "compute" if self.compute_time >= self.memory_time else "memory"

    @property
    def intensity(self) -> Fraction | None:
        """FLOPs per byte (None for a layer that moves nothing)."""
        return Fraction(self.flops, self.bytes) if self.bytes else None


@dataclass(frozen=True)
class Roofline:
    """Every layer of a model (or one layer) on ``chip`` in ``dtype`` at the sizes ``values``.

    ``bytes`` names the convention of the bytes quantity used."""

    chip: str
    dtype: str
    bytes: str
    rows: tuple[RooflineRow, ...]

    @property
    def time(self) -> Fraction:
        """The model's lower bound: its layers' bounds summed (seconds)."""
        return sum((r.time for r in self.rows), Fraction(0))

    @property
    def flops(self) -> int:
        return sum(r.flops for r in self.rows)

    @property
    def total_bytes(self) -> int:
        return sum(r.bytes for r in self.rows)

    def bottlenecks(self) -> dict[str, int]:
        """How many layers are compute-bound and how many memory-bound (views, which take no
        time, are neither)."""
        out = {"compute": 0, "memory": 0}
        for r in self.rows:
            if r.bottleneck in out:
                out[r.bottleneck] += 1
        return out

    def to_json(self) -> dict[str, Any]:
        """Plain data: counts as integers, times in seconds as exact fraction text and as
        floats, intensities likewise."""

        def both(x: Fraction | None) -> dict[str, Any] | None:
            return None if x is None else {"exact": str(x), "value": float(x)}

        return {
            "chip": self.chip,
            "dtype": self.dtype,
            "bytes_convention": self.bytes,
            "rows": [
                {
                    "name": r.name,
                    "matrix_flops": r.matrix,
                    "other_flops": r.other,
                    "bytes": r.bytes,
                    "intensity": both(r.intensity),
                    "compute_seconds": both(r.compute_time),
                    "memory_seconds": both(r.memory_time),
                    "seconds": both(r.time),
                    "bottleneck": r.bottleneck,
                }
                for r in self.rows
            ],
            "flops": self.flops,
            "bytes": self.total_bytes,
            "seconds": both(self.time),
            "bottlenecks": self.bottlenecks(),
        }

    def table(self) -> str:
        """The rows as plain text: FLOPs, bytes, intensity, time (microseconds), bottleneck."""
        head = ("layer", "FLOPs", "bytes", "FLOP/B", "time (us)", "bound by")
        body = []
        for r in self.rows:
            intensity = "-" if r.intensity is None else f"{float(r.intensity):.3g}"
            body.append(
                (
                    r.name,
                    str(r.flops),
                    str(r.bytes),
                    intensity,
                    f"{float(r.time) * 1e6:.4g}",
                    r.bottleneck,
                )
            )
        body.append(
            (
                "total",
                str(self.flops),
                str(self.total_bytes),
                "",
                f"{float(self.time) * 1e6:.4g}",
                "",
            )
        )
        widths = [max(len(row[i]) for row in (head, *body)) for i in range(len(head))]
        lines = [
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
            for row in (head, *body)
        ]
        note = f"{self.chip}, {self.dtype}, bytes: {self.bytes}"
        return "\n".join([note, *lines])


def _value(expr: sympy.Expr | int, values: Mapping[str, int], what: str, name: str) -> int:
    if isinstance(expr, int):
        return expr
    try:
        return int(evaluate(expr, values))
    except EvaluationError as exc:
        raise EvaluationError(f"{name}: {what}: {exc}") from None


def roofline(
    works: Sequence[Work],
    chip: ChipLike | str,
    dtype: str,
    values: Mapping[str, int] | None = None,
    *,
    bytes: str = "min",
) -> Roofline:
    """Each work on ``chip`` (a chip, or a name of ``formulas/hardware.toml``) in ``dtype`` at
    ``values`` (the sizes its expressions need)."""
    values = dict(values or {})
    chip = as_chip(chip)
    matrix_peak, vector_peak = peaks(chip, dtype)
    rows = []
    for w in works:
        matrix = _value(w.matrix, values, "matrix FLOPs", w.name)
        other = _value(w.other, values, "other FLOPs", w.name)
        moved = _value(w.bytes, values, "bytes", w.name)
        rows.append(
            RooflineRow(
                w.name,
                matrix,
                other,
                moved,
                Fraction(matrix, matrix_peak) + Fraction(other, vector_peak),
                Fraction(moved, chip.bandwidth),
            )
        )
    return Roofline(chip.name, dtype, bytes, tuple(rows))


def crossover(
    work: Work,
    chip: ChipLike | str,
    dtype: str,
    symbol: sympy.Symbol | str,
    values: Mapping[str, int] | None = None,
) -> sympy.Expr:
    """The value of ``symbol`` at which ``work`` turns from memory-bound to compute-bound on
    ``chip`` (its compute time equals its memory time), the other symbols at ``values``.

    Solved exactly where SymPy can (a rational number, or an expression in the symbols left
    free); otherwise the smallest integer at which the work is compute-bound, found by
    bisection over exact integers and checked on both sides.  Raises
    :class:`~layercost_sym.errors.EvaluationError` when the work is memory-bound (or
    compute-bound) at every size.
    """
    values = dict(values or {})
    compute, memory = _times(work, chip, dtype)
    gap = sympy.sympify(compute - memory)
    if isinstance(symbol, str):
        found = [s for s in gap.free_symbols if s.name == symbol]
        if not found:
            raise EvaluationError(f"{work.name}: its times do not depend on {symbol}")
        symbol = found[0]
    subs = {s: values[s.name] for s in gap.free_symbols if s.name in values and s != symbol}
    gap = gap.xreplace(subs)
    if symbol not in gap.free_symbols:
        raise EvaluationError(f"{work.name}: its times do not depend on {symbol}")
    if not gap.has(sympy.floor, sympy.ceiling, sympy.Max, sympy.Min, sympy.Mod, sympy.Piecewise):
        x = sympy.Symbol("x", positive=True)
        roots = [r for r in sympy.solve(gap.xreplace({symbol: x}), x) if r.is_positive is not False]
        if len(roots) == 1:
            return sympy.nsimplify(roots[0]) if roots[0].is_Float else roots[0]
        if not roots:
            raise EvaluationError(f"{work.name}: never turns compute-bound as {symbol} grows")
    return _integer_crossover(gap, symbol, work.name)


def _integer_crossover(gap: sympy.Expr, symbol: sympy.Symbol, name: str) -> sympy.Integer:
    """The smallest positive integer where ``gap`` (compute time - memory time) is >= 0,
    assuming it stays so beyond (checked on both sides of the answer)."""

    def compute_bound(n: int) -> bool:
        return bool(gap.xreplace({symbol: n}) >= 0)

    first = least_integer(compute_bound)
    if first is None:
        raise EvaluationError(f"{name}: memory-bound up to {symbol} = 2**64")
    if first == 1:
        raise EvaluationError(f"{name}: compute-bound already at {symbol} = 1")
    return sympy.Integer(first)


def works_of(parts: Sequence[tuple[str, Any]], *, bytes: str = "min") -> list[Work]:
    """``Work`` of each ``(name, layer)``: anything with ``quantity(quantity, convention)``
    (an analysis' layer, a binding).  Matrix work is the ``torch`` FLOPs where the layer has
    any, else 0; other arithmetic the ``exact`` FLOPs of a layer with no matrix work."""
    out = []
    for name, layer in parts:
        matrix = sympy.sympify(layer.quantity("flops", "torch"))
        other = sympy.Integer(0) if matrix != 0 else sympy.sympify(layer.quantity("flops", "exact"))
        out.append(Work(name, matrix, other, sympy.sympify(layer.quantity("bytes", bytes))))
    return out
