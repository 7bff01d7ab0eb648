r"""LaTeX printing and simplification with the glossary's symbol names.

Glossary symbols print as the glossary's ``latex`` field; any other symbol (a hyperparameter
made by ``lc.symbols``) by :func:`symbol_latex`, which sets names of several letters upright.

>>> import layercost_sym as lc
>>> lc.latex(lc.rule("Linear").cost("macs"))
'C_{in} C_{out} N'
>>> d_model, vocab = lc.symbols("d_model vocab")
>>> lc.latex(d_model * vocab)
'd_{\\mathrm{model}} \\mathrm{vocab}'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sympy
from sympy.printing.conventions import split_super_sub
from sympy.printing.latex import translate

from .glossary import glossary
from .parsing import parse
from .quantities import quantity

if TYPE_CHECKING:  # printing knows rules by what they offer, not by import (no import cycle)
    from .rule import Rule

__all__ = ["latex", "simplify", "symbol_latex"]


def _word(word: str) -> str:
    r"""One piece of a symbol's name: a Greek letter or accent as SymPy sets it (``alpha`` ->
    ``\alpha``), a letter or a number as is, a longer word upright (``\mathrm{model}``)."""
    translated = translate(word)
    if translated != word or len(word) <= 1 or word.isdigit():
        return translated
    escaped = word.replace("_", r"\_")
    return rf"\mathrm{{{escaped}}}"


def _words(words: list[str]) -> str:
    r"""Subscript pieces (``kv``, ``head``): one upright run ``\mathrm{kv\,head}`` when all
    are words, else each piece as :func:`_word` sets it."""
    words = [w for w in words if w]
    if all(_word(w).startswith(r"\mathrm{") for w in words):
        return r"\mathrm{" + r"\,".join(w.replace("_", r"\_") for w in words) + "}"
    return " ".join(map(_word, words))


def symbol_latex(name: str) -> str:
    r"""LaTeX for a symbol outside the glossary (a hyperparameter such as ``d_model``): SymPy's
    reading of the name (``head_sub``, a trailing number as a subscript, Greek letters), with
    every piece of two or more letters upright, so that no name reads as a product of
    one-letter variables.

    >>> symbol_latex("vocab"), symbol_latex("d_model"), symbol_latex("n_kv_head")
    ('\\mathrm{vocab}', 'd_{\\mathrm{model}}', 'n_{\\mathrm{kv\\,head}}')
    >>> symbol_latex("alpha"), symbol_latex("x2"), symbol_latex("L_1")
    ('\\alpha', 'x_{2}', 'L_{1}')
    """
    head, supers, subs = split_super_sub(name)
    tex = _word(head)
    if any(subs):
        tex += "_{" + _words(subs) + "}"
    if any(supers):
        tex += "^{" + _words(supers) + "}"
    return tex


def _latex(expr: sympy.Basic) -> str:
    g = glossary()
    names = {}
    for s in expr.atoms(sympy.Symbol):
        info = g.by_symbol(s)
        names[s] = info.latex if info is not None else symbol_latex(s.name)
    return sympy.latex(expr, symbol_names=names)


def latex(
    obj: sympy.Basic | Rule | str, convention: str | None = None, training: bool = False
) -> str:
    """LaTeX for an expression, expression text, or a whole rule.

    A rule prints as an ``aligned`` block: its defined quantities (``H_{out} = ...``), then its
    parameters and its FLOPs under ``convention`` (None: ``exact``), written with those
    quantities.
    """
    if not isinstance(obj, str | sympy.Basic) and _is_rule(obj):
        mode = ", training" if training else ""
        name = quantity("flops").convention(convention)
        lines = [f"{_latex(s)} &= {_latex(e)}" for s, e in obj.defines.items()]
        lines.append(rf"\mathrm{{params}} &= {_latex(obj.compact_quantity('params'))}")
        lines.append(
            rf"\mathrm{{FLOPs}}_{{\mathrm{{{name}}}{mode}}} &= "
            f"{_latex(obj.compact_quantity('flops', convention, training))}"
        )
        return "\\begin{aligned}\n" + " \\\\\n".join(lines) + "\n\\end{aligned}"
    if isinstance(obj, str):
        obj = parse(obj)
    return _latex(obj)


def _is_rule(obj: Any) -> bool:
    return hasattr(obj, "compact_quantity") and hasattr(obj, "defines")


def simplify(expr: sympy.Basic | str) -> sympy.Expr:
    """SymPy's ``simplify`` (text is parsed safely first).

    >>> import layercost_sym as lc
    >>> lc.simplify("N*C_out*(2*C_in - 1 + 1)")
    2*C_in*C_out*N
    """
    if isinstance(expr, str):
        expr = parse(expr)
    return sympy.simplify(expr)
