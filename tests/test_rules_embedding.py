"""The embedding family's rules against the real torch modules, over drawn configurations.

* Embedding (no max_norm) and EmbeddingBag (every bag non-empty, no index equal to padding_idx):
  params, output shape and exact / macs / torch costs equal what ``lc.count`` measures.
* EmbeddingBag with empty bags, padding entries or per_sample_weights: the counter equals a
  derivation from the index data written out below, and the rule equals it where its stated
  assumptions hold.
* max_norm: the renormalisation's work depends on the weights before the in-place call, which the
  package's counter cannot see (it raises instead).  Its work is derived here from the weights
  before the call (and the rows torch really rescales are checked against that derivation); the
  rule's upper bound is never below it and is reached when every looked-up row is distinct and
  exceeds max_norm.
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
from layercost_sym.errors import ShapeError, UncountedOpError
from layercost_sym.testing import _cases_embedding as cases
from layercost_sym.testing.torchcheck import check_against_torch


def _check(case):
    binding, counted = check_against_torch(case)
    assert binding.rule.module == case.name
    return binding, counted


@given(cases.embedding_cases())
def test_embedding_matches_torch(case):
    _check(case)


@given(cases.embedding_bag_cases())
def test_embedding_bag_matches_torch(case):
    binding, _ = _check(case)
    assert binding.rule.name.startswith(f"EmbeddingBag.{case.kwargs['mode']}") or (
        case.kwargs["mode"] == "mean" and case.kwargs["norm_type"] not in cases.NORM_TYPES[:5]
    )


# -- EmbeddingBag beyond the rule's assumptions: a derivation from the index data ------------------


def _bag_work(case, weighted):
    """Per bag: (c - 1)*E adds (sum, + c*E multiplies with weights) or comparisons (max), c*E for
    mean, where c counts the bag's entries other than padding_idx; an empty bag costs 0."""
    values, offsets = case.literal_inputs[0], case.literal_inputs[1]
    rows, dim = case.kwargs["num_embeddings"], case.kwargs["embedding_dim"]
    pad = case.kwargs["padding_idx"]
    pad = None if pad is None else pad % rows
    starts = offsets[:-1] if case.kwargs["include_last_offset"] else offsets
    end = offsets[-1] if case.kwargs["include_last_offset"] else len(values)
    sizes = Counter(
        bisect.bisect_right(starts, pos) - 1 for pos in range(end) if values[pos] != pad
    )  # position -> the last bag starting at or before it
    valid, nonempty = sum(sizes.values()), len(sizes)
    if case.kwargs["mode"] == "mean":
        return dim * valid
    return dim * (valid - nonempty) + (dim * valid if weighted else 0)


def _call(case):
    module = case.build()
    indices, offsets = case.tensors()
    weights = torch.randn(indices.shape) if case.notes["per_sample_weights"] else None
    counted = lc.count(module, indices, offsets, training=case.training, per_sample_weights=weights)
    flag = int(weights is not None)
    return (
        module,
        indices,
        offsets,
        weights,
        counted,
        lc.bind(module, indices, offsets, per_sample_weights=flag),
    )


@given(cases.embedding_bag_cases(clean=False, per_sample_weights=None))
def test_embedding_bag_empty_bags_and_padding(case):
    weighted = case.notes["per_sample_weights"]
    _, _, _, _, counted, binding = _call(case)
    derived = _bag_work(case, weighted)
    assert counted.cost("exact") == derived
    assert counted.cost("macs") == counted.cost("torch") == 0
    values, offsets = case.literal_inputs[0], case.literal_inputs[1]
    pad = case.kwargs["padding_idx"]
    no_padding = pad is None or pad % case.kwargs["num_embeddings"] not in values
    bounds = (*offsets, len(values)) if not case.kwargs["include_last_offset"] else offsets
    nonempty = all(a < b for a, b in itertools.pairwise(bounds))
    if no_padding and (nonempty or case.kwargs["mode"] == "mean"):
        assert binding.cost("exact") == derived  # the rule's assumptions hold


@given(cases.embedding_bag_cases(modes=("sum",), per_sample_weights=True))
def test_embedding_bag_per_sample_weights(case):
    _, indices, offsets, weights, counted, binding = _call(case)
    assert binding["psw"] == 1
    assert binding.cost("exact") == counted.cost("exact") == _bag_work(case, True)
    assert binding.cost("macs") == counted.cost("macs") == 0
    with pytest.raises(ShapeError, match="per_sample_weights"):  # a tensor is refused, not ignored
        lc.bind(case.build(), indices, offsets, per_sample_weights=weights)


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


def _norm_terms(p, dim):
    # ATen's norm kernel: p = 2: E squares, E - 1 adds, a root; p = 1, 0, +-inf: E abs (or != 0),
    # E - 1 adds (or max / min); any other p: E abs, E powers, E - 1 adds, a root.
    if p == 2:
        return 2 * dim
    if p in (1, 0, math.inf, -math.inf):
        return 2 * dim - 1
    return 3 * dim


def _renorm_work(module, *inputs):
    """embedding_renorm_ from the weights before the call: per distinct row a norm and a
    comparison; per row above max_norm scale = max_norm / (norm + 1e-7) (2) and E multiplies.
    Checks that torch's forward rescales exactly those rows and leaves the others alone."""
    weight = module.weight.detach().clone()
    rows = sorted(set(inputs[0].reshape(-1).tolist()))
    dim = weight.shape[1]
    above = [r for r in rows if weight[r].norm(module.norm_type).item() > module.max_norm]
    run = copy.deepcopy(module)
    with torch.no_grad():
        run(*inputs)
    changed = [r for r in range(weight.shape[0]) if not torch.equal(run.weight[r], weight[r])]
    assert changed == above
    work = len(rows) * (_norm_terms(module.norm_type, dim) + 1) + len(above) * (dim + 2)
    return work, rows, above


def _assert_bound(bound, derived, rows, above, n, v):
    assert derived <= bound
    if len(rows) == min(n, v) and above == rows:
        assert derived == bound  # every looked-up row distinct and above max_norm: the bound


@pytest.mark.parametrize("cls", ["Embedding", "EmbeddingBag"])
def test_max_norm_is_not_counted_silently(cls):
    module = getattr(torch.nn, cls)(6, 3, max_norm=1.0)
    inputs = (
        (torch.tensor([[1, 2]]),)
        if cls == "Embedding"
        else (torch.tensor([1, 2]), torch.tensor([0]))
    )
    with pytest.raises(UncountedOpError, match="embedding_renorm_"):
        lc.count(module, *inputs)


def _flop_counter_sees_nothing(module, *inputs):
    counter = FlopCounterMode(display=False)
    with counter:
        copy.deepcopy(module)(*inputs)
    assert counter.get_total_flops() == 0  # the rule's macs = 0


@given(cases.embedding_cases(max_norm=True))
def test_embedding_max_norm_bound(case):
    module = case.build()
    (indices,) = case.tensors()
    derived, rows, above = _renorm_work(module, indices)
    binding = lc.bind(module, indices)
    _assert_bound(
        binding.cost("exact"), derived, rows, above, indices.numel(), module.num_embeddings
    )
    _flop_counter_sees_nothing(module, indices)
    assert binding.cost("macs") == 0


@given(cases.embedding_cases(max_norm="exceed", distinct=True))
def test_embedding_max_norm_bound_reached(case):
    module = case.build()
    (indices,) = case.tensors()
    derived, rows, above = _renorm_work(module, indices)
    assert above == rows  # a tiny max_norm: every distinct row is rescaled
    assert lc.bind(module, indices).cost("exact") == derived


@given(cases.embedding_bag_cases(max_norm=True))
def test_embedding_bag_max_norm_bound(case):
    module = case.build()
    indices, offsets = case.tensors()
    renorm, rows, above = _renorm_work(module, indices, offsets)
    plain = copy.deepcopy(module)
    plain.max_norm = None  # the bag reductions alone: counted on the same data
    bags = lc.count(plain, indices, offsets, training=case.training).cost("exact")
    binding = lc.bind(module, indices, offsets)
    _assert_bound(
        binding.cost("exact"), bags + renorm, rows, above, indices.numel(), module.num_embeddings
    )
    _flop_counter_sees_nothing(module, indices, offsets)
