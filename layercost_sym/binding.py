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
from collections.abc import Mapping, Sequence
from typing import Any

import sympy

from .catalogue import attribute, catalogue
from .errors import ConventionError, ShapeError
from .evaluation import check_domain, evaluate
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
        assumed: tuple[str, ...] = (),
        trailing: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__(values)
        self.rule = rule
        self.leading = leading
        self.training = training
        self.trailing_absent = trailing_absent
        self.assumed = assumed  # data-dependent symbols that took the rule's default
        self.trailing = trailing  # for an "L..." input: its trailing dimensions as given
        self.fractional: tuple[str, ...] = ()  # sizes scaled by a factor that is not whole

    def evaluate(self, expr: sympy.Basic) -> int:
        return evaluate(self.rule.expand(expr), self)

    def cost(self, convention: str = "exact") -> int:
        """The rule's cost at this binding, in the binding's mode (training or not).

        A convention whose formula holds for whole scale factors only (a peer tool that counts
        in floating point, ``whole_factors_only`` in its convention file) raises
        :class:`~layercost_sym.ConventionError` when a size came from a fractional factor."""
        if self.fractional and convention in self.rule.whole_factor_conventions:
            note = self.rule.convention_notes.get(convention, "")
            raise ConventionError(
                f"{self.rule.name}: the {convention} convention is stated for whole scale "
                f"factors only, and {', '.join(self.fractional)} came from a fractional one "
                f"(the tool's own count is not an exact integer formula there). {note}".strip()
            )
        return evaluate(self.rule.cost(convention, self.training), self)

    @property
    def params(self) -> int:
        return evaluate(self.rule.params, self)

    def output_shape(self) -> tuple[int, ...]:
        """The concrete output shape torch would produce."""
        dims = [evaluate(e, self) for e in self.rule.output_shape]
        if self.rule.output_leading and self.leading is not None:
            dims = [*self.leading, *dims[1:]]
        if self.rule.output_trailing == "?" and self.trailing_absent:
            dims = dims[:-1]
        if self.rule.output_middle >= 0 and self.trailing_absent:
            del dims[self.rule.output_middle]
        if self.rule.output_trailing == "..." and self.trailing is not None:
            dims = [*dims[:-1], *self.trailing]
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
    if spec.kind == "arg_given":
        return int(call.get(spec.attr) is not None)
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
    if spec.kind == "view_size":
        return _view_size(module, spec, symbol, rule, value, inputs)
    if spec.kind == "scaled":
        return _scaled(rule, spec, symbol, value, inputs)
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
    if isinstance(value, float) and value.is_integer():
        return int(value)  # an integer-valued float (scale_factor=2.0) is that integer
    if isinstance(value, float):
        raise ShapeError(
            f"{rule.name}: module.{spec.text} is {value!r}, not a whole number (symbol "
            f"{symbol}): the rule's symbols are integers, so this option is not covered"
        )
    raise ShapeError(
        f"{rule.name}: module.{spec.text} is {value!r}, not an integer "
        f"(symbol {symbol}); no variant of the rule covers this option"
    )


def _view_size(
    module: Any, spec: BindSpec, symbol: str, rule: Rule, value: Any, inputs: list
) -> Any:
    """``view_size(attr[i], dim)``: entry ``i`` of a size list that splits input 0's dimension
    ``module.dim`` (Unflatten), where ``-1`` stands, as in ``Tensor.view``, for that
    dimension's length divided by the product of the other entries."""
    sizes = tuple(value) if isinstance(value, Sequence) and not isinstance(value, str) else ()
    if spec.index >= len(sizes):
        raise ShapeError(
            f"{rule.name}: module.{spec.attr} = {value!r} has no element {spec.index} "
            f"(symbol {symbol})"
        )
    entry = sizes[spec.index]
    if entry != -1:
        return entry
    dims = inputs[0] if inputs else ()
    dim = attribute(module, spec.of, None)
    if not isinstance(dim, int) or isinstance(dim, bool) or not -len(dims) <= dim < len(dims):
        raise ShapeError(
            f"{rule.name}: module.{spec.of} = {dim!r} is not a dimension of input 0 of shape "
            f"{tuple(dims)} (symbol {symbol})"
        )
    others = math.prod(s for j, s in enumerate(sizes) if j != spec.index)
    return dims[dim] // others if others else 0  # 0: refused as a non-positive size


def _factor(rule: Rule, spec: BindSpec, symbol: str, value: Any) -> int | float:
    """The factor a ``scaled(X, attr[i])`` spec reads: element ``i`` of the attribute (a single
    number serves every ``i``), a positive int or float."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        if spec.index is not None and len(value) > 1:
            if spec.index >= len(value):
                raise ShapeError(
                    f"{rule.name}: module.{spec.attr} = {tuple(value)} has no element "
                    f"{spec.index} (symbol {symbol})"
                )
            value = value[spec.index]
        elif len(value) == 1:
            value = value[0]
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ShapeError(
            f"{rule.name}: module.{spec.attr} = {value!r} is not a positive number "
            f"(symbol {symbol} = {spec.text})"
        )
    return value


def _fractional(module: Any, rule: Rule) -> tuple[str, ...]:
    """The symbols a ``scaled()`` spec bound from a factor that is not a whole number."""
    return tuple(
        name
        for name, spec in rule.binds.items()
        if spec.kind == "scaled"
        and not float(_factor(rule, spec, name, attribute(module, spec.attr, None))).is_integer()
    )


def _scaled(
    rule: Rule, spec: BindSpec, symbol: str, value: Any, inputs: list[tuple[Any, ...]]
) -> Any:
    """``scaled(X, attr[i])``: ``floor(X * s)`` computed as torch computes an output side from a
    float factor (``int(float(X) * s)`` in double precision: interpolate's scale_factor,
    fractional_max_pool's output_ratio), from the input dimension X and the attribute's element
    ``i`` (an int or float; a single number is used for every ``i``).  A symbolic X (model
    analysis) is scaled only by a whole factor; otherwise a ``ShapeError``."""
    value = _factor(rule, spec, symbol, value)
    size = None
    for pattern, dims in zip(rule.inputs, inputs, strict=False):
        if spec.of in pattern.names:
            split = split_input(pattern, dims, product=lambda d: sympy.Mul(*d))
            size = dict(split[1]).get(spec.of) if split is not None else None
            break
    if size is None:
        raise ShapeError(f"{rule.name}: no input dimension {spec.of} for {symbol} = {spec.text}")
    if isinstance(size, int) or getattr(size, "is_Integer", False):
        side = int(float(int(size)) * float(value))  # torch: a double product, truncated
        if side < 1:  # interpolate refuses it; fractional_max_pool returns an empty tensor
            raise ShapeError(
                f"{rule.name}: {symbol} = {spec.text} = int({int(size)}*{value!r}) is {side}: "
                "an empty output side, which the rule's positive sizes do not cover"
            )
        return side
    if float(value).is_integer():
        return int(value) * size  # a symbolic side scaled by a whole factor stays exact
    raise ShapeError(
        f"{rule.name}: {symbol} = floor({spec.of}*{value!r}) has no closed form in a symbolic "
        f"{spec.of} = {size} (give a concrete size, or a whole scale factor)"
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
    pattern: InputPattern, dims: Sequence[Any], product: Any = math.prod, anchor: Any = None
) -> tuple[tuple[Any, ...], list[tuple[str, Any]], bool, tuple[Any, ...]] | None:
    """How one input's dimensions fill its pattern: ``(leading dims, [(symbol, size), ...],
    trailing dimension absent, trailing dims)``, or None when the rank does not fit.
    ``N?``/``N...`` take the product of the leading dimensions (1 when there are none), a last
    ``L...`` the product of the trailing ones; ``product`` multiplies them (ints, or SymPy
    sizes); an absent trailing ``L?`` is 1.  ``anchor`` is the dimension an anchored pattern's
    attribute names (``"N... L@dim P..."``), None when unknown (the pattern does not fit)."""
    if pattern.anchor:  # anchor: one dimension, or (first, last) of a range (inclusive)
        rank = len(dims)
        ends = anchor if isinstance(anchor, tuple) else (anchor, anchor)
        if not all(isinstance(e, int) and not isinstance(e, bool) for e in ends):
            return None
        if not all(-rank <= e < rank for e in ends) or ends[0] % rank > ends[1] % rank:
            return None
        first, last = ends[0] % rank, ends[1] % rank
        lead, trail = tuple(dims[:first]), tuple(dims[last + 1 :])
        middle = dims[first] if first == last else product(tuple(dims[first : last + 1]))
        pairs = [(pattern.names[0], product(lead)), (pattern.names[1], middle)]
        return lead, [*pairs, (pattern.names[2], product(trail))], False, trail
    if pattern.middle >= 0:  # one inner dimension may be absent: its symbol is then 1
        if len(dims) == len(pattern.names):
            return (), list(zip(pattern.names, dims, strict=True)), False, ()
        if len(dims) == len(pattern.names) - 1:
            at = pattern.middle
            pairs = [*zip(pattern.names[:at], dims[:at], strict=True), (pattern.names[at], 1)]
            pairs += zip(pattern.names[at + 1 :], dims[at:], strict=True)
            return (), pairs, True, ()
        return None
    if pattern.trailing == "...":
        fixed = len(pattern.names) - 1
        if len(dims) < fixed:
            return None
        trail = tuple(dims[fixed:])
        pairs = [*zip(pattern.names[:-1], dims[:fixed], strict=True)]
        return (), [*pairs, (pattern.names[-1], product(trail))], False, trail
    if pattern.trailing:
        if len(dims) == len(pattern.names):
            return (), list(zip(pattern.names, dims, strict=True)), False, ()
        if len(dims) == len(pattern.names) - 1:
            present = zip(pattern.names[:-1], dims, strict=True)
            return (), [*present, (pattern.names[-1], 1)], True, ()
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
        return (), list(zip(pattern.names, dims, strict=True)), False, ()
    lead, rest = tuple(dims[: len(dims) - fixed]), dims[len(dims) - fixed :]
    pairs = [(pattern.names[0], product(lead)), *zip(pattern.names[1:], rest, strict=True)]
    return lead, pairs, False, ()


def bind(
    module: Any,
    *input_shapes: Any,
    data: Mapping[str, int] | None = None,
    **call_kwargs: Any,
) -> Binding:
    """Values of the symbols of ``module``'s rule for inputs of the given shape(s).

    ``call_kwargs`` are the keyword arguments of the forward call, for rules whose cost
    depends on one (``need_weights=False``); left out, they take the forward's defaults.

    ``data`` gives the rule's data-dependent symbols (its ``[Rule.data]`` table: how many
    distinct rows an Embedding looks up, ...); those left out take the rule's default (an upper
    bound, as its note says) and are listed in ``binding.assumed``:

    >>> import layercost_sym as lc
    >>> class Embedding:               # torch.nn.Embedding(10, 4, max_norm=1.0)'s attributes
    ...     num_embeddings, embedding_dim, max_norm, norm_type = 10, 4, 1.0, 2.0
    >>> b = lc.bind(Embedding(), (6,))                          # 6*(2*4 + 1) + 6*(4 + 2)
    >>> b["V_d"], b["V_r"], b.assumed, b.cost()
    (6, 6, ('V_d', 'V_r'), 90)
    >>> lc.bind(Embedding(), (6,), data={"V_d": 3, "V_r": 1}).cost()  # 3*(2*4 + 1) + 1*(4 + 2)
    33

    Raises :class:`~layercost_sym.errors.ShapeError` (a ``ValueError``) where torch itself would
    reject the shapes: wrong rank, a dimension that disagrees with the module, or a failed
    constraint of the rule (named, with the reason).
    """
    all_dims = [_dims(raw) for raw in input_shapes]
    rule = catalogue().for_module(module, all_dims)
    if len(input_shapes) != len(rule.inputs):
        raise ShapeError(
            f"{rule.name} takes {len(rule.inputs)} input(s) "
            f"{' and '.join(p.describe() for p in rule.inputs)}, got {len(input_shapes)}"
        )
    values: dict[str, int] = {}
    origin: dict[str, str] = {}
    leading: tuple[int, ...] | None = None
    trailing_absent = False
    trailing: tuple[int, ...] | None = None
    variadic: dict[str, tuple[int, ...]] = {}  # "N..." / "P..." symbol -> its dimensions
    for index, (pattern, dims) in enumerate(zip(rule.inputs, all_dims, strict=True)):
        anchor = (
            tuple(attribute(module, a, None) for a in pattern.anchor.split(":"))
            if ":" in pattern.anchor
            else attribute(module, pattern.anchor, None)
            if pattern.anchor
            else None
        )
        split = split_input(pattern, dims, anchor=anchor)
        if split is None and pattern.anchor:
            what = (
                "a range of dimensions (first <= last)" if ":" in pattern.anchor else "a dimension"
            )
            raise ShapeError(
                f"{rule.name}: module.{pattern.anchor} = {anchor!r} is not {what} of "
                f"input {index} of shape {dims}"
            )
        if split is None:
            expected = pattern.describe()
            if pattern.leading == "?":
                expected += f" or ({', '.join(pattern.names[1:])})"
            elif pattern.leading == "...":
                expected = "(" + ", ".join(["*", *pattern.names[1:]]) + ")"
            elif pattern.trailing == "?":
                expected += f" or ({', '.join(pattern.names[:-1])})"
            elif pattern.middle >= 0:
                rest = [n for i, n in enumerate(pattern.names) if i != pattern.middle]
                expected += f" or ({', '.join(rest)})"
            raise ShapeError(
                f"{rule.name} expects input {index} of shape {expected}, "
                f"got rank {len(dims)} shape {dims}"
            )
        lead, pairs, absent, trail = split
        if index == 0:
            leading = lead if pattern.leading else leading
            trailing_absent = absent
            trailing = trail if pattern.trailing == "..." else None
        # a product symbol ("N...", "P...") shared by inputs: equal products are not enough, the
        # dimensions must match ((2, 3) vs (3, 2) is refused); leading dimensions may differ by
        # leading 1s, as torch broadcasts them, and the output takes the longest
        ends = [(pattern.names[0], lead, "lead")] if pattern.leading == "..." else []
        ends += [(pattern.names[-1], trail, "trail")] if pattern.trailing == "..." else []
        for name, part, end in ends:
            first = next((i for i, d in enumerate(part) if d != 1), len(part))
            shown = tuple(part[first:]) if end == "lead" else tuple(part)
            if name in variadic and variadic[name] != shown:
                raise ShapeError(
                    f"{rule.name}: the dimensions of {name} are {variadic[name]} from an "
                    f"earlier input but {shown} from input {index}"
                )
            variadic[name] = shown
            if end == "lead" and index and leading is not None and len(part) > len(leading):
                leading = tuple(part)
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
    assumed = _bind_data(rule, values, origin, dict(data or {}))
    training = bool(getattr(module, "training", False))
    # the rule's constraints, checked as evaluate checks them: one message for one failure
    check_domain(rule.domain(training), values)
    binding = Binding(rule, values, leading, training, trailing_absent, assumed, trailing)
    binding.fractional = _fractional(module, rule)
    return binding


def _bind_data(
    rule: Rule, values: dict[str, int], origin: dict[str, str], given: dict[str, Any]
) -> tuple[str, ...]:
    """Fill the rule's data-dependent symbols from ``given`` or their defaults; the names that
    took a default."""
    names = [s.name for s in rule.data]
    unknown = sorted(set(given) - set(names))
    if unknown:
        known = ", ".join(names) if names else "none"
        raise ShapeError(
            f"{rule.name}: data {', '.join(unknown)} is not a data-dependent symbol of the rule "
            f"(it has: {known})"
        )
    assumed = []
    for symbol, default in rule.data_defaults().items():
        name = symbol.name
        if name in given:
            value = given[name]
            if isinstance(value, bool) or not isinstance(value, int):
                raise ShapeError(f"{rule.name}: data {name}={value!r} is not an integer")
            lowest = 1 if symbol.is_positive else 0
            if value < lowest:
                raise ShapeError(f"{rule.name}: data {name}={value} is below {lowest}")
            values[name], origin[name] = value, "data"
        else:
            values[name], origin[name] = evaluate(default, values), "the rule's default"
            assumed.append(name)
    return tuple(assumed)
