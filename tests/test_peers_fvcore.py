"""The ``fvcore`` convention against fvcore itself (``FlopCountAnalysis(...).total()``).

For drawn configurations of every catalogue rule, the rule's ``fvcore`` cost evaluated at
``lc.bind`` equals what fvcore 0.1.5 reports for the same module and inputs (default handles,
module in its own train/eval mode; harness: ``layercost_sym.testing._peers_fvcore``).
Where fvcore's number depends on an option the rule does not bind (a string ``padding`` with a
non-zero ``padding_mode``; ``Upsample`` mode ``'nearest-exact'``), or where fvcore raises, the test
asserts what fvcore does and the convention file's note says so.
"""

import math

import pytest
import sympy
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import layercost_sym as lc
from layercost_sym.testing import strategies as S
from layercost_sym.testing._cases_activation import ELEMENTWISE, SOFTMAX_LIKE
from layercost_sym.testing._cases_distance import cosine_similarity_cases
from layercost_sym.testing._cases_dropout import channel_dropout_cases, dropout_cases
from layercost_sym.testing._cases_resampling import PADDING_LAYERS, UPSAMPLE_MODES
from layercost_sym.testing._peers_fvcore import fvcore_total
from layercost_sym.testing.strategies import LayerCase

# InstanceNorm without affine / running stats accepts other channel counts (drawn on purpose);
# fvcore's jit trace warns about TracerWarnings and deprecations we do not assert on.
pytestmark = [
    pytest.mark.filterwarnings("ignore:input.s size at dim=:UserWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore:dropout option adds dropout:UserWarning"),
]


@pytest.fixture(autouse=True)
def one_thread():
    # tiny tensors: thread start-up would dominate on a busy 2-core machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@st.composite
def pairwise_distance_cases(draw):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    kwargs = {
        "p": draw(st.sampled_from([2.0, 1.0, 3.0, 0.0, float("inf")])),
        "keepdim": draw(st.booleans()),
    }
    return LayerCase("PairwiseDistance", kwargs, (shape, shape), training=draw(st.booleans()))


# rule name (with a [tag] where one class has several strategies) -> strategy drawing modules of
# that class: every module rule of the catalogue (see the coverage test)
CASES = {
    "Conv1d": S.conv1d_cases(),
    "Conv2d": S.conv2d_cases(),
    "Conv3d": S.conv3d_cases(),
    "ConvTranspose1d": S.conv_transpose1d_cases(),
    "ConvTranspose2d": S.conv_transpose2d_cases(),
    "ConvTranspose3d": S.conv_transpose3d_cases(),
    "Linear": S.linear_cases(),
    "Bilinear": S.bilinear_cases(),
    "Identity": S.identity_cases(),
    "Flatten": S.flatten_cases(),
    "Unflatten": S.unflatten_cases(),
    "BatchNorm1d": S.batchnorm1d_cases(),
    "BatchNorm2d": S.batchnorm2d_cases(),
    "BatchNorm3d": S.batchnorm3d_cases(),
    "SyncBatchNorm": S.sync_batchnorm_cases(),
    "LayerNorm": S.layer_norm_cases(),
    "RMSNorm": S.rms_norm_cases(),
    "GroupNorm": S.group_norm_cases(),
    **{f"InstanceNorm{d}d": S.instance_norm_cases(dims=d) for d in (1, 2, 3)},
    "LocalResponseNorm": S.local_response_norm_cases(),
    "CrossMapLRN2d": S.cross_map_lrn2d_cases(),
    **{name: S.activation_cases(name) for name in ELEMENTWISE},
    **{name: S.softmax_cases(name) for name in SOFTMAX_LIKE},
    "PReLU": S.prelu_cases(),
    "Softmax2d": S.softmax2d_cases(),
    "GLU": S.glu_cases(),
    **{f"MaxPool{d}d": S.max_pool_cases(dims=d) for d in (1, 2, 3)},
    **{f"AvgPool{d}d": S.avg_pool_cases(dims=d) for d in (1, 2, 3)},
    **{f"LPPool{d}d": S.lp_pool_cases(dims=d) for d in (1, 2, 3)},
    **{
        f"Adaptive{kind}Pool{d}d": S.adaptive_pool_cases(dims=d, kind=kind)
        for d in (1, 2, 3)
        for kind in ("Avg", "Max")
    },
    **{f"FractionalMaxPool{d}d": S.fractional_max_pool_cases(dims=d) for d in (2, 3)},
    **{f"MaxUnpool{d}d": S.max_unpool_cases(dims=d) for d in (1, 2, 3)},
    "MultiheadAttention": S.mha_cases(),
    "TransformerEncoderLayer": S.transformer_encoder_layer_cases(),
    "TransformerDecoderLayer": S.transformer_decoder_layer_cases(),
    "scaled_dot_product_attention": S.sdpa_cases(),
    "RNN": S.rnn_cases(),
    "GRU": S.gru_cases(),
    "LSTM": S.lstm_cases(proj=True),
    "LSTM[noproj]": S.lstm_cases(proj=False),
    "RNNCell": S.rnn_cell_cases(),
    "LSTMCell": S.lstm_cell_cases(),
    "GRUCell": S.gru_cell_cases(),
    **{name: dropout_cases(names=(name,)) for name in ("Dropout", "AlphaDropout")},
    **{
        name: channel_dropout_cases(names=(name,))
        for name in ("Dropout1d", "Dropout2d", "Dropout3d", "FeatureAlphaDropout")
    },
    "Embedding": S.embedding_cases(),
    "EmbeddingBag": S.embedding_bag_cases(),
    "PairwiseDistance": pairwise_distance_cases(),
    "CosineSimilarity": cosine_similarity_cases(),
    # one entry per mode, so that each Upsample variant is drawn
    **{
        f"Upsample[{mode}]": S.upsample_cases(mode=mode, fractional=True)
        for mode in sorted(UPSAMPLE_MODES)
    },
    "UpsamplingNearest2d": S.upsampling_nearest2d_cases(),
    "UpsamplingBilinear2d": S.upsampling_bilinear2d_cases(),
    "PixelShuffle": S.pixel_shuffle_cases(),
    "PixelUnshuffle": S.pixel_unshuffle_cases(),
    "ChannelShuffle": S.channel_shuffle_cases(),
    "Unfold": S.unfold_cases(),
    "Fold": S.fold_cases(),
    **{name: S.padding_cases(name=name) for name in PADDING_LAYERS},
}
# examples per entry (default 30): more where many variants are reached, fewer for heavy layers
EXAMPLES = {
    "TransformerEncoderLayer": 25,
    "TransformerDecoderLayer": 25,
    "MultiheadAttention": 40,
    "Conv1d": 60,
    "Conv2d": 60,
    "Conv3d": 60,
}


class scaled_dot_product_attention(torch.nn.Module):  # the rule's name: lc.bind finds it
    """The functional as a module, so fvcore can trace it."""

    def forward(self, query, key, value, **kwargs):
        return F.scaled_dot_product_attention(query, key, value, **kwargs)


_ACTIVATION = {"relu": "relu", "gelu": "gelu", "ReLU()": torch.nn.ReLU(), "GELU()": torch.nn.GELU()}


def _module_and_inputs(case):
    """The case's module and inputs, as the family tests build them (shared MHA inputs,
    transformer activations given as modules, the SDPA functional wrapped)."""
    if case.name == "scaled_dot_product_attention":
        return scaled_dot_product_attention(), case.tensors()
    if case.name.startswith("Transformer"):
        kwargs = {**case.kwargs, "activation": _ACTIVATION[case.kwargs["activation"]]}
        module = getattr(torch.nn, case.name)(**kwargs).train(case.training)
        return module, case.tensors()
    tensors = case.tensors()
    shared = case.notes.get("shared", "")
    if shared == "qkv":  # self-attention: one tensor (torch's packed in-projection)
        tensors = (tensors[0],) * 3
    elif shared == "kv":
        tensors = (tensors[0], tensors[1], tensors[1])
    return case.build(), tensors


def _fvcore_raises(case, tensors) -> type[Exception] | None:
    """The exception fvcore raises on this case, if it is one of the known crashes."""
    if case.name.startswith("MaxUnpool"):  # tracing max_unpool's torch._check(tensor)
        return TypeError
    rank = tensors[0].dim()
    if case.name == "LayerNorm" and not 2 <= rank <= 5:  # norm handle asserts a 2- to 5-d input
        return AssertionError
    if case.name == "SyncBatchNorm" and rank > 5:
        batch_stats = case.training or not case.kwargs.get("track_running_stats", True)
        return AssertionError if batch_stats else None  # eval's batch_norm handle has no assert
    return None


def _string_padding_counted(case, rule) -> bool:
    """A conv in the variant ``same`` (zeros or replicate) or ``valid`` (any padding_mode) with a
    non-zero padding_mode: F.pad then an ordinary aten::_convolution, which fvcore counts (the
    variant binds no padding_mode; same_reflect / same_circular have their own variants)."""
    return (
        rule.name.split(".")[-1] in ("same", "valid")
        and case.kwargs.get("padding_mode", "zeros") != "zeros"
    )


def check(case) -> None:
    module, tensors = _module_and_inputs(case)
    binding = lc.bind(module, *tensors, **case.call_kwargs)
    rule = binding.rule
    assert rule.module in {cls.__name__ for cls in type(module).__mro__}, rule.name
    predicted = lc.evaluate(rule.cost("fvcore", case.training), binding)
    error = _fvcore_raises(case, tensors)
    if error is not None:
        with pytest.raises(error):
            fvcore_total(module, tensors, case.call_kwargs)
        return
    measured = fvcore_total(module, tensors, case.call_kwargs)
    rank = tensors[0].dim()
    if _string_padding_counted(case, rule):
        # the variant states the padding_mode='zeros' number (0); fvcore counts the MACs here
        assert predicted == 0
        assert measured == lc.evaluate(rule.cost("macs"), binding) > 0
        return
    if case.name == "Upsample" and case.kwargs.get("mode") == "nearest-exact" and rank == 4:
        # same rule as 'nearest', but aten::_upsample_nearest_exact2d has no fvcore handle
        # (on 3- and 5-d input neither mode has a handle: the nearest_1d/3d variants state 0)
        assert predicted == math.prod(binding.output_shape()) and measured == 0
        return
    assert predicted == measured, (
        f"{rule.name} fvcore (training={case.training}): rule gives {predicted}, fvcore "
        f"reports {measured} at {dict(binding)}"
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_fvcore_convention_matches_fvcore(name):
    settings(max_examples=EXAMPLES.get(name, 30))(given(CASES[name])(check))()


def test_every_rule_and_variant_states_fvcore():
    missing = [
        entry.name
        for name in lc.rules()
        for entry in (lc.rule(name), *lc.rule(name).variants)
        if "fvcore" not in entry.conventions
    ]
    assert missing == []


def test_every_module_rule_is_drawn_here():
    # module rules (a torch.nn class, or the SDPA functional wrapped as a module); the functional
    # ATen-operator rules are checked by the tests at the end of this file
    module_rules = {n for n in lc.rules() if hasattr(torch.nn, lc.rule(n).module)}
    drawn = {name.split("[")[0] for name in CASES}
    assert drawn == module_rules | {"scaled_dot_product_attention"}


@pytest.mark.parametrize(
    "name",
    [
        "Linear",
        "Conv1d",
        "Conv2d",
        "Conv3d",
        "ConvTranspose1d",
        "ConvTranspose2d",
        "ConvTranspose3d",
        "RNNCell",
        "LSTMCell",
        "GRUCell",
    ],
)
def test_fvcore_counts_the_macs_of_weighted_sums(name):
    # fvcore's convolution / linear handles count multiply-adds and ignore the bias: the
    # catalogue's `macs` (FlopCounterMode / 2), symbolically
    r = lc.rule(name)
    assert sympy.simplify(r.cost("fvcore") - r.cost("macs")) == 0


def test_string_padding_with_zeros_counts_nothing():
    # aten::_convolution_mode (padding='same'/'valid', padding_mode='zeros') has no handle;
    # the same convolution with padding=1 is counted: 1*4*5*5 outputs * 2*3*3 = 1800
    x = torch.randn(1, 2, 5, 5)
    same = torch.nn.Conv2d(2, 4, 3, padding="same")
    explicit = torch.nn.Conv2d(2, 4, 3, padding=1)
    assert fvcore_total(same, (x,)) == 0 == lc.bind(same, x).cost("fvcore")
    assert fvcore_total(explicit, (x,)) == 1800 == lc.bind(explicit, x).cost("fvcore")


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("padding", ["same", "valid", 1])
def test_every_conv_padding_form(dims, padding_mode, padding):
    # each (padding, padding_mode) pair reaches one variant of the rule; fvcore counts the MACs
    # whenever torch pads with F.pad (padding_mode != 'zeros') or pads an integer, 0 on
    # aten::_convolution_mode (a string padding with zeros)
    module = getattr(torch.nn, f"Conv{dims}d")(
        4, 6, 3, padding=padding, groups=2, padding_mode=padding_mode, dilation=2
    )
    x = torch.randn(2, 4, *(5,) * dims)
    binding = lc.bind(module, x)
    macs = lc.evaluate(binding.rule.cost("macs"), binding)
    assert macs > 0
    expected = 0 if isinstance(padding, str) and padding_mode == "zeros" else macs
    assert fvcore_total(module, (x,)) == expected
    if binding.rule.name.endswith((".same", ".valid")):
        # the string-padding variants state the padding_mode='zeros' number (no padding_mode
        # symbol to tell the F.pad path apart)
        assert binding.cost("fvcore") == 0
    else:
        assert binding.cost("fvcore") == expected


def test_batch_norm_eval_without_running_stats_counts_batch_statistics():
    # F.batch_norm gets training=True when there are no running stats: 4 per element, not 1
    x = torch.randn(2, 3, 4, 4)
    module = torch.nn.BatchNorm2d(3, affine=False, track_running_stats=False).eval()
    assert fvcore_total(module, (x,)) == 4 * x.numel() == lc.bind(module, x).cost("fvcore")


# -- functional rules (formulas/functional.toml): one ATen operator between modules ------------


class _Op(torch.nn.Module):
    """One functional call as a module, so fvcore can trace it."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *args):
        return self.fn(*args)


def _functional_cost(name: str, values: dict) -> int:
    return lc.evaluate(lc.rule(name).cost("fvcore"), values)


_dims = st.integers(1, 5)


@settings(max_examples=25)
@given(n=_dims, c_in=_dims, c_out=_dims, bias=st.booleans())
def test_fvcore_matrix_products(n, c_in, c_out, bias):
    a, b, c = torch.randn(n, c_in), torch.randn(c_in, c_out), torch.randn(c_out)
    values = dict(N=n, C_in=c_in, C_out=c_out)
    assert fvcore_total(_Op(torch.mm), (a, b)) == _functional_cost("mm", values)
    # addmm's bias (input) is broadcast or full: never counted
    bias_term = c if bias else torch.randn(n, c_out)
    assert fvcore_total(_Op(torch.addmm), (bias_term, a, b)) == _functional_cost("addmm", values)


@settings(max_examples=25)
@given(n=_dims, q=_dims, e=_dims, s=_dims)
def test_fvcore_bmm(n, q, e, s):
    values = dict(N=n, Q=q, E=e, S=s)
    counted = fvcore_total(_Op(torch.bmm), (torch.randn(n, q, e), torch.randn(n, e, s)))
    assert counted == _functional_cost("bmm", values)


@settings(max_examples=25)
@given(shape=st.lists(st.integers(1, 3), min_size=2, max_size=5), data=st.data())
def test_fvcore_layer_norm_function(shape, data):
    ndims = data.draw(st.integers(1, len(shape)))
    normalized = tuple(shape[-ndims:])
    weight = torch.randn(normalized) if data.draw(st.booleans()) else None
    bias = torch.randn(normalized) if data.draw(st.booleans()) else None
    fn = lambda x: F.layer_norm(x, normalized, weight, bias)  # noqa: E731
    values = dict(
        N=math.prod(shape),
        M=math.prod(normalized),
        a=int(weight is not None),
        b=int(bias is not None),
    )
    assert fvcore_total(_Op(fn), (torch.randn(shape),)) == _functional_cost(
        "native_layer_norm", values
    )


ZERO_FUNCTIONS = {
    "add": lambda x: x + x,
    "mul": lambda x: x * x,
    "div": lambda x: x / 3,
    "exp": torch.exp,
    "relu": F.relu,
    "gelu": F.gelu,
    "silu": F.silu,
    "_softmax": lambda x: F.softmax(x, -1),
    "mean": lambda x: x.mean(-1),
    "var": lambda x: x.var(-1),
    "sum": lambda x: x.sum(-1),
    "amax": lambda x: x.amax(-1),
    "max": lambda x: x.max(-1)[0] + x.max(),
    "cat": lambda x: torch.cat([x, x]),
    "permute": lambda x: x.permute(1, 0),
    "view": lambda x: x.view(-1),
    "sub": lambda x: x - 1,
    "neg": torch.neg,
    "rsqrt": torch.rsqrt,
    "sqrt": torch.sqrt,
    "log": torch.log,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "pow": lambda x: x**3,
    "abs": torch.abs,
    "floor": torch.floor,
    "gt": lambda x: x > 0,
    "where": lambda x: torch.where(x > 0, x, -x),
    "maximum": lambda x: torch.maximum(x, -x),
    "reshape": lambda x: x.reshape(4, 3),
    "transpose": lambda x: x.transpose(0, 1),
    "unsqueeze": lambda x: x.unsqueeze(0),
    "clone": torch.clone,
    "stack": lambda x: torch.stack([x, x]),
    "hardswish": F.hardswish,
}


@pytest.mark.parametrize("name", sorted(ZERO_FUNCTIONS))
def test_fvcore_counts_elementwise_and_movement_functions_as_zero(name):
    x = torch.randn(3, 4)
    assert lc.rule(name).cost("fvcore") == 0
    assert fvcore_total(_Op(ZERO_FUNCTIONS[name]), (x,)) == 0


def test_functional_zero_entries_are_ops_fvcore_has_no_handle_for():
    # every functional rule fvcore counts is a matrix product or layer norm; the rest state 0
    counted = {
        name
        for name in lc.rules()
        if lc.rule(name).module.lstrip("_")[:1].islower() and lc.rule(name).cost("fvcore") != 0
    }
    assert counted == {"mm", "addmm", "bmm", "native_layer_norm"}
    # aten::baddbmm (a masked product: MultiheadAttention's scores with attn_mask) has no handle
    mask, a, b = torch.randn(4, 5), torch.randn(2, 4, 3), torch.randn(2, 3, 5)
    assert fvcore_total(_Op(torch.baddbmm), (mask, a, b)) == 0 == lc.rule("baddbmm").cost("fvcore")


def test_upsample_area_is_counted_as_adaptive_average_pooling():
    # lc.bind refuses mode='area'; the variant states fvcore's number for the record:
    # aten::adaptive_avg_pool2d, 1 per input element (2*3*4*6 = 144)
    module, x = torch.nn.Upsample(size=(3, 5), mode="area"), torch.randn(2, 3, 4, 6)
    values = dict(N=2, C=3, H=4, W=6, H_out=3, W_out=5)
    assert fvcore_total(module, (x,)) == 144
    assert lc.evaluate(lc.rule("Upsample.area").cost("fvcore"), values) == 144
