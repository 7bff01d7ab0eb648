"""The seed article's four layers against the real torch modules, over drawn configurations.

For every drawn case: the rule's params, output shape and exact / macs / torch costs, evaluated at
``lc.bind(module, shape)``, equal what ``lc.count`` measures on the module (numel, the real
output, the package's op counter, FlopCounterMode).
"""

import pytest
import sympy
from hypothesis import given

import layercost_sym as lc
from layercost_sym.testing import strategies as lst
from layercost_sym.testing import torchcheck

CASES = {
    "Conv2d": lst.conv2d_cases(),
    "BatchNorm2d": lst.batchnorm2d_cases(),
    "LeakyReLU": lst.leaky_relu_cases(),
    "Linear": lst.linear_cases(),
}


def check_against_torch(case: lst.LayerCase) -> None:
    binding, _ = torchcheck.check_against_torch(case)
    assert binding.rule.module == case.name


@pytest.mark.parametrize("name", sorted(CASES))
def test_rule_matches_torch(name):
    given(CASES[name])(check_against_torch)()


def test_batchnorm_training_and_inference_both_drawn():
    # the training-mode cost differs from inference: both modes are checked explicitly
    given(lst.batchnorm2d_cases(training=True))(check_against_torch)()
    given(lst.batchnorm2d_cases(training=False))(check_against_torch)()


# -- the seed convention against the counted values, symbolically --------------------------------


def test_seed_conv2d_differs_from_exact_by_n_with_bias():
    r = lc.rule("Conv2d")
    # a fresh symbol built as the glossary states flags (integer, non-negative): it must be the
    # rule's own b, or the substitution below would leave b in the difference
    with_bias = {sympy.Symbol("b", integer=True, nonnegative=True): 1}
    # seed (bias): N*(C_in*k*k*C_out*H_out*W_out*2) + N; exact: N*C_out*H_out*W_out*2*(C_in/g)*k*k.
    # With g = 1 the difference is the article's extra "+ N".
    g = lc.parse("g")
    diff = sympy.simplify((r.cost("seed") - r.flops).subs({**with_bias, g: 1}))
    assert diff == lc.parse("N")


def test_seed_conv2d_without_bias_overcounts_by_outputs_minus_batch():
    r = lc.rule("Conv2d")
    b, g = lc.parse("b"), lc.parse("g")
    diff = sympy.simplify((r.cost("seed") - r.flops).subs({b: 0, g: 1}))
    # seed: N*(2*K*C_out*HW - 1) + N = 2*N*K*C_out*HW; exact: N*C_out*HW*(2K - 1)
    # difference: N*C_out*H_out*W_out, the one add per output the article counts without a bias
    outputs = r.expand(lc.parse("N*C_out*H_out*W_out"))
    assert sympy.simplify(diff - outputs) == 0


def test_seed_batchnorm_differs_from_exact():
    r = lc.rule("BatchNorm2d")
    a, rr = lc.parse("a"), lc.parse("r")
    inference = sympy.expand((r.cost("seed") - r.flops).subs({a: 1, rr: 1}))
    # seed 2*NCHW vs exact 4*NCHW + 2*C (sub, mul, mul, add per element; add, rsqrt per channel)
    assert inference == lc.parse("-2*N*C*H*W - 2*C")
    training = sympy.expand((r.cost("seed", True) - r.cost("exact", True)).subs({a: 1, rr: 1}))
    # seed 8*NCHW vs exact 9*NCHW + 9*C + 1
    assert training == lc.parse("-N*C*H*W - 9*C - 1")


def test_seed_linear_agrees_with_exact():
    r = lc.rule("Linear")
    b = lc.parse("b")
    for flag in (0, 1):
        assert sympy.simplify((r.cost("seed") - r.flops).subs(b, flag)) == 0


def test_seed_activation_is_zero_but_exact_is_not():
    r = lc.rule("LeakyReLU")
    assert r.cost("seed") == 0
    assert r.flops == lc.parse("3*N")
