"""Composition by hand: Rule.at, Cost algebra, symbols, the architecture registry and its CLI."""

import json
from fractions import Fraction

import pytest
import sympy
import torch
from hypothesis import given
from hypothesis import strategies as st

import layercost_sym as lc
from layercost_sym import zoo as registry
from layercost_sym.cli import main
from layercost_sym.composition import Cost

# -- symbols -------------------------------------------------------------------------------------


def test_symbols_are_positive_integers_unless_told():
    d, n = lc.symbols("d_model, n_layer")
    assert d.is_integer and d.is_positive and n.is_integer and n.is_positive
    alpha = lc.symbols("alpha", integer=False)
    assert alpha.is_real and alpha.is_positive and alpha.is_integer is None
    z = lc.symbols("z", positive=False)
    assert z.is_nonnegative and z.is_positive is None
    # glossary names are the rules' own symbols, so a user's N meets Linear's N
    assert lc.symbols("N") in lc.rule("Linear").output_shape[0].free_symbols


@pytest.mark.parametrize("bad", ["", "2d", "a-b"])
def test_symbols_reject_bad_names(bad):
    with pytest.raises(lc.CompositionError):
        lc.symbols(bad)


# -- Rule.at -----------------------------------------------------------------------------------


def test_at_binds_expressions_and_leaves_the_rest():
    d, B, T = lc.symbols("d B T")
    c = lc.rule("Linear").at(C_in=d, C_out=4 * d, N=B * T)
    # Linear: params C_in*C_out + b*C_out; macs N*C_in*C_out (formulas/linear.toml)
    b = lc.symbols("b")
    assert sympy.expand(c.params - (4 * d**2 + 4 * b * d)) == 0
    assert sympy.expand(c.cost("macs") - 4 * B * T * d**2) == 0
    assert c.cost("torch") == 2 * c.cost("macs")
    assert c.output_shape == (B * T, 4 * d)
    assert [p.name for p in c.parts] == ["Linear"] and c.parts[0].rule == "Linear"


def test_at_square_shorthand_and_constraints():
    conv = lc.rule("Conv2d")
    c = conv.at(N=1, C_in=3, C_out=64, k=7, s=2, p=3, d=1, g=1, b=0, H=224, W=224)
    values = dict(N=1, C_in=3, C_out=64, k=7, s=2, p=3, d=1, g=1, b=0, H=224, W=224)
    for convention in c.conventions:
        assert c.cost(convention) == lc.evaluate(conv.cost(convention), values)
    assert c.params == lc.evaluate(conv.params, values)
    # a kernel larger than the padded input is refused when the values decide it ...
    with pytest.raises(lc.ShapeError, match="kernel size"):
        conv.at(N=1, C_in=3, C_out=4, k=5, s=1, p=0, d=1, g=1, b=1, H=2, W=9)
    # ... and carried along when they do not, then checked at evaluation
    H = lc.symbols("H")
    c = conv.at(N=1, C_in=3, C_out=4, k=5, s=1, p=0, d=1, g=1, b=1, W=9)
    assert c.conditions and H in c.conditions[0].condition.free_symbols
    assert c.evaluate({"H": 5}, "macs") == 3 * 4 * 25 * 1 * 5  # C_in C_out k^2 H_out W_out
    with pytest.raises(lc.ShapeError, match="kernel size"):
        c.evaluate({"H": 4}, "macs")
    with pytest.raises(lc.ShapeError, match="groups"):
        conv.at(C_in=3, C_out=4, g=2)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"X": 1}, "no symbol 'X'"),
        ({"C_in": 2.0}, "not an int"),
        ({"C_in": 0}, "must be positive"),
        ({"b": 2}, "flag"),
        ({"C_in": sympy.Rational(1, 2)}, "not an integer"),
        ({"C_in": "d"}, "not an int"),
    ],
)
def test_at_rejects_bad_bindings(values, message):
    with pytest.raises(lc.CompositionError, match=message):
        lc.rule("Linear").at(**values)


# -- Cost algebra ------------------------------------------------------------------------------


def test_add_scale_name_group_tie():
    d, n = lc.symbols("d n")
    lin = lc.rule("Linear")
    up = lin.at(C_in=d, C_out=4 * d, N=1, b=1, name="up")
    down = lin.at(C_in=4 * d, C_out=d, N=1, b=1, name="down")
    act = lc.rule("GELU").at(N=4 * d, name="act")
    block = (up + act + down).named("mlp")
    assert [p.name for p in block.parts] == ["mlp.up", "mlp.act", "mlp.down"]
    model = n * block + lin.at(C_in=d, C_out=d, N=1, b=0, name="head")
    # parameters: n (4d^2 + 4d + 4d^2 + d) + d^2, written out from Linear's params
    assert sympy.expand(model.params - (n * (8 * d**2 + 5 * d) + d**2)) == 0
    assert sympy.expand(model.cost("macs") - (n * 8 * d**2 + d**2)) == 0
    assert model.breakdown("macs")["mlp.up"] == (n * (4 * d**2 + 4 * d), 4 * n * d**2)
    # parts with the same name add up
    twice = up + up
    assert len(twice.parts) == 1 and twice.params == 2 * up.params
    assert sum([up, down]).params == (up + down).params
    g = (up + down).group("mlp")
    assert [p.name for p in g.parts] == ["mlp"] and g.cost("exact") == (up + down).cost("exact")
    tied = up.tied()
    assert tied.params == 0 and tied.cost("exact") == up.cost("exact")
    with pytest.raises(lc.CompositionError, match="negative"):
        -1 * up
    with pytest.raises(lc.CompositionError):
        up * 1.5


def test_missing_convention_names_the_part():
    d = lc.symbols("d")
    c = lc.rule("Linear").at(C_in=d, C_out=d, N=1, name="proj") + lc.rule("GELU").at(
        N=d, name="act"
    )
    assert "seed" in lc.rule("Linear").conventions and "seed" not in c.conventions
    with pytest.raises(lc.ConventionError, match="act"):
        c.cost("seed")


def test_at_and_evaluate_on_costs():
    d, B = lc.symbols("d B")
    c = lc.rule("Linear").at(C_in=d, C_out=2 * d, N=B, b=1)
    assert c.at(d=3).params == 3 * 6 + 6
    assert c.evaluate({"d": 3, "B": 5}, "exact") == 5 * 6 * (2 * 3 - 1 + 1)
    assert c.evaluate({"d": 3, "B": 5}, quantity="params") == 24
    with pytest.raises(lc.CompositionError, match="no symbol 'e'"):
        c.at(e=1)


def test_printing():
    d = lc.symbols("d_model")
    c = lc.rule("Linear").at(C_in=d, C_out=d, N=1, b=0, name="attn_proj") + lc.rule("Linear").at(
        C_in=d, C_out=4 * d, N=1, b=0, name="mlp"
    )
    tex = c.to_latex("macs")
    assert r"\begin{tabular}{lll}" in tex.splitlines() and r"attn\_proj" in tex
    model = r"d_{\mathrm{model}}^{2}"  # a name of several letters outside the glossary: upright
    assert tex.count(r"\\") == 4 and model in tex and "5 " + model in tex
    assert c._repr_latex_().startswith(r"$\begin{array}")
    text = c.table("macs")
    assert text.splitlines()[0].startswith("part") and "5*d_model**2" in text.splitlines()[-1]


# -- a composition equals torch on the real module ---------------------------------------------


@given(
    batch=st.integers(1, 3),
    d_in=st.integers(1, 12),
    hidden=st.integers(1, 12),
    d_out=st.integers(1, 12),
    bias=st.booleans(),
)
def test_mlp_composition_matches_torch(batch, d_in, hidden, d_out, bias):
    N = lc.symbols("N")
    lin = lc.rule("Linear")
    mlp = (
        lin.at(C_in=d_in, C_out=hidden, N=N, b=bias, name="fc1")
        + lc.rule("ReLU").at(N=N * hidden, name="relu")
        + lin.at(C_in=hidden, C_out=d_out, N=N, b=bias, name="fc2")
    )
    model = torch.nn.Sequential(
        torch.nn.Linear(d_in, hidden, bias=bias),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, d_out, bias=bias),
    )
    for convention in ("exact", "macs", "torch"):
        counted = lc.count(model, (batch, d_in), convention=convention)
        assert mlp.evaluate({"N": batch}, convention) == counted.flops
    assert mlp.params == sum(p.numel() for p in model.parameters())


# -- the architecture registry -------------------------------------------------------------------


@pytest.fixture
def toy(monkeypatch):
    """A registry holding one toy architecture (a stack of square Linear layers)."""
    monkeypatch.setattr(registry, "_REGISTRY", {})
    monkeypatch.setattr(registry, "_loaded", True)

    @registry.register(
        "toy",
        hyperparameters=(
            registry.Hyperparameter("width", "layer width"),
            registry.Hyperparameter("depth", "number of layers"),
            registry.Hyperparameter("ratio", "a width multiplier", integer=False),
            registry.Hyperparameter(
                "kind", "bias or not", choices=("bias", "nobias"), default="bias"
            ),
        ),
        mirrors="torch.nn.Sequential(*[torch.nn.Linear(width, width)] * depth)",
    )
    def toy(width, depth, ratio, kind):
        """A stack of Linear layers."""
        b = 1 if kind == "bias" else 0
        return depth * lc.rule("Linear").at(C_in=width, C_out=width, b=b, name="layer")

    return toy


def test_registry(toy):
    assert lc.architectures() == ["toy"]
    a = lc.architecture("toy", width=4)
    depth = lc.symbols("depth")
    assert a.params == depth * (16 + 4) and a.hyperparameters["width"] == 4
    assert a.at(depth=3).params == 60 and a.at(depth=3).hyperparameters["depth"] == 3
    assert lc.architecture("toy", width=4, depth=2, kind="nobias").params == 32
    assert lc.architecture("toy", ratio=0.35).hyperparameters["ratio"] == sympy.Rational(7, 20)
    assert lc.architecture("toy", ratio=Fraction(3, 4)).hyperparameters["ratio"] == sympy.Rational(
        3, 4
    )
    with pytest.raises(lc.UnknownArchitectureError, match="toy"):
        lc.architecture("nope")
    with pytest.raises(lc.ArchitectureError, match="takes: width, depth, ratio, kind"):
        lc.architecture("toy", heads=2)
    with pytest.raises(lc.ArchitectureError, match="not one of"):
        lc.architecture("toy", kind="other")
    with pytest.raises(lc.ArchitectureError, match="must be an integer"):
        lc.architecture("toy", width=0.5)
    with pytest.raises(lc.ArchitectureError, match="registered twice"):
        registry.register("toy", hyperparameters=(), mirrors="")(lambda: None)


def test_arch_cli(toy, capsys):
    assert main(["arch"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("toy: A stack of Linear layers.") and "mirrors: torch.nn" in out
    assert main(["arch", "toy", "width=4", "depth=2", "--at", "N=3", "--convention", "macs"]) == 0
    out = capsys.readouterr().out
    # two layers of 4x4 weights and 4 biases; macs 2 * N * 16 at N=3
    assert out.splitlines()[-1].split() == ["total", "40", "96"]
    assert main(["arch", "toy", "width=4", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert lc.parse(data["params"].replace("depth", "N")) == 20 * lc.symbols("N")
    assert main(["arch", "toy", "width=4", "--latex"]) == 0
    assert capsys.readouterr().out.startswith(r"\begin{table}")
    assert main(["arch", "toy", "width"]) == 2
    assert "NAME=VALUE" in capsys.readouterr().err


def test_cost_is_exported():
    assert lc.Cost is Cost


def test_data_dependent_symbols_take_their_documented_default():
    # Embedding with max_norm: the rows renormalised depend on the data; left out, they take
    # the rule's default (the bound: every looked-up row, at most V), as bind() assumes
    r = lc.rule("Embedding")
    defaults = r.data_defaults()
    assert defaults, "Embedding declares data-dependent symbols"
    given = r.at(N=10, V=100, E=8, renorm=1, **{s.name: 3 for s in defaults})
    assumed = r.at(N=10, V=100, E=8, renorm=1)
    assert {s.name for s in defaults} == {"V_d", "V_r"}
    # defaults V_d = V_r = Min(N, V) = 10: 10*(3*8 + 1) + 10*(8 + 2) = 250 + 100
    assert assumed.cost("exact") == 350
    # given V_d = V_r = 3: 3*(3*8 + 1) + 3*(8 + 2) = 75 + 30
    assert given.cost("exact") == 105
    assert not assumed.conditions
