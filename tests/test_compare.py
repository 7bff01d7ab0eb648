"""The comparison view: ``compare`` / ``Comparison`` and ``layercost compare``.

Expected numbers come from the rules themselves (``lc.bind`` of the real submodule at its input
shape, then the rule's cost under the convention) or from ``lc.analyze``, never typed in.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys

import pytest
import sympy
import torch
import torch.nn.functional as F

import layercost_sym as lc
from layercost_sym.cli import main
from layercost_sym.errors import ConventionError
from layercost_sym.families import families, family_of
from layercost_sym.torchtools.compare import Comparison, compare

FAMILIES = families().order
# the default: every FLOPs convention stated for every layer (the seed article's is not)
DEFAULT_CONVENTIONS = ("exact", "macs", "torch", "fvcore", "thop", "ptflops")

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning")]

N, H, W = 2, 8, 10  # the sizes the tiny model is evaluated at
AT = {"N": N, "H": H, "W": W}


class Tiny(torch.nn.Module):
    """One layer of each family, residual add, functional pool to 1x1, flatten, attention."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.relu = torch.nn.ReLU()
        self.pool = torch.nn.MaxPool2d(2)
        self.conv2 = torch.nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.fc = torch.nn.Linear(4, 6)
        self.act = torch.nn.GELU()
        self.attn = torch.nn.MultiheadAttention(6, 2, batch_first=True)

    def forward(self, x):
        x = self.pool(self.relu(self.bn(self.conv1(x))))
        x = x + self.conv2(x)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        t = self.act(self.fc(x)).unsqueeze(1)
        return self.attn(t, t, t, need_weights=False)[0]


def tiny_model():
    """The CLI's factory for the tests (``test_compare:tiny_model``)."""
    torch.manual_seed(0)
    return Tiny().eval()


@functools.cache
def _comparison() -> Comparison:
    return compare(tiny_model(), ("N", 3, "H", "W"), at=AT)


def _expected_by_family(convention: str) -> dict[str, int]:
    """Each family's cost at (N, H, W), summed from the rules of the layers in it."""
    m = tiny_model()
    h, w = H // 2, W // 2

    def module(mod, *shapes, **kwargs):
        binding = lc.bind(mod, *shapes, **kwargs)
        return lc.evaluate(binding.rule.cost(convention), binding)

    def op(rule, **values):
        return lc.evaluate(lc.rule(rule).cost(convention), values)

    return {
        "conv": module(m.conv1, (N, 3, H, W)) + module(m.conv2, (N, 4, h, w)),
        "linear": module(m.fc, (N, 4)),
        "norm": module(m.bn, (N, 4, H, W)),
        "activation": module(m.relu, (N, 4, H, W)) + module(m.act, (N, 6)),
        # MaxPool2d, and F.adaptive_avg_pool2d(x, 1), which ATen runs as a mean
        "pooling": module(m.pool, (N, 4, H, W))
        + op("mean.adaptive_avg_pool2d", N=N * 4, N_in=N * 4 * h * w),
        "attention": module(m.attn, *[(N, 1, 6)] * 3, need_weights=False),
        "other": op("add", N=N * 4 * h * w),  # the residual add; flatten and views cost 0
    }


# -- families ----------------------------------------------------------------------------------


def test_every_rule_and_variant_has_one_of_the_seven_families():
    for name in lc.rules():
        for rule in (lc.rule(name), *lc.rule(name).variants):
            assert family_of(rule.name) in FAMILIES, rule.name


@pytest.mark.parametrize(
    ("catalogue_family", "family"),
    [
        ("conv", "conv"),
        ("norm", "norm"),
        ("activation", "activation"),
        ("pooling", "pooling"),
        ("attention", "attention"),
        ("recurrent", "other"),
        ("embedding", "other"),
        ("dropout", "other"),
        ("resampling", "other"),
        ("distance", "other"),
    ],
)
def test_catalogue_families_map_as_documented(catalogue_family, family):
    names = [n for n in lc.rules() if lc.rule(n).family == catalogue_family]
    assert names and {family_of(n) for n in names} == {family}


def test_operators_map_as_documented():
    assert {family_of(n) for n in ("mm", "addmm", "bmm", "Linear", "Bilinear")} == {"linear"}
    assert {family_of(n) for n in ("Flatten", "Unflatten", "Identity")} == {"other"}
    assert {family_of(n) for n in ("relu", "gelu", "silu", "_softmax")} == {"activation"}
    assert family_of("native_layer_norm") == "norm"
    assert family_of("scaled_dot_product_attention") == family_of("_safe_softmax") == "attention"
    assert family_of("mean.adaptive_avg_pool2d") == family_of("mean.adaptive_avg_pool3d")
    assert family_of("mean.adaptive_avg_pool2d") == "pooling"
    functional = [n for n in lc.rules() if lc.rule(n).family == "functional"]
    documented = {"mm", "addmm", "bmm", "native_layer_norm", "_safe_softmax"}
    documented |= {"relu", "gelu", "silu", "hardswish", "sigmoid", "tanh", "_softmax", "softmax"}
    for name in functional:  # add, mul, cat, mean, sum, views, ...
        assert (family_of(name) == "other") == (name not in documented), name


# -- totals and breakdown --------------------------------------------------------------------


def test_totals_are_the_sum_of_the_layers_rules():
    # each total, a closed form in N, H, W, evaluated at AT against the rules of the real
    # submodules bound one by one (not against analysis.cost, which totals is built from)
    c = _comparison()
    assert c.conventions == DEFAULT_CONVENTIONS == lc.quantity("flops").compared
    for convention, total in c.totals.items():
        assert total.free_symbols == {lc.parse("N"), lc.parse("H"), lc.parse("W")}, total
        assert lc.evaluate(total, AT) == sum(_expected_by_family(convention).values())
        assert sympy.expand(sum(c.breakdown(convention).values()) - total) == 0


@pytest.mark.parametrize("convention", DEFAULT_CONVENTIONS)
def test_breakdown_is_the_rules_of_each_family(convention):
    values = _comparison().values()[convention]
    expected = _expected_by_family(convention)
    assert {f: values[f] for f in FAMILIES} == expected
    assert (
        values["total"] == sum(expected.values()) == _comparison().analysis.evaluate(AT, convention)
    )


def test_values_need_sizes_for_symbolic_inputs():
    c = Comparison(_comparison().analysis, ("macs",))
    with pytest.raises(ConventionError, match="N, H, W"):
        c.values()
    assert c.values(AT)["macs"]["total"] == _comparison().analysis.evaluate(AT, "macs")
    assert "macs:" in c.table() and "floor(H/2)" in c.table()  # formulas without sizes


def test_concrete_inputs_need_no_sizes():
    c = compare(tiny_model(), (N, 3, H, W), conventions=("fvcore", "ptflops"))
    assert c.values() == {k: v for k, v in _comparison().values().items() if k in c.conventions}


# -- diff ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("a", "b"), [("fvcore", "thop"), ("ptflops", "fvcore"), ("exact", "macs")])
def test_diff_is_the_rows_where_the_conventions_differ(a, b):
    c = _comparison()
    d = c.diff(a, b)
    assert sympy.expand(d.total - (c.totals[a] - c.totals[b])) == 0
    assert d.value() == c.analysis.evaluate(AT, a) - c.analysis.evaluate(AT, b)
    differing = [
        layer.name
        for layer in c.analysis.layers
        if lc.evaluate(layer.cost(a), AT) != lc.evaluate(layer.cost(b), AT)
    ]
    assert sorted(r.name for r in d.rows) == sorted(differing)
    sizes = [abs(d.value(r)) for r in d.rows]
    assert sizes == sorted(sizes, reverse=True)
    for f, e in d.families.items():
        assert sympy.expand(e - (c.breakdown(a)[f] - c.breakdown(b)[f])) == 0


def test_diff_without_sizes_orders_for_large_inputs():
    c = Comparison(_comparison().analysis, ("exact", "macs"))
    d = c.diff("exact", "macs")
    assert d.at is None and d.rows[0].name == "conv1"  # the largest layer at large H, W
    with pytest.raises(ConventionError, match="no 'at'"):
        d.value()


def test_conventions_a_layer_lacks_are_named():
    with pytest.raises(ConventionError, match=r"'seed'.*pool"):
        Comparison(_comparison().analysis, ("macs", "seed"))
    with pytest.raises(
        ConventionError, match=r"unknown convention 'flops' of flops; known conventions: exact"
    ):
        _comparison().diff("macs", "flops")
    with pytest.raises(ConventionError, match="forward pass only"):
        compare(tiny_model(), (1, 3, 4, 4), backward=True)


def test_lazy_export_from_the_package():
    assert "compare" in lc.__all__
    c = lc.compare(tiny_model(), ("N", 3, "H", "W"), conventions=("macs",), at=AT)
    assert isinstance(c, Comparison) and c.values() == {"macs": _comparison().values()["macs"]}


# -- the command line ----------------------------------------------------------------------------


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_table(capsys):
    code, out, _ = run(capsys, "compare", "test_compare:tiny_model", "--input", f"{N},3,{H},{W}")
    assert code == 0
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("family"))
    assert header.split() == ["family", *DEFAULT_CONVENTIONS]
    values = _comparison().values()
    for family in (*FAMILIES, "total"):
        row = next(line for line in lines if line.split()[:1] == [family])
        assert row.split()[1:] == [str(values[c][family]) for c in DEFAULT_CONVENTIONS]


def test_cli_json_symbolic_with_at_and_diff(capsys):
    at = ",".join(f"{k}={v}" for k, v in AT.items())
    argv = ["compare", "test_compare:tiny_model", "--input", "N,3,H,W", "--at", at]
    argv += ["--conventions", "macs,fvcore", "--diff", "fvcore", "thop", "--json"]
    code, out, _ = run(capsys, *argv)
    data = json.loads(out)
    c = _comparison()
    # the diff's second convention joins the comparison
    assert code == 0 and data["conventions"] == ["macs", "fvcore", "thop"]
    assert data["at"] == AT and data["symbols"] == ["N", "H", "W"]
    for convention in data["conventions"]:
        assert lc.parse(data["totals"][convention]) == c.totals[convention]
        assert data["values"][convention] == c.values()[convention]
    (diff,) = data["diffs"]
    assert diff["value"] == c.diff("fvcore", "thop").value()
    assert sum(row["value"] for row in diff["rows"]) == diff["value"]
    assert [row["name"] for row in diff["rows"]] == [r.name for r in c.diff("fvcore", "thop").rows]
    assert data["params"] == str(c.params) and data["unsupported"] == []


def test_cli_diff_text(capsys):
    argv = ["compare", "test_compare:tiny_model", "--input", f"{N},3,{H},{W}"]
    code, out, _ = run(capsys, *argv, "--diff", "ptflops", "fvcore", "--top", "2")
    d = _comparison().diff("ptflops", "fvcore")
    assert code == 0 and f"ptflops - fvcore = {d.value()}" in out
    assert f"... and {len(d.rows) - 2} more rows" in out
    first = out.split("rows, largest first:")[1].splitlines()[2].split()
    assert first[:2] == [d.rows[0].name, d.rows[0].rule] and first[-1] == str(d.value(d.rows[0]))


def test_cli_torchvision_model(capsys):
    import torchvision

    argv = ["compare", "torchvision.models:resnet18", "--input", "1,3,64,64"]
    code, out, _ = run(capsys, *argv, "--conventions", "fvcore,thop,ptflops", "--json")
    data = json.loads(out)
    analysis = lc.analyze(torchvision.models.resnet18(weights=None), (1, 3, 64, 64))
    assert code == 0
    assert {c: v["total"] for c, v in data["values"].items()} == {
        c: lc.evaluate(analysis.cost(c), {}) for c in ("fvcore", "thop", "ptflops")
    }


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--conventions", "macs,flops"], "unknown convention(s) 'flops'"),
        (["--diff", "macs", "gflops"], "unknown convention(s) 'gflops'"),
        (["--at", "N=x"], "expected SYMBOL=INT"),
        (["--conventions", "seed"], "'seed' is not defined for every layer"),
    ],
)
def test_cli_errors_exit_2(capsys, extra, message):
    argv = ["compare", "test_compare:tiny_model", "--input", f"{N},3,{H},{W}", *extra]
    code, _out, err = run(capsys, *argv)
    assert code == 2 and message in err and "Traceback" not in err


def test_cli_help_has_an_example():
    out = subprocess.run(
        [sys.executable, "-m", "layercost_sym", "compare", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "example:" in out and "--diff fvcore thop" in out
