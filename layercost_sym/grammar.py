"""Expressions written as text in the catalogue's grammar, so that the safe parser reads the text
back as the very same SymPy tree (``formulas/README.md``; :mod:`layercost_sym.parsing`).

SymPy's own text does not always read back as the same tree: the parser builds a product left to
right, and ``8*(b + 1)*x`` read so distributes the 8 over ``b + 1`` (a two-factor product of a
number and a sum is always multiplied out), and ``-(1 - a)*c`` negates the sum first.  Equal
values, other trees, and a tree that is not the one a domain was attached to.  :func:`text_of`
writes a product's number where it cannot meet a sum alone, and a sum's terms so that no
leading minus sign falls on a sum; where the grammar has no word for a node (a float, a root,
a function outside the allow-list) it raises :class:`~layercost_sym.CardError`.

>>> import sympy, layercost_sym as lc
>>> from layercost_sym.grammar import read, text_of
>>> b, p, H = lc.symbols("b p H")
>>> e = sympy.Mul(8, b + 1, sympy.floor(H / 2), evaluate=False)
>>> text_of(e), read(text_of(e)) == e, read(sympy.sstr(e)) == e
('8*floor(H/2)*(b + 1)', True, False)
>>> text_of(sympy.Piecewise((H, sympy.Eq(p, 0)), (sympy.floor(H / 2), True)))
'where(p == 0, H, floor(H/2))'
>>> text_of(sympy.And(H >= 3, sympy.Ne(sympy.Mod(H, 2), 0)))
'(H >= 3) and (Mod(H, 2) != 0)'
"""

from __future__ import annotations

from collections.abc import Mapping

import sympy

from .errors import CardError, ExpressionError
from .parsing import MAX_EXPONENT, MAX_TEXT_LENGTH, gcd, parse, parse_condition

__all__ = ["read", "text_of"]

# SymPy function -> its name in the grammar
_FUNCTIONS = {
    sympy.floor: "floor",
    sympy.ceiling: "ceiling",
    sympy.Max: "Max",
    sympy.Min: "Min",
    sympy.Mod: "Mod",
    sympy.Abs: "Abs",
    gcd: "gcd",
}


def _factor(expr: sympy.Expr) -> str:
    """``expr`` as a factor of a product: a sum or a negative number in parentheses."""
    text = _text(expr)
    if expr.is_Add or (expr.is_Number and expr.is_negative) or (expr.is_Rational and expr.q != 1):
        return f"({text})"
    return text


def _power(expr: sympy.Pow) -> str:
    base, exponent = expr.args
    if not (exponent.is_Integer and abs(int(exponent)) <= MAX_EXPONENT):
        raise CardError(f"the grammar has no power {expr} (exponents are small integers)")
    shown = _text(base)
    if not (base.is_Symbol or base.is_Function or (base.is_Integer and base.is_positive)):
        shown = f"({shown})"
    return shown if abs(int(exponent)) == 1 else f"{shown}**{abs(int(exponent))}"


def _product(expr: sympy.Mul) -> str:
    coefficient, factors = expr.as_coeff_mul()
    if not coefficient.is_Rational:
        raise CardError(f"the grammar has no number {coefficient} (counts are exact)")
    top = [f for f in factors if not (f.is_Pow and f.args[1].is_negative)]
    bottom = [f for f in factors if f.is_Pow and f.args[1].is_negative]
    top.sort(key=lambda f: bool(f.is_Add))  # a sum never first: the number must not meet it
    p, q = int(coefficient.p), int(coefficient.q)
    if top and not top[0].is_Add and p != 1:
        text = ("-" if p == -1 else f"{p}*") + _factor(top[0])
        placed = True
    else:
        text = _factor(top[0]) if top else str(p)
        placed = not top
    text += "".join(f"*{_factor(f)}" for f in top[1:])
    text += "".join(f"/{_power(f)}" for f in bottom)
    if not placed and p != 1:
        text += f"*({p})" if p < 0 else f"*{p}"
    return text + (f"/{q}" if q != 1 else "")


# A sum of more terms is written as a sum of parenthesised groups of at most _GROUP terms (and
# groups of groups): the parser nests one level per operator of a chain, up to MAX_DEPTH.
_FLAT = 12
_GROUP = 8


def _chain(terms: list[sympy.Expr]) -> str:
    text = _text(terms[0])  # a term alone reads back as itself, a leading minus included
    for term in terms[1:]:
        if term.could_extract_minus_sign():
            text += f" - {_text(-term)}"
        else:
            text += f" + {_text(term)}"
    return text


def _sum(expr: sympy.Add) -> str:
    terms = sorted(expr.args, key=lambda t: bool(t.is_Number))  # a constant term last
    first = next((t for t in terms if not t.could_extract_minus_sign()), terms[0])
    terms.remove(first)
    terms.insert(0, first)
    if len(terms) <= _FLAT:
        return _chain(terms)
    texts = [_chain(terms[i : i + _GROUP]) for i in range(0, len(terms), _GROUP)]
    while len(texts) > _GROUP:
        texts = [
            " + ".join(f"({t})" for t in texts[i : i + _GROUP])
            for i in range(0, len(texts), _GROUP)
        ]
    return " + ".join(f"({t})" for t in texts)


def _if_then_else(expr: sympy.ITE) -> str:
    """``ITE(c, x >= r, y >= r)`` as ``where(c, x, y) >= r``: SymPy makes that comparison an
    ``ITE`` again inside a ``where`` condition, where the parser meets one (a rule's ``where``
    over a side that is itself a ``where``)."""
    cond, a, b = expr.args
    if isinstance(a, sympy.core.relational.Relational) and type(a) is type(b):
        if a.rhs == b.rhs:
            shown = f"where({_text(cond)}, {_text(a.lhs)}, {_text(b.lhs)})"
            return f"{shown} {a.rel_op} {_text(a.rhs)}"
        if a.lhs == b.lhs:
            shown = f"where({_text(cond)}, {_text(a.rhs)}, {_text(b.rhs)})"
            return f"{_text(a.lhs)} {a.rel_op} {shown}"
    raise CardError(f"the grammar has no if-then-else of conditions {expr}")


def _text(expr: sympy.Basic) -> str:
    if isinstance(expr, sympy.Symbol):
        if not expr.name.isidentifier():
            raise CardError(f"symbol name {expr.name!r} is not an identifier")
        return expr.name
    if isinstance(expr, sympy.Integer):
        return str(int(expr))
    if isinstance(expr, sympy.Rational):
        return f"{expr.p}/{expr.q}"
    if expr.is_Add:
        return _sum(expr)
    if expr.is_Mul:
        return _product(expr)
    if expr.is_Pow:
        return ("1/" if expr.args[1].is_negative else "") + _power(expr)
    if isinstance(expr, sympy.Piecewise):
        if len(expr.args) != 2 or expr.args[1].cond is not sympy.true:
            raise CardError(f"the grammar writes where(cond, a, b) only, not {expr}")
        (a, cond), (b, _) = expr.args
        return f"where({_text(cond)}, {_text(a)}, {_text(b)})"
    if isinstance(expr, sympy.core.relational.Relational):
        return f"{_text(expr.lhs)} {expr.rel_op} {_text(expr.rhs)}"
    if isinstance(expr, sympy.And | sympy.Or):
        joiner = " and " if isinstance(expr, sympy.And) else " or "
        return joiner.join(f"({_text(a)})" for a in expr.args)
    if isinstance(expr, sympy.ITE):
        return _if_then_else(expr)
    if isinstance(expr, sympy.Not):
        return f"not ({_text(expr.args[0])})"
    if expr is sympy.true or expr is sympy.false:
        return "1 == 1" if expr is sympy.true else "0 == 1"
    name = _FUNCTIONS.get(type(expr))
    if name is None:
        raise CardError(f"the grammar has no {type(expr).__name__} (in {expr})")
    return f"{name}({', '.join(_text(a) for a in expr.args)})"


def text_of(expr: sympy.Basic) -> str:
    """``expr`` (an expression or a condition) as text in the catalogue's grammar that
    :func:`read` (:func:`~layercost_sym.parse`, :func:`~layercost_sym.parsing.parse_condition`)
    reads back as the same tree; :class:`~layercost_sym.CardError` for what the grammar
    cannot say."""
    if isinstance(expr, str):  # text is read by the safe parser, never sympified
        raise CardError("text_of takes an expression; read text with layercost_sym.parse")
    return _text(sympy.sympify(expr))


def _terms(text: str) -> list[str]:
    """The text of a sum split before its outermost binary ``+`` and ``-`` signs."""
    out, depth, start, previous = [], 0, 0, ""
    for i, char in enumerate(text):
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char in "+-" and depth == 0 and (previous.isalnum() or previous in "_)"):
            out.append(text[start:i])
            start = i
        if not char.isspace():
            previous = char
    return [*out, text[start:]]


def _unwrapped(text: str) -> str | None:
    """The inside of ``(...)`` when the parentheses enclose all of ``text``."""
    if not (text.startswith("(") and text.endswith(")")):
        return None
    depth = 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and i < len(text) - 1:
            return None
    return text[1:-1]


def _read_long(text: str, symbols: Mapping[str, sympy.Basic] | None) -> sympy.Basic:
    """A sum longer than the parser's limit, read in pieces of whole terms."""
    text = text.strip()
    if len(text) <= MAX_TEXT_LENGTH:
        return parse(text, symbols)
    terms = [t.strip() for t in _terms(text)]
    if len(terms) == 1:
        inner = _unwrapped(text)
        if inner is None:
            raise ExpressionError(
                f"a term of {len(text)} characters is longer than the limit on text, "
                f"{MAX_TEXT_LENGTH}: {text[:60]!r}..."
            )
        return _read_long(inner, symbols)
    pieces, chunk = [], ""
    for term in terms:
        if len(term) > MAX_TEXT_LENGTH:  # one long term (a group): read alone
            sign, body = (term[0], term[1:]) if term[0] in "+-" else ("+", term)
            value = _read_long(body, symbols)
            pieces.append(-value if sign == "-" else value)
            continue
        if chunk and len(chunk) + len(term) + 3 > MAX_TEXT_LENGTH:
            pieces.append(_parse_chunk(chunk, symbols))
            chunk = ""
        chunk += f" {term}"
    if chunk:
        pieces.append(_parse_chunk(chunk, symbols))
    return sympy.Add(*pieces)


def _parse_chunk(chunk: str, symbols: Mapping[str, sympy.Basic] | None) -> sympy.Basic:
    chunk = chunk.strip()
    # a chunk that starts with a sign takes it as the binary operator it was: a leading unary
    # minus would fall on the first factor (a sum) rather than on the term
    return parse(f"0 {chunk}" if chunk[0] in "+-" else chunk, symbols)


def read(
    text: str, symbols: Mapping[str, sympy.Basic] | None = None, condition: bool = False
) -> sympy.Basic:
    """Text read through the safe parser (a condition with ``condition=True``).  A sum longer
    than the parser's limit on text (:data:`~layercost_sym.parsing.MAX_TEXT_LENGTH`: a model's
    closed form runs to many thousand characters) is read in pieces of whole terms, each piece
    within the limit; a single term longer than the limit is refused.

    >>> import sympy, layercost_sym as lc
    >>> from layercost_sym.parsing import MAX_TEXT_LENGTH
    >>> N = lc.symbols("N")
    >>> long = sympy.Add(*(sympy.floor(N / p) for p in range(2, 800)))
    >>> len(text_of(long)) > MAX_TEXT_LENGTH, read(text_of(long)) == long
    (True, True)
    """
    if not isinstance(text, str):
        raise ExpressionError(f"expected expression text, got {type(text).__name__}")
    if condition:
        return parse_condition(text, symbols)
    return _read_long(text, symbols)
