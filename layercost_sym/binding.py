"""Binding a rule's symbols to the values of one module call: the one binder.

:func:`read` fills a rule's input and bound symbols from a module (or an operator's
arguments) and its input shapes, read as :mod:`layercost_sym.reading` says; the sizes may be
ints or SymPy expressions (the symbolic model analysis binds through it too), and the same
checks apply to both.  :func:`bind` adds what a concrete call needs: the variant the module
and its inputs choose, the data-dependent symbols, and the rule's constraints.  Nothing here
imports torch.

>>> import layercost_sym as lc
>>> class Linear:                      # any object with torch.nn.Linear's attributes will do
...     in_features, out_features, bias = 3, 4, object()
>>> dict(lc.bind(Linear(), (2, 5, 3)))  # and the bytes per element: float32 by default
{'N': 10, 'C_in': 3, 'C_out': 4, 'b': 1, 'e_a': 4, 'e_w': 4, 'e_i': 8, 'rg': 0, 'gw': 0}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sympy

from .cache import catalogue
from .errors import ConventionError, ShapeError
from .evaluation import check_domain, evaluate
from .glossary import REQUIRES_GRAD, WEIGHTS_GRAD
from .reading import (
    attribute,
    dims_of,
    distinct_inputs,
    element_sizes,
    fractional,
    fused_kernel,
    output_grads,
    read_spec,
    requires_grad,
    split_input,
    unread_tensors,
    weights_grad,
)
from .roofline import ChipLike, Roofline, roofline, works_of
from .rule import InputPattern, Rule

__all__ = ["Binding", "Reading", "bind", "read"]


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

    def quantity(self, quantity: str, convention: str | None = None) -> int:
        """The rule's ``quantity`` under ``convention`` (None: the quantity's default) at this
        binding, in the binding's mode (training or not).

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
        return evaluate(self.rule.quantity(quantity, convention, self.training), self)

    def cost(self, convention: str | None = None) -> int:
        """The rule's FLOPs under ``convention`` at this binding (:meth:`quantity`)."""
        return self.quantity("flops", convention)

    @property
    def params(self) -> int:
        """The rule's parameters at this binding."""
        return self.quantity("params")

    def roofline(self, hardware: ChipLike | str, *, dtype: str, bytes: str = "min") -> Roofline:
        """This call's time lower bound on ``hardware`` (a chip, or a name of
        ``formulas/hardware.toml``) with the peaks of ``dtype``: one row, its bottleneck and
        its arithmetic intensity (see :mod:`layercost_sym.roofline`).

        >>> import torch, layercost_sym as lc
        >>> conv = torch.nn.Conv2d(64, 64, 3, padding=1, groups=64)  # depthwise, float32
        >>> row = lc.bind(conv, (1, 64, 56, 56)).roofline("A100-SXM-80GB", dtype="fp32").rows[0]
        >>> row.bottleneck, float(row.intensity) < 5
        ('memory', True)
        """
        return roofline(
            works_of([(self.rule.name, self)], bytes=bytes), hardware, dtype, bytes=bytes
        )

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


def _as_size(value: Any) -> Any:
    """A size as the reader keeps it: ints stay ints, SymPy integers become ints."""
    if isinstance(value, sympy.Integer):
        return int(value)
    return value


def _differ(a: Any, b: Any) -> bool:
    """Whether two sizes (ints or SymPy expressions) are provably different values."""
    if isinstance(a, int) and isinstance(b, int):
        return a != b
    return a != b and sympy.expand(sympy.sympify(a) - sympy.sympify(b)) != 0


def _positive(size: Any) -> bool:
    """False only for a concrete size below 1 (a symbolic size is positive by assumption)."""
    return not (isinstance(size, int) and size < 1)


@dataclass
class Reading:
    """The values a rule's symbols take for one call (ints, or SymPy expressions of symbolic
    sizes), where each came from, and how the inputs filled the patterns: ``leading`` the
    leading dimensions of an ``N?``/``N...`` input 0 as given, ``trailing`` those of an
    ``L...`` input 0, ``trailing_absent`` whether its optional dimension was absent."""

    rule: Rule
    values: dict[str, Any]
    origin: dict[str, str] = field(default_factory=dict)
    leading: tuple[Any, ...] | None = None
    trailing_absent: bool = False
    trailing: tuple[Any, ...] | None = None


def _expected(pattern: InputPattern) -> str:
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
    return expected


def read(
    rule: Rule,
    obj: Any,
    shapes: Sequence[Sequence[Any]],
    call: Mapping[str, Any] | None = None,
    *,
    extra_inputs: bool = False,
) -> Reading:
    """The values of ``rule``'s input and bound symbols for ``obj`` called on inputs of
    ``shapes`` (ints, or SymPy sizes) with keyword arguments ``call``.

    Raises :class:`~layercost_sym.ShapeError` where torch would reject the call: a rank that
    fits no pattern, a dimension that is not positive, two inputs or an input and the module
    that disagree on a size.  ``extra_inputs=True`` lets ``shapes`` run past the rule's inputs
    (a functional rule names a prefix of an operator's tensors; its inputs past the tensors
    given bind 0: an operand that is a number reads nothing).  Data-dependent symbols and
    constraints are the caller's (:func:`layercost_sym.bind`)."""
    call = dict(call or {})
    shapes = [tuple(_as_size(d) for d in s) for s in shapes]
    given = len(shapes) if not extra_inputs else min(len(shapes), len(rule.inputs))
    # an operator's operand given as a number (x + 1, torch.where(c, x, 0.0)) is no tensor:
    # the functional rule's inputs past the call's tensors read nothing, their symbols are 0
    numbers = rule.inputs[given:] if rule.family == "functional" else ()
    if given + len(numbers) != len(rule.inputs):
        raise ShapeError(
            f"{rule.name} takes {len(rule.inputs)} input(s) "
            f"{' and '.join(p.describe() for p in rule.inputs)}, got {len(shapes)}"
        )
    out = Reading(rule, {})
    values, origin = out.values, out.origin
    variadic: dict[str, tuple[Any, ...]] = {}  # "N..." / "P..." symbol -> its dimensions
    for index, (pattern, dims) in enumerate(zip(rule.inputs, shapes, strict=False)):
        anchor = None
        if pattern.anchor:
            ends = tuple(attribute(obj, a, None) for a in pattern.anchor.split(":"))
            anchor = ends if len(ends) > 1 else ends[0]
        split = split_input(pattern, dims, anchor=anchor)
        if split is None and pattern.anchor:
            what = "a range of dimensions (first <= last)" if len(ends) > 1 else "a dimension"
            raise ShapeError(
                f"{rule.name}: module.{pattern.anchor} = {anchor!r} is not {what} of "
                f"input {index} of shape {dims}"
            )
        if split is None:
            raise ShapeError(
                f"{rule.name} expects input {index} of shape {_expected(pattern)}, "
                f"got rank {len(dims)} shape {dims}"
            )
        lead, pairs, absent, trail = split
        if index == 0:
            out.leading = lead if pattern.leading else out.leading
            out.trailing_absent = absent
            out.trailing = trail if pattern.trailing == "..." else None
        # a product symbol ("N...", "P...") shared by inputs: equal products are not enough, the
        # dimensions must match ((2, 3) vs (3, 2) is refused); leading dimensions may differ by
        # leading 1s, as torch broadcasts them, and the output takes the longest
        ends_ = [(pattern.names[0], lead, "lead")] if pattern.leading == "..." else []
        ends_ += [(pattern.names[-1], trail, "trail")] if pattern.trailing == "..." else []
        for name, part, end in ends_:
            first = next((i for i, d in enumerate(part) if d != 1), len(part))
            shown = tuple(part[first:]) if end == "lead" else tuple(part)
            if name in variadic and (
                len(variadic[name]) != len(shown)
                or any(_differ(a, b) for a, b in zip(variadic[name], shown, strict=True))
            ):
                raise ShapeError(
                    f"{rule.name}: the dimensions of {name} are {variadic[name]} from an "
                    f"earlier input but {shown} from input {index}"
                )
            variadic[name] = shown
            if end == "lead" and index and out.leading is not None:
                if len(part) > len(out.leading):
                    out.leading = tuple(part)
        for name, size in pairs:
            size = _as_size(size)
            if not _positive(size):
                raise ShapeError(
                    f"{rule.name}: input {index} dimension {name} is {size}; "
                    "dimensions must be positive"
                )
            if name in values and _differ(values[name], size):
                raise ShapeError(
                    f"{rule.name}: {name} is {values[name]} from {origin[name]} "
                    f"but {size} from input {index}"
                )
            if name not in values:
                values[name], origin[name] = size, f"input {index}"
    for pattern in numbers:
        for name in pattern.names:
            if name not in values:
                values[name], origin[name] = 0, "no tensor (a number)"
    for name, spec in rule.binds.items():
        value = _as_size(read_spec(obj, spec, name, rule, call, shapes))
        if name in values and _differ(values[name], value):
            raise ShapeError(
                f"{rule.name}: {origin[name]} has {name} = {values[name]}, "
                f"but module.{spec.text} = {value}"
            )
        values[name], origin[name] = value, f"module.{spec.text}"
    return out


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
    all_dims = [dims_of(raw) for raw in input_shapes]
    rule = catalogue().for_module(module, all_dims)
    unread = unread_tensors(rule, list(call_kwargs.items()))
    if unread:
        raise ShapeError(
            f"{rule.name}: its rule does not state the cost of the keyword tensor(s) "
            f"{', '.join(unread)} (a mask adds work); lc.count measures such a call and "
            "lc.analyze costs it by its operators"
        )
    reading = read(rule, module, all_dims, call_kwargs)
    values, origin = reading.values, reading.origin
    for name, size in element_sizes(module, input_shapes, call_kwargs).items():
        values[name], origin[name] = size, "dtype"
    flags = distinct_inputs(len(rule.inputs), input_shapes)
    if REQUIRES_GRAD in rule.compact_symbols:  # where a rule uses it (in-place, backward)
        flags.update(requires_grad(input_shapes))
    if WEIGHTS_GRAD in rule.compact_symbols:  # where a rule's backward uses it
        flags.update(weights_grad(module))
    flags.update(output_grads(rule))
    for name, flag in flags.items():
        values[name], origin[name] = flag, "the call's tensors"
    # the kernel torch takes, where the rule's cost depends on it (read, unless the caller says)
    assumed = _bind_data(rule, values, origin, {**fused_kernel(rule, input_shapes), **(data or {})})
    training = bool(getattr(module, "training", False))
    # the rule's constraints, checked as evaluate checks them: one message for one failure
    check_domain(rule.domain(training), values)
    binding = Binding(
        rule,
        values,
        reading.leading,
        training,
        reading.trailing_absent,
        assumed,
        reading.trailing,
    )
    binding.fractional = fractional(module, rule)
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
