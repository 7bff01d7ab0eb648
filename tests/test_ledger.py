"""The training-memory ledger (layercost_sym/ledger.py, Analysis.training_memory): each row
against what torch really holds after a training step (parameters, .grad, the optimizer's
state tensors, the storages autograd saved), the literature's bytes per parameter, frozen and
LoRA parameters, and the largest batch that fits."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel

import layercost_sym as lc
from layercost_sym.ledger import OPTIMIZERS

TORCH_OPTIMIZERS = {
    "sgd": lambda ps: torch.optim.SGD(ps, lr=0.1),
    "sgd-momentum": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
    "adam": lambda ps: torch.optim.Adam(ps),
    "adamw": lambda ps: torch.optim.AdamW(ps),
    "adam-amsgrad": lambda ps: torch.optim.Adam(ps, amsgrad=True),
}


def _nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


class _LoRA(nn.Module):
    """A frozen Linear plus a trainable rank-r update B A (LoRA, Hu et al. 2021)."""

    def __init__(self, features: int, rank: int) -> None:
        super().__init__()
        self.base = nn.Linear(features, features)
        self.base.requires_grad_(False)
        self.a = nn.Linear(features, rank, bias=False)
        self.b = nn.Linear(rank, features, bias=False)

    def forward(self, x):
        return self.base(x) + self.b(self.a(x))


def _held_after_a_step(model: nn.Module, x: torch.Tensor, optimizer: str) -> dict[str, int]:
    """What torch holds after forward, backward and one optimizer step."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = TORCH_OPTIMIZERS[optimizer](trainable)
    model(x).float().sum().backward()
    opt.step()
    state = [v for s in opt.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
    return {
        "parameters": _nbytes(model.parameters()),
        "gradients": _nbytes(p.grad for p in trainable),
        f"optimizer ({optimizer})": _nbytes(state),
    }


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_parameters_gradients_and_optimizer_state_are_what_torch_holds(optimizer, dtype):
    model = _LoRA(8, 2).to(dtype).train()
    ledger = lc.analyze(model, ("N", 8), dtype=dtype, training=True).training_memory(optimizer)
    held = _held_after_a_step(model, torch.randn(3, 8, dtype=dtype), optimizer)
    values = ledger.evaluate({"N": 3})
    assert {k: values[k] for k in held} == held
    # frozen base (8*8 + 8) aside: the gradients are the rank-2 pair's, 2*(2*8) elements
    assert values["gradients"] == 2 * 2 * 8 * dtype.itemsize
    assert ledger.trainable == 2 * 2 * 8


def test_saved_activations_of_a_training_step_are_what_autograd_keeps():
    model = torchvision.models.resnet18(weights=None)
    analysis = lc.analyze(model, ("N", 3, "H", "W"), training=True)
    ledger = analysis.training_memory("sgd")
    for n, h, w in [(2, 64, 64), (3, 65, 97)]:
        counted = lc.count(model, (n, 3, h, w), training=True).quantity("saved")
        assert ledger.evaluate({"N": n, "H": h, "W": w})["activations (saved)"] == counted
    # training-mode batch norm also keeps its batch statistics: more than in eval
    at = {"N": 2, "H": 64, "W": 64}
    assert lc.evaluate(analysis.quantity("saved"), at) > lc.evaluate(
        lc.analyze(model, ("N", 3, "H", "W")).quantity("saved"), at
    )


def test_mixed_precision_adam_is_16_bytes_per_parameter():
    # Transformer Math (Anthony, Biderman, Schoelkopf, 2023): bf16 weights (2) and gradients
    # (2), a float32 master copy (4), Adam's two float32 moments (8): 16 bytes per parameter;
    # in float32 without a master copy: 4 + 4 + 8, 16 too; SGD with momentum in float32: 12
    config = GPT2Config(n_layer=1, n_embd=32, n_head=4, vocab_size=50, eos_token_id=0)
    half = GPT2LMHeadModel(config).to(torch.bfloat16)
    analysis = lc.analyze(half, ("N", "L"), training=True)
    assert analysis.training_memory("adamw", master_weights=True).per_parameter() == 16
    full = lc.analyze(GPT2LMHeadModel(config), ("N", "L"), training=True)
    assert full.training_memory("adam").per_parameter() == 16
    assert full.training_memory("sgd-momentum").per_parameter() == 12


def test_the_largest_batch_that_fits_is_exact():
    model = torchvision.models.resnet18(weights=None)
    ledger = lc.analyze(model, ("N", 3, 224, 224), training=True).training_memory("adamw")
    total = ledger.total

    def at(n: int) -> int:
        return lc.evaluate(total, {"N": n})

    capacity = at(37) + 1  # 37 fits with a byte to spare, 38 does not
    assert ledger.largest("N", capacity) == 37
    assert ledger.largest("N", at(38)) == 38
    with pytest.raises(lc.EvaluationError, match="does not fit"):
        ledger.largest("N", at(1) - 1)


def test_cli_prints_the_ledger(capsys):
    from layercost_sym.cli import main

    main(
        [
            "model",
            "torchvision.models:resnet18",
            "--input",
            "N,3,64,64",
            "--training",
            "--optimizer",
            "adamw",
            "--at",
            "N=2",
        ]
    )
    out = capsys.readouterr().out
    ledger = (
        lc.analyze(torchvision.models.resnet18(weights=None), ("N", 3, 64, 64), training=True)
        .training_memory("adamw")
        .evaluate({"N": 2})
    )
    assert "training memory (adamw" in out
    assert f"{ledger['total']:,}" in out and f"{ledger['optimizer (adamw)']:,}" in out
    # under full recomputation of resnet18's eight residual blocks
    argv = ["model", "torchvision.models:resnet18", "--input", "N,3,64,64", "--training"]
    main([*argv, "--optimizer", "sgd", "--recompute", "full", "--at", "N=2"])
    out = capsys.readouterr().out
    full = (
        lc.analyze(torchvision.models.resnet18(weights=None), ("N", 3, 64, 64), training=True)
        .training_memory("sgd", recompute="full")
        .evaluate({"N": 2})
    )
    assert "full recomputation" in out
    assert f"{full['recomputed (largest block)']:,}" in out and f"{full['total']:,}" in out


class _Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.norm, self.up, self.act = nn.LayerNorm(d), nn.Linear(d, 2 * d), nn.GELU()
        self.down = nn.Linear(2 * d, d)

    def forward(self, x):
        return x + self.down(self.act(self.up(self.norm(x))))


class _Stack(nn.Module):
    """Blocks in a ModuleList between two Linears; ``checkpointed``: each block under
    ``torch.utils.checkpoint`` (reentrant: it saves the block's input with save_for_backward)."""

    def __init__(self, d: int = 8, n: int = 3) -> None:
        super().__init__()
        self.embed, self.head = nn.Linear(d, d), nn.Linear(d, 4)
        self.blocks = nn.ModuleList([_Block(d) for _ in range(n)])
        self.checkpointed = False

    def forward(self, x):
        x = self.embed(x)
        for block in self.blocks:
            if self.checkpointed:
                x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=True)
            else:
                x = block(x)
        return self.head(x)


def test_full_recomputation_keeps_each_blocks_input_and_repeats_its_forward():
    from layercost_sym.torchtools.count import SavedStorages
    from layercost_sym.torchtools.opbytes import storage_id
    from layercost_sym.torchtools.opcount import ExactCounter

    model = _Stack().train()
    analysis = lc.analyze(model, ("N", 8), training=True)
    assert analysis.blocks == ("blocks.0", "blocks.1", "blocks.2")
    plain = analysis.training_memory("sgd")
    ledger = analysis.training_memory("sgd", recompute="full")
    repeated = analysis.recomputation("exact")
    for n in (2, 5):
        model.checkpointed = True
        weights = {storage_id(p) for p in model.parameters()}
        with SavedStorages(weights) as kept:  # the forward of a checkpointed step
            out = model(torch.randn(n, 8))
        assert kept.nbytes == lc.evaluate(ledger.activations, {"N": n})
        # backward runs each block's forward again: the op counter sees it on top of the
        # backward of the model without checkpoints
        with ExactCounter() as counter:
            out.backward(torch.ones_like(out))
        model.checkpointed = False
        model.zero_grad(set_to_none=True)
        backward = lc.count(model, (n, 8), backward=True).quantity("backward")
        assert counter.total == backward + lc.evaluate(repeated, {"N": n})
        # while a block's backward runs, its recomputed activations are held: one block's
        block = lc.count(model.blocks[0], torch.randn(n, 8, requires_grad=True))
        assert lc.evaluate(ledger.rows()["recomputed (largest block)"], {"N": n}) == (
            block.quantity("saved")
        )
        # the trade: less memory than keeping everything (three blocks' activations)
        assert lc.evaluate(ledger.total, {"N": n}) < lc.evaluate(plain.total, {"N": n})


def test_recomputation_needs_blocks():
    analysis = lc.analyze(nn.Sequential(nn.Linear(4, 4), nn.ReLU()), ("N", 4), training=True)
    with pytest.raises(ValueError, match="blocks="):
        analysis.training_memory(recompute="full")
    with pytest.raises(KeyError, match="nothing"):
        analysis.training_memory(recompute="full", blocks=["nothing"])
    ledger = analysis.training_memory("sgd", recompute="full", blocks=["0"])
    # the Linear's block keeps its input (4N floats); the ReLU outside keeps its output
    assert ledger.activations == 16 * lc.symbols("N") + 16 * lc.symbols("N")
