"""``saved`` under ``autograd``: the bytes of the tensors autograd keeps for backward (activation
memory), measured by ``lc.count`` with ``saved_tensors_hooks`` (each storage once, whole; the
module's parameters and buffers aside) and traced by ``lc.analyze`` as a closed form in the
input sizes.  Expected figures are numel x element size, worked out beside each assertion."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import layercost_sym as lc


def test_each_storage_once_and_the_weights_aside():
    linear, x = nn.Linear(3, 4), torch.randn(2, 3)
    # addmm saves x (2*3 float32: 24 bytes), its weight aside
    assert lc.count(linear, x).quantity("saved") == 24

    class Square(nn.Module):
        def forward(self, x):
            y = x * x  # mul saves x twice: one storage, 24 bytes
            return y[:, :1] * y[:, 1:2]  # two views of y saved: y's storage once, 24 bytes

    assert lc.count(Square(), nn.Parameter(torch.randn(2, 3))).quantity("saved") == 48


def test_batch_norm_saves_more_in_training():
    bn, x = nn.BatchNorm2d(4), torch.randn(2, 4, 3, 3)
    # eval: native_batch_norm saves its input (2*4*3*3 float32 = 288 bytes), the running
    # statistics are buffers (aside); training also saves the batch mean and rstd (4 each: 32)
    assert lc.count(bn, x).quantity("saved") == 288
    assert lc.count(bn, x, training=True).quantity("saved") == 288 + 32


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_a_cnns_saved_bytes_are_what_autograd_keeps(name):
    model = getattr(torchvision.models, name)(weights=None).eval()
    analysis = lc.analyze(model, ("N", 3, "H", "W"))
    saved = analysis.quantity("saved")
    for n, h, w in [(2, 64, 64), (3, 97, 75)]:
        counted = lc.count(model, (n, 3, h, w)).quantity("saved")
        assert lc.evaluate(saved, {"N": n, "H": h, "W": w}) == counted
    # the first convolution keeps its input for the weight's gradient: N*3*H*W float32
    conv1 = next(layer for layer in analysis.layers if layer.name in ("conv1", "features.0.0"))
    assert lc.evaluate(conv1.quantity("saved"), {"N": 2, "H": 64, "W": 64}) == 2 * 3 * 64 * 64 * 4


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_a_transformers_saved_bytes_are_what_autograd_keeps(family, small_causal_lm):
    model = small_causal_lm(family)
    saved = lc.analyze(model, ("N", "L")).quantity("saved")
    assert saved.free_symbols == {lc.parse("N"), lc.parse("L")}
    for n, length in [(2, 9), (3, 4)]:
        counted = lc.count(model, torch.randint(0, 50, (n, length))).quantity("saved")
        assert lc.evaluate(saved, {"N": n, "L": length}) == counted


def test_saved_is_what_a_plain_run_keeps():
    # mixed precision: a bfloat16 input, float32 LayerNorm weights; torch keeps the mean and
    # rstd in float32 (the parameters' dtype); the op counter's decomposition of
    # native_layer_norm would return them in bfloat16, so saved is measured outside it
    from layercost_sym.torchtools.count import SavedStorages
    from layercost_sym.torchtools.opbytes import storage_id

    norm = nn.LayerNorm(8)
    x = torch.randn(3, 8, dtype=torch.bfloat16, requires_grad=True)
    with SavedStorages({storage_id(p) for p in norm.parameters()}) as plain:
        norm(x)
    # x (3*8 bfloat16) and mean and rstd (3 float32 each): 48 + 24 = 72 bytes
    assert plain.nbytes == 3 * 8 * 2 + 2 * 3 * 4
    assert lc.count(norm, x).quantity("saved") == plain.nbytes


def test_every_rule_states_saved():
    # each proven by its family's property test (check_against_torch: the input's grad on and
    # off, the weights trained and frozen; the functional rules on drawn ATen calls)
    assert [n for n in lc.rules() if "autograd" not in lc.rule(n).conventions_of("saved")] == []


def test_saved_storages_let_their_tensors_go_with_them():
    # torch keeps a saved-tensor pack hook alive after its context exits; the hook held the
    # SavedStorages and so every tensor it noted, for the life of the process
    import gc
    import weakref

    from layercost_sym.torchtools.count import SavedStorages

    with SavedStorages(set()) as saved:
        y = torch.relu(torch.randn(2, 3, requires_grad=True))
    assert saved.nbytes == 2 * 3 * 4  # relu saves its output
    owner = weakref.ref(saved)
    del saved, y
    gc.collect()
    assert owner() is None
