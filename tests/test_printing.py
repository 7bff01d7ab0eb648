"""LaTeX of symbols: a name of several letters is set upright or as a subscript, never as a
product of one-letter variables (``$d_{model} vocab$`` reads d_model times v*o*c*a*b)."""

import re

import pytest
import sympy

import layercost_sym as lc
from layercost_sym.glossary import glossary
from layercost_sym.zoo import _spec


def _skip_group(text: str, start: int) -> int:
    """The index after the brace group opening at ``start`` (nested braces included)."""
    depth = 0
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return i + 1
    raise ValueError(f"unbalanced braces in {text!r}")


def bare_words(tex: str) -> list[str]:
    """Runs of two or more letters set as math italics: outside ``\\mathrm{}``/``\\text{}``
    (and ``\\operatorname{}``), outside a command name (``\\alpha``, ``\\frac``), an
    environment's name and column spec, and outside a subscript's braces (``C_{in}``)."""
    found = []
    i = 0
    word = ""
    while i < len(tex):
        c = tex[i]
        if c == "\\":
            name = re.match(r"\\([A-Za-z]+|.)", tex[i:])
            command = name.group(1)
            i += len(name.group(0))
            upright = ("mathrm", "text", "operatorname", "textrm", "begin", "end")
            if command in upright and tex[i : i + 1] == "{":
                i = _skip_group(tex, i)
                if command == "begin" and tex[i : i + 1] == "{":  # an array's column spec
                    i = _skip_group(tex, i)
        elif c == "_":
            i += 1
            i = _skip_group(tex, i) if tex[i : i + 1] == "{" else i + 1
        elif c.isalpha():
            word += c
            i += 1
            continue
        else:
            i += 1
        if len(word) >= 2:
            found.append(word)
        word = ""
    if len(word) >= 2:
        found.append(word)
    return found


@pytest.mark.parametrize(
    ("tex", "words"),
    [
        (r"d_{model} vocab", ["vocab"]),
        (r"d_{\mathrm{model}} \mathrm{vocab}", []),
        (r"C_{in} C_{out} N", []),
        (r"\frac{2 \alpha}{n_{head}} + \text{ok} ab", ["ab"]),
        (r"x_ab", []),  # x_a times b: one letter each
        (r"bi", ["bi"]),
        (r"\left\lfloor{\frac{H}{32}}\right\rfloor", []),
        (r"\operatorname{Max}{\left(8, a \right)}", []),
        (r"\mathrm{a}bc", ["bc"]),
        ("\\begin{array}{lll}\n\\text{part} & ab \\\\\n\\end{array}", ["ab"]),
    ],
)
def test_bare_words(tex, words):
    assert bare_words(tex) == words


def test_every_glossary_symbol_has_a_readable_name():
    for name, info in glossary().info.items():
        assert not bare_words(info.latex), (name, info.latex)
        assert not bare_words(lc.latex(info.symbol)), (name, lc.latex(info.symbol))


def test_every_zoo_hyperparameter_has_a_readable_name():
    for arch in lc.architectures():
        for h in _spec(arch).hyperparameters:
            if h.choices is None:
                symbol = lc.symbols(h.name, integer=h.integer)
                tex = lc.latex(symbol)
                assert not bare_words(tex), (arch, h.name, tex)


@pytest.mark.parametrize(
    ("name", "tex"),
    [
        ("vocab", r"\mathrm{vocab}"),
        ("d_model", r"d_{\mathrm{model}}"),
        ("n_kv_head", r"n_{\mathrm{kv\,head}}"),
        ("resolution", r"\mathrm{resolution}"),
        ("x", "x"),
        ("x_1", "x_{1}"),
        ("x2", "x_{2}"),
        ("alpha", r"\alpha"),
        ("alpha_i", r"\alpha_{i}"),
        ("d_k", "d_{k}"),
    ],
)
def test_names_of_symbols_outside_the_glossary(name, tex):
    assert lc.latex(sympy.Symbol(name, positive=True)) == tex


def test_an_expression_in_zoo_symbols_reads_as_the_names():
    d_model, vocab, n_layer = lc.symbols("d_model vocab n_layer")
    tex = lc.latex(d_model * vocab + 12 * n_layer * d_model**2)
    assert not bare_words(tex), tex
    assert r"d_{\mathrm{model}}^{2}" in tex and r"\mathrm{vocab}" in tex
    gpt = lc.architecture("gpt")
    assert not bare_words(gpt.to_latex("exact", math=True)), "architecture table"
    assert not bare_words(lc.latex(gpt.cost("torch")))
