"""Inverse questions: the largest size under a FLOPs, time or memory budget, answered from the
formulas as exact integers and checked on both sides.

One search serves every inverse question (:func:`search`; :mod:`layercost_sym.scaling` asks it
of architectures, :meth:`TrainingMemory.largest <layercost_sym.ledger.TrainingMemory.largest>`
of the training-memory ledger): the formula with every other size fixed is a function of one
integer ``n``; its exact value (a fraction where it is one, such as a roofline time) is
compared with the budget by doubling and bisection (:func:`least_integer
<layercost_sym.evaluation.least_integer>`) to the first integer over budget, and the answer is
the largest integer below it where the formula holds (its domain: a rule's constraints, an
analysis' guards, an architecture's divisibility).  Points outside the domain are skipped,
never answered.

The search assumes the formula does not decrease as ``n`` grows.  That is proved where SymPy
can: a polynomial or rational function by the sign of its derivative on ``[low, oo)`` (the
derivative's numerator shifted to ``low`` has no negative coefficient, or is positive at
``low`` with no real root beyond), and ``+``, ``Max``, ``Min``, ``floor``, ``ceiling`` and
products of non-negative factors of such parts.  Where it cannot be proved (``Answer.monotone``
says ``"sampled"``) the values at every point the search visited must not decrease, else the
search refuses (:class:`~layercost_sym.EvaluationError`).

>>> import layercost_sym as lc
>>> lc.largest("3 * N * (N + 1) / 2", 1000, "N")   # 975 at N = 25, 1053 at N = 26
25
>>> a = lc.largest_answer("3 * N * (N + 1) / 2", 1000, "N")
>>> a.value, a.at_value, a.over, a.over_value, a.monotone
(25, Fraction(975, 1), 26, Fraction(1053, 1), 'proved')
>>> lc.largest("2 * L", 1, "L") is None                # even L = 1 is over budget
True
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import sympy

from .codegen import compile_expression
from .domain import Domain
from .domain import domain as domain_of
from .errors import EvaluationError, MissingSymbolError
from .evaluation import check_domain, evaluate, least_integer
from .parsing import parse

__all__ = [
    "Answer",
    "exact_budget",
    "exact_value",
    "largest",
    "largest_answer",
    "nondecreasing",
    "search",
    "univariate",
]

# How far below the first integer over budget the search looks for a point of the domain (an
# architecture's d_model steps down to a multiple of n_head: n_head steps at most).
_STEPS = 1 << 12


@dataclass(frozen=True)
class Answer:
    """The largest ``symbol`` within ``budget`` and the evidence on both sides of it.

    ``value``: the answer (None: not even ``low`` is within budget, or no point of the domain
    lies below the crossing); ``at_value``: the formula there; ``over``: the first integer
    whose value exceeds the budget, ``over_value`` its value (every integer from ``value + 1``
    to ``over - 1`` is outside the domain: ``skipped`` of them); ``monotone``: ``"proved"``
    (by SymPy, on ``[low, oo)``) or ``"sampled"`` (checked at the ``samples`` points the search
    visited)."""

    symbol: str
    budget: Fraction
    value: int | None
    at_value: Fraction | None
    over: int
    over_value: Fraction
    skipped: int
    monotone: str
    samples: int


def exact_budget(budget: Any) -> Fraction:
    """An exact budget: ints and fractions as they are, floats through their shortest decimal
    (``1e21`` is 10**21, ``0.1`` is 1/10)."""
    if isinstance(budget, bool):
        raise EvaluationError(f"a budget is a number, got {budget!r}")
    if isinstance(budget, int | Fraction):
        value = Fraction(budget)
    elif isinstance(budget, float):
        value = Fraction(repr(budget))
    elif isinstance(budget, sympy.Rational):
        value = Fraction(int(budget.p), int(budget.q))
    else:
        raise EvaluationError(
            f"a budget is an int, a Fraction or a float, got {budget!r} ({type(budget).__name__})"
        )
    if value < 0:
        raise EvaluationError(f"a budget cannot be negative, got {budget!r}")
    return value


# -- monotonicity -------------------------------------------------------------------------------


def _nonnegative_on(p: sympy.Expr, s: sympy.Symbol, low: int) -> bool:
    """``p >= 0`` for every real ``s >= low`` (proved, or False)."""
    try:
        poly = sympy.Poly(p, s)
    except sympy.PolynomialError:
        return False
    if not all(c.is_Rational for c in poly.all_coeffs()):
        return False
    if all(c >= 0 for c in poly.shift(low).all_coeffs()):  # p(low + t), t >= 0
        return True
    return bool(poly.eval(low) > 0) and poly.count_roots(low, None) == 0


def _rational_nondecreasing(e: sympy.Expr, s: sympy.Symbol, low: int) -> bool:
    """The derivative of a rational function of ``s`` is >= 0 on ``[low, oo)``."""
    num, den = sympy.fraction(sympy.together(sympy.diff(e, s)))
    if den.is_number:
        return _nonnegative_on(num * sympy.sign(den), s, low)
    # a denominator with no root beyond low keeps one sign: the numerator must share it
    positive = _nonnegative_on(den, s, low) and _nonnegative_on(num, s, low)
    return positive or (_nonnegative_on(-den, s, low) and _nonnegative_on(-num, s, low))


def nondecreasing(e: sympy.Expr, s: sympy.Symbol, low: int) -> bool:
    """True where ``e`` is proved not to decrease as the real ``s`` grows from ``low``."""
    if s not in e.free_symbols:
        return True
    if e.free_symbols != {s}:
        return False
    if e.is_rational_function(s):
        return _rational_nondecreasing(e, s, low)
    if isinstance(e, sympy.Add):  # the rational terms together, the others one by one
        rational = [a for a in e.args if a.is_rational_function(s)]
        others = [a for a in e.args if not a.is_rational_function(s)]
        return _rational_nondecreasing(sympy.Add(*rational), s, low) and all(
            nondecreasing(a, s, low) for a in others
        )
    if isinstance(e, sympy.Max | sympy.Min | sympy.floor | sympy.ceiling):
        return all(nondecreasing(a, s, low) for a in e.args)
    factors: list[sympy.Expr] = []
    if isinstance(e, sympy.Mul):
        factors = list(e.args)
    elif isinstance(e, sympy.Pow) and e.exp.is_Integer and e.exp > 0:
        factors = [e.base]
    # a product of factors that do not decrease and are >= 0 where they start does not decrease
    return bool(factors) and all(
        nondecreasing(f, s, low) and bool(f.xreplace({s: low}) >= 0) for f in factors
    )


# -- the search ---------------------------------------------------------------------------------


def search(
    value: Callable[[int], Fraction],
    budget: Fraction,
    symbol: str,
    admissible: Callable[[int], bool],
    *,
    low: int,
    limit: int,
    proved: bool,
) -> Answer:
    """The one search: the first integer ``>= low`` over ``budget``, then the largest
    admissible integer below it."""
    samples: dict[int, Fraction] = {}

    def over(n: int) -> bool:
        if n not in samples:
            samples[n] = value(n)
        return samples[n] > budget

    if over(low):
        if not proved:  # a formula that might dip below budget later: probe it, doubling
            probe = low
            while probe - low < limit and probe < 2**64:
                probe = 2 * probe
                over(probe)
            _check_sampled(samples, symbol)
        return Answer(symbol, budget, None, None, low, samples[low], 0, _how(proved), len(samples))
    first = least_integer(lambda k: over(low - 1 + k), limit=limit)
    if first is None:
        raise EvaluationError(
            f"the formula stays within the budget {budget} up to {symbol} = {low - 1 + limit}"
        )
    crossing = low - 1 + first
    if not proved:
        _check_sampled(samples, symbol)
    n = crossing - 1
    while n >= max(low, crossing - _STEPS) and not admissible(n):
        n -= 1
    if n < low:
        value_at = None
    elif n < crossing - _STEPS:
        raise EvaluationError(
            f"no {symbol} in [{crossing - _STEPS}, {crossing - 1}] lies in the formula's domain"
        )
    else:
        value_at = value(n)
    answer = n if n >= low else None
    skipped = crossing - 1 - (n if answer is not None else low - 1)
    # both sides: the answer within budget, the crossing over it
    assert value_at is None or value_at <= budget < samples[crossing]
    return Answer(
        symbol,
        budget,
        answer,
        value_at,
        crossing,
        samples[crossing],
        skipped,
        _how(proved),
        len(samples),
    )


def _check_sampled(samples: Mapping[int, Fraction], symbol: str) -> None:
    """Refuse a formula whose values at the points the search visited decrease."""
    points = sorted(samples)
    for a, b in itertools.pairwise(points):
        if samples[b] < samples[a]:
            raise EvaluationError(
                f"the formula decreases as {symbol} grows ({samples[a]} at {symbol} = {a}, "
                f"{samples[b]} at {b}): 'the largest {symbol} within budget' is not found "
                "by bisection"
            )


def _how(proved: bool) -> str:
    return "proved" if proved else "sampled"


def univariate(
    expr: sympy.Expr, symbol: str, at: Mapping[str, int]
) -> tuple[sympy.Expr, sympy.Symbol]:
    """``expr`` with every symbol but ``symbol`` replaced by its value in ``at``."""
    found = [s for s in expr.free_symbols if s.name == symbol]
    s = found[0] if found else sympy.Symbol(symbol, integer=True, positive=True)
    given = {t: sympy.Integer(at[t.name]) for t in expr.free_symbols if t.name in at and t != s}
    missing = sorted(t.name for t in expr.free_symbols - {s} if t.name not in at)
    if missing:
        raise MissingSymbolError(
            f"missing value for {', '.join(map(repr, missing))}: give every size but {symbol} "
            f"in 'at' (the formula uses {', '.join(sorted(t.name for t in expr.free_symbols))})"
        )
    return expr.xreplace(given), s


def exact_value(expr: sympy.Expr, s: sympy.Symbol) -> Callable[[int], Fraction]:
    """The exact value of a formula in one symbol, outside any domain (compiled once)."""
    compiled = compile_expression(expr)

    def value(n: int) -> Fraction:
        try:
            num, den = compiled.scalar(*([n] if compiled.symbols else []))
        except ZeroDivisionError:
            raise EvaluationError(f"the formula divides by zero at {s} = {n}") from None
        return Fraction(num, den)

    return value


def _formula(
    source: Any,
    quantity: str | None,
    convention: str | None,
    chip: Any,
    dtype: str | None,
    bytes: str,
) -> tuple[sympy.Expr, Domain, bool]:
    """``(expression, domain, integer-valued)`` of what a budget bounds."""
    if quantity == "time":
        if chip is None or dtype is None:
            raise EvaluationError("a time budget needs chip= (a chip or its name) and dtype=")
        return _time(source, chip, dtype, bytes)
    if isinstance(source, str):
        expr = parse(source)
    elif isinstance(source, int) and not isinstance(source, bool):
        expr = sympy.Integer(source)
    elif isinstance(source, sympy.Basic):
        expr = source
    elif isinstance(getattr(source, "total", None), sympy.Basic):  # a training-memory ledger
        if quantity is not None:
            raise EvaluationError("a training-memory ledger bounds its total bytes: no quantity")
        expr = source.total
    elif callable(getattr(source, "quantity", None)):  # Cost, Architecture, Analysis, Rule
        expr = source.quantity(quantity or "flops", convention)
    else:
        raise EvaluationError(
            f"cannot bound an object of type {type(source).__name__}: give an expression, its "
            "text, a Cost, an Architecture, an Analysis or a training-memory ledger"
        )
    return expr, domain_of(expr), True


def _time(source: Any, chip: Any, dtype: str, bytes: str) -> tuple[sympy.Expr, Domain, bool]:
    """The roofline time lower bound (seconds, an exact fraction) of a whole model."""
    from .roofline import time_bound, works_of

    if callable(getattr(source, "works", None)):  # an Analysis
        works = source.works(bytes=bytes)
        conditions = source.domain
    elif hasattr(source, "parts"):  # a Cost (an Architecture passes its own through)
        from .composition import Cost

        works = works_of([(p.name, Cost([p], None, source.conditions)) for p in source.parts])
        conditions = source.domain
    else:
        raise EvaluationError(
            f"a time budget bounds an Analysis, a Cost or an Architecture, "
            f"not {type(source).__name__}"
        )
    return sympy.Add(*(time_bound(w, chip, dtype) for w in works)), conditions, False


def largest_answer(
    source: Any,
    budget: Any,
    symbol: str = "L",
    *,
    at: Mapping[str, int] | None = None,
    quantity: str | None = None,
    convention: str | None = None,
    chip: Any = None,
    dtype: str | None = None,
    bytes: str = "min",
    low: int = 1,
    limit: int = 2**64,
) -> Answer:
    """:func:`largest` with the evidence: an :class:`Answer`."""
    fixed = dict(at or {})
    expr, conditions, integer = _formula(source, quantity, convention, chip, dtype, bytes)
    formula, s = univariate(sympy.sympify(expr), symbol, fixed)
    # conditions the fixed sizes decide alone are checked once: no n can save them
    alone = [
        c for c in conditions.conditions if symbol not in {t.name for t in c.condition.free_symbols}
    ]
    check_domain(Domain(tuple(alone)), fixed)
    value = exact_value(formula, s)

    def admissible(n: int) -> bool:
        point = {**fixed, symbol: n}
        try:
            if integer:
                evaluate(expr, point, domain=conditions)  # an exact non-negative integer there
            else:
                check_domain(conditions, point)
        except EvaluationError:  # DomainError included
            return False
        return True

    proved = nondecreasing(formula, s, low)
    return search(
        value, exact_budget(budget), symbol, admissible, low=low, limit=limit, proved=proved
    )


def largest(
    source: Any,
    budget: Any,
    symbol: str = "L",
    *,
    at: Mapping[str, int] | None = None,
    quantity: str | None = None,
    convention: str | None = None,
    chip: Any = None,
    dtype: str | None = None,
    bytes: str = "min",
    low: int = 1,
    limit: int = 2**64,
) -> int | None:
    """The largest integer ``symbol >= low`` (a sequence length, a batch) at which a formula
    stays within ``budget``, every other size at ``at``; None when not even ``low`` fits.

    ``source``: an expression (its domain honoured: a point outside it is never an answer) or
    its text; a :class:`~layercost_sym.Cost`, an :class:`~layercost_sym.Architecture` or an
    :class:`~layercost_sym.torchtools.analysis.Analysis`, bounded in ``quantity`` (default
    FLOPs) under ``convention``; a training-memory ledger (its total bytes); with
    ``quantity="time"``, ``chip`` and ``dtype``, the roofline time lower bound in seconds
    (:mod:`layercost_sym.roofline`).  ``budget``: an int, a Fraction, or a float taken as its
    shortest decimal.  Raises :class:`~layercost_sym.EvaluationError` when the formula stays
    within budget up to ``limit``, or when the search sees it decrease (see the module).

    >>> import layercost_sym as lc
    >>> L = lc.symbols("L")
    >>> proj = lc.rule("Linear").at(C_in=64, C_out=64, N=L, b=0)   # 8192 L FLOPs (torch)
    >>> lc.largest(proj, 10**6, "L", convention="torch")           # 8192 * 122 <= 10**6
    122
    """
    return largest_answer(
        source,
        budget,
        symbol,
        at=at,
        quantity=quantity,
        convention=convention,
        chip=chip,
        dtype=dtype,
        bytes=bytes,
        low=low,
        limit=limit,
    ).value
