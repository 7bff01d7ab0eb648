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

from collections.abc import Mapping
from typing import Any

from .cache import catalogue
from .errors import ConventionError, ShapeError
from .evaluation import check_domain, evaluate
from .reading import dims_of, fractional, read
from .rule import Rule

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
    reading = read(rule, module, all_dims, call_kwargs)
    values, origin = reading.values, reading.origin
    assumed = _bind_data(rule, values, origin, dict(data or {}))
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
