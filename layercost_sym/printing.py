"""LaTeX printing and simplification with the glossary's symbol names.

>>> import layercost_sym as lc
>>> lc.latex(lc.rule("Linear").cost("macs"))
'C_{in} C_{out} N'
"""

from __future__ import annotations

import sympy

from .conventions import DEFAULT_CONVENTION
from .glossary import glossary
from .parsing import parse
from .rule import Rule

__all__ = ["latex", "simplify"]


def _latex(expr: sympy.Basic) -> str:
    return sympy.latex(expr, symbol_names=glossary().latex_names)


def latex(
    obj: sympy.Basic | Rule | str, convention: str = DEFAULT_CONVENTION, training: bool = False
) -> str:
    """LaTeX for an expression, expression text, or a whole rule.

    A rule prints as an ``aligned`` block: its defined quantities (``H_{out} = ...``), then its
    parameters and its cost under ``convention``, written with those quantities.
    """
    if isinstance(obj, Rule):
        mode = ", training" if training else ""
        lines = [f"{_latex(s)} &= {_latex(e)}" for s, e in obj.defines.items()]
        lines.append(rf"\mathrm{{params}} &= {_latex(obj.compact_params)}")
        lines.append(
            rf"\mathrm{{FLOPs}}_{{\mathrm{{{convention}}}{mode}}} &= "
            f"{_latex(obj.compact_cost(convention, training))}"
        )
        return "\\begin{aligned}\n" + " \\\\\n".join(lines) + "\n\\end{aligned}"
    if isinstance(obj, str):
        obj = parse(obj)
    return _latex(obj)


def simplify(expr: sympy.Basic | str) -> sympy.Expr:
    """SymPy's ``simplify`` (text is parsed safely first).

    >>> import layercost_sym as lc
    >>> lc.simplify("N*C_out*(2*C_in - 1 + 1)")
    2*C_in*C_out*N
    """
    if isinstance(expr, str):
        expr = parse(expr)
    return sympy.simplify(expr)
