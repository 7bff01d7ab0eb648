"""The exact op counter: each table kind against arithmetic done by hand."""

import gc

import pytest
import torch

import layercost_sym as lc
from layercost_sym.errors import UncountedOpError
from layercost_sym.torchtools.opcount import OP_TABLE, ExactCounter, register_op


def counted(fn, *args):
    with ExactCounter() as counter:
        fn(*args)
    return counter.total, dict(counter.by_op)


def test_matmul_family():
    a, b, bias = torch.ones(5, 7), torch.ones(7, 3), torch.ones(3)
    # (5x7)(7x3): 15 outputs, each 7 multiplies + 6 adds
    assert counted(torch.mm, a, b) == (15 * 13, {"mm": 195})
    # plus one bias add per output
    assert counted(torch.addmm, bias, a, b) == (15 * 14, {"addmm": 210})
    # batched: 2 batches of 15 outputs
    assert counted(torch.bmm, torch.ones(2, 5, 7), torch.ones(2, 7, 3))[0] == 2 * 15 * 13
    assert counted(torch.mv, a, torch.ones(7))[0] == 5 * 13
    assert counted(torch.dot, torch.ones(7), torch.ones(7))[0] == 13


def test_convolution_counts_kernel_dot_products_and_bias():
    x, w = torch.ones(1, 4, 6, 6), torch.ones(6, 2, 3, 3)  # groups = 2: 2 input channels each
    out_numel = 1 * 6 * 4 * 4
    per_output = 2 * 2 * 3 * 3 - 1  # 18 multiplies, 17 adds
    assert counted(torch.nn.functional.conv2d, x, w, None, 1, 0, 1, 2)[0] == out_numel * per_output
    bias = torch.ones(6)
    total = counted(torch.nn.functional.conv2d, x, w, bias, 1, 0, 1, 2)[0]
    assert total == out_numel * (per_output + 1)


def test_elementwise_reductions_and_movement():
    x = torch.ones(3, 4)
    assert counted(torch.exp, x) == (12, {"exp": 12})
    assert counted(lambda t: t.sum(dim=1), x) == (3 * 3, {"sum": 9})  # 3 rows of 4 terms
    assert counted(lambda t: t.mean(dim=0), x) == (12, {"mean": 12})  # 4 x (3 adds + 1 divide)
    assert counted(lambda t: t.amax(dim=1), x)[0] == 9
    assert counted(lambda t: t.var(dim=1), x)[0] == 4 * 12  # two-pass variance, 4n per output
    assert counted(lambda t: t.t().reshape(12).clone(), x) == (0, {})
    assert counted(lambda t: torch.cat([t, t]), x) == (0, {})


def test_in_place_ops_count_as_their_functional_form():
    x = torch.ones(3, 4)
    assert counted(lambda t: t.add_(1), x) == (12, {"add": 12})


def test_composite_ops_are_decomposed_by_torch_tables():
    x = torch.randn(2, 5)
    # softmax -> amax (4 per row), sub (10), exp (10), sum (4 per row), div (10)
    total, by_op = counted(lambda t: torch.softmax(t, dim=1), x)
    assert by_op == {"amax": 8, "sub": 10, "exp": 10, "sum": 8, "div": 10}
    assert total == 46
    # GELU -> mul, mul, erf, add, mul: 5 per element
    assert counted(torch.nn.functional.gelu, x)[0] == 50


def test_unknown_op_raises_never_counts_zero():
    with pytest.raises(UncountedOpError, match="no counting rule for operator"):
        counted(lambda t: torch.fft.fft(t), torch.randn(8))


def test_registry_rejects_duplicates_and_unknown_kinds():
    with pytest.raises(ValueError, match="already counted"):
        register_op("mm", kind="elementwise")
    with pytest.raises(ValueError, match="unknown kind"):
        register_op("brand_new_op", kind="magic")
    assert "brand_new_op" not in OP_TABLE


def test_count_reports_all_three_conventions_and_restores_nothing_global():
    conv = torch.nn.Conv2d(3, 4, 3)
    c = lc.count(conv, (2, 3, 8, 8), convention="macs")
    assert c.params == 4 * 3 * 9 + 4
    assert c.output_shape == (2, 4, 6, 6)
    assert c.costs["torch"] == 2 * c.costs["macs"] == 2 * 2 * 4 * 36 * 27
    assert c.flops == c.costs["macs"]
    with pytest.raises(lc.ConventionError):
        lc.count(conv, (2, 3, 8, 8), convention="seed")


def test_count_accepts_tensors_and_uses_training_mode_on_a_copy():
    bn = torch.nn.BatchNorm2d(3).eval()
    before = bn.running_mean.clone()
    c = lc.count(bn, torch.randn(2, 3, 4, 4), training=True)
    assert torch.equal(bn.running_mean, before) and not bn.training  # caller's module untouched
    assert c.costs["exact"] == lc.evaluate(
        lc.rule("BatchNorm2d").cost("exact", True), lc.bind(bn, (2, 3, 4, 4))
    )


class _Keep(torch.autograd.Function):
    """Identity whose graph node holds a marker object, alive as long as the graph is."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[no-untyped-def]
        ctx.marker = _Marker()
        return x.clone()

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def]
        return grad


class _Marker:
    pass


def test_count_lets_each_pass_s_graph_go_before_the_next_pass():
    # count() runs the module twice with grad enabled (the op counter, then FlopCounterMode);
    # holding the first pass's output with its graph doubled the peak memory, and large
    # models' processes died at their default images (efficientnet_b8: 13 GB at batch 1)
    import weakref

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(3, 3)
            self.markers: list = []
            self.alive_at_call: list[bool] = []

        def forward(self, x):  # type: ignore[no-untyped-def]
            self.alive_at_call.append(any(m() is not None for m in self.markers))
            y = _Keep.apply(self.linear(x))
            self.markers.append(weakref.ref(y.grad_fn.marker))
            return y, {"twice": (torch.relu(y) * 2, 3)}  # relu saves its output

    model = Model()
    c = lc.count(model, (2, 3))
    assert model.alive_at_call == [False, False]  # the first pass's graph gone at the second
    assert len(model.markers) == 2 and c.output_shape == (2, 3)
    # and nothing of either pass outlives count(): torch kept the saved-tensor hook of the
    # second pass (it measures the bytes autograd saves), and with it every saved tensor and
    # their graph; a process counting model after model grew by each model's activations
    gc.collect()
    assert [m() for m in model.markers] == [None, None]
