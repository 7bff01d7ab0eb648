"""Accelerators as data: peak throughput per dtype, memory bandwidth and capacity of a chip, read
from ``formulas/hardware.toml``, every number with the vendor document it comes from.

A roofline model bounds the time of some work by ``max(work / peak, bytes / bandwidth)``; the
peaks here are dense (figures quoted "with sparsity" are halved), in FLOP/s (int8: OP/s), and
every number is an exact integer, so such arithmetic can stay exact:

>>> from fractions import Fraction
>>> from layercost_sym.hardware import hardware
>>> h100 = hardware("H100-SXM")
>>> h100.peak("bf16"), h100.bandwidth, h100.memory
(989400000000000, 3350000000000, 85899345920)
>>> n = 4096  # one bf16 matmul of two n x n matrices: 2 n^3 FLOPs, three n x n arrays moved
>>> seconds = max(Fraction(2 * n**3, h100.peak("bf16")), Fraction(3 * n * n * 2, h100.bandwidth))
>>> round(float(seconds) * 1e6, 1)  # microseconds: bound by compute, not by memory
138.9
>>> h100.sources["matrix.bf16"].startswith("NVIDIA whitepaper")
True
>>> try:  # tensor cores take tf32, not fp32: the error says what the chip has
...     h100.peak("fp32")
... except KeyError as error:
...     print(error)
H100-SXM has no matrix peak for 'fp32' (matrix: fp64, tf32, ...; vector: fp64, fp32, ...)
>>> h100.peak("fp32", "vector") == h100.peak("fp32", "any") == 66_900_000_000_000
True

This module imports only the standard library, the package's TOML reader and its errors.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ._toml import SourceFile
from .errors import CatalogueError, HardwareError, UnknownHardwareError

__all__ = [
    "DTYPES",
    "KINDS",
    "Chip",
    "format_hardware_table",
    "hardware",
    "hardwares",
    "load_hardware",
]

DTYPES = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8")
"""The dtypes a peak may be stated for, widest first."""

KINDS = ("gpu", "tpu", "cpu", "soc")
"""What a chip is; ``soc``: a system on a chip whose peaks are its integrated GPU's."""

UNITS = ("matrix", "vector")
"""Which units a peak is of: matrix units (tensor cores, MXUs, matrix cores) or the others."""

_FIELDS = ("kind", "note", "memory", "bandwidth", "matrix", "vector", "sources")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_+\-]*$")
_GIB = 2**30

Problem = tuple[tuple[str, ...], str]  # (path of the field, what is wrong with it)


def _is_count(value: object) -> bool:
    return type(value) is int and value > 0  # bool is an int subclass: refused too


def _problems(
    kind: object,
    matrix: Mapping[str, object],
    vector: Mapping[str, object],
    bandwidth: object,
    memory: object,
    sources: Mapping[str, object],
) -> list[Problem]:
    """What is wrong with a chip's figures, each with the path of the field it concerns
    (``("matrix", "bf16")``); empty when nothing is.  :class:`Chip` and the file loader share
    it, so a file and a direct construction refuse the same things."""
    out: list[Problem] = []
    if kind not in KINDS:
        out.append((("kind",), f"kind {kind!r} is not one of {', '.join(KINDS)}"))
    for key, value, what in (
        ("memory", memory, "bytes"),
        ("bandwidth", bandwidth, "bytes/s"),
    ):
        if not _is_count(value):
            out.append(((key,), f"{key} = {value!r} is not a positive integer ({what})"))
    if not matrix and not vector:
        out.append(((), "states no peak: needs a matrix or a vector table with one dtype at least"))
    numbers = ["memory", "bandwidth"]
    for unit, table in (("matrix", matrix), ("vector", vector)):
        for dtype, value in table.items():
            if dtype not in DTYPES:
                out.append(
                    (
                        (unit, dtype),
                        f"{unit}.{dtype}: unknown dtype; known dtypes: {', '.join(DTYPES)}",
                    )
                )
            elif not _is_count(value):
                out.append(
                    (
                        (unit, dtype),
                        f"{unit}.{dtype} = {value!r} is not a positive integer "
                        f"({'OP/s' if dtype == 'int8' else 'FLOP/s'}, such as 989_400_000_000_000)",
                    )
                )
            numbers.append(f"{unit}.{dtype}")
    for number in numbers:
        text = sources.get(number)
        if text is None:
            where = tuple(number.split("."))
            group = f"sources.{where[0]} or " if len(where) > 1 else ""
            out.append((where, f"{number} has no source (add {group}sources.{number})"))
        elif not isinstance(text, str) or not text.strip():
            out.append((("sources", *number.split(".")), f"the source of {number} is not text"))
    for key in sources:
        if key not in numbers:
            out.append(
                (("sources", *key.split(".")), f"a source for {key}, which the chip does not state")
            )
    return out


@dataclass(frozen=True)
class Chip:
    """One accelerator: dense peaks of its matrix and vector units per dtype (FLOP/s; int8:
    OP/s), memory bandwidth (bytes/s) and capacity (bytes), and for every number its source.

    ``sources`` has one entry per number: ``"memory"``, ``"bandwidth"``, ``"matrix.bf16"``,
    ``"vector.fp32"``, ...  Built directly, a chip checks itself as the file loader does and
    raises :class:`~layercost_sym.errors.HardwareError`:

    >>> Chip("X", "gpu", {"bf16": 10**15}, {}, 10**12, 2**34, {"memory": "m", "bandwidth": "b"})
    Traceback (most recent call last):
    ...
    layercost_sym.errors.HardwareError: X: matrix.bf16 has no source (add ...)
    """

    name: str
    kind: str
    matrix: Mapping[str, int]
    vector: Mapping[str, int]
    bandwidth: int
    memory: int
    sources: Mapping[str, str]
    note: str = ""

    def __post_init__(self) -> None:
        for name in ("matrix", "vector", "sources"):  # read-only copies: the chip is frozen
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))
        if not isinstance(self.name, str) or not self.name.strip():
            raise HardwareError(f"a chip's name must be text, got {self.name!r}")
        problems = _problems(
            self.kind, self.matrix, self.vector, self.bandwidth, self.memory, self.sources
        )
        if problems:
            raise HardwareError(f"{self.name}: {problems[0][1]}")
        if not isinstance(self.note, str):
            raise HardwareError(f"{self.name}: note must be text")

    def peak(self, dtype: str, kind: str = "matrix") -> int:
        """The dense peak for ``dtype`` (FLOP/s; int8: OP/s) of the matrix units (``kind``
        ``"matrix"``), of the vector units (``"vector"``), or the larger of the two (``"any"``).
        A dtype the chip states no such peak for raises
        :class:`~layercost_sym.errors.UnknownHardwareError` naming the chip, the dtype and the
        peaks the chip has."""
        if kind not in (*UNITS, "any"):
            raise UnknownHardwareError(
                f"peak kind must be 'matrix', 'vector' or 'any', got {kind!r}"
            )
        if dtype not in DTYPES:
            raise UnknownHardwareError(
                f"unknown dtype {dtype!r} (asked of {self.name}); known dtypes: {', '.join(DTYPES)}"
            )
        tables = (self.matrix, self.vector) if kind == "any" else (getattr(self, kind),)
        found = [table[dtype] for table in tables if dtype in table]
        if found:
            return max(found)
        has = "; ".join(f"{unit}: {', '.join(getattr(self, unit)) or 'none'}" for unit in UNITS)
        which = "" if kind == "any" else f" {kind}"
        raise UnknownHardwareError(f"{self.name} has no{which} peak for {dtype!r} ({has})")

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain data (for JSON): numbers stay exact integers."""
        return {
            "name": self.name,
            "kind": self.kind,
            "note": self.note,
            "memory": self.memory,
            "bandwidth": self.bandwidth,
            "matrix": dict(self.matrix),
            "vector": dict(self.vector),
            "sources": dict(self.sources),
        }


def _sources(source: SourceFile, name: str, table: dict, raw: object) -> dict[str, object]:
    """The ``[<chip>.sources]`` table flattened to one entry per number: a ``matrix`` or
    ``vector`` text covers every number of that table."""
    if not isinstance(raw, dict):
        raise source.error((name, "sources"), f"{name}: sources must be a table")
    flat: dict[str, object] = {}
    for key, value in raw.items():
        where = (name, "sources", key)
        if key in ("memory", "bandwidth"):
            flat[key] = value
        elif key in UNITS and isinstance(value, dict):
            flat.update({f"{key}.{dtype}": text for dtype, text in value.items()})
        elif key in UNITS:
            numbers = table.get(key)
            if not isinstance(numbers, dict) or not numbers:
                raise source.error(
                    where, f"{name}: a source for {key}, which the chip does not state"
                )
            flat.update({f"{key}.{dtype}": value for dtype in numbers})
        else:
            raise source.error(
                where,
                f"{name}: unknown source {key!r}; sources are memory, bandwidth, matrix, vector",
            )
    return flat


def _chip(source: SourceFile, name: str, table: object) -> Chip:
    where = (name,)
    if not isinstance(table, dict) or not _NAME.match(name):
        raise source.error(
            where,
            f"{name!r}: a chip is a table named by letters, digits, '-', '_' and '+'",
        )
    unknown = [key for key in table if key not in _FIELDS]
    if unknown:
        raise source.error(
            (name, unknown[0]),
            f"{name}: unknown field(s) {unknown}; fields are {', '.join(_FIELDS)}",
        )
    for key in ("kind", "memory", "bandwidth", "sources"):
        if key not in table:
            raise source.error(where, f"{name}: missing {key} (required; formulas/README.md)")
    if not isinstance(table.get("note", ""), str):
        raise source.error((name, "note"), f"{name}: note must be text")
    units: dict[str, dict] = {}
    for unit in UNITS:
        units[unit] = table.get(unit, {})
        if not isinstance(units[unit], dict):
            raise source.error((name, unit), f"{name}: {unit} must be a table dtype = peak")
    sources = _sources(source, name, table, table["sources"])
    problems = _problems(
        table["kind"],
        units["matrix"],
        units["vector"],
        table["bandwidth"],
        table["memory"],
        sources,
    )
    if problems:
        path, message = problems[0]
        raise source.error((name, *path), f"{name}: {message}")
    return Chip(
        name,
        table["kind"],
        units["matrix"],
        units["vector"],
        table["bandwidth"],
        table["memory"],
        sources,  # type: ignore[arg-type]  # checked by _problems: every value is text
        table.get("note", ""),
    )


def load_hardware(path: str | os.PathLike[str]) -> dict[str, Chip]:
    """Every chip of a hardware file (the grammar of ``formulas/hardware.toml``), by name, in
    file order.  A malformed file raises :class:`~layercost_sym.errors.CatalogueError` whose
    message starts with ``file:line``."""
    source = SourceFile(Path(path))
    chips: dict[str, Chip] = {}
    seen: dict[str, str] = {}
    for name, table in source.data.items():
        chip = _chip(source, name, table)
        if name.casefold() in seen:
            raise source.error(
                (name,),
                f"{name}: a second chip of that name (names are matched ignoring case; "
                f"first: {seen[name.casefold()]} at {source.where(seen[name.casefold()])})",
            )
        seen[name.casefold()] = name
        chips[name] = chip
    if not chips:
        raise CatalogueError(f"{source.display}: no chip in the file")
    return chips


def _hardware_file() -> Path:
    """``formulas/hardware.toml`` inside the installed package or beside it in a checkout (the
    places :func:`layercost_sym.glossary.formulas_dir` looks, without importing SymPy)."""
    here = Path(__file__).resolve().parent
    for folder in (here / "formulas", here.parent / "formulas"):
        if (folder / "hardware.toml").is_file():
            return folder / "hardware.toml"
    raise CatalogueError(f"formulas/hardware.toml not found next to {here}")


@cache
def _shipped() -> Mapping[str, Chip]:
    return MappingProxyType(load_hardware(_hardware_file()))


def hardwares() -> tuple[str, ...]:
    """The names of the shipped chips, in the file's order (grouped by vendor).

    >>> hardwares()[:3]
    ('A100-SXM-80GB', 'A100-PCIe-40GB', 'H100-SXM')
    """
    return tuple(_shipped())


def hardware(name: str) -> Chip:
    """The shipped chip ``name``, matched ignoring case (``"h100-sxm"``); an unknown name
    raises :class:`~layercost_sym.errors.UnknownHardwareError` listing the known names."""
    chips = _shipped()
    if name in chips:
        return chips[name]
    by_fold = {known.casefold(): chip for known, chip in chips.items()}
    if isinstance(name, str) and name.casefold() in by_fold:
        return by_fold[name.casefold()]
    close = difflib.get_close_matches(str(name), list(chips), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownHardwareError(
        f"no accelerator named {name!r}{hint} (known: {', '.join(chips)}; formulas/hardware.toml)"
    )


def _decimal(value: int, power: int) -> str:
    """``value / 10**power`` written exactly: 989_400_000_000_000, 12 -> ``'989.4'``."""
    return format(Decimal(value).scaleb(-power).normalize(), "f")


def _memory(value: int) -> str:
    gib = Fraction(value, _GIB)
    return f"{gib.numerator} GB" if gib.denominator == 1 else f"{float(gib):.1f} GB"


def _bandwidth(value: int) -> str:
    return f"{_decimal(value, 12)} TB/s" if value >= 10**12 else f"{_decimal(value, 9)} GB/s"


def format_hardware_table(chips: Iterable[Chip]) -> str:
    """A plain-text table of chips: kind, memory, bandwidth and the bf16, fp16 and fp32 peaks
    in TFLOP/s (the faster of the matrix and vector units; ``-`` where none is stated).

    >>> print(format_hardware_table([hardware("H100-SXM"), hardware("T4")]))
    chip      kind  memory  bandwidth  bf16 TFLOP/s  fp16 TFLOP/s  fp32 TFLOP/s
    H100-SXM  gpu    80 GB  3.35 TB/s         989.4         989.4          66.9
    T4        gpu    16 GB   300 GB/s             -            65           8.1
    dense peaks (no sparsity); memory GB = 2**30 bytes, bandwidth and FLOP/s decimal
    """
    header = ["chip", "kind", "memory", "bandwidth"] + [
        f"{dtype} TFLOP/s" for dtype in ("bf16", "fp16", "fp32")
    ]
    rows = [header]
    for chip in chips:
        peaks = []
        for dtype in ("bf16", "fp16", "fp32"):
            found = [table[dtype] for table in (chip.matrix, chip.vector) if dtype in table]
            peaks.append(_decimal(max(found), 12) if found else "-")
        rows.append(
            [chip.name, chip.kind, _memory(chip.memory), _bandwidth(chip.bandwidth), *peaks]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(width) if i < 2 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
    lines.append("dense peaks (no sparsity); memory GB = 2**30 bytes, bandwidth and FLOP/s decimal")
    return "\n".join(lines)
