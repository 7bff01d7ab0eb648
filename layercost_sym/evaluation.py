"""Exact evaluation of cost expressions, compiled once per expression and cached.

An expression is compiled into Python code over plain ``int``: every rational is brought to a
single fraction ``num / den`` at compile time, ``floor`` becomes ``//``, ``ceiling`` a negated
``//``, so evaluation needs no floats and no SymPy, and Python's integers cannot overflow.
Numpy arrays run the same code vectorised: in ``int64`` when a bound computed from the inputs'
largest magnitudes proves that no intermediate value can overflow, else on exact Python ints.

>>> import layercost_sym as lc
>>> lc.evaluate("floor((H + 2*p - 3) / s) + 1", {"H": 224, "p": 1, "s": 2})
112
>>> lc.evaluate("N*C_in*H*W", {"N": 2**40, "C_in": 2**20, "H": 2**10, "W": 2**10})
1208925819614629174706176
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction
from functools import lru_cache
from typing import Any

import sympy

from .errors import EvaluationError, MissingSymbolError
from .glossary import glossary
from .parsing import gcd, parse

__all__ = ["Compiled", "check_condition", "compile_expression", "evaluate", "sweep"]

Value = Any  # int, bool, numpy integer or numpy integer array
_INT64_SAFE = 2**62  # an int64 bound with headroom for the final sign and divisibility checks


class _Unsupported(Exception):
    """The expression holds a node a code generator does not print."""


_RELATIONS = {
    sympy.Eq: "==",
    sympy.Ne: "!=",
    sympy.Lt: "<",
    sympy.Le: "<=",
    sympy.Gt: ">",
    sympy.Ge: ">=",
}


class _Codegen:
    """Prints a SymPy expression as Python code over exact integers.

    ``vector=False`` prints scalar code (conditional expressions, ``max``); ``vector=True``
    prints code whose operations broadcast over numpy arrays (``_where``, ``_max``).
    """

    def __init__(self, names: Mapping[sympy.Symbol, str], vector: bool = False) -> None:
        self.names = names
        self.vector = vector

    def frac(self, e: sympy.Basic) -> tuple[str, str]:
        num, den = sympy.fraction(sympy.together(e))
        return self.poly(num), self.poly(den)

    def exact(self, e: sympy.Basic) -> str:
        """Code for the exact value of ``e``: an int, or a Fraction where it may not be one."""
        num, den = self.frac(e)
        if den == "1":
            return num
        if self.vector:
            raise _Unsupported(e)  # Fractions do not vectorise
        return f"_F({num}, {den})"

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
            fn = (
                ("_max" if self.vector else "max")
                if isinstance(e, sympy.Max)
                else ("_min" if self.vector else "min")
            )
            return self._fold(fn, [self.exact(a) for a in e.args])
        if isinstance(e, gcd):
            return f"_gcd({self.poly(e.args[0])}, {self.poly(e.args[1])})"
        if isinstance(e, sympy.Mod):
            return f"(({self.exact(e.args[0])}) % ({self.exact(e.args[1])}))"
        if isinstance(e, sympy.Piecewise):
            out = None
            for value, cond in reversed(e.args):
                code = self.exact(value)
                if out is None:
                    if cond is not sympy.true:
                        raise _Unsupported(e)  # no default branch: let SymPy say which fails
                    out = code
                elif self.vector:
                    out = f"_where({self.cond(cond)}, {code}, {out})"
                else:
                    out = f"({code} if {self.cond(cond)} else {out})"
            return out
        raise _Unsupported(e)

    @staticmethod
    def _fold(fn: str, parts: list[str]) -> str:
        out = parts[0]
        for p in parts[1:]:
            out = f"{fn}({out}, {p})"
        return out

    def cond(self, c: sympy.Basic) -> str:
        if c is sympy.true or c is sympy.false:
            return str(bool(c))
        for cls, op in _RELATIONS.items():
            if isinstance(c, cls):
                return f"(({self.exact(c.lhs)}) {op} ({self.exact(c.rhs)}))"
        if isinstance(c, sympy.And | sympy.Or):
            parts = [self.cond(a) for a in c.args]
            if self.vector:
                return self._fold("_and" if isinstance(c, sympy.And) else "_or", parts)
            return "(" + (" and " if isinstance(c, sympy.And) else " or ").join(parts) + ")"
        if isinstance(c, sympy.Not):
            inner = self.cond(c.args[0])
            return f"_not({inner})" if self.vector else f"(not {inner})"
        raise _Unsupported(c)


class _BoundCodegen(_Codegen):
    """Prints code for an upper bound on the magnitude of every intermediate value.

    Fed each symbol's largest magnitude, the code returns a number no intermediate of the real
    computation can exceed in absolute value: sums and products of bounds, floors bounded by
    their numerators plus one, branches by their largest branch.  Every sub-bound passes through
    ``_m``, which keeps the running maximum.
    """

    def poly(self, e: sympy.Basic) -> str:
        if e.is_Integer:
            return f"_m({abs(int(e))})"
        if e.is_Symbol:
            return f"_m({self.names[e]})"
        if e.is_Add:
            return "_m(" + " + ".join(self.poly(a) for a in e.args) + ")"
        if e.is_Mul:
            return "_m(" + "*".join(self.poly(a) for a in e.args) + ")"
        if e.is_Pow and e.exp.is_Integer and e.exp > 0:
            return f"_m(({self.poly(e.base)})**{int(e.exp)})"
        if isinstance(e, sympy.floor | sympy.ceiling):
            num, den = self.frac(e.args[0])
            return f"_m({num} + {den} + 1)"
        if isinstance(e, sympy.Max | sympy.Min | gcd | sympy.Mod):
            return self._fold("max", [self.bound(a) for a in e.args])
        if isinstance(e, sympy.Piecewise):
            parts = [self.bound(v) for v, _ in e.args]
            parts += [self.cond_bound(c) for _, c in e.args]
            return self._fold("max", parts)
        raise _Unsupported(e)

    def bound(self, e: sympy.Basic) -> str:
        num, den = self.frac(e)
        return f"_m({num} + {den})"

    def cond_bound(self, c: sympy.Basic) -> str:
        if isinstance(c, sympy.core.relational.Relational):
            return f"max({self.bound(c.lhs)}, {self.bound(c.rhs)})"
        if isinstance(c, sympy.And | sympy.Or | sympy.Not):
            return self._fold("max", [self.cond_bound(a) for a in c.args])
        return "0"


def _vector_helpers() -> dict[str, Any]:
    import numpy as np

    return {
        "_max": np.maximum,
        "_min": np.minimum,
        "_where": np.where,
        "_gcd": np.gcd,
        "_and": np.logical_and,
        "_or": np.logical_or,
        "_not": np.logical_not,
    }


def _exec(source: str, helpers: Mapping[str, Any]):
    namespace = dict(helpers)
    # The source was printed by a _Codegen from a SymPy expression, never taken from user text.
    exec(compile(source, "<layercost_sym compiled expression>", "exec"), namespace)
    return namespace["_f"]


class Compiled:
    """An expression compiled to Python functions of its symbols' values.

    ``scalar(*ints)`` returns ``(num, den)`` (or a bool for a condition); ``vector(*arrays)`` the
    same over numpy arrays; ``bound(*maxima)`` an upper bound on every intermediate magnitude.
    """

    def __init__(self, expr: sympy.Basic, boolean: bool = False) -> None:
        self.expr = expr
        self.boolean = boolean
        self.symbols: tuple[sympy.Symbol, ...] = tuple(sorted(expr.free_symbols, key=str))
        self.names: tuple[str, ...] = tuple(s.name for s in self.symbols)
        info = glossary().info
        self.lows: tuple[int, ...] = tuple(1 if s.is_positive else 0 for s in self.symbols)
        # flags (glossary domain "flag") are 0 or 1; None: no upper limit
        self.highs: tuple[int | None, ...] = tuple(
            1
            if (s.name in info and info[s.name].domain == "flag" and info[s.name].symbol == s)
            else None
            for s in self.symbols
        )
        self.has_flags = any(h is not None for h in self.highs)
        args = ", ".join(f"v{i}" for i in range(len(self.symbols)))
        names = {s: f"v{i}" for i, s in enumerate(self.symbols)}
        self.source = self._source(_Codegen(names), args)
        scalar_helpers = {"_F": Fraction, "_gcd": math.gcd}
        self.scalar = _exec(self.source, scalar_helpers) if self.source else self._sympy_fallback
        # The hot path, as one generated function: look every name up, check it is a plain int
        # in its domain, compute; None sends the caller down the general (slower) path.
        self.fast = _exec(self._fast_source(), scalar_helpers) if self.source else _none
        self._vector_source = self._source(_Codegen(names, vector=True), args)
        self._bound_source = None if boolean else self._source(_BoundCodegen(names), args)
        self._vector = self._bound = None

    def _fast_source(self) -> str:
        body = self.source.split("return ", 1)[1].rstrip()
        lookups = "\n".join(f"        v{i} = shapes[{n!r}]" for i, n in enumerate(self.names))
        checks = (
            " and ".join(
                f"type(v{i}) is int and v{i} >= {low}" + (f" and v{i} <= {high}" if high else "")
                for i, (low, high) in enumerate(zip(self.lows, self.highs, strict=True))
            )
            or "True"
        )
        return (
            f"def _f(shapes):\n    try:\n{lookups or '        pass'}\n"
            f"    except (KeyError, TypeError):\n        return None\n"
            f"    if not ({checks}):\n        return None\n    return {body}\n"
        )

    def _source(self, gen: _Codegen, args: str) -> str | None:
        try:
            body = gen.cond(self.expr) if self.boolean else "{}, {}".format(*gen.frac(self.expr))
        except _Unsupported:
            return None
        return f"def _f({args}):\n    return {body}\n"

    def _sympy_fallback(self, *values):
        result = self.expr.xreplace(
            dict(zip(self.symbols, map(sympy.Integer, values), strict=True))
        )
        if result in (sympy.true, sympy.false):
            return bool(result)
        if result.is_Rational:
            return int(result.p), int(result.q)
        raise EvaluationError(f"could not evaluate {self.expr} to a number (got {result})")

    def vector(self, *arrays):
        """Vectorised evaluation; ``None`` if the expression does not vectorise."""
        if self._vector_source is None:
            return None
        if self._vector is None:
            self._vector = _exec(self._vector_source, _vector_helpers())
        return self._vector(*arrays)

    def bound(self, *maxima: int) -> int | None:
        """Upper bound on every intermediate magnitude at inputs up to ``maxima``."""
        if self._bound_source is None:
            return None
        if self._bound is None:
            self._bound = _exec(self._bound_source, {"_m": None})
        seen = [0]

        def record(x):
            seen[0] = max(seen[0], x)
            return x

        self._bound.__globals__["_m"] = record
        self._bound(*maxima)
        return seen[0]


def _none(shapes):
    return None


_COMPILED: dict[sympy.Basic, Compiled] = {}
_COMPILED_CONDITIONS: dict[sympy.Basic, Compiled] = {}


def compile_expression(expr: sympy.Basic, boolean: bool = False) -> Compiled:
    """The compiled form of ``expr`` (cached)."""
    cache = _COMPILED_CONDITIONS if boolean else _COMPILED
    compiled = cache.get(expr)
    if compiled is None:
        if len(cache) > 8192:
            cache.clear()
        compiled = cache[expr] = Compiled(expr, boolean)
    return compiled


@lru_cache(maxsize=1024)
def _parse_cached(text: str) -> sympy.Expr:
    return parse(text)


# -- gathering and validating values ---------------------------------------------------------------


def _lookup(shapes: Mapping[Any, Value], name: str, symbol: sympy.Symbol):
    if name in shapes:
        return shapes[name]
    if symbol in shapes:
        return shapes[symbol]
    square = glossary().square_of(name)
    if square is not None and square in shapes:
        return shapes[square]
    raise KeyError(name)


def _as_integer(name: str, value: Any) -> tuple[Any, bool]:
    """``(int, False)`` or ``(integer ndarray, True)``; anything else is an error."""
    if isinstance(value, bool | int | sympy.Integer):
        return int(value), False
    if type(value).__module__ == "numpy":
        import numpy as np

        if isinstance(value, np.ndarray):
            if value.dtype.kind in "biu":
                return value.astype(np.int64) if value.dtype.kind == "b" else value, True
            if value.dtype == object and all(isinstance(v, int) for v in value.flat):
                return value, True
            raise EvaluationError(f"{name}: array of dtype {value.dtype} is not integer")
        if isinstance(value, np.integer | np.bool_):
            return int(value), False
    raise EvaluationError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")


def _check_range(name: str, value: Any, low: int, high: int | None, is_array: bool) -> None:
    if not is_array:
        if value < low:
            what = "a positive dimension" if low else "non-negative"
            raise EvaluationError(f"{name} must be {what}, got {value}")
        if high is not None and value > high:
            raise EvaluationError(f"{name} is a flag and must be 0 or 1, got {value}")
        return
    if not value.size:
        return
    if value.min() < low or (high is not None and value.max() > high):
        bad = (value < low) | ((value > high) if high is not None else False)
        limit = f">= {low}" + (f" and <= {high}" if high is not None else "")
        raise EvaluationError(f"{name} must be {limit}; got {value[bad].flat[0]}")


def _gather(compiled: Compiled, shapes: Mapping[Any, Value]) -> tuple[list, bool]:
    """Values in the compiled function's order, validated; and whether any is an array."""
    values, missing, any_array = [], [], False
    for name, symbol, low, high in zip(
        compiled.names, compiled.symbols, compiled.lows, compiled.highs, strict=True
    ):
        try:
            value = _lookup(shapes, name, symbol)
        except KeyError:
            missing.append(name)
            continue
        value, is_array = _as_integer(name, value)
        _check_range(name, value, low, high, is_array)
        any_array = any_array or is_array
        values.append(value)
    if missing:
        raise MissingSymbolError(
            f"missing value for symbol{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(m) for m in missing)} (the expression uses "
            f"{', '.join(compiled.names)})"
        )
    return values, any_array


def _describe(compiled: Compiled, values: list) -> str:
    return ", ".join(f"{n}={v}" for n, v in zip(compiled.names, values, strict=True))


def _finish(num, den, compiled: Compiled, values: list) -> int:
    if den < 0:
        num, den = -num, -den
    q, r = divmod(num, den)
    if r:
        raise EvaluationError(
            f"result is not an integer: {Fraction(num, den)} at {_describe(compiled, values)}"
        )
    if q < 0:
        raise EvaluationError(f"result is negative: {q} at {_describe(compiled, values)}")
    return int(q)


def evaluate(expr: sympy.Basic | str | int, shapes: Mapping[Any, Value]) -> Any:
    """Evaluate ``expr`` exactly at ``shapes``.

    ``expr`` is a SymPy expression or expression text (parsed by the allow-list parser).
    ``shapes`` maps symbol names or Symbols to ints (bools for flags); a square shorthand such
    as ``k`` stands for the per-axis symbols ``k_h, k_w`` it covers.  Returns a Python ``int``,
    or, when any value is a numpy integer array, a numpy array of the broadcast shape: ``int64``
    where every value fits, else exact Python ints in an ``object`` array.

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
    if type(expr) is str:
        expr = _parse_cached(expr)
    elif isinstance(expr, int) and not isinstance(expr, bool):
        expr = sympy.Integer(expr)
    elif not isinstance(expr, sympy.Basic):
        raise EvaluationError(f"cannot evaluate an object of type {type(expr).__name__}")
    compiled = _COMPILED.get(expr) or compile_expression(expr)
    result = compiled.fast(shapes)
    if result is not None:
        num, den = result
        if den == 1:
            if num >= 0:
                return num
        elif den > 0:
            q, r = divmod(num, den)
            if not r and q >= 0:
                return q
    values, any_array = _gather(compiled, shapes)
    if any_array:
        return _evaluate_array(compiled, values)
    num, den = compiled.scalar(*values)
    if den == 1 and num >= 0:
        return num
    return _finish(num, den, compiled, values)


def _evaluate_array(compiled: Compiled, values: list):
    import numpy as np

    # values are validated non-negative: their maxima are their largest magnitudes
    maxima = [
        int(v.max())
        if isinstance(v, np.ndarray) and v.size
        else (0 if isinstance(v, np.ndarray) else v)
        for v in values
    ]
    arrays = np.broadcast_arrays(*[np.asarray(v) for v in values])
    shape = arrays[0].shape
    bound = compiled.bound(*maxima)
    use_int64 = bound is not None and bound < _INT64_SAFE and all(a.dtype != object for a in arrays)
    if use_int64:
        args = [a.astype(np.int64, copy=False) for a in arrays]
    else:
        args = [a.astype(object) for a in arrays]
    result = compiled.vector(*args)
    if result is None:  # does not vectorise: one exact scalar evaluation per point
        out = np.empty(shape, dtype=object)
        for index in np.ndindex(shape):
            point = [int(a[index]) for a in arrays]
            out[index] = _finish(*compiled.scalar(*point), compiled, point)
    else:
        num, den = (
            np.broadcast_to(np.asarray(x, dtype=args[0].dtype if args else object), shape)
            for x in result
        )
        negative_den = den < 0
        if negative_den.any():
            num, den = np.where(negative_den, -num, num), np.where(negative_den, -den, den)
        if (den == 1).all():
            out, bad = num, num < 0
        elif num.dtype == object:  # np.divmod has no object loop; // and * have
            out = num // den
            bad = (num - out * den != 0) | (out < 0)
        else:
            out, rem = np.divmod(num, den)
            bad = (rem != 0) | (out < 0)
        if bad.any():
            index = np.argwhere(np.asarray(bad))[0]
            point = [int(a[tuple(index)]) for a in arrays]
            _finish(int(num[tuple(index)]), int(den[tuple(index)]), compiled, point)
    if out.dtype == object:
        hi = max((abs(v) for v in out.flat), default=0)
        if hi < 2**63:
            out = out.astype(np.int64)
    return out


def sweep(expr: sympy.Basic | str, /, **axes: Any):
    """Evaluate ``expr`` over the grid of the given axes (outer product, ``indexing="ij"``).

    Each keyword is a symbol: a sequence (``range``, list, array) spans an axis of the grid, an
    int is held fixed.  Returns a numpy array with one dimension per swept symbol, in the order
    given.

    >>> import layercost_sym as lc
    >>> lc.sweep("H*W*C_in", H=range(1, 4), W=[10, 20], C_in=3).tolist()
    [[30, 60], [60, 120], [90, 180]]
    """
    import numpy as np

    swept = [name for name, v in axes.items() if not isinstance(v, int | np.integer)]
    grids = np.meshgrid(
        *[np.asarray(list(axes[n]) if isinstance(axes[n], range) else axes[n]) for n in swept],
        indexing="ij",
    )
    shapes = {**axes, **dict(zip(swept, grids, strict=True))}
    return evaluate(expr, shapes)


def check_condition(cond: sympy.Basic, values: Mapping[Any, Value]) -> bool:
    """Whether a condition holds at ``values`` (all its symbols must be given)."""
    if cond is sympy.true or cond is sympy.false:
        return bool(cond)
    compiled = compile_expression(cond, True)
    vals, _ = _gather(compiled, values)
    return bool(compiled.scalar(*vals))
