"""LoRA (Hu et al. 2021) end to end: a frozen ``Linear`` plus a trainable low-rank pair, its
training FLOPs (forward + backward under ``exact`` and ``macs``) as a formula in the rank
(the symbol ``rank``) composed from the rules, proven equal to the counters around torch and
to ``lc.analyze`` of the module."""

from __future__ import annotations

import pytest
import sympy
import torch
from torch import nn

import layercost_sym as lc


class LoRALinear(nn.Module):
    """A frozen Linear and its update ``B A x * alpha / r``, as peft's ``lora.Linear`` runs it."""

    def __init__(self, d_in: int, d_out: int, r: int, alpha: int = 16) -> None:
        super().__init__()
        self.base = nn.Linear(d_in, d_out).requires_grad_(False)
        self.lora_A = nn.Linear(d_in, r, bias=False)
        self.lora_B = nn.Linear(r, d_out, bias=False)
        self.scaling = alpha / r

    def forward(self, x):
        return self.base(x) + self.lora_B(self.lora_A(x)) * self.scaling


# the rank is `rank`: the glossary's `r` is a normalisation flag (track_running_stats)
N, d_in, d_out, r, rg = lc.symbols("N d_in d_out rank rg")


def lora_training() -> lc.Cost:
    """Forward and backward of one LoRALinear call on N rows, in the rules' own terms; ``rg``:
    the input requires grad (a layer past the model's first trainable one)."""
    linear, mul, add = lc.rule("Linear"), lc.rule("mul"), lc.rule("add")
    out = N * d_out  # elements of the output
    sizes = {"e_a": 4, "e_o": 4}
    return (
        linear.at(C_in=d_in, C_out=d_out, N=N, b=1, rg=rg, gw=0, name="base")  # frozen
        + linear.at(C_in=d_in, C_out=r, N=N, b=0, rg=rg, gw=1, name="A")
        + linear.at(C_in=r, C_out=d_out, N=N, b=0, rg=1, gw=1, name="B")
        # * scaling: a number, N_2 = 0; the base's output requires grad only through x
        + mul.at(N=out, N_1=out, N_2=0, rg_1=1, rg_2=0, x_2=1, **sizes, name="scale")
        + add.at(N=out, N_1=out, N_2=out, rg_1=rg, rg_2=1, x_2=1, **sizes, name="add")
    )


def training_flops(convention: str) -> sympy.Expr:
    cost = lora_training()
    # x feeds the base and A: autograd adds its two gradients, N*d_in adds (exact only)
    accumulated = rg * N * d_in if convention == "exact" else 0
    return (
        cost.quantity("flops", convention) + cost.quantity("backward", convention) + (accumulated)
    )


@pytest.mark.parametrize("rank", [1, 2, 4, 8])
@pytest.mark.parametrize("grad", [False, True])
def test_lora_training_flops_in_r_are_what_torch_runs(rank, grad):
    module = LoRALinear(12, 10, rank)
    for rows in (1, 3):
        x = torch.randn(rows, 12, requires_grad=grad)
        counted = lc.count(module, x, backward=True)
        at = {"N": rows, "d_in": 12, "d_out": 10, "rank": rank, "rg": int(grad)}
        for convention in ("exact", "macs"):
            measured = counted.quantity("flops", convention) + counted.quantity(
                "backward", convention
            )
            assert lc.evaluate(training_flops(convention), at) == measured, convention


def test_lora_as_the_analysis_sees_it():
    analysis = lc.analyze(LoRALinear(12, 10, 4), ("N", 12), backward=True)
    expected = training_flops("exact").subs({d_in: 12, d_out: 10, r: 4, rg: 0})
    for rows in (1, 5):
        assert lc.evaluate(analysis.cost("exact"), {"N": rows}) == expected.subs(N, rows)


def test_the_rank_enters_linearly():
    # training MACs: the frozen base's forward and (with rg) its input gradient; A and B each a
    # forward, a weight gradient and (B always, A with rg) an input gradient: r*N*(...)
    macs = sympy.expand(training_flops("macs"))
    assert sympy.degree(macs, r) == 1
    assert sympy.expand(macs.coeff(r, 1)) == sympy.expand(
        N * d_in + N * d_out + N * d_in + N * d_out + N * d_out + rg * N * d_in
    )
