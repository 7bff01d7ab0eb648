"""``count``: run a real torch module and measure what the catalogue states of it.

Each measured quantity and convention (``formulas/quantities.toml``: those with ``measured``)
has one entry in :data:`MEASUREMENTS`, a function of the run: ``params`` is the ``numel`` of the
module's parameters; ``flops`` under ``exact`` comes from
:class:`~layercost_sym.torchtools.opcount.ExactCounter`, under ``torch`` from
``torch.utils.flop_counter.FlopCounterMode`` on the non-fused path (grad enabled, the math
backend of scaled dot-product attention), under ``macs`` as ``torch / 2``; ``bytes`` under
``min`` is the size in bytes of the call's distinct input tensors, the module's parameters and
the tensors of its output; under ``eager`` what the ``exact`` counter saw each kernel
read and write (:mod:`~layercost_sym.torchtools.opbytes`); ``saved`` under ``autograd`` the
storages autograd saved for backward (:class:`SavedStorages`).  A new quantity is a new entry
here (and, where it needs one, a new instrument in the run).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._pytree import tree_map_only
from torch.utils.flop_counter import FlopCounterMode

from ..errors import ConventionError
from ..quantities import quantity as _quantity
from .opbytes import storage_id, tensors_in
from .opcount import ExactCounter
from .patches import math_sdpa

__all__ = ["MEASUREMENTS", "CountResult", "Run", "SavedStorages", "backward_counts", "count"]


@dataclass(frozen=True)
class Run:
    """What one counted forward pass of a module saw: the module (its state restored), the
    ``exact`` op counter, the FLOPs FlopCounterMode reported, and the call's positional inputs,
    keyword arguments and output."""

    module: torch.nn.Module
    exact: ExactCounter
    torch_flops: int
    inputs: tuple = ()
    call_kwargs: dict[str, Any] = field(default_factory=dict)
    output: Any = None
    saved: int = 0  # bytes of the storages autograd saved for backward (parameters aside)
    # the backward pass (count(..., backward=True)): the op counter's and FlopCounterMode's
    backward_exact: int | None = None
    backward_torch: int | None = None


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def min_bytes(run: Run) -> int:
    """``bytes`` under ``min``: every distinct input tensor (positional and keyword; one tensor
    object counted once), every parameter of the module and every tensor of the output, each
    ``numel * element_size``."""
    inputs = {id(t): t for t in tensors_in(list(run.inputs)) + tensors_in(run.call_kwargs)}
    reads = sum(_nbytes(t) for t in inputs.values())
    weights = sum(_nbytes(p) for p in run.module.parameters())
    return reads + weights + sum(_nbytes(t) for t in tensors_in(run.output))


def _halved(flops: int | None) -> int | None:
    return None if flops is None else flops // 2


MEASUREMENTS: dict[tuple[str, str], Callable[[Run], int | None]] = {
    ("params", "count"): lambda run: sum(p.numel() for p in run.module.parameters()),
    ("flops", "exact"): lambda run: run.exact.total,
    ("flops", "macs"): lambda run: run.torch_flops // 2,
    ("flops", "torch"): lambda run: run.torch_flops,
    ("bytes", "min"): min_bytes,
    ("bytes", "eager"): lambda run: run.exact.bytes,
    ("saved", "autograd"): lambda run: run.saved,
    ("backward", "exact"): lambda run: run.backward_exact,
    ("backward", "macs"): lambda run: _halved(run.backward_torch),
    ("backward", "torch"): lambda run: run.backward_torch,
}
"""(quantity, convention) -> how it is measured from a run (None: not measured in this run)."""


def _backward(module: torch.nn.Module, tensors: tuple, call_kwargs: dict) -> tuple[int, int]:
    """``(exact, torch)`` FLOPs of the backward pass of one forward call of ``module``: the
    gradients of the sum of its outputs with respect to its parameters and its inputs that
    require grad (``torch.autograd.grad``: the graph is not followed past the call's inputs,
    and nothing accumulates into ``.grad``), each counter on its own pass over one graph."""
    # an input that requires grad is a clone of a leaf (a clone's backward is no kernel): an
    # in-place layer then works on a tensor of its own, and the gradient reaches the leaf
    leaves = {
        i: t.detach().requires_grad_()
        for i, t in enumerate(tensors)
        if isinstance(t, torch.Tensor) and t.requires_grad
    }
    call = [leaves[i].clone() if i in leaves else t for i, t in enumerate(tensors)]
    wanted = [*(p for p in module.parameters() if p.requires_grad), *leaves.values()]
    return backward_counts(tensors_in(module(*call, **call_kwargs)), wanted)


def backward_counts(outputs: list[torch.Tensor], wanted: list[torch.Tensor]) -> tuple[int, int]:
    """``(exact, torch)`` FLOPs of ``torch.autograd.grad`` of ``outputs`` (those that require
    grad, seeded with ones) with respect to ``wanted``, each counter on its own pass over one
    graph (0, 0 where nothing is to compute)."""
    outputs = [t for t in outputs if t.requires_grad]
    if not outputs or not wanted:
        return 0, 0
    ones = [torch.ones_like(t) for t in outputs]
    exact, flops = ExactCounter(), FlopCounterMode(display=False)
    for counter in (exact, flops):
        with counter:
            torch.autograd.grad(outputs, wanted, ones, retain_graph=True, allow_unused=True)
    return int(exact.total), int(flops.get_total_flops())


class SavedStorages:
    """``saved_tensors_hooks`` that note each storage autograd saves, once (its first saved
    tensor, and ``label()`` at that moment: the module running), except the storages whose ids
    are in ``aside`` (a module's parameters and buffers; a set the caller may go on growing,
    as the model analysis does with views of weights); ``nbytes`` their sum, each whole.

    >>> import torch
    >>> linear, x = torch.nn.Linear(3, 4), torch.randn(2, 3)
    >>> weights = {storage_id(p) for p in linear.parameters()}
    >>> with SavedStorages(weights) as saved:   # addmm saves x (its weight aside)
    ...     y = torch.relu(linear(x))           # relu saves its output
    >>> saved.nbytes                            # 2*3*4 + 2*4*4
    56
    """

    def __init__(self, aside: set[int], label: Callable[[], str] = lambda: "") -> None:
        self.aside = aside
        self.label = label
        self.saved: dict[int, tuple[str, torch.Tensor]] = {}  # storage -> (label, a tensor)
        # torch keeps a pack hook alive after its context exits (and with it all this notes,
        # for the life of the process): the hook reaches this object by a weak reference
        owner = weakref.ref(self)

        def pack(t: torch.Tensor) -> torch.Tensor:
            noting = owner()
            if noting is not None:
                noting._note(t)
            # not ``t`` itself: a saved output would hold its own grad_fn, a cycle through C++
            # that Python's collector cannot see, and its graph would outlive the run
            return t.detach()

        self._hooks = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)

    def _note(self, t: torch.Tensor) -> None:
        key = storage_id(t)
        if key not in self.aside and key not in self.saved:
            self.saved[key] = (self.label(), t)

    @property
    def nbytes(self) -> int:
        return sum(t.untyped_storage().nbytes() for _, t in self.saved.values())

    def __enter__(self) -> SavedStorages:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._hooks.__exit__(*exc)


@dataclass(frozen=True)
class CountResult:
    """What one forward pass of a real module measured: ``values[(quantity, convention)]``
    for every measured quantity and convention, and the output shape."""

    values: dict[tuple[str, str], int]
    output_shape: tuple[int, ...]
    convention: str | None = None  # of .flops (None: the default, exact)
    by_op: dict[str, int] = field(default_factory=dict)
    bytes_by_op: dict[str, int] = field(default_factory=dict)  # eager bytes per operator

    def quantity(self, quantity: str, convention: str | None = None) -> int:
        """The measured ``quantity`` under ``convention`` (None: the quantity's default)."""
        name = _quantity(quantity).convention(convention)
        if (quantity, name) not in self.values:
            measured = ", ".join(f"{q}/{c}" for q, c in self.values)
            hint = " (count(..., backward=True) measures it)" if quantity == "backward" else ""
            raise ConventionError(f"count() measures {measured}, not {quantity}/{name}{hint}")
        return self.values[(quantity, name)]

    @property
    def params(self) -> int:
        """The module's parameters (numel)."""
        return self.quantity("params")

    @property
    def costs(self) -> dict[str, int]:
        """The measured FLOPs per convention."""
        return {c: v for (q, c), v in self.values.items() if q == "flops"}

    @property
    def flops(self) -> int:
        """The FLOPs under the convention asked for."""
        return self.quantity("flops", self.convention)

    def cost(self, convention: str) -> int:
        """The measured FLOPs under ``convention``."""
        return self.quantity("flops", convention)


def _materialise(inputs: tuple) -> tuple:
    out = []
    for x in inputs:
        if isinstance(x, torch.Tensor):
            out.append(x)
        else:
            out.append(torch.randn(tuple(int(d) for d in x)))
    return tuple(out)


def _shape(output: Any) -> tuple[int, ...]:
    if isinstance(output, torch.Tensor):
        return tuple(output.shape)
    return tuple(output[0].shape)  # (output, extras) tuples: the first tensor


def _restore(module: torch.nn.Module, saved: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for key, value in module.state_dict().items():
            if key in saved and value.shape == saved[key].shape:
                value.copy_(saved[key])


def count(
    module: torch.nn.Module,
    *inputs: Any,
    convention: str | None = None,
    training: bool = False,
    backward: bool = False,
    **call_kwargs: Any,
) -> CountResult:
    """Run ``module`` on ``inputs`` (tensors, or shapes filled with random values) and count.

    ``call_kwargs`` are passed to the forward call.  Both counters see the same module state
    (running statistics, ...), and the module's state and mode are restored afterwards.
    ``backward=True`` also measures quantity ``backward``: the FLOPs of the backward pass of
    the sum of the outputs, for the parameters and the inputs that require grad (not past
    the inputs: an input made by an earlier operation is where the count stops).

    >>> import torch, layercost_sym as lc
    >>> c = lc.count(torch.nn.Linear(3, 4), (2, 3))
    >>> c.params, c.output_shape, c.costs
    (16, (2, 4), {'exact': 48, 'macs': 24, 'torch': 48})
    """
    convention = _quantity("flops").convention(convention)
    if ("flops", convention) not in MEASUREMENTS:
        measured = [c for q, c in MEASUREMENTS if q == "flops"]
        raise ConventionError(
            f"count() measures {', '.join(measured)}; {convention!r} is a rule-only convention"
        )
    tensors = _materialise(inputs)
    was_training = module.training
    # Both counters run the module itself from the same state (running statistics, ...), which
    # is restored afterwards. (A deep copy would not do: some modules do not survive one, e.g.
    # TransformerDecoderLayer(activation=nn.GELU()) comes back with F.relu.)
    with torch.no_grad():
        saved = {k: v.clone() for k, v in module.state_dict().items()}
    try:
        module.train(training)
        with torch.enable_grad(), math_sdpa():
            counter = ExactCounter()
            weights = {storage_id(w) for w in [*module.parameters(), *module.buffers()]}
            with counter:
                output = module(*tensors, **call_kwargs)
            # only the output's sizes are read later: its graph (every activation autograd
            # saved) goes now, not after the second pass (twice the peak memory: large models
            # died at their default images)
            output = tree_map_only(torch.Tensor, torch.Tensor.detach, output)
            _restore(module, saved)
            # saved tensors on the pass torch runs as it is (the op counter decomposes some
            # kernels: native_layer_norm's would keep its statistics in the input's dtype)
            flop_counter = FlopCounterMode(display=False)
            with flop_counter, SavedStorages(weights) as kept:
                module(*tensors, **call_kwargs)
            if backward:
                _restore(module, saved)
                backward_exact, backward_torch = _backward(module, tensors, call_kwargs)
    finally:
        _restore(module, saved)
        module.train(was_training)
    run = Run(
        module,
        counter,
        int(flop_counter.get_total_flops()),
        tensors,
        call_kwargs,
        output,
        kept.nbytes,
        backward_exact if backward else None,
        backward_torch if backward else None,
    )
    found = {key: measure(run) for key, measure in MEASUREMENTS.items()}
    values = {key: value for key, value in found.items() if value is not None}
    return CountResult(
        values, _shape(output), convention, dict(counter.by_op), dict(counter.bytes_by_op)
    )
