"""The "thop" convention (formulas/conventions/thop.toml) against thop itself.

For every drawn case the rule's "thop" cost, evaluated at ``lc.bind`` of the module, equals the
MACs ``thop.profile`` returns for a fresh module of the same configuration on the same inputs
(thop adds and removes per-module counters, so the bound module is never the profiled one).
thop always profiles in eval mode under no_grad: training cases must give the same number.
"""

import itertools
import logging
import math
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import layercost_sym as lc
from layercost_sym.testing import strategies as S
from layercost_sym.testing._cases_activation import ELEMENTWISE, SOFTMAX_LIKE
from layercost_sym.testing._cases_distance import cosine_similarity_cases
from layercost_sym.testing._cases_resampling import PADDING_LAYERS, UPSAMPLE_MODES
from layercost_sym.testing._peers_thop import build, tensors, thop_macs
from layercost_sym.testing.strategies import LayerCase

EXAMPLES = 60  # per strategy; the whole file runs in well under two minutes


@pytest.fixture(autouse=True)
def _quiet_single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    logging.getLogger("thop").setLevel(logging.ERROR)  # max_norm / unknown-mode notices
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
    torch.set_num_threads(threads)


def _predict_and_count(case: LayerCase):
    """(rule's thop cost at the binding, thop's own count, binding)."""
    inputs = tensors(case)
    call = dict(case.call_kwargs)
    bind_call = dict(call)
    if case.notes.get("per_sample_weights"):
        call["per_sample_weights"] = torch.randn(inputs[0].shape)
        bind_call["per_sample_weights"] = 1
    binding = lc.bind(build(case), *inputs, **bind_call)
    predicted = lc.evaluate(binding.rule.cost("thop", case.training), binding)
    counted = thop_macs(build(case), *inputs, **call)
    return predicted, counted, binding


def _check(case: LayerCase):
    predicted, counted, binding = _predict_and_count(case)
    assert predicted == counted, (binding.rule.name, predicted, counted, dict(binding))
    # thop profiles in eval mode: the training-mode cost is the inference cost, where the
    # module can run in training mode at all (norms need more than one value per channel)
    rule = binding.rule
    try:
        training = lc.evaluate(rule.cost("thop", True), binding)
    except lc.DomainError:
        # BatchNorm: "more than 1 value per channel"; InstanceNorm: "more than 1 spatial element"
        with pytest.raises(ValueError, match=r"more than 1 (value per channel|spatial element)"):
            build(case).train()(*tensors(case))
        return binding, counted
    assert training == lc.evaluate(rule.cost("thop", False), binding)
    return binding, counted


def _property(strategies: dict, examples: int = EXAMPLES):
    """One parametrised property test over ``{id: strategy}``."""

    @pytest.mark.parametrize("strategy", list(strategies.values()), ids=list(strategies))
    @settings(max_examples=examples)
    @given(data=st.data())
    def test(strategy, data):
        _check(data.draw(strategy))

    return test


# -- conv ------------------------------------------------------------------------------------------

test_conv_family = _property(
    {
        "Conv1d": S.conv1d_cases(),
        "Conv2d": S.conv2d_cases(),
        "Conv3d": S.conv3d_cases(),
        "ConvTranspose1d": S.conv_transpose1d_cases(),
        "ConvTranspose2d": S.conv_transpose2d_cases(),
        "ConvTranspose3d": S.conv_transpose3d_cases(),
        "ConvTranspose2d-undilated": S.conv_transpose2d_cases(undilated=True),
    }
)

# -- linear ----------------------------------------------------------------------------------------

test_linear_family = _property(
    {
        "Linear": S.linear_cases(),
        "Bilinear": S.bilinear_cases(),
        "Identity": S.identity_cases(),
        "Flatten": S.flatten_cases(),
        "Unflatten": S.unflatten_cases(),
    }
)

# -- norm ------------------------------------------------------------------------------------------

test_norm_family = _property(
    {
        "BatchNorm1d": S.batchnorm1d_cases(),
        "BatchNorm2d": S.batchnorm2d_cases(),
        "BatchNorm3d": S.batchnorm3d_cases(),
        "SyncBatchNorm": S.sync_batchnorm_cases(),  # thop profiles even a training module in eval
        "LayerNorm": S.layer_norm_cases(),
        "RMSNorm": S.rms_norm_cases(),
        "GroupNorm": S.group_norm_cases(),
        **{f"InstanceNorm{n}d": S.instance_norm_cases(dims=n) for n in (1, 2, 3)},
        "LocalResponseNorm": S.local_response_norm_cases(),
        "CrossMapLRN2d": S.cross_map_lrn2d_cases(),
    }
)

# -- activation ------------------------------------------------------------------------------------

test_activation_family = _property(
    {
        **{name: S.activation_cases(name) for name in ELEMENTWISE},
        **{name: S.softmax_cases(name) for name in SOFTMAX_LIKE},
        "Softmax2d": S.softmax2d_cases(),
        "PReLU": S.prelu_cases(),
        "GLU": S.glu_cases(),
    },
    examples=50,
)

# -- pooling ---------------------------------------------------------------------------------------

test_pooling_family = _property(
    {
        **{f"MaxPool{n}d": S.max_pool_cases(dims=n) for n in (1, 2, 3)},
        **{f"LPPool{n}d": S.lp_pool_cases(dims=n) for n in (1, 2, 3)},
        **{
            f"Adaptive{kind}Pool{n}d": S.adaptive_pool_cases(dims=n, kind=kind)
            for kind, n in itertools.product(("Avg", "Max"), (1, 2, 3))
        },
        **{f"MaxUnpool{n}d": S.max_unpool_cases(dims=n) for n in (1, 2, 3)},
        **{f"FractionalMaxPool{n}d": S.fractional_max_pool_cases(dims=n) for n in (2, 3)},
    },
    examples=50,
)


def _thop_windows(size: int, out: int, k: int, s: int, p: int, include_pad: bool) -> int:
    """Sum over the outputs of one axis of the window length thop charges: the window
    [i*s - p, i*s - p + k) clipped to [-p, size + p) (count_include_pad) or to [0, size)."""
    lower, upper = (-p, size + p) if include_pad else (0, size)
    return sum(max(0, min(i * s - p + k, upper) - max(i * s - p, lower)) for i in range(out))


@pytest.mark.parametrize("dims", [1, 2, 3])
@settings(max_examples=80)
@given(data=st.data())
def test_avg_pool(dims, data):
    case = data.draw(S.avg_pool_cases(dims=dims))
    predicted, counted, binding = _predict_and_count(case)
    module = build(case)
    x = tensors(case)[0]
    y = module(x)
    per = lambda v: (v,) * dims if isinstance(v, int) else tuple(v)  # noqa: E731
    axes = list(
        zip(
            x.shape[-dims:],
            y.shape[-dims:],
            per(module.kernel_size),
            per(module.stride),
            per(module.padding),
            strict=True,
        )
    )
    planes = math.prod(x.shape[:-dims])
    clipped = math.prod(_thop_windows(*a, include_pad=False) for a in axes)
    included = math.prod(_thop_windows(*a, include_pad=True) for a in axes)
    # the rule: in-range window elements plus one divide per output
    assert predicted == planes * clipped + y.numel()
    if case.kwargs.get("count_include_pad", True) and any(a[4] for a in axes):
        # thop also charges the padded positions, which the rule (no count_include_pad symbol)
        # cannot see: the difference is exactly those positions
        assert counted == planes * included + y.numel() > predicted
    else:
        assert predicted == counted, (binding.rule.name, predicted, counted, dict(binding))


# -- attention -------------------------------------------------------------------------------------

test_attention_family = _property(
    {
        "MultiheadAttention": S.mha_cases(),
        "scaled_dot_product_attention": S.sdpa_cases(),
        "TransformerEncoderLayer": S.transformer_encoder_layer_cases(),
        "TransformerDecoderLayer": S.transformer_decoder_layer_cases(),
    },
    examples=50,
)


def test_transformer_layer_is_the_sum_of_its_children():
    # thop has no rule for the layer: its count is its children's (MHA, 2 Linear, 2 LayerNorm)
    layer = torch.nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, batch_first=True).eval()
    x = torch.randn(2, 5, 8)
    n, s, e, h, f = 2, 5, 8, 2, 16
    mha = n * (e * (2 * s * e + s * (e + e)) + 2 * s * s * e) + n * h * s * (3 * s - 1)
    linears = 2 * n * s * e * f
    norms = 2 * 4 * n * s * e
    assert thop_macs(layer, x) == mha + linears + norms == 6840
    assert lc.evaluate(lc.bind(layer, x).rule.cost("thop"), lc.bind(layer, x)) == 6840


# -- recurrent -------------------------------------------------------------------------------------

test_recurrent_family = _property(
    {
        "RNN": S.rnn_cases(),
        "LSTM": S.lstm_cases(),
        "GRU": S.gru_cases(),
        "RNNCell": S.rnn_cell_cases(),
        "LSTMCell": S.lstm_cell_cases(),
        "GRUCell": S.gru_cell_cases(),
    },
    examples=50,
)

# -- dropout, embedding, resampling, distance ------------------------------------------------------


@st.composite
def pairwise_distance_cases(draw):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    kwargs = {
        "p": draw(st.sampled_from([2.0, 1.0, 3.0, 0.0, float("inf")])),
        "keepdim": draw(st.booleans()),
    }
    return LayerCase("PairwiseDistance", kwargs, (shape, shape), training=draw(st.booleans()))


test_other_families = _property(
    {
        "Dropout": S.dropout_cases(),
        "ChannelDropout": S.channel_dropout_cases(),
        "Embedding": S.embedding_cases(),
        "Embedding-max_norm": S.embedding_cases(max_norm=True),
        "EmbeddingBag": S.embedding_bag_cases(),
        "PairwiseDistance": pairwise_distance_cases(),
        "CosineSimilarity": cosine_similarity_cases(),
        **{
            f"Upsample-{mode}": S.upsample_cases(mode=mode, fractional=True)
            for mode in UPSAMPLE_MODES
        },
        "UpsamplingNearest2d": S.upsampling_nearest2d_cases(),
        "UpsamplingBilinear2d": S.upsampling_bilinear2d_cases(),
        "PixelShuffle": S.pixel_shuffle_cases(),
        "PixelUnshuffle": S.pixel_unshuffle_cases(),
        "ChannelShuffle": S.channel_shuffle_cases(),
        **{name: S.padding_cases(name=name) for name in PADDING_LAYERS},
        "Unfold": S.unfold_cases(),
        "Fold": S.fold_cases(),
    },
    examples=50,
)


# -- functional rules (ATen operators between modules) ---------------------------------------------


class _Call(torch.nn.Module):
    """A module running one function: thop has no rule for it, so its function mode counts."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *args):
        return self.fn(*args)


_PRODUCTS = {  # rule -> (the call that reaches it, its operands' shapes from the rule's symbols)
    "mm": (torch.matmul, lambda v: ((v["N"], v["C_in"]), (v["C_in"], v["C_out"]))),
    "addmm": (
        torch.nn.functional.linear,
        lambda v: ((v["N"], v["C_in"]), (v["C_out"], v["C_in"]), (v["C_out"],)),
    ),
    "bmm": (torch.bmm, lambda v: ((v["N"], v["Q"], v["E"]), (v["N"], v["E"], v["S"]))),
}


@pytest.mark.parametrize("op", sorted(_PRODUCTS))
@settings(max_examples=EXAMPLES)
@given(data=st.data())
def test_functional_products(op, data):
    rule = lc.rule(op)
    values = {name: data.draw(st.integers(1, 6), label=name) for name in sorted(rule.symbols)}
    fn, shapes = _PRODUCTS[op]
    inputs = [torch.randn(shape) for shape in shapes(values)]
    assert lc.evaluate(rule.cost("thop"), values) == thop_macs(_Call(fn), *inputs)


def _elementwise_and_glue(x, y):
    F = torch.nn.functional
    z = (x + y - 1.0) * y / 2.0
    z = torch.rsub(z, 1.0).neg().reciprocal().abs().sqrt().rsqrt().exp().log1p().log().erf()
    z = torch.where((z > 0) & (y >= 0) | (z < 1) & ~(y <= 0), z, torch.maximum(z, y))
    z = torch.minimum(z, y).clamp(min=-1.0, max=1.0).tanh().sigmoid().pow(3).square()
    z = torch.true_divide(z, 2.0).clamp_min(-1.0).clamp_max(1.0)
    z = z + torch.logical_or(torch.logical_and(z > 0, torch.logical_not(y > 0)), y < 0).float()
    z = z + (z == y).float() + (z != y).float() + z.isnan().float() + (z.bool() | y.bool()).float()
    z = F.gelu(F.silu(F.hardswish(F.relu(z))), approximate="tanh") + F.gelu(z)
    z = F.layer_norm(F.softmax(z, dim=-1), z.shape[-1:])
    z = torch.cat([z, y]).view(-1).reshape(2, -1).t().transpose(0, 1).permute(1, 0)
    z = z.unsqueeze(0).squeeze(0)[0:1].expand(5, -1)[:, 1:].select(0, 1).clone().double()
    return torch.stack([z.sum(), z.amax(), z.max(), y.max(0)[0].sum(), z.mean(), z.var()])


def test_functional_rules_other_than_products_count_zero():
    # thop's function mode hooks only matmul / bmm / einsum / F.linear / SDPA / MHA: a forward
    # running elementwise ops, reductions, softmax, layer_norm, gelu and data movement counts 0
    x, y = torch.randn(3, 4), torch.randn(3, 4)
    assert thop_macs(_Call(_elementwise_and_glue), x, y) == 0
    # a masked product (MultiheadAttention's scores with attn_mask) is not hooked either
    mask, a, b = torch.randn(4, 5), torch.randn(2, 4, 3), torch.randn(2, 3, 5)
    assert thop_macs(_Call(torch.baddbmm), mask, a, b) == 0
    functional = [n for n in lc.rules() if lc.rule(n).family == "functional"]
    assert set(_PRODUCTS) <= set(functional)
    for name in functional:
        if name not in _PRODUCTS:
            assert lc.rule(name).cost("thop") == 0, name


# -- quirks, at hand-worked shapes -----------------------------------------------------------------


def test_bias_is_not_counted_for_conv_and_linear():
    # Conv2d(3, 4, 3) on 1x3x6x6: 4*4*4 outputs * 3*3*3 weights = 1728, bias or not
    x = torch.randn(1, 3, 6, 6)
    for bias in (True, False):
        conv = torch.nn.Conv2d(3, 4, 3, bias=bias)
        assert thop_macs(conv, x) == 1728 == lc.bind(conv, x).cost("thop")
    assert thop_macs(torch.nn.Linear(5, 7), torch.randn(2, 5)) == 2 * 5 * 7


def test_training_mode_is_profiled_in_eval():
    # PReLU counts only when not training; profile() switches to eval, so it always counts
    prelu = torch.nn.PReLU().train()
    assert thop_macs(prelu, torch.randn(2, 3)) == 6
    assert prelu.training  # and the mode is restored afterwards
    bn = torch.nn.BatchNorm2d(3).train()  # affine: 4 per element, batch statistics not counted
    assert thop_macs(bn, torch.randn(2, 3, 2, 2)) == 4 * 24


def test_recurrent_bias_counts_two_per_hidden_unit():
    # RNNCell(3, 4): 4*(3 + 4) + 4 + 2*4 = 40 per batch entry with bias, 32 without
    x = torch.randn(2, 3)
    assert thop_macs(torch.nn.RNNCell(3, 4), x) == 80
    assert thop_macs(torch.nn.RNNCell(3, 4, bias=False), x) == 64


# -- coverage --------------------------------------------------------------------------------------


def test_every_rule_and_variant_states_thop():
    missing = [
        r.name
        for name in lc.rules()
        for r in (lc.rule(name), *lc.rule(name).variants)
        if "thop" not in r.conventions
    ]
    assert not missing
