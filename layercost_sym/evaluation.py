"""Exact evaluation of cost expressions, compiled once per expression and cached.

An expression is compiled into Python code over plain ``int``: every rational is brought to a
single fraction ``num / den`` at compile time, ``floor`` becomes ``//``, ``ceiling`` a negated
``//``, so evaluation needs no floats and no SymPy, and Python's integers cannot overflow.
Numpy arrays run the same code vectorised: in ``int64`` when a bound computed from the inputs'
largest magnitudes proves that no intermediate value can overflow, else on exact Python ints.

(Over 500 lines by design: one pipeline, from a value's check through the domain's conditions
to exact quotients over scalars and arrays; the code printers are :mod:`layercost_sym.codegen`.)

>>> import layercost_sym as lc
>>> lc.evaluate("floor((H + 2*p - 3) / s) + 1", {"H": 224, "p": 1, "s": 2})
112
>>> lc.evaluate("N*C_in*H*W", {"N": 2**40, "C_in": 2**20, "H": 2**10, "W": 2**10})
1208925819614629174706176
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeAlias, overload

import sympy

from .codegen import _COMPILED, Compiled, compile_expression, limits
from .domain import Condition, Domain
from .domain import domain as domain_of
from .errors import DomainError, EvaluationError, MissingSymbolError
from .glossary import glossary
from .parsing import parse

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = [
    "check_condition",
    "check_domain",
    "evaluate",
    "invalid_points",
    "least_integer",
    "sweep",
]

# what evaluate takes: a size or option (an int; a bool for a flag), a numpy integer, or a numpy
# integer array of them (evaluated point by point, broadcast)
Value = Any
# an expression: SymPy, expression text (parsed by the allow-list parser) or an int
Expression: TypeAlias = "sympy.Basic | str | int"
_INT64_SAFE = 2**62  # an int64 bound with headroom for the final sign and divisibility checks


@lru_cache(maxsize=1024)
def _parse_cached(text: str) -> sympy.Expr:
    return parse(text)


# -- gathering and validating values ---------------------------------------------------------------


def _lookup(shapes: Mapping[Any, Value], name: str, symbol: sympy.Symbol):
    if name in shapes:
        return shapes[name]
    if symbol in shapes:
        return shapes[symbol]
    square = glossary().square_of(name)
    if square is not None and square in shapes:
        return shapes[square]
    raise KeyError(name)


def _as_integer(name: str, value: Any) -> tuple[Any, bool]:
    """``(int, False)`` or ``(integer ndarray, True)``; anything else is an error."""
    if isinstance(value, bool | int | sympy.Integer):
        return int(value), False
    if type(value).__module__ == "numpy":
        import numpy as np

        if isinstance(value, np.ndarray):
            if value.dtype.kind in "biu":
                return value.astype(np.int64) if value.dtype.kind == "b" else value, True
            if value.dtype == object and all(isinstance(v, int) for v in value.flat):
                return value, True
            raise EvaluationError(f"{name}: array of dtype {value.dtype} is not integer")
        if isinstance(value, np.integer | np.bool_):
            return int(value), False
    raise EvaluationError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")


def _check_range(name: str, value: Any, low: int, high: int | None, is_array: bool) -> None:
    if not is_array:
        if value < low:
            what = "a positive dimension" if low else "non-negative"
            raise EvaluationError(f"{name} must be {what}, got {value}")
        if high is not None and value > high:
            raise EvaluationError(f"{name} is a flag and must be 0 or 1, got {value}")
        return
    if not value.size:
        return
    if value.min() < low or (high is not None and value.max() > high):
        bad = (value < low) | ((value > high) if high is not None else False)
        limit = f">= {low}" + (f" and <= {high}" if high is not None else "")
        raise EvaluationError(f"{name} must be {limit}; got {value[bad].flat[0]}")


def _gather(compiled: Compiled, shapes: Mapping[Any, Value]) -> tuple[list, bool]:
    """Values in the compiled function's order, validated; and whether any is an array."""
    values, missing, any_array = [], [], False
    for name, symbol, low, high in zip(
        compiled.names, compiled.symbols, compiled.lows, compiled.highs, strict=True
    ):
        try:
            value = _lookup(shapes, name, symbol)
        except KeyError:
            missing.append(name)
            continue
        value, is_array = _as_integer(name, value)
        _check_range(name, value, low, high, is_array)
        any_array = any_array or is_array
        values.append(value)
    if missing:
        raise MissingSymbolError(
            f"missing value for symbol{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(m) for m in missing)} (the expression uses "
            f"{', '.join(compiled.names)})"
        )
    return values, any_array


def _describe(compiled: Compiled, values: list) -> str:
    return ", ".join(f"{n}={v}" for n, v in zip(compiled.names, values, strict=True))


def _finish(num, den, compiled: Compiled, values: list) -> int:
    if den < 0:
        num, den = -num, -den
    q, r = divmod(num, den)
    if r:
        raise EvaluationError(
            f"result is not an integer: {Fraction(num, den)} at {_describe(compiled, values)}"
        )
    if q < 0:
        raise EvaluationError(f"result is negative: {q} at {_describe(compiled, values)}")
    return int(q)


@overload
def evaluate(
    expr: Expression, values: Mapping[str | sympy.Symbol, int], *, domain: Domain | None = None
) -> int: ...


@overload
def evaluate(
    expr: Expression, values: Mapping[str | sympy.Symbol, Value], *, domain: Domain | None = None
) -> int | NDArray[Any]: ...


def evaluate(
    expr: Expression, values: Mapping[str | sympy.Symbol, Value], *, domain: Domain | None = None
) -> int | NDArray[Any]:
    """Evaluate ``expr`` exactly at ``values``, inside the domain it carries.

    ``expr`` is a SymPy expression or expression text (parsed by the allow-list parser).
    ``values`` maps symbol names (or Symbols) to the sizes and options the expression is
    written in: dimensions, kernel sides, strides, groups, ints all, and flags (a bool or 0/1);
    a square shorthand such as ``k`` stands for the per-axis symbols ``k_h, k_w`` it covers.
    Returns a Python ``int``, or, when any value is a numpy integer array, a numpy array of
    the broadcast shape: ``int64`` where every value fits, else exact Python ints in an
    ``object`` array.

    What is checked:

    * every expression: each symbol has a value (:class:`~layercost_sym.MissingSymbolError`
      names the missing ones), dimensions are positive, paddings non-negative, flags 0 or 1,
      and the result is an exact non-negative integer
      (:class:`~layercost_sym.EvaluationError`);
    * an expression the library handed out (a rule's ``params``, ``cost(...)`` and
      ``output_shape``, a composed cost, an analysis' closed form) also carries its domain
      (:mod:`layercost_sym.domain`): the rule's constraints, the analysis' guards.  A condition
      the given values decide false (all its sizes given, or the others unable to save it)
      raises :class:`~layercost_sym.DomainError` naming it and torch's reason; with arrays,
      the first point that fails is named;
    * ``domain`` adds conditions of your own (``lc.domain(e)`` of an expression ``e`` you built
      this one from).  Expression text and expressions you build yourself carry none.

    >>> import layercost_sym as lc
    >>> lc.evaluate(lc.rule("Linear").params, {"C_in": 3, "C_out": 4, "b": True})
    16
    >>> lc.evaluate("C_in * C_out", {"C_in": 3})
    Traceback (most recent call last):
    ...
    layercost_sym.errors.MissingSymbolError: missing value for symbol 'C_out' (the expression ...)
    >>> lc.evaluate(lc.rule("Conv2d").params, {"C_in": 3, "C_out": 4, "k": 3, "g": 2, "b": 1})
    Traceback (most recent call last):
    ...
    layercost_sym.errors.DomainError: Conv2d: constraint 'C_in % g == 0 and C_out % g == 0' fails
    (groups must divide in_channels and out_channels) at C_in=3, C_out=4, g=2
    """
    if type(expr) is str:
        expr = _parse_cached(expr)
    elif isinstance(expr, int) and not isinstance(expr, bool):
        expr = sympy.Integer(expr)
    elif not isinstance(expr, sympy.Basic):
        raise EvaluationError(f"cannot evaluate an object of type {type(expr).__name__}")
    conditions = domain_of(expr)
    if domain is not None:
        conditions = conditions & domain
    compiled = _COMPILED.get(expr) or compile_expression(expr)
    result = (compiled.fast_within(conditions) if conditions else compiled.fast)(values)
    if result is not None:
        num, den = result
        if den == 1:
            if num >= 0:
                return num
        elif den > 0:
            q, r = divmod(num, den)
            if not r and q >= 0:
                return q
    given, any_array = _gather(compiled, values)
    if any_array and conditions:
        within = _evaluate_array_within(compiled, conditions, values)
        if within is not None:
            return within
    if conditions:
        check_domain(conditions, values)
    if any_array:
        return _evaluate_array(compiled, given)
    num, den = compiled.scalar(*given)
    if den == 1 and num >= 0:
        return num
    return _finish(num, den, compiled, given)


# -- domains ---------------------------------------------------------------------------------------


def _condition_values(compiled: Compiled, shapes: Mapping[Any, Value]) -> tuple[list, bool, bool]:
    """The given values of a condition's symbols (validated; ``None`` where not given),
    whether any is an array, and whether all are given."""
    values: list = []
    any_array, complete = False, True
    for name, symbol, low, high in zip(
        compiled.names, compiled.symbols, compiled.lows, compiled.highs, strict=True
    ):
        try:
            value = _lookup(shapes, name, symbol)
        except KeyError:
            values.append(None)
            complete = False
            continue
        value, is_array = _as_integer(name, value)
        _check_range(name, value, low, high, is_array)
        any_array = any_array or is_array
        values.append(value)
    return values, any_array, complete


@lru_cache(maxsize=4096)
def _refuted(condition: sympy.Basic, given: tuple[tuple[sympy.Symbol, int], ...]) -> bool:
    """Whether the given values make ``condition`` false whatever the sizes not given are
    (SymPy decides it from the symbols' assumptions: positive integers, flags)."""
    decided = condition.xreplace({s: sympy.Integer(v) for s, v in given})
    return decided is sympy.false or decided == sympy.false


def _failures(condition: Condition, shapes: Mapping[Any, Value]):
    """``None`` (holds, or undecided) or the failing points: True for scalars, else a boolean
    array of the broadcast shape marking the points where the condition fails.

    A condition some of whose sizes are not given fails where the given ones make it false for
    every value of the others (``Conv2d.same`` with ``k_w = 3`` and ``W = 1``: its reflect
    padding ``d_w`` cannot be below 1); otherwise it is undecided and not checked."""
    compiled = compile_expression(condition.condition, True)
    values, any_array, complete = _condition_values(compiled, shapes)
    if not complete:
        return _refuted_points(compiled, values, any_array)
    if not any_array:
        return None if compiled.scalar(*values) else True
    import numpy as np

    arrays = np.broadcast_arrays(*[np.asarray(v) for v in values])
    held = compiled.vector(*_vector_arguments(compiled, values, arrays))
    if held is None:  # does not vectorise: one scalar check per point
        held = np.empty(arrays[0].shape, dtype=bool)
        for index in np.ndindex(held.shape):
            held[index] = compiled.scalar(*(int(a[index]) for a in arrays))
    failed = ~np.broadcast_to(np.asarray(held, dtype=bool), arrays[0].shape)
    return failed if failed.any() else None


def _refuted_points(compiled: Compiled, values: list, any_array: bool):
    """:func:`_failures` for a condition with sizes not given: SymPy decides each distinct
    combination of the given values."""
    known = [(s, v) for s, v in zip(compiled.symbols, values, strict=True) if v is not None]
    if not known:
        return None
    if not any_array:
        return True if _refuted(compiled.expr, tuple(known)) else None
    import numpy as np

    columns = np.broadcast_arrays(*[np.asarray(v) for _, v in known])
    stacked = np.stack([c.reshape(-1) for c in columns], axis=1)
    if stacked.dtype == object:  # np.unique has no object rows: distinct tuples by hand
        index: dict[tuple, int] = {}
        inverse = np.array([index.setdefault(tuple(r), len(index)) for r in stacked.tolist()])
        combos = list(index)
    else:
        unique, inverse = np.unique(stacked, axis=0, return_inverse=True)
        combos = unique.tolist()
    refuted = np.array(
        [
            _refuted(
                compiled.expr, tuple((s, int(v)) for (s, _), v in zip(known, row, strict=True))
            )
            for row in combos
        ],
        dtype=bool,
    )
    failed = refuted[inverse.reshape(-1)].reshape(columns[0].shape)
    return failed if failed.any() else None


def _point(shapes: Mapping[Any, Value], index: tuple[int, ...] | None) -> dict[str, int]:
    """``{name: int}`` of every given size (at ``index`` of the broadcast grid for arrays); a
    square shorthand (``k``) also gives the per-axis names it stands for."""
    grid = _grid_shape(shapes) if index is not None else ()
    point: dict[str, int] = {}
    for key, value in shapes.items():
        name = key.name if isinstance(key, sympy.Symbol) else str(key)
        if index is not None and type(value).__module__ == "numpy" and hasattr(value, "shape"):
            import numpy as np

            value = np.broadcast_to(value, grid)[index]
        try:
            point[name] = int(value)
        except (TypeError, ValueError):
            continue
        info = glossary().info.get(name)
        for axis in info.square if info is not None else ():
            point.setdefault(axis, point[name])
    return point


def _grid_shape(shapes: Mapping[Any, Value]) -> tuple[int, ...]:
    import numpy as np

    arrays = [v for v in shapes.values() if isinstance(v, np.ndarray)]
    return tuple(np.broadcast_shapes(*(a.shape for a in arrays))) if arrays else ()


def check_domain(domain: Domain, shapes: Mapping[Any, Value]) -> None:
    """Raise :class:`DomainError` for the first condition of ``domain`` that ``shapes`` violate
    (with arrays: at the first point, in C order, where it fails)."""
    for condition in domain.conditions:
        failed = _failures(condition, shapes)
        if failed is None:
            continue
        index = None
        if failed is not True:
            import numpy as np

            index = tuple(int(i) for i in np.argwhere(failed)[0])
        raise DomainError(condition.message(_point(shapes, index)))


def invalid_points(domain: Domain, shapes: Mapping[Any, Value]):
    """A boolean array over the broadcast grid of ``shapes``: True where a decidable condition
    of ``domain`` fails (an all-False array where none does)."""
    import numpy as np

    invalid = np.zeros(_grid_shape(shapes), dtype=bool)
    for condition in domain.conditions:
        failed = _failures(condition, shapes)
        if failed is not None:
            invalid = invalid | failed
    return invalid


def _vector_arguments(compiled: Compiled, values: list, arrays: Sequence[Any]) -> list:
    """The broadcast ``arrays`` as int64 when a bound on every intermediate value of
    ``compiled`` at the inputs' largest magnitudes proves int64 cannot overflow, else as exact
    Python ints in object arrays."""
    import numpy as np

    # values are validated non-negative: their maxima are their largest magnitudes
    maxima = [
        int(v.max())
        if isinstance(v, np.ndarray) and v.size
        else (0 if isinstance(v, np.ndarray) else v)
        for v in values
    ]
    bound = compiled.bound(*maxima)
    use_int64 = bound is not None and bound < _INT64_SAFE and all(a.dtype != object for a in arrays)
    if use_int64:
        return [a.astype(np.int64, copy=False) for a in arrays]
    return [a.astype(object) for a in arrays]


def _evaluate_array(compiled: Compiled, values: list):
    import numpy as np

    arrays = np.broadcast_arrays(*[np.asarray(v) for v in values])
    args = _vector_arguments(compiled, values, arrays)
    return _quotients(compiled, compiled.vector(*args), arrays, args)


def _evaluate_array_within(compiled: Compiled, domain: Domain, shapes: Mapping[Any, Value]):
    """Arrays evaluated with their domain in one generated function (shared terms computed
    once); None where that does not apply (a condition's size not given, code that does not
    print), for the caller's general path."""
    import numpy as np

    fused = compiled.vector_within(domain)
    if fused is None:
        return None
    symbols, function = fused
    values = []
    for symbol in symbols:
        try:
            value = _lookup(shapes, symbol.name, symbol)
        except KeyError:
            return None
        values.append(_as_integer(symbol.name, value)[0])
    for symbol, value in zip(symbols, values, strict=True):
        _check_range(symbol.name, value, *limits(symbol), isinstance(value, np.ndarray))
    arrays = np.broadcast_arrays(*[np.asarray(v) for v in values])
    position = {s: i for i, s in enumerate(symbols)}
    parts = [compiled, *(compile_expression(c.condition, True) for c in domain.conditions)]
    maxima = [
        int(v.max())
        if isinstance(v, np.ndarray) and v.size
        else (0 if isinstance(v, np.ndarray) else v)
        for v in values
    ]
    bounds = [part.bound(*(maxima[position[s]] for s in part.symbols)) for part in parts]
    safe = all(b is not None and b < _INT64_SAFE for b in bounds)
    if safe and all(a.dtype != object for a in arrays):
        args = [a.astype(np.int64, copy=False) for a in arrays]
    else:
        args = [a.astype(object) for a in arrays]
    num, den, holds = function(*args)
    if not np.all(holds):
        check_domain(domain, shapes)  # names the first point outside, and why
    own = [arrays[position[s]] for s in compiled.symbols]
    return _quotients(compiled, (num, den), own, [args[position[s]] for s in compiled.symbols])


def _quotients(compiled: Compiled, result: Any, arrays: Sequence[Any], args: Sequence[Any]) -> Any:
    """The exact integer quotients ``num // den`` of a vectorised result (checked exact and
    non-negative, naming the first point where not); one scalar evaluation per point where
    the expression does not vectorise (``result`` None)."""
    import numpy as np

    shape = arrays[0].shape if arrays else ()
    if result is None:  # does not vectorise: one exact scalar evaluation per point
        out = np.empty(shape, dtype=object)
        for index in np.ndindex(shape):
            point = [int(a[index]) for a in arrays]
            num, den = compiled.scalar(*point)
            out[index] = _finish(num, den, compiled, point)
    else:
        num, den = (
            np.broadcast_to(np.asarray(x, dtype=args[0].dtype if args else object), shape)
            for x in result
        )
        negative_den = den < 0
        if negative_den.any():
            num, den = np.where(negative_den, -num, num), np.where(negative_den, -den, den)
        if (den == 1).all():
            out, bad = num, num < 0
        elif num.dtype == object:  # np.divmod has no object loop; // and * have
            out = num // den
            bad = (num - out * den != 0) | (out < 0)
        else:
            out, rem = np.divmod(num, den)
            bad = (rem != 0) | (out < 0)
        if bad.any():
            index = np.argwhere(np.asarray(bad))[0]
            point = [int(a[tuple(index)]) for a in arrays]
            _finish(int(num[tuple(index)]), int(den[tuple(index)]), compiled, point)
    if out.dtype == object:
        hi = max((abs(v) for v in out.flat), default=0)
        if hi < 2**63:
            out = out.astype(np.int64)
    return out


def sweep(
    expr: sympy.Basic | str,
    /,
    *,
    invalid: str = "raise",
    domain: Domain | None = None,
    **axes: Any,
):
    """Evaluate ``expr`` over the grid of the given axes (outer product, ``indexing="ij"``).

    Each keyword is a symbol: a sequence (``range``, list, array) spans an axis of the grid, an
    int is held fixed.  Returns a numpy array with one dimension per swept symbol, in the order
    given.

    The grid is checked as :func:`evaluate` checks one point, including the domain ``expr``
    carries (and ``domain``).  ``invalid="raise"`` (the default) refuses a grid that holds a
    point outside it, naming the first such point; ``invalid="mask"`` returns a
    :class:`numpy.ma.MaskedArray` whose invalid points are masked (and hold 0), so that a design
    space can be swept across configurations torch rejects without any of them getting a
    number.

    >>> import layercost_sym as lc
    >>> lc.sweep("H*W*C_in", H=range(1, 4), W=[10, 20], C_in=3).tolist()
    [[30, 60], [60, 120], [90, 180]]
    >>> macs = lc.rule("Conv2d").cost("macs")
    >>> fixed = dict(N=1, C_in=4, C_out=4, s=1, p=0, d=1, g=1)
    >>> lc.sweep(macs, k=[1, 3, 5], H=[3, 4], W=4, **fixed)
    Traceback (most recent call last):
    ...
    layercost_sym.errors.DomainError: Conv2d: constraint 'H_out >= 1 and W_out >= 1' fails
    (kernel size can't be greater than the padded input size) at H=3, W=4, ..., H_out=-1, W_out=0
    >>> # k = 3, H = 3: H_out = 1, W_out = 2: macs = 4*1*2*4*3*3 = 288; k = 5 does not fit
    >>> lc.sweep(macs, k=[1, 3, 5], H=[3, 4], W=4, invalid="mask", **fixed).tolist()
    [[192, 256], [288, 576], [None, None]]
    """
    import numpy as np

    if invalid not in ("raise", "mask"):
        raise EvaluationError(f"invalid={invalid!r}: use 'raise' or 'mask'")
    swept = [name for name, v in axes.items() if not isinstance(v, int | np.integer)]
    grids = np.meshgrid(
        *[np.asarray(list(axes[n]) if isinstance(axes[n], range) else axes[n]) for n in swept],
        indexing="ij",
    )
    shapes = {**axes, **dict(zip(swept, grids, strict=True))}
    if invalid == "raise":
        return evaluate(expr, shapes, domain=domain)
    if type(expr) is str:
        expr = _parse_cached(expr)
    conditions = domain_of(expr) & (domain or Domain())
    bad = invalid_points(conditions, shapes)
    keep = ~bad
    # evaluate at the valid points only: outside its domain a formula may not even be an
    # integer (or may be negative), which evaluate would refuse
    valid = {
        k: np.broadcast_to(v, bad.shape)[keep] if isinstance(v, np.ndarray) else v
        for k, v in shapes.items()
    }
    values = evaluate(expr, valid) if keep.any() else np.zeros(0, dtype=np.int64)
    dtype = values.dtype if isinstance(values, np.ndarray) else np.int64
    data = np.zeros(bad.shape, dtype=dtype)
    data[keep] = values
    return np.ma.MaskedArray(data, mask=bad)


def check_condition(cond: sympy.Basic, values: Mapping[Any, Value]) -> bool:
    """Whether a condition holds at ``values`` (all its symbols must be given)."""
    if cond is sympy.true or cond is sympy.false:
        return bool(cond)
    compiled = compile_expression(cond, True)
    vals, _ = _gather(compiled, values)
    return bool(compiled.scalar(*vals))


def least_integer(holds: Callable[[int], bool], limit: int = 2**64) -> int | None:
    """The smallest integer ``n >= 1`` where ``holds(n)``, for a ``holds`` that stays true past
    it (a size where a formula crosses a bound: doubling, then bisection; checked on both
    sides); None when it does not hold up to ``limit``.

    >>> least_integer(lambda n: n * n >= 50), least_integer(lambda n: False, limit=8)
    (8, None)
    """
    high = 1
    while not holds(high):
        high *= 2
        if high > limit:
            return None
    low = high // 2  # 0, or where it does not hold
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if holds(mid) else (mid, high)
    assert holds(high) and (high == 1 or not holds(high - 1))
    return high
