"""Sizes torch fixed while tracing although the caller gave them as symbols, read from a
finished trace's shape environment by :func:`~layercost_sym.torchtools.tracing.analyze`:
sizes it made ints (:func:`specialised`: a model's ``assert h == 224`` met at a trace size of
224), sizes it replaced by an expression in others (:func:`unified`: ``W`` by ``H`` where a
model asserts square images), and sizes one guard fixes to one value (:func:`fixed_by_guards`:
``float()`` of ``H/16``).  Each comes with a note naming the model code where torch recorded
it, so that the analysis can pin the size and say why.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping, Sequence
from typing import Any

import sympy

from .pinning import _is_model_code, _relative
from .symbolic import condition_text, simplify_guard

__all__ = ["fixed_by_guards", "specialised", "unified"]


def _guard_code(env: Any, sym: Any) -> str:
    """``"file:line: code; "`` of the model code where torch recorded a guard on ``sym``."""
    for guard in env.guards:
        code = _frame_code(guard.sloc.framework_loc) if sym in guard.expr.free_symbols else ""
        if code:
            return code
    return ""


def _frame_code(frame: Any) -> str:
    """``"file:line: code; "`` of ``frame`` where it is the model's code, else ``""``."""
    if isinstance(frame, traceback.FrameSummary) and _is_model_code(frame.filename):
        line = f" {frame.line.strip()}" if frame.line else ""
        return f"{_relative(frame.filename)}:{frame.lineno}:{line}; "
    return ""


def fixed_by_guards(
    guards: Sequence[sympy.Basic], frames: Mapping[sympy.Basic, Any], names: Sequence[str]
) -> dict[sympy.Basic, tuple[str, int, str]]:
    """Input sizes ``names`` that one guard fixes to one value although torch kept them
    symbols: it made an int of an expression of the size (``float()`` of ``H/16`` where H is
    traced as a multiple of 16: timm's rotary grid), so the closed form holds at that value
    alone.  guard -> (name, value, note naming the model code, from ``frames``: guard ->
    frame), one guard a name."""
    found: dict[sympy.Basic, tuple[str, int, str]] = {}
    for guard in guards:
        if not isinstance(guard, sympy.Eq) or len(guard.free_symbols) != 1:
            continue
        (symbol,) = guard.free_symbols
        if symbol.name not in names or symbol.name in {n for n, _, _ in found.values()}:
            continue
        simple = simplify_guard(guard)
        if isinstance(simple, sympy.Eq) and symbol in simple.args:
            value = simple.rhs if simple.lhs == symbol else simple.lhs
            if value.is_Integer:
                code = _frame_code(frames.get(guard))
                note = f"{code}torch specialised {symbol.name} to its trace size"
                found[guard] = (symbol.name, int(value), f"{note} ({condition_text(guard)})")
    return found


def specialised(env: Any, symbols: Mapping[Any, Any]) -> dict[str, tuple[int, str]]:
    """Dimensions torch made ints itself while tracing (a model's ``assert h == 224`` met at a
    trace size of 224): name -> (value, note naming the model code of the guard)."""
    found: dict[str, tuple[int, str]] = {}
    for sym, user in symbols.items():
        value = env.replace(sym)
        if value.is_Integer and str(user) not in found:
            note = f"{_guard_code(env, sym)}torch specialised {user} to its trace size"
            found[str(user)] = (int(value), note)
    return found


def unified(env: Any, symbols: Mapping[Any, Any]) -> list[tuple[Any, Any, str]]:
    """Dimensions torch replaced by an expression in others (``W`` by ``H`` where a model
    asserts square images, met at equal trace sizes): ``(torch symbol, its replacement,
    note)``; the replacement's own guard is ``true`` once replaced, so it is stated here."""
    found = []
    for sym, user in symbols.items():
        value = env.replace(sym)
        if value != sym and not value.is_Integer:
            note = f"{_guard_code(env, sym)}torch made {user} equal to {value} while tracing"
            found.append((sym, value, note))
    return found
