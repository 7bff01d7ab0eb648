r"""Tables for papers and notebooks: one model, rendered as LaTeX, HTML and a pandas frame.

A :class:`Table` is rows of a name, a formula per column and, at stated sizes (``at``), the
formula's exact value there (by :func:`~layercost_sym.evaluate`, the domain checked first: a
size outside it is refused, never tabulated).  Costs, rules, model analyses and comparisons
build one (:func:`cost_table`, :func:`rule_table`, :func:`analysis_table`,
:func:`comparison_table`) and render it three ways: :meth:`Table.to_latex` (a ``table`` float in
``booktabs`` style, the convention and the sizes in its caption, symbols typeset as the glossary
writes them; ``math=True``: an ``array`` for MathJax), :meth:`Table.to_html` (what Jupyter shows)
and :meth:`Table.to_pandas`.  :func:`labelled_sweep` is :func:`~layercost_sym.sweep` as an
``xarray.DataArray`` whose dimensions are the swept symbols.  pandas and xarray are imported
only by the functions that need them (the ``notebook`` extra).

>>> import layercost_sym as lc
>>> d = lc.symbols("d")
>>> t = cost_table(lc.rule("Linear").at(C_in=d, C_out=d, N=1, b=0, name="proj"), "macs",
...                at={"d": 768})
>>> [(r.name, r.values) for r in t.rows]  # params and macs at d = 768: 768**2 = 589824
[('proj', (589824, 589824)), ('total', (589824, 589824))]
>>> print(t.to_latex())  # doctest: +ELLIPSIS
\begin{table}[htbp]
\centering
\caption{Parameters and FLOPs per part. FLOPs under the convention \texttt{macs}: ...}
\begin{tabular}{lllll}
\toprule
 & \multicolumn{2}{c}{params} & \multicolumn{2}{c}{FLOPs (macs)} \\
\cmidrule(lr){2-3} \cmidrule(lr){4-5}
part & formula & value & formula & value \\
\midrule
proj & $d^{2}$ & $589\,824$ & $d^{2}$ & $589\,824$ \\
\midrule
total & $d^{2}$ & $589\,824$ & $d^{2}$ & $589\,824$ \\
\bottomrule
\end{tabular}
\end{table}
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sympy

from .domain import Domain
from .errors import EvaluationError
from .evaluation import evaluate, sweep
from .glossary import glossary
from .parsing import parse
from .printing import latex
from .quantities import quantity as _quantity
from .text import collected

__all__ = [
    "Row",
    "Table",
    "analysis_table",
    "comparison_table",
    "cost_table",
    "labelled_sweep",
    "rule_table",
]


@dataclass(frozen=True)
class Row:
    """One row: its name, a formula per column, and their exact values at the table's sizes
    (None without sizes).  ``name_latex`` typesets the name where it is a symbol (``H_out``)."""

    name: str
    formulas: tuple[sympy.Expr, ...]
    values: tuple[int, ...] | None = None
    name_latex: str = ""


@dataclass(frozen=True)
class Table:
    """Rows of name / formulas / values (see the module docstring).

    ``key`` heads the names' column (``part``, ``layer``, ``convention``, ``quantity``);
    ``columns`` head the formula columns; the last ``totals`` rows are totals, set off by a
    rule; ``description`` opens the caption, ``convention`` (a FLOPs convention) and ``at`` (the
    sizes, in the order given) follow it.
    """

    key: str
    columns: tuple[str, ...]
    rows: tuple[Row, ...]
    at: Mapping[str, int] | None = None
    description: str = ""
    convention: str | None = None
    totals: int = 0
    names_as_code: bool = False  # module paths: \texttt in LaTeX, <code> in HTML

    # -- captions ------------------------------------------------------------------------------
    def caption(self, *, tex: bool = True) -> str:
        """The caption: the description, the convention and its meaning, the sizes."""
        esc = _tex_escape if tex else (lambda s: s)
        parts = [esc(self.description).rstrip(".") + "."] if self.description else []
        if self.convention is not None:
            meaning = _quantity("flops").conventions[self.convention].meaning
            name = rf"\texttt{{{self.convention}}}" if tex else self.convention
            parts.append(f"FLOPs under the convention {name}: {esc(meaning)}.")
        if self.at:
            if tex:
                sizes = ", ".join(f"${_symbol_tex(k)} = {_int_tex(v)}$" for k, v in self.at.items())
            else:
                sizes = ", ".join(f"{k} = {v}" for k, v in self.at.items())
            parts.append(f"Values at {sizes}.")
        return " ".join(parts)

    # -- LaTeX --------------------------------------------------------------------------------
    def to_latex(self, *, math: bool = False, label: str | None = None) -> str:
        r"""A ``table`` float in ``booktabs`` style (``\usepackage{booktabs}`` and ``amsmath``)
        with the caption of :meth:`caption` and ``\label{label}``; ``math=True``: the same rows
        as an ``array`` for math mode (MathJax, which has no ``tabular``), without caption."""
        if math:
            return self._array()
        valued = self.at is not None
        width = 1 + len(self.columns) * (2 if valued else 1)
        lines = [r"\begin{table}[htbp]", r"\centering", rf"\caption{{{self.caption()}}}"]
        if label is not None:
            lines.append(rf"\label{{{label}}}")
        lines += [rf"\begin{{tabular}}{{{'l' * width}}}", r"\toprule"]
        if valued:
            spans = [rf"\multicolumn{{2}}{{c}}{{{_tex_escape(c)}}}" for c in self.columns]
            lines.append(" & ".join(["", *spans]) + r" \\")
            lines.append(
                " ".join(rf"\cmidrule(lr){{{2 + 2 * i}-{3 + 2 * i}}}" for i in range(len(spans)))
            )
            head = [self.key, *(["formula", "value"] * len(self.columns))]
        else:
            head = [self.key, *self.columns]
        lines += [" & ".join(map(_tex_escape, head)) + r" \\", r"\midrule"]
        for i, row in enumerate(self.rows):
            if self.totals and i == len(self.rows) - self.totals:
                lines.append(r"\midrule")
            cells = [self._name_tex(row)]
            for j, formula in enumerate(row.formulas):
                cells.append(f"${latex(formula)}$")
                if valued and row.values is not None:
                    cells.append(f"${_int_tex(row.values[j])}$")
            lines.append(" & ".join(cells) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
        return "\n".join(lines)

    def _name_tex(self, row: Row) -> str:
        if row.name_latex:
            return f"${row.name_latex}$"
        name = _tex_escape(row.name)
        return rf"\texttt{{{name}}}" if self.names_as_code and row.name != "total" else name

    def _array(self) -> str:
        valued = self.at is not None
        head = [self.key]
        for c in self.columns:
            head += [c, "value"] if valued else [c]
        lines = [
            rf"\begin{{array}}{{{'l' * len(head)}}}",
            " & ".join(rf"\text{{{_tex_escape(h)}}}" for h in head) + r" \\ \hline",
        ]
        for i, row in enumerate(self.rows):
            if self.totals and i == len(self.rows) - self.totals:
                lines.append(r"\hline")
            name = row.name_latex or rf"\text{{{_tex_escape(row.name)}}}"
            cells = [name]
            for j, formula in enumerate(row.formulas):
                cells.append(latex(formula))
                if valued and row.values is not None:
                    cells.append(_int_tex(row.values[j]))
            end = "" if i == len(self.rows) - 1 else r" \\"
            lines.append(" & ".join(cells) + end)
        lines.append(r"\end{array}")
        return "\n".join(lines)

    def _repr_latex_(self) -> str:
        return "$" + self._array() + "$"

    # -- HTML and pandas ---------------------------------------------------------------------
    def to_html(self) -> str:
        """An HTML ``<table>``: formulas as readable text, like terms collected
        (:func:`layercost_sym.text.collected`), values as exact decimal integers, the caption
        as text."""
        valued = self.at is not None
        head = [self.key]
        for c in self.columns:
            head += [c, "value"] if valued else [c]
        out = [
            '<table class="layercost">',
            f"<caption>{html.escape(self.caption(tex=False))}</caption>",
        ]
        out.append("<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head))
        out.append("</tr></thead><tbody>")
        for i, row in enumerate(self.rows):
            total = self.totals and i >= len(self.rows) - self.totals
            name = html.escape(row.name)
            if self.names_as_code and not total:
                name = f"<code>{name}</code>"
            cells = [f"<th>{name}</th>"]
            for j, formula in enumerate(row.formulas):
                cells.append(f"<td><code>{html.escape(_text(formula))}</code></td>")
                if valued and row.values is not None:
                    cells.append(f'<td style="text-align:right">{row.values[j]}</td>')
            style = ' style="border-top:1px solid"' if total else ""
            out.append(f"<tr{style}>" + "".join(cells) + "</tr>")
        out.append("</tbody></table>")
        return "\n".join(out)

    def _repr_html_(self) -> str:
        return self.to_html()

    def to_pandas(self) -> Any:
        """A ``pandas.DataFrame``: one row per row (indexed by name), columns
        ``(column, "formula")`` (SymPy expressions) and, with sizes, ``(column, "value")``
        (``int64`` where every value fits, else exact Python ints)."""
        import numpy as np
        import pandas as pd

        data: dict[tuple[str, str], Any] = {}
        for j, c in enumerate(self.columns):
            data[(c, "formula")] = [row.formulas[j] for row in self.rows]
            if self.at is not None:
                values = [row.values[j] if row.values is not None else None for row in self.rows]
                fits = all(v is not None and abs(v) < 2**63 for v in values)
                data[(c, "value")] = np.array(values, dtype=np.int64 if fits else object)
        index = pd.Index([row.name for row in self.rows], name=self.key)
        return pd.DataFrame(data, index=index)


# -- building tables ------------------------------------------------------------------------------
def make_table(
    key: str,
    columns: Sequence[str],
    rows: Iterable[tuple[Any, ...]],
    *,
    at: Mapping[str, Any] | None = None,
    domain: Domain | None = None,
    **options: Any,
) -> Table:
    """A :class:`Table` of ``(name, formulas[, name_latex[, evaluated]])`` rows: each formula
    (or, where given, the expression of ``evaluated`` in its place: a formula shown in the
    catalogue's compact form, valued in its expanded one) valued at ``at`` by
    :func:`~layercost_sym.evaluate` with ``domain`` checked (a
    :class:`~layercost_sym.DomainError` names a size outside it)."""
    sizes = None if at is None else {str(k): _size(k, v) for k, v in at.items()}
    made = []
    for name, formulas, *rest in rows:
        # text through the safe parser, never sympify
        exprs = tuple(parse(f) if isinstance(f, str) else sympy.sympify(f) for f in formulas)
        if len(exprs) != len(columns):
            raise EvaluationError(f"row {name!r} has {len(exprs)} formulas for {len(columns)}")
        values = None
        if sizes is not None:
            valued = rest[1] if len(rest) > 1 else exprs
            values = tuple(int(evaluate(e, sizes, domain=domain)) for e in valued)
        made.append(Row(name, exprs, values, rest[0] if rest else ""))
    return Table(key, tuple(columns), tuple(made), sizes, **options)


def _cost_convention(cost: Any, convention: str | None) -> str:
    """``convention`` checked; None: the FLOPs default where every part states it, else the
    first convention they all state (what a notebook shows)."""
    if convention is not None:
        return _quantity("flops").convention(convention)
    default = _quantity("flops").default
    known = cost.conventions
    return default if default in known or not known else known[0]


def cost_table(
    cost: Any,
    convention: str | None = None,
    *,
    at: Mapping[str, Any] | None = None,
    description: str = "Parameters and FLOPs per part",
) -> Table:
    """Parts of a :class:`~layercost_sym.Cost` (or an architecture) and their total: params
    and FLOPs under ``convention``, valued at ``at`` (the cost's domain checked)."""
    convention = _cost_convention(cost, convention)
    rows = [(name, (p, c)) for name, (p, c) in cost.breakdown(convention).items()]
    rows.append(("total", (cost.params, cost.cost(convention))))
    columns = ("params", f"FLOPs ({convention})")
    return make_table(
        "part",
        columns,
        rows,
        at=at,
        domain=cost.domain,
        description=description,
        convention=convention,
        totals=1,
    )


def rule_table(
    rule: Any,
    *,
    at: Mapping[str, Any] | None = None,
    training: bool = False,
    quantities: Sequence[str] | None = None,
) -> Table:
    """A rule's defined quantities (``H_out``, ...), then each of ``quantities`` (None: every
    one) under every convention it states, as the catalogue writes them (the defined quantities
    as symbols; a convention that only repeats the one it falls back to is left out); valued
    at ``at`` (its domain checked; every symbol the rows use must be given: ``bytes`` needs the
    element sizes ``e_a``, ``e_w``)."""
    rows: list[tuple[Any, ...]] = []
    expanded = rule.expanded_defines
    for symbol, expr in rule.defines.items():
        rows.append((symbol.name, (expr,), latex(symbol), (expanded[symbol],)))
    for q, c, mode in rule.compact:
        chosen = quantities is None or q in quantities
        if chosen and mode == (bool(training) and _quantity(q).training):
            written = rule.compact_quantity(q, c, training)
            other = _quantity(q).otherwise.get(c)  # useful where nothing is masked: exact's row
            if other is not None and written == rule.compact.get((q, other, mode)):
                continue
            rows.append((f"{q} ({c})", (written,), "", (rule.quantity(q, c, training),)))
    return make_table(
        "quantity",
        (rule.name,),
        rows,
        at=at,
        domain=rule.domain(training),
        description=f"Rule {rule.name} ({rule.source})" + (", training" if training else ""),
    )


def analysis_table(
    analysis: Any,
    depth: int | None = 1,
    convention: str | None = None,
    *,
    at: Mapping[str, Any] | None = None,
    description: str = "Parameters and FLOPs per layer of the analysed model",
) -> Table:
    """Rows of an analysis (per module prefix of ``depth`` parts) and its total, valued at
    ``at`` after the analysis' guards are checked."""
    convention = convention or analysis.convention
    if at is not None:
        analysis.check(at)
    rows = [(name, (p, c)) for name, _rules, p, c in analysis.rows(depth, convention)]
    rows.append(("total", (analysis.params, analysis.cost(convention))))
    columns = ("params", f"FLOPs ({convention})")
    return make_table(
        "layer",
        columns,
        rows,
        at=at,
        domain=analysis.domain,
        description=description,
        convention=convention,
        totals=1,
        names_as_code=True,
    )


def comparison_table(
    comparison: Any,
    *,
    at: Mapping[str, Any] | None = None,
    description: str = "FLOPs of the model under each convention",
) -> Table:
    """One row per convention of a comparison: the model's total FLOPs under it, valued at
    ``at`` (default: the comparison's own sizes) after the guards are checked."""
    sizes = at if at is not None else comparison.at
    analysis = comparison.analysis
    if sizes is not None:
        analysis.check(sizes)
    rows = [(c, (e,)) for c, e in comparison.totals.items()]
    return make_table(
        "convention", ("FLOPs",), rows, at=sizes, domain=analysis.domain, description=description
    )


# -- labelled sweeps -----------------------------------------------------------------------------
def labelled_sweep(
    expr: sympy.Basic | str,
    /,
    *,
    invalid: str = "raise",
    domain: Domain | None = None,
    name: str | None = None,
    **axes: Any,
) -> Any:
    """:func:`~layercost_sym.sweep` as an ``xarray.DataArray``: one dimension per swept symbol
    (in the order given) with the swept values as its coordinate, the symbols held fixed as
    scalar coordinates, so that ``labelled_sweep(expr, H=range(32, 300), W=224).plot()`` draws
    the formula against ``H``.

    Values are exact, as :func:`~layercost_sym.sweep` gives them: ``int64`` where no overflow
    is possible, else Python ints (``object``).  ``invalid="mask"``: points outside the domain
    hold None (an ``object`` array: no invalid point is given a number, not even 0) and the
    boolean coordinate ``valid`` (over the swept dimensions) is False there.  ``.plot()`` draws
    ``int64`` values; an ``object`` array draws with ``.astype(float).plot()`` (invalid points
    become gaps; floats for drawing only).  ``name`` names the values (the expression's text
    when short).

    >>> import layercost_sym as lc
    >>> da = lc.labelled_sweep("H*W*C_in", H=range(1, 4), W=[10, 20], C_in=3)
    >>> da.dims, da.sel(H=2, W=20).item(), int(da.C_in)
    (('H', 'W'), 120, 3)
    >>> conv = lc.rule("Conv2d").cost("macs")
    >>> fixed = dict(N=1, C_in=4, C_out=4, s=1, p=0, d=1, g=1, W=4)
    >>> m = lc.labelled_sweep(conv, k=[1, 3, 5], H=[3, 4], invalid="mask", **fixed)
    >>> m.values.tolist(), m.valid.values.tolist()  # k = 5 does not fit a 3- or 4-pixel input
    ([[192, 256], [288, 576], [None, None]], [[True, True], [True, True], [False, False]])
    """
    import numpy as np
    import xarray as xr

    result = sweep(expr, invalid=invalid, domain=domain, **axes)
    swept = [k for k, v in axes.items() if not isinstance(v, int | np.integer)]
    coords: dict[str, Any] = {
        k: np.asarray(list(v) if isinstance(v, range) else v) for k, v in axes.items() if k in swept
    }
    coords.update({k: int(v) for k, v in axes.items() if k not in swept})
    data = np.asarray(result)
    if isinstance(result, np.ma.MaskedArray):
        valid = ~np.ma.getmaskarray(result)
        coords["valid"] = (swept, valid)
        data = np.asarray(result.data).astype(object)
        data[~valid] = None
    if name is None:
        text = expr if isinstance(expr, str) else sympy.sstr(expr)
        name = text if len(text) <= 40 else "value"
    return xr.DataArray(data, dims=swept, coords=coords, name=name)


# -- text helpers -------------------------------------------------------------------------------
_TEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
}


def _tex_escape(text: str) -> str:
    """Text safe in LaTeX's text mode."""
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in text)


def _symbol_tex(name: str) -> str:
    """A size's name as the glossary typesets it (others as :func:`printing.symbol_latex`)."""
    symbol = glossary().symbols.get(name)
    return latex(symbol if symbol is not None else sympy.Symbol(name))


def _int_tex(value: int) -> str:
    r"""An exact integer with thin spaces between groups of three digits (``589\,824``)."""
    sign, digits = ("-", str(-value)) if value < 0 else ("", str(value))
    groups = [digits[max(i - 3, 0) : i] for i in range(len(digits), 0, -3)][::-1]
    return sign + r"\,".join(groups)


def _size(key: Any, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | sympy.Integer):
        if type(value).__module__ != "numpy" or not hasattr(value, "__index__"):
            raise EvaluationError(f"size {key} must be an int, got {value!r}")
    return int(value)


def _text(expr: sympy.Expr) -> str:
    """An expression as readable text, like terms collected (a number as it is)."""
    return str(expr) if expr.is_number else collected(expr)
