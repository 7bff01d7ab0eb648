"""Cost formulas as C and JavaScript functions: exact integer code for tools not in Python.

:func:`to_c` and :func:`to_javascript` print an expression (a rule's, a composed cost's, an
analysis' closed form), or a mapping ``name -> expression``, as functions of those languages.
SymPy's code printers are customised to exact integer arithmetic the way
:mod:`layercost_sym.codegen` prints Python: every rational is brought to one fraction
``num / den`` (:func:`~layercost_sym.codegen.fraction`), ``floor`` and ``ceiling`` become
floor and ceiling divisions that are right for negative numerators too, and the one division by
``den`` comes last, checked exact.  Nothing is ever a float.

(Over 500 lines by design: the two languages' run-time helpers, as the source text every export
carries, sit beside the printers that call them, so that a helper and its callers change
together.)

A generated function checks what :func:`~layercost_sym.evaluate` checks and refuses where it
refuses: each size in its range (:func:`~layercost_sym.codegen.limits`: dimensions positive,
flags 0 or 1), each condition of the expression's domain (a rule's constraints, an analysis'
guards, :mod:`layercost_sym.domain`, and ``domain=`` of your own), then an exact non-negative
integer result.  It takes every size that the expression or its domain names, in name order,
so that every condition is decided (a ``Conv2d``'s ``params`` take ``H`` and ``W`` too: its
kernel must fit the input).

* **C** (C99 with GCC's or Clang's ``__builtin_*_overflow``): ``int NAME(int64_t H, ...,
  int64_t *out, const char **why)``.  Every sum, product and power is checked, so an
  intermediate that leaves int64 is refused, never wrapped.  It returns ``LC_OK`` (0) with the
  value in ``*out``, or an error code (``LC_ERR_SIZE``, ``LC_ERR_DOMAIN``, ``LC_ERR_OVERFLOW``,
  ``LC_ERR_NOT_INTEGER``, ``LC_ERR_NEGATIVE``, ``LC_ERR_UNDEFINED``: a division by zero) with
  ``*why``, unless ``why`` is NULL, set to a message naming what failed.  The helpers sit
  behind an include guard: several exports may be pasted into one file.
* **JavaScript**: ``NAME(sizes)`` over ``BigInt``, exact at any size.  ``sizes`` is an object of
  named sizes (BigInts, safe-integer Numbers or booleans; a square shorthand such as ``k``
  stands for ``k_h`` and ``k_w`` as in ``evaluate``).  It returns a BigInt or throws an
  ``Error`` whose ``name`` is the Python class's (``DomainError``, ``EvaluationError``,
  ``MissingSymbolError``) and whose message names the condition and the sizes.  The text defines
  one ``const NAME`` (a function, or for a mapping an object of functions), and sets
  ``module.exports.NAME`` where there is a CommonJS ``module`` (``require`` in node).

>>> import sympy, layercost_sym as lc
>>> H, s = lc.symbols("H s")
>>> side = lc.with_domain(sympy.floor((H - 1) / s) + 1, lc.Domain((lc.Condition(
...     sympy.Ge(H, s), "H >= s", "the stride fits the input", "example"),)))
>>> code = lc.to_c(side, name="side")
>>> print(code[code.index("int side("):])  # doctest: +NORMALIZE_WHITESPACE
int side(int64_t H, int64_t s, int64_t *lc_out, const char **lc_why)
{
    int lc_e = 0, lc_r;
    if (H < 1) return lc_refuse(lc_why, LC_ERR_SIZE, "H must be a positive dimension");
    if (s < 1) return lc_refuse(lc_why, LC_ERR_SIZE, "s must be a positive dimension");
    /* example: H >= s (the stride fits the input) */
    if ((lc_r = lc_check(&lc_e, lc_sub(&lc_e, H, s) >= 0, lc_why,
        "example: constraint 'H >= s' fails (the stride fits the input)"))) return lc_r;
    return lc_finish(&lc_e, lc_add(&lc_e, lc_floordiv(&lc_e, lc_sub(&lc_e, H, 1), s), 1), 1,
        lc_out, lc_why);
}
<BLANKLINE>
>>> code = lc.to_javascript(side, name="side")
>>> print(code[code.index("  function side("):code.index("  return side;")])
...     # doctest: +NORMALIZE_WHITESPACE
  function side(lc_sizes) {
    const H = lc_size(lc_sizes, "H", 1n, null, null);
    const s = lc_size(lc_sizes, "s", 1n, null, null);
    // example: H >= s (the stride fits the input)
    if (!((H - s) >= 0n)) lc_refuse("example: constraint 'H >= s' fails (the stride fits the
        input)", {H, s});
    return lc_finish((lc_floordiv((H - 1n), s) + 1n), 1n, {H, s});
  }
<BLANKLINE>
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any

import sympy
from sympy.printing.c import C99CodePrinter
from sympy.printing.jscode import JavascriptCodePrinter

from ._version import __version__
from .codegen import _RELATIONS, _Unsupported, fraction, limits
from .domain import Condition, Domain
from .domain import domain as domain_of
from .errors import ExportError
from .glossary import glossary
from .parsing import gcd

__all__ = ["to_c", "to_javascript"]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_INT64 = 2**63
# nodes the printers below print; anything else (a float, sqrt, a symbol's function) is refused
_PRINTED = (
    sympy.Integer,
    sympy.Symbol,
    sympy.Add,
    sympy.Mul,
    sympy.Pow,
    sympy.floor,
    sympy.ceiling,
    sympy.Max,
    sympy.Min,
    gcd,
    sympy.Mod,
    sympy.Piecewise,
    sympy.core.relational.Relational,
    sympy.And,
    sympy.Or,
    sympy.Not,
    sympy.ITE,
    sympy.logic.boolalg.BooleanAtom,
)
# JavaScript's reserved words and the globals a local name must not shadow
_JS_RESERVED = frozenset(
    "arguments await break case catch class const continue debugger default delete do else "
    "enum eval export extends false finally for function if implements import in instanceof "
    "interface let new null package private protected public return static super switch this "
    "throw true try typeof var void while with yield BigInt Error Number Object module".split()
)


def _whole(e: sympy.Basic) -> bool:
    """Whether ``e`` is a polynomial with integer coefficients over whole parts (symbols,
    floors, Max, ...): its single fraction is itself over 1, without SymPy's ``together``,
    which is slow on the large sums of whole models."""
    if e.is_Integer or e.is_Symbol or isinstance(e, sympy.Function | sympy.Max | sympy.Min):
        return True
    if e.is_Add or e.is_Mul:
        return all(_whole(a) for a in e.args)
    if e.is_Pow:
        return bool(e.exp.is_Integer and e.exp > 0) and _whole(e.base)
    return False


def _fraction(e: sympy.Basic) -> tuple[sympy.Expr, sympy.Expr]:
    """:func:`~layercost_sym.codegen.fraction`, quick where ``e`` is whole."""
    return (e, sympy.Integer(1)) if _whole(e) else fraction(e)


class _Exact:
    """What the C and JavaScript printers share: the walk over a cost expression (the nodes
    :mod:`layercost_sym.codegen` prints for Python), each rational as one fraction, and the
    relations decided by the sign of ``lhs - rhs``.  A subclass says how its language writes a
    literal, a sum, a product, a power and each helper call."""

    names: Mapping[sympy.Symbol, str]

    def _print(self, expr: Any, **kwargs: Any) -> str:
        if not isinstance(expr, _PRINTED):
            raise _Unsupported(expr)
        return super()._print(expr, **kwargs)  # type: ignore[misc]

    # -- language-specific ----------------------------------------------------------------------
    def literal(self, value: int) -> str:
        raise NotImplementedError

    def call(self, helper: str, *args: str) -> str:
        raise NotImplementedError

    def add(self, a: str, b: str, subtract: bool) -> str:
        raise NotImplementedError

    def mul(self, a: str, b: str) -> str:
        raise NotImplementedError

    def power(self, base: str, exponent: int) -> str:
        raise NotImplementedError

    def junction(self, op: str, parts: list[str]) -> str:
        return "(" + f" {op} ".join(parts) + ")"

    # -- shared ---------------------------------------------------------------------------------
    def integer(self, e: sympy.Basic) -> str:
        """An integer-valued expression (its single fraction has denominator 1)."""
        num, den = _fraction(e)
        if den != 1:
            raise _Unsupported(e)  # a rational inside max, a branch, a modulus: not printed
        return self._print(num)

    def _print_Integer(self, e: sympy.Integer) -> str:
        return self.literal(int(e))

    _print_Zero = _print_One = _print_NegativeOne = _print_Integer

    def _print_Symbol(self, e: sympy.Symbol) -> str:
        if e not in self.names:
            raise _Unsupported(e)
        return self.names[e]

    def _print_Add(self, e: sympy.Add) -> str:
        out = None
        for term in self._as_ordered_terms(e, order=None):  # type: ignore[attr-defined]
            coeff, _ = term.as_coeff_Mul()
            negative = out is not None and coeff < 0
            code = self._print(-term if negative else term)
            out = code if out is None else self.add(out, code, negative)
        assert out is not None
        return out

    def _print_Mul(self, e: sympy.Mul) -> str:
        parts = [self._print(f) for f in e.as_ordered_factors()]
        out = parts[0]
        for p in parts[1:]:
            out = self.mul(out, p)
        return out

    def _print_Pow(self, e: sympy.Pow) -> str:
        if not (e.exp.is_Integer and e.exp > 0):
            raise _Unsupported(e)
        return self.power(self._print(e.base), int(e.exp))

    def _rounded(self, e: sympy.Basic, helper: str) -> str:
        num, den = _fraction(e.args[0])
        if den == 1:
            return self._print(num)
        return self.call(helper, self._print(num), self._print(den))

    def _print_floor(self, e: sympy.floor) -> str:
        return self._rounded(e, "lc_floordiv")

    def _print_ceiling(self, e: sympy.ceiling) -> str:
        return self._rounded(e, "lc_ceildiv")

    def _extremum(self, e: sympy.Basic, helper: str) -> str:
        parts = [self.integer(a) for a in e.args]
        out = parts[0]
        for p in parts[1:]:
            out = self.call(helper, out, p)
        return out

    def _print_Max(self, e: sympy.Max) -> str:
        return self._extremum(e, "lc_max")

    def _print_Min(self, e: sympy.Min) -> str:
        return self._extremum(e, "lc_min")

    def _print_gcd(self, e: gcd) -> str:
        return self.call("lc_gcd", self.integer(e.args[0]), self.integer(e.args[1]))

    def _print_Mod(self, e: sympy.Mod) -> str:
        return self.call("lc_mod", self.integer(e.args[0]), self.integer(e.args[1]))

    def _print_Piecewise(self, e: sympy.Piecewise) -> str:
        out = None
        for value, cond in reversed(e.args):
            code = self.integer(value)
            if out is None:
                if cond is not sympy.true:
                    raise _Unsupported(e)  # no default branch
                out = code
            else:
                out = f"({self._print(cond)} ? {code} : {out})"
        if out is None:
            raise _Unsupported(e)
        return out

    def _print_Relational(self, e: sympy.core.relational.Relational) -> str:
        # lhs op rhs  <=>  sign(lhs - rhs) op 0, and with lhs - rhs = num / den (den != 0):
        # sign(num) * sign(den) op 0, which needs no division
        op = self.relation(_RELATIONS[type(e)])
        num, den = _fraction(e.lhs - e.rhs)
        if den.is_Integer and den > 0:
            return f"{self._print(num)} {op} {self.literal(0)}"
        sign = self.mul(
            self.call("lc_sign", self._print(num)), self.call("lc_sign", self._print(den))
        )
        return f"{sign} {op} {self.literal(0)}"

    def relation(self, op: str) -> str:
        return op

    def _print_And(self, e: sympy.And) -> str:
        return self.junction("&&", [self._print(a) for a in e.args])

    def _print_Or(self, e: sympy.Or) -> str:
        return self.junction("||", [self._print(a) for a in e.args])

    def _print_Not(self, e: sympy.Not) -> str:
        return f"!({self._print(e.args[0])})"

    def _print_ITE(self, e: sympy.ITE) -> str:
        return "({} ? {} : {})".format(*(self._print(a) for a in e.args))


class _CPrinter(_Exact, C99CodePrinter):
    """C over ``int64_t``: every operation that can overflow through a checked helper, which
    records the failure in ``lc_e`` (the caller refuses once the value is computed)."""

    def __init__(self, names: Mapping[sympy.Symbol, str]) -> None:
        super().__init__()
        self.names = names

    def literal(self, value: int) -> str:
        if not -_INT64 < value < _INT64:
            raise ExportError(f"the constant {value} does not fit in int64")
        return str(value) if value >= 0 else f"({value})"

    def call(self, helper: str, *args: str) -> str:
        if helper in ("lc_max", "lc_min", "lc_sign"):  # cannot overflow
            return f"{helper}({', '.join(args)})"
        return f"{helper}(&lc_e, {', '.join(args)})"

    def add(self, a: str, b: str, subtract: bool) -> str:
        return self.call("lc_sub" if subtract else "lc_add", a, b)

    def mul(self, a: str, b: str) -> str:
        return self.call("lc_mul", a, b)

    def power(self, base: str, exponent: int) -> str:
        return self.call("lc_pow", base, str(exponent))

    def _print_BooleanTrue(self, e: Any) -> str:
        return "1"

    def _print_BooleanFalse(self, e: Any) -> str:
        return "0"


class _JSPrinter(_Exact, JavascriptCodePrinter):
    """JavaScript over ``BigInt``: exact, so only floor, ceiling, modulus and gcd need helpers
    (BigInt's ``/`` and ``%`` truncate toward zero, Python's floor)."""

    def __init__(self, names: Mapping[sympy.Symbol, str]) -> None:
        super().__init__()
        self.names = names

    def literal(self, value: int) -> str:
        return f"{value}n" if value >= 0 else f"({value}n)"

    def call(self, helper: str, *args: str) -> str:
        return f"{helper}({', '.join(args)})"

    def add(self, a: str, b: str, subtract: bool) -> str:
        return f"{a} {'-' if subtract else '+'} {b}"

    def mul(self, a: str, b: str) -> str:
        return f"{a}*{b}"

    def power(self, base: str, exponent: int) -> str:
        return f"{base}**{exponent}n" if _IDENTIFIER.match(base) else f"({base})**{exponent}n"

    def relation(self, op: str) -> str:
        return {"==": "===", "!=": "!=="}.get(op, op)

    def _print_Add(self, e: sympy.Add) -> str:
        return f"({super()._print_Add(e)})"

    def _print_BooleanTrue(self, e: Any) -> str:
        return "true"

    def _print_BooleanFalse(self, e: Any) -> str:
        return "false"


# -- the helpers each language's functions call ------------------------------------------------

_C_HELPERS = r"""#include <stdint.h>
#include <stddef.h>
#ifndef LAYERCOST_SYM_HELPERS
#define LAYERCOST_SYM_HELPERS
/* What a generated function returns: LC_OK with the value in *out, or why it refused. */
enum { LC_OK, LC_ERR_SIZE, LC_ERR_DOMAIN, LC_ERR_OVERFLOW, LC_ERR_NOT_INTEGER, LC_ERR_NEGATIVE,
       LC_ERR_UNDEFINED };
static const char *const lc_messages[] = {"", "", "", "an intermediate value overflows int64",
    "the result is not an integer", "the result is negative", "division by zero"};
/* Every operation that can overflow records its failure in *e (the first one wins); the
   function refuses once its value is computed, before using it. */
static inline void lc_fail(int *e, int code) { if (!*e) *e = code; }
static inline int64_t lc_add(int *e, int64_t a, int64_t b)
{ int64_t r; if (__builtin_add_overflow(a, b, &r)) lc_fail(e, LC_ERR_OVERFLOW); return r; }
static inline int64_t lc_sub(int *e, int64_t a, int64_t b)
{ int64_t r; if (__builtin_sub_overflow(a, b, &r)) lc_fail(e, LC_ERR_OVERFLOW); return r; }
static inline int64_t lc_mul(int *e, int64_t a, int64_t b)
{ int64_t r; if (__builtin_mul_overflow(a, b, &r)) lc_fail(e, LC_ERR_OVERFLOW); return r; }
static inline int64_t lc_pow(int *e, int64_t a, int n)
{ int64_t r = 1; while (n-- > 0) r = lc_mul(e, r, a); return r; }
/* C's / truncates toward zero: floor and ceiling division step past it when inexact */
static inline int64_t lc_floordiv(int *e, int64_t a, int64_t b)
{
    if (b == 0) { lc_fail(e, LC_ERR_UNDEFINED); return 0; }
    if (a == INT64_MIN && b == -1) { lc_fail(e, LC_ERR_OVERFLOW); return 0; }
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}
static inline int64_t lc_ceildiv(int *e, int64_t a, int64_t b)
{
    if (b == 0) { lc_fail(e, LC_ERR_UNDEFINED); return 0; }
    if (a == INT64_MIN && b == -1) { lc_fail(e, LC_ERR_OVERFLOW); return 0; }
    return a / b + (a % b != 0 && (a < 0) == (b < 0));
}
/* Python's (and SymPy's) modulus: the sign of the divisor */
static inline int64_t lc_mod(int *e, int64_t a, int64_t b)
{
    if (b == 0) { lc_fail(e, LC_ERR_UNDEFINED); return 0; }
    if (b == -1) return 0;
    int64_t r = a % b;
    return (r != 0 && (r < 0) != (b < 0)) ? r + b : r;
}
static inline int64_t lc_gcd(int *e, int64_t a, int64_t b)
{
    if (a == INT64_MIN || b == INT64_MIN) { lc_fail(e, LC_ERR_OVERFLOW); return 0; }
    a = a < 0 ? -a : a; b = b < 0 ? -b : b;
    while (b) { int64_t t = a % b; a = b; b = t; }
    return a;
}
static inline int64_t lc_max(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t lc_min(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t lc_sign(int64_t a) { return (a > 0) - (a < 0); }
static inline int lc_refuse(const char **why, int code, const char *message)
{ if (why) *why = message; return code; }
static inline int lc_check(int *e, int holds, const char **why, const char *message)
{
    if (*e) return lc_refuse(why, *e, lc_messages[*e]);
    return holds ? LC_OK : lc_refuse(why, LC_ERR_DOMAIN, message);
}
static inline int lc_finish(int *e, int64_t num, int64_t den, int64_t *out, const char **why)
{
    if (*e) return lc_refuse(why, *e, lc_messages[*e]);
    if (den == 0) return lc_refuse(why, LC_ERR_UNDEFINED, lc_messages[LC_ERR_UNDEFINED]);
    if (den < 0) {
        if (num == INT64_MIN || den == INT64_MIN)
            return lc_refuse(why, LC_ERR_OVERFLOW, lc_messages[LC_ERR_OVERFLOW]);
        num = -num; den = -den;
    }
    if (num % den != 0) return lc_refuse(why, LC_ERR_NOT_INTEGER, lc_messages[LC_ERR_NOT_INTEGER]);
    if (num < 0) return lc_refuse(why, LC_ERR_NEGATIVE, lc_messages[LC_ERR_NEGATIVE]);
    *out = num / den;
    return LC_OK;
}
#endif
"""

_JS_HELPERS = r"""  function lc_error(name, message) {
    const e = new Error(message);
    e.name = name;
    return e;
  }
  function lc_at(values) {
    return Object.entries(values).map(([k, v]) => `${k}=${v}`).join(", ");
  }
  function lc_has(sizes, name) {
    return name !== null && Object.prototype.hasOwnProperty.call(sizes, name);
  }
  // a size as a BigInt, in its range (a square shorthand such as k stands for k_h and k_w)
  function lc_size(sizes, name, low, high, square) {
    if (sizes === null || typeof sizes !== "object") {
      throw lc_error("EvaluationError", "sizes must be an object of named sizes");
    }
    if (!lc_has(sizes, name) && !lc_has(sizes, square)) {
      throw lc_error("MissingSymbolError", `missing value for symbol '${name}'`);
    }
    let v = lc_has(sizes, name) ? sizes[name] : sizes[square];
    if (typeof v === "boolean") v = v ? 1n : 0n;
    else if (typeof v === "number" && Number.isSafeInteger(v)) v = BigInt(v);
    else if (typeof v !== "bigint") {
      throw lc_error("EvaluationError",
        `${name} must be an integer (a BigInt, or a Number up to 2**53), got ${String(v)}`);
    }
    if (v < low) {
      const what = low > 0n ? "a positive dimension" : "non-negative";
      throw lc_error("EvaluationError", `${name} must be ${what}, got ${v}`);
    }
    if (high !== null && v > high) {
      throw lc_error("EvaluationError", `${name} is a flag and must be 0 or 1, got ${v}`);
    }
    return v;
  }
  function lc_refuse(message, values) {
    throw lc_error("DomainError", `${message} at ${lc_at(values)}`);
  }
  function lc_nonzero(b) {
    if (b === 0n) throw lc_error("EvaluationError", "division by zero");
    return b;
  }
  // BigInt's / truncates toward zero: floor and ceiling division step past it when inexact
  function lc_floordiv(a, b) {
    const q = a / lc_nonzero(b);
    return (a % b !== 0n && (a < 0n) !== (b < 0n)) ? q - 1n : q;
  }
  function lc_ceildiv(a, b) {
    const q = a / lc_nonzero(b);
    return (a % b !== 0n && (a < 0n) === (b < 0n)) ? q + 1n : q;
  }
  function lc_mod(a, b) {  // Python's (and SymPy's) modulus: the sign of the divisor
    const r = a % lc_nonzero(b);
    return (r !== 0n && (r < 0n) !== (b < 0n)) ? r + b : r;
  }
  function lc_gcd(a, b) {
    a = a < 0n ? -a : a;
    b = b < 0n ? -b : b;
    while (b !== 0n) [a, b] = [b, a % b];
    return a;
  }
  function lc_max(a, b) { return a > b ? a : b; }
  function lc_min(a, b) { return a < b ? a : b; }
  function lc_sign(a) { return a > 0n ? 1n : a < 0n ? -1n : 0n; }
  function lc_finish(num, den, values) {
    if (lc_nonzero(den) < 0n) { num = -num; den = -den; }
    if (num % den !== 0n) {
      throw lc_error("EvaluationError",
        `result is not an integer: ${num}/${den} at ${lc_at(values)}`);
    }
    if (num < 0n) {
      throw lc_error("EvaluationError", `result is negative: ${num / den} at ${lc_at(values)}`);
    }
    return num / den;
  }
"""


# -- assembling the functions ------------------------------------------------------------------


def _integral(e: sympy.Basic) -> sympy.Basic:
    """``e`` with every Max, Min, Mod and Piecewise over fractions written as one over integers
    divided by their denominators' product ``D`` (``max(a/b, c/d) = max(a*d, c*b) / (b*d)``
    for ``b*d > 0``), so that every printed operation but the last division is on integers.
    Where SymPy cannot prove ``D`` positive (nonzero for a Piecewise) the node stays, and the
    printer refuses it."""
    if e.is_Atom or not e.args:
        return e
    args = tuple(_integral(a) for a in e.args)
    if args != e.args:
        e = e.func(*args)
    pieces = isinstance(e, sympy.Piecewise)
    if not isinstance(e, sympy.Max | sympy.Min | sympy.Mod) and not pieces:
        return e
    parts = [_fraction(a) for a in ([v for v, _ in e.args] if pieces else e.args)]
    dens = [den for _, den in parts]
    if all(den == 1 for den in dens):
        return e
    common = sympy.Mul(*dens)
    if not (common.is_nonzero if pieces else common.is_positive):
        return e
    scaled = [num * sympy.Mul(*dens[:i], *dens[i + 1 :]) for i, (num, _) in enumerate(parts)]
    if pieces:
        conds = [c for _, c in e.args]
        return sympy.Piecewise(*zip(scaled, conds, strict=True)) / common
    return e.func(*scaled) / common


@functools.lru_cache(maxsize=1024)
def _integral_cached(e: sympy.Basic) -> sympy.Basic:
    # a rule's variants share formulas, and a mapping is often printed in both languages
    return _integral(e)


@functools.lru_cache(maxsize=1024)
def _fraction_cached(e: sympy.Basic) -> tuple[sympy.Expr, sympy.Expr]:
    return _fraction(_integral_cached(e))


class _Entry:
    """One function to print: its expression, the conditions it checks and its sizes."""

    def __init__(self, key: str | None, expr: Any, extra: Domain | None) -> None:
        if isinstance(expr, str):
            from .parsing import parse

            expr = parse(expr)
        elif isinstance(expr, int) and not isinstance(expr, bool):
            expr = sympy.Integer(expr)
        if not isinstance(expr, sympy.Expr):
            raise ExportError(
                f"{key or 'the expression'}: cannot export an object of type "
                f"{type(expr).__name__} (give a SymPy expression, expression text, an int, or "
                "a mapping of names to them)"
            )
        self.key, self.expr = key, expr
        conditions = domain_of(expr) & (extra or Domain())
        self.conditions = [c for c in conditions.conditions if c.condition is not sympy.true]
        self.held = [_integral_cached(c.condition) for c in self.conditions]
        free = set(expr.free_symbols).union(*(c.condition.free_symbols for c in self.conditions))
        self.symbols = sorted(free, key=str)
        names = [s.name for s in self.symbols]
        if len(set(names)) < len(names):
            raise ExportError(f"{key or 'the expression'}: two symbols share a name in {names}")


def _entries(expr: Any, domain: Domain | None) -> list[_Entry]:
    if isinstance(expr, Mapping):
        if not expr:
            raise ExportError("nothing to export: the mapping is empty")
        return [_Entry(str(key), value, domain) for key, value in expr.items()]
    return [_Entry(None, expr, domain)]


def _checked_name(name: str, what: str, reserved: frozenset[str] | set[str]) -> str:
    if not _IDENTIFIER.match(name) or name in reserved or name.startswith("lc_"):
        raise ExportError(
            f"{what} {name!r} cannot be a name in the generated code (an identifier that is no "
            "reserved word and does not start with 'lc_')"
        )
    return name


def _message(c: Condition) -> str:
    """What a generated function says when ``c`` fails (:meth:`Condition.message` without the
    values, which the C cannot format)."""
    if c.kind == "guard":
        text = c.display() if c.display is not None else c.text
        return (
            f"input outside the range where the closed form holds: guard {text} fails ({c.reason})"
        )
    return f"{c.origin}: constraint {c.text!r} fails ({c.reason})"


def _comment(c: Condition) -> str:
    text = c.display() if c.kind == "guard" and c.display is not None else c.text
    return f"{c.origin}: {text} ({c.reason})"


def _range_message(name: str, low: int, high: int | None) -> str:
    if high is not None:
        return f"{name} is a flag and must be 0 or 1"
    return f"{name} must be {'a positive dimension' if low else 'non-negative'}"


def _c_string(text: str) -> str:
    """A C string literal: ASCII as is (quotes, backslashes and '?' escaped), every other byte
    of the UTF-8 as a 3-digit octal escape."""
    out = []
    for byte in text.encode():
        char = chr(byte)
        if char in '"\\?':
            out.append("\\" + char)
        elif 32 <= byte < 127:
            out.append(char)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def _printed(printer: _Exact, what: str, expr: sympy.Basic) -> str:
    try:
        return printer._print(expr)
    except _Unsupported as error:
        node = error.args[0] if error.args else "?"
        raise ExportError(
            f"{what}: cannot write {node} ({type(node).__name__}) as exact integer code (printed: "
            "integers, sums, products, whole powers, floor, ceiling, Max, Min, gcd, Mod, "
            "Piecewise with a default, relations and their and/or/not)"
        ) from None


def _c_function(entry: _Entry, name: str) -> str:
    names = {
        s: _checked_name(s.name, "symbol", C99CodePrinter.reserved_words) for s in entry.symbols
    }
    printer = _CPrinter(names)
    params = "".join(f"int64_t {names[s]}, " for s in entry.symbols)
    lines = [f"int {name}({params}int64_t *lc_out, const char **lc_why)", "{"]
    lines.append("    int lc_e = 0, lc_r;" if entry.conditions else "    int lc_e = 0;")
    for s in entry.symbols:
        low, high = limits(s)
        test = f"{names[s]} < {low}" + (f" || {names[s]} > {high}" if high is not None else "")
        message = _c_string(_range_message(s.name, low, high))
        lines.append(f"    if ({test}) return lc_refuse(lc_why, LC_ERR_SIZE, {message});")
    for c, condition in zip(entry.conditions, entry.held, strict=True):
        held = _printed(printer, name, condition)
        lines.append(f"    /* {_comment(c).replace('*/', '* /')} */")
        lines.append(
            f"    if ((lc_r = lc_check(&lc_e, {held}, lc_why, {_c_string(_message(c))}))) "
            "return lc_r;"
        )
    num, den = _fraction_cached(entry.expr)
    num_code = _printed(printer, name, num)
    den_code = _printed(printer, name, den)
    lines.append(f"    return lc_finish(&lc_e, {num_code}, {den_code}, lc_out, lc_why);")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _js_function(entry: _Entry, name: str) -> str:
    names = {s: _checked_name(s.name, "symbol", _JS_RESERVED) for s in entry.symbols}
    printer = _JSPrinter(names)
    lines = [f"  function {name}(lc_sizes) {{"]
    for s in entry.symbols:
        low, high = limits(s)
        square = glossary().square_of(s.name)
        lines.append(
            f"    const {names[s]} = lc_size(lc_sizes, {json.dumps(s.name)}, {low}n, "
            f"{'null' if high is None else f'{high}n'}, "
            f"{'null' if square is None else json.dumps(square)});"
        )
    for c, condition in zip(entry.conditions, entry.held, strict=True):
        held = _printed(printer, name, condition)
        shown = ", ".join(names[s] for s in sorted(c.condition.free_symbols, key=str))
        lines.append(f"    // {_comment(c)}".replace("\n", " "))
        lines.append(f"    if (!({held})) lc_refuse({json.dumps(_message(c))}, {{{shown}}});")
    num, den = _fraction_cached(entry.expr)
    num_code = _printed(printer, name, num)
    den_code = _printed(printer, name, den)
    every = ", ".join(names[s] for s in entry.symbols)
    lines.append(f"    return lc_finish({num_code}, {den_code}, {{{every}}});")
    lines.append("  }")
    return "\n".join(lines) + "\n"


def to_c(expr: Any, name: str = "cost", *, domain: Domain | None = None) -> str:
    """C source for ``expr`` (an expression, expression text, or a mapping ``key ->
    expression``): one function ``name`` (a mapping: ``name_key`` for each key) over checked
    ``int64_t``, preceded by the helpers it calls (see the module's docstring for the
    signature and the error codes).  ``domain`` adds conditions to the ones ``expr`` carries, as
    in :func:`~layercost_sym.evaluate`; raises :class:`~layercost_sym.ExportError` for what it
    cannot print."""
    _checked_name(name, "function name", C99CodePrinter.reserved_words)
    parts = [f"/* Generated by layercost_sym {__version__}: exact integer cost formulas. */\n"]
    parts.append(_C_HELPERS)
    for entry in _entries(expr, domain):
        fn = name if entry.key is None else f"{name}_{entry.key}"
        _checked_name(fn, "function name", C99CodePrinter.reserved_words)
        parts.append("\n" + _c_function(entry, fn))
    return "".join(parts)


def to_javascript(expr: Any, name: str = "cost", *, domain: Domain | None = None) -> str:
    """JavaScript source for ``expr`` (an expression, expression text, or a mapping ``key ->
    expression``): ``const name``, a function of an object of named sizes returning a BigInt (a
    mapping: an object of such functions, by key), with the helpers it calls in its own scope
    (see the module's docstring).  ``domain`` adds conditions to the ones ``expr`` carries, as
    in :func:`~layercost_sym.evaluate`; raises :class:`~layercost_sym.ExportError` for what it
    cannot print."""
    _checked_name(name, "function name", _JS_RESERVED)
    entries = _entries(expr, domain)
    parts = [
        f"// Generated by layercost_sym {__version__}: exact integer cost formulas (BigInt).\n",
        f'const {name} = (() => {{\n  "use strict";\n',
        _JS_HELPERS,
    ]
    exported = []
    for i, entry in enumerate(entries):
        if entry.key is None:
            fn = name
        elif _IDENTIFIER.match(entry.key) and entry.key not in _JS_RESERVED:
            fn = f"{name}_{entry.key}"
        else:
            fn = f"lc_f{i}"
        parts.append(_js_function(entry, fn))
        exported.append(f"{json.dumps(entry.key)}: {fn}")
    result = name if entries[0].key is None else "{" + ", ".join(exported) + "}"
    parts.append(f"  return {result};\n}})();\n")
    parts.append(
        'if (typeof module === "object" && module !== null && module.exports) '
        f"module.exports.{name} = {name};\n"
    )
    return "".join(parts)
