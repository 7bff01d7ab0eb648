"""Branches a model's own code takes on a size being 1, which torch decides without a guard.

torch traces symbolic sizes from 2 (it specialises 0 and 1), so a comparison such as
transformers' ``is_causal = query.shape[2] > 1`` is decided from that range alone: no guard is
recorded, and a closed form traced so holds from 2, not at 1 (GPT-2 at ``L = 1`` builds no
causal mask; the trace saw one).  :func:`size_one_branches` watches torch's static
decisions during a trace: one that the range ``[2, oo)`` decides and ``[1, oo)`` does not,
made by the model's own code (not torch's: its broadcasting and layout checks decide the same
way and change no cost), is recorded with the sizes it read and the line that made it.
:func:`~layercost_sym.torchtools.tracing.analyze` then traces again with each such size 1 and
refuses that size, naming the line, only where a quantity differs there.
"""

from __future__ import annotations

import contextlib
import linecache
import os
import sys
from collections.abc import Iterator
from typing import Any

import sympy
import torch

from .pinning import _is_model_code, _relative

__all__ = ["SizeOneBranch", "size_one_branches"]

# frames between a model's comparison and torch's static decision: SymBool.__bool__ and the
# symbolic-shape machinery (skipped when looking for who made the decision)
_TORCH = os.path.dirname(os.path.abspath(torch.__file__))
_MACHINERY = (
    os.path.join(_TORCH, "fx", "experimental") + os.sep,
    os.path.join(_TORCH, "__init__.py"),
    os.path.abspath(__file__),
)


class SizeOneBranch:
    """A decision of the model's code that holds for sizes from 2 only: the torch size
    symbols it read (those traced from 2) and ``where`` (``file:line: code``)."""

    __slots__ = ("symbols", "where")

    def __init__(self, symbols: frozenset[sympy.Symbol], where: str) -> None:
        self.symbols, self.where = symbols, where


def _deciding_frame() -> str | None:
    """``file:line: code`` of the innermost frame outside torch's symbolic machinery, when it
    is the model's own code; None when torch itself decides (an operator's checks)."""
    frame: Any = sys._getframe(2)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_MACHINERY):
        frame = frame.f_back
    if frame is None or not _is_model_code(frame.f_code.co_filename):
        return None
    filename, line = frame.f_code.co_filename, frame.f_lineno
    code = linecache.getline(filename, line).strip()
    return f"{_relative(filename)}:{line}: {code}"


@contextlib.contextmanager
def size_one_branches(env: Any, found: list[SizeOneBranch]) -> Iterator[None]:
    """Within this scope, append to ``found`` each decision of the model's own code that
    ``env`` (torch's ShapeEnv) takes from its sizes being at least 2 (module docstring)."""
    from torch.utils._sympy.value_ranges import ValueRanges

    original = env._maybe_evaluate_static

    def checked(expr: Any, **options: Any) -> Any:
        result = original(expr, **options)
        if any(options.values()) or not isinstance(result, sympy.logic.boolalg.BooleanAtom):
            return result  # a hint, an axiom set, given ranges: not a branch's decision
        ranges = env.var_to_range
        symbols = sorted(expr.free_symbols & ranges.keys(), key=str)
        from_two = frozenset(s for s in symbols if ranges[s].lower == 2)
        if not from_two:
            return result
        widened = tuple(
            (s, ValueRanges(1, ranges[s].upper) if s in from_two else ranges[s]) for s in symbols
        )
        if original(expr, var_to_range=widened) == result:
            return result  # decided the same from 1
        where = _deciding_frame()
        if where is not None:
            found.append(SizeOneBranch(from_two, where))
        return result

    # torch clears the method's cache when a range changes: the wrapper's is the original's
    checked.cache_clear = original.cache_clear  # type: ignore[attr-defined]
    env._maybe_evaluate_static = checked
    try:
        yield
    finally:
        del env._maybe_evaluate_static
