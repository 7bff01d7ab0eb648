"""Whole-model analysis: one symbolic trace per model, evaluated at concrete shapes, equals what
torch counts on the real model at those shapes (``lc.count``: parameters by numel, ``torch`` by
FlopCounterMode, ``macs`` = torch / 2, ``exact`` by the package's op counter)."""

import subprocess
import sys
from functools import cache

import pytest
import sympy
import torch
import torch.nn.functional as F
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import layercost_sym as lc
from layercost_sym.glossary import glossary

CONVENTIONS = ("exact", "macs", "torch")


# torchvision's own classes at small configurations: the same modules and operators as the
# released sizes, traced in seconds (densenet121 itself took minutes of CI; the corpus runner
# checks timm's densenet121: python -m layercost_sym.torchtools.corpus timm --family densenet)
SMALL = {
    "densenet_small": lambda: torchvision.models.DenseNet(
        growth_rate=8, block_config=(2, 2, 2, 2), num_init_features=16, bn_size=2
    ),
}


@cache
def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    if name in SMALL:
        return SMALL[name]().eval()
    return getattr(torchvision.models, name)(weights=None).eval()


@cache
def _analysis(name: str):
    return lc.analyze(_model(name), ("N", 3, "H", "W"))


def _assert_matches(analysis, model, inputs, at):
    counted = lc.count(model, *inputs)
    assert analysis.evaluate(at, quantity="params") == counted.params
    for convention in CONVENTIONS:
        assert analysis.evaluate(at, convention) == counted.cost(convention), convention


# Small odd sizes keep the op counter's real forward passes fast; batch 1 and 2 both appear.
SHAPES = {
    "resnet18": [(2, 65, 97), (1, 33, 35)],
    "resnet50": [(2, 45, 63)],
    "mobilenet_v2": [(2, 41, 57), (1, 33, 33)],
    "vgg11": [(2, 33, 47)],
    "efficientnet_b0": [(2, 35, 41)],
    "squeezenet1_1": [(2, 41, 37)],
}


@pytest.mark.parametrize(
    ("name", "shape"), [(name, shape) for name, shapes in SHAPES.items() for shape in shapes]
)
def test_torchvision_model_closed_form_equals_counters(name, shape):
    analysis = _analysis(name)
    assert not analysis.unsupported
    assert {s.name for s in analysis.cost("exact").free_symbols} == {"N", "H", "W"}
    n, h, w = shape
    _assert_matches(analysis, _model(name), [(n, 3, h, w)], {"N": n, "H": h, "W": w})


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
@settings(max_examples=3, deadline=None)
@given(n=st.integers(1, 2), h=st.integers(33, 72), w=st.integers(33, 72))
def test_resnet_closed_form_at_drawn_shapes(name, n, h, w):
    _assert_matches(_analysis(name), _model(name), [(n, 3, h, w)], {"N": n, "H": h, "W": w})


def test_total_params_are_the_models_numel_without_a_shape():
    analysis = _analysis("resnet50")
    # ResNet-50 has 25,557,032 parameters (torchvision's documented count)
    assert analysis.params == 25_557_032
    assert analysis.params == sum(p.numel() for p in _model("resnet50").parameters())


def test_lc_evaluate_of_an_analysis_expression_carries_its_guards():
    # issue 17's trust defect: lc.evaluate (not only Analysis.evaluate) of vgg11's closed form
    # refuses sizes below the guard (five 2x2 pools: H, W >= 32) and is exact above it
    analysis = _analysis("vgg11")
    macs = analysis.cost("macs")
    with pytest.raises(lc.DomainError, match="H >= 32"):
        lc.evaluate(macs, {"N": 1, "H": 31, "W": 40})
    counted = lc.count(_model("vgg11"), (1, 3, 40, 57))
    assert lc.evaluate(macs, {"N": 1, "H": 40, "W": 57}) == counted.cost("macs")


def test_evaluating_outside_the_guards_names_the_guard():
    analysis = _analysis("resnet18")
    assert analysis.guards, "torch records where the strided stages stay larger than 1x1"
    analysis.evaluate({"N": 1, "H": 33, "W": 33})  # 33 -> 17 -> 9 -> 5 -> 3 -> 2: inside
    # H = 32: after five halvings of the stem and stages the feature map is 1 high, a shape
    # torch specialised away while tracing (the guard (H - 1)//32 + 1 != 1)
    with pytest.raises(lc.EvaluationError, match=r"guard .*H.*fails at .*H=32"):
        analysis.evaluate({"N": 1, "H": 32, "W": 64})
    with pytest.raises(lc.EvaluationError, match="missing"):
        analysis.evaluate({"N": 1, "H": 64})


def test_guards_are_shown_simplified_and_evaluated_as_recorded():
    from layercost_sym.evaluation import check_condition

    analysis = _analysis("resnet18")
    # torch records (H - 1)//32 + 1 != 1 for the last stage (and the like for every stride):
    # the feature map stays larger than 1x1 exactly when H >= 33
    assert "floor(H/32 - 1/32) + 1 != 1" in analysis.raw_range
    assert analysis.range == ["H >= 33", "W >= 33"]
    for raw, shown in zip(analysis.guards, analysis.conditions, strict=True):
        for size in (1, 2, 3, 31, 32, 33, 34, 65):
            at = {"N": 1, "H": size, "W": size}
            assert check_condition(raw, at) == check_condition(shown, at), (raw, shown, size)
    analysis.evaluate({"N": 1, "H": 33, "W": 33})
    message = r"guard H >= 33 \(recorded as floor\(H/32 - 1/32\) \+ 1 != 1\) fails at H=32"
    with pytest.raises(lc.EvaluationError, match=message):
        analysis.evaluate({"N": 1, "H": 32, "W": 33})


_X = sympy.Symbol("H", integer=True, positive=True)
_RELATIONS = [sympy.Eq, sympy.Ne, sympy.Lt, sympy.Le, sympy.Gt, sympy.Ge]


@settings(max_examples=60)
@given(
    sign=st.sampled_from([1, -1]),
    a=st.integers(1, 5),
    b=st.integers(-6, 6),
    c=st.integers(1, 9),
    inner=st.integers(1, 4),
    d=st.integers(-3, 3),
    rel=st.sampled_from(_RELATIONS),
    rhs=st.integers(-4, 12),
)
def test_simplified_guard_holds_exactly_where_the_guard_holds(sign, a, b, c, inner, d, rel, rhs):
    from layercost_sym.evaluation import check_condition
    from layercost_sym.torchtools.symbolic import simplify_guard

    # monotone floors of the kind strides and pools make: floor((floor(a*H + b)/c - d)/inner)
    pooled = sympy.floor((sympy.floor(sympy.Rational(a, 2) * _X + b) / c + d) / inner)
    guard = rel(sign * pooled + d, rhs)
    shown = simplify_guard(guard)
    if shown is sympy.true or shown is sympy.false:
        values = [bool(shown)] * 200
    else:
        values = [check_condition(shown, {"H": h}) for h in range(1, 201)]
    assert values == [check_condition(guard, {"H": h}) for h in range(1, 201)]


class Scale(nn.Module):
    """A custom layer with its own parameter and arithmetic: no rule describes it."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels, 1, 1))

    def forward(self, x):
        return x * self.weight


class WithCustom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.scale = Scale(4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        x = self.scale(self.conv(x))
        return self.head(x.mean((2, 3)))


def test_custom_module_is_costed_by_its_operators_and_its_parameters_still_count():
    model = WithCustom().eval()
    analysis = lc.analyze(model, ("N", 3, "H", "W"))
    # its multiply has a functional rule (mul): costed, so not unsupported, but listed apart
    assert analysis.unsupported == []
    listed = analysis.costed_by_operators
    assert [(m.name, m.what, m.ops) for m in listed] == [("scale", "Scale", ("mul",))]
    # conv 3*4*9 + 4, scale 4, head 4*2 + 2
    assert analysis.params == 112 + 4 + 10
    # the totals equal the counters
    _assert_matches(analysis, model, [(2, 3, 9, 11)], {"N": 2, "H": 9, "W": 11})
    (row,) = [r for r in analysis.rows() if r[0] == "scale:mul"]
    assert row[1] == "Scale (by its ops: mul)"
    data = analysis.to_json()
    assert data["unsupported"] == []
    assert [m["what"] for m in data["costed_by_operators"]] == ["Scale"]


class ScaleThenTopk(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(3))

    def forward(self, x):
        return torch.topk(x * self.weight, 2, 1).values  # mul has a rule, topk none


def test_a_module_with_an_uncosted_operator_stays_unsupported():
    analysis = lc.analyze(ScaleThenTopk(), ("N", 3))
    assert analysis.costed_by_operators == []
    kinds = {(u.kind, u.counted) for u in analysis.unsupported}
    assert kinds == {("op", False), ("module", False)}
    (module,) = [u for u in analysis.unsupported if u.kind == "module"]
    assert module.what == "ScaleThenTopk" and "topk" in module.detail


class UncostedOp(nn.Module):
    def forward(self, x):
        return torch.topk(x, 2, 1).values  # no functional rule and no decomposition


def test_an_operator_without_a_rule_is_listed_not_counted_as_zero():
    analysis = lc.analyze(nn.Sequential(nn.Linear(3, 5), UncostedOp()), ("N", 3))
    assert [u.kind for u in analysis.unsupported] == ["op"]
    assert "topk" in analysis.unsupported[0].what
    assert not analysis.unsupported[0].counted


class EmptySlice(nn.Module):
    """Phi-3's rotary split: ``q[..., rotary_dim:]`` is empty where the rotary part is the
    whole head, and is concatenated back."""

    def forward(self, x):  # x: (N, 8)
        rotated, passed = x[..., :8], x[..., 8:]
        return torch.cat([rotated * 2, passed], dim=-1)


def test_an_operator_writing_no_element_costs_nothing_and_the_rest_is_counted():
    # the slice of size 0 was bound to its rule, whose dimensions are positive: ShapeError
    analysis = lc.analyze(EmptySlice(), ("N", 8))
    assert not analysis.unsupported
    counted = lc.count(EmptySlice(), torch.randn(3, 8))
    for convention in ("exact", "torch"):
        assert analysis.evaluate({"N": 3}, convention) == counted.cost(convention)
    assert analysis.evaluate({"N": 3}, "exact") == 3 * 8  # the multiply, one per element


class Functional(nn.Module):
    """The functional ops real models call between modules."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(6, 6)
        self.norm_weight = nn.Parameter(torch.ones(6))

    def forward(self, x):  # x: (N, L, 6)
        y = F.gelu(self.proj(x)) + x
        y = F.layer_norm(y, (6,), self.norm_weight)
        scores = torch.softmax(y @ y.transpose(1, 2), dim=-1)  # bmm, _softmax
        z = torch.cat([scores @ y, F.silu(y), torch.relu(y)], dim=-1)
        z = torch.einsum("nlc,nmc->nlm", z, z)  # bmm
        pooled = z.mean(dim=1)
        return torch.flatten(pooled, 0) * 2


def test_functional_operators_have_rules_and_match_the_counters():
    model = Functional()
    analysis = lc.analyze(model, ("N", "L", 6))
    assert not analysis.unsupported
    rules = {layer.rule for layer in analysis.layers}
    assert {
        "Linear",
        "gelu",
        "add",
        "native_layer_norm",
        "bmm",
        "_softmax",
        "cat",
        "silu",
        "relu",
        "mean",
        "mul",
    } <= rules
    for n, length in [(1, 1), (2, 5), (3, 7)]:
        _assert_matches(analysis, model, [(n, length, 6)], {"N": n, "L": length})


class FunctionalConvPool(nn.Module):
    """Convolutions and pools called as functions between modules, with their options."""

    def __init__(self) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(8, 3, 3, 3))
        self.b1 = nn.Parameter(torch.randn(8))
        self.w2 = nn.Parameter(torch.randn(8, 2, 3, 3))  # groups=4
        self.w3 = nn.Parameter(torch.randn(8, 8, 3))
        self.wt = nn.Parameter(torch.randn(8, 8, 2, 2))  # transposed: (C_in, C_out/g, k, k)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = F.relu(F.conv2d(x, self.w1, self.b1, stride=2, padding=1))
        x = F.conv2d(x, self.w2, None, padding=1, groups=4)
        x = F.max_pool2d(x, 3, 2, 1, ceil_mode=True)
        y = F.avg_pool2d(x, 2, 1, 1, count_include_pad=False)
        y = F.conv_transpose2d(y, self.wt, stride=2)
        z = F.adaptive_avg_pool2d(x, (3, 2)).sum() + F.adaptive_max_pool2d(x, 2).sum()
        v = F.conv1d(x.mean(2), self.w3, padding=1)
        return self.fc(F.adaptive_avg_pool2d(y, 1).flatten(1)) + z + v.mean()


def test_convolutions_and_pools_called_as_functions_are_costed_by_their_module_rules():
    torch.manual_seed(0)
    model = FunctionalConvPool()
    analysis = lc.analyze(model, ("N", 3, "H", "W"))
    assert not analysis.unsupported  # every operator costed (the model is no leaf module)
    rules = {layer.rule.split(".")[0] for layer in analysis.layers}
    assert {
        "Conv2d",
        "ConvTranspose2d",
        "Conv1d",
        "MaxPool2d",
        "AvgPool2d",
        "AdaptiveAvgPool2d",
        "AdaptiveMaxPool2d",
    } <= rules
    # the peer tools count a function call as their [functional_calls] tables state (not
    # always as the module: tests/test_peers_functional.py); seed is the module's, not stated
    # for a function
    assert analysis.conventions == ("exact", "fvcore", "macs", "ptflops", "thop", "torch")
    for n, h, w in [(1, 17, 19), (2, 33, 21), (3, 40, 41)]:
        _assert_matches(analysis, model, [(n, 3, h, w)], {"N": n, "H": h, "W": w})


class PerSampleConv(nn.Module):
    """timm's CondConv2d in small: each sample mixes its own kernel from 2 experts and the
    batch runs as one convolution of N*g groups, so the weight's first dimension and the groups
    are sizes in N (weight (N*8, 2, 3, 3), groups 2*N)."""

    def __init__(self):
        super().__init__()
        self.route = nn.Linear(4, 2)
        self.experts = nn.Parameter(torch.randn(2, 8 * 2 * 3 * 3))

    def forward(self, x):
        n, c, h, w = x.shape
        kernels = (self.route(x.mean((2, 3))) @ self.experts).view(n * 8, 2, 3, 3)
        out = F.conv2d(x.reshape(1, n * c, h, w), kernels, padding=1, groups=2 * n)
        return out.view(n, 8, out.shape[-2], out.shape[-1])


def test_a_convolution_whose_groups_and_weight_are_sizes_in_the_batch_stays_symbolic():
    # was: ShapeError "module.groups is 4, not an integer" (the groups a SymInt), or N pinned
    torch.manual_seed(0)
    model = PerSampleConv().eval()
    analysis = lc.analyze(model, ("N", 4, "H", "W"))
    assert not analysis.unsupported and not analysis.pinned
    assert "N" in {str(s) for s in analysis.cost("macs").free_symbols}
    for n, h, w in [(1, 9, 11), (2, 13, 8), (3, 7, 7)]:
        _assert_matches(analysis, model, [(n, 4, h, w)], {"N": n, "H": h, "W": w})


def test_a_module_called_twice_counts_its_cost_twice_and_its_parameters_once():
    linear = nn.Linear(4, 4)
    model = nn.Sequential(linear, nn.ReLU(), linear)
    analysis = lc.analyze(model, ("N", 4))
    n = sympy.Symbol("N", integer=True, positive=True)
    assert analysis.params == 20
    # each call: N*4*(2*4 - 1 + 1) = 32N; relu 4N
    assert sympy.expand(analysis.cost("exact") - 68 * n) == 0
    _assert_matches(analysis, model, [(3, 4)], {"N": 3})


def test_token_ids_and_a_transformer_layer():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Embedding(50, 16),
        nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True),
        nn.Linear(16, 50),
    ).eval()
    analysis = lc.analyze(model, ("N", "L"), dtype=torch.long)
    assert not analysis.unsupported
    for n, length in [(1, 3), (2, 9)]:
        ids = torch.randint(0, 50, (n, length))
        _assert_matches(analysis, model, [ids], {"N": n, "L": length})


def test_layers_rows_and_conventions():
    analysis = _analysis("resnet18")
    names = [layer.name for layer in analysis.layers]
    assert names[0] == "conv1" and "fc" in names
    assert "layer1.0:add" in names  # the residual add, seen as an operator
    assert set(CONVENTIONS) <= set(analysis.conventions)
    assert analysis.flops == analysis.cost("exact")
    fc = next(layer for layer in analysis.layers if layer.name == "fc")
    n = sympy.Symbol("N", integer=True, positive=True)
    assert fc.cost("macs") == 512 * 1000 * n


def test_import_does_not_import_torch():
    code = "import sys, layercost_sym; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_table_json_and_latex():
    analysis = _analysis("resnet18")
    at = {"N": 1, "H": 224, "W": 224}
    table = analysis.table(depth=1, convention="macs", at=at)
    # torchvision documents ResNet-18 at 224x224 as 1.81 GFLOPS (multiply-adds)
    assert table.splitlines()[-1].split()[-1] == "1814073344"
    assert [line.split()[0] for line in table.splitlines()[1:5]] == [
        "conv1",
        "bn1",
        "relu",
        "maxpool",
    ]
    data = analysis.to_json()
    for convention in CONVENTIONS:  # expression text round-trips through lc.evaluate
        assert lc.evaluate(data["costs"][convention], at) == analysis.evaluate(at, convention)
    assert lc.evaluate(data["params"], {}) == analysis.evaluate(at, quantity="params")
    from layercost_sym.evaluation import check_condition
    from layercost_sym.parsing import parse_condition

    assert all(check_condition(parse_condition(g), at) for g in data["guards"])
    assert not check_condition(parse_condition(data["guards"][-1]), {"N": 1, "H": 32, "W": 32})
    latex = analysis.to_latex()
    assert latex.startswith(r"\begin{table}") and r"\lfloor" in latex and "total" in latex


@pytest.mark.parametrize(
    ("name", "spec", "at"),
    [
        ("densenet_small", ("N", 3, "H", "W"), {"N": 2, "H": 65, "W": 67}),
        ("convnext_tiny", ("N", 3, "H", "W"), {"N": 2, "H": 65, "W": 97}),
        ("vit_b_16", ("N", 3, 224, 224), {"N": 1}),  # ViT accepts its image size only
    ],
)
def test_more_torchvision_models(name, spec, at):
    model = _model(name)
    analysis = lc.analyze(model, spec)
    # convnext's LayerNorm2d overrides LayerNorm.forward (it permutes around F.layer_norm):
    # listed, and costed from its operators
    assert analysis.unsupported == []
    assert {m.what for m in analysis.costed_by_operators} <= {"LayerNorm2d"}
    shape = tuple(at.get(d, d) if isinstance(d, str) else d for d in spec)
    _assert_matches(analysis, model, [shape], at)


def test_cli_model_command(capsys):
    from layercost_sym.cli import main

    argv = ["model", "torchvision.models:resnet18", "--input", "N,3,H,W"]
    assert main([*argv, "--at", "N=1,H=224,W=224", "--convention", "macs", "--depth", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].split()[-1] == "1814073344"
    assert main([*argv, "--json", "--at", "N=2,H=65,W=97"]) == 0
    import json

    data = json.loads(capsys.readouterr().out)
    counted = lc.count(_model("resnet18"), (2, 3, 65, 97))
    assert data["values"]["torch"] == counted.cost("torch")
    assert main([*argv, "--at", "N=1,H=32,W=224"]) == 2
    assert "guard H >= 33 (recorded as floor(H/32 - 1/32) + 1 != 1) fails at H=32" in (
        capsys.readouterr().err
    )


@cache
def _gpt2():
    import transformers  # a test dependency (pyproject's test extra): never skipped

    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(use_cache=False)).eval()
    return model, lc.analyze(model, ("N", "L"), dtype=torch.long, use_cache=False)


@settings(max_examples=3, deadline=None)
@given(n=st.integers(1, 3), length=st.integers(1, 40))
def test_gpt2_closed_form_at_drawn_shapes(n, length):
    model, analysis = _gpt2()
    counted = lc.count(model, torch.randint(0, 50257, (n, length)), use_cache=False)
    at = {"N": n, "L": length}
    if length == 1:
        # torch traces sizes from 2, and at L = 1 transformers' SDPA wrapper passes
        # is_causal=False: the real run skips the causal mask's 12*N + 4 operations per layer,
        # so the closed form refuses L = 1 (a trace at L = 1 showed the difference)
        with pytest.raises(lc.DomainError, match="L >= 2"):
            analysis.evaluate(at, "exact")
        return
    assert analysis.evaluate(at, quantity="params") == counted.params == 124_439_808  # tied lm_head
    for convention in CONVENTIONS:
        assert analysis.evaluate(at, convention) == counted.cost(convention), convention


def test_gpt2_runs_the_real_mask_branch_and_states_its_length_limit():
    _, analysis = _gpt2()
    # the mask code's packed-sequence check resolved as in a real run (is_causal, no explicit
    # mask): every operator has a rule; GPT-2's Conv1D modules are costed by their ops (addmm)
    assert analysis.unsupported == []
    # Conv1D.forward: view, addmm, view
    assert {(m.what, m.ops) for m in analysis.costed_by_operators} == {
        ("Conv1D", ("view", "addmm"))
    }
    assert len(analysis.costed_by_operators) == 12 * 4  # c_attn, c_proj, c_fc, mlp.c_proj
    # position ids arange(L) index the 1024-row position embedding wpe; a one-token call
    # builds no causal mask (a branch of its own, tests/test_size_one.py)
    assert analysis.range == ["L >= 2", "L <= 1024"]
    analysis.evaluate({"N": 1, "L": 1024})
    with pytest.raises(lc.EvaluationError, match=r"guard L <= 1024 .*fails at L=1025.*wpe"):
        analysis.evaluate({"N": 1, "L": 1025})


def test_gpt2_forward_cost_is_2n_per_token_plus_the_attention_term():
    _, analysis = _gpt2()
    n, length = sympy.symbols("N L", integer=True, positive=True)
    # Kaplan et al. (2020), forward pass: 2 * N_params per token (the matmul weights: per layer
    # qkv 768 x 2304, out 768 x 768, MLP 2 x 768 x 3072; the tied 768 x 50257 output
    # projection; not the embeddings' lookups) plus the attention term: per layer, token and
    # key, 2 * 768 FLOPs for the score q.k and 2 * 768 for the weighted value (Kaplan's
    # 2 * n_layer * n_ctx * d_attn counts the scores alone).
    weights = 12 * (768 * 3 * 768 + 768 * 768 + 2 * 768 * 3072) + 768 * 50257
    expected = 2 * weights * n * length + 12 * (2 + 2) * 768 * n * length**2
    assert sympy.expand(analysis.cost("torch") - expected) == 0


def test_bert_closed_form_equals_counters():
    import transformers

    torch.manual_seed(0)
    model = transformers.BertModel(transformers.BertConfig()).eval()
    analysis = lc.analyze(model, ("N", "L"), dtype=torch.long)
    assert not analysis.unsupported
    assert "L <= 512" in analysis.range  # the position embeddings' size, a guard torch records
    for n, length in [(1, 5), (2, 9)]:
        ids = torch.randint(0, 30522, (n, length))
        _assert_matches(analysis, model, [ids], {"N": n, "L": length})


class _Op(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn
        self.w = nn.Parameter(torch.randn(6, 5))  # for the matrix products
        self.b = nn.Parameter(torch.randn(5))

    def forward(self, x):  # x: (N, 6)
        return self.fn(self, x)


# functional rule -> a forward that runs that ATen operator on x of shape (N, 6).  Not here:
# rules for operators that torch rewrites before they reach a dispatch mode (reshape, stack,
# square, true_divide, softmax, _unsafe_view appear only where a decomposition calls them).
FUNCTIONAL = {
    "add": lambda m, x: x + x,
    "sub": lambda m, x: x - 1,
    "rsub": lambda m, x: 1 - x,
    "mul": lambda m, x: x * x,
    "div": lambda m, x: x / 3,
    "neg": lambda m, x: -x,
    "reciprocal": lambda m, x: x.reciprocal(),
    "rsqrt": lambda m, x: x.rsqrt(),
    "sqrt": lambda m, x: x.sqrt(),
    "exp": lambda m, x: x.exp(),
    "log": lambda m, x: x.log(),
    "log1p": lambda m, x: x.log1p(),
    "erf": lambda m, x: x.erf(),
    "tanh": lambda m, x: x.tanh(),
    "sigmoid": lambda m, x: x.sigmoid(),
    "pow": lambda m, x: x**3,
    "abs": lambda m, x: x.abs(),
    "relu": lambda m, x: F.relu(x),
    "gt": lambda m, x: x > 0,
    "ge": lambda m, x: x >= 0,
    "lt": lambda m, x: x < 0,
    "le": lambda m, x: x <= 0,
    "eq": lambda m, x: x == 0,
    "ne": lambda m, x: x != 0,
    "where": lambda m, x: torch.where(x.bool(), x, 0.0),
    "maximum": lambda m, x: torch.maximum(x, x[:1]),
    "minimum": lambda m, x: x.minimum(x),
    "clamp_min": lambda m, x: x.clamp_min(0),
    "clamp_max": lambda m, x: x.clamp_max(0),
    "logical_not": lambda m, x: x.bool().logical_not(),
    "logical_and": lambda m, x: x.bool().logical_and(x.bool()),
    "logical_or": lambda m, x: x.bool().logical_or(x.bool()),
    "bitwise_or": lambda m, x: x.bool() | x.bool(),
    "bitwise_and": lambda m, x: x.bool() & (x > 0),
    "bitwise_xor": lambda m, x: x.bool() ^ (x > 0),
    "bitwise_not": lambda m, x: ~(x > 0),
    "cos": lambda m, x: x.cos(),
    "sin": lambda m, x: x.sin(),
    "all": lambda m, x: (x > 0).all(1),
    "any": lambda m, x: (x > 0).any(),
    "isnan": lambda m, x: x.isnan(),
    "view": lambda m, x: x.view(-1),
    "permute": lambda m, x: x.permute(1, 0),
    "transpose": lambda m, x: x.transpose(0, 1),
    "t": lambda m, x: x.t(),
    "expand": lambda m, x: x[None].expand(2, -1, -1),
    "unsqueeze": lambda m, x: x[None],
    "squeeze": lambda m, x: x[:, :1].squeeze(1),
    "select": lambda m, x: x[:, 0],
    "slice": lambda m, x: x[:, 1:],
    "clone": lambda m, x: x.clone(),
    "_to_copy": lambda m, x: x.double(),
    "cat": lambda m, x: torch.cat([x, x], 1),
    "sum": lambda m, x: x.sum(1),
    "amax": lambda m, x: x.amax(0),
    "max": lambda m, x: x.max(1)[0] + x.max(),
    "mean": lambda m, x: x.mean(),
    "var": lambda m, x: x.var(1),
    "mm": lambda m, x: x @ m.w,
    "addmm": lambda m, x: torch.addmm(m.b, x, m.w),
    "bmm": lambda m, x: x[None] @ x.t()[None],
    "baddbmm": lambda m, x: torch.baddbmm(x[None, :, :1], x[None], x.t()[None]),
    "_softmax": lambda m, x: x.softmax(0),
    "_safe_softmax": lambda m, x: torch.ops.aten._safe_softmax(x, -1),
    "native_layer_norm": lambda m, x: F.layer_norm(x, (6,), m.w[:, 0], None),
    "gelu": lambda m, x: F.gelu(x),
    "gelu.tanh": lambda m, x: F.gelu(x, approximate="tanh"),
    "silu": lambda m, x: F.silu(x),
    "hardswish": lambda m, x: F.hardswish(x),
}


@pytest.mark.parametrize("name", sorted(FUNCTIONAL))
def test_functional_rule_equals_the_counters(name):
    model = _Op(FUNCTIONAL[name])
    analysis = lc.analyze(model, ("N", 6))
    # _Op itself (a leaf with parameters and no rule) is listed; no operator is
    assert analysis.unsupported == []
    assert [m.what for m in analysis.costed_by_operators] == ["_Op"]
    assert name in {layer.rule for layer in analysis.layers}
    for n in (1, 2, 5):
        counted = lc.count(model, (n, 6))
        for convention in CONVENTIONS:
            assert analysis.evaluate({"N": n}, convention) == counted.cost(convention)
        try:
            eager = analysis.evaluate({"N": n}, "eager", quantity="bytes")
        except lc.DomainError as exc:  # maximum(x, x[:1]): one tensor to torch at N = 1
            assert name == "maximum" and n == 1 and "one tensor in torch" in str(exc)
            eager = lc.analyze(model, (n, 6)).evaluate({}, "eager", quantity="bytes")
        assert eager == counted.quantity("bytes", "eager")
    # the rule's bytes, bound at the call with symbolic N, are what the call's own tensors give
    symbols = glossary().symbols
    for layer in (x for x in analysis.layers if x.rule == name):
        at = {symbols[k]: v for k, v in layer.binding.items()}
        for convention in ("min", "eager"):
            stated = lc.rule(name).quantity("bytes", convention).xreplace(at)
            assert sympy.simplify(stated - layer.own[("bytes", convention)]) == 0, convention


def _backward_flops(model, inputs, **kwargs):
    """FlopCounterMode around the forward pass and ``loss.backward()`` (math SDPA backend)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        out = model(inputs, **kwargs)
        out = out if isinstance(out, torch.Tensor) else out[0]
        out.sum().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def test_backward_of_resnet18_equals_flop_counter_around_loss_backward():
    model = _model("resnet18")
    analysis = lc.analyze(model, ("N", 3, "H", "W"), backward=True)
    for n, h, w in [(2, 65, 97), (1, 33, 41)]:
        at = {"N": n, "H": h, "W": w}
        expected = _backward_flops(model, torch.randn(n, 3, h, w))
        assert analysis.evaluate(at, "torch") == expected
        assert analysis.evaluate(at, "macs") * 2 == expected
        # the first convolution's input needs no gradient: less than 3x the forward pass
        assert expected < 3 * _analysis("resnet18").evaluate(at, "torch")
    # under exact too (every call's rule states its backward; the residual stream's gradients
    # are added): the op counter's forward plus backward pass
    at = {"N": 1, "H": 33, "W": 41}
    counted = lc.count(model, (1, 3, 33, 41), backward=True)
    expected = counted.cost("exact") + counted.quantity("backward", "exact")
    assert analysis.evaluate(at, "exact") == expected


def test_gpt2_training_step_is_6n_per_token_plus_the_attention_term():
    model, _ = _gpt2()
    analysis = lc.analyze(model, ("N", "L"), dtype=torch.long, use_cache=False, backward=True)
    n, length = sympy.symbols("N L", integer=True, positive=True)
    weights = 12 * (768 * 3 * 768 + 768 * 768 + 2 * 768 * 3072) + 768 * 50257
    # Kaplan et al.: C = 6 N per token (forward 2N, backward 4N), the attention term tripled too
    expected = 6 * weights * n * length + 3 * 12 * (2 + 2) * 768 * n * length**2
    assert sympy.expand(analysis.cost("torch") - expected) == 0
    for size, length_ in [(1, 4), (2, 9)]:
        ids = torch.randint(0, 50257, (size, length_))
        assert analysis.evaluate({"N": size, "L": length_}, "torch") == _backward_flops(
            model, ids, use_cache=False
        )


class _RankChosen(torch.nn.Module):
    """Modules whose rule variant depends on the rank of their input: a 2-d EmbeddingBag (bags
    as rows), GLU on a 2-d input, nearest Upsample on a 3-d input."""

    def __init__(self):
        super().__init__()
        self.bag = torch.nn.EmbeddingBag(50, 8, mode="mean")
        self.glu = torch.nn.GLU(dim=1)
        self.up = torch.nn.Upsample(scale_factor=2)

    def forward(self, x):
        return self.up(self.glu(self.bag(x)).unsqueeze(1))


def test_variants_chosen_by_input_rank():
    model = _RankChosen()
    # the batch is fixed: the 2-d bag's offsets arange(0, N*L, L) make torch pin a symbolic N
    analysis = lc.analyze(model, (3, "L"), dtype=torch.long)
    assert not analysis.unsupported
    rules = {row.name: row.rule for row in analysis.layers}
    assert rules["bag"].endswith("_2d") and rules["up"].startswith("Upsample.nearest_1d")
    assert analysis.params == sum(p.numel() for p in model.parameters())
    for length in (1, 4, 9):
        x = torch.randint(0, 50, (3, length))
        for convention in ("exact", "macs", "torch"):
            counted = lc.count(model, x, convention=convention).flops
            assert analysis.evaluate({"L": length}, convention) == counted


# -- the rule column: module rules by name, operators summarised ------------------------------


def tiny_gpt2() -> nn.Module:
    """A small GPT2LMHeadModel (its Conv1D projections have no rule: costed by their addmm);
    also the factory of the CLI test."""
    import transformers

    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_embd=16, n_layer=2, n_head=2, n_positions=32, vocab_size=50, bos_token_id=0,
        eos_token_id=0, use_cache=False,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config).eval()


@cache
def _tiny_gpt2_analysis():
    return lc.analyze(tiny_gpt2(), ("N", "L"), dtype=torch.long, use_cache=False)


def test_rule_column_names_modules_costed_by_their_operators():
    analysis = _tiny_gpt2_analysis()
    assert analysis.unsupported == []
    names = {m.name for m in analysis.costed_by_operators}
    assert names == {
        f"transformer.h.{i}.{part}"
        for i in range(2)
        for part in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    }
    rows = {name: rule for name, rule, _params, _cost in analysis.rows()}
    assert rows["transformer.h.0.attn.c_attn:addmm"] == "Conv1D (by its ops: addmm)"
    # a module costed by its operators shows its parameters on its row: the rows add up
    model = tiny_gpt2()
    params = {name: p for name, _rule, p, _cost in analysis.rows(depth=3)}
    assert params["transformer.h.0"] == sum(p.numel() for p in model.transformer.h[0].parameters())
    assert sum(params.values()) == analysis.params == sum(p.numel() for p in model.parameters())
    for name, rule, _params, _cost in analysis.rows(depth=3):
        assert len(rule) <= 60, (name, rule)
    (block,) = [rule for name, rule, *_ in analysis.rows(depth=3) if name == "transformer.h.0"]
    # the block's ruled modules by name, the Conv1D class, then its other operators in brief
    assert block.startswith("LayerNorm, Dropout, Conv1D (by its ops: addmm)"), block
    assert "ops:" in block


def test_rule_column_of_swin_t_is_short():
    model = torchvision.models.swin_t(weights=None).eval()
    analysis = lc.analyze(model, (1, 3, 224, 224))
    for depth in (None, 1, 2, 3):
        for name, rule, _params, _cost in analysis.rows(depth=depth):
            assert len(rule) <= 60, (depth, name, rule)
            assert "Dropout.p0" not in rule, rule  # a module rule by its class
            # data movement is named last, after the operators that cost something (one call
            # per row at depth None: its own operator)
            assert depth is None or "_unsafe_view" not in rule, rule
    rules = {name: rule for name, rule, *_ in analysis.rows(depth=2)}
    # a Swin stage: LayerNorm, Linear, GELU, Dropout modules and a summary of its operators
    stage = rules["features.1"]
    assert stage.startswith("LayerNorm, ") and "Linear" in stage and "ops: " in stage, stage
    assert "swin_t" not in analysis.table(depth=2)  # smoke: the table prints
    assert max(len(line) for line in analysis.table(depth=2).splitlines()) < 160


class _Masked(nn.Module):
    """Attention with a mask: a causal attn_mask, or a key padding mask (through the encoder
    layer, which hands it to its self-attention)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.mha = nn.MultiheadAttention(8, 2, batch_first=True)
        self.enc = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)

    def forward(self, x):
        n, length, _ = x.shape
        if self.kind == "attn_mask":
            mask = torch.ones(length, length, dtype=torch.bool, device=x.device).triu(1)
            return self.mha(x, x, x, attn_mask=mask)[0]
        padding = torch.zeros(n, length, dtype=torch.bool, device=x.device)
        return self.enc(x, src_key_padding_mask=padding)


@pytest.mark.parametrize("kind", ["attn_mask", "key_padding_mask"])
def test_attention_with_a_mask_its_rule_does_not_state_is_costed_by_its_operators(kind):
    # the rules state attention without masks; a mask adds work (its add to the scores, a
    # baddbmm), so such a call is costed by its operators, never by the rule's maskless value
    model = _Masked(kind).eval()
    analysis = lc.analyze(model, ("N", "L", 8))
    assert analysis.unsupported == []
    why = {m.name: m.detail for m in analysis.costed_by_operators}
    assert kind in why["mha" if kind == "attn_mask" else "enc.self_attn"]
    for n, length in [(2, 5), (3, 3)]:
        counted = lc.count(model, (n, length, 8))
        at = {"N": n, "L": length}
        assert analysis.params == counted.quantity("params", "count")
        for convention in CONVENTIONS:
            assert analysis.evaluate(at, convention) == counted.cost(convention)
        assert analysis.evaluate(at, "eager", quantity="bytes") == counted.quantity(
            "bytes", "eager"
        )


def test_bind_refuses_a_mask_its_rule_does_not_state():
    mha, x = nn.MultiheadAttention(8, 2).eval(), torch.randn(5, 3, 8)
    mask = torch.zeros(5, 5)
    # the mask's add: N*h*Q*S = 3*2*5*5 = 150 operations the rule does not state
    assert (
        lc.count(mha, x, x, x, attn_mask=mask).cost("exact") == lc.bind(mha, x, x, x).cost() + 150
    )
    with pytest.raises(lc.ShapeError, match="attn_mask"):
        lc.bind(mha, x, x, x, attn_mask=mask)


class Embedding(torch.nn.Module):  # a model's own class named like torch's: a strided downsampler
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Conv2d(3, 8, 4, stride=4)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


def test_a_class_named_like_a_torch_class_is_not_costed_by_its_rule():
    # issue 17, cause 6: matched by name, torch's Embedding rule did not bind and the
    # convolution inside went uncounted; the class torch defines is what selects a rule
    model = torch.nn.Sequential(Embedding(), torch.nn.LayerNorm(8))
    analysis = lc.analyze(model, ("N", 3, "H", "W"))
    assert not analysis.unsupported
    assert analysis.layers[0].rule.startswith("Conv2d")  # the convolution inside, by its rule
    for n, h, w in [(1, 8, 8), (2, 12, 20)]:
        counted = lc.count(model, (n, 3, h, w))
        at = {"N": n, "H": h, "W": w}
        assert analysis.evaluate(at, "exact") == counted.cost("exact")
        assert analysis.evaluate(at, "torch") == counted.cost("torch")


class OneGroupNorm(torch.nn.GroupNorm):  # timm's GroupNorm1: F.group_norm with one group
    def __init__(self, channels: int) -> None:
        super().__init__(1, channels)

    def forward(self, x):
        return torch.nn.functional.group_norm(x, 1, self.weight, self.bias, self.eps)


class Spread(torch.nn.Module):  # a variance taken by hand, unbiased (timm's ScaledStdConv2d)
    def forward(self, x):
        return x - x.var(dim=(1, 2, 3), keepdim=True, unbiased=True)


def test_a_variance_is_costed_by_its_rule_where_torch_decomposes_to_it():
    # issue 17, cause 6 in the timm corpus (cpubone, nfnet): a group norm's decomposition runs
    # prims.var, which had no functional rule: listed unsupported, its work not counted
    model = torch.nn.Sequential(OneGroupNorm(4), Spread())
    analysis = lc.analyze(model, ("N", 4, "H", "W"))
    assert not analysis.unsupported, analysis.unsupported
    for n, h, w in [(1, 3, 5), (2, 7, 4)]:
        counted = lc.count(model, (n, 4, h, w))
        at = {"N": n, "H": h, "W": w}
        assert analysis.evaluate(at, "exact") == counted.cost("exact")
        assert analysis.evaluate(at, "torch") == counted.cost("torch")
