"""``count``: run a real torch module and count its parameters, output shape and costs.

``exact`` comes from :class:`~layercost_sym.torchtools.opcount.ExactCounter`; ``torch`` from
``torch.utils.flop_counter.FlopCounterMode`` on the non-fused path (grad enabled, the math
backend of scaled dot-product attention); ``macs`` is ``torch / 2``.
"""

from __future__ import annotations

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


def _restore(module: torch.nn.Module, saved: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for key, value in module.state_dict().items():
            if key in saved and value.shape == saved[key].shape:
                value.copy_(saved[key])


def count(
    module: torch.nn.Module,
    *inputs: Any,
    convention: str = DEFAULT_CONVENTION,
    training: bool = False,
    **call_kwargs: Any,
) -> CountResult:
    """Run ``module`` on ``inputs`` (tensors, or shapes filled with random values) and count.

    ``call_kwargs`` are passed to the forward call.  Both counters see the same module state
    (running statistics, ...), and the module's state and mode are restored afterwards.

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
    was_training = module.training
    # Both counters run the module itself from the same state (running statistics, ...), which
    # is restored afterwards. (A deep copy would not do: some modules do not survive one, e.g.
    # TransformerDecoderLayer(activation=nn.GELU()) comes back with F.relu.)
    with torch.no_grad():
        saved = {k: v.clone() for k, v in module.state_dict().items()}
    try:
        module.train(training)
        with torch.enable_grad(), _math_sdpa():
            counter = ExactCounter()
            with counter:
                output = module(*tensors, **call_kwargs)
            _restore(module, saved)
            flop_counter = FlopCounterMode(display=False)
            with flop_counter:
                module(*tensors, **call_kwargs)
    finally:
        _restore(module, saved)
        module.train(was_training)
    params = sum(p.numel() for p in module.parameters())
    torch_flops = int(flop_counter.get_total_flops())
    costs = {"exact": counter.total, "macs": torch_flops // 2, "torch": torch_flops}
    return CountResult(params, _shape(output), costs, convention, dict(counter.by_op))
