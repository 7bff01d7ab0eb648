"""The ``useful`` FLOPs of whole models (issue 16): a causal attention counts only the
(query, key) pairs its mask keeps.  The reference is independent of the rules: the model run
for real with ``F.scaled_dot_product_attention`` replaced by attention computed row by row over
the keys each query sees (the math path's own kernels on the kept pairs), counted by the exact
op counter."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import layercost_sym as lc

_sdpa = F.scaled_dot_product_attention


def _kept_pairs_only(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
    """Causal attention over the kept pairs alone (query i: keys 0..i, torch's tril), scaled
    as the math path scales (q and k each by the root of the scale)."""
    assert attn_mask is None and dropout_p == 0.0
    if not is_causal:
        return _sdpa(query, key, value, scale=scale)
    root = math.sqrt(scale if scale is not None else 1 / math.sqrt(query.shape[-1]))
    query, key = query * root, key * root
    rows = []
    for i in range(query.shape[-2]):
        kept = min(i + 1, key.shape[-2])
        scores = query[..., i : i + 1, :] @ key[..., :kept, :].transpose(-2, -1)
        rows.append(torch.ops.aten._safe_softmax(scores, -1) @ value[..., :kept, :])
    return torch.cat(rows, dim=-2)


def _gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        n_layer=2,
        n_embd=32,
        n_head=2,
        vocab_size=50,
        n_positions=64,
        bos_token_id=0,
        eos_token_id=0,
    )
    return GPT2LMHeadModel(config).eval()


def test_a_causal_lm_counts_the_kept_pairs(monkeypatch):
    model = _gpt2()
    analysis = lc.analyze(model, ("N", "L"))
    for n, length in [(1, 5), (2, 9)]:
        ids = torch.randint(0, 50, (n, length))
        exact = lc.count(model, ids).cost("exact")
        with monkeypatch.context() as patched:
            patched.setattr(F, "scaled_dot_product_attention", _kept_pairs_only)
            useful = lc.count(model, ids).cost("exact")
        sizes = {"N": n, "L": length}
        assert analysis.evaluate(sizes, "exact") == exact
        assert analysis.evaluate(sizes, "useful") == useful < exact


class _Masked(nn.Module):
    def forward(self, q, k, v):
        mask = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril()
        return _sdpa(q, k, v, attn_mask=mask)


class _Bidirectional(nn.Module):
    def forward(self, q, k, v):
        return _sdpa(q, k, v)


def test_a_mask_tensor_refuses_useful_naming_the_call_and_no_mask_is_exact():
    shapes = [("N", 2, "L", 8)] * 3
    masked = lc.analyze(_Masked(), *shapes)
    with pytest.raises(lc.ConventionError, match="scaled_dot_product_attention"):
        masked.cost("useful")
    masked.cost("exact")  # the executed work is still known
    plain = lc.analyze(_Bidirectional(), *shapes)
    assert plain.cost("useful") == plain.cost("exact")
