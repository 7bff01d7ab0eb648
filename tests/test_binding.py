"""bind(): symbols read from real modules; ShapeError exactly where torch rejects the input."""

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
    assert dict(binding) == {"N": 6, "C_in": 4, "C_out": 5, "b": 0}
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

    assert lc.bind(MyConv(1, 1, 1), (1, 1, 2, 2)).rule is lc.rule("Conv2d")


def test_size_of_the_dimension_an_attribute_names(tmp_path):
    from layercost_sym.catalogue import load_catalogue

    (tmp_path / "t.toml").write_text(
        '[Softmax]\nmodule = "Softmax"\nnote = "rows of L"\ninputs = ["N..."]\nparams = "0"\n'
        'output_shape = ["N..."]\n[Softmax.bind]\nL = "size(dim)"\n'
        '[Softmax.cost]\nexact = "(N/L)*(5*L - 2)"\nmacs = "0"\n'
    )
    rule = load_catalogue(tmp_path).rules["Softmax"]
    spec = rule.binds["L"]
    assert (spec.kind, spec.attr, spec.index) == ("size", "dim", 0)
    from layercost_sym.binding import _read

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
