"""Mixture-of-experts layers in a trace: the routed experts run so their work is a closed form,
and the parameters one token uses (active) beside all of them (total).

transformers (5.x) stores a layer's routed experts as one module of 3-D weights
(``MixtralExperts``, ``Qwen2MoeExperts``, ``DeepseekV3Experts``: ``gate_up_proj`` of shape
``(E, 2 F, d)``, ``down_proj`` of shape ``(E, d, F)``) whose forward is chosen by
``config._experts_implementation``:

* ``"eager"`` loops over the experts that received tokens (``nonzero`` of the routing mask),
  each on the rows ``torch.where`` finds: sizes that depend on the router's values, which a
  trace on fake tensors cannot follow (``Eq(u0, 0)``: is this expert empty?);
* ``"grouped_mm"`` (the default) sorts the (token, choice) pairs by expert and runs
  ``grouped_mm`` with offsets: no CPU kernel for float32, and FlopCounterMode counts 0 for it;
* ``"batched_mm"`` sends each of the ``S = T k`` (token, choice) pairs (``T`` tokens, ``k``
  experts per token) through its own expert's weights, gathered per pair: static shapes, the
  same products whatever the routing.

A trace (:func:`batched_experts`) runs every experts module as ``"batched_mm"``.  Its work is
routing-independent and exact for that implementation: the up and down projections are
``S (2 F) d + S d F`` multiply-adds, the ``T k (3 d F)`` of SwiGLU experts, which is also what
the eager loop and grouped_mm multiply in total for any routing (each pair goes to exactly one
expert: the experts' row counts sum to ``S``).  Where the implementations differ, and what the
closed form assumes there, is stated in :attr:`RoutedExperts.note`: the eager loop's
per-expert overhead (one ``where`` over the ``k x T`` mask, a gather, a scale and an
``index_add`` per expert that receives at least one token; an expert with none is skipped) and
the gathered weights' bytes.  transformers' implementations drop no token (no capacity
limit), so ``S = T k`` holds exactly.

:func:`routed_experts` reads each experts module's ``E``, ``k`` and parameters; a token uses
``k`` of the ``E`` experts, so its active parameters are all parameters less ``(E - k) / E``
of the routed experts' (:attr:`Analysis.active_params
<layercost_sym.torchtools.analysis.Analysis.active_params>`).

>>> import torch
>>> routed_experts(torch.nn.Linear(2, 2))
[]
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import TraceError

__all__ = ["RoutedExperts", "batched_experts", "experts_modules", "routed_experts"]

TRACED_AS = "batched_mm"  # the implementation a trace runs


@dataclass(frozen=True)
class RoutedExperts:
    """One layer's routed experts: ``experts`` (E) of them, ``top_k`` (k) per token.

    ``params`` counts all E experts' weights; a token passes through k of them, so
    ``active_params`` is ``params * k / E`` (the weights are E equal blocks).  ``configured``
    is the implementation the model was built with, ``note`` what the analysis assumes.

    >>> r = RoutedExperts("mlp.experts", "MixtralExperts", 8, 2, 8 * 3 * 16 * 24, "grouped_mm")
    >>> r.active_params, r.inactive_params
    (2304, 6912)
    """

    name: str
    what: str  # class name
    experts: int
    top_k: int
    params: int
    configured: str

    @property
    def active_params(self) -> int:
        return self.params * self.top_k // self.experts

    @property
    def inactive_params(self) -> int:
        return self.params - self.active_params

    @property
    def note(self) -> str:
        """The assumption behind the closed form of this layer's routed experts."""
        ran = (
            "as configured"
            if self.configured == TRACED_AS
            else f"in place of the configured {self.configured!r}"
        )
        return (
            f"{self.name} ({self.what}, {self.top_k} of {self.experts} experts per token): costed "
            f"as transformers' {TRACED_AS!r} experts implementation runs them ({ran}): each of "
            f"the T*{self.top_k} (token, expert) pairs of T tokens through its expert's weights, "
            "gathered per pair; no token is dropped (no capacity limit), so the products "
            "(torch, macs) are those of any routing and of every implementation. 'eager' "
            "skips an expert that gets no token and adds, per expert that gets one, a where "
            f"over the {self.top_k} x T routing mask, a gather and an index_add (exact and "
            "bytes then depend on the routing); 'batched_mm' reads the gathered weights (bytes: "
            "3*d*F elements per pair), 'grouped_mm' each expert's weights once"
        )


def experts_modules(model: torch.nn.Module) -> list[tuple[str, Any]]:
    """The experts modules of ``model`` that transformers' ``use_experts_implementation``
    made (they choose their forward by ``config._experts_implementation``)."""
    return [
        (name, m)
        for name, m in model.named_modules()
        if hasattr(type(m), "_apply_gate")
        and hasattr(getattr(m, "config", None), "_experts_implementation")
        and isinstance(getattr(m, "num_experts", None), int)
    ]


def routed_experts(model: torch.nn.Module) -> list[RoutedExperts]:
    """Each experts module of ``model`` with its E, k and parameters (E equal blocks)."""
    found = []
    for name, m in experts_modules(model):
        k = getattr(m.config, "num_experts_per_tok", None)
        if not isinstance(k, int) or not 0 < k <= m.num_experts:
            raise TraceError(
                f"{name} ({type(m).__name__}): its config states no num_experts_per_tok "
                f"between 1 and its {m.num_experts} experts (got {k!r}): the experts a token "
                "uses, which its active parameters need"
            )
        params = sum(p.numel() for p in m.parameters())
        configured = str(m.config._experts_implementation or "eager")
        found.append(RoutedExperts(name, type(m).__name__, m.num_experts, k, params, configured))
    return found


@contextlib.contextmanager
def batched_experts(model: torch.nn.Module) -> Iterator[None]:
    """Run every experts module of ``model`` as ``"batched_mm"`` inside this scope (see the
    module docstring); the configured implementation is restored afterwards."""
    configs: dict[int, tuple[Any, Any]] = {}
    for _name, m in experts_modules(model):
        configs.setdefault(id(m.config), (m.config, m.config._experts_implementation))
    try:
        for config, _was in configs.values():
            config._experts_implementation = TRACED_AS
        yield
    finally:
        for config, was in configs.values():
            config._experts_implementation = was
