"""``count``: run a real torch module and count its parameters, output shape and costs.

``exact`` comes from :class:`~layercost_sym.torchtools.opcount.ExactCounter`; ``torch`` from
``torch.utils.flop_counter.FlopCounterMode`` on the non-fused path (grad enabled, the math
backend of scaled dot-product attention); ``macs`` is ``torch / 2``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..conventions import DEFAULT_CONVENTION
from ..errors import ConventionError
from .opcount import ExactCounter

__all__ = ["CountResult", "count"]

COUNTED_CONVENTIONS = ("exact", "macs", "torch")


@dataclass(frozen=True)
class CountResult:
    """What one forward pass of a real module counted."""

    params: int
    output_shape: tuple[int, ...]
    costs: dict[str, int]
    convention: str = DEFAULT_CONVENTION
    by_op: dict[str, int] = field(default_factory=dict)

    @property
    def flops(self) -> int:
        """The cost under the convention asked for."""
        return self.costs[self.convention]

    def cost(self, convention: str) -> int:
        if convention not in self.costs:
            raise ConventionError(f"count() measures {', '.join(self.costs)}, not {convention!r}")
        return self.costs[convention]


def _math_sdpa():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH)


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


def count(
    module: torch.nn.Module,
    *inputs: Any,
    convention: str = DEFAULT_CONVENTION,
    training: bool = False,
    **call_kwargs: Any,
) -> CountResult:
    """Run ``module`` on ``inputs`` (tensors, or shapes filled with random values) and count.

    ``call_kwargs`` are passed to the forward call.  Each counter runs on its own deep copy of
    the module, so both see the same state (running statistics, ...).

    >>> import torch, layercost_sym as lc
    >>> c = lc.count(torch.nn.Linear(3, 4), (2, 3))
    >>> c.params, c.output_shape, c.costs
    (16, (2, 4), {'exact': 48, 'macs': 24, 'torch': 48})
    """
    if convention not in COUNTED_CONVENTIONS:
        raise ConventionError(
            f"count() measures {', '.join(COUNTED_CONVENTIONS)}; "
            f"{convention!r} is a rule-only convention"
        )
    tensors = _materialise(inputs)
    params = sum(p.numel() for p in module.parameters())

    def fresh() -> torch.nn.Module:  # each counter runs its own copy: same state, same work
        m = copy.deepcopy(module)
        m.train(training)
        return m

    with torch.enable_grad(), _math_sdpa():
        counter = ExactCounter()
        with counter:
            output = fresh()(*tensors, **call_kwargs)
        flop_counter = FlopCounterMode(display=False)
        with flop_counter:
            fresh()(*tensors, **call_kwargs)
    torch_flops = int(flop_counter.get_total_flops())
    costs = {"exact": counter.total, "macs": torch_flops // 2, "torch": torch_flops}
    return CountResult(params, _shape(output), costs, convention, dict(counter.by_op))
