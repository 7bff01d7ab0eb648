"""A model's own branch on a size being 1 (issue 17, trust): torch traces symbolic sizes from 2
and decides such a branch without a guard, so a closed form traced so holds from 2.  The
analysis traces again with that size 1 (torchtools/sizeone.py, tracing._size_one_checked):
where a quantity differs there it records a guard ``size >= 2`` naming the line and refuses a
size of 1 (traced with that size a number, the analysis answers there); where none differs, as
for transformers' ``batch_size != position_ids.shape[0]`` (an expand), it answers at 1."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import layercost_sym as lc


class Branches(nn.Module):
    def forward(self, x):  # x: (N, L)
        y = x * 3
        if x.shape[1] > 1:  # the model's own branch on L
            y = y + x
        return y + torch.ones(1, x.shape[1])  # a broadcast: torch's own check on a size of 1


def test_a_branch_on_a_size_of_1_is_a_guard_naming_the_line():
    analysis = lc.analyze(Branches(), ("N", "L"))
    assert analysis.range == ["L >= 2"]  # not N: the broadcast is torch's, at no cost
    with pytest.raises(lc.DomainError, match=r"L >= 2 .*test_size_one.py:\d+: if x.shape\[1\] > 1"):
        analysis.evaluate({"N": 3, "L": 1})
    for n, length in [(1, 2), (3, 5)]:
        counted = lc.count(Branches(), torch.randn(n, length)).cost("exact")
        assert analysis.evaluate({"N": n, "L": length}, "exact") == counted == 3 * n * length
    # at L = 1 the branch is not taken: 2 per element, not 3; traced with L = 1 a number
    one = lc.analyze(Branches(), ("N", 1))
    assert (
        one.evaluate({"N": 4}, "exact")
        == lc.count(Branches(), torch.randn(4, 1)).cost("exact")
        == 2 * 4
    )


def test_gpt2_at_one_token_is_refused_not_miscounted():
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        n_layer=1,
        n_embd=32,
        n_head=2,
        vocab_size=50,
        n_positions=64,
        bos_token_id=0,
        eos_token_id=0,
    )
    model = GPT2LMHeadModel(config).eval()
    analysis = lc.analyze(model, ("N", "L"))
    ids = torch.randint(0, 50, (2, 1))
    counted = lc.count(model, ids).cost("exact")
    # the bare closed form at L = 1 counts the causal mask a one-token call does not build
    # (59777 against 59769 measured when this was found)
    bare = lc.evaluate(analysis.cost("exact").func(*analysis.cost("exact").args), {"N": 2, "L": 1})
    assert bare != counted
    with pytest.raises(lc.DomainError, match="L >= 2"):
        analysis.evaluate({"N": 2, "L": 1}, "exact")
    assert lc.analyze(model, ("N", 1)).evaluate({"N": 2}, "exact") == counted
    # the batch is read by a branch too (position ids expanded where N != 1: a view), which
    # changes no quantity at N = 1: no guard, and batch 1 answers
    assert "N >= 2" not in analysis.range and "L >= 2" in analysis.range
    one = model, torch.randint(0, 50, (1, 6))
    assert analysis.evaluate({"N": 1, "L": 6}, "exact") == lc.count(*one).cost("exact")
    # the check costs traces; without it the closed form answers at 1, as it did before
    unchecked = lc.analyze(model, ("N", "L"), check_size_one=False)
    assert "L >= 2" not in unchecked.range
    assert unchecked.evaluate({"N": 2, "L": 1}, "exact") != counted


class Checked(nn.Module):
    def forward(self, x):  # x: (N, C, H, W); the check narrows H's range: torch clears the
        torch._check(x.shape[2] >= 4)  # cache of its static decisions, which the watch wraps
        return torch.nn.functional.avg_pool2d(x, 2) * 2


def test_a_range_torch_narrows_while_tracing_keeps_the_analysis_symbolic():
    # the watch once replaced the cached method torch clears (no cache_clear): every model
    # whose trace narrowed a range failed and was pinned
    analysis = lc.analyze(Checked(), ("N", 3, "H", "W"))
    assert not analysis.pinned and "H >= 4" in analysis.range
    x = torch.randn(2, 3, 9, 7)
    assert analysis.evaluate({"N": 2, "H": 9, "W": 7}, "exact") == lc.count(Checked(), x).cost(
        "exact"
    )
