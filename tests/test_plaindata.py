"""Expressions and records as plain data: rebuilt equal, and nothing outside the allow-list."""

from __future__ import annotations

import json

import pytest
import sympy

from layercost_sym.errors import PlainDataError
from layercost_sym.glossary import glossary
from layercost_sym.parsing import gcd, parse, parse_condition
from layercost_sym.plaindata import (
    NODE_TYPES,
    ExpressionReader,
    ExpressionWriter,
    from_plain,
    to_plain,
)
from layercost_sym.rule import BindSpec, Constraint

SYMBOLS = glossary().symbols
N, H, W, k, s = (SYMBOLS[n] for n in ("N", "H", "W", "k", "s"))


def round_trip(*exprs: sympy.Basic) -> list[sympy.Basic]:
    writer = ExpressionWriter(SYMBOLS)
    indices = [writer.add(e) for e in exprs]
    nodes = json.loads(json.dumps(writer.nodes))  # through JSON text, as the cache stores it
    reader = ExpressionReader(nodes, SYMBOLS)
    return [reader.get(i) for i in indices]


EXPRESSIONS = [
    parse("N * (H + 2*1 - k) // s + 1"),
    parse("Max(H - k + 1, 1) * Min(W, k) + Max(N, H, W)"),
    parse("ceiling(H / s) - Mod(H, s) + gcd(H, W)"),
    parse("where(H >= k and not (W < k), H*W/2, 0)"),  # Piecewise, And, relationals
    parse("where(H == k or W != k, N**2, N**-1)"),  # Or, Eq, Ne, Pow with a negative exponent
    parse_condition("2*k <= H + 1"),
    sympy.Rational(3, 7) * H - sympy.Integer(-12) + sympy.Integer(2) ** 70,
    sympy.true,
    sympy.false,
    sympy.Not(sympy.Eq(N, H * W + 3)),
    sympy.ITE(sympy.Gt(H, k), sympy.Lt(W, 3), sympy.Eq(N, 1)),
    # unevaluated forms SymPy would otherwise rewrite keep their written structure
    sympy.Max(H, H + 1, evaluate=False),
    sympy.Add(N, N, evaluate=False),
    gcd(H, W),
]


@pytest.mark.parametrize("expr", EXPRESSIONS, ids=str)
def test_expressions_come_back_structurally_equal(expr):
    (back,) = round_trip(expr)
    assert back == expr and hash(back) == hash(expr) and type(back) is type(expr)
    assert sympy.srepr(back) == sympy.srepr(expr)
    assert getattr(back, "_argset", None) == getattr(expr, "_argset", None)


def test_shared_subexpressions_are_stored_once():
    inner = parse("Max(H - k + 1, 1)")
    writer = ExpressionWriter(SYMBOLS)
    writer.add(inner * N)
    size = len(writer.nodes)
    writer.add(inner + W)  # adds W, the Add and nothing of inner
    assert len(writer.nodes) == size + 2


@pytest.mark.parametrize(
    ("nodes", "message"),
    [
        ([["S", "os"]], "unknown symbol"),
        ([["Symbol", "H"]], "unknown kind 'Symbol'"),
        ([["__import__", 0]], "unknown kind"),
        ([["S", "H"], ["Add", 1]], "must be earlier nodes"),  # a cycle
        ([["S", "H"], ["Add", 0, 2]], "must be earlier nodes"),
        ([["S", "H"], ["Pow", 0]], "Pow with 1 arguments"),
        ([["S", "H"], ["Add", True]], "must be earlier nodes"),  # a bool is not an index
        ([["Q", 1, 1]], "bad rational"),
        ([["Q", 1, 0]], "bad rational"),
        ([1.5], "not a node"),
        ([{"x": 0}], "not a node"),
        ([["true", 0]], "takes no arguments"),
    ],
)
def test_malformed_pools_are_refused(nodes, message):
    with pytest.raises(PlainDataError, match=message):
        ExpressionReader(nodes, SYMBOLS)


def test_only_glossary_symbols_and_known_nodes_are_written():
    with pytest.raises(PlainDataError, match="not the glossary's"):
        ExpressionWriter(SYMBOLS).add(sympy.Symbol("H"))  # no assumptions: another symbol
    with pytest.raises(PlainDataError, match="no plain form for a Float"):
        ExpressionWriter(SYMBOLS).add(H * sympy.Float(0.5))
    with pytest.raises(PlainDataError, match="no plain form for a sin"):
        ExpressionWriter(SYMBOLS).add(sympy.sin(H))
    assert {"Add", "Mul", "Max", "Min", "Piecewise", "gcd"} <= set(NODE_TYPES)


RECORDS = {"BindSpec": BindSpec, "Constraint": Constraint}


def test_records_round_trip():
    value = {
        ("exact", False): (BindSpec("attr", attr="kernel_size", index=1, text="kernel_size[1]"),),
        "when": {"mode": ["sum", "mean"], "scale": 0.5, "flag": True, "none": None},
        "frozen": frozenset({"thop", "fvcore"}),
        "constraint": Constraint(parse_condition("H >= k"), "H >= k", "too small"),
    }
    writer = ExpressionWriter(SYMBOLS)
    data = json.loads(json.dumps(to_plain(value, writer, RECORDS)))
    back = from_plain(data, ExpressionReader(writer.nodes, SYMBOLS), RECORDS)
    assert back == value and type(back["when"]["mode"]) is list


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"c": "Popen", "v": {}}, "unknown record class"),
        ({"c": "BindSpec", "v": {"kind": "attr", "shell": True}}, "record with fields"),
        ({"y": []}, "unknown record tag"),
        ({"t": [], "l": []}, "not a plain record"),
        ({"x": 99}, "no expression 99"),
        ({"d": [[1]]}, r"\[key, value\] pairs"),
    ],
)
def test_malformed_records_are_refused(data, message):
    with pytest.raises(PlainDataError, match=message):
        from_plain(data, ExpressionReader([], SYMBOLS), RECORDS)


def test_values_of_other_classes_are_not_written():
    with pytest.raises(PlainDataError, match="no plain form for a set"):
        to_plain({1, 2}, ExpressionWriter(SYMBOLS), RECORDS)
    with pytest.raises(PlainDataError, match="no plain form for a object"):
        to_plain(object(), ExpressionWriter(SYMBOLS), RECORDS)
