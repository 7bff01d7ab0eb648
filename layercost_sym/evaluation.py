"""Exact evaluation of cost expressions, compiled once per expression and cached.

An expression is compiled into Python code over plain ``int``: every rational is brought to a
single fraction ``num / den`` at compile time, ``floor`` becomes ``//``, ``ceiling`` a negated
``//``, so evaluation needs no floats and no SymPy, and Python's integers cannot overflow.

>>> import layercost_sym as lc
>>> lc.evaluate("floor((H + 2*p - 3) / s) + 1", {"H": 224, "p": 1, "s": 2})
112
>>> lc.evaluate("N*C_in*H*W", {"N": 2**40, "C_in": 2**20, "H": 2**10, "W": 2**10})
1208925819614629174706176
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from fractions import Fraction
from functools import lru_cache
from typing import Any

import sympy

from .errors import EvaluationError, MissingSymbolError
from .glossary import glossary
from .parsing import gcd, parse

__all__ = ["check_condition", "compile_expression", "evaluate"]

Value = Any  # int, bool, numpy integer or numpy integer array


class _Unsupported(Exception):
    """The expression holds a node the code generator does not print; SymPy evaluates it."""


class _Codegen:
    """Prints a SymPy expression as Python code over exact integers."""

    def __init__(self, names: Mapping[sympy.Symbol, str]) -> None:
        self.names = names

    def frac(self, e: sympy.Basic) -> tuple[str, str]:
        num, den = sympy.fraction(sympy.together(e))
        return self.poly(num), self.poly(den)

    def exact(self, e: sympy.Basic) -> str:
        """Code for the exact value of ``e``: an int, or a Fraction where ``e`` may not be one."""
        num, den = self.frac(e)
        return num if den == "1" else f"_F({num}, {den})"

    def poly(self, e: sympy.Basic) -> str:
        if e.is_Integer:
            return str(int(e))
        if e.is_Symbol:
            if e not in self.names:
                raise _Unsupported(e)
            return self.names[e]
        if e.is_Add:
            return "(" + " + ".join(self.poly(a) for a in e.args) + ")"
        if e.is_Mul:
            return "(" + "*".join(self.poly(a) for a in e.args) + ")"
        if e.is_Pow and e.exp.is_Integer and e.exp > 0:
            return f"({self.poly(e.base)})**{int(e.exp)}"
        if isinstance(e, sympy.floor):
            num, den = self.frac(e.args[0])
            return num if den == "1" else f"(({num})//({den}))"
        if isinstance(e, sympy.ceiling):
            num, den = self.frac(e.args[0])
            return num if den == "1" else f"(-((-({num}))//({den})))"
        if isinstance(e, sympy.Max | sympy.Min):
            helper = "_max" if isinstance(e, sympy.Max) else "_min"
            args = [self.exact(a) for a in e.args]
            out = args[0]
            for a in args[1:]:
                out = f"{helper}({out}, {a})"
            return out
        if isinstance(e, gcd):
            return f"_gcd({self.poly(e.args[0])}, {self.poly(e.args[1])})"
        if isinstance(e, sympy.Mod):
            return f"(({self.exact(e.args[0])}) % ({self.exact(e.args[1])}))"
        if isinstance(e, sympy.Piecewise):
            out = None
            for value, cond in reversed(e.args):
                code = self.exact(value)
                otherwise = out if out is not None else "_nan()"
                out = (
                    code
                    if out is None and cond is sympy.true
                    else f"_where({self.cond(cond)}, {code}, {otherwise})"
                )
            return out
        raise _Unsupported(e)

    def cond(self, c: sympy.Basic) -> str:
        if c is sympy.true:
            return "True"
        if c is sympy.false:
            return "False"
        ops = {
            sympy.Eq: "==",
            sympy.Ne: "!=",
            sympy.Lt: "<",
            sympy.Le: "<=",
            sympy.Gt: ">",
            sympy.Ge: ">=",
        }
        for cls, op in ops.items():
            if isinstance(c, cls):
                return f"(({self.exact(c.lhs)}) {op} ({self.exact(c.rhs)}))"
        if isinstance(c, sympy.And | sympy.Or):
            helper = "_and" if isinstance(c, sympy.And) else "_or"
            parts = [self.cond(a) for a in c.args]
            out = parts[0]
            for p in parts[1:]:
                out = f"{helper}({out}, {p})"
            return out
        if isinstance(c, sympy.Not):
            return f"_not({self.cond(c.args[0])})"
        raise _Unsupported(c)


def _nan():
    raise EvaluationError("no branch of a piecewise expression applies")


_SCALAR_HELPERS = {
    "_F": Fraction,
    "_max": max,
    "_min": min,
    "_nan": _nan,
    "_gcd": math.gcd,
    "_where": lambda c, a, b: a if c else b,
    "_and": lambda a, b: a and b,
    "_or": lambda a, b: a or b,
    "_not": lambda a: not a,
}


def _array_helpers() -> dict[str, Any]:
    import numpy as np

    def where(c, a, b):
        return np.where(c, a, b) if isinstance(c, np.ndarray) else (a if c else b)

    return {
        "_F": Fraction,
        "_max": np.maximum,
        "_min": np.minimum,
        "_nan": _nan,
        "_where": where,
        "_gcd": np.frompyfunc(math.gcd, 2, 1),
        "_and": np.logical_and,
        "_or": np.logical_or,
        "_not": np.logical_not,
    }


class Compiled:
    """An expression compiled to a Python function of its symbols' values."""

    def __init__(self, expr: sympy.Basic, boolean: bool = False) -> None:
        self.expr = expr
        self.symbols: tuple[sympy.Symbol, ...] = tuple(
            sorted(expr.free_symbols, key=lambda s: s.name)
        )
        names = {s: f"v{i}" for i, s in enumerate(self.symbols)}
        gen = _Codegen(names)
        args = ", ".join(names.values())
        try:
            body = gen.cond(expr) if boolean else "{}, {}".format(*gen.frac(expr))
            self.source: str | None = f"def _f({args}):\n    return {body}\n"
        except _Unsupported:
            self.source = None
        self._scalar = self._build(_SCALAR_HELPERS)
        self._array = None
        info = glossary().info
        # (name, lower bound, upper bound or None) per symbol, for validation
        self.checks = tuple(
            (
                s.name,
                1 if s.is_positive else 0,
                1
                if (s.name in info and info[s.name].domain == "flag" and info[s.name].symbol == s)
                else None,
            )
            for s in self.symbols
        )

    def _build(self, helpers: Mapping[str, Any]):
        if self.source is None:
            return self._sympy_fallback
        namespace = dict(helpers)
        # The source was printed by _Codegen from a SymPy expression, never taken from user text.
        exec(compile(self.source, "<layercost_sym compiled expression>", "exec"), namespace)
        return namespace["_f"]

    def _sympy_fallback(self, *values):
        result = self.expr.xreplace(
            dict(zip(self.symbols, map(sympy.Integer, values), strict=True))
        )
        if result.is_Rational:
            return int(result.p), int(result.q)
        if result in (sympy.true, sympy.false):
            return bool(result)
        raise EvaluationError(f"could not evaluate {self.expr} to a number (got {result})")

    def scalar(self, values):
        return self._scalar(*values)

    def array(self, values):
        if self._array is None:
            self._array = self._build(_array_helpers())
        return self._array(*values)


@lru_cache(maxsize=4096)
def compile_expression(expr: sympy.Basic, boolean: bool = False) -> Compiled:
    """The compiled form of ``expr`` (cached)."""
    return Compiled(expr, boolean)


@lru_cache(maxsize=1024)
def _parse_cached(text: str) -> sympy.Expr:
    return parse(text)


def _lookup(shapes: Mapping[Any, Value], name: str, symbol: sympy.Symbol):
    if symbol in shapes:
        return shapes[symbol]
    if name in shapes:
        return shapes[name]
    square = glossary().square_of(name)
    if square is not None and square in shapes:
        return shapes[square]
    raise KeyError(name)


def _gather(compiled: Compiled, shapes: Mapping[Any, Value]) -> tuple[list, bool]:
    values, missing, is_array = [], [], False
    for (name, low, high), symbol in zip(compiled.checks, compiled.symbols, strict=True):
        try:
            value = _lookup(shapes, name, symbol)
        except KeyError:
            missing.append(name)
            continue
        if type(value) is not int:
            value, array = _as_integer(name, value)
            is_array = is_array or array
        if not is_array or type(value) is int:
            if value < low:
                what = "a positive dimension" if low else "non-negative"
                raise EvaluationError(f"{name} must be {what}, got {value}")
            if high is not None and value > high:
                raise EvaluationError(f"{name} is a flag and must be 0 or 1, got {value}")
        else:
            import numpy as np

            if value.size and (np.min(value) < low or (high is not None and np.max(value) > high)):
                bad = value[(value < low) | ((value > high) if high is not None else False)]
                raise EvaluationError(
                    f"{name} must be >= {low}"
                    f"{f' and <= {high}' if high is not None else ''}; "
                    f"got {bad.flat[0]}"
                )
        values.append(value)
    if missing:
        raise MissingSymbolError(
            f"missing value for symbol{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(m) for m in missing)} (the expression uses "
            f"{', '.join(s.name for s in compiled.symbols)})"
        )
    return values, is_array


def _as_integer(name: str, value: Any) -> tuple[Any, bool]:
    if isinstance(value, bool):
        return int(value), False
    if isinstance(value, int):
        return int(value), False
    if isinstance(value, sympy.Integer):
        return int(value), False
    module = type(value).__module__
    if module == "numpy":
        import numpy as np

        if isinstance(value, np.ndarray):
            if value.dtype.kind == "b":
                return value.astype(object) * 1, True
            if value.dtype.kind in "iu":
                return value.astype(object), True
            if value.dtype == object and all(isinstance(v, int) for v in value.flat):
                return value, True
            raise EvaluationError(f"{name}: array of dtype {value.dtype} is not integer")
        if isinstance(value, np.integer | np.bool_):
            return int(value), False
    raise EvaluationError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")


def _finish(num, den, compiled: Compiled, values: list):
    if den < 0:
        num, den = -num, -den
    q, r = divmod(num, den)
    if r:
        where = ", ".join(f"{s.name}={v}" for s, v in zip(compiled.symbols, values, strict=True))
        raise EvaluationError(f"result is not an integer: {Fraction(num, den)} at {where}")
    if q < 0:
        where = ", ".join(f"{s.name}={v}" for s, v in zip(compiled.symbols, values, strict=True))
        raise EvaluationError(f"result is negative: {q} at {where}")
    return int(q)


def evaluate(expr: sympy.Basic | str | int, shapes: Mapping[Any, Value]) -> Any:
    """Evaluate ``expr`` exactly at ``shapes``.

    ``expr`` is a SymPy expression or expression text (parsed by the allow-list parser).
    ``shapes`` maps symbol names or Symbols to ints (bools for flags); a square shorthand such
    as ``k`` stands for the per-axis symbols ``k_h, k_w`` it covers.  Returns a Python ``int``,
    or, when any value is a numpy integer array, a numpy array of the broadcast shape (int64
    where every value fits, else exact Python ints in an object array).

    Raises :class:`~layercost_sym.errors.MissingSymbolError` naming missing symbols and
    :class:`~layercost_sym.errors.EvaluationError` for a non-positive dimension, a negative
    padding, a non-integer or a negative result.

    >>> import layercost_sym as lc
    >>> lc.evaluate(lc.rule("Linear").params, {"C_in": 3, "C_out": 4, "b": True})
    16
    >>> lc.evaluate("C_in * C_out", {"C_in": 3})
    Traceback (most recent call last):
    ...
    layercost_sym.errors.MissingSymbolError: missing value for symbol 'C_out' (the expression ...)
    """
    if isinstance(expr, str):
        expr = _parse_cached(expr)
    elif isinstance(expr, bool) or not isinstance(expr, int | sympy.Basic):
        raise EvaluationError(f"cannot evaluate an object of type {type(expr).__name__}")
    expr = sympy.sympify(expr) if isinstance(expr, int) else expr  # an int, never text
    compiled = compile_expression(expr)
    values, is_array = _gather(compiled, shapes)
    if not is_array:
        num, den = compiled.scalar(values)
        return _finish(num, den, compiled, values)
    return _evaluate_array(compiled, values)


def _evaluate_array(compiled: Compiled, values: list):
    import numpy as np

    arrays = np.broadcast_arrays(*[np.asarray(v, dtype=object) for v in values])
    shape = arrays[0].shape if arrays else ()
    num, den = compiled.array(arrays)
    num = np.broadcast_to(np.asarray(num, dtype=object), shape)
    den = np.broadcast_to(np.asarray(den, dtype=object), shape)
    out = np.empty(shape, dtype=object)
    for index in itertools.product(*(range(n) for n in shape)):
        point = [a[index] for a in arrays]
        out[index] = _finish(num[index], den[index], compiled, point)
    lo, hi = (min(out.flat), max(out.flat)) if out.size else (0, 0)
    if -(2**63) <= lo and hi < 2**63:
        return out.astype(np.int64)
    return out


def check_condition(cond: sympy.Basic, values: Mapping[Any, Value]) -> bool:
    """Whether a condition holds at ``values`` (all its symbols must be given)."""
    if cond is sympy.true or cond is sympy.false:
        return bool(cond)
    compiled = compile_expression(cond, True)
    vals, _ = _gather(compiled, values)
    return bool(compiled.scalar(vals))
