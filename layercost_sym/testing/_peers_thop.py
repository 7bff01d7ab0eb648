"""Running thop (``ultralytics-thop``) on a drawn :class:`LayerCase` (imports torch and thop).

``thop.profile(model, inputs)`` hooks every module by its class (walking the MRO through thop's
hook table; a class it does not know counts 0), puts the model in eval mode, runs one forward
under ``torch.no_grad()`` and a ``TorchFunctionMode`` that also counts matmul / einsum /
``F.linear`` / SDPA calls made outside any module with a non-zero rule of its own, and returns
``(macs, params)`` as floats.  It forwards positional inputs only, so keyword arguments of the
forward call go through a one-line wrapper module (which has no rule: it adds nothing).

>>> from layercost_sym.testing.strategies import LayerCase
>>> case = LayerCase("Linear", {"in_features": 3, "out_features": 2}, ((4, 3),))
>>> thop_macs(build(case), *tensors(case))
24
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from thop import profile

from .strategies import LayerCase

__all__ = ["CallWith", "build", "scaled_dot_product_attention", "tensors", "thop_macs"]

# transformer activations drawn as text (see _cases_attention.ACTIVATIONS)
_ACTIVATIONS: dict[str, Any] = {
    "relu": "relu",
    "gelu": "gelu",
    "ReLU()": torch.nn.ReLU,
    "GELU()": torch.nn.GELU,
}


class scaled_dot_product_attention(torch.nn.Module):  # the rule's name: lc.bind finds it
    """The functional as a module (thop profiles modules)."""

    def forward(self, query, key, value, **kwargs):
        return F.scaled_dot_product_attention(query, key, value, **kwargs)


class CallWith(torch.nn.Module):
    """Calls ``module`` with fixed keyword arguments: thop passes positional inputs only.

    thop knows no rule for this class, so it contributes 0; its child is hooked as usual."""

    def __init__(self, module: torch.nn.Module, kwargs: dict):
        super().__init__()
        self.module = module
        self.kwargs = dict(kwargs)

    def forward(self, *args):
        return self.module(*args, **self.kwargs)


def build(case: LayerCase) -> torch.nn.Module:
    """A fresh module for ``case`` (transformer activations as modules; SDPA wrapped)."""
    if case.name == "scaled_dot_product_attention":
        return scaled_dot_product_attention()
    if case.name in ("TransformerEncoderLayer", "TransformerDecoderLayer"):
        act = _ACTIVATIONS[case.kwargs["activation"]]
        kwargs = {**case.kwargs, "activation": act if isinstance(act, str) else act()}
        return getattr(torch.nn, case.name)(**kwargs).train(case.training)
    return case.build()


def tensors(case: LayerCase) -> tuple:
    """The case's inputs; MultiheadAttention's shared query/key/value are one tensor."""
    out = case.tensors()
    shared = case.notes.get("shared", "")
    if shared == "qkv":
        return (out[0],) * 3
    if shared == "kv":
        return (out[0], out[1], out[1])
    return out


def thop_macs(module: torch.nn.Module, *inputs, **call_kwargs) -> int:
    """The MACs ``thop.profile`` returns for ``module`` on ``inputs`` (an exact integer)."""
    model = CallWith(module, call_kwargs) if call_kwargs else module
    macs, _ = profile(model, inputs=inputs, verbose=False)
    assert float(macs).is_integer(), macs
    return int(macs)
