"""Composing rules by hand: cost objects over hyperparameters of your choosing.

A rule's symbols are the shape symbols of one layer (``C_in``, ``N``, ...).  ``Rule.at`` binds
them to numbers or to expressions in symbols you choose, and returns a :class:`Cost`: the
parameters and every convention's cost of that layer, as one named *part*.  Costs add (``+``)
and scale (``n_layer * block``), keeping a per-part breakdown, so a whole architecture can be
written the way a paper states it and printed as a table.

(Over 500 lines by design: one class, :class:`Cost`, with its algebra, its domain, its
evaluation and its tables; splitting it would scatter one object over several modules.)

>>> import layercost_sym as lc
>>> d, B, T = lc.symbols("d B T")
>>> up = lc.rule("Linear").at(C_in=d, C_out=4 * d, N=B * T, b=1, name="up")
>>> down = lc.rule("Linear").at(C_in=4 * d, C_out=d, N=B * T, b=1, name="down")
>>> mlp = up + down
>>> mlp.params
8*d**2 + 5*d
>>> mlp.cost("macs")
8*B*T*d**2
>>> (12 * mlp).breakdown("macs")["up"]
(48*d**2 + 48*d, 48*B*T*d**2)
>>> mlp.at(d=768, B=1, T=1024).cost("torch")
9663676416

Symbols from :func:`symbols` are positive integers unless told otherwise; glossary names
(``N``, ``H``, ...) give the glossary's own symbols, so they meet the rules' symbols.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import sympy

from .domain import Condition, Domain, with_domain
from .errors import CompositionError, ConventionError, DomainError
from .evaluation import evaluate
from .glossary import glossary
from .quantities import QuantityShorthands
from .quantities import quantity as _quantity

__all__ = ["Cost", "Part", "as_exact", "rule_at", "symbols"]


def symbols(names: str | Iterable[str], *, integer: bool = True, positive: bool = True) -> Any:
    """Symbols for hyperparameters: positive integers unless told otherwise.

    ``names`` is separated by spaces or commas, as for :func:`sympy.symbols`; one name gives
    one symbol, several give a tuple.  ``integer=False`` makes a real symbol (a width
    multiplier), ``positive=False`` a non-negative one.  A glossary name (``N``, ``H``, ``b``)
    with the default options is the glossary's own symbol, the one the rules are written in.

    >>> import layercost_sym as lc
    >>> d_model, n_layer = lc.symbols("d_model n_layer")
    >>> d_model.is_integer and d_model.is_positive
    True
    >>> alpha = lc.symbols("alpha", integer=False)
    >>> alpha.is_integer is None and alpha.is_positive
    True
    >>> lc.symbols("N") in lc.rule("Linear").output_shape[0].free_symbols
    True
    """
    if isinstance(names, str):
        split = [n for n in names.replace(",", " ").split() if n]
    else:
        split = list(names)
    if not split:
        raise CompositionError("symbols() needs at least one name")
    known = glossary().symbols
    made = []
    for name in split:
        if not isinstance(name, str) or not name.isidentifier():
            raise CompositionError(f"symbol name {name!r} is not a plain identifier")
        if integer and positive and name in known:
            made.append(known[name])
            continue
        assumptions = {"integer": True} if integer else {"real": True}
        assumptions["positive" if positive else "nonnegative"] = True
        made.append(sympy.Symbol(name, **assumptions))
    return made[0] if len(made) == 1 else tuple(made)


def as_exact(key: str, value: Any) -> sympy.Expr:
    """An exact SymPy value: ints, bools, SymPy numbers and expressions; nothing else."""
    if isinstance(value, bool):
        return sympy.Integer(int(value))
    if isinstance(value, int):
        return sympy.Integer(value)
    if isinstance(value, sympy.Basic) and not isinstance(value, sympy.Float):
        if value.has(sympy.Float):
            raise CompositionError(f"{key}: {value} contains a float; use exact numbers")
        return value
    raise CompositionError(
        f"{key}: {value!r} is not an int or a SymPy expression "
        "(make symbols with lc.symbols(...); floats are not exact)"
    )


@dataclass(frozen=True)
class Part:
    """One named part of a :class:`Cost`: its value of each quantity under each convention,
    ``{(quantity, convention): expression}`` (``("params", "count")``, ``("flops", "macs")``)."""

    name: str
    values: Mapping[tuple[str, str], sympy.Expr]
    rule: str | None = None  # the catalogue rule, for a part made by Rule.at

    @classmethod
    def of(
        cls,
        name: str,
        params: sympy.Expr,
        costs: Mapping[str, sympy.Expr],
        rule: str | None = None,
    ) -> Part:
        """A part from its parameter count and its FLOPs per convention."""
        values = {("params", "count"): sympy.sympify(params)}
        values.update({("flops", c): e for c, e in costs.items()})
        return cls(name, values, rule)

    @property
    def params(self) -> sympy.Expr:
        """The part's parameters."""
        return self.values.get(("params", "count"), sympy.Integer(0))

    @property
    def costs(self) -> dict[str, sympy.Expr]:
        """The part's FLOPs per convention."""
        return {c: e for (q, c), e in self.values.items() if q == "flops"}

    def _map(self, fn: Any) -> Part:
        return Part(self.name, {k: fn(e) for k, e in self.values.items()}, self.rule)

    def renamed(self, name: str) -> Part:
        return Part(name, self.values, self.rule)


class Cost(QuantityShorthands):
    """Parameters and costs of a composition of rules, with a per-part breakdown.

    Made by :meth:`Rule.at <layercost_sym.Rule.at>`; combined with ``+`` and with ``*`` by
    an int or an expression (a repeated block: its parameters and its cost both scale).
    Parts with the same name are summed.  ``output_shape`` is kept for a single rule's part,
    so the next layer can be bound to it.
    """

    __slots__ = ("conditions", "output_shape", "parts")
    # conditions: the rules' constraints its values leave undecided (its domain), each once

    def __init__(
        self,
        parts: Iterable[Part],
        output_shape: tuple[sympy.Expr, ...] | None = None,
        conditions: Iterable[Condition] = (),
    ) -> None:
        merged: dict[str, Part] = {}
        for part in parts:
            seen = merged.get(part.name)
            if seen is None:
                merged[part.name] = part
                continue
            common = [k for k in seen.values if k in part.values]  # in the first one's order
            merged[part.name] = Part(
                part.name,
                {k: seen.values[k] + part.values[k] for k in common},
                seen.rule if seen.rule == part.rule else None,
            )
        self.parts: tuple[Part, ...] = tuple(merged.values())
        self.output_shape = output_shape
        self.conditions: tuple[Condition, ...] = tuple(dict.fromkeys(conditions))

    # -- totals ------------------------------------------------------------------------------
    @property
    def domain(self) -> Domain:
        """Where the totals hold: the constraints of its rules that its values leave undecided
        (each expression :meth:`cost` and :attr:`params` return carries it; a quantity's own
        constraints are added by :meth:`domain_of`)."""
        return Domain(tuple(c for c in self.conditions if not c.only_for))

    def domain_of(self, quantity: str) -> Domain:
        """Where ``quantity``'s total holds: :attr:`domain` and the constraints its rules state
        for that quantity alone (``CrossMapLRN2d``'s backward needs ``size >= 2``)."""
        return Domain(tuple(c for c in self.conditions if not c.only_for or quantity in c.only_for))

    def conventions_of(self, quantity: str = "flops") -> tuple[str, ...]:
        """The conventions under which every part states ``quantity``, sorted."""
        if not self.parts:
            return ()
        sets = [{c for q, c in p.values if q == quantity} for p in self.parts]
        return tuple(sorted(set.intersection(*sets)))

    @property
    def conventions(self) -> tuple[str, ...]:
        """The conventions of FLOPs every part defines."""
        return self.conventions_of("flops")

    def quantity(self, quantity: str, convention: str | None = None) -> sympy.Expr:
        """The total of ``quantity`` under ``convention`` (None: the quantity's default),
        carrying the cost's domain; an error names the parts that do not define it."""
        name = _quantity(quantity).convention(convention)
        missing = [p.name for p in self.parts if (quantity, name) not in p.values]
        if missing:
            raise ConventionError(
                f"{quantity} under convention {name!r} is not defined for part(s) "
                f"{', '.join(missing)}; defined for all parts: "
                f"{', '.join(self.conventions_of(quantity)) or 'none'}"
            )
        total = sympy.Add(*(p.values[(quantity, name)] for p in self.parts))
        return with_domain(total, self.domain_of(quantity))

    @property
    def active_params(self) -> sympy.Expr:
        """The parameters one token uses: :attr:`params`, less what a part states it does not
        use (a mixture-of-experts layer's routed experts state ``("active_params", "count")``:
        the ``k`` of ``E`` experts a token goes to)."""
        total = sympy.Add(*(p.values.get(("active_params", "count"), p.params) for p in self.parts))
        return with_domain(total, self.domain_of("params"))

    def breakdown(self, convention: str | None = None) -> dict[str, tuple]:
        """``{part name: (params, FLOPs)}`` in the order the parts were added."""
        self.cost(convention)  # one clear error for a missing convention
        name = _quantity("flops").convention(convention)
        return {p.name: (p.params, p.values[("flops", name)]) for p in self.parts}

    # -- algebra -----------------------------------------------------------------------------
    def __add__(self, other: Any) -> Cost:
        if isinstance(other, int) and not isinstance(other, bool) and other == 0:
            return self  # so that sum(costs) works
        if not isinstance(other, Cost):
            return NotImplemented
        return Cost((*self.parts, *other.parts), None, (*self.conditions, *other.conditions))

    __radd__ = __add__

    def __mul__(self, factor: Any) -> Cost:
        if isinstance(factor, Cost):
            return NotImplemented
        k = as_exact("factor", factor)
        if k.is_negative:
            raise CompositionError(f"a cost cannot be scaled by the negative number {k}")
        return Cost((p._map(lambda e: k * e) for p in self.parts), None, self.conditions)

    __rmul__ = __mul__

    # -- structure ---------------------------------------------------------------------------
    def named(self, name: str) -> Cost:
        """The same cost with its part(s) named ``name`` (one part) or ``name.<part>``."""
        if len(self.parts) == 1:
            renamed = [self.parts[0].renamed(name)]
        else:
            renamed = [p.renamed(f"{name}.{p.name}") for p in self.parts]
        return Cost(renamed, self.output_shape, self.conditions)

    def group(self, name: str) -> Cost:
        """All parts collapsed into one part called ``name``."""
        return Cost(
            (p.renamed(name) for p in self.parts),
            self.output_shape,
            self.conditions,
        )

    def tied(self) -> Cost:
        """The same cost with no parameters of its own: for weights shared with another part
        (a tied output head) or a module called again.

        >>> import layercost_sym as lc
        >>> head = lc.rule("Linear").at(C_in=8, C_out=100, N=1, b=0).tied()
        >>> head.params, head.cost("macs")
        (0, 800)
        """
        return Cost(
            (
                Part(p.name, {**p.values, ("params", "count"): sympy.Integer(0)}, p.rule)
                for p in self.parts
            ),
            self.output_shape,
            self.conditions,
        )

    # -- substitution and evaluation ---------------------------------------------------------
    def at(self, **values: Any) -> Cost:
        """The cost with some of its symbols given values (ints or expressions)."""
        mapping = _mapping(self._free_symbols(), values, "this cost")
        return Cost(
            (p._map(lambda e: e.xreplace(mapping)) for p in self.parts),
            None
            if self.output_shape is None
            else tuple(e.xreplace(mapping) for e in self.output_shape),
            _decide(self.conditions, mapping),
        )

    def evaluate(
        self,
        values: Mapping[Any, Any],
        convention: str | None = None,
        *,
        quantity: str = "flops",
    ) -> Any:
        """The exact total of ``quantity`` under ``convention`` at ``values``, as
        :func:`layercost_sym.evaluate` gives it: the rules' constraints its values left
        undecided are checked (a :class:`~layercost_sym.DomainError` names the one that
        fails).

        >>> import layercost_sym as lc
        >>> d = lc.symbols("d")
        >>> proj = lc.rule("Linear").at(C_in=d, C_out=d, N=4, b=1)
        >>> proj.evaluate({"d": 8}), proj.evaluate({"d": 8}, quantity="params")  # 4*8*16, 72
        (512, 72)
        """
        return evaluate(self.quantity(quantity, convention), values)

    def simplify(self) -> Cost:
        """Every expression through :func:`sympy.simplify` (may take a while on big costs)."""
        return Cost(
            (p._map(sympy.simplify) for p in self.parts), self.output_shape, self.conditions
        )

    def expand(self) -> Cost:
        """Every expression expanded: a canonical polynomial where the cost is one."""
        return Cost((p._map(sympy.expand) for p in self.parts), self.output_shape, self.conditions)

    def _free_symbols(self) -> set[sympy.Symbol]:
        out: set = set()
        for p in self.parts:
            out |= p.params.free_symbols
            for e in p.costs.values():
                out |= e.free_symbols
        for e in self.output_shape or ():
            out |= e.free_symbols
        return out

    @property
    def free_symbols(self) -> set[sympy.Symbol]:
        """Symbols the parameters, costs and output shape are written in."""
        return self._free_symbols()

    # -- printing ----------------------------------------------------------------------------
    def table(
        self,
        convention: str | None = None,
        *,
        width: int | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> str:
        """A plain-text table: part, parameters, cost, and the total.

        Each formula has its like terms collected and its terms of highest degree first
        (:func:`layercost_sym.text.collected`).  ``values`` (hyperparameter values such as
        ``d_model=768``) add a column beside each formula with its value there (symbols not
        given stay) and rank terms of one degree by their size.  ``width`` bounds the lines:
        formulas too long for it are shortened to their leading terms
        (:func:`layercost_sym.text.shortened`), the widest columns first.

        >>> import layercost_sym as lc
        >>> d, B, n = lc.symbols("d B n_layer")
        >>> up = lc.rule("Linear").at(C_in=d, C_out=4 * d, N=B, b=1, name="up")
        >>> down = lc.rule("Linear").at(C_in=4 * d, C_out=d, N=B, b=1, name="down")
        >>> print((n * (up + down)).table("macs", values={"d": 768}))
        part   params               value            cost (macs)       value
        up     d*n_layer*(4*d + 4)  2362368*n_layer  4*B*d**2*n_layer  2359296*B*n_layer
        down   d*n_layer*(4*d + 1)  2360064*n_layer  4*B*d**2*n_layer  2359296*B*n_layer
        --------------------------------------------------------------------------------
        total  d*n_layer*(8*d + 5)  4722432*n_layer  8*B*d**2*n_layer  4718592*B*n_layer
        """
        from .text import collected, shortened

        convention = _quantity("flops").convention(convention)
        names = [*self.breakdown(convention), "total"]
        exprs = [(p, c) for p, c in self.breakdown(convention).values()]
        exprs.append((self.params, self.cost(convention)))
        header = ["part", "params", f"cost ({convention})"]
        sizes = None
        if values:
            free = {s.name: s for s in self._free_symbols()}
            given = {k: v for k, v in values.items() if k in free}
            sizes = {free[k]: as_exact(k, v) for k, v in given.items()}
            at = self.at(**given)
            valued = [(p, c) for p, c in at.breakdown(convention).values()]
            valued.append((at.params, at.cost(convention)))
            with_values: list[tuple[Any, ...]] = [
                (p, pv, c, cv) for (p, c), (pv, cv) in zip(exprs, valued, strict=True)
            ]
            exprs = with_values
            header = ["part", "params", "value", f"cost ({convention})", "value"]
        full = [[collected(e, sizes) for e in row] for row in exprs]
        columns = range(len(header) - 1)
        needs = [max(len(header[i + 1]), *(len(r[i]) for r in full)) for i in columns]
        room = None if width is None else width - max(map(len, names)) - 2 * len(needs)
        caps = _column_caps(needs, room)
        for _ in range(4):  # room left once long formulas are shortened goes to those columns
            cells = [
                [
                    text if len(text) <= cap else shortened(expr, cap, sizes)
                    for expr, text, cap in zip(row, texts, caps, strict=True)
                ]
                for row, texts in zip(exprs, full, strict=True)
            ]
            used = [max(len(header[i + 1]), *(len(r[i]) for r in cells)) for i in columns]
            cut = [i for i in columns if any(len(r[i]) > caps[i] for r in full)]
            spare = 0 if room is None else room - sum(used)
            if not cut or spare < len(cut):
                break
            caps = [used[i] + (spare // len(cut) if i in cut else 0) for i in columns]
        if values:  # a value that reads as its formula (a count already a number) is not repeated
            for row in cells:
                for i in (1, 3):
                    if row[i] == row[i - 1]:
                        row[i] = ""
        lines = [header, *([name, *texts] for name, texts in zip(names, cells, strict=True))]
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]

        def join(line: list[str]) -> str:
            return "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()

        out = [join(line) for line in lines]
        out.insert(-1, "-" * (sum(widths) + 2 * (len(widths) - 1)))
        return "\n".join(out)

    def to_latex(
        self,
        convention: str | None = None,
        *,
        at: Mapping[str, int] | None = None,
        math: bool = False,
        caption: str | None = None,
        label: str | None = None,
    ) -> str:
        r"""A LaTeX table (part, params, cost) with the total as its last row
        (:mod:`layercost_sym.tables`): a ``booktabs`` ``table`` float whose caption states the
        convention (and ``caption`` first); ``at``: a column of exact values at those sizes
        beside each column of formulas, the sizes in the caption.  ``math=True`` gives an
        ``array`` for math mode (what notebooks render).

        >>> import layercost_sym as lc
        >>> d = lc.symbols("d")
        >>> proj = lc.rule("Linear").at(C_in=d, C_out=d, N=1, b=0, name="proj")
        >>> print(proj.to_latex("macs", math=True))
        \begin{array}{lll}
        \text{part} & \text{params} & \text{FLOPs (macs)} \\ \hline
        \text{proj} & d^{2} & d^{2} \\
        \hline
        \text{total} & d^{2} & d^{2}
        \end{array}
        """
        return self._table(convention, at, caption).to_latex(math=math, label=label)

    def _table(self, convention: str | None, at: Any = None, caption: str | None = None) -> Any:
        from .tables import cost_table

        if caption is None:
            return cost_table(self, convention, at=at)
        return cost_table(self, convention, at=at, description=caption)

    def to_pandas(self, convention: str | None = None, *, at: Mapping[str, int] | None = None):
        """The table of :meth:`to_latex` as a ``pandas.DataFrame`` (see
        :meth:`layercost_sym.tables.Table.to_pandas`)."""
        return self._table(convention, at).to_pandas()

    def _repr_latex_(self) -> str:
        return self._table(None)._repr_latex_()

    def _repr_html_(self) -> str:
        return self._table(None).to_html()

    def __repr__(self) -> str:
        names = ", ".join(p.name for p in self.parts)
        return f"<Cost of {len(self.parts)} part(s): {names}>"


def _column_caps(needs: list[int], room: int | None) -> list[int]:
    """Widths for columns that need ``needs`` characters in ``room`` in all: each gets what it
    needs up to one cap, the largest that fits (the widest columns give way first)."""
    if room is None or sum(needs) <= room:
        return list(needs)
    low, high = 0, max(needs)
    while low < high:  # the largest cap c with sum(min(n, c)) <= room
        mid = (low + high + 1) // 2
        if sum(min(n, mid) for n in needs) <= room:
            low = mid
        else:
            high = mid - 1
    return [min(n, max(low, _MIN_COLUMN)) for n in needs]


_MIN_COLUMN = 40  # room for a leading term, or for the size of a formula that has none


def _mapping(symbols: set[sympy.Symbol], values: Mapping[str, Any], owner: str) -> dict:
    """``{Symbol: value}`` for ``values`` keyed by the names of ``symbols`` (or a square
    shorthand such as ``k`` for ``k_h`` and ``k_w``); an unknown name is an error."""
    by_name = {s.name: s for s in symbols}
    g = glossary()
    mapping: dict[sympy.Symbol, sympy.Expr] = {}
    for key, value in values.items():
        targets = [by_name[key]] if key in by_name else []
        if not targets:
            info = g.info.get(key)
            targets = [by_name[m] for m in (info.square if info else ()) if m in by_name]
        if not targets:
            raise CompositionError(
                f"{owner} has no symbol {key!r}; its symbols: "
                f"{', '.join(sorted(by_name)) or 'none'}"
            )
        v = as_exact(key, value)
        for target in targets:
            _check_domain(target, key, v)
            mapping[target] = v
    return mapping


def _check_domain(symbol: sympy.Symbol, key: str, value: sympy.Expr) -> None:
    info = glossary().by_symbol(symbol)
    if not value.is_number:
        return  # an expression: its symbols carry their own assumptions
    if not value.is_integer and symbol.is_integer:
        raise CompositionError(f"{key} = {value} is not an integer")
    if info is not None and info.domain == "flag" and value not in (0, 1):
        raise CompositionError(f"{key} is a flag (0 or 1), got {value}")
    if symbol.is_positive and not value.is_positive:
        raise CompositionError(f"{key} must be positive, got {value}")
    if symbol.is_nonnegative and value.is_negative:
        raise CompositionError(f"{key} must be non-negative, got {value}")


def _decide(conditions: Iterable[Condition], mapping: Mapping) -> tuple[Condition, ...]:
    """The conditions with ``mapping`` substituted: a decided one is checked (a failure raises
    :class:`~layercost_sym.DomainError` naming it; one of some quantities alone is kept, false,
    so that those quantities refuse while the others answer), the undecided ones are kept."""
    given = {s.name: int(v) for s, v in mapping.items() if getattr(v, "is_Integer", False)}
    kept = []
    for c in conditions:
        cond = c.condition.xreplace(mapping)
        if (cond is sympy.false or cond == sympy.false) and not c.only_for:
            raise DomainError(c.message(given))
        if cond is sympy.true or cond == sympy.true:
            continue
        quantities = tuple((n, e.xreplace(mapping)) for n, e in c.quantities)
        kept.append(replace(c, condition=cond, quantities=quantities))
    return tuple(kept)


def rule_at(rule: Any, *, training: bool = False, name: str | None = None, **values: Any) -> Cost:
    """A rule with its symbols bound: one part named ``name`` (default: the rule's name).

    Symbols left out stay the rule's own symbols.  Constraints that the values decide are
    checked now (a violated one raises :class:`~layercost_sym.DomainError` naming it); the
    rest travel with the cost and are checked by :meth:`Cost.evaluate`.

    >>> import layercost_sym as lc
    >>> conv = lc.rule("Conv2d").at(N=1, C_in=3, C_out=64, k=7, s=2, p=3, d=1, g=1, b=0,
    ...                             H=224, W=224)
    >>> conv.output_shape
    (1, 64, 112, 112)
    >>> conv.cost("macs")
    118013952
    """
    mapping = _mapping(_rule_symbols(rule), values, f"rule {rule.name}")
    # data-dependent symbols not given take the rule's documented default, as bind() does
    for symbol, default in rule.data_defaults().items():
        if symbol not in mapping:
            mapping[symbol] = default.xreplace(mapping)
    part_name = name or rule.name
    bound: dict[tuple[str, str], sympy.Expr] = {}
    for quantity, convention, mode in rule.compact:
        if mode == (bool(training) and _quantity(quantity).training):
            expr = rule.quantity(quantity, convention, training)
            bound[(quantity, convention)] = expr.xreplace(mapping)
    origin = rule.name if part_name == rule.name else f"{part_name} ({rule.name})"
    conditions = [replace(c, origin=origin) for c in rule.conditions(training)]
    return Cost(
        [Part(part_name, bound, rule.name)],
        tuple(e.xreplace(mapping) for e in rule.output_shape),
        _decide(conditions, mapping),
    )


def _rule_symbols(rule: Any) -> set[sympy.Symbol]:
    exprs = [*rule.output_shape, *(rule.expand(e) for e in rule.compact.values())]
    exprs += [c.condition for c in rule.constraints]
    out: set = set()
    for e in exprs:
        out |= e.free_symbols
    return out
