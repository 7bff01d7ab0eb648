"""bind(): symbols read from real modules; ShapeError exactly where torch rejects the input."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import layercost_sym as lc
from layercost_sym.errors import ShapeError, UnknownRuleError


def torch_rejects(module, shape) -> bool:
    try:
        with torch.no_grad():
            module(torch.zeros(shape))
    except (RuntimeError, ValueError):
        return True
    return False


@st.composite
def conv_and_any_shape(draw):
    groups = draw(st.integers(1, 3))
    module = torch.nn.Conv2d(
        groups * draw(st.integers(1, 2)),
        groups * draw(st.integers(1, 2)),
        kernel_size=(draw(st.integers(1, 4)), draw(st.integers(1, 4))),
        stride=draw(st.integers(1, 3)),
        padding=draw(st.integers(0, 2)),
        dilation=draw(st.integers(1, 2)),
        groups=groups,
        bias=draw(st.booleans()),
    )
    rank = draw(st.sampled_from([2, 3, 4, 4, 4, 5]))
    channels = draw(
        st.sampled_from([module.in_channels, module.in_channels, module.in_channels + 1])
    )
    shape = [draw(st.integers(1, 9)) for _ in range(rank)]
    if rank >= 3:
        shape[-3] = channels
    return module, tuple(shape)


@given(conv_and_any_shape())
def test_conv2d_bind_rejects_exactly_what_torch_rejects(case):
    module, shape = case
    rejected = torch_rejects(module, shape)
    if rejected:
        with pytest.raises(ShapeError):
            lc.bind(module, shape)
    else:
        binding = lc.bind(module, shape)
        assert binding.output_shape() == tuple(module(torch.zeros(shape)).shape)


@given(
    n=st.integers(1, 2),
    h=st.integers(1, 2),
    w=st.integers(1, 2),
    track=st.booleans(),
    train=st.booleans(),
)
def test_batchnorm_single_value_per_channel_rejected_like_torch(n, h, w, track, train):
    module = torch.nn.BatchNorm2d(3, track_running_stats=track).train(train)
    shape = (n, 3, h, w)
    assert torch_rejects(module, shape) == _bind_rejects(module, shape)


def _bind_rejects(module, shape):
    try:
        lc.bind(module, shape)
    except ShapeError:
        return True
    return False


def test_error_messages_name_the_constraint_and_values():
    conv = torch.nn.Conv2d(3, 4, kernel_size=5, padding=1)
    with pytest.raises(
        ShapeError,
        match=r"constraint 'H_out >= 1 and W_out >= 1' fails "
        r"\(kernel size can't be greater.*H=2",
    ):
        lc.bind(conv, (1, 3, 2, 9))
    with pytest.raises(
        ShapeError,
        match=r"expects input 0 of shape \(N, C_in, H, W\) or "
        r"\(C_in, H, W\), got rank 2",
    ):
        lc.bind(conv, (3, 8))
    with pytest.raises(ShapeError, match=r"input 0 has C_in = 5, but module.in_channels = 3"):
        lc.bind(conv, (1, 5, 8, 8))
    with pytest.raises(ShapeError, match="takes 1 input"):
        lc.bind(conv, (1, 3, 8, 8), (1, 3, 8, 8))
    with pytest.raises(ShapeError, match="dimension H is 0"):
        lc.bind(conv, (1, 3, 0, 8))


def test_linear_reads_leading_dims_and_tensors():
    linear = torch.nn.Linear(4, 5, bias=False)
    x = torch.zeros(2, 3, 4)
    binding = lc.bind(linear, x)
    # the flags of its backward cost too: the input needs no gradient, the weight does
    sizes = {"e_a": 4, "e_w": 4, "e_i": 8, "rg": 0, "gw": 1}
    assert dict(binding) == {"N": 6, "C_in": 4, "C_out": 5, "b": 0, **sizes}
    assert binding.output_shape() == (2, 3, 5)
    assert lc.bind(linear, (4,)).output_shape() == (5,)


def test_same_padding_binds_the_variant_without_padding_symbols():
    conv = torch.nn.Conv2d(2, 2, kernel_size=(2, 3), padding="same")
    binding = lc.bind(conv, (1, 2, 5, 7))
    assert binding.rule.name == "Conv2d.same" and "p_h" not in binding
    assert binding.output_shape() == (1, 2, 5, 7)
    # the base rule's formula needs p_h: using it with this binding is an error, not a wrong number
    with pytest.raises(lc.MissingSymbolError, match="p_h"):
        lc.evaluate(lc.rule("Conv2d").flops, binding)


def test_unknown_module_is_reported_not_counted_as_zero():
    class Mystery(torch.nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(UnknownRuleError, match="no rule describes module class 'Mystery'"):
        lc.bind(Mystery(), (1, 2))


def test_subclass_of_a_known_module_uses_its_rule():
    class MyConv(torch.nn.Conv2d):
        pass

    shape = (1, 1, 2, 2)  # the rule (variant) a plain Conv2d of these options binds
    assert lc.bind(MyConv(1, 1, 1), shape).rule is lc.bind(torch.nn.Conv2d(1, 1, 1), shape).rule


def test_size_of_the_dimension_an_attribute_names(tmp_path):
    from layercost_sym.catalogue import load_catalogue

    (tmp_path / "t.toml").write_text(
        '[Softmax]\nmodule = "Softmax"\nnote = "rows of L"\ninputs = ["N..."]\nparams = "0"\n'
        'output_shape = ["N..."]\n[Softmax.bind]\nL = "size(dim)"\n'
        '[Softmax.flops]\nexact = "(N/L)*(5*L - 2)"\nmacs = "0"\n'
    )
    rule = load_catalogue(tmp_path).rules["Softmax"]
    spec = rule.binds["L"]
    assert (spec.kind, spec.attr, spec.index) == ("size", "dim", 0)
    from layercost_sym.reading import read_spec as _read

    assert _read(torch.nn.Softmax(dim=1), spec, "L", rule, {}, [(2, 7, 3)]) == 7
    assert _read(torch.nn.Softmax(dim=-1), spec, "L", rule, {}, [(2, 7, 3)]) == 3
    with pytest.raises(ShapeError, match=r"module\.dim = 3 is not a dimension of input 0"):
        _read(torch.nn.Softmax(dim=3), spec, "L", rule, {}, [(2, 7, 3)])


def test_batchnorm1d_takes_rank_two_and_three_like_torch():
    bn = torch.nn.BatchNorm1d(3).eval()
    flat = lc.bind(bn, (4, 3))
    assert flat["L"] == 1 and flat.output_shape() == (4, 3) == tuple(bn(torch.zeros(4, 3)).shape)
    assert lc.bind(bn, (4, 3, 5)).output_shape() == (4, 3, 5)
    with pytest.raises(ShapeError, match=r"\(N, C, L\) or \(N, C\)"):
        lc.bind(bn, (4,))


def test_integer_valued_float_attributes_bind_as_integers():
    # an attribute read as a number may be a float with an integer value; any other is refused
    class Linear:  # torch.nn.Linear's attributes, in_features as a float
        in_features, out_features, bias = 3.0, 4, None

    assert lc.bind(Linear(), (2, 3))["C_in"] == 3
    Linear.in_features = 1.5
    with pytest.raises(ShapeError, match=r"in_features is 1.5, not a whole number"):
        lc.bind(Linear(), (2, 3))


@pytest.mark.parametrize(
    "scale, shape",
    [
        ((2, 3.0), (1, 1, 4, 5)),  # whole factors, int or float
        (1.5, (1, 1, 4, 5)),
        ((1.25, 2.5), (2, 1, 3, 7)),
        ((0.7, 1.1), (1, 1, 10, 10)),  # 10*0.7 = 7.000000000000001, 10*1.1 = 11.000000000000002
        ((0.29, 2.3), (1, 1, 100, 3)),  # 100*0.29 = 28.999999999999996: 28 rows, as in torch
    ],
)
def test_scaled_binds_output_sides_as_torch_computes_them(scale, shape):
    up = torch.nn.Upsample(scale_factor=scale)
    binding = lc.bind(up, shape)
    factors = up.scale_factor if isinstance(up.scale_factor, tuple) else (up.scale_factor,) * 2
    # torch: int(float(side) * s), a double product truncated
    expected = tuple(int(float(n) * s) for n, s in zip(shape[2:], factors, strict=True))
    assert (binding["H_out"], binding["W_out"]) == expected
    assert binding.output_shape() == tuple(up(torch.zeros(shape)).shape) == (*shape[:2], *expected)


def test_scaled_refuses_an_empty_side_and_a_symbolic_side_with_a_fraction():
    side = r"W_out = scaled\(W, scale_factor\[1\]\) = int\(3\*0.25\) is 0"
    with pytest.raises(ShapeError, match=side):
        lc.bind(torch.nn.Upsample(scale_factor=0.25), (1, 1, 4, 3))
    # model analysis: a whole factor scales a symbolic side; floor(H*1.5) has no closed form
    report = lc.analyze(torch.nn.Sequential(torch.nn.Upsample(scale_factor=2.0)), ("N", 1, "H", 5))
    assert report.unsupported == []
    report = lc.analyze(torch.nn.Sequential(torch.nn.Upsample(scale_factor=1.5)), ("N", 1, "H", 5))
    assert [u.what for u in report.unsupported] == ["Upsample"]
    assert "floor(H*1.5) has no closed form" in report.unsupported[0].detail


def test_variant_chosen_by_an_attribute_being_none():
    # "scale_factor?" = true: the scale variant; size given (scale_factor None): the size rule
    assert lc.bind(torch.nn.Upsample(scale_factor=2), (1, 1, 2, 2)).rule.name.endswith("_scale")
    assert lc.bind(torch.nn.Upsample(size=3), (1, 1, 2, 2)).rule.name == "Upsample"


def test_variant_chosen_by_input_rank():
    bag = torch.nn.EmbeddingBag(6, 2, mode="max")
    assert lc.bind(bag, (3, 4)).rule.name == "EmbeddingBag.max_p2_2d"  # (B, L): B bags of L
    assert lc.bind(bag, (5,), (2,)).rule.name == "EmbeddingBag.max_p2"  # indices and offsets
    assert lc.bind(bag, (3, 4)).output_shape() == (3, 2)


def test_data_dependent_symbols_default_and_are_checked():
    emb = torch.nn.Embedding(4, 3, max_norm=1.0, norm_type=1.0)
    default = lc.bind(emb, (2, 5))  # 10 indices into 4 rows: at most 4 distinct
    assert (default["V_d"], default["V_r"], default.assumed) == (4, 4, ("V_d", "V_r"))
    given = lc.bind(emb, (2, 5), data={"V_d": 3, "V_r": 0})
    assert given.assumed == () and given.cost() == 3 * (2 * 3)  # a 1-norm (2E - 1) and a compare
    with pytest.raises(ShapeError, match="data V_d=0 is below 1"):
        lc.bind(emb, (2, 5), data={"V_d": 0})
    with pytest.raises(ShapeError, match=r"not a data-dependent symbol of the rule \(it has: none"):
        lc.bind(torch.nn.Linear(2, 3), (1, 2), data={"V_d": 1})


@pytest.mark.parametrize("shape", [(2, 4), (2, 4, 3), (1, 4, 3, 2), (2, 4, 1, 2, 3, 2)])
def test_trailing_dimensions_of_any_number(shape):
    # GroupNorm takes (N, C, *): P is the product of the dimensions after C (1 for (N, C))
    gn = torch.nn.GroupNorm(2, 4)
    binding = lc.bind(gn, shape)
    assert binding["P"] == math.prod(shape[2:])
    assert binding.output_shape() == tuple(gn(torch.zeros(shape)).shape) == shape
    with pytest.raises(ShapeError, match=r"\(N, C, \*\)"):
        lc.bind(gn, (4,))


@pytest.mark.parametrize("batch_first", [False, True])
def test_unbatched_sequence_binds_the_sequence_length_to_l(batch_first):
    # (L, I) without a batch: L is the sequence length and N = 1, whichever the layout
    gru = torch.nn.GRU(5, 2, batch_first=batch_first)
    binding = lc.bind(gru, (3, 5))
    assert (binding["L"], binding["N"]) == (3, 1)
    assert binding.output_shape() == tuple(gru(torch.zeros(3, 5))[0].shape) == (3, 2)
    batched = lc.bind(gru, (3, 4, 5))
    assert (batched["L"], batched["N"]) == ((4, 3) if batch_first else (3, 4))
    with pytest.raises(ShapeError, match=r"\(L, I\)"):
        lc.bind(gru, (5,))


def test_anchored_dimension_and_range():
    glu = torch.nn.GLU(dim=1)  # (2, 4, 3): N = 2 before, L = 4, P = 3 after
    binding = lc.bind(glu, (2, 4, 3))
    assert (binding["N"], binding["L"], binding["P"]) == (2, 4, 3)
    assert binding.output_shape() == (2, 2, 3)
    flat = torch.nn.Flatten(1, 2)  # dimensions 1..2 of (2, 3, 4, 5): L = 12
    binding = lc.bind(flat, (2, 3, 4, 5))
    assert (binding["N"], binding["L"], binding["P"]) == (2, 12, 5)
    assert binding.output_shape() == tuple(flat(torch.zeros(2, 3, 4, 5)).shape) == (2, 12, 5)
    with pytest.raises(ShapeError, match=r"not a range of dimensions \(first <= last\)"):
        lc.bind(torch.nn.Flatten(2, 1), (2, 3, 4))


@pytest.mark.parametrize(
    ("a", "b", "accepted"),
    [((2, 3, 4), (3, 2, 4), False), ((1, 3, 4), (3, 4), True), ((3, 1, 2), (3, 2), False)],
)
def test_shared_leading_dimensions_match_not_only_their_product(a, b, accepted):
    # PairwiseDistance "N... D" twice: equal products are not enough; leading 1s broadcast
    module = torch.nn.PairwiseDistance()
    if accepted:
        expected = tuple(module(torch.zeros(a), torch.zeros(b)).shape)
        assert lc.bind(module, a, b).output_shape() == lc.bind(module, b, a).output_shape()
        assert lc.bind(module, a, b).output_shape() == expected
    else:
        with pytest.raises(ShapeError, match="the dimensions of N are"):
            lc.bind(module, a, b)


@pytest.mark.parametrize(
    "module",
    [
        torch.nn.Upsample(scale_factor=1.5, mode="bilinear"),
        torch.nn.Upsample(scale_factor=(2, 1.25), mode="nearest"),
        torch.nn.UpsamplingNearest2d(scale_factor=2.5),
    ],
)
def test_a_fractional_scale_factor_refuses_conventions_stated_for_whole_factors(module):
    # ptflops counts input numel * scale**dims in floating point for such factors: no integer
    # formula, so formulas/conventions/ptflops.toml marks Upsample `whole_factors_only`
    b = lc.bind(module, (2, 3, 7, 5))
    assert b.fractional and "ptflops" in b.rule.whole_factor_conventions
    with pytest.raises(lc.ConventionError, match="whole scale factors only"):
        b.cost("ptflops")
    out = module(torch.zeros(2, 3, 7, 5))
    assert b.output_shape() == tuple(out.shape)
    assert b.cost("exact") == lc.count(module, out.new_zeros(2, 3, 7, 5)).costs["exact"]
    # a whole factor (also written as a float) binds every convention
    whole = type(module)(
        scale_factor=2.0, **({"mode": module.mode} if type(module) is torch.nn.Upsample else {})
    )
    assert not lc.bind(whole, (2, 3, 7, 5)).fractional
    assert lc.bind(whole, (2, 3, 7, 5)).cost("ptflops") >= 0
