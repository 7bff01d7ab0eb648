"""Converting torch's symbolic-shape expressions into layercost_sym's SymPy.

Torch's ``ShapeEnv`` names the dynamic sizes of a traced input ``s0, s1, ...`` and writes size
arithmetic with its own SymPy functions (``FloorDiv``, ``CleanDiv``, ``PythonMod``, ...).
:func:`to_sympy` rewrites such an expression over the user's glossary symbols with plain SymPy
(``floor``, ``Mod``, ``ceiling``, ``Max``, ``Min``), which :func:`layercost_sym.evaluate` reads.
"""

from __future__ import annotations

from collections.abc import Mapping

import sympy

from ..errors import ShapeError

__all__ = ["to_sympy"]


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
