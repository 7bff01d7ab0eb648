"""Tables for papers and notebooks (layercost_sym.tables): the booktabs LaTeX compiles with
pdflatex, the HTML and pandas renderings hold the values lc.evaluate gives, rich display is
there for rules, costs, analyses and comparisons, and labelled sweeps equal lc.sweep."""

from __future__ import annotations

import shutil
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest
import sympy
import torch

import layercost_sym as lc
from layercost_sym.tables import comparison_table, cost_table, rule_table

SMALL_GPT = {"d_model": 64, "n_layer": 2, "n_head": 4, "d_ff": 256, "vocab": 100, "n_ctx": 16}
GPT_AT = {**SMALL_GPT, "N": 3}


@pytest.fixture(scope="module")
def gpt():
    return lc.architecture("gpt")


@pytest.fixture(scope="module")
def comparison():
    # a small CNN traced once in symbolic N, H, W: its analysis and its comparison
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 10),
    )
    return lc.compare(net, ("N", 3, "H", "W"), conventions=("exact", "macs", "torch"))


AT = {"N": 2, "H": 33, "W": 40}


class _Cells(HTMLParser):
    """Rows of an HTML table as lists of cell texts (th and td alike)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.caption = ""
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.rows[-1].append("")
            self._in = "cell"
        elif tag == "caption":
            self._in = "caption"

    def handle_endtag(self, tag):
        if tag in ("td", "th", "caption"):
            self._in = None

    def handle_data(self, data):
        if self._in == "cell":
            self.rows[-1][-1] += data
        elif self._in == "caption":
            self.caption += data


def cells(html: str) -> _Cells:
    parser = _Cells()
    parser.feed(html)
    return parser


# -- values ----------------------------------------------------------------------------------------
def test_values_by_hand():
    d, B = lc.symbols("d B")
    up = lc.rule("Linear").at(C_in=d, C_out=4 * d, N=B, b=1, name="up")
    table = cost_table(up, "macs", at={"d": 8, "B": 2})
    # params 8*32 + 32 = 288; macs 2*8*32 = 512
    assert [r.values for r in table.rows] == [(288, 512), (288, 512)]


def test_cost_html_holds_what_evaluate_gives(gpt):
    table = cost_table(gpt, "torch", at=GPT_AT)
    parsed = cells(table.to_html())
    header, *rows = parsed.rows
    assert header == ["part", "params", "value", "FLOPs (torch)", "value"]
    expected = [*gpt.breakdown("torch").items(), ("total", (gpt.params, gpt.cost("torch")))]
    symbols = {s.name: s for s in gpt.free_symbols}
    assert [r[0] for r in rows] == [name for name, _ in expected]
    for row, (_, (params, flops)) in zip(rows, expected, strict=True):
        assert int(row[2]) == lc.evaluate(params, GPT_AT)
        assert int(row[4]) == lc.evaluate(flops, GPT_AT)
        # the formula cells are text the parser reads back to the same values
        assert lc.evaluate(lc.parse(row[1], symbols), GPT_AT) == int(row[2])
        assert lc.evaluate(lc.parse(row[3], symbols), GPT_AT) == int(row[4])
    assert "convention torch" in parsed.caption and "d_model = 64" in parsed.caption


def test_cost_frame_holds_what_evaluate_gives(gpt):
    frame = gpt.to_pandas("macs", at=GPT_AT)
    assert list(frame.index) == [*gpt.breakdown("macs"), "total"]
    assert frame.loc["total", ("params", "value")] == lc.evaluate(gpt.params, GPT_AT)
    for name, (params, macs) in gpt.breakdown("macs").items():
        assert frame.loc[name, ("params", "value")] == lc.evaluate(params, GPT_AT)
        assert frame.loc[name, ("FLOPs (macs)", "value")] == lc.evaluate(macs, GPT_AT)
        assert frame.loc[name, ("FLOPs (macs)", "formula")] == macs
    assert frame[("params", "value")].dtype == np.int64
    symbolic = gpt.to_pandas("macs")
    assert list(symbolic.columns) == [("params", "formula"), ("FLOPs (macs)", "formula")]


def test_values_beyond_int64_stay_exact():
    n = lc.symbols("n")
    big = lc.rule("Linear").at(C_in=n, C_out=n, N=n, b=0)
    frame = big.to_pandas("macs", at={"n": 2**22})
    assert frame.loc["total", ("FLOPs (macs)", "value")] == 2**66  # n**3
    assert frame[("FLOPs (macs)", "value")].dtype == object


def test_sizes_outside_the_domain_are_refused():
    conv = lc.rule("Conv2d").at(N=1, C_in=3, C_out=8, s=1, p=0, d=1, g=1, b=1, W=8)
    with pytest.raises(lc.DomainError, match="H_out >= 1"):
        cost_table(conv, "macs", at={"k": 3, "H": 2})
    with pytest.raises(lc.MissingSymbolError):
        cost_table(conv, "macs", at={"k": 3})
    with pytest.raises(lc.EvaluationError, match="must be an int"):
        cost_table(conv, "macs", at={"k": 3, "H": 2.5})


# -- LaTeX -----------------------------------------------------------------------------------------
def test_latex_is_booktabs_with_the_convention_and_sizes_in_the_caption(gpt):
    text = gpt.to_latex("torch", at=GPT_AT, caption="GPT-2, small", label="tab:gpt")
    lines = text.splitlines()
    assert lines[:2] == [r"\begin{table}[htbp]", r"\centering"]
    assert lines[-3:] == [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    caption = lines[2]
    assert caption.startswith(r"\caption{GPT-2, small. FLOPs under the convention \texttt{torch}")
    # sizes typeset from the glossary (N) and as names of several letters (d_model)
    assert r"$d_{\mathrm{model}} = 64$" in caption and "$N = 3$" in caption
    assert r"\label{tab:gpt}" in lines
    assert text.count(r"\toprule") == 1 and text.count(r"\midrule") == 2
    assert r"\hline" not in text
    rows = [line for line in lines if line.endswith(r"\\")][2:]  # after the two header lines
    names = [*gpt.breakdown("torch"), "total"]
    assert [r.split(" & ")[0] for r in rows] == [n.replace("_", r"\_") for n in names]
    total = rows[-1].split(" & ")
    # 1\,234 groups: the value cells read back as the exact totals
    assert int(total[2].strip("$").replace(r"\,", "")) == lc.evaluate(gpt.params, GPT_AT)
    flops = total[4].removesuffix(r" \\").strip("$").replace(r"\,", "")
    assert int(flops) == lc.evaluate(gpt.cost("torch"), GPT_AT)


def test_pdflatex_compiles_the_tables(tmp_path, gpt, comparison):
    assert shutil.which("pdflatex"), "pdflatex is needed (.ci/run installs it)"
    tables = [
        gpt.to_latex("torch", at=GPT_AT, caption="GPT-2 at small sizes", label="tab:gpt"),
        comparison.analysis.to_latex(at=AT, caption="A small CNN, per layer"),
        comparison.to_latex(AT, caption="A small CNN: conventions & values"),
        rule_table(lc.rule("Conv2d")).to_latex(),
    ]
    document = "\n".join(
        [
            r"\documentclass{article}",
            r"\usepackage{booktabs}",
            r"\usepackage{amsmath}",
            r"\begin{document}",
            *tables,
            r"\end{document}",
        ]
    )
    (tmp_path / "tables.tex").write_text(document)
    done = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "tables.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert (tmp_path / "tables.pdf").stat().st_size > 0
    assert "Undefined control sequence" not in done.stdout


# -- analyses and comparisons ----------------------------------------------------------------------
def test_analysis_table_values(comparison):
    analysis = comparison.analysis
    frame = analysis.to_pandas(at=AT)
    rows = analysis.rows(1, "exact")
    assert list(frame.index) == [*(r[0] for r in rows), "total"]
    for name, _rules, params, cost in rows:
        assert frame.loc[name, ("params", "value")] == lc.evaluate(params, AT)
        assert frame.loc[name, ("FLOPs (exact)", "value")] == lc.evaluate(cost, AT)
    assert frame.loc["total", ("FLOPs (exact)", "value")] == analysis.evaluate(AT, "exact")
    header, *body = cells(analysis._repr_html_()).rows
    assert header == ["layer", "params", "FLOPs (exact)"] and body[-1][0] == "total"
    assert analysis._repr_latex_().startswith(r"$\begin{array}")
    with pytest.raises(lc.DomainError):  # a 2-pixel input: the 3x3 kernel does not fit
        analysis.to_latex(at={"N": 1, "H": 2, "W": 2})


def test_comparison_table_values(comparison):
    frame = comparison.to_pandas(AT)
    assert list(frame.index) == ["exact", "macs", "torch"]
    for convention in ("exact", "macs", "torch"):
        assert frame.loc[convention, ("FLOPs", "value")] == lc.evaluate(
            comparison.analysis.cost(convention), AT
        )
    assert frame.loc["torch", ("FLOPs", "value")] == 2 * frame.loc["macs", ("FLOPs", "value")]
    _, *body = cells(comparison_table(comparison, at=AT).to_html()).rows
    assert [b[0] for b in body] == ["exact", "macs", "torch"]
    assert [int(b[2]) for b in body] == list(frame[("FLOPs", "value")])
    assert comparison._repr_html_().startswith('<table class="layercost">')
    assert r"\text{convention}" in comparison._repr_latex_()


# -- rules and rich display ------------------------------------------------------------------------
def test_rule_display_and_frame():
    rule = lc.rule("Conv2d")
    at = dict(N=1, C_in=3, C_out=64, k=7, s=2, p=3, d=1, g=1, b=0, H=224, W=224)
    frame = rule.to_pandas(at=at, quantities=["params", "flops"])
    assert frame.loc["H_out", ("Conv2d", "value")] == 112  # (224 + 6 - 7) // 2 + 1
    assert frame.loc["flops (macs)", ("Conv2d", "value")] == 118013952  # 64*112*112*3*49
    # shown as the catalogue writes it (H_out a symbol), valued in its expanded form
    assert frame.loc["flops (macs)", ("Conv2d", "formula")] == rule.compact_cost("macs")
    # every convention but useful, which repeats exact here (nothing masked) and is left out
    assert "flops (useful)" not in frame.index
    for convention in set(rule.conventions) - {"useful"}:
        assert frame.loc[f"flops ({convention})", ("Conv2d", "value")] == lc.evaluate(
            rule.cost(convention), at
        )
    html = rule._repr_html_()
    names = [row[0] for row in cells(html).rows[1:]]
    assert names[:2] == ["H_out", "W_out"] and "params (count)" in names
    assert rule._repr_latex_() == "$" + lc.latex(rule) + "$"
    with pytest.raises(lc.MissingSymbolError, match="e_a"):  # bytes: the element sizes
        rule.to_pandas(at=at)


def test_rich_display_of_costs(gpt):
    assert gpt._repr_latex_().startswith(r"$\begin{array}")
    parsed = cells(gpt._repr_html_())
    assert parsed.rows[0] == ["part", "params", "FLOPs (exact)"]
    assert len(parsed.rows) == len(gpt.breakdown("exact")) + 2  # header, parts, total


# -- labelled sweeps -------------------------------------------------------------------------------
def test_labelled_sweep_equals_sweep():
    macs = lc.rule("Conv2d").cost("macs")
    fixed = dict(N=1, C_in=3, C_out=8, k=3, s=2, p=1, d=1, g=1)
    axes = dict(H=range(8, 40, 7), W=[16, 32, 64])
    da = lc.labelled_sweep(macs, **axes, **fixed)
    plain = lc.sweep(macs, **axes, **fixed)
    assert da.dims == ("H", "W") and da.dtype == np.int64
    assert da.coords["H"].values.tolist() == list(axes["H"])
    assert da.coords["W"].values.tolist() == axes["W"]
    assert int(da.coords["k"]) == 3 and "valid" not in da.coords
    assert (da.values == plain).all()
    assert da.sel(H=15, W=32).item() == lc.evaluate(macs, {**fixed, "H": 15, "W": 32})


def test_labelled_sweep_masks_without_numbers():
    macs = lc.rule("Conv2d").cost("macs")
    fixed = dict(N=1, C_in=4, C_out=4, s=1, p=0, d=1, g=1, W=4)
    da = lc.labelled_sweep(macs, k=[1, 3, 5], H=[3, 4], invalid="mask", **fixed)
    masked = lc.sweep(macs, k=[1, 3, 5], H=[3, 4], invalid="mask", **fixed)
    assert (da.valid.values == ~masked.mask).all()
    assert da.values[2].tolist() == [None, None]  # k = 5 does not fit: no number
    assert da.values[:2].tolist() == masked[:2].tolist()


def test_labelled_sweep_beyond_int64_is_exact():
    da = lc.labelled_sweep("N*C_in*H*W", N=[2**40], C_in=2**20, H=[2**10, 2**11], W=2**10)
    assert da.dtype == object
    assert da.values.tolist() == [[2**80, 2**81]]


def test_importing_the_package_imports_no_pandas_or_xarray():
    code = "import sys, layercost_sym; print(sorted({'pandas', 'xarray'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_formulas_in_the_frame_are_sympy(gpt):
    frame = gpt.to_pandas("exact")
    assert all(isinstance(e, sympy.Basic) for e in frame[("params", "formula")])


def test_a_rule_table_leaves_out_a_convention_that_repeats_its_fallback():
    from layercost_sym.tables import rule_table

    def names(rule_name):
        return [row.name for row in rule_table(lc.rule(rule_name)).rows]

    assert "flops (exact)" in names("Conv2d") and "flops (useful)" not in names("Conv2d")
    # causal attention states its own useful work: shown
    assert "flops (useful)" in names("scaled_dot_product_attention")
