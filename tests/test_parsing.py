"""The allow-list parser: what it accepts, what it refuses, and that refusing is quick."""

import time

import pytest
import sympy

import layercost_sym as lc
from layercost_sym.errors import ExpressionError
from layercost_sym.parsing import MAX_DEPTH, MAX_TEXT_LENGTH, parse, parse_condition


def sym(name):
    return lc.parse(name)


def test_arithmetic_builds_the_expected_sympy():
    H, s, p = sym("H"), sym("s"), sym("p")
    assert parse("(H + 2*p - 3) // s + 1") == sympy.floor((H + 2 * p - 3) / s) + 1
    assert parse("H / 2") == sympy.Rational(1, 2) * H  # exact rational, never a float
    assert parse("H % s") == sympy.Mod(H, s)
    assert parse("-H + +p") == p - H
    assert parse("H**2") == H**2
    assert parse("2**-1") == sympy.Rational(1, 2)
    assert parse("ceil(H/s)") == sympy.ceiling(H / s)
    assert parse("max(H, p)") == sympy.Max(H, p)
    assert parse("Min(H, p, s)") == sympy.Min(H, p, s)
    # str() of the zoo's expressions writes Abs (mobilenet_v2's 0/1 residual factor): it reads back
    assert parse("1 - Min(1, Abs(H - p))") == 1 - sympy.Min(1, sympy.Abs(H - p))
    assert parse("abs(H - p)") == sympy.Abs(H - p)


@pytest.mark.parametrize("name", ["N", "E", "I", "S", "Q"])
def test_sympy_names_are_plain_shape_symbols(name):
    e = parse(name)
    assert isinstance(e, sympy.Symbol) and e.name == name
    assert e.is_integer and e.is_positive
    # not SymPy's own objects: E is not Euler's number, I not the imaginary unit, S not the
    # singleton registry, N not the numeric-evaluation function, Q not the assumptions module
    assert e not in (sympy.E, sympy.I) and e is not sympy.S and e is not sympy.N
    assert parse(f"{name} + 1").free_symbols == {e}


def test_symbols_are_shared_with_the_glossary():
    assert parse("C_in") in lc.rule("Conv2d").params.free_symbols


def test_where_builds_piecewise_and_flag_reads_as_equal_one():
    b = sym("b")
    e = parse("where(b, 2, 3)")
    assert e.subs(b, 1) == 2 and e.subs(b, 0) == 3


@pytest.mark.parametrize(
    ("text", "token"),
    [
        ("H.__class__", "attribute"),
        ("__import__('os')", "__import__"),
        ("lambda: 1", "lambda"),
        ("H[0]", "subscript"),
        ("open('x')", "open"),
        ("sympify('H')", "sympify"),
        ("H if H else 1", "ifexp"),
        ("'H'", "literal"),
        ("1.5 * H", "1.5"),
        ("[H]", "list"),
        ("H & 1", "&"),
        ("foo + 1", "foo"),
        ("__builtins__", "__builtins__"),
        ("floor(H, 2)", "floor() takes 1"),
        ("max(H)", "two or more"),
        ("floor(x=H)", "keyword"),
        ("H < 3", "condition"),
        ("(H).real", "attribute"),
        ("H**W", "exponent"),
        ("1/0", "division by zero"),
        ("", "cannot parse"),
        ("H +", "cannot parse"),
    ],
)
def test_rejected_with_the_offending_token_named(text, token):
    with pytest.raises(ExpressionError) as info:
        parse(text)
    assert token.lower() in str(info.value).lower()


def test_exponent_and_size_bounds_refuse_explosions_quickly():
    start = time.perf_counter()
    for text in [
        "9**9**9**9",
        "2**65",
        "(H**64)**64",
        "((2**64)**64)**64",
        "H**64 * H**64 * H**64 * H**64 * H**64",
    ]:
        with pytest.raises(ExpressionError):
            parse(text)
    # a hang detector, not a benchmark: refusal happens before any big arithmetic (microseconds)
    assert time.perf_counter() - start < 10


def test_deep_nesting_and_long_text_are_refused():
    with pytest.raises(ExpressionError, match="nested deeper"):
        parse("(" * (MAX_DEPTH + 1) + "H" + ")" * (MAX_DEPTH + 1))
    with pytest.raises(ExpressionError, match="nested"):
        parse("-" * 3000 + "H")
    with pytest.raises(ExpressionError, match="characters long"):
        parse("H+" * (MAX_TEXT_LENGTH // 2) + "H")
    with pytest.raises(ExpressionError):
        parse("(" * 100_000)
    with pytest.raises(ExpressionError):
        parse(b"H")  # type: ignore[arg-type]


def test_huge_literal_refused_but_big_ones_fine():
    assert parse(str(2**200)) == 2**200
    with pytest.raises(ExpressionError, match="bits"):
        parse("9" * 2000)


def test_conditions():
    H, p = sym("H"), sym("p")
    assert parse_condition("H >= 1 and p < 3") == sympy.And(H >= 1, p < 3)
    assert parse_condition("not H == 2") == sympy.Not(sympy.Eq(H, 2))
    assert parse_condition("1 <= H < 5") == sympy.And(H >= 1, H < 5)
    with pytest.raises(ExpressionError, match="not a condition"):
        parse_condition("H + 1")
    with pytest.raises(ExpressionError, match="not allowed"):
        parse_condition("H is None")


def test_gcd_is_integer_gcd_and_simplifies_only_what_is_always_true():
    # numbers: math.gcd; symbols: left alone, except gcd(x, 1) = 1 and gcd(x, x) = x (x > 0)
    assert lc.parse("gcd(12, 18)") == 6 and lc.parse("gcd(7, 1)") == 1
    assert lc.parse("gcd(H, 1)") == 1 and lc.parse("gcd(1, H)") == 1
    assert lc.parse("gcd(H, H)") == lc.parse("H")
    kept = lc.parse("gcd(H, W)")
    assert kept != 1 and lc.evaluate(kept, {"H": 12, "W": 18}) == 6
