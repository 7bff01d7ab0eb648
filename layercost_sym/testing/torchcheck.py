"""Checking a rule against the real torch module (imports torch).

>>> from layercost_sym.testing.strategies import LayerCase
>>> case = LayerCase("Linear", {"in_features": 3, "out_features": 2}, ((4, 3),))
>>> binding, counted = check_against_torch(case)
>>> counted.costs
{'exact': 48, 'macs': 24, 'torch': 48}
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import layercost_sym as lc
from layercost_sym.evaluation import invalid_points

from .strategies import LayerCase

__all__ = [
    "HALF",
    "NO_16BIT_KERNEL",
    "check_against_torch",
    "check_backward",
    "check_bytes",
    "eager_not_stated",
]

HALF = "bfloat16"  # the 16-bit dtype every rule's stated eager bytes are proven in too
HALF_SHARE = 4  # one drawn case in HALF_SHARE is checked again in HALF (CI draws 200 per rule)
# torch.nn classes torch cannot run in a 16-bit dtype on the CPU (their eager bytes there do not
# exist): the 16-bit check accepts torch's refusal for them, and only for them;
# tests/test_bytes.py checks that torch still refuses both 16-bit dtypes for each
NO_16BIT_KERNEL = {
    "AvgPool3d": "avg_pool3d has no bfloat16 or float16 kernel on the CPU",
    "LPPool3d": "runs avg_pool3d, which has no bfloat16 or float16 kernel on the CPU",
    "LocalResponseNorm": "on input of rank 4 or more it runs avg_pool3d (rank 3: checked)",
}


def check_against_torch(case: LayerCase, conventions: Sequence[str] = ("exact", "macs", "torch")):
    """Assert that the rule of ``case``'s module, evaluated at ``lc.bind``, equals ``lc.count``
    on the real module for its output shape and for every quantity ``count`` measures (FLOPs
    under ``conventions`` only: FlopCounterMode cannot see some kernels; a partial convention,
    ``bytes`` under ``eager``, where the rule states it).  A rule that states ``eager`` bytes
    has its bytes checked again in :data:`HALF`, with floating inputs that require grad (as
    inside a model: the flag ``rg``), for one case in :data:`HALF_SHARE` (:func:`check_bytes`).

    Returns ``(binding, counted)`` for further checks (e.g. an independent derivation where
    FlopCounterMode cannot see the work).
    """
    module, binding, counted = _bind_and_count(case)
    rule = binding.rule
    assert rule.module in {cls.__name__ for cls in type(module).__mro__}, rule
    assert binding.output_shape() == counted.output_shape, (
        rule.name,
        "output_shape",
        binding.output_shape(),
        counted.output_shape,
    )
    checked = _compare(case, binding, counted, lambda q, c: q != "flops" or c in conventions)
    flops = {c for q, c in checked if q == "flops"}
    assert ("params", "count") in checked and set(conventions) <= flops, checked
    stated = rule.conventions_of("backward") or rule.conventions_of("saved")
    if stated and not (case.requires_grad or case.frozen):
        # backward and saved: the input with and without grad, the weights trained and frozen
        for variant in (case.with_grad(), case.freeze(), case.with_grad().freeze()):
            check_backward(variant)
    if "eager" in rule.conventions_of("bytes") and case.dtype == "float32":
        # a fixed quarter of the drawn cases (by a hash of the case, so a run is repeatable)
        if zlib.crc32(repr(case).encode()) % HALF_SHARE == 0:
            try:
                check_bytes(case.in_dtype(HALF).with_grad())
            except RuntimeError as exc:  # torch refuses the dtype: only where it is known to
                if rule.module not in NO_16BIT_KERNEL or "not implemented for" not in str(exc):
                    raise
    return binding, counted


def check_bytes(case: LayerCase) -> None:
    """Assert that the rule's ``bytes`` (every convention it states that ``count`` measures)
    equals what ``lc.count`` measures on the case, in the case's dtype."""
    _check_quantity(case, "bytes")


def check_backward(case: LayerCase) -> None:
    """Assert that the rule's ``backward`` and ``saved`` (every convention it states) equal
    what ``lc.count(..., backward=True)`` measures on the case (its input's grad, its
    weights': what autograd saves depends on both too)."""
    _check_quantity(case, "backward", "saved")


def _check_quantity(case: LayerCase, *quantities: str) -> None:
    module, binding, counted = _bind_and_count(case)
    if "backward" in quantities and _backward_refused(binding):
        # the rule refuses the backward (a constraint of quantity backward alone): so must torch
        try:
            lc.count(module, *case.tensors(), backward=True, **_count_kwargs(case))
        except RuntimeError:  # torch's own error: the rule's constraint names the reason
            pass
        else:
            raise AssertionError(
                f"{binding.rule.name}: the rule refuses the backward at {dict(binding)}, "
                "torch runs it"
            )
    _compare(case, binding, counted, lambda q, c: q in quantities)


def _backward_refused(binding) -> bool:
    """Whether a constraint of the rule's quantity ``backward`` alone fails at ``binding``."""
    domain = binding.rule.domain(binding.training, "backward")
    return bool(invalid_points(domain, dict(binding)).any())


def _count_kwargs(case: LayerCase) -> dict:
    return {"training": case.training, **case.call_kwargs}


def _bind_and_count(case: LayerCase):
    """The case's module, ``lc.bind`` of it on the case's inputs and ``lc.count`` of the call
    (and of its backward pass, where the rule states one and does not refuse it)."""
    module = case.build()
    tensors = case.tensors()
    binding = lc.bind(module, *tensors, **case.call_kwargs)
    backward = bool(binding.rule.conventions_of("backward")) and not _backward_refused(binding)
    counted = lc.count(module, *tensors, backward=backward, **_count_kwargs(case))
    return module, binding, counted


def _compare(case: LayerCase, binding, counted, wanted) -> list[tuple[str, str]]:
    """Assert the rule's value equals the measured one for each ``(quantity, convention)``
    ``count`` measured that ``wanted`` keeps and the rule states (a partial convention, eager
    bytes, where it does); the pairs checked."""
    rule = binding.rule
    checked = []
    for (quantity, convention), measured in counted.values.items():
        if not wanted(quantity, convention) or convention not in rule.conventions_of(quantity):
            continue
        predicted = lc.evaluate(rule.quantity(quantity, convention, case.training), binding)
        by_op = counted.bytes_by_op if quantity == "bytes" else counted.by_op
        assert predicted == measured, (
            f"{rule.name} {quantity} ({convention}, {case.dtype}): rule gives {predicted}, "
            f"torch counts {measured} at {dict(binding)} (by op: {by_op})"
        )
        checked.append((quantity, convention))
    return checked


def eager_not_stated(family: str) -> set[str]:
    """The rules of ``family`` (``formulas/<family>.toml``) that do not state ``bytes`` under
    ``eager``; ``KeyError`` for a family with no rules."""
    from ..cache import catalogue

    rules = [r for r in catalogue().rules.values() if r.family == family]
    if not rules:
        raise KeyError(family)
    return {r.name for r in rules if "eager" not in r.conventions_of("bytes")}
