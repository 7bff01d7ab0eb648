"""The ``ptflops`` convention (formulas/conventions/ptflops.toml) against ptflops itself.

For every drawn case the rule's ptflops cost, evaluated at ``lc.bind(module, *tensors)``, equals
what ``ptflops.get_model_complexity_info`` (pytorch backend) returns for the module on those
tensors.  The module is called through a keyword-only wrapper
(:func:`layercost_sym.testing._peers_ptflops.ptflops_count`), so ptflops' batch counter is 1 and
its number is the layer's own count; ``test_tool_divides_hooks_not_patches_by_batch`` shows the
division the tool applies otherwise.  Where ptflops raises (unbatched attention) or uses an axis
no rule symbol names (unbatched conv / recurrent input, activation modules in transformer
layers), the tests assert the tool's own behaviour, derived by hand.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import layercost_sym as lc
from layercost_sym.testing import strategies as S
from layercost_sym.testing._cases_activation import ELEMENTWISE
from layercost_sym.testing._cases_distance import cosine_similarity_cases
from layercost_sym.testing._peers_ptflops import ptflops_count, ptflops_direct
from layercost_sym.testing.strategies import LayerCase

TOOL = "ptflops"


def _predicted(module, tensors, case):
    binding = lc.bind(module, *tensors, **case.call_kwargs)
    return lc.evaluate(binding.rule.cost(TOOL, case.training), binding), binding


def _check(case, module=None, tensors=None):
    """The rule's ptflops cost == the tool's count; returns (count, binding)."""
    module = case.build() if module is None else module
    tensors = case.tensors() if tensors is None else tensors
    predicted, binding = _predicted(module, tensors, case)
    counted = ptflops_count(module, *tensors, **case.call_kwargs)
    assert predicted == counted, (binding.rule.name, dict(binding), predicted, counted)
    return counted, binding


# -- coverage --------------------------------------------------------------------------------------


def test_every_rule_and_variant_states_ptflops():
    missing = [
        r.name
        for name in lc.rules()
        for r in (lc.rule(name), *lc.rule(name).variants)
        if TOOL not in r.conventions
    ]
    assert missing == []


# -- properties, one group of strategies per family ------------------------------------------------

# Unbatched conv / recurrent input is left out here: the tool's hooks read input.shape[0] as the
# batch, a channel or sequence axis no rule symbol names (see the unbatched tests below).
CONV = {
    "conv1d": S.conv1d_cases(unbatched=False),
    "conv2d": S.conv2d_cases(unbatched=False),
    "conv3d": S.conv3d_cases(unbatched=False),
    "conv_transpose1d": S.conv_transpose1d_cases(unbatched=False),
    "conv_transpose2d": S.conv_transpose2d_cases(unbatched=False),
    "conv_transpose3d": S.conv_transpose3d_cases(unbatched=False),
}
LINEAR = {
    "linear": S.linear_cases(),
    "bilinear": S.bilinear_cases(),
    "identity": S.identity_cases(),
    "flatten": S.flatten_cases(),
    "unflatten": S.unflatten_cases(),
}
NORM = {
    "batchnorm1d": S.batchnorm1d_cases(),
    "batchnorm2d": S.batchnorm2d_cases(),
    "batchnorm3d": S.batchnorm3d_cases(),
    "sync_batchnorm": S.sync_batchnorm_cases(),
    "instance_norm": S.instance_norm_cases(),
    "group_norm": S.group_norm_cases(),
    "layer_norm": S.layer_norm_cases(),
    "rms_norm": S.rms_norm_cases(),
    "cross_map_lrn2d": S.cross_map_lrn2d_cases(),
}
ACTIVATION = {
    **{name.lower(): S.activation_cases(name) for name in ELEMENTWISE},
    "leaky_relu": S.leaky_relu_cases(),
    "prelu": S.prelu_cases(),
    "softmax": S.softmax_cases("Softmax"),
    "log_softmax": S.softmax_cases("LogSoftmax"),
    "softmin": S.softmax_cases("Softmin"),
    "softmax2d": S.softmax2d_cases(),
    "glu": S.glu_cases(),
}
POOLING = {
    **{f"max_pool{d}d": S.max_pool_cases(dims=d) for d in (1, 2, 3)},
    **{f"avg_pool{d}d": S.avg_pool_cases(dims=d) for d in (1, 2, 3)},
    **{f"lp_pool{d}d": S.lp_pool_cases(dims=d) for d in (1, 2, 3)},
    **{
        f"adaptive_{k.lower()}_pool{d}d": S.adaptive_pool_cases(dims=d, kind=k)
        for d in (1, 2, 3)
        for k in ("Avg", "Max")
    },
    **{f"fractional_max_pool{d}d": S.fractional_max_pool_cases(dims=d) for d in (2, 3)},
    **{f"max_unpool{d}d": S.max_unpool_cases(dims=d) for d in (1, 2, 3)},
}
RECURRENT = {
    "rnn": S.rnn_cases(unbatched=False),
    "lstm": S.lstm_cases(unbatched=False),
    "gru": S.gru_cases(unbatched=False),
    "rnn_cell": S.rnn_cell_cases(unbatched=False),
    "lstm_cell": S.lstm_cell_cases(unbatched=False),
    "gru_cell": S.gru_cell_cases(unbatched=False),
}


@st.composite
def pairwise_distance_cases(draw):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    kwargs = {
        "p": draw(st.sampled_from([2.0, 1.0, 0.0, float("inf")])),
        "keepdim": draw(st.booleans()),
    }
    return LayerCase("PairwiseDistance", kwargs, (shape, shape), training=draw(st.booleans()))


OTHER = {
    "dropout": S.dropout_cases(),
    "channel_dropout": S.channel_dropout_cases(),
    "embedding": S.embedding_cases(),
    "embedding_bag": S.embedding_bag_cases(),
    "pairwise_distance": pairwise_distance_cases(),
    "cosine_similarity": cosine_similarity_cases(),
    "upsample": S.upsample_cases(),
    "upsampling_nearest2d": S.upsampling_nearest2d_cases(),
    "upsampling_bilinear2d": S.upsampling_bilinear2d_cases(),
    "pixel_shuffle": S.pixel_shuffle_cases(),
    "pixel_unshuffle": S.pixel_unshuffle_cases(),
    "channel_shuffle": S.channel_shuffle_cases(),
    "padding": S.padding_cases(),
    "unfold": S.unfold_cases(),
    "fold": S.fold_cases(),
}


def _family_test(strategies, examples):
    @pytest.mark.parametrize("strategy", list(strategies.values()), ids=list(strategies))
    @settings(max_examples=examples)
    @given(data=st.data())
    def test(strategy, data):
        _check(data.draw(strategy))

    return test


test_conv_family = _family_test(CONV, 60)
test_linear_family = _family_test(LINEAR, 50)
test_norm_family = _family_test(NORM, 50)
test_activation_family = _family_test(ACTIVATION, 40)
test_pooling_family = _family_test(POOLING, 40)
test_recurrent_family = _family_test(RECURRENT, 60)
test_other_families = _family_test(OTHER, 50)


# -- attention -------------------------------------------------------------------------------------


def _mha_tensors(case):
    q, k, v = case.tensors()
    shared = case.notes["shared"]
    return (q, q, q) if shared == "qkv" else (q, k, k) if shared == "kv" else (q, k, v)


@settings(max_examples=100)
@given(case=S.mha_cases())
def test_multihead_attention(case):
    module, tensors = case.build(), _mha_tensors(case)
    if tensors[0].dim() == 2:  # unbatched: the hook reads q.shape[2] and ptflops gives up
        with pytest.raises(RuntimeError, match="IndexError"):
            ptflops_count(module, *tensors, **case.call_kwargs)
    else:
        _check(case, module, tensors)


_ACTIVATIONS = {
    "relu": lambda: "relu",
    "gelu": lambda: "gelu",
    "ReLU()": torch.nn.ReLU,
    "GELU()": torch.nn.GELU,
}


def _transformer(case):
    make = _ACTIVATIONS[case.kwargs["activation"]]
    module = getattr(torch.nn, case.name)(**{**case.kwargs, "activation": make()})
    return module.train(case.training)


@pytest.mark.parametrize(
    "strategy",
    [S.transformer_encoder_layer_cases(), S.transformer_decoder_layer_cases()],
    ids=["encoder", "decoder"],
)
@settings(max_examples=60)
@given(data=st.data())
def test_transformer_layers(strategy, data):
    case = data.draw(strategy)
    module, tensors = _transformer(case), case.tensors()
    if tensors[0].dim() == 2:  # unbatched: the inner MultiheadAttention hook raises
        with pytest.raises(RuntimeError, match="IndexError"):
            ptflops_count(module, *tensors)
        return
    predicted, _ = _predicted(module, tensors, case)
    counted = ptflops_count(module, *tensors)
    if case.kwargs["activation"].endswith("()"):
        # an activation module is hooked (numel) and calls the patched F.relu / F.gelu (numel):
        # 2 per element of the (tokens, d_ff) hidden tensor; a string activation is 0.  The rule's
        # act symbol is the same for both forms, so this is added here.
        tokens = math.prod(tensors[0].shape[:-1])
        predicted += 2 * tokens * case.kwargs["dim_feedforward"]
    assert predicted == counted


class scaled_dot_product_attention(torch.nn.Module):  # the rule's name: lc.bind finds it
    def forward(self, query, key, value, **kwargs):
        return F.scaled_dot_product_attention(query, key, value, **kwargs)


@settings(max_examples=40)
@given(case=S.sdpa_cases())
def test_sdpa(case):
    counted, _ = _check(case, scaled_dot_product_attention(), case.tensors())
    assert counted == 0


# -- whole models: the sum of the entries is the tool's number at batch 1 -------------------------


class _FunctionalBlock(torch.nn.Module):
    """Functional code between modules: F.relu, a residual +, torch.matmul."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.weight = torch.nn.Parameter(torch.randn(36, 5))

    def forward(self, x):
        y = F.relu(self.conv(x))
        y = y + self.conv(x)
        return torch.matmul(y.flatten(2), self.weight)  # (1, 4, 36) x (36, 5)


def test_analyze_functional_block_matches_the_tool():
    model, x = _FunctionalBlock().eval(), torch.randn(1, 3, 6, 6)
    analysis = lc.analyze(model, tuple(x.shape), convention=TOOL)
    # conv twice 2*(36*4*27 + 144); F.relu 144; + 0; matmul 144*5
    assert analysis.cost(TOOL) == ptflops_direct(model, x) == 2 * 4032 + 144 + 720


def test_analyze_resnet18_matches_the_tool():
    import torchvision

    torch.manual_seed(0)
    model, x = torchvision.models.resnet18(weights=None).eval(), torch.randn(1, 3, 32, 32)
    analysis = lc.analyze(model, tuple(x.shape), convention=TOOL)
    assert analysis.unsupported == []
    assert analysis.cost(TOOL) == ptflops_direct(model, x)


# -- the tool's quirks, derived by hand ------------------------------------------------------------


def test_tool_divides_hooks_not_patches_by_batch():
    # Called with one positional tensor, ptflops divides its hook total by len(tensor) but adds
    # its patched-functional total undivided.
    x = torch.randn(3, 2, 5, 5)
    conv = torch.nn.Conv2d(2, 4, 3)  # hooks only: 3*9*(2*9 + 1)*4 = 2052, per sample 684
    assert ptflops_count(conv, x) == 2052
    assert ptflops_direct(conv, x) == 2052 // 3
    relu = torch.nn.ReLU()  # hook 150 / 3 + patched F.relu 150
    assert ptflops_count(relu, x) == 300
    assert ptflops_direct(relu, x) == 50 + 150
    silu = torch.nn.SiLU()  # no hook, only the patched F.silu: not divided
    assert ptflops_direct(silu, x) == ptflops_count(silu, x) == 150


def test_tool_counts_training_mode_as_eval_and_leaves_eval():
    bn = torch.nn.BatchNorm2d(3).train()
    x = torch.randn(2, 3, 4, 4)
    assert ptflops_count(bn, x) == 2 * x.numel()  # affine: 2 per element, mode ignored
    assert not bn.training  # the tool called eval() and did not restore training mode
    drop = torch.nn.Dropout(0.5).train()
    assert ptflops_count(drop, x) == 0


@pytest.mark.parametrize("bias", [True, False])
def test_unbatched_conv_takes_channels_as_batch(bias):
    # conv hook: batch = input.shape[0] (C_in here), positions = prod(output.shape[2:]) (W_out
    # only), bias = batch * prod(output.shape[1:]).  Conv2d(3, 4, (2, 3)) on (3, 5, 6): output
    # (4, 4, 4): 3*4 positions * 6*3*4 MACs + bias 3*4*4.
    conv = torch.nn.Conv2d(3, 4, (2, 3), bias=bias)
    x = torch.randn(3, 5, 6)
    assert ptflops_count(conv, x) == 3 * 4 * (6 * 3 * 4) + bias * 3 * 16
    # the rule's N? reads the absent batch as 1: it states the batched count
    predicted = lc.evaluate(lc.rule("Conv2d").cost(TOOL), lc.bind(conv, x))
    assert predicted == 4 * 4 * 4 * (3 * 6 + bias)


def test_unbatched_recurrent_input_multiplies_by_input_size():
    # rnn hook: input.shape[0] * input.shape[1]; for unbatched (L, I) that is L*I, not L.
    gru = torch.nn.GRU(5, 2)
    x = torch.randn(3, 5)
    per_step = 3 * 2 * (5 + 2) + 7 * 2 + 6 * 2  # weights, 7H, two biases
    assert ptflops_count(gru, x) == 3 * 5 * per_step


def test_local_response_norm_counts_the_padded_channels():
    # input.mul(input), .mul(alpha), .add(k): numel each; avg_pool over the square padded by
    # size - 1 channels: numel*(C + size - 1)/C
    for shape, size in [((2, 3, 4), 1), ((2, 3, 4), 4), ((1, 5, 2, 3), 2), ((2, 2, 2, 2, 3), 5)]:
        module, x = torch.nn.LocalResponseNorm(size), torch.randn(shape)
        numel, c = x.numel(), shape[1]
        counted = ptflops_count(module, x)
        assert counted == 4 * numel + (size - 1) * numel // c
        assert lc.evaluate(lc.rule("LocalResponseNorm").cost(TOOL), lc.bind(module, x)) == counted


@settings(max_examples=40)
@given(case=S.local_response_norm_cases())
def test_local_response_norm_cases(case):
    module, (x,) = case.build(), case.tensors()
    predicted, _ = _predicted(module, (x,), case)
    assert predicted == ptflops_count(module, x)


def test_multihead_attention_need_weights_adds_patched_bmm_and_softmax():
    # E=4, h=2, Q=S=3, N=2, bias: per batch element Q*E 12, three squared widths 3*48,
    # bias 9*4 = 36, heads 2*(9*2 + 9 + 9*2) = 90, out-projection 3*4*5 = 60: 342, times 2 = 684.
    # need_weights: bmm (4, 3, 2) x (4, 2, 3) twice, 72 each, and softmax 4*3*3 = 36: 180.
    m = torch.nn.MultiheadAttention(4, 2)
    x = torch.randn(3, 2, 4)
    assert ptflops_count(m, x, x, x, need_weights=False) == 684
    assert ptflops_count(m, x, x, x) == 684 + 180


# -- functional rules (ATen operators between modules) ---------------------------------------------
# Each rule is run as a one-op module named after the rule (lc.bind finds rules by class name),
# calling the operator through the Python spelling its entry states; the rule's inputs are the
# output's shape and then the operands' shapes.
# shape -> (operands, forward(module, *operands), attributes).


def _unary(fn):
    return lambda shape: ((torch.randn(shape),), fn, {})


def _binary(fn):
    # operands of the same rank: ptflops' broadcast aligns shapes from the left (see below)
    last = lambda shape: (1,) * (len(shape) - 1) + shape[-1:]  # noqa: E731
    return lambda shape: ((torch.randn(shape), torch.randn(last(shape))), fn, {})


def _matrices(shape):
    n, k, m = (*shape, 2, 3, 2)[:3]
    return n, k, m


FUNCTIONAL = {
    **{
        op: _unary(lambda m, x, op=op: getattr(torch, op)(x))
        for op in (
            "abs",
            "floor",
            "erf",
            "exp",
            "log",
            "log1p",
            "neg",
            "reciprocal",
            "rsqrt",
            "sqrt",
            "tanh",
            "sigmoid",
            "square",
            "isnan",
            "logical_not",
            "cos",
            "sin",
        )
    },
    **{
        op: _binary(lambda m, x, y, op=op: getattr(torch, op)(x, y))
        for op in (
            "sub",
            "rsub",
            "div",
            "true_divide",
            "gt",
            "ge",
            "lt",
            "le",
            "eq",
            "ne",
            "maximum",
            "minimum",
            "logical_and",
            "logical_or",
        )
    },
    "add": _binary(lambda m, x, y: x + y),  # the residual-add spelling: not patched
    "mul": _binary(lambda m, x, y: x * y),
    "bitwise_or": _binary(lambda m, x, y: torch.bitwise_or(x > 0, y > 0)),
    "pow": _unary(lambda m, x: torch.pow(x, 2)),
    "clamp_min": _unary(lambda m, x: torch.clamp_min(x, 0.0)),
    "clamp_max": _unary(lambda m, x: torch.clamp_max(x, 0.0)),
    "where": _binary(lambda m, x, y: torch.where(x > 0, x, y)),
    "view": _unary(lambda m, x: x.view(-1)),
    "_unsafe_view": _unary(lambda m, x: torch.ops.aten._unsafe_view(x, (-1,))),
    "reshape": _unary(lambda m, x: x.reshape(-1)),
    "permute": _unary(lambda m, x: x.permute(*reversed(range(x.dim())))),
    "transpose": _unary(lambda m, x: x.transpose(0, -1)),
    "t": _unary(lambda m, x: x.reshape(x.shape[0], -1).t()),
    "expand": _unary(lambda m, x: x.expand(2, *x.shape)),
    "select": _unary(lambda m, x: x.select(0, 0)),
    "slice": _unary(lambda m, x: x[:1]),
    "squeeze": _unary(lambda m, x: x.squeeze()),
    "unsqueeze": _unary(lambda m, x: x.unsqueeze(0)),
    "clone": _unary(lambda m, x: x.clone()),
    "_to_copy": _unary(lambda m, x: x.to(torch.float64)),
    "cat": _binary(lambda m, x, y: torch.cat([x, x])),
    "stack": _binary(lambda m, x, y: torch.stack([x, x])),
    "sum": _unary(lambda m, x: torch.sum(x, 0)),
    "amax": _unary(lambda m, x: torch.amax(x, 0)),
    "max": _unary(lambda m, x: torch.max(x, 0)[0] + torch.max(x)),
    "all": _unary(lambda m, x: torch.all(x > 0, 0)),
    "any": _unary(lambda m, x: torch.any(x > 0, 0)),
    "bitwise_and": _binary(lambda m, x, y: torch.bitwise_and(x > 0, y > 0)),
    "bitwise_xor": _binary(lambda m, x, y: torch.bitwise_xor(x > 0, y > 0)),
    "bitwise_not": _unary(lambda m, x: torch.bitwise_not(x > 0)),
    "mean": _unary(lambda m, x: torch.mean(x, 0)),
    "var": _unary(lambda m, x: torch.var(x, 0, unbiased=False)),
    "mm": lambda s: (
        (torch.randn(_matrices(s)[:2]), torch.randn(_matrices(s)[1:])),
        lambda m, a, b: torch.mm(a, b),
        {},
    ),
    "bmm": lambda s: (
        (torch.randn(2, *_matrices(s)[:2]), torch.randn(2, *_matrices(s)[1:])),
        lambda m, a, b: torch.bmm(a, b),
        {},
    ),
    "baddbmm": lambda s: (
        (
            torch.randn(_matrices(s)[2]),
            torch.randn(2, *_matrices(s)[:2]),
            torch.randn(2, *_matrices(s)[1:]),
        ),
        lambda m, c, a, b: torch.baddbmm(c, a, b),
        {},
    ),
    "addmm": lambda s: (
        (
            torch.randn(_matrices(s)[2]),
            torch.randn(_matrices(s)[:2]),
            torch.randn(_matrices(s)[1:]),
        ),
        lambda m, c, a, b: torch.addmm(c, a, b),
        {},
    ),
    "relu": _unary(lambda m, x: F.relu(x)),
    "gelu": lambda s: (
        (torch.randn(s),),
        lambda m, x: F.gelu(x, approximate=m.approximate),
        {"approximate": "tanh" if len(s) % 2 else "none"},
    ),
    "silu": _unary(lambda m, x: F.silu(x)),
    "hardswish": _unary(lambda m, x: F.hardswish(x)),
    "_softmax": lambda s: ((torch.randn(s),), lambda m, x: F.softmax(x, m.dim), {"dim": -1}),
    "softmax": lambda s: ((torch.randn(s),), lambda m, x: F.softmax(x, m.dim), {"dim": 0}),
    "_safe_softmax": lambda s: (
        (torch.randn(s),),
        lambda m, x: torch._safe_softmax(x, m.dim),
        {"dim": 0},
    ),
    "native_layer_norm": lambda s: (
        (torch.randn(s),),
        lambda m, x: F.layer_norm(x, m.normalized_shape, m.weight, m.bias),
        {"normalized_shape": s[-1:], "weight": torch.ones(s[-1:]), "bias": None},
    ),
}


def _op_module(name, forward, attrs):
    module = type(name, (torch.nn.Module,), {"forward": forward})()
    for key, value in attrs.items():
        setattr(module, key, value)
    return module


def test_every_functional_rule_is_run():
    functional = {n for n in lc.rules() if "functional.toml" in str(lc.rule(n).source)}
    assert functional <= set(FUNCTIONAL)


@pytest.mark.parametrize("name", sorted(FUNCTIONAL))
@settings(max_examples=8)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple))
def test_functional_rules(name, shape):
    operands, forward, attrs = FUNCTIONAL[name](shape)
    module = _op_module(name, forward, attrs)
    out = module(*operands)
    rule = lc.rule(name)
    shapes = (out.shape, *(t.shape for t in operands))[: len(rule.inputs)]
    binding = lc.bind(module, *shapes)
    assert lc.evaluate(binding.rule.cost(TOOL), binding) == ptflops_count(module, *operands)


def test_operator_spellings_bypass_the_patches():
    x, y = torch.randn(2, 3), torch.randn(3)
    spelled = {
        # ptflops broadcasts from the left: (2, 3) with (3,) -> max(2, 3) * max(3, 1) = 9, not 6
        "torch.add": (lambda m, a, b: torch.add(a, b), 9),
        "a + b": (lambda m, a, b: a + b, 0),
        "torch.mul": (lambda m, a, b: a.mul(b), 9),
        "torch.mul same rank": (lambda m, a, b: a.mul(b[None]), 6),
        "a * b": (lambda m, a, b: a * b, 0),
        "F.relu": (lambda m, a, b: F.relu(a), 6),
        "torch.relu": (lambda m, a, b: torch.relu(a), 0),
        # numel(a) * b.shape[-1]: a matrix-vector product counts 6 * 3, not 6
        "torch.matmul": (lambda m, a, b: torch.matmul(a, b), 18),
        "a @ b": (lambda m, a, b: a @ b, 0),
    }
    for label, (forward, expected) in spelled.items():
        assert ptflops_count(_op_module("op", forward, {}), x, y) == expected, label
