"""Cost cards: the schema, the round trip through JSON text, refusals, malformed cards, the CLI.

A card read back must give every value as the same expression with the same domain as the
original, so that evaluation agrees at drawn shapes and refuses, with the same message, where
the original refuses.  Independent oracles: torch's own count for the analysed model, the
transformers-verified GPT-2 small numbers of the README for the architecture.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import sympy
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import layercost_sym as lc
from layercost_sym.cards import FORMAT_VERSION, PROVEN_TORCH, schema
from layercost_sym.glossary import glossary
from layercost_sym.grammar import read, text_of
from layercost_sym.parsing import MAX_TEXT_LENGTH, parse
from layercost_sym.testing import strategies as cases

ROOT = Path(__file__).resolve().parent.parent
VALIDATOR = jsonschema.Draft202012Validator(schema())
# rules whose texts exercise the printer: floors, where(), Max/Min, a where() over a where()
# (an ITE in SymPy), training-only constraints, several inputs, long recurrent formulas
RULES = ["Conv2d", "Linear", "BatchNorm2d", "MultiheadAttention", "LSTM", "Conv2d.same"]


def _outcome(expr, values):
    """The value, or the error's type and message: what a refusal must reproduce."""
    try:
        return lc.evaluate(expr, values)
    except lc.LayercostError as exc:
        return type(exc).__name__, str(exc)


def _loaded(data):
    return lc.load_card(json.dumps(data))


def test_the_schema_is_a_schema_and_states_the_format_version():
    jsonschema.Draft202012Validator.check_schema(schema())
    assert re.fullmatch(schema()["properties"]["format_version"]["pattern"], FORMAT_VERSION)
    # the schema file is in the package directory, which the wheel ships whole
    assert (ROOT / "layercost_sym" / "card.schema.json").is_file()


def test_the_torch_version_proven_against_is_the_one_ci_pins():
    pinned = re.search(r"torch==([0-9.]+)", (ROOT / ".ci" / "run").read_text())
    assert pinned is not None and pinned.group(1) == PROVEN_TORCH
    data = lc.card(lc.rule("Linear"))
    assert data["torch"]["proven_against"] == PROVEN_TORCH
    assert data["library"]["version"] == lc.__version__


@pytest.mark.parametrize("name", RULES)
def test_a_rule_card_validates_and_reads_back_value_by_value(name):
    rule = lc.rule(name)
    data = lc.card(rule)
    VALIDATOR.validate(data)
    loaded = _loaded(data)
    assert loaded.kind == "rule" and loaded.name == name
    for q, c, training in rule.compact:
        original = rule.quantity(q, c, training)
        back = loaded.quantity(q, c, training)
        assert back == original, (q, c, training)
        assert lc.domain(back) == lc.domain(original), (q, c, training)
    assert loaded.output_shape == tuple(rule.output_shape)
    # every symbol a text uses has its meaning, domain and LaTeX from the glossary
    for symbol_name, entry in data["glossary"].items():
        info = glossary().info[symbol_name]  # rules use glossary symbols only
        assert (entry["meaning"], entry["domain"], entry["latex"]) == (
            info.meaning,
            info.domain,
            info.latex,
        )


def test_a_rule_card_states_training_mode_and_the_conventions():
    data = lc.card(lc.rule("BatchNorm2d"))
    rule = lc.rule("BatchNorm2d")
    assert set(data["training_mode"]["quantities"]["flops"]) == set(
        c for q, c, m in rule.compact if m and q == "flops"
    )
    assert data["conventions"]["flops"]["conventions"]["torch"]["derived"] == "2 x macs"
    loaded = _loaded(data)
    at = dict(N=4, C=3, H=5, W=5, a=1, r=1)
    assert loaded.evaluate(at, "exact", training=True) == lc.evaluate(
        rule.cost("exact", training=True), at
    )
    # params has no training mode: the one value in both modes, as the rule gives it
    assert loaded.quantity("params", training=True) == rule.quantity("params", training=True)


def test_a_refusal_reads_back_with_the_same_words():
    data = lc.card(lc.rule("Conv2d"))
    loaded = _loaded(data)
    bad = dict(N=2, C_in=3, C_out=4, k=9, s=1, p=0, d=1, g=1, b=1, H=8, W=8, e_a=4, e_w=4)
    for convention in ("exact", "macs", "torch"):
        original = _outcome(lc.rule("Conv2d").cost(convention), bad)
        assert original[0] == "DomainError" and "H_out=0" in original[1]
        assert _outcome(loaded.quantity("flops", convention), bad) == original


# Drawn layers: the loaded card evaluates as the rule does at the layer's binding, and at a
# shape with one size replaced by a small drawn one (often outside the domain: refused alike).
STRATEGIES = {
    "conv2d": cases.conv2d_cases(),
    "linear": cases.linear_cases(),
    "mha": cases.mha_cases(),
}
_CARDS: dict[str, lc.Card] = {}
# evaluated at drawn shapes: params and every FLOPs convention (every quantity's expression and
# domain is compared whole above and by card() itself; compiling the variants' long backward and
# saved-memory formulas for evaluation would cost a minute here)
EVALUATED = ("params", "flops")


def _card_of(rule):
    if rule.name not in _CARDS:
        _CARDS[rule.name] = _loaded(lc.card(rule))
    return _CARDS[rule.name]


@pytest.mark.parametrize("family", sorted(STRATEGIES))
def test_drawn_shapes_evaluate_alike_on_the_card_and_the_rule(family):
    @settings(max_examples=25)  # the round trip, not the rules (their own tests draw more)
    @given(case=STRATEGIES[family], data=st.data())
    def check(case, data):
        module = case.build()
        binding = lc.bind(module, *case.input_shapes, **case.call_kwargs)
        rule = binding.rule
        loaded = _card_of(rule)
        values = dict(binding)
        changed = data.draw(st.sampled_from(sorted(values)))
        perturbed = {**values, changed: data.draw(st.integers(0, 3))}
        for q, c, training in rule.compact:
            if q not in EVALUATED:
                continue
            original = rule.quantity(q, c, training)
            back = loaded.quantity(q, c, training)
            for at in (values, perturbed):
                assert _outcome(back, at) == _outcome(original, at), (q, c, training, at)

    check()


def test_architecture_card_reads_back_and_evaluates_gpt2_small():
    gpt = lc.architecture("gpt")
    data = lc.card(gpt)
    VALIDATOR.validate(data)
    assert data["kind"] == "architecture" and data["symbols"][:2] == ["d_model", "n_layer"]
    assert data["glossary"]["d_model"]["latex"] == r"d_{\mathrm{model}}"
    assert data["glossary"]["d_model"]["meaning"].startswith("width of the residual stream")
    loaded = _loaded(data)
    for q in ("params", "flops", "bytes"):
        for c in gpt.conventions_of(q):
            value = gpt.quantity(q, c)
            assert loaded.quantity(q, c) == value
            assert lc.domain(loaded.quantity(q, c)) == lc.domain(value)
    # GPT-2 small: 124439808 parameters and 291648307200 FLOPs at N=1 (README: transformers')
    at = dict(d_model=768, n_layer=12, n_head=12, d_ff=3072, vocab=50257, n_ctx=1024, N=1)
    assert loaded.evaluate(at, quantity="params") == 124439808
    assert loaded.evaluate(at, "torch") == 291648307200
    for part, (params, _) in gpt.breakdown("exact").items():
        assert loaded.parts[part][("params", "count")] == params


def test_an_architecture_of_macs_alone_takes_its_first_convention():
    data = lc.card(lc.architecture("mixtral"))
    VALIDATOR.validate(data)
    assert "exact" not in data["quantities"]["flops"] and data["convention"] == "macs"


def _small_cnn():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, stride=2, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(4, 6, 3),
        torch.nn.Flatten(),
    ).eval()


@pytest.fixture(scope="module")
def analysed():
    analysis = lc.analyze(_small_cnn(), ("N", 3, "H", "W"))
    return analysis, lc.card(analysis, name="small_cnn")


def test_analysis_card_equals_torch_and_refuses_outside_the_guards(analysed):
    analysis, data = analysed
    VALIDATOR.validate(data)
    loaded = _loaded(data)
    assert loaded.kind == "analysis" and [s.name for s in loaded.symbols] == ["N", "H", "W"]
    assert set(data["quantities"]) >= {"params", "flops", "bytes"}
    for q in data["quantities"]:
        for c in data["quantities"][q]:
            assert loaded.quantity(q, c) == analysis.quantity(q, c)
            assert lc.domain(loaded.quantity(q, c)) == lc.domain(analysis.quantity(q, c))
    counted = lc.count(_small_cnn(), (2, 3, 13, 10))  # torch's own count
    at = {"N": 2, "H": 13, "W": 10}
    for convention in ("exact", "macs", "torch"):
        assert loaded.evaluate(at, convention) == counted.cost(convention)
    assert loaded.evaluate(at, quantity="params") == counted.params
    # H = 2: the second conv's kernel no longer fits; both refuse in the same words
    small = {"N": 2, "H": 2, "W": 10}
    refused = _outcome(analysis.quantity("flops", "exact"), small)
    assert refused[0] == "DomainError"
    assert _outcome(loaded.quantity("flops", "exact"), small) == refused


def test_malformed_cards_name_the_json_path(analysed, tmp_path):
    good = lc.card(lc.rule("Conv2d"))

    def broken(path: str, value):
        data = json.loads(json.dumps(good))
        *head, last = path.split(".")
        target = data
        for key in head:
            target = target[key]
        target[last] = value
        return data

    for path, value, words in [
        ("quantities.flops.exact", "__import__('os')", "call of '__import__'"),
        ("quantities.flops.macs", "C_in*Zeta", "unknown symbol 'Zeta'"),
        ("quantities.params.count", 3.5, "expected expression text"),
        ("domains.flops.exact", [0, 7], "7 is not the index of a condition"),
        ("glossary.H.domain", "imaginary", "must be one of"),
        ("format_version", "2.0", "this library reads"),
        ("conditions", "none", "expected list"),
        ("defines.H_out", "floor(H/", "cannot parse"),
    ]:
        with pytest.raises(lc.CardError, match=re.escape(path)) as caught:
            lc.load_card(broken(path, value))
        assert words in str(caught.value), (path, str(caught.value))
    missing = json.loads(json.dumps(good))
    del missing["domains"]["flops"]["exact"]
    with pytest.raises(lc.CardError, match=r"domains\.flops\.exact: missing"):
        lc.load_card(missing)
    with pytest.raises(lc.CardError, match="is JSON"):
        lc.load_card("{not json")
    # a file, by path or by name
    path = tmp_path / "conv.json"
    path.write_text(json.dumps(good))
    assert lc.load_card(path).quantity("params") == lc.rule("Conv2d").params
    assert lc.load_card(str(path)).name == "Conv2d"
    with pytest.raises(lc.CardError, match="cannot read a card"):
        lc.load_card(tmp_path / "absent.json")
    with pytest.raises(lc.CardError, match="no card for an object of type int"):
        lc.card(3)


def test_the_grammar_text_reads_back_as_the_same_tree():
    b, x, a, H, p = lc.symbols("b x a H p")
    cases_ = [
        sympy.Mul(8, b + 1, sympy.floor(H / 2), evaluate=False),  # 8*(b + 1) would distribute
        1 - sympy.Mul(-1, 1 - a, 1 - b, evaluate=False) * -1,
        -(1 - a) * (1 - b) * (1 - p) + 1,
        sympy.Piecewise((H, sympy.Eq(p, 0)), (sympy.ceiling(H / 3), True)),
        sympy.Max(H - 2 * p, 1) * sympy.Mod(H, 3) / (2 * x),
        sympy.Rational(3, 2) * x * (a + 1) * (b + 2),
    ]
    for expr in cases_:
        assert read(text_of(expr), {s.name: s for s in expr.free_symbols}) == expr, expr
    # a sum of more terms than the parser nests, longer than its limit on text
    long = sympy.Add(*(sympy.floor(H / k) * (p + k) for k in range(2, 260)))
    text = text_of(long)
    assert len(text) > MAX_TEXT_LENGTH and read(text) == long
    with pytest.raises(lc.CardError, match="no Float"):
        text_of(sympy.Float(0.5) * H)
    # SymPy's own text of the first case reads back as another tree: why grammar.py exists
    assert parse(sympy.sstr(cases_[0])) != cases_[0]


def _factory_module(tmp_path):
    (tmp_path / "cardmodels.py").write_text(
        "import torch\n"
        "def small():\n"
        "    torch.manual_seed(0)\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()\n"
    )


def test_cli_model_and_arch_json_are_cards(capsys, monkeypatch, tmp_path):
    from layercost_sym.cli import main

    _factory_module(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    argv = ["model", "cardmodels:small", "--input", "N,3,H,W", "--json", "--at", "N=2,H=9,W=7"]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    VALIDATOR.validate(data)
    assert data["name"] == "cardmodels:small" and data["kind"] == "analysis"
    loaded = lc.load_card(json.dumps(data))
    model = sys_modules_factory("cardmodels", "small")
    counted = lc.count(model, (2, 3, 9, 7))
    for convention in ("exact", "macs", "torch"):
        assert loaded.evaluate({"N": 2, "H": 9, "W": 7}, convention) == counted.cost(convention)
        assert data["values"][convention] == counted.cost(convention)
    assert main(["arch", "resnet", "depth=18", "--json", "--convention", "macs"]) == 0
    data = json.loads(capsys.readouterr().out)
    VALIDATOR.validate(data)
    loaded = lc.load_card(json.dumps(data))
    # torchvision documents ResNet-18 at 224 pixels as 11.69M parameters and 1.81 GFLOPS (macs)
    at = {"N": 1, "resolution": 224}
    assert loaded.evaluate(at, quantity="params") == 11689512
    assert loaded.evaluate(at) == 1814073344 and data["convention"] == "macs"


def sys_modules_factory(module: str, name: str):
    import sys

    return getattr(sys.modules[module], name)()
