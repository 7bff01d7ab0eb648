"""Binding a rule's symbols to the numbers of one module instance and its input shape(s).

Reading a module needs no torch import: the binding reads attributes named in the rule's
``bind`` table and dimensions from its ``inputs`` patterns.

>>> import layercost_sym as lc
>>> class Linear:                      # any object with torch.nn.Linear's attributes will do
...     in_features, out_features, bias = 3, 4, object()
>>> dict(lc.bind(Linear(), (2, 5, 3)))
{'N': 10, 'C_in': 3, 'C_out': 4, 'b': 1}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import sympy

from .catalogue import attribute, catalogue
from .errors import ShapeError
from .evaluation import check_condition, evaluate
from .rule import BindSpec, InputPattern, Rule

__all__ = ["Binding", "bind"]


class Binding(dict):
    """``{symbol name: int}`` for one module call, remembering the rule it was made for.

    ``leading`` holds, for ``N?``/``N...`` inputs, the leading dimensions as they were given, so
    that :meth:`output_shape` can give the real output shape.
    """

    def __init__(
        self,
        rule: Rule,
        values: dict[str, int],
        leading: tuple[int, ...] | None,
        training: bool,
        trailing_absent: bool = False,
    ) -> None:
        super().__init__(values)
        self.rule = rule
        self.leading = leading
        self.training = training
        self.trailing_absent = trailing_absent

    def evaluate(self, expr: sympy.Basic) -> int:
        return evaluate(self.rule.expand(expr), self)

    def cost(self, convention: str = "exact") -> int:
        """The rule's cost at this binding, in the binding's mode (training or not)."""
        return evaluate(self.rule.cost(convention, self.training), self)

    @property
    def params(self) -> int:
        return evaluate(self.rule.params, self)

    def output_shape(self) -> tuple[int, ...]:
        """The concrete output shape torch would produce."""
        dims = [evaluate(e, self) for e in self.rule.output_shape]
        if self.rule.output_leading and self.leading is not None:
            dims = [*self.leading, *dims[1:]]
        if self.rule.output_trailing and self.trailing_absent:
            dims = dims[:-1]
        return tuple(dims)


def _read(
    module: Any,
    spec: BindSpec,
    symbol: str,
    rule: Rule,
    call: dict[str, Any],
    inputs: list[tuple[int, ...]],
) -> int:
    if spec.kind == "const":
        return spec.value
    if spec.kind == "arg":
        value = call.get(spec.attr, spec.value)
        if isinstance(value, bool | int):
            return int(value)
        raise ShapeError(f"{rule.name}: forward argument {spec.attr}={value!r} is not an integer")
    try:
        value = attribute(module, spec.attr)
    except AttributeError:
        raise ShapeError(
            f"{rule.name}: module {type(module).__name__} has no attribute "
            f"{spec.attr!r} (needed for symbol {symbol})"
        ) from None
    if spec.kind == "size":
        dims = inputs[spec.index] if spec.index < len(inputs) else ()
        rank = max(len(dims), 1)  # torch lets a 0-d tensor take dim 0 or -1
        if isinstance(value, bool) or not isinstance(value, int) or not -rank <= value < rank:
            raise ShapeError(
                f"{rule.name}: module.{spec.attr} = {value!r} is not a dimension of "
                f"input {spec.index} of shape {dims} (symbol {symbol})"
            )
        return dims[value] if dims else 1  # a 0-d input has one element along dim 0 or -1
    if spec.kind == "present":
        return int(value is not None)
    if spec.kind in ("prod", "len"):
        seq = (value,) if isinstance(value, int) else tuple(value)
        return math.prod(int(v) for v in seq) if spec.kind == "prod" else len(seq)
    if spec.index is not None and isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) > 1 and spec.index >= len(value):
            raise ShapeError(
                f"{rule.name}: module.{spec.attr} = {tuple(value)} has no element "
                f"{spec.index} (symbol {symbol})"
            )
        value = value[spec.index] if len(value) > 1 else value[0]
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    raise ShapeError(
        f"{rule.name}: module.{spec.text} is {value!r}, not an integer "
        f"(symbol {symbol}); no variant of the rule covers this option"
    )


def _dims(shape: Any) -> tuple[int, ...]:
    if hasattr(shape, "shape") and not isinstance(shape, tuple | list):
        shape = shape.shape  # a tensor or array: its shape
    try:
        dims = tuple(int(d) for d in shape)
    except TypeError:
        raise ShapeError(f"an input shape must be a sequence of ints, got {shape!r}") from None
    return dims


def split_input(
    pattern: InputPattern, dims: Sequence[Any], product: Any = math.prod
) -> tuple[tuple[Any, ...], list[tuple[str, Any]], bool] | None:
    """How one input's dimensions fill its pattern: ``(leading dims, [(symbol, size), ...],
    trailing dimension absent)``, or None when the rank does not fit.  ``N?``/``N...`` take the
    product of the leading dimensions (1 when there are none); ``product`` multiplies them
    (ints, or SymPy sizes); an absent trailing ``L?`` is 1."""
    if pattern.trailing:
        if len(dims) == len(pattern.names):
            return (), list(zip(pattern.names, dims, strict=True)), False
        if len(dims) == len(pattern.names) - 1:
            present = zip(pattern.names[:-1], dims, strict=True)
            return (), [*present, (pattern.names[-1], 1)], True
        return None
    fixed = len(pattern.names) - (1 if pattern.leading else 0)
    if pattern.leading == "...":
        ok = len(dims) >= fixed
    elif pattern.leading == "?":
        ok = len(dims) in (fixed, fixed + 1)
    else:
        ok = len(dims) == fixed
    if not ok:
        return None
    if not pattern.leading:
        return (), list(zip(pattern.names, dims, strict=True)), False
    lead, rest = tuple(dims[: len(dims) - fixed]), dims[len(dims) - fixed :]
    pairs = [(pattern.names[0], product(lead)), *zip(pattern.names[1:], rest, strict=True)]
    return lead, pairs, False


def bind(module: Any, *input_shapes: Any, **call_kwargs: Any) -> Binding:
    """Values of the symbols of ``module``'s rule for inputs of the given shape(s).

    ``call_kwargs`` are the keyword arguments of the forward call, for rules whose cost
    depends on one (``need_weights=False``); left out, they take the forward's defaults.

    Raises :class:`~layercost_sym.errors.ShapeError` (a ``ValueError``) where torch itself would
    reject the shapes: wrong rank, a dimension that disagrees with the module, or a failed
    constraint of the rule (named, with the reason).
    """
    rule = catalogue().for_module(module)
    if len(input_shapes) != len(rule.inputs):
        raise ShapeError(
            f"{rule.name} takes {len(rule.inputs)} input(s) "
            f"{' and '.join(p.describe() for p in rule.inputs)}, got {len(input_shapes)}"
        )
    values: dict[str, int] = {}
    origin: dict[str, str] = {}
    leading: tuple[int, ...] | None = None
    trailing_absent = False
    all_dims = [_dims(raw) for raw in input_shapes]
    for index, (pattern, dims) in enumerate(zip(rule.inputs, all_dims, strict=True)):
        split = split_input(pattern, dims)
        if split is None:
            expected = pattern.describe()
            if pattern.leading == "?":
                expected += f" or ({', '.join(pattern.names[1:])})"
            elif pattern.leading == "...":
                expected = "(" + ", ".join(["*", *pattern.names[1:]]) + ")"
            elif pattern.trailing:
                expected += f" or ({', '.join(pattern.names[:-1])})"
            raise ShapeError(
                f"{rule.name} expects input {index} of shape {expected}, "
                f"got rank {len(dims)} shape {dims}"
            )
        lead, pairs, absent = split
        if index == 0:
            leading = lead if pattern.leading else leading
            trailing_absent = absent
        for name, size in pairs:
            if size < 1:
                raise ShapeError(
                    f"{rule.name}: input {index} dimension {name} is {size}; "
                    "dimensions must be positive"
                )
            if name in values and values[name] != size:
                raise ShapeError(
                    f"{rule.name}: {name} is {values[name]} from {origin[name]} "
                    f"but {size} from input {index}"
                )
            values[name], origin[name] = size, f"input {index}"
    for name, spec in rule.binds.items():
        value = _read(module, spec, name, rule, call_kwargs, all_dims)
        if name in values and values[name] != value:
            raise ShapeError(
                f"{rule.name}: {origin[name]} has {name} = {values[name]}, "
                f"but module.{spec.text} = {value}"
            )
        values[name], origin[name] = value, f"module.{spec.text}"
    training = bool(getattr(module, "training", False))
    defines = rule._expanded_defines()
    for constraint in rule.constraints:
        if constraint.training_only and not training:
            continue
        if not check_condition(rule.expand(constraint.condition), values):
            shown = {
                **values,
                **{
                    s.name: _value(e, values)
                    for s, e in defines.items()
                    if s.name in constraint.text
                },
            }
            detail = ", ".join(f"{k}={v}" for k, v in shown.items() if k in constraint.text)
            raise ShapeError(
                f"{rule.name}: constraint {constraint.text!r} fails "
                f"({constraint.reason}) at {detail}"
            )
    return Binding(rule, values, leading, training, trailing_absent)


def _value(expr: sympy.Expr, values: dict[str, int]) -> sympy.Expr:
    """A defined quantity's exact value for an error message, even where it is 0 or negative
    (which ``evaluate`` would refuse): the expression's own symbols, substituted."""
    return expr.xreplace(
        {s: sympy.Integer(values[s.name]) for s in expr.free_symbols if s.name in values}
    )
