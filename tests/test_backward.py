"""Quantity ``backward``: the FLOPs of the backward pass of one forward call, measured by
``lc.count(..., backward=True)`` with the op counter (``exact``: torchtools/ops/backward.py and
torch's decompositions) and FlopCounterMode (``macs``, ``torch``) around
``torch.autograd.grad`` of the outputs' sum with respect to the parameters and inputs that
require grad.  Expected figures are worked out beside each
assertion or come from the analysis, which states the ``torch`` backward of every product."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import layercost_sym as lc


def test_a_linear_layers_backward_worked_by_hand():
    linear = nn.Linear(3, 4)
    # x (2, 3) without grad: the weight's gradient g^T x, (4, 2) x (2, 3): 4*3*(2*2 - 1) = 36;
    # the bias's, g summed over the batch: 4*(2 - 1) = 4; no input gradient
    counted = lc.count(linear, (2, 3), backward=True)
    assert counted.quantity("backward") == 36 + 4
    assert counted.quantity("backward", "macs") == 4 * 3 * 2
    # x requiring grad adds g W, (2, 4) x (4, 3): 2*3*(2*4 - 1) = 42, and 2*3*4 multiply-adds
    x = torch.randn(2, 3, requires_grad=True)
    counted = lc.count(linear, x, backward=True)
    assert counted.quantity("backward") == 36 + 4 + 42
    assert counted.quantity("backward", "torch") == 2 * (24 + 24)
    assert x.grad is None  # nothing accumulates into .grad


def test_frozen_weights_have_no_gradient_work():
    linear = nn.Linear(3, 4)
    linear.weight.requires_grad_(False)
    # only the bias's gradient: 4*(2 - 1) adds; no product at all
    counted = lc.count(linear, (2, 3), backward=True)
    assert counted.quantity("backward") == 4 and counted.quantity("backward", "torch") == 0
    # nothing requires grad: nothing to compute
    assert lc.count(nn.ReLU(), (2, 3), backward=True).quantity("backward") == 0


def test_backward_is_measured_only_when_asked():
    with pytest.raises(lc.ConventionError, match="backward=True"):
        lc.count(nn.Linear(3, 4), (2, 3)).quantity("backward")


def test_resnet18_backward_torch_flops_are_the_analysis():
    # analyze(backward=True) states each product's input and weight gradients (torch): its
    # forward-plus-backward total less the forward is what FlopCounterMode sees in backward
    model = torchvision.models.resnet18(weights=None).eval()
    both = lc.analyze(model, ("N", 3, "H", "W"), backward=True)
    forward = lc.analyze(model, ("N", 3, "H", "W"))
    for n, size in [(2, 64), (1, 97)]:
        at = {"N": n, "H": size, "W": size}
        counted = lc.count(model, (n, 3, size, size), backward=True)
        expected = both.evaluate(at, "torch") - forward.evaluate(at, "torch")
        assert counted.quantity("backward", "torch") == expected
        assert counted.quantity("backward") > 0


def test_flop_counter_counts_a_grouped_convolutions_weight_gradient_as_dense():
    # torch's conv_backward_flop ignores groups: a depthwise convolution's weight gradient is
    # counted as the dense convolution's, C/g = 32 times its products.  Forward: 2*N*C*k*k*H*W
    # = 2*2*32*9*64 = 73728; the input's gradient the same; the weight's counted 32 x 73728
    conv = nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False)
    x = torch.randn(2, 32, 8, 8, requires_grad=True)
    counted = lc.count(conv, x, backward=True)
    forward = 2 * 2 * 32 * 9 * 64
    assert counted.quantity("flops", "torch") == forward
    assert counted.quantity("backward", "torch") == forward + 32 * forward
    # the analysis states the products the kernel runs: the weight's gradient of the forward's
    # size (its input, the model's, needs none), which is why analyze(backward=True) on
    # mobilenet_v2 is less than FlopCounterMode's count
    both = lc.analyze(conv, x.shape, backward=True)
    assert both.evaluate({}, "torch") == forward + forward


# Module rules that state no backward in any variant (issue 15: every rule with parameters or
# arithmetic states it; each stating rule is proven by its family's property test:
# check_against_torch with the input's grad on and off and the weights trained and frozen, the
# transformer layers' and SDPA's by their own tests).  Variants that state none are listed in
# the rules' comments (MaxPool dilated and padded: torch's kernel writes outside grad_input;
# sparse embeddings: a sparse gradient; Conv with zero padding, stride and dilation > 1: a
# floor sum with no closed form; PairwiseDistance for p other than 2, inf, 0).  Functional rules:
# tests/test_rules_functional.py.
BACKWARD_NOT_STATED = {
    # torch's own Python backward (torch/nn/_functions.py) raises for size=1, which the
    # strategy draws; a variant cannot drop an inherited backward
    "CrossMapLRN2d",
}


def _states_backward(rule) -> bool:
    return any(r.conventions_of("backward") for r in (rule, *getattr(rule, "variants", ())))


def test_every_module_rule_states_backward_but_the_listed_ones():
    modules = [n for n in lc.rules() if lc.rule(n).family != "functional"]
    assert {n for n in modules if not _states_backward(lc.rule(n))} == BACKWARD_NOT_STATED


def test_a_rules_backward_needs_its_weights_all_trained_or_all_frozen():
    linear = nn.Linear(3, 4)
    linear.bias.requires_grad_(False)
    binding = lc.bind(linear, (2, 3))  # forward costs do not care
    assert binding.cost() == lc.count(linear, (2, 3)).cost("exact")
    with pytest.raises(lc.EvaluationError, match="gw"):  # the backward names the flag
        lc.evaluate(binding.rule.quantity("backward"), binding)
    # all trained: the weight's and the bias's gradients, 4*3*(2*2 - 1) + 4*(2 - 1)
    assert (
        lc.evaluate(lc.rule("Linear").quantity("backward"), lc.bind(nn.Linear(3, 4), (2, 3))) == 40
    )


class _Repeated(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        return self.fc(x).repeat(1, 2)  # repeat's backward sums the copies: not stated


def test_a_models_backward_from_its_rules():
    # every layer states its backward: the closed form is the model's, the model's input needs
    # no gradient (rg = 0 at the first Linear), the activations after it do
    mlp = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    analysis = lc.analyze(mlp, ("N", 8))
    for n in (1, 3, 7):
        counted = lc.count(mlp, (n, 8), backward=True)
        for convention in ("exact", "macs", "torch"):
            expected = counted.quantity("backward", convention)
            assert lc.evaluate(analysis.quantity("backward", convention), {"N": n}) == expected
    # a call whose rule states none is named, never counted as 0
    with pytest.raises(lc.ConventionError, match="repeat"):
        lc.analyze(_Repeated(), ("N", 8)).quantity("backward")
