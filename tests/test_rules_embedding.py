"""The embedding family's rules against the real torch modules, over drawn configurations.

* Embedding (no max_norm) and EmbeddingBag (1-d indices with offsets, or 2-d indices: B bags of L;
  every bag non-empty, no index equal to padding_idx): params, output shape and exact / macs /
  torch costs equal what ``lc.count`` measures.
* EmbeddingBag with empty bags, padding entries or per_sample_weights: the counter equals a
  derivation from the index data written out below, and the rule equals it where its stated
  assumptions hold.
* max_norm: the renormalisation's work depends on the data (how many distinct rows are looked up,
  V_d, and how many of them exceed max_norm, V_r).  Both are derived here from the indices and the
  weights before the call (and the rows torch really rescales are checked against that
  derivation); the rule bound to them equals the counter (which counts embedding_renorm_ before it
  runs), and the rule's default (the upper bound) is never below it and is reached when every
  looked-up row is distinct and exceeds max_norm.
"""

import bisect
import copy
import itertools
import math
from collections import Counter

import pytest
import torch
from hypothesis import given
from torch.utils.flop_counter import FlopCounterMode

import layercost_sym as lc
from layercost_sym.errors import ShapeError
from layercost_sym.testing import _cases_embedding as cases
from layercost_sym.testing.torchcheck import check_against_torch, eager_not_stated


def _check(case):
    binding, counted = check_against_torch(case)
    assert binding.rule.module == case.name
    return binding, counted


@given(cases.embedding_cases())
def test_embedding_matches_torch(case):
    _check(case)


@given(cases.embedding_bag_cases(two_d=None))
def test_embedding_bag_matches_torch(case):
    binding, _ = _check(case)
    assert binding.rule.name.startswith(f"EmbeddingBag.{case.kwargs['mode']}") or (
        case.kwargs["mode"] == "mean" and case.kwargs["norm_type"] not in cases.NORM_TYPES[:5]
    )
    assert binding.rule.name.endswith("_2d") == (len(case.input_shapes[0]) == 2)


# -- EmbeddingBag beyond the rule's assumptions: a derivation from the index data ------------------


def _bounds(case):
    """(indices, start of each bag, end of the last bag): 2-d input is B bags of L entries."""
    values = case.literal_inputs[0]
    if len(case.input_shapes[0]) == 2:
        rows, length = case.input_shapes[0]
        return values, tuple(range(0, rows * length, length)), len(values)
    offsets = case.literal_inputs[1]
    starts = offsets[:-1] if case.kwargs["include_last_offset"] else offsets
    end = offsets[-1] if case.kwargs["include_last_offset"] else len(values)
    return values, starts, end


def _bag_work(case, weighted):
    """Per bag: (c - 1)*E adds (sum, + c*E multiplies with weights) or comparisons (max), c*E for
    mean, where c counts the bag's entries other than padding_idx; an empty bag costs 0."""
    values, starts, end = _bounds(case)
    rows, dim = case.kwargs["num_embeddings"], case.kwargs["embedding_dim"]
    pad = case.kwargs["padding_idx"]
    pad = None if pad is None else pad % rows
    sizes = Counter(
        bisect.bisect_right(starts, pos) - 1 for pos in range(end) if values[pos] != pad
    )  # position -> the last bag starting at or before it
    valid, nonempty = sum(sizes.values()), len(sizes)
    if case.kwargs["mode"] == "mean":
        return dim * valid
    return dim * (valid - nonempty) + (dim * valid if weighted else 0)


def _call(case):
    module = case.build()
    tensors = case.tensors()
    weights = torch.randn(tensors[0].shape) if case.notes["per_sample_weights"] else None
    counted = lc.count(module, *tensors, training=case.training, per_sample_weights=weights)
    binding = lc.bind(module, *tensors, per_sample_weights=weights)
    return module, tensors, weights, counted, binding


@given(cases.embedding_bag_cases(clean=False, per_sample_weights=None, two_d=None))
def test_embedding_bag_empty_bags_and_padding(case):
    weighted = case.notes["per_sample_weights"]
    _, _, _, counted, binding = _call(case)
    derived = _bag_work(case, weighted)
    assert counted.cost("exact") == derived
    assert counted.cost("macs") == counted.cost("torch") == 0
    values, starts, end = _bounds(case)
    pad = case.kwargs["padding_idx"]
    no_padding = pad is None or pad % case.kwargs["num_embeddings"] not in values
    nonempty = all(a < b for a, b in itertools.pairwise((*starts, end)))
    if no_padding and (nonempty or case.kwargs["mode"] == "mean"):
        assert binding.cost("exact") == derived  # the rule's assumptions hold


@given(cases.embedding_bag_cases(modes=("sum",), per_sample_weights=True, two_d=None))
def test_embedding_bag_per_sample_weights(case):
    _, tensors, _, counted, binding = _call(case)
    assert binding["psw"] == 1  # read from the forward argument, as the forward reads it
    assert binding.cost("exact") == counted.cost("exact") == _bag_work(case, True)
    assert binding.cost("macs") == counted.cost("macs") == 0
    assert lc.bind(case.build(), *tensors, per_sample_weights=None)["psw"] == 0


def test_embedding_bag_2d_input_takes_no_offsets():
    module = torch.nn.EmbeddingBag(5, 2, mode="sum")
    indices = torch.tensor([[1, 2, 3], [0, 4, 4]])
    assert lc.bind(module, indices).rule.name == "EmbeddingBag.sum_p2_2d"
    with pytest.raises(ShapeError, match="takes 1 input"):
        lc.bind(module, indices, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="offsets has to be None"):
        module(indices, torch.tensor([0, 1]))  # torch rejects it too
    # without the inputs (lc.rule_for), the rank cannot be known: the 1-d form
    assert lc.rule_for(module).name == "EmbeddingBag.sum_p2"


@pytest.mark.parametrize("option", ["sparse", "scale_grad_by_freq"])
def test_embedding_bag_max_mode_rejects_sparse_and_frequency_scaling(option):
    module = torch.nn.EmbeddingBag(5, 2, mode="max", **{option: True})
    indices, offsets = torch.tensor([1, 2, 3]), torch.tensor([0, 1])
    with pytest.raises(ShapeError, match="max mode does not support"):
        lc.bind(module, indices, offsets)
    with pytest.raises(ValueError, match="max mode does not support"):
        module(indices, offsets)  # torch rejects it too


@pytest.mark.parametrize("mode", ["mean", "max"])
def test_embedding_bag_per_sample_weights_only_with_sum(mode):
    module = torch.nn.EmbeddingBag(5, 2, mode=mode)
    indices, offsets = torch.tensor([1, 2, 3]), torch.tensor([0, 1])
    with pytest.raises(ShapeError, match="per_sample_weights"):
        lc.bind(module, indices, offsets, per_sample_weights=1)
    with pytest.raises((ValueError, NotImplementedError, RuntimeError)):
        module(indices, offsets, per_sample_weights=torch.ones(3))  # torch rejects it too


# -- max_norm: the data-dependent renormalisation -------------------------------------------------


def _renorm_data(module, *inputs):
    """V_d (distinct looked-up rows) and V_r (those above max_norm), from the indices and the
    weights before the call; checks that torch's forward rescales exactly the V_r rows and leaves
    the others alone."""
    weight = module.weight.detach().clone()
    rows = sorted(set(inputs[0].reshape(-1).tolist()))
    above = [r for r in rows if weight[r].norm(module.norm_type).item() > module.max_norm]
    run = copy.deepcopy(module)
    with torch.no_grad():
        run(*inputs)
    changed = [r for r in range(weight.shape[0]) if not torch.equal(run.weight[r], weight[r])]
    assert changed == above
    return {"V_d": len(rows), "V_r": len(above)}


def _renorm_work(module, data):
    """embedding_renorm_, written out: per distinct row a norm (ATen's norm kernel: p = 2: E
    squares, E - 1 adds, a root; p = 1, 0, +-inf: E abs (or != 0), E - 1 adds (or max / min);
    any other p: E abs, E powers, E - 1 adds, a root) and a comparison; per row above max_norm
    scale = max_norm / (norm + 1e-7) (2) and E multiplies."""
    p, dim = module.norm_type, module.embedding_dim
    norm = 2 * dim if p == 2 else 2 * dim - 1 if p in (1, 0, math.inf, -math.inf) else 3 * dim
    return data["V_d"] * (norm + 1) + data["V_r"] * (dim + 2)


def _check_with_data(case, **call_kwargs):
    """The rule bound to the data's V_d, V_r against lc.count: params, shape, exact, macs, torch;
    returns (binding with the data, binding with the defaults, counted, data)."""
    module, tensors = case.build(), case.tensors()
    data = _renorm_data(module, *tensors)
    binding = lc.bind(module, *tensors, data=data, **call_kwargs)
    counted = lc.count(module, *tensors, training=case.training, **call_kwargs)
    assert binding.assumed == ()
    assert binding.params == counted.params
    assert binding.output_shape() == counted.output_shape
    for convention in ("exact", "macs", "torch"):
        assert binding.cost(convention) == counted.cost(convention), convention
    default = lc.bind(module, *tensors, **call_kwargs)
    assert default.assumed == ("V_d", "V_r")
    return binding, default, counted, data


@given(cases.embedding_cases(max_norm=True))
def test_embedding_max_norm(case):
    binding, default, counted, data = _check_with_data(case)
    assert counted.by_op.get("embedding_renorm_", 0) == _renorm_work(case.build(), data)
    n, v = binding["N"], binding["V"]
    assert default["V_d"] == default["V_r"] == min(n, v)  # the upper bound
    assert default.cost("exact") >= counted.cost("exact")


@given(cases.embedding_cases(max_norm="exceed", distinct=True))
def test_embedding_max_norm_bound_reached(case):
    _, default, counted, data = _check_with_data(case)
    # distinct indices and a tiny max_norm: every looked-up row is rescaled, the bound is exact
    assert data["V_d"] == data["V_r"] == min(default["N"], default["V"])
    assert default.cost("exact") == counted.cost("exact")


@given(cases.embedding_bag_cases(max_norm=True, two_d=None))
def test_embedding_bag_max_norm(case):
    _, default, counted, data = _check_with_data(case)
    module, tensors = case.build(), case.tensors()
    plain = copy.deepcopy(module)
    plain.max_norm = None  # the bag reductions alone: counted on the same data
    bags = lc.count(plain, *tensors, training=case.training).cost("exact")
    assert counted.cost("exact") == bags + _renorm_work(module, data)
    assert default.cost("exact") >= counted.cost("exact")


def test_data_symbols_are_checked():
    emb = torch.nn.Embedding(10, 4, max_norm=1.0)
    with pytest.raises(ShapeError, match="V_r <= V_d"):
        lc.bind(emb, (6,), data={"V_d": 2, "V_r": 3})
    with pytest.raises(ShapeError, match="Min\\(N, V\\)"):
        lc.bind(emb, (6,), data={"V_d": 7})  # 6 indices cannot name 7 rows
    with pytest.raises(ShapeError, match="not a data-dependent symbol"):
        lc.bind(emb, (6,), data={"N": 2})


def test_flop_counter_sees_no_renormalisation():
    module = torch.nn.Embedding(6, 3, max_norm=1e-20)
    indices = torch.tensor([[1, 2], [2, 5]])
    counter = FlopCounterMode(display=False)
    with counter:
        copy.deepcopy(module)(indices)
    assert counter.get_total_flops() == 0 == lc.bind(module, indices).cost("macs")


# Rules of this family that do not state bytes under eager yet (issue 14); a rule leaves the
# set when it states them (the property tests above then prove them, in float32 and bfloat16).
EAGER_NOT_YET: set[str] = set()


def test_eager_bytes_stated_by_every_embedding_rule_but_the_listed_ones():
    assert eager_not_stated("embedding") == EAGER_NOT_YET
