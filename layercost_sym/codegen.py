"""Compiling SymPy expressions into exact integer Python code (one cached function each).

An expression is printed as Python over plain ``int``: every rational is brought to a single
fraction ``num / den`` at compile time, ``floor`` becomes ``//``, ``ceiling`` a negated ``//``,
so evaluation needs no floats and no SymPy.  A second printing broadcasts over numpy arrays; a
third computes a bound on every intermediate magnitude, so that arrays may run in ``int64`` when
no intermediate can overflow.  The values themselves are checked by
:mod:`layercost_sym.evaluation`, which calls these functions.

>>> import sympy
>>> from layercost_sym.codegen import compile_expression
>>> H, s = sympy.symbols("H s", integer=True, positive=True)
>>> compiled = compile_expression(sympy.floor((H - 1) / s) + 1)
>>> compiled.names, compiled.scalar(224, 2)
(('H', 's'), (112, 1))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from typing import Any

import sympy

from .errors import EvaluationError
from .glossary import glossary
from .parsing import gcd

__all__ = [
    "Compiled",
    "compile_expression",
    "compile_fast",
    "compile_vector_within",
    "fraction",
    "limits",
]


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


def fraction(e: sympy.Basic) -> tuple[sympy.Expr, sympy.Expr]:
    """``e`` as one fraction ``(num, den)`` whose parts hold no rational at the top: what every
    printer of exact integer code (here, and the C and JavaScript of :mod:`layercost_sym.export`)
    computes, dividing once, last."""
    return sympy.fraction(sympy.together(e))


class _Codegen:
    """Prints a SymPy expression as Python code over exact integers.

    ``vector=False`` prints scalar code (conditional expressions, ``max``); ``vector=True``
    prints code whose operations broadcast over numpy arrays (``_where``, ``_max``).
    """

    def __init__(
        self, names: Mapping[sympy.Symbol, str], vector: bool = False, share: bool = False
    ) -> None:
        self.names = names
        self.vector = vector
        # share=True: each floor, ceiling, Max, Min, gcd and Mod is computed once, in a line of
        # its own (``t0 = ...``, kept in ``lines``), however often the printed code uses it: an
        # expression and its domain's conditions share their output sides (H_out in both)
        self.share = share
        self.lines: list[str] = []
        self._shared: dict[sympy.Basic, str] = {}

    def _once(self, e: sympy.Basic, code: str) -> str:
        if not self.share:
            return code
        name = self._shared.get(e)
        if name is None:
            name = self._shared[e] = f"t{len(self._shared)}"
            self.lines.append(f"{name} = {code}")
        return name

    def frac(self, e: sympy.Basic) -> tuple[str, str]:
        num, den = fraction(e)
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
            return num if den == "1" else self._once(e, f"(({num})//({den}))")
        if isinstance(e, sympy.ceiling):
            num, den = self.frac(e.args[0])
            return num if den == "1" else self._once(e, f"(-((-({num}))//({den})))")
        if isinstance(e, sympy.Max | sympy.Min):
            fn = (
                ("_max" if self.vector else "max")
                if isinstance(e, sympy.Max)
                else ("_min" if self.vector else "min")
            )
            return self._once(e, self._fold(fn, [self.exact(a) for a in e.args]))
        if isinstance(e, gcd):
            return self._once(e, f"_gcd({self.poly(e.args[0])}, {self.poly(e.args[1])})")
        if isinstance(e, sympy.Mod):
            return self._once(e, f"(({self.exact(e.args[0])}) % ({self.exact(e.args[1])}))")
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
            if out is None:
                raise _Unsupported(e)  # no branches at all
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


def limits(symbol: sympy.Symbol) -> tuple[int, int | None]:
    """The smallest and largest value a symbol may take: 1 for a positive one, else 0; a
    glossary flag is at most 1, anything else unbounded (None)."""
    info = glossary().info.get(symbol.name)
    flag = info is not None and info.domain == "flag" and info.symbol == symbol
    return (1 if symbol.is_positive else 0), (1 if flag else None)


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
        self.lows: tuple[int, ...] = tuple(limits(s)[0] for s in self.symbols)
        # flags (glossary domain "flag") are 0 or 1; None: no upper limit
        self.highs: tuple[int | None, ...] = tuple(limits(s)[1] for s in self.symbols)
        self.has_flags = any(h is not None for h in self.highs)
        args = ", ".join(f"v{i}" for i in range(len(self.symbols)))
        names = {s: f"v{i}" for i, s in enumerate(self.symbols)}
        self.source = self._source(_Codegen(names), args)
        scalar_helpers = {"_F": Fraction, "_gcd": math.gcd}
        self.scalar = _exec(self.source, scalar_helpers) if self.source else self._sympy_fallback
        # The hot path, as one generated function: look every name up, check it is a plain int
        # in its domain, compute; None sends the caller down the general (slower) path.
        self.fast = (compile_fast(expr) or _none) if self.source and not boolean else _none
        self._within: dict[Any, Callable[[Mapping[Any, Any]], Any]] = {}
        self._vector_within: dict[Any, Any] = {}
        self._vector_source = self._source(_Codegen(names, vector=True), args)
        # the bound's recorder is an argument, not a global: two threads may bound at once
        bound_args = ", ".join(["_m", *(f"v{i}" for i in range(len(self.symbols)))])
        self._bound_source = self._source(_BoundCodegen(names), bound_args)
        self._vector: Callable[..., Any] | None = None
        self._bound: Callable[..., Any] | None = None

    def vector_within(self, domain: Any) -> tuple[tuple[sympy.Symbol, ...], Callable] | None:
        """:func:`compile_vector_within` for this expression and ``domain`` (made once)."""
        if domain not in self._vector_within:
            if len(self._vector_within) > 64:
                self._vector_within.clear()
            conditions = [c.condition for c in domain.conditions]
            self._vector_within[domain] = compile_vector_within(self.expr, conditions)
        return self._vector_within[domain]

    def fast_within(self, domain: Any) -> Callable[[Mapping[Any, Any]], Any]:
        """:attr:`fast` that also returns None unless every condition of ``domain`` (a
        :class:`~layercost_sym.domain.Domain`) is decided by named plain ints and holds: one
        pass of lookups for the expression and its domain (made once per domain)."""
        found = self._within.get(domain)
        if found is None:
            if len(self._within) > 64:
                self._within.clear()
            conditions = [c.condition for c in domain.conditions]
            found = self._within[domain] = compile_fast(self.expr, conditions) or _none
        return found

    def _source(self, gen: _Codegen, args: str) -> str | None:
        try:
            if isinstance(gen, _BoundCodegen) and self.boolean:
                # every part of a condition is bounded (an `and` would skip the second part)
                body = gen.cond_bound(self.expr)
            elif self.boolean:
                body = gen.cond(self.expr)
            else:
                body = "{}, {}".format(*gen.frac(self.expr))
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
            self._bound = _exec(self._bound_source, {})
        seen = [0]

        def record(x):
            seen[0] = max(seen[0], x)
            return x

        self._bound(record, *maxima)
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


def compile_vector_within(
    expr: sympy.Basic, conditions: Sequence[sympy.Basic]
) -> tuple[tuple[sympy.Symbol, ...], Callable[..., Any]] | None:
    """``(symbols, f)`` with ``f(*arrays) -> (num, den, holds)``: an expression and the
    conjunction of its domain's conditions over numpy arrays in one generated function, the
    terms they share computed once; None where the code does not print."""
    symbols = tuple(
        sorted(set().union(expr.free_symbols, *(c.free_symbols for c in conditions)), key=str)
    )
    names = {s: f"v{i}" for i, s in enumerate(symbols)}
    gen = _Codegen(names, vector=True, share=True)
    try:
        num, den = gen.frac(expr)
        holds = gen._fold("_and", [gen.cond(c) for c in conditions]) if conditions else "True"
    except _Unsupported:
        return None
    args = ", ".join(names[s] for s in symbols)
    body = "".join(f"    {line}\n" for line in gen.lines)
    source = f"def _f({args}):\n{body}    return {num}, {den}, {holds}\n"
    return symbols, _exec(source, _vector_helpers())


def compile_fast(
    expr: sympy.Basic | None, conditions: Sequence[sympy.Basic] = ()
) -> Callable[[Mapping[Any, Any]], Any] | None:
    """One generated function ``f(shapes)``, the hot path of evaluation: look every symbol of
    ``expr`` and ``conditions`` up by name, check each is a plain int in its domain, check every
    condition holds, and return ``(num, den)`` of ``expr`` (``True`` when ``expr`` is None).
    It returns None where it cannot answer (a size missing or given otherwise, a condition
    failing), sending the caller down the general path, which decides and explains; None
    instead of a function when an expression does not print."""
    exprs = ([expr] if expr is not None else []) + list(conditions)
    symbols = sorted(set().union(*(e.free_symbols for e in exprs)), key=str)
    names = {s: f"v{i}" for i, s in enumerate(symbols)}
    gen = _Codegen(names)
    try:
        body = "True" if expr is None else "{}, {}".format(*gen.frac(expr))
        guards = [f"({gen.cond(c)})" for c in conditions]
    except _Unsupported:
        return None
    lookups = "\n".join(f"        v{i} = shapes[{s.name!r}]" for i, s in enumerate(symbols))
    checks = []
    for i, s in enumerate(symbols):
        low, high = limits(s)
        checks.append(f"type(v{i}) is int and v{i} >= {low}" + (f" and v{i} <= 1" if high else ""))
    # the conditions come last: `and` evaluates them only once every value is a checked int
    test = " and ".join(checks + guards) or "True"
    source = (
        f"def _f(shapes):\n    try:\n{lookups or '        pass'}\n"
        f"    except (KeyError, TypeError):\n        return None\n"
        f"    if not ({test}):\n        return None\n    return {body}\n"
    )
    return _exec(source, {"_F": Fraction, "_gcd": math.gcd})
