"""evaluate(): exact ints, names or Symbols, errors that name the problem, numpy arrays."""

import numpy as np
import pytest
import sympy
from hypothesis import given
from hypothesis import strategies as st

import layercost_sym as lc
from layercost_sym.codegen import compile_expression
from layercost_sym.errors import EvaluationError, MissingSymbolError

CONV = {
    "N": 2,
    "C_in": 3,
    "C_out": 4,
    "k_h": 3,
    "k_w": 3,
    "s_h": 1,
    "s_w": 1,
    "p_h": 0,
    "p_w": 0,
    "d_h": 1,
    "d_w": 1,
    "g": 1,
    "b": 1,
    "H": 8,
    "W": 8,
}


def test_conv2d_at_a_shape_by_hand():
    # H_out = W_out = 8 - 3 + 1 = 6; per output 2*3*3*3 = 54 (27 mul, 26 add, 1 bias add)
    assert lc.evaluate(lc.rule("Conv2d").flops, CONV) == 2 * 4 * 6 * 6 * 54
    assert type(lc.evaluate(lc.rule("Conv2d").flops, CONV)) is int


def test_keys_may_be_names_symbols_or_square_shorthands():
    r = lc.rule("Conv2d")
    by_symbol = {lc.parse(k): v for k, v in CONV.items()}
    assert lc.evaluate(r.flops, by_symbol) == lc.evaluate(r.flops, CONV)
    square = {k: v for k, v in CONV.items() if not k.endswith(("_h", "_w"))}
    square.update(k=3, s=1, p=0, d=1)
    assert lc.evaluate(r.flops, square) == lc.evaluate(r.flops, CONV)


def test_text_is_parsed_safely():
    assert lc.evaluate("N*C_in + 1", {"N": 2, "C_in": 5}) == 11
    with pytest.raises(lc.ExpressionError):
        lc.evaluate("__import__('os').system('true')", {})


def test_bools_and_numpy_scalars_are_integers():
    assert lc.evaluate("b*C_in", {"b": True, "C_in": np.int64(7)}) == 7


def test_missing_symbols_are_all_named():
    with pytest.raises(MissingSymbolError, match=r"symbols 'H', 'W'"):
        lc.evaluate("N*H*W", {"N": 1})
    with pytest.raises(ValueError):  # catchable as the builtin
        lc.evaluate("N*H*W", {})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"H": 0, "p": 0}, "H must be a positive dimension, got 0"),
        ({"H": -3, "p": 0}, "H must be a positive dimension, got -3"),
        ({"H": 5, "p": -1}, "p must be non-negative, got -1"),
        ({"H": 5.0, "p": 0}, "H must be an integer, got 5.0"),
        ({"H": "5", "p": 0}, "H must be an integer"),
    ],
)
def test_bad_values_are_named(values, message):
    with pytest.raises(EvaluationError, match=message):
        lc.evaluate("H + 2*p", values)


def test_flags_must_be_zero_or_one():
    with pytest.raises(EvaluationError, match="b is a flag and must be 0 or 1, got 2"):
        lc.evaluate("b*N", {"b": 2, "N": 1})


def test_non_integer_and_negative_results_are_errors():
    with pytest.raises(EvaluationError, match=r"result is not an integer: 3/2 at H=3"):
        lc.evaluate("H/2", {"H": 3})
    with pytest.raises(EvaluationError, match=r"result is negative: -2 at H=1"):
        lc.evaluate("H - 3", {"H": 1})


def test_beyond_int64_stays_exact():
    big = 2**70 + 1
    assert lc.evaluate("N*N", {"N": big}) == big * big
    out = lc.evaluate("N*N", {"N": np.array([2, 3], dtype=np.int64) * 2**31})
    assert out.dtype == object and list(out) == [2**64, 9 * 2**62]  # would wrap in int64


def test_numpy_arrays_broadcast_and_match_scalar_evaluation():
    r = lc.rule("Conv2d")
    grid = dict(CONV, H=np.arange(3, 20), W=np.arange(3, 20)[:, None])
    out = lc.evaluate(r.flops, grid)
    assert out.shape == (17, 17) and out.dtype == np.int64
    for i, w in enumerate(range(3, 20)):
        for j, h in enumerate(range(3, 20)):
            assert out[i, j] == lc.evaluate(r.flops, dict(CONV, H=h, W=w))
    with pytest.raises(EvaluationError, match="H must be >= 1"):
        lc.evaluate(r.flops, dict(CONV, H=np.array([4, 0])))


def test_compiled_functions_are_cached():
    e = lc.parse("floor(H/3) + ceiling(W/2)")
    assert compile_expression(e) is compile_expression(e)
    assert compile_expression(e).source is not None  # compiled, not the SymPy fallback


def test_piecewise_max_min_mod_gcd_compile_and_agree_with_sympy():
    e = lc.parse("where(H > W, Max(H, W/2), Min(H, 3)) + Mod(H, 4) + gcd(H, W) + ceil(H*W/7)")
    assert compile_expression(e).source is not None
    for h in range(1, 12):
        for w in range(1, 12):
            direct = e.xreplace({lc.parse("H"): h, lc.parse("W"): w})
            # every point is an integer (where H > W, Max(H, W/2) = H), so none is left unchecked
            assert direct.is_integer, (h, w, direct)
            assert lc.evaluate(e, {"H": h, "W": w}) == int(direct)


positive = st.integers(1, 2**80)


@given(
    n=positive,
    c_in=positive,
    c_out=positive,
    h=st.integers(1, 2**40),
    k=st.integers(1, 9),
    s=st.integers(1, 5),
    p=st.integers(0, 4),
    d=st.integers(1, 3),
    b=st.booleans(),
)
def test_compiled_evaluation_equals_sympy_substitution(n, c_in, c_out, h, k, s, p, d, b):
    # values beyond 2**63 included: the compiled integer code and SymPy's exact rationals agree
    r = lc.rule("Conv2d")
    values = dict(
        N=n,
        C_in=c_in,
        C_out=c_out,
        H=h + d * (k - 1),
        W=h + d * (k - 1),
        k_h=k,
        k_w=k,
        s_h=s,
        s_w=s,
        p_h=p,
        p_w=p,
        d_h=d,
        d_w=d,
        g=1,
        b=int(b),
    )
    subs = {lc.parse(name): v for name, v in values.items()}
    for convention in ("exact", "macs", "torch", "seed"):
        expr = r.cost(convention)
        assert lc.evaluate(expr, values) == int(expr.xreplace(subs))


def test_a_symbol_outside_the_glossary_is_validated_by_its_assumptions():
    x = sympy.Symbol("x", integer=True, positive=True)
    assert lc.evaluate(2 * x, {x: 4}) == 8
    with pytest.raises(EvaluationError, match="x must be a positive dimension"):
        lc.evaluate(2 * x, {"x": 0})
