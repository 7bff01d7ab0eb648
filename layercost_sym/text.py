"""Plain text for people: notes clipped at a word, expressions with like terms collected and
the largest first, shortened to a width.

A composed cost is a sum of per-part sums (``n_layer*(d_model**2 + d_model) + n_layer*(3*d_model
**2 + 3*d_model) + ...``); :func:`collected` multiplies it out, combines like terms, takes out the
factor common to all terms and lists the terms of highest degree first, so the leading terms are
the ones that dominate at large sizes.  :func:`shortened` keeps as many leading terms as fit.

>>> import layercost_sym as lc
>>> d, n, v = lc.symbols("d_model n_layer vocab")
>>> collected(n * (d**2 + d) + n * (3 * d**2 + 3 * d) + 2 * v)
'4*d_model**2*n_layer + 4*d_model*n_layer + 2*vocab'
>>> shortened(n * (d**2 + d) + n * (3 * d**2 + 3 * d) + 2 * v, 45)
'4*d_model**2*n_layer + ... (2 more terms)'
"""

from __future__ import annotations

from collections.abc import Mapping

import sympy

__all__ = ["ELLIPSIS", "clip", "collected", "shortened"]

ELLIPSIS = "..."  # marks text left out, in notes, rule lists and formulas alike

_FUNCTIONS = (sympy.floor, sympy.ceiling, sympy.Abs, sympy.Max, sympy.Min, sympy.Piecewise)


def clip(text: str, width: int) -> str:
    """``text`` on one line (whitespace runs made one space), cut at the last word boundary
    that fits ``width`` characters with :data:`ELLIPSIS` (mid-word only when one word is longer
    than the line).

    >>> clip("exact follows torch's decomposition where(x > 0, x, expm1(x))", 40)
    "exact follows torch's decomposition..."
    """
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    room = max(width - len(ELLIPSIS), 0)
    cut = text.rfind(" ", 0, room + 1)
    kept = text[:cut] if cut > 0 else text[:room]
    return kept.rstrip() + ELLIPSIS


def _degree(expr: sympy.Basic) -> sympy.Expr:
    """The degree of ``expr`` in its symbols, reading ``floor(u)``, ``Max(u, v)``, ... as ``u``
    (the larger of ``u`` and ``v``): how fast a term grows with the sizes."""
    if expr.is_Symbol:
        return sympy.Integer(1)
    if expr.is_Number or not expr.args:
        return sympy.Integer(0)
    if expr.is_Mul:
        return sympy.Add(*(_degree(a) for a in expr.args))
    if expr.is_Pow:
        base, exponent = expr.args
        return exponent * _degree(base) if exponent.is_Number else _degree(base)
    return max((_degree(a) for a in expr.args), key=float)


def _size(term: sympy.Expr, sizes: Mapping[sympy.Symbol, sympy.Expr]) -> sympy.Expr:
    """``|term|`` at ``sizes`` (other symbols 1): ranks terms of one degree."""
    value = term.xreplace({s: sympy.sympify(v) for s, v in sizes.items()})
    value = value.xreplace({s: sympy.Integer(1) for s in value.free_symbols})
    return abs(value) if value.is_number else sympy.Integer(0)


def _terms(
    expr: sympy.Expr, sizes: Mapping[sympy.Symbol, sympy.Expr] | None
) -> tuple[sympy.Expr, list[sympy.Expr]]:
    """``(common factor, terms)`` of ``expr`` with like terms combined, largest first."""
    if expr.has(*_FUNCTIONS):
        # multiplied out, but powers of sums (a side (floor(x) + 1)**2) and the arguments of
        # floor, Max, ... kept whole: expanding those multiplies the terms for no reader
        expr = sympy.expand(expr, deep=False, multinomial=False)
    else:
        expr = sympy.expand(expr)
    terms = list(sympy.Add.make_args(expr))
    common = sympy.Integer(1)
    if len(terms) > 1:
        powers = [t.as_powers_dict() for t in terms]
        for base in powers[0]:
            if not base.is_Symbol:
                continue
            exponents = [p.get(base, 0) for p in powers]
            if all(e.is_Integer and e > 0 for e in map(sympy.sympify, exponents)):
                common *= base ** min(exponents)
        if common != 1:
            terms = [t / common for t in terms]
    sizes = sizes or {}

    def key(term: sympy.Expr) -> tuple:
        return (-float(_degree(term)), -float(_size(term, sizes)), sympy.sstr(term))

    return common, sorted(terms, key=key)


def _join(terms: list[sympy.Expr]) -> str:
    text = ""
    for i, term in enumerate(terms):
        if term.could_extract_minus_sign():
            text += ("-" if i == 0 else " - ") + _atom(-term)
        else:
            text += ("" if i == 0 else " + ") + _atom(term)
    return text


def _atom(term: sympy.Expr) -> str:
    return sympy.sstr(term)


def _wrap(common: sympy.Expr, inner: str) -> str:
    """``common*(inner)``; a common factor is taken out of two or more terms only."""
    return inner if common == 1 else f"{sympy.sstr(common)}*({inner})"


def collected(expr: sympy.Expr, sizes: Mapping[sympy.Symbol, sympy.Expr] | None = None) -> str:
    """``expr`` as text with like terms collected, the factor common to all terms taken out,
    and the terms of highest degree first (``floor(u)``, ``Max(u, v)`` count as ``u``); terms
    of one degree largest first at ``sizes`` when given.  The text reads back with
    :func:`layercost_sym.parse` (given the symbols) as an expression equal to ``expr``.

    >>> import layercost_sym as lc
    >>> N, d, n, v = lc.symbols("N d_model n_layer vocab")
    >>> collected(N * (12 * n * d**2 + 2 * d * v) + N * n * (d**2 - d) + 3 * N)
    'N*(13*d_model**2*n_layer + 2*d_model*vocab - d_model*n_layer + 3)'
    """
    common, terms = _terms(sympy.sympify(expr), sizes)
    return _wrap(common, _join(terms))


def shortened(
    expr: sympy.Expr, width: int, sizes: Mapping[sympy.Symbol, sympy.Expr] | None = None
) -> str:
    """:func:`collected` text if it fits ``width`` characters; else its leading terms and
    ``+ ... (k more terms)``; where not even one term fits, the size of the expression.

    >>> import layercost_sym as lc
    >>> N, d, n, v = lc.symbols("N d_model n_layer vocab")
    >>> shortened(N * (12 * n * d**2 + 2 * d * v + 13 * d * n), 52)
    'N*d_model*(12*d_model*n_layer + ... (2 more terms))'
    """
    expr = sympy.sympify(expr)
    common, terms = _terms(expr, sizes)
    full = _wrap(common, _join(terms))
    if len(full) <= width:
        return full
    best = None
    for kept in range(1, len(terms)):
        rest = len(terms) - kept
        inner = f"{_join(terms[:kept])} + {ELLIPSIS} ({rest} more term{'s' if rest > 1 else ''})"
        text = _wrap(common, inner)
        if len(text) > width:
            break
        best = text
    if best is not None:
        return best
    count = len(terms)
    return f"{ELLIPSIS} ({count} term{'s' if count > 1 else ''}, {len(full)} characters)"
