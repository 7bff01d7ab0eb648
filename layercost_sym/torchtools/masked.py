"""The ``useful`` FLOPs of the masked attention a traced model runs.

:func:`~layercost_sym.torchtools.tracing.analyze` costs ``F.scaled_dot_product_attention``
by the operators of torch's math path, the full ``Q x S`` square and the mask arithmetic
(``exact``).  The ``useful`` convention counts only the (query, key) pairs a causal mask keeps
(``formulas/quantities.toml``).  :class:`MaskedAttention`, a torch function mode inside the
trace, sees each call and adds a row that states, under ``useful`` alone, the difference the
``scaled_dot_product_attention`` rule gives between its ``useful`` and ``exact`` at the call's
symbolic shapes (0 under every other convention, no bytes, no backward):

* ``is_causal=True``: ``useful - exact`` of the rule (negative: the masked half and the mask);
* no mask: nothing masked, no row (``useful`` is ``exact``);
* an ``attn_mask`` tensor: which pairs it keeps is in its values, not its shape, so the row
  states no ``useful`` and the model's ``useful`` is refused, naming the call.

The rule's ``exact`` is the math path's operator count (proven against the op counter in
``tests/test_rules_attention.py``), so a row's difference takes the model's costed operators
to the rule's ``useful``.
"""

from __future__ import annotations

import types
from typing import Any

import sympy
import torch
from torch.overrides import TorchFunctionMode

from ..errors import LayercostError
from ..glossary import glossary
from ..quantities import quantity as _quantity
from .analysis import Layer
from .gradients import NO_BACKWARD
from .lookup import bind_call, op_rule

__all__ = ["MaskedAttention"]

_SDPA = "scaled_dot_product_attention"
_ARGUMENTS = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")
_DEFAULTS = {"attn_mask": None, "dropout_p": 0.0, "is_causal": False, "scale": None}


class MaskedAttention(TorchFunctionMode):
    """Adds a ``useful`` row to ``tracer.layers`` for each attention call outside a ruled
    module (see the module docstring)."""

    def __init__(self, tracer: Any) -> None:
        super().__init__()
        self.tracer = tracer

    def __torch_function__(self, func, types_, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func is torch.nn.functional.scaled_dot_product_attention and not self.tracer.ruled_depth:
            named = {**_DEFAULTS, **dict(zip(_ARGUMENTS, args, strict=False)), **kwargs}
            row = self._row(named)
            if row is not None:
                self.tracer.layers.append(row)
        return out

    def _row(self, named: dict[str, Any]) -> Layer | None:
        tracer = self.tracer
        where = tracer.stack[-1] if tracer.stack else ""
        name = f"{where}:(pairs the mask of {_SDPA} drops)"  # "(": bookkeeping, no operator
        if named["attn_mask"] is not None:
            why = "an attn_mask tensor: the pairs it keeps are in its values, not its shape"
            return _row(name, None, why)
        if not named["is_causal"]:
            return None  # nothing masked: useful is exact
        rule = op_rule(_SDPA, types.SimpleNamespace(**named))
        assert rule is not None  # formulas/attention.toml states it
        shapes = [tracer.shape(named[k]) for k in ("query", "key", "value")]
        call: dict[str, Any] = {k: named[k] for k in ("is_causal", "enable_gqa") if k in named}
        try:
            values, _ = bind_call(rule, types.SimpleNamespace(**call), shapes, call)
        except LayercostError as refused:  # a call the rule does not state: useful unknown
            return _row(name, None, f"the {_SDPA} rule does not bind: {refused}")
        symbols = glossary().symbols
        subs = {symbols[k]: v for k, v in values.items()}
        useful, exact = (rule.quantity("flops", c).xreplace(subs) for c in ("useful", "exact"))
        return _row(name, useful - exact, "the pairs the causal mask drops, and the mask")


def _row(name: str, difference: sympy.Expr | None, why: str) -> Layer:
    """A row of no FLOPs, bytes or backward under any convention but ``useful``: there
    ``difference``, or no value (None: the model's ``useful`` is refused, naming ``why``)."""
    stated = {c: sympy.Integer(0) for c in _quantity("flops").conventions if c != "useful"}
    notes = dict.fromkeys(stated, "counted by the operators of the math path")
    if difference is not None:
        stated["useful"] = difference
    notes["useful"] = why
    own = {(q, c): sympy.Integer(0) for q in ("bytes", "saved") for c in _quantity(q).conventions}
    own.update(NO_BACKWARD)
    return Layer(name, _SDPA, "op", sympy.Integer(0), stated=stated, notes=notes, own=own)
