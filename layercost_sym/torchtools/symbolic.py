"""Converting torch's symbolic-shape expressions into layercost_sym's SymPy.

Torch's ``ShapeEnv`` names the dynamic sizes of a traced input ``s0, s1, ...`` and writes size
arithmetic with its own SymPy functions (``FloorDiv``, ``CleanDiv``, ``PythonMod``, ...).
:func:`to_sympy` rewrites such an expression over the user's glossary symbols with plain SymPy
(``floor``, ``Mod``, ``ceiling``, ``Max``, ``Min``), which :func:`layercost_sym.evaluate` reads.
:func:`simplify_guard` rewrites a guard in one positive integer symbol as the equivalent bound
(``floor(H/32 - 1/32) + 1 != 1`` is ``H >= 33``) where it can prove the equivalence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import sympy

from ..errors import ShapeError

__all__ = [
    "implied_by_bounds",
    "implied_from_two",
    "simplify_guard",
    "size_one_guards",
    "to_sympy",
]


def _floor_div(a: sympy.Expr, b: sympy.Expr) -> sympy.Expr:
    return sympy.floor(a / b)


def _ceil_div(a: sympy.Expr, b: sympy.Expr) -> sympy.Expr:
    return sympy.ceiling(a / b)


# torch.utils._sympy.functions class name -> builder over converted arguments
_FUNCTIONS = {
    "FloorDiv": _floor_div,
    "CeilDiv": _ceil_div,
    "CleanDiv": lambda a, b: a / b,  # exact division, known to divide
    "IntTrueDiv": lambda a, b: a / b,
    "FloatTrueDiv": lambda a, b: a / b,
    "PythonMod": sympy.Mod,
    "Mod": sympy.Mod,
    "FloorToInt": sympy.floor,
    "CeilToInt": sympy.ceiling,
    "TruncToInt": lambda a: sympy.sign(a) * sympy.floor(abs(a)),
    "RoundToInt": lambda a: sympy.floor(a + sympy.Rational(1, 2)),
    "ToFloat": lambda a: a,
    "Identity": lambda a: a,
    "PowByNatural": sympy.Pow,
    "FloatPow": sympy.Pow,
    "Max": sympy.Max,
    "Min": sympy.Min,
}
_PLAIN = (
    sympy.Add,
    sympy.Mul,
    sympy.Pow,
    sympy.floor,
    sympy.ceiling,
    sympy.Mod,
    sympy.Max,
    sympy.Min,
    sympy.Eq,
    sympy.Ne,
    sympy.Lt,
    sympy.Le,
    sympy.Gt,
    sympy.Ge,
    sympy.And,
    sympy.Or,
    sympy.Not,
)


def to_sympy(expr: sympy.Basic, symbols: Mapping[sympy.Symbol, sympy.Expr]) -> sympy.Basic:
    """``expr`` (torch's SymPy over ``s0, s1, ...``) over the user's symbols.

    ``symbols`` maps each of torch's size symbols to the user's expression for it.

    >>> import sympy
    >>> from torch.utils._sympy.functions import FloorDiv
    >>> s0 = sympy.Symbol("s0", integer=True, positive=True)
    >>> H = sympy.Symbol("H", integer=True, positive=True)
    >>> to_sympy(FloorDiv(s0 - 1, 2) + 1, {s0: H})
    floor(H/2 - 1/2) + 1
    """
    if isinstance(expr, bool | int):
        return sympy.Integer(int(expr))
    if expr.is_Symbol:
        if expr not in symbols:
            raise ShapeError(f"torch size symbol {expr} is not one of the input's dimensions")
        return symbols[expr]
    if expr.is_Number or expr in (sympy.true, sympy.false):
        return expr
    args = [to_sympy(a, symbols) for a in expr.args]
    name = type(expr).__name__
    if name in _FUNCTIONS:
        return _FUNCTIONS[name](*args)
    if isinstance(expr, _PLAIN):
        return expr.func(*args)
    raise ShapeError(f"cannot convert torch's symbolic expression {expr} ({name}) to SymPy")


# -- guards as bounds ---------------------------------------------------------------------------

_SEARCH_LIMIT = 2**62  # sizes beyond this are not searched: such a guard is kept as it is


def _monotone(expr: sympy.Expr, x: sympy.Symbol) -> int | None:
    """+1 if ``expr`` is non-decreasing in ``x`` (over the integers), -1 if non-increasing, 0 if
    free of ``x``; None when its structure does not show it."""
    if x not in expr.free_symbols:
        return 0
    if expr == x:
        return 1
    if isinstance(expr, sympy.Add | sympy.Max | sympy.Min):
        signs = {_monotone(a, x) for a in expr.args} - {0}
        return signs.pop() if len(signs) == 1 and None not in signs else None
    if isinstance(expr, sympy.Mul):
        coeff, rest = expr.as_independent(x, as_Add=False)
        if not coeff.is_number or coeff == 0 or rest == expr:  # x*floor(x/2): not shown
            return None
        inner = _monotone(rest, x)
        return None if inner is None else inner * (1 if coeff > 0 else -1)
    if isinstance(expr, sympy.floor | sympy.ceiling):
        return _monotone(expr.args[0], x)
    return None


def _first(pred, lo: int) -> int | None:
    """The least integer ``n >= lo`` with ``pred(n)``, for a ``pred`` false then true (None:
    not true below the search limit)."""
    if pred(lo):
        return lo
    step = 1
    while not pred(lo + step):
        if lo + step > _SEARCH_LIMIT:
            return None
        step *= 2
    low, high = lo + step // 2, lo + step  # pred(low) false (or low == lo), pred(high) true
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if pred(mid) else (mid, high)
    return high


def _shift(expr: sympy.Expr, x: sympy.Symbol, p: int) -> sympy.Expr | None:
    """How much ``expr`` grows when ``x`` grows by ``p``, for every integer ``x``, where that is
    a number: each ``floor(a)`` grows by the integer ``a`` grows by (None: not shown)."""
    if expr == x:
        return sympy.Integer(p)
    if x not in expr.free_symbols:
        return sympy.Integer(0)
    if isinstance(expr, sympy.Add):
        parts = [_shift(a, x, p) for a in expr.args]
        return None if any(d is None for d in parts) else sympy.Add(*parts)
    if isinstance(expr, sympy.Mul):
        coeff, rest = expr.as_independent(x, as_Add=False)
        # a product of two terms in x (floor(x/2)*floor(x/4)) grows by no number
        inner = _shift(rest, x, p) if coeff.is_Rational and rest != expr else None
        return None if inner is None else coeff * inner
    if isinstance(expr, sympy.floor | sympy.ceiling):
        inner = _shift(expr.args[0], x, p)
        return inner if inner is not None and inner.is_Integer else None
    return None


def _period(g: sympy.Expr, x: sympy.Symbol) -> int | None:
    """A period ``p`` with ``g(x + p) == g(x)`` for every integer ``x``, for a ``g`` whose
    linear parts cancel (``2*floor(x/8) - floor(x/4)``, floors of floors too); None otherwise.
    Proven: each ``floor(a)`` grows by the integer ``a`` grows by (:func:`_shift`)."""
    denominators = [sympy.fraction(c)[1] for c in g.atoms(sympy.Rational) if not c.is_Integer] or [
        1
    ]
    p = int(sympy.ilcm(*denominators, 1))
    while p <= 4096:
        d = _shift(g, x, p)
        if d is not None and d == 0:
            return p
        p *= 2
    return None


def _periodic(cond: sympy.Basic, x: sympy.Symbol, lower: int) -> sympy.Basic:
    """``true`` or ``false`` when ``cond``'s difference is periodic in ``x`` (:func:`_period`)
    and ``cond`` holds at every, or at no, ``x`` of one period from ``lower``; else ``cond``."""
    p = _period(cond.lhs - cond.rhs, x)
    if p is None:
        return cond
    values = {bool(cond.xreplace({x: sympy.Integer(n)})) for n in range(lower, lower + p)}
    return sympy.true if values == {True} else sympy.false if values == {False} else cond


def simplify_guard(cond: sympy.Basic, lower: int = 1) -> sympy.Basic:
    """An equivalent, simpler form of a guard in one positive integer symbol, or ``cond``;
    with ``lower``, equivalent where the symbol is at least ``lower``.

    A relation ``lhs ~ rhs`` whose difference is monotone in its symbol ``x`` (sums, positive
    or negative multiples, floors and ceilings of such) holds on a set of positive integers
    that is a prefix, a suffix, an interval or the complement of one (of ``lower, lower + 1,
    ...``); its ends are found by
    exact bisection and the relation is rewritten as ``x >= a``, ``x <= b`` or both (``true``
    when it holds for every ``x >= 1``).  ``And``/``Or`` are simplified argument by argument.
    A relation whose difference is periodic in ``x`` (floors whose linear parts cancel:
    ``2*floor(x/8) < floor(x/4) + 1``) is decided over one period: ``true`` or ``false`` when
    it is so throughout.  Guards in several symbols, or whose ends lie beyond 2**62, are
    returned unchanged.

    >>> import sympy
    >>> H = sympy.Symbol("H", integer=True, positive=True)
    >>> simplify_guard(sympy.Ne(sympy.floor(H / 32 - sympy.Rational(1, 32)) + 1, 1))
    H >= 33
    >>> simplify_guard(sympy.Le(H - 1, 1023))
    H <= 1024
    >>> simplify_guard(sympy.Ge(sympy.floor(H / 2 - sympy.Rational(1, 2)) + 1, 1))
    True
    >>> simplify_guard(sympy.Eq(sympy.floor(H / 16), 14)), simplify_guard(sympy.Eq(H, 224))
    ((H >= 224) & (H <= 239), Eq(H, 224))
    >>> f = lambda d: sympy.floor(H / d - sympy.Rational(1, d))  # (H - 1)//d
    >>> simplify_guard(sympy.Lt(2 * f(8), f(4) + 1)), simplify_guard(sympy.Ne(2 * f(32), f(16)))
    (True, Ne(2*floor(H/32 - 1/32), floor(H/16 - 1/16)))
    >>> simplify_guard(sympy.Lt(2 * sympy.floor(f(2) / 4), sympy.floor(f(2) / 2) + 1))
    True
    """
    if isinstance(cond, sympy.And | sympy.Or):
        return cond.func(*(simplify_guard(a, lower) for a in cond.args))
    if not isinstance(cond, sympy.core.relational.Relational) or len(cond.free_symbols) != 1:
        return cond
    (x,) = cond.free_symbols
    if not (x.is_integer and x.is_positive):
        return cond
    g = cond.lhs - cond.rhs
    sign = _monotone(g, x)
    if not sign:
        return _periodic(cond, x, lower) if sign is None else cond
    rel = cond.rel_op

    def holds(n: int) -> bool:
        return bool(cond.xreplace({x: sympy.Integer(n)}))

    def at(n: int) -> sympy.Expr:
        return sign * g.xreplace({x: sympy.Integer(n)})  # non-decreasing in n

    if rel in ("==", "!="):
        # g == 0 on [start, end): from where sign*g reaches 0 to where it passes 0
        start = _first(lambda n: at(n) >= 0, lower)
        end = None if start is None else _first(lambda n: at(n) > 0, start)
        if start is None or end is None:
            return cond
        if end == start:  # g never 0
            return sympy.false if rel == "==" else sympy.true
        if rel == "==":
            if start > lower and end == start + 1:  # one value (a pinned size)
                return sympy.Eq(x, start)
            above = [sympy.Ge(x, start)] if start > lower else []
            return sympy.And(*above, sympy.Le(x, end - 1))
        if start > lower:  # true below start and from end on: not one bound
            return cond
        return sympy.Ge(x, end)
    # an inequality of a monotone difference: an up-set (true from some x on) when it asks for
    # a large sign*g, a down-set otherwise
    upward = (rel in (">", ">=")) == (sign > 0)
    if upward:
        first = _first(holds, lower)
        if first is None:
            return cond
        return sympy.true if first == lower else sympy.Ge(x, first)
    if not holds(lower):
        return sympy.false
    last = _first(lambda n: not holds(n), lower)
    return cond if last is None else sympy.Le(x, last - 1)


def _nondecreasing(expr: sympy.Expr, lower: dict[sympy.Symbol, int]) -> bool:
    """Whether ``expr`` is non-decreasing in each of its symbols over ``x >= lower[x]``."""
    if expr.is_Number or expr.is_Symbol:
        return True
    if isinstance(expr, sympy.Add | sympy.Max | sympy.Min | sympy.floor | sympy.ceiling):
        return all(_nondecreasing(a, lower) for a in expr.args)
    if isinstance(expr, sympy.Mul):
        coeff, factors = expr.as_coeff_mul()
        # a product of non-negative non-decreasing factors is non-decreasing; such a factor is
        # smallest at the lower corner
        return coeff > 0 and all(
            _nondecreasing(f, lower) and f.xreplace(lower) >= 0 for f in factors
        )
    return False


def implied_by_bounds(cond: sympy.Basic, lower: dict[sympy.Symbol, int]) -> bool:
    """Whether ``cond`` holds wherever every symbol ``x`` is at least ``lower[x]`` (1 if not
    given): proven when ``lhs - rhs`` is non-decreasing in every symbol and the relation, which
    then holds on an up-set, holds at the lower corner.

    >>> import sympy
    >>> H, W = sympy.symbols("H W", integer=True, positive=True)
    >>> f = lambda x: sympy.floor(x / 2 - sympy.Rational(1, 2))
    >>> implied_by_bounds(sympy.Ne(f(H) * f(W) + f(H) + f(W) + 1, 1), {H: 3, W: 3})
    True
    >>> implied_by_bounds(sympy.Ne(f(H) * f(W) + f(H) + f(W) + 1, 1), {})  # H = W = 1: 1
    False
    """
    if not isinstance(cond, sympy.core.relational.Relational) or cond.rel_op == "==":
        return False
    corner = {x: sympy.Integer(lower.get(x, 1)) for x in cond.free_symbols}
    # as lhs - rhs > 0 (or >= 0, != 0) over an up-set
    flip = cond.rel_op in ("<", "<=")
    g = cond.rhs - cond.lhs if flip else cond.lhs - cond.rhs
    if not _nondecreasing(g, corner):
        return False
    value = g.xreplace(corner)
    return bool(value >= 0) if cond.rel_op in (">=", "<=") else bool(value > 0)


def _nonzero(expr: sympy.Expr, lower: dict[sympy.Symbol, int]) -> bool:
    """Whether ``expr != 0`` wherever every symbol ``x`` is at least ``lower[x]``: a product is
    non-zero where each factor is (factors proven by :func:`implied_by_bounds`, either sign)."""
    coeff, factors = sympy.factor(expr).as_coeff_mul()
    if coeff == 0:
        return False
    for factor in factors:
        base = factor.base if isinstance(factor, sympy.Pow) and factor.exp.is_positive else factor
        nonzero = [sympy.Ne(base, 0), sympy.Ne(-base, 0)]  # SymPy may decide it (true)
        if not any(c is sympy.true or implied_by_bounds(c, lower) for c in nonzero):
            return False
    return True


def implied_from_two(cond: sympy.Basic, lower: dict[sympy.Symbol, int]) -> bool:
    """Whether ``cond`` holds wherever every symbol ``x`` is at least ``max(2, lower[x])``:
    the sizes torch traces with (it specialises 0 and 1), so that such a guard only says a
    size is not 1.  ``lhs != rhs`` is proven through the factors of ``lhs - rhs`` (``N*X != X``
    is ``(N - 1)*X != 0``), other relations by :func:`implied_by_bounds`.

    >>> import sympy
    >>> N, H = sympy.symbols("N H", integer=True, positive=True)
    >>> X = sympy.floor(H / 16)
    >>> implied_from_two(sympy.Ne(N * X, X), {H: 33}), implied_from_two(sympy.Ne(N * X, X), {})
    (True, False)
    >>> implied_from_two(sympy.Ne(N * X, 2 * X), {H: 33})  # false at N = 2
    False
    """
    if not isinstance(cond, sympy.core.relational.Relational):
        return False
    bounds = {x: max(2, lower.get(x, 1)) for x in cond.free_symbols}
    if cond.rel_op == "!=":
        return _nonzero(cond.lhs - cond.rhs, bounds)
    return implied_by_bounds(cond, bounds)


def size_one_guards(guards: Sequence[sympy.Basic]) -> list[sympy.Basic]:
    """The ``guards`` that only say a size is not 1: implied by every size being at least 2
    together with the bounds the other guards give (a guard in one symbol that gives a bound
    is never one of them).  Torch traces with sizes >= 2 and records such a check only where
    it cannot prove it (``N*X != X`` of a memory-layout check: ``X >= 1`` was beyond it).

    >>> import sympy
    >>> N, H = sympy.symbols("N H", integer=True, positive=True)
    >>> X = sympy.floor(H / 32 - sympy.Rational(1, 32)) + 1
    >>> size_one_guards([sympy.Ne(X, 1), sympy.Ne(N * X, X), sympy.Ne(N * X, 2 * X)])
    [Ne(N*(floor(H/32 - 1/32) + 1), floor(H/32 - 1/32) + 1)]
    """
    lower: dict[sympy.Symbol, int] = {}
    sources = set()
    for cond in guards:
        if len(getattr(cond, "free_symbols", ())) != 1:
            continue
        (x,) = cond.free_symbols
        for part in sympy.And.make_args(simplify_guard(cond)):
            if isinstance(part, sympy.Ge | sympy.Eq) and part.lhs == x and part.rhs.is_Integer:
                lower[x] = max(lower.get(x, 1), int(part.rhs))
                sources.add(cond)
    return [g for g in guards if g not in sources and implied_from_two(g, lower)]


# -- showing guards --------------------------------------------------------------------------


def shown_conditions(conditions: Sequence[sympy.Basic], symbols: Sequence[sympy.Symbol]) -> list:
    """The conjunction of ``conditions`` with each symbol's bounds merged to its tightest and
    the conditions those lower bounds imply (:func:`.symbolic.implied_by_bounds`) left out."""
    lower: dict[sympy.Symbol, int] = {}
    upper: dict[sympy.Symbol, int] = {}
    pending = list(conditions)
    while True:  # bounds found so far may simplify the rest further (a smaller domain)
        others: list[sympy.Basic] = []
        found = False
        for cond in pending:
            for part in cond.args if isinstance(cond, sympy.And) else (cond,):
                if part is sympy.true:
                    continue
                if len(part.free_symbols) == 1:
                    (x,) = part.free_symbols
                    part = simplify_guard(part, lower.get(x, 1))
                bound = isinstance(part, sympy.Ge | sympy.Le) and part.lhs.is_Symbol
                if bound and part.rhs.is_Integer:
                    found = True
                    value = int(part.rhs)
                    if isinstance(part, sympy.Ge):
                        lower[part.lhs] = max(lower.get(part.lhs, value), value)
                    else:
                        upper[part.lhs] = min(upper.get(part.lhs, value), value)
                elif part is not sympy.true:
                    others.append(part)
        if not found or not others:
            break
        pending = others
    order = list(dict.fromkeys([*symbols, *lower, *upper]))
    shown: list[sympy.Basic] = []
    for x in order:
        if x in lower and lower[x] == upper.get(x):  # one value: a pinned size
            shown.append(sympy.Eq(x, lower[x]))
            continue
        if x in lower:
            shown.append(sympy.Ge(x, lower[x]))
        if x in upper:
            shown.append(sympy.Le(x, upper[x]))
    shown += [c for c in dict.fromkeys(others) if not implied_by_bounds(c, lower)]
    return shown


def condition_text(cond: sympy.Basic) -> str:
    if isinstance(cond, sympy.core.relational.Relational):
        return f"{cond.lhs} {cond.rel_op} {cond.rhs}"
    if isinstance(cond, sympy.And):
        return " and ".join(f"({condition_text(a)})" for a in cond.args)
    return str(cond)
