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
    on the real module for params, output shape and each of ``conventions``.

    Returns ``(binding, counted)`` for further checks (e.g. an independent derivation where
    FlopCounterMode cannot see the work).
    """
    module = case.build()
    tensors = case.tensors()
    binding = lc.bind(module, *tensors, **case.call_kwargs)
    counted = lc.count(module, *tensors, training=case.training, **case.call_kwargs)
    rule = binding.rule
    assert rule.module in {cls.__name__ for cls in type(module).__mro__}, rule
    assert binding.params == counted.params, (rule.name, "params", binding.params, counted.params)
    assert binding.output_shape() == counted.output_shape, (
        rule.name,
        "output_shape",
        binding.output_shape(),
        counted.output_shape,
    )
    for convention in conventions:
        predicted = lc.evaluate(rule.cost(convention, case.training), binding)
        measured = counted.cost(convention)
        assert predicted == measured, (
            f"{rule.name} {convention}: rule gives {predicted}, torch counts {measured} "
            f"at {dict(binding)} (by op: {counted.by_op})"
        )
    return binding, counted
