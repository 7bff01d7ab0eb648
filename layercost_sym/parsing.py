"""Safe parsing of expression text into SymPy.

Text never reaches ``eval`` or ``sympify``: it is parsed by :func:`ast.parse` and then walked
by an allow-list that builds SymPy objects itself. What is allowed:

* integer literals (no floats: counts are exact), names of glossary symbols and of the rule's
  own defined quantities;
* ``+ - * / // % **`` and parentheses; ``/`` is exact rational division, ``//`` is ``floor``;
* calls of ``floor, ceiling (ceil), Max (max), Min (min), Abs (abs), Mod, gcd,
  where(cond, a, b)``;
* comparisons ``== != < <= > >=`` and ``and``/``or``/``not`` only where a condition is expected
  (constraints, the first argument of ``where``).

Everything else -- attribute access, subscripts, lambdas, dunder names, other calls, strings --
is rejected with an :class:`~layercost_sym.errors.ExpressionError` naming the token.  Work is
bounded: text longer than :data:`MAX_TEXT_LENGTH` characters, nesting deeper than
:data:`MAX_DEPTH`, exponents that are not small integer literals and expressions whose degree
or constant size would explode (``9**9**9**9``) are refused before any arithmetic happens.

>>> from layercost_sym.parsing import parse
>>> parse("N * (E + 1) // 2")
floor(N*(E + 1)/2)
>>> parse("N + I").free_symbols == {parse("N"), parse("I")}   # plain symbols, not SymPy's N or I
True
>>> parse("__import__('os')")
Traceback (most recent call last):
...
layercost_sym.errors.ExpressionError: call of '__import__' is not allowed (allowed: ...) in ...
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping
from functools import lru_cache

import sympy

from .errors import ExpressionError

__all__ = ["MAX_DEPTH", "MAX_TEXT_LENGTH", "gcd", "parse", "parse_condition"]

MAX_TEXT_LENGTH = 4000
MAX_DEPTH = 60
MAX_EXPONENT = 64
MAX_DEGREE = 256  # total polynomial degree an expression may reach
MAX_CONSTANT_BITS = 4096  # size a constant sub-expression may reach


class gcd(sympy.Function):
    """Greatest common divisor of two integers, left unevaluated on symbols.

    (``sympy.gcd`` is the polynomial gcd: ``sympy.gcd(H, W)`` is 1, not what a formula means.)
    """

    is_integer = True
    is_positive = True

    @classmethod
    def eval(cls, a, b):
        if a.is_Integer and b.is_Integer:
            return sympy.Integer(math.gcd(int(a), int(b)))
        if a == 1 or b == 1:  # gcd(x, 1) = 1 for every integer x: no need to keep it
            return sympy.Integer(1)
        if a == b and a.is_integer and a.is_positive:
            return a
        return None

    def _latex(self, printer):
        a, b = (printer._print(arg) for arg in self.args)
        return rf"\gcd\left({a}, {b}\right)"


def _where(cond: sympy.Basic, a: sympy.Expr, b: sympy.Expr) -> sympy.Expr:
    return sympy.Piecewise((a, cond), (b, True))


# SymPy simplifies Max/Min on construction by comparing every pair of arguments (factor_terms,
# assumptions queries), and its own cache does not cover them: the same Max/Min terms recur
# across a family's rules and their variants, so the parser remembers what each one built.
@lru_cache(maxsize=4096)
def _max(*args: sympy.Expr) -> sympy.Expr:
    return sympy.Max(*args)


@lru_cache(maxsize=4096)
def _min(*args: sympy.Expr) -> sympy.Expr:
    return sympy.Min(*args)


_FUNCTIONS: dict[str, tuple[Callable[..., sympy.Basic], int | None]] = {
    # name: (constructor, number of arguments or None for "two or more")
    "floor": (sympy.floor, 1),
    "ceiling": (sympy.ceiling, 1),
    "ceil": (sympy.ceiling, 1),
    "Max": (_max, None),
    "max": (_max, None),
    "Min": (_min, None),
    "min": (_min, None),
    "Mod": (sympy.Mod, 2),
    "Abs": (sympy.Abs, 1),
    "abs": (sympy.Abs, 1),
    "where": (_where, 3),
    "gcd": (gcd, 2),
}

_BINOPS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: sympy.floor(a / b),
    ast.Mod: lambda a, b: sympy.Mod(a, b),
    ast.Pow: lambda a, b: a**b,
}
_BINOP_TEXT = {
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.MatMult: "@",
}
_COMPARE = {
    ast.Eq: sympy.Eq,
    ast.NotEq: sympy.Ne,
    ast.Lt: sympy.Lt,
    ast.LtE: sympy.Le,
    ast.Gt: sympy.Gt,
    ast.GtE: sympy.Ge,
}


class _Bound:
    """Upper bounds on the size of a sub-expression, checked while building it."""

    __slots__ = ("bits", "degree")

    def __init__(self, degree: int, bits: int) -> None:
        self.degree = degree
        self.bits = bits


def _token(node: ast.AST) -> str:
    try:
        return ast.unparse(node)
    except Exception:  # pragma: no cover - unparse handles every node ast.parse makes
        return type(node).__name__


class _Builder:
    def __init__(self, text: str, symbols: Mapping[str, sympy.Expr]) -> None:
        self.text = text
        self.symbols = symbols

    def fail(self, message: str) -> ExpressionError:
        return ExpressionError(f"{message} in {self.text!r}")

    def expr(self, node: ast.AST, depth: int) -> tuple[sympy.Expr, _Bound]:
        if depth > MAX_DEPTH:
            raise self.fail(f"expression nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.fail(f"literal {_token(node)} is not allowed (integers only)")
            if value.bit_length() > MAX_CONSTANT_BITS:
                raise self.fail(f"integer literal longer than {MAX_CONSTANT_BITS} bits")
            return sympy.Integer(value), _Bound(0, value.bit_length())
        if isinstance(node, ast.Name):
            if node.id in self.symbols:
                return self.symbols[node.id], _Bound(1, 0)
            if node.id.startswith("__"):
                raise self.fail(f"dunder name {node.id!r} is not allowed")
            raise self.fail(f"unknown symbol {node.id!r}")
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.USub):
                value, bound = self.expr(node.operand, depth + 1)
                return -value, bound
            if isinstance(node.op, ast.UAdd):
                return self.expr(node.operand, depth + 1)
            raise self.fail(f"operator {_token(node)!r} is not allowed")
        if isinstance(node, ast.BinOp):
            op = type(node.op)
            if op not in _BINOPS:
                raise self.fail(f"operator {_BINOP_TEXT.get(op, op.__name__)!r} is not allowed")
            left, lb = self.expr(node.left, depth + 1)
            if op is ast.Pow:
                exponent = self._exponent(node.right)
                bound = _Bound(lb.degree * abs(exponent), lb.bits * abs(exponent))
            else:
                right, rb = self.expr(node.right, depth + 1)
                if op in (ast.Mult, ast.Div, ast.FloorDiv):
                    bound = _Bound(lb.degree + rb.degree, lb.bits + rb.bits)
                else:
                    bound = _Bound(max(lb.degree, rb.degree), max(lb.bits, rb.bits) + 1)
            if bound.degree > MAX_DEGREE:
                raise self.fail(f"expression degree exceeds {MAX_DEGREE}")
            if bound.bits > MAX_CONSTANT_BITS:
                raise self.fail(f"constant exceeds {MAX_CONSTANT_BITS} bits")
            if op is ast.Pow:
                result = left**exponent
            else:
                result = _BINOPS[op](left, right)
            if result.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
                raise self.fail(f"division by zero in {_token(node)!r}")
            return result, bound
        if isinstance(node, ast.Call):
            return self._call(node, depth)
        if isinstance(node, ast.Compare | ast.BoolOp):
            raise self.fail(f"condition {_token(node)!r} is not allowed here")
        raise self.fail(f"{type(node).__name__.lower()} {_token(node)!r} is not allowed")

    def _exponent(self, node: ast.AST) -> int:
        sign = 1
        while isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            sign = -sign if isinstance(node.op, ast.USub) else sign
            node = node.operand
        if not (isinstance(node, ast.Constant) and type(node.value) is int):
            raise self.fail(f"exponent {_token(node)!r} must be an integer literal")
        if node.value > MAX_EXPONENT:
            raise self.fail(f"exponent {node.value} exceeds {MAX_EXPONENT}")
        return sign * node.value

    def _call(self, node: ast.Call, depth: int) -> tuple[sympy.Expr, _Bound]:
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name not in _FUNCTIONS:
            shown = name if name is not None else _token(node.func)
            allowed = ", ".join(sorted(_FUNCTIONS))
            raise self.fail(f"call of {shown!r} is not allowed (allowed: {allowed})")
        if node.keywords:
            raise self.fail(f"keyword arguments in {_token(node)!r} are not allowed")
        function, arity = _FUNCTIONS[name]
        n = len(node.args)
        if (arity is not None and n != arity) or (arity is None and n < 2):
            wanted = arity if arity is not None else "two or more"
            raise self.fail(f"{name}() takes {wanted} arguments, got {n}")
        if name == "where":
            cond = self.condition(node.args[0], depth + 1)
            (a, ab), (b, bb) = (self.expr(arg, depth + 1) for arg in node.args[1:])
            return function(cond, a, b), _Bound(max(ab.degree, bb.degree), max(ab.bits, bb.bits))
        args = [self.expr(arg, depth + 1) for arg in node.args]
        bound = _Bound(max(b.degree for _, b in args), max(b.bits for _, b in args))
        return function(*(a for a, _ in args)), bound

    def condition(self, node: ast.AST, depth: int) -> sympy.Basic:
        if depth > MAX_DEPTH:
            raise self.fail(f"expression nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, ast.Compare):
            parts = []
            left, _ = self.expr(node.left, depth + 1)
            for op, comparator in zip(node.ops, node.comparators, strict=True):
                if type(op) not in _COMPARE:
                    raise self.fail(f"comparison {type(op).__name__!r} is not allowed")
                right, _ = self.expr(comparator, depth + 1)
                parts.append(_COMPARE[type(op)](left, right))
                left = right
            return sympy.And(*parts)
        if isinstance(node, ast.BoolOp):
            joiner = sympy.And if isinstance(node.op, ast.And) else sympy.Or
            return joiner(*(self.condition(v, depth + 1) for v in node.values))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return sympy.Not(self.condition(node.operand, depth + 1))
        if isinstance(node, ast.Name) and node.id in self.symbols:
            # a bare flag symbol reads as "flag == 1"
            return sympy.Eq(self.symbols[node.id], 1)
        raise self.fail(f"{_token(node)!r} is not a condition (use a comparison)")


def _tree(text: str) -> ast.expr:
    if not isinstance(text, str):
        raise ExpressionError(f"expression text must be a str, got {type(text).__name__}")
    if len(text) > MAX_TEXT_LENGTH:
        raise ExpressionError(
            f"expression text is {len(text)} characters long; the limit is {MAX_TEXT_LENGTH}"
        )
    # Refuse deep bracket nesting before the C parser sees it (it recurses per level).
    level = deepest = 0
    for char in text:
        if char in "([{":
            level += 1
            deepest = max(deepest, level)
        elif char in ")]}":
            level -= 1
    if deepest > MAX_DEPTH:
        raise ExpressionError(
            f"expression nested deeper than {MAX_DEPTH} levels in {text[:60]!r}..."
        )
    try:
        return ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        raise ExpressionError(f"cannot parse {text!r}: {exc.msg}") from None
    except (RecursionError, MemoryError):
        raise ExpressionError(
            f"expression nested too deeply for the parser: {text[:60]!r}..."
        ) from None
    except ValueError as exc:  # e.g. a NUL byte
        raise ExpressionError(f"cannot parse {text[:60]!r}: {exc}") from None


def _default_symbols() -> Mapping[str, sympy.Expr]:
    from .glossary import glossary

    return glossary().symbols


def parse(text: str, symbols: Mapping[str, sympy.Expr] | None = None) -> sympy.Expr:
    """Parse expression text into a SymPy expression through the allow-list.

    ``symbols`` maps the names that may appear to their SymPy symbols (the glossary's by default).
    """
    builder = _Builder(text, _default_symbols() if symbols is None else symbols)
    try:
        return builder.expr(_tree(text), 0)[0]
    except RecursionError:
        raise ExpressionError(f"expression too deeply nested: {text[:60]!r}...") from None


def parse_condition(text: str, symbols: Mapping[str, sympy.Expr] | None = None) -> sympy.Basic:
    """Parse a condition (comparisons joined by and/or/not) into a SymPy boolean."""
    builder = _Builder(text, _default_symbols() if symbols is None else symbols)
    try:
        return builder.condition(_tree(text), 0)
    except RecursionError:
        raise ExpressionError(f"expression too deeply nested: {text[:60]!r}...") from None
