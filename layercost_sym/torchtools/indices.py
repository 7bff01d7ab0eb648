"""Index ranges in a trace: an embedding looked up at ``arange(L)`` needs ``L`` rows, a table of
relative positions looked up at ``arange(q)[:, None] - arange(k)[None, :] + k - 1`` needs
``q + k - 1``.

Tensors made by ``arange`` are followed with the smallest and the largest of their values, each
attained by some element, through the operators that keep that exact: views and copies, a shift
or a positive scale by a number, a sum or difference of two followed tensors that broadcast as
an outer combination (every pair of their elements meets once), and a cast of non-negative
values to an integer type (``floor``).  Anything else ends the following.  A lookup of one in a
table gives the analysis a guard that the index stays in the table, which a real run would
otherwise refuse with an ``IndexError`` beyond it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import sympy
import torch

from ..errors import LayercostError

__all__ = ["IndexRanges"]

# operators whose output holds exactly the values of their first input
_VALUE_PRESERVING = {
    "view",
    "_unsafe_view",
    "reshape",
    "unsqueeze",
    "squeeze",
    "expand",
    "clone",
    "_to_copy",
    "alias",
    "detach",
    "permute",
    "transpose",
    "t",
    "lift_fresh",
}
_SHIFTS = {"add": 1, "add_": 1, "sub": -1, "sub_": -1}
_SCALES = {"mul", "mul_"}

Bounds = tuple[sympy.Expr, sympy.Expr]  # (smallest, largest), each attained


class IndexRanges:
    """The smallest and largest value of each index tensor ``arange`` made in a trace (and of
    those made from them exactly); ``convert`` turns torch's sizes into the analysis'
    symbols."""

    def __init__(self, convert: Callable[[Any], sympy.Expr]) -> None:
        self.convert = convert
        # id -> (tensor, its smallest value, its largest value)
        self.bounds: dict[int, tuple[torch.Tensor, sympy.Expr, sympy.Expr]] = {}

    def range_of(self, t: Any) -> Bounds | None:
        entry = self.bounds.get(id(t)) if isinstance(t, torch.Tensor) else None
        return (entry[1], entry[2]) if entry is not None and entry[0] is t else None

    def largest(self, t: Any) -> sympy.Expr | None:
        found = self.range_of(t)
        return found[1] if found is not None else None

    def _number(self, value: Any) -> sympy.Expr | None:
        """A scalar argument as an exact SymPy number or size expression, or None."""
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return sympy.Integer(value)
        if isinstance(value, float):
            return sympy.Rational(value)  # a float's exact value (1.0 -> 1, 0.5 -> 1/2)
        if isinstance(value, torch.SymInt | torch.SymFloat):
            try:
                return self.convert(value)
            except LayercostError:  # an expression the analysis cannot state
                return None
        return None

    def track(self, name: str, args: tuple, kwargs: Mapping[str, Any], out: Any) -> None:
        """Follow the range of index tensors made by ``arange`` through ``name``'s output."""
        if not isinstance(out, torch.Tensor) or out.is_complex():
            return
        found = self._follow(name, args, kwargs, out)
        if found is not None:
            self.bounds[id(out)] = (out, *found)
        elif id(out) in self.bounds:  # an in-place operator that changed it beyond following
            del self.bounds[id(out)]

    def _follow(self, name: str, args: tuple, kwargs: Mapping[str, Any], out: Any) -> Any:
        if name == "arange" and out.dim() == 1 and not out.is_floating_point():
            numbers = [a for a in args if isinstance(a, int | torch.SymInt)]
            start = numbers[0] if len(numbers) >= 2 else 0
            step = numbers[2] if len(numbers) >= 3 else 1
            if isinstance(step, int) and step > 0 and not isinstance(args[0], float):
                first = self.convert(start)
                return first, first + step * (self.convert(out.shape[0]) - 1)
            return None
        source = self.range_of(args[0]) if args else None
        if source is None:
            return None
        lo, hi = source
        if name in _VALUE_PRESERVING:
            if out.is_floating_point() or not args[0].is_floating_point():
                return lo, hi
            # a float cast to an integer type truncates: floor where no value is negative
            return (sympy.floor(lo), sympy.floor(hi)) if lo.is_nonnegative else None
        other = args[1] if len(args) > 1 else None
        if name in _SHIFTS and kwargs.get("alpha", 1) == 1:
            sign = _SHIFTS[name]
            shift = self._number(other)
            if shift is not None:
                return lo + sign * shift, hi + sign * shift
            paired = self.range_of(other)
            if paired is None or not isinstance(other, torch.Tensor) or not _outer(args[0], other):
                return None
            if sign > 0:
                return lo + paired[0], hi + paired[1]
            return lo - paired[1], hi - paired[0]
        if name in _SCALES:
            scale = self._number(other)
            if scale is not None and scale.is_positive:
                return lo * scale, hi * scale
        return None

    def lookups(self, where: str, name: str, args: tuple) -> list[tuple[sympy.Basic, str]]:
        """The guards of the lookups operator ``name`` makes at ``where`` with ``args``:
        ``embedding`` (F.embedding between modules), ``index`` (``table[indices]``, a
        relative-position lookup) and ``index_select``."""
        found = []
        if name == "embedding" and len(args) > 1:
            found.append(self.guard(where, args[1], args[0].shape[0]))
        elif name == "index" and len(args) > 1:
            for dim, index in enumerate(args[1]):
                if isinstance(index, torch.Tensor):
                    found.append(self.guard(where, index, args[0].shape[dim], wraps=True))
        elif name == "index_select" and len(args) > 2:
            found.append(self.guard(where, args[2], args[0].shape[args[1]]))
        return [g for g in found if g is not None]

    def guard(
        self, where: str, indices: Any, rows: Any, *, wraps: bool = False
    ) -> tuple[sympy.Basic, str] | None:
        """The guard that a lookup at ``where`` of ``indices`` in a table of ``rows`` rows
        stays in the table (with where it comes from), or None when the range of the indices is
        not known or not symbolic.  ``wraps``: a negative index counts from the end (tensor
        indexing), down to ``-rows``; otherwise (an embedding) none may be negative."""
        found = self.range_of(indices)
        if found is None:
            return None
        lo, hi = found
        size = self.convert(rows)
        least = sympy.Ge(lo, -size if wraps else 0)
        conditions = [c for c in (sympy.Le(hi, size - 1), least) if c != sympy.true]
        if not conditions or not any(c.free_symbols for c in conditions):
            return None
        return (
            sympy.And(*conditions),
            f"{where} looks up rows {lo} to {hi} of a table of {size}: a real run raises "
            "IndexError beyond it",
        )


def _outer(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether ``a`` and ``b`` broadcast so that every pair of their elements meets once: in
    each (right-aligned) dimension at most one of them is longer than 1."""
    for x, y in zip(reversed(a.shape), reversed(b.shape), strict=False):
        if not (_is_one(x) or _is_one(y)):
            return False
    return True


def _is_one(size: Any) -> bool:
    return isinstance(size, int) and size == 1
