"""PairwiseDistance (drawn norms, shapes and keepdim) and CosineSimilarity (any dim) against
torch."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import layercost_sym as lc
from layercost_sym.errors import ShapeError
from layercost_sym.testing._cases_distance import cosine_similarity_cases
from layercost_sym.testing.strategies import LayerCase
from layercost_sym.testing.torchcheck import check_against_torch, eager_not_stated


@st.composite
def pairwise_distance_cases(draw):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    kwargs = {
        "p": draw(st.sampled_from([2.0, 1.0, 3.0, 0.5, -1.0, 0.0, float("inf"), 1.5, 1.25, 7.0])),
        "eps": 1e-6,
        "keepdim": draw(st.booleans()),
    }
    return LayerCase("PairwiseDistance", kwargs, (shape, shape), training=draw(st.booleans()))


@given(pairwise_distance_cases())
def test_pairwise_distance_matches_torch(case):
    binding, _ = check_against_torch(case)
    # the variant follows the norm and keepdim: p = 2 skips |.|, inf and 0 have no root; the
    # backward takes a branch by p (norm_backward in torch's FunctionsManual.cpp)
    p = case.kwargs["p"]
    special = {2.0: "p2", float("inf"): "pinf", 0.0: "p0", 1.0: "p1"}.get(p) or (
        "p_below_1" if p < 1 else "p_1_to_2" if p < 2 else "p_above_2"
    )
    keep = "keepdim" if case.kwargs["keepdim"] else ""
    expected = "_".join(part for part in (special, keep) if part) or "PairwiseDistance"
    assert binding.rule.name.split(".")[-1] == expected


@given(cosine_similarity_cases())
def test_cosine_similarity_matches_torch(case):
    binding, _ = check_against_torch(case)
    at = case.kwargs["dim"] % len(case.input_shapes[0])
    assert binding["D"] == case.input_shapes[0][at]  # the reduced dimension, wherever it is


def test_a_when_bound_is_strict_at_its_ends():
    # p = 1 and p = 2 are their own branches, not the ranges' ends
    for p, name in [(1.0, "p1"), (2.0, "p2"), (0.999, "p_below_1"), (2.001, "p_above_2")]:
        rule = lc.bind(torch.nn.PairwiseDistance(p=p), (2, 3), (2, 3)).rule
        assert rule.name == f"PairwiseDistance.{name}"
    # NaN compares false with every bound: no branch of norm_backward, no backward stated
    nan = lc.bind(torch.nn.PairwiseDistance(p=float("nan")), (2, 3), (2, 3)).rule
    assert nan.name == "PairwiseDistance" and not nan.conventions_of("backward")


def test_cosine_similarity_refuses_inputs_it_would_miscount():
    module = torch.nn.CosineSimilarity(dim=1)
    with pytest.raises(ShapeError, match="dimensions of P are"):
        lc.bind(module, (2, 3, 4, 6), (2, 3, 6, 4))  # equal products, torch rejects
    with pytest.raises(ShapeError, match="D is 3"):
        lc.bind(module, (2, 3, 4), (2, 1, 4))  # a broadcast along dim: not the rule's count


# Rules of this family that do not state bytes under eager yet (issue 14); a rule leaves the
# set when it states them (the property tests above then prove them, in float32 and bfloat16).
EAGER_NOT_YET: set[str] = set()


def test_eager_bytes_stated_by_every_distance_rule_but_the_listed_ones():
    assert eager_not_stated("distance") == EAGER_NOT_YET
