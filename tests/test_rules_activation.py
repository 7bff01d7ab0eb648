"""The activation and linear families' rules against the real torch modules, over drawn cases.

For every drawn case: the rule's params, output shape and exact / macs / torch costs, evaluated at
``lc.bind(module, *shapes)``, equal what ``lc.count`` measures (numel, the real output, the
package's op counter, FlopCounterMode).  Bilinear's MACs are invisible to FlopCounterMode (it
counts 0 for ``_trilinear``) and are checked against the same bilinear form run as one matmul.
"""

import math

import pytest
import torch
from hypothesis import given
from torch.utils.flop_counter import FlopCounterMode

import layercost_sym as lc
from layercost_sym.errors import ShapeError
from layercost_sym.testing import _cases_activation as cases
from layercost_sym.testing.torchcheck import check_against_torch, eager_not_stated

CASES = {
    **{name: cases.activation_cases(name) for name in cases.ELEMENTWISE},
    **{name: cases.softmax_cases(name) for name in cases.SOFTMAX_LIKE},
    "PReLU": cases.prelu_cases(),
    "Softmax2d": cases.softmax2d_cases(),
    "GLU": cases.glu_cases(),
    "Identity": cases.identity_cases(),
    "Flatten": cases.flatten_cases(),
    "Unflatten": cases.unflatten_cases(),
}


def _check(case) -> None:
    binding, _ = check_against_torch(case)
    assert binding.rule.module == case.name


@pytest.mark.parametrize("name", sorted(CASES))
def test_rule_matches_torch(name):
    given(CASES[name])(_check)()


@given(cases.bilinear_cases())
def test_bilinear_matches_torch(case):
    binding, _ = check_against_torch(case, conventions=("exact",))
    # FlopCounterMode cannot see _trilinear.  The same form, y_k = sum_ij x1_i W_kij x2_j, is one
    # matmul of the outer product x1 (x) x2 (C_in*C_in2 features) with W viewed as
    # (C_out, C_in*C_in2): FlopCounterMode counts its multiply-adds.
    module = case.build()
    x1, x2 = case.tensors()
    outer = (x1.unsqueeze(-1) * x2.unsqueeze(-2)).flatten(-2)
    weight = module.weight.detach().reshape(module.out_features, -1)
    with FlopCounterMode(display=False) as counter:
        as_matmul = torch.nn.functional.linear(outer, weight, None)
    torch.testing.assert_close(
        module(x1, x2).detach(),
        as_matmul + (module.bias.detach() if module.bias is not None else 0),
        rtol=1e-4,
        atol=1e-4,
    )
    macs = counter.get_total_flops() // 2
    assert lc.evaluate(binding.rule.cost("macs"), binding) == macs
    assert lc.evaluate(binding.rule.cost("torch"), binding) == 2 * macs


def test_both_modes_and_inplace_are_drawn_for_rrelu():
    # RReLU's kernel differs between training (random slopes) and eval (mean slope); both are
    # counted as compare, multiply, select per element: 3 * 2*3*4 = 72
    for training in (False, True):
        for inplace in (False, True):
            module = torch.nn.RReLU(inplace=inplace).train(training)
            counted = lc.count(module, torch.randn(2, 3, 4), training=training)
            assert counted.flops == 72
            assert lc.bind(module, (2, 3, 4)).cost() == 72


def test_celu_default_alpha_skips_divide_and_multiply():
    # alpha = 1.0: expm1, comparison, select (3 per element); alpha = 2.0 adds x / alpha and
    # alpha * (...) (5 per element); 24 elements
    assert lc.count(torch.nn.CELU(), (2, 3, 4)).flops == 72
    assert lc.bind(torch.nn.CELU(), (2, 3, 4)).cost() == 72
    assert lc.count(torch.nn.CELU(2.0), (2, 3, 4)).flops == 120
    assert lc.bind(torch.nn.CELU(2.0), (2, 3, 4)).cost() == 120


@pytest.mark.parametrize(
    ("module", "shape"),
    [
        (torch.nn.Softmax(), (2, 3, 4)),  # implicit dim (deprecated)
        (torch.nn.Unflatten(-1, (1,) * 8 + (6,)), (4, 6)),  # 9 sizes: more than stated
    ],
)
def test_uncovered_options_are_rejected_not_miscounted(module, shape):
    module(torch.randn(shape))  # torch accepts them
    with pytest.raises(ShapeError):
        lc.bind(module, shape)


def test_softmax_formula():
    # per row of L: amax L-1, sub L, exp L, sum L-1, div L -> 5L - 2; (2, 3, 4) over the last dim
    # has 6 rows of 4: 6 * 18 = 108
    assert lc.count(torch.nn.Softmax(-1), (2, 3, 4)).flops == 108
    assert lc.evaluate(lc.rule("Softmax").flops, {"N": 24, "L": 4}) == 108  # N: elements


@pytest.mark.parametrize(("dim", "shape"), [(0, (4, 3)), (2, (2, 3, 4, 5)), (-4, (4, 3, 2, 2))])
def test_glu_over_any_dim_splits_that_dimension(dim, shape):
    # the anchored pattern "N... L@dim P...": N and P are the products around dimension dim
    module = torch.nn.GLU(dim)
    binding = lc.bind(module, shape)
    at = dim % len(shape)
    assert (binding["N"], binding["L"], binding["P"]) == (
        math.prod(shape[:at]),
        shape[at],
        math.prod(shape[at + 1 :]),
    )
    assert binding.output_shape() == tuple(module(torch.randn(shape)).shape)
    with pytest.raises(ShapeError, match=r"module\.dim = 4 is not a dimension"):
        lc.bind(torch.nn.GLU(4), shape)


# Rules of this family that do not state bytes under eager yet (issue 14); a rule leaves the
# set when it states them (the property tests above then prove them, in float32 and bfloat16).
EAGER_NOT_YET: set[str] = set()


def test_eager_bytes_stated_by_every_activation_rule_but_the_listed_ones():
    assert eager_not_stated("activation") == EAGER_NOT_YET
