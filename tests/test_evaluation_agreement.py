"""Compiled scalar, vectorised and plain SymPy evaluation agree on every catalogue rule.

Values are drawn freely (up to 2**80, so results pass 2**63): outside the rule's domain (a
constraint SymPy finds false) both paths refuse with a DomainError; inside it, where SymPy's
exact value is a non-negative integer, the compiled and vectorised paths return it; where it is
not, both refuse.
"""

import numpy as np
import pytest
import sympy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import layercost_sym as lc
from layercost_sym.errors import EvaluationError
from layercost_sym.glossary import glossary


def expressions():
    for name in lc.rules():
        r = lc.rule(name)
        for rule in (r, *r.variants):
            for convention in rule.conventions:
                for training in (False, True):
                    yield pytest.param(
                        rule.cost(convention, training),
                        id=f"{rule.name}-{convention}-{int(training)}",
                    )
            yield pytest.param(rule.params, id=f"{rule.name}-params")


def value_for(symbol):
    domain = glossary().info[symbol.name].domain if symbol.name in glossary().info else "positive"
    if domain == "flag":
        return st.integers(0, 1)
    low = 0 if domain == "nonnegative" else 1
    return st.one_of(st.integers(low, 12), st.integers(low, 2**80))


def sympy_value(expr, values):
    out = expr.xreplace({s: sympy.Integer(v) for s, v in values.items()})
    return out


@pytest.mark.parametrize("expr", list(dict.fromkeys(p.values[0] for p in expressions())))
@settings(max_examples=12, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_scalar_vector_and_sympy_agree(expr, data):
    symbols = sorted(expr.free_symbols, key=str)
    values = {s: data.draw(value_for(s), label=s.name) for s in symbols}
    reference = sympy_value(expr, values)
    named = {s.name: v for s, v in values.items()}
    arrays = {
        k: np.array([v, v], dtype=object if v >= 2**63 else np.int64) for k, v in named.items()
    }
    decided = [sympy_value(c.condition, values) for c in lc.domain(expr).conditions]
    outside = any(d == sympy.false for d in decided if not d.free_symbols)
    if outside:
        with pytest.raises(lc.DomainError):
            lc.evaluate(expr, named)
        if symbols:
            with pytest.raises(lc.DomainError):
                lc.evaluate(expr, arrays)
    elif reference.is_Integer and reference >= 0:
        assert lc.evaluate(expr, named) == int(reference)
        if symbols:
            out = lc.evaluate(expr, arrays)
            assert list(out) == [int(reference)] * 2
            assert out.dtype == (np.int64 if reference < 2**63 else object)
    else:
        with pytest.raises(EvaluationError):
            lc.evaluate(expr, named)
        if symbols:
            with pytest.raises(EvaluationError):
                lc.evaluate(expr, arrays)


def test_sweep_is_the_grid_of_scalar_evaluations():
    r = lc.rule("Conv2d")
    fixed = dict(N=1, C_in=3, C_out=8, k=3, s=2, p=1, d=1, g=1, b=1)
    grid = lc.sweep(r.flops, H=range(1, 40), W=[7, 224], **fixed)
    assert grid.shape == (39, 2) and grid.dtype == np.int64
    for i, h in enumerate(range(1, 40)):
        for j, w in enumerate([7, 224]):
            assert grid[i, j] == lc.evaluate(r.flops, dict(fixed, H=h, W=w))
