"""``bytes`` under ``eager``: what the op counter sees each ATen kernel read and write
(layercost_sym/torchtools/opbytes.py).  Each expected figure is numel x element size, worked
out beside the assertion."""

from __future__ import annotations

import pytest
import torch

import layercost_sym as lc
from layercost_sym.cache import catalogue
from layercost_sym.quantities import quantity
from layercost_sym.testing.torchcheck import eager_not_stated
from layercost_sym.torchtools.opbytes import kernel_bytes, tensor_bytes
from layercost_sym.torchtools.opcount import ExactCounter


def moved(fn) -> tuple[int, dict[str, int]]:
    with ExactCounter() as counter:
        fn()
    return counter.bytes, dict(counter.bytes_by_op)


X = torch.randn(2, 3)  # 6 float32: 24 bytes


def test_a_tensor_passed_twice_is_read_once():
    # mul(x, x): x read once (24), the product written (24)
    assert moved(lambda: X * X) == (48, {"mul": 48})
    # x * y: two tensors read (48), one written (24)
    assert moved(lambda: X * X.clone())[1]["mul"] == 72


def test_views_and_in_place_views_move_nothing():
    def views():
        X.view(3, 2).t().unsqueeze(0).expand(4, 2, 3).transpose(1, 2)[0]
        X.clone().t_()  # t_ is an in-place view: only the clone moves (24 read + 24 written)

    assert moved(views) == (48, {"clone": 48})


def test_copies_read_and_write_and_allocations_move_nothing():
    def run():
        torch.empty(5, 5)  # undefined contents: nothing written
        torch.zeros(5)  # 20 bytes written
        torch.cat([X, X])  # X read once (24), 48 written
        X.to(torch.float16)  # 24 read, 12 written

    total, by_op = moved(run)
    assert by_op == {"zeros": 20, "cat": 72, "_to_copy": 36} and total == 128


def test_in_place_and_out_arguments():
    y = X.clone()
    z = torch.empty(2, 3)
    # relu_: y read and written (24 + 24); copy_: X read, z written, z not read (24 + 24)
    # add(out=z): X and y read (48), z written (24)
    assert moved(lambda: y.relu_())[0] == 48
    assert moved(lambda: z.copy_(X))[0] == 48
    assert moved(lambda: torch.add(X, y, out=z))[0] == 72


def test_a_broadcast_argument_is_read_at_its_own_size():
    bias = torch.randn(3)  # 12 bytes
    assert tensor_bytes(bias.expand(2, 3)) == 12
    # add(x, expanded bias): 24 + 12 read, 24 written
    assert moved(lambda: torch.add(X, bias.expand(2, 3)))[0] == 60


def test_a_decomposed_kernel_is_counted_once_at_the_operator_torch_runs():
    ln = torch.nn.LayerNorm(3)
    with ExactCounter() as counter:
        ln(X)
    # the counter decomposes native_layer_norm to count FLOPs (many primitives) but the bytes
    # are the kernel's: x (24), weight and bias (12 + 12) read; out (24), mean and rstd
    # (2 x 2 x 4) written
    assert len(counter.by_op) > 1
    assert dict(counter.bytes_by_op) == {"native_layer_norm": 24 + 24 + 24 + 16}


def test_kernel_bytes_of_one_call():
    # X and its transpose are two tensor arguments (another view of the storage): 24 + 24 read
    out = torch.mm(X, X.t())
    read, written = kernel_bytes(torch.ops.aten.mm.default, (X, X.t()), {}, out)
    assert (read, written) == (48, 16)


def test_count_measures_eager_bytes():
    counted = lc.count(torch.nn.Linear(3, 4), (5, 3))
    # addmm: bias 16, input 60, weight 48 read; output 80 written
    assert counted.quantity("bytes", "eager") == 16 + 60 + 48 + 80
    assert counted.bytes_by_op == {"addmm": 204}


def test_eager_is_a_partial_convention_stated_by_reference_or_expression():
    linear = lc.rule("Linear")
    assert "eager" in linear.conventions_of("bytes")
    assert linear.quantity("bytes", "eager") == linear.quantity("bytes", "min")
    q = quantity("bytes")
    assert q.conventions["eager"].partial and "eager" not in q.required


def test_every_family_has_its_eager_coverage_checked():
    # each family's test file compares eager_not_stated(family) with its own EAGER_NOT_YET
    families = {r.family for r in catalogue().rules.values()}
    checked = {
        "activation", "attention", "conv", "distance", "dropout", "embedding", "functional",
        "linear", "norm", "pooling", "recurrent", "resampling",
    }  # fmt: skip
    assert families == checked
    with pytest.raises(KeyError):
        eager_not_stated("no such family")


def test_a_decomposed_kernel_that_returns_a_new_tensor_writes_it():
    # channel_shuffle has no counting rule: the counter runs torch's decomposition, whose
    # reshapes return a view of the input with one group (or one channel per group); the kernel
    # torch dispatches returns a new tensor (its schema marks no alias): 2*4*3 float32 read
    # (96) and written (96), whatever the groups
    x = torch.randn(2, 4, 3)
    for groups in (1, 2, 4):
        assert moved(lambda g=groups: torch.nn.ChannelShuffle(g)(x)) == (
            192,
            {"channel_shuffle": 192},
        )


def test_a_decomposed_kernel_that_returns_views_moves_nothing():
    # unsafe_chunk (GRUCell's and LSTMCell's gates) has no counting rule either, and no alias
    # in its schema, but the kernel torch dispatches returns views of its input, as its
    # decomposition does: nothing moved
    assert moved(lambda: torch.ops.aten.unsafe_chunk(X, 3, 1)) == (0, {})
    assert moved(lambda: torch.ops.aten.unsafe_split(X, 1, 0)) == (0, {})
