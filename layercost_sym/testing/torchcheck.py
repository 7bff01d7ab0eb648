"""Checking a rule against the real torch module (imports torch).

>>> from layercost_sym.testing.strategies import LayerCase
>>> case = LayerCase("Linear", {"in_features": 3, "out_features": 2}, ((4, 3),))
>>> binding, counted = check_against_torch(case)
>>> counted.costs
{'exact': 48, 'macs': 24, 'torch': 48}
"""

from __future__ import annotations

from collections.abc import Sequence

import layercost_sym as lc

from .strategies import LayerCase

__all__ = ["check_against_torch"]


def check_against_torch(case: LayerCase, conventions: Sequence[str] = ("exact", "macs", "torch")):
    """Assert that the rule of ``case``'s module, evaluated at ``lc.bind``, equals ``lc.count``
    on the real module for its output shape and for every quantity ``count`` measures (FLOPs
    under ``conventions`` only: FlopCounterMode cannot see some kernels).

    Returns ``(binding, counted)`` for further checks (e.g. an independent derivation where
    FlopCounterMode cannot see the work).
    """
    module = case.build()
    tensors = case.tensors()
    binding = lc.bind(module, *tensors, **case.call_kwargs)
    counted = lc.count(module, *tensors, training=case.training, **case.call_kwargs)
    rule = binding.rule
    assert rule.module in {cls.__name__ for cls in type(module).__mro__}, rule
    assert binding.output_shape() == counted.output_shape, (
        rule.name,
        "output_shape",
        binding.output_shape(),
        counted.output_shape,
    )
    checked = []
    for (quantity, convention), measured in counted.values.items():
        if quantity == "flops" and convention not in conventions:
            continue
        predicted = lc.evaluate(rule.quantity(quantity, convention, case.training), binding)
        assert predicted == measured, (
            f"{rule.name} {quantity} ({convention}): rule gives {predicted}, torch counts "
            f"{measured} at {dict(binding)} (by op: {counted.by_op})"
        )
        checked.append((quantity, convention))
    flops = {c for q, c in checked if q == "flops"}
    assert ("params", "count") in checked and set(conventions) <= flops, checked
    return binding, counted
