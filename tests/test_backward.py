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
# floor sum with no closed form; PairwiseDistance for a norm that is NaN).  Functional rules:
# tests/test_rules_functional.py.
BACKWARD_NOT_STATED: set[str] = set()  # CrossMapLRN2d's: a constraint of backward alone, size >= 2


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


# -- a backward torch refuses where its forward runs: a constraint of quantity backward alone ---
def _lrn(size: int) -> nn.Module:
    return nn.CrossMapLRN2d(size, alpha=1e-4, beta=0.75, k=1)


def test_a_backward_only_constraint_refuses_the_backward_and_keeps_the_forward():
    x = torch.randn(2, 3, 4, 5, requires_grad=True)
    with pytest.raises(RuntimeError, match="exceeds dimension size"):  # torch's own refusal
        _lrn(1)(x).sum().backward()
    rule = lc.rule("CrossMapLRN2d")
    binding = lc.bind(_lrn(1), x)  # binding checks the forward's domain: it holds
    counted = lc.count(_lrn(1), x)
    assert lc.evaluate(rule.cost(), binding) == counted.cost("exact")
    assert lc.evaluate(rule.quantity("saved"), binding) == counted.quantity("saved")
    with pytest.raises(lc.DomainError, match=r"'k_c >= 2 or rg == 0' fails .*size 1.*k_c=1, rg=1"):
        lc.evaluate(rule.quantity("backward"), binding)
    # an input that needs no gradient: no backward to refuse (rg = 0 gives 0)
    assert lc.evaluate(rule.quantity("backward"), lc.bind(_lrn(1), x.detach())) == 0
    # size 2 runs: T = 2*3*4*5 = 120 elements, planes N*H*W = 40: 9*120 + 40*(2 - 2)
    assert lc.count(_lrn(2), x, backward=True).quantity("backward") == 9 * 120


def test_a_composed_cost_refuses_only_the_quantity_whose_constraint_fails():
    cost = lc.rule("CrossMapLRN2d").at(N=2, C=3, H=4, W=5, k_c=1, rg=1, e_a=4)
    assert cost.evaluate({}) == lc.count(_lrn(1), torch.randn(2, 3, 4, 5)).cost("exact")
    with pytest.raises(lc.DomainError, match="k_c >= 2 or rg == 0"):
        cost.evaluate({}, quantity="backward")
    k = lc.symbols("k_c")
    open_ = lc.rule("CrossMapLRN2d").at(N=2, C=3, H=4, W=5, k_c=k, rg=1)
    assert open_.evaluate({"k_c": 3}, quantity="backward") == 9 * 120 + 40 * (3 - 2)
    with pytest.raises(lc.DomainError, match="k_c >= 2"):
        lc.evaluate(open_.quantity("backward"), {"k_c": 1})


def test_an_analysis_with_backward_carries_the_backward_only_constraint():
    for size in (1, 3):
        model = nn.Sequential(nn.Conv2d(3, 4, 3), _lrn(size))
        # the legacy Function allocates with Python ints: every size would be pinned
        forward = lc.analyze(model, (2, 3, 9, 7))
        both = lc.analyze(model, (2, 3, 9, 7), backward=True)
        at: dict[str, int] = {}
        x = torch.randn(2, 3, 9, 7)
        assert forward.evaluate(at, "exact") == lc.count(model, x).cost("exact")
        if size == 1:
            with pytest.raises(lc.DomainError, match="k_c >= 2 or rg == 0"):
                both.evaluate(at, "exact")
            with pytest.raises(lc.DomainError, match="k_c >= 2 or rg == 0"):
                lc.evaluate(both.quantity("backward", "exact"), at)
            continue
        counted = lc.count(model, x, backward=True)
        want = counted.cost("exact") + counted.quantity("backward")
        assert both.evaluate(at, "exact") == want


def test_the_outputs_a_gradient_reaches_are_told_apart_from_the_unused_ones():
    # reached_keys walks the autograd graph through Python wrappers of its nodes; a wrapper
    # freed during the walk leaves its id free for the wrapper of a node it never reached
    # (b's), so b read as reached.  Many fresh graphs, so an id reused once shows.
    from layercost_sym.torchtools.gradients import grad_key, reached_keys

    wrong = 0
    for _ in range(200):
        x = torch.randn(2, requires_grad=True)
        a, b = x * 2, x * 3  # b is not used
        reached = reached_keys([a.sum()])
        assert grad_key(a) in reached
        wrong += grad_key(b) in reached
    assert wrong == 0
