"""Whole-model backward work under ``exact``: ``lc.analyze`` gives every call's backward from its
rule (``rg``, ``gw``, the functional rules' ``rg_1 .. rg_3``) and adds the gradients autograd sums
where one tensor feeds several calls (a row ``(gradient accumulation)``: ``k - 1`` adds per
element for ``k`` gradients); the closed forms equal ``lc.count(..., backward=True)`` (the op
counter around ``torch.autograd.grad``) at two shapes or more."""

from __future__ import annotations

import pytest
import sympy
import torch
import torchvision
from torch import nn

import layercost_sym as lc
from layercost_sym.torchtools.tracer import GRADIENT_SUM


def _agrees(model: nn.Module, spec: tuple, shapes: list[dict[str, int]], **kwargs) -> lc.Analysis:
    """The analysis' backward (exact, macs, torch) against the counters at each of ``shapes``."""
    analysis = lc.analyze(model, spec, **kwargs)
    for at in shapes:
        size = tuple(at[d] if isinstance(d, str) else d for d in spec)
        dtype = kwargs.get("dtype")
        x = torch.randint(0, 50, size) if dtype == torch.int64 else torch.randn(size)
        counted = lc.count(model, x, backward=True, training=kwargs.get("training", False))
        for convention in ("exact", "macs", "torch"):
            closed = analysis.quantity("backward", convention)
            assert lc.evaluate(closed, at) == counted.quantity("backward", convention), (
                at,
                convention,
            )
    return analysis


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.g, self.fc = nn.Linear(8, 8), nn.Linear(8, 8)

    def forward(self, x):
        h = self.g(x)
        return self.fc(h) + h


def test_a_residual_streams_gradients_are_added():
    analysis = _agrees(_Residual(), ("N", 8), [{"N": 1}, {"N": 3}, {"N": 5}])
    # h (N x 8) feeds fc and the add: its two gradients are added, 8N adds
    sums = [layer for layer in analysis.layers if layer.name.endswith(GRADIENT_SUM)]
    assert [str(layer.quantity("backward")) for layer in sums] == ["8*N"]
    assert all(layer.cost("exact") == 0 for layer in sums)  # no forward work


class _Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(8, 8, bias=False), nn.Linear(8, 8, bias=False)
        self.b.weight = self.a.weight

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def test_a_tied_weights_gradients_are_added():
    analysis = _agrees(_Tied(), ("N", 8), [{"N": 1}, {"N": 4}])
    # the one 8 x 8 weight gets a gradient from each Linear: 64 adds
    sums = [layer.quantity("backward") for layer in analysis.layers if GRADIENT_SUM in layer.name]
    assert sums == [64]


def test_an_in_place_residual_block():
    # torchvision's BasicBlock: out += identity in place, ReLU(inplace=True); the block's input
    # feeds conv1 and the add (one sum of C*H*W*N), bn2's output only the add
    block = torchvision.models.resnet.BasicBlock(4, 4).train()
    _agrees(block, ("N", 4, "H", "W"), [{"N": 2, "H": 5, "W": 6}, {"N": 1, "H": 7, "W": 7}])


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_causal_lms_backward(family, small_causal_lm):
    model = small_causal_lm(family)
    _agrees(model, ("N", "L"), [{"N": 1, "L": 5}, {"N": 2, "L": 9}], dtype=torch.int64)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_torchvision_cnns_backward_in_training(name):
    model = getattr(torchvision.models, name)(weights=None).train()
    _agrees(
        model,
        ("N", 3, "H", "W"),
        [{"N": 2, "H": 64, "W": 64}, {"N": 1, "H": 97, "W": 81}],
        training=True,
    )


def test_fine_tuning_only_the_head():
    # a frozen backbone: no weight gradients anywhere but fc, and no input gradient anywhere
    # (nothing before fc needs one), so the backward is fc's alone: its weight's g^T x,
    # 1000 x 512 x (2N - 1), its bias's sum, 1000 x (N - 1), and nothing else
    model = torchvision.models.resnet18(weights=None).eval()
    model.requires_grad_(False)
    model.fc.requires_grad_(True)
    analysis = _agrees(
        model, ("N", 3, "H", "W"), [{"N": 2, "H": 64, "W": 64}, {"N": 3, "H": 33, "W": 35}]
    )
    n = lc.symbols("N")
    assert (
        sympy.expand(analysis.quantity("backward") - (1000 * 512 * (2 * n - 1) + 1000 * (n - 1)))
        == 0
    )
