"""The :class:`Rule` object: one layer's parameter count, output shape and costs as SymPy.

>>> import layercost_sym as lc
>>> r = lc.rule("Linear")
>>> r.params
C_in*C_out + C_out*b
>>> r.cost("macs")
C_in*C_out*N
>>> r.cost("torch")
2*C_in*C_out*N
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

import sympy

from .composition import Cost, rule_at
from .domain import Condition, Domain, with_domain
from .errors import ConventionError
from .quantities import quantity as _quantity

__all__ = ["BindSpec", "Constraint", "InputPattern", "Rule", "expand_defines"]


def expand_defines(
    defines: Iterable[tuple[sympy.Symbol, sympy.Expr]],
) -> dict[sympy.Symbol, sympy.Expr]:
    """Each defined quantity with the earlier ones substituted into it (in file order).

    >>> from sympy import Symbol
    >>> a, b, x = (Symbol(n, positive=True) for n in "abx")
    >>> expand_defines([(a, x + 1), (b, 2 * a)])
    {a: x + 1, b: 2*x + 2}
    """
    return dict(_expand_defines(tuple(defines)))


# A rule's variants and its convention views share its definitions, and substituting them
# rebuilds every Max/Min around them (slow in SymPy): computed once per distinct sequence.
@lru_cache(maxsize=1024)
def _expand_defines(
    defines: tuple[tuple[sympy.Symbol, sympy.Expr], ...],
) -> tuple[tuple[sympy.Symbol, sympy.Expr], ...]:
    expanded: dict[sympy.Symbol, sympy.Expr] = {}
    for symbol, expr in defines:  # later definitions may use earlier ones
        expanded[symbol] = expr.xreplace(expanded)
    return tuple(expanded.items())


@dataclass(frozen=True)
class InputPattern:
    """The dimensions of one input, as symbol names.

    ``leading`` is how the first dimension may vary: ``""`` (always present), ``"?"``
    (optional: absent means 1, as for unbatched input) or ``"..."`` (any number of leading
    dimensions, their product bound to the symbol).
    """

    names: tuple[str, ...]
    leading: str = ""
    text: str = ""
    trailing: str = ""  # "?": the last dimension may be absent (its symbol is then 1); "...":
    # any number (zero or more) of trailing dimensions, their product bound to the last symbol

    def describe(self) -> str:
        if self.anchor:
            where = "dimensions" if ":" in self.anchor else "dimension"
            return f"(*, {self.names[1]} at {where} {self.anchor}, *)"
        names = [*self.names[:-1], "*"] if self.trailing == "..." else self.names
        return "(" + ", ".join(names) + ")"

    # middle: the index of an inner dimension that may be absent ("L N? I": unbatched
    # sequence-first input (L, I)), its symbol then 1; -1 for none
    middle: int = -1
    # anchor: for "N... L@dim P...", the attribute naming the input dimension bound to the middle
    # symbol; the leading and trailing symbols take the products of the dimensions around it
    anchor: str = ""


@dataclass(frozen=True)
class BindSpec:
    """How one symbol is read from a module instance (see ``formulas/README.md``).

    ``kind`` is ``"attr"`` (an attribute, optionally indexed), ``"present"`` (1 if the
    attribute is not None), ``"prod"`` or ``"len"`` (of a sequence attribute), ``"size"`` (the
    length of input ``index`` along the dimension the attribute names), ``"arg"`` (a
    keyword argument of the forward call, ``value`` when it is not given), ``"scaled"``
    (``floor(of * attr[index])`` in double precision, ``of`` an input symbol), ``"view_size"``
    (entry ``index`` of a size list, ``-1`` inferred along input 0's dimension ``module.<of>``)
    or ``"const"``.
    """

    kind: str
    attr: str = ""
    index: int | None = None
    value: int = 0
    text: str = ""
    of: str = ""


@dataclass(frozen=True)
class Constraint:
    """A validity condition with the reason torch gives when it fails."""

    condition: sympy.Basic
    text: str
    reason: str
    training_only: bool = False
    # the quantities it is a condition of (empty: all); e.g. a backward torch refuses while its
    # forward runs (CrossMapLRN2d of size 1)
    quantities: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class Rule:
    """One layer's rule, loaded from a table of ``formulas/<family>.toml``.

    Expressions are kept in a *compact* form that uses the rule's defined quantities
    (``H_out``, ...) as symbols, for printing, and are handed out *expanded* (defined
    quantities substituted), ready for :func:`~layercost_sym.evaluate`.
    """

    name: str
    module: str
    family: str
    note: str
    source: str
    inputs: tuple[InputPattern, ...]
    binds: Mapping[str, BindSpec]
    defines: Mapping[sympy.Symbol, sympy.Expr]
    compact_output_shape: tuple[sympy.Expr, ...]
    # (quantity, convention, training) -> the value as written, derived conventions included
    compact: Mapping[tuple[str, str, bool], sympy.Expr]
    constraints: tuple[Constraint, ...] = ()
    output_leading: str = ""  # "?" or "...": the first output dimension follows inputs[0]'s
    output_trailing: str = ""  # "?" / "...": the last output dimension(s) follow inputs[0]'s
    output_middle: int = -1  # an output dimension dropped when inputs[0]'s inner "N?" is absent
    # data-dependent symbols (which rows an Embedding renormalises, ...) -> their default, an
    # expression in the bound symbols (documented as a bound); see formulas/README.md
    data: Mapping[sympy.Symbol, sympy.Expr] = field(default_factory=dict)
    when: Mapping[str, Any] = field(default_factory=dict)
    convention_notes: Mapping[str, str] = field(default_factory=dict)  # from convention files
    # conventions whose formula holds for whole scale factors only (see Binding.cost)
    whole_factor_conventions: frozenset[str] = frozenset()
    variants: tuple[Rule, ...] = ()

    # -- expansion ---------------------------------------------------------------------------
    @cached_property
    def expanded_defines(self) -> dict[sympy.Symbol, sympy.Expr]:
        """The defined quantities (``H_out`` ...), each written in bound symbols only."""
        return expand_defines(self.defines.items())  # in file order: later use earlier

    def expand(self, expr: sympy.Basic) -> sympy.Basic:
        """Substitute the rule's defined quantities (``H_out`` ...) into ``expr``."""
        return expr.xreplace(self.expanded_defines)

    # -- domain ------------------------------------------------------------------------------
    def domain(self, training: bool = False, quantity: str | None = None) -> Domain:
        """Where the rule's formulas hold: its constraints (training-only ones with
        ``training=True``), each with torch's reason; with ``quantity``, also the constraints
        stated for that quantity alone (``quantities = ["backward"]``).  Every expression the
        rule hands out carries its quantity's domain (see :mod:`layercost_sym.domain`).

        >>> import layercost_sym as lc
        >>> [c.text for c in lc.rule("Conv2d").domain().conditions]
        ['H_out >= 1 and W_out >= 1', 'C_in % g == 0 and C_out % g == 0']
        >>> [c.text for c in lc.rule("CrossMapLRN2d").domain(quantity="backward").conditions]
        ['k_c >= 2 or rg == 0']
        """
        return self._domains[(bool(training), quantity if quantity in self._own_domain else None)]

    @cached_property
    def _own_domain(self) -> frozenset[str]:
        """The quantities with constraints of their own."""
        return frozenset(q for c in self.constraints for q in c.quantities)

    def conditions(self, training: bool = False) -> tuple[Condition, ...]:
        """Every constraint of the rule as a :class:`~layercost_sym.Condition` (training-only
        ones with ``training=True``), those of some quantities alone naming them in
        ``only_for``: what a composed cost or an analysis carries."""
        return self._conditions[bool(training)]

    @cached_property
    def _conditions(self) -> tuple[tuple[Condition, ...], tuple[Condition, ...]]:
        def condition(c: Constraint) -> Condition:
            named = set(re.findall(r"[A-Za-z_]\w*", c.text))
            quantities = tuple(
                (s.name, e) for s, e in self.expanded_defines.items() if s.name in named
            )
            condition = self.expand(c.condition)
            return Condition(
                condition, c.text, c.reason, self.name, quantities, only_for=c.quantities
            )

        def of(training: bool) -> tuple[Condition, ...]:
            return tuple(condition(c) for c in self.constraints if training or not c.training_only)

        return of(False), of(True)

    @cached_property
    def _domains(self) -> dict[tuple[bool, str | None], Domain]:
        return {
            (training, quantity): Domain(
                tuple(
                    c for c in self.conditions(training) if not c.only_for or quantity in c.only_for
                )
            )
            for training in (False, True)
            for quantity in (None, *sorted(self._own_domain))
        }

    @cached_property
    def _handed_out(self) -> dict[tuple[Any, ...], sympy.Basic]:
        return {}

    def _carrying(
        self, key: tuple[Any, ...], training: bool, make: Any, quantity: str | None = None
    ) -> Any:
        """The expression ``make()`` gives, carrying the domain of the rule's ``quantity``
        (made once per key)."""
        found = self._handed_out.get(key)
        if found is None:
            found = self._handed_out[key] = with_domain(make(), self.domain(training, quantity))
        return found

    def data_defaults(self) -> dict[sympy.Symbol, sympy.Expr]:
        """The data-dependent symbols (``[Rule.data]``) with their defaults, expanded: the value
        :func:`~layercost_sym.bind` assumes where the caller gives none.

        >>> import layercost_sym as lc
        >>> lc.rule("Embedding").data_defaults()
        {V_d: Min(N, V), V_r: Min(N, V)}
        """
        out: dict[sympy.Symbol, sympy.Expr] = {}
        for symbol, expr in self.data.items():  # in file order: later may use earlier
            out[symbol] = self.expand(expr).xreplace(out)
        return out

    # -- the public view -----------------------------------------------------------------------
    @cached_property
    def quantities(self) -> tuple[str, ...]:
        """The quantities the rule states (``params``, ``flops``, ...), in file order."""
        return tuple(dict.fromkeys(q for q, _, _ in self.compact))

    @cached_property
    def compact_symbols(self) -> frozenset[str]:
        """Names of the symbols the quantities use as written (defined quantities unexpanded)."""
        return frozenset(s.name for e in self.compact.values() for s in e.free_symbols)

    def conventions_of(self, quantity: str = "flops") -> tuple[str, ...]:
        """The conventions under which the rule states ``quantity``, sorted."""
        return tuple(sorted({c for q, c, _ in self.compact if q == quantity}))

    @property
    def conventions(self) -> tuple[str, ...]:
        """The conventions of the rule's FLOPs (:meth:`conventions_of` ``"flops"``)."""
        return self.conventions_of("flops")

    def compact_quantity(
        self, quantity: str, convention: str | None = None, training: bool = False
    ) -> sympy.Expr:
        """``quantity`` under ``convention`` (None: the quantity's default) as written in the
        catalogue, its defined quantities (``H_out``) left as symbols."""
        q = _quantity(quantity)
        name = q.convention(convention)
        key = (q.name, name, bool(training) and q.training)
        if key not in self.compact:
            raise ConventionError(
                f"rule {self.name} does not define {q.name} under convention {name!r}; "
                f"it defines: {', '.join(self.conventions_of(q.name)) or 'none'}"
            )
        return self.compact[key]

    def quantity(
        self, quantity: str, convention: str | None = None, training: bool = False
    ) -> sympy.Expr:
        """``quantity`` (``"params"``, ``"flops"``, ...) under ``convention`` (None: the
        quantity's default), for the module in training mode with ``training=True``: an
        expression in the rule's symbols that carries the rule's domain.

        >>> import layercost_sym as lc
        >>> lc.rule("Linear").quantity("flops", "macs")
        C_in*C_out*N
        """
        q = _quantity(quantity)
        mode = bool(training) and q.training  # a quantity without a training mode has one value
        compact = self.compact_quantity(quantity, convention, mode)
        key = (quantity, q.convention(convention), mode)
        return self._carrying(key, mode, lambda: self.expand(compact), q.name)

    @property
    def params(self) -> sympy.Expr:
        """Number of parameters (``sum(p.numel() for p in module.parameters())``)."""
        return self.quantity("params")

    @property
    def flops(self) -> sympy.Expr:
        """FLOPs under the default convention, ``exact``, in inference mode."""
        return self.quantity("flops")

    def cost(self, convention: str | None = None, training: bool = False) -> sympy.Expr:
        """FLOPs under ``convention`` (None: ``exact``); ``training=True`` for the module in
        training mode (:meth:`quantity` ``"flops"``)."""
        return self.quantity("flops", convention, training)

    def compact_cost(self, convention: str | None = None, training: bool = False) -> sympy.Expr:
        """FLOPs as written in the catalogue (:meth:`compact_quantity` ``"flops"``)."""
        return self.compact_quantity("flops", convention, training)

    @property
    def output_shape(self) -> tuple[sympy.Expr, ...]:
        """Output shape; for ``N...`` inputs, ``N`` stands for all leading dimensions."""
        return tuple(
            self._carrying(("output", i), False, lambda e=e: self.expand(e))
            for i, e in enumerate(self.compact_output_shape)
        )

    @property
    def symbols(self) -> tuple[str, ...]:
        """Names of the shape symbols the rule's expressions are written in."""
        exprs = [*self.output_shape, *(self.expand(e) for e in self.compact.values())]
        names = set().union(*(e.free_symbols for e in exprs))
        return tuple(sorted(s.name for s in names))

    def at(self, *, training: bool = False, name: str | None = None, **values: Any) -> Cost:
        """This rule with its symbols bound to values or expressions: a :class:`Cost`.

        See :mod:`layercost_sym.composition`.
        """
        return rule_at(self, training=training, name=name, **values)

    def variant(self, name: str) -> Rule:
        for v in self.variants:
            if v.name == name or v.name == f"{self.name}.{name}":
                return v
        raise KeyError(f"rule {self.name} has no variant {name!r}")

    def to_pandas(
        self,
        *,
        at: Mapping[str, int] | None = None,
        training: bool = False,
        quantities: Iterable[str] | None = None,
    ):
        """Defined quantities, then each of ``quantities`` (None: all) under every convention
        the rule states, as a ``pandas.DataFrame`` of formulas (values at ``at``, its domain
        checked); see :func:`layercost_sym.tables.rule_table`."""
        from .tables import rule_table

        chosen = None if quantities is None else tuple(quantities)
        return rule_table(self, at=at, training=training, quantities=chosen).to_pandas()

    def _repr_html_(self) -> str:
        from .tables import rule_table

        return rule_table(self).to_html()

    def _repr_latex_(self) -> str:
        from .printing import latex

        return "$" + latex(self) + "$"

    def __repr__(self) -> str:
        return f"<Rule {self.name} ({self.source})>"
