"""Index ranges in a trace: an embedding looked up at ``arange(L)`` needs ``L`` rows.

Integer tensors made by ``arange`` are followed through views, casts and shifts by a scalar
(each keeps or moves every value, so the largest is still attained); a lookup of one in a table
gives the analysis a guard that the largest index stays in the table, which a real run would
otherwise refuse with an ``IndexError`` beyond it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import sympy
import torch

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


class IndexRanges:
    """The largest value of each index tensor ``arange`` made in a trace; ``convert`` turns
    torch's sizes into the analysis' symbols."""

    def __init__(self, convert: Callable[[Any], sympy.Expr]) -> None:
        self.convert = convert
        # id -> (tensor, the largest value in it, which some element attains)
        self.maxima: dict[int, tuple[torch.Tensor, sympy.Expr]] = {}

    def largest(self, t: Any) -> sympy.Expr | None:
        entry = self.maxima.get(id(t)) if isinstance(t, torch.Tensor) else None
        return entry[1] if entry is not None and entry[0] is t else None

    def track(self, name: str, args: tuple, kwargs: Mapping[str, Any], out: Any) -> None:
        """Follow the largest value of integer index tensors made by ``arange``: exact through
        ``arange`` itself, views, casts and shifts by a scalar (each keeps or moves every value, so
        the largest is still attained)."""
        if not isinstance(out, torch.Tensor) or out.is_floating_point() or out.is_complex():
            return
        largest = None
        if name == "arange" and out.dim() == 1:
            numbers = [a for a in args if isinstance(a, int | torch.SymInt)]
            start = numbers[0] if len(numbers) >= 2 else 0
            step = numbers[2] if len(numbers) >= 3 else 1
            if isinstance(step, int) and step > 0 and not isinstance(args[0], float):
                largest = self.convert(start) + step * (self.convert(out.shape[0]) - 1)
        elif args and (source := self.largest(args[0])) is not None:
            if name in _VALUE_PRESERVING:
                largest = source
            elif (
                name in ("add", "sub")
                and len(args) > 1
                and isinstance(args[1], int | torch.SymInt)
                and kwargs.get("alpha", 1) == 1
            ):
                shift = self.convert(args[1])
                largest = source + shift if name == "add" else source - shift
        if largest is not None:
            self.maxima[id(out)] = (out, largest)

    def guard(self, where: str, indices: Any, rows: int) -> tuple[sympy.Basic, str] | None:
        """The guard that a lookup at ``where`` of ``indices`` in a table of ``rows`` rows
        stays in the table (with where it comes from), or None when the largest index is not
        known or not symbolic."""
        largest = self.largest(indices)
        if largest is None or not largest.free_symbols:
            return None
        return (
            sympy.Le(largest, rows - 1),
            f"{where} looks up rows arange() made, up to {largest}, in a table of {rows}: a "
            "real run raises IndexError beyond it",
        )
