"""Cost cards: a rule, a composed cost, an architecture or an analysed model as versioned JSON.

A card is the exchange format for other tools.  It holds every quantity the object answers
(``params``, ``flops`` under each convention, ``bytes``, ``saved``, ``backward``) as expression
text in the catalogue's grammar (``formulas/README.md``), ``{quantity: {convention: text}}``; a
rule's card writes them as the catalogue does, with its defined quantities (``H_out``) named
and defined under ``defines``.  Beside them: the symbols with their meaning, domain and LaTeX;
the conditions where the formulas hold (a rule's constraints with torch's reasons, an analysis'
guards) and, per value, which of them it holds under (``domains``); the conventions'
definitions; the versions of the library and of torch.  ``layercost_sym/card.schema.json`` is
its JSON Schema (:func:`schema`).  A card is read back while it is made and compared with the
original, value by value and domain by domain, so no card holds text that means something else.

:func:`load_card` reads a card through the safe parser (never ``eval``) into a :class:`Card`,
whose expressions carry their domains again: evaluation refuses what the original refuses, in
the same words.

(Over 500 lines by design: the card format, written and read in one module so that the two stay
in step; the expression text itself is :mod:`layercost_sym.grammar`'s.)

>>> import json, layercost_sym as lc
>>> data = lc.card(lc.rule("Conv2d"))
>>> data["format_version"], data["kind"], data["quantities"]["flops"]["macs"]
('1.0', 'rule', 'C_in*C_out*H_out*N*W_out*k_h*k_w/g')
>>> data["defines"]["H_out"]
'floor((H + 2*p_h - d_h*(k_h - 1) - 1)/s_h) + 1'
>>> data["conditions"][1]["reason"]
'groups must divide in_channels and out_channels'
>>> loaded = lc.load_card(json.dumps(data))
>>> lc.evaluate(loaded.quantity("params"), dict(C_in=4, C_out=8, k=3, g=2, b=1))
152
>>> lc.evaluate(loaded.quantity("params"), dict(C_in=3, C_out=8, k=3, g=2, b=1))
Traceback (most recent call last):
...
layercost_sym.errors.DomainError: Conv2d: constraint 'C_in % g == 0 and C_out % g == 0' fails
(groups must divide in_channels and out_channels) at C_in=3, C_out=8, g=2
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from functools import cache
from importlib import metadata, util
from pathlib import Path
from types import MappingProxyType
from typing import Any

import sympy

from ._version import __version__
from .composition import Cost
from .domain import Condition, Domain, with_domain
from .domain import domain as domain_of
from .errors import CardError, ConventionError, ExpressionError
from .evaluation import evaluate
from .glossary import glossary
from .grammar import read, text_of
from .parsing import parse
from .printing import symbol_latex
from .quantities import QuantityShorthands, quantities
from .quantities import quantity as _quantity
from .rule import Rule, expand_defines
from .zoo import Architecture

__all__ = ["FORMAT_VERSION", "PROVEN_TORCH", "Card", "CardSymbol", "card", "load_card", "schema"]

FORMAT_VERSION = "1.0"  # major.minor: a reader takes every minor version of its major
# the torch the rules are proven against: the version CI pins in .ci/run (tests/test_cards.py
# checks that they agree)
PROVEN_TORCH = "2.14.1"

_KINDS = ("rule", "cost", "architecture", "analysis")
_DOMAINS = ("positive", "nonnegative", "flag", "positive_real", "nonnegative_real")
_SYMBOL_FIELDS = ("meaning", "domain", "latex")
_HAS_ONLY_FOR = "only_for" in {f.name for f in fields(Condition)}

# (quantity, convention, training) -> a value the card states
Key = tuple[str, str, bool]


# -- making a card -------------------------------------------------------------------------------


def _torch() -> dict[str, str | None]:
    """The torch the rules are proven against, and the one installed: the running one where an
    analysis imported it, else from the installed metadata (torch is not imported for this)."""
    installed = None
    running = sys.modules.get("torch")
    if running is not None and isinstance(getattr(running, "__version__", None), str):
        installed = str(running.__version__)
    elif util.find_spec("torch") is not None:
        try:
            installed = metadata.version("torch")
        except metadata.PackageNotFoundError:
            installed = None
    return {"proven_against": PROVEN_TORCH, "installed": installed}


def _symbol_domain(symbol: sympy.Symbol) -> str:
    info = glossary().by_symbol(symbol)
    if info is not None:
        return info.domain
    suffix = "" if symbol.is_integer else "_real"
    if symbol.is_positive:
        return "positive" + suffix
    if symbol.is_nonnegative:
        return "nonnegative" + suffix
    raise CardError(
        f"symbol {symbol.name!r} has no domain a card can state (make it with lc.symbols: a "
        "positive or non-negative integer or real)"
    )


class _Writer:
    """A card's texts, symbols and conditions, gathered while it is made.

    ``written`` gives, for a condition, the condition and the defined quantities to write (a
    rule writes them as the catalogue does, its defined quantities named)."""

    def __init__(
        self,
        what: str,
        meanings: Mapping[str, str] | None = None,
        written: Callable[[Condition], tuple[sympy.Basic, dict[str, sympy.Basic]]] | None = None,
    ) -> None:
        self.what = what
        self.meanings = meanings or {}
        self.written = written or (lambda c: (c.condition, dict(c.quantities)))
        self.symbols: dict[str, sympy.Symbol] = {}
        self.conditions: dict[Condition, int] = {}
        # path -> (where in the loaded card, the value it must read back as)
        self.expected: dict[str, tuple[tuple[Any, ...], sympy.Basic]] = {}

    def symbol(self, symbol: sympy.Symbol) -> None:
        seen = self.symbols.setdefault(symbol.name, symbol)
        if seen != symbol:
            raise CardError(
                f"card of {self.what}: two symbols named {symbol.name!r} with different domains"
            )

    def text(self, expr: Any, where: str) -> str:
        expr = parse(expr) if isinstance(expr, str) else sympy.sympify(expr)  # text: the parser
        for s in expr.free_symbols:
            self.symbol(s)
        try:
            return text_of(expr)
        except CardError as exc:
            raise CardError(f"card of {self.what}: {where}: {exc}") from None

    def values(
        self, entries: Iterable[tuple[str, str, sympy.Basic, sympy.Basic]], where: str, mode: bool
    ) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, list[int]]]]:
        """``{quantity: {convention: text}}`` of ``(quantity, convention, written, value)`` and
        the indices of the conditions each value holds under."""
        texts: dict[str, dict[str, str]] = {}
        domains: dict[str, dict[str, list[int]]] = {}
        for q, c, written, value in entries:
            texts.setdefault(q, {})[c] = self.text(written, f"{where}.{q}.{c}")
            domains.setdefault(q, {})[c] = self.indices(domain_of(value))
            self.expected[f"{where}.{q}.{c}"] = (("values", (q, c, mode)), value)
        return texts, domains

    def indices(self, domain: Domain) -> list[int]:
        return [self.conditions.setdefault(c, len(self.conditions)) for c in domain.conditions]

    def glossary(self, names: Iterable[str]) -> dict[str, dict[str, str]]:
        out = {}
        for name in dict.fromkeys([*names, *sorted(self.symbols)]):
            symbol = self.symbols[name]
            info = glossary().by_symbol(symbol)
            meaning = info.meaning if info is not None else self.meanings.get(name, "")
            out[name] = {
                "meaning": meaning or f"a size of this card outside the glossary ({name})",
                "domain": _symbol_domain(symbol),
                "latex": info.latex if info is not None else symbol_latex(name),
            }
        return out

    def condition_entries(self) -> list[dict[str, Any]]:
        out = []
        for i, c in enumerate(self.conditions):
            where = f"conditions[{i}]"
            condition, named = self.written(c)
            entry: dict[str, Any] = {
                "kind": c.kind,
                "condition": self.text(condition, f"{where}.condition"),
                "text": c.text,
                "reason": c.reason,
                "origin": c.origin,
                "quantities": {
                    n: self.text(e, f"{where}.quantities.{n}") for n, e in named.items()
                },
                "only_for": list(getattr(c, "only_for", ())),
            }
            if c.display is not None:
                entry["shown"] = c.display()
            out.append(entry)
        return out


def _answered(
    obj: Any, chosen: Iterable[str] | None
) -> list[tuple[str, str, sympy.Basic, sympy.Basic]]:
    """Every ``(quantity, convention, value, value)`` a cost or an analysis answers (of the
    ``chosen`` quantities)."""
    out = []
    for q in quantities():
        if chosen is not None and q not in chosen:
            continue
        for c in obj.conventions_of(q):
            try:
                value = obj.quantity(q, c)
            except ConventionError:  # a value the engine refuses to state is left out
                continue
            out.append((q, c, value, value))
    return out


def _conventions(*used: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for block in used:
        for q, conventions in block.items():
            info = quantities()[q]
            entry = out.setdefault(
                q,
                {
                    "meaning": info.meaning,
                    "default": info.default,
                    "training": info.training,
                    "conventions": {},
                },
            )
            for c in conventions:
                definition = info.conventions[c]
                described = {"meaning": definition.meaning}
                if definition.derived is not None:
                    described["derived"] = f"{definition.derived[1]} x {definition.derived[0]}"
                entry["conventions"][c] = described
    return out


def _quantity_name(name: str) -> str:
    return _quantity(name).name  # an unknown one: ConventionError naming those there are


def _default_flops(stated: Mapping[str, Mapping[str, str]]) -> str:
    """The FLOPs convention of a card's shorthands: the quantity's default where stated, else
    the first stated in ``quantities.toml``'s order (an architecture of macs alone)."""
    flops = _quantity("flops")
    found = [c for c in flops.conventions if c in stated.get("flops", {})]
    return flops.default if flops.default in found or not found else found[0]


def _is_analysis(obj: Any) -> bool:
    # an Analysis exists only once torchtools is imported: asking needs no torch import
    module = sys.modules.get("layercost_sym.torchtools.analysis")
    return module is not None and isinstance(obj, module.Analysis)


def card(
    obj: Any,
    *,
    name: str | None = None,
    convention: str | None = None,
    depth: int | None = None,
    quantities: Iterable[str] | None = None,
) -> dict[str, Any]:
    """The cost card of a :class:`~layercost_sym.Rule`, a :class:`~layercost_sym.Cost`, an
    :class:`~layercost_sym.Architecture` or an analysis (:func:`~layercost_sym.analyze`), as
    JSON data (``json.dumps`` it); see the module docstring and ``card.schema.json``.

    ``name`` names the card (default: the rule's or architecture's name, ``"model"`` for an
    analysis, ``"cost"``); ``convention`` is the FLOPs convention of the shorthand ``cost`` and
    of an architecture's parts' and an analysis' rows' ``cost`` (default: the analysis' own,
    else ``exact``); ``depth`` sums an analysis' ``layers`` rows per module prefix of that many
    parts (as ``Analysis.rows``).  ``quantities`` limits a cost's or an analysis' card to
    those quantities (``params`` and ``flops`` always): an analysis states the others as sums
    over its calls that take long to build for a large model."""
    if convention is not None:
        _quantity("flops").convention(convention)  # an unknown one: ConventionError
    wanted = None if quantities is None else {"params", "flops", *map(_quantity_name, quantities)}
    if isinstance(obj, Rule):
        data, writer = _rule_card(obj, convention)
    elif isinstance(obj, Architecture):
        data, writer = _cost_card(obj.total, "architecture", obj.name, convention, obj, wanted)
    elif isinstance(obj, Cost):
        data, writer = _cost_card(obj, "cost", name or "cost", convention, None, wanted)
    elif _is_analysis(obj):
        data, writer = _analysis_card(obj, name or "model", convention, depth, wanted)
    else:
        raise CardError(
            f"no card for an object of type {type(obj).__name__}: give a rule, a cost, an "
            "architecture or an analysis"
        )
    _verify(data, writer)
    return data


def _head(kind: str, name: str) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "name": name,
        "library": {"name": "layercost_sym", "version": __version__},
        "torch": _torch(),
    }


def _finish(
    data: dict[str, Any], writer: _Writer, symbols: Iterable[str], convention: str | None
) -> tuple[dict[str, Any], _Writer]:
    data["conditions"] = writer.condition_entries()
    data["symbols"] = list(symbols)
    data["glossary"] = writer.glossary(data["symbols"])
    moded = data.get("training_mode", {}).get("quantities", {})
    data["conventions"] = _conventions(data["quantities"], moded)
    flops = data["quantities"].get("flops", {})
    convention = convention or _default_flops(data["quantities"])
    if convention not in flops:
        raise ConventionError(
            f"{writer.what} states no flops under convention {convention!r}; it states: "
            f"{', '.join(flops) or 'none'}"
        )
    data["convention"] = convention
    data["params"] = data["quantities"]["params"]["count"]
    data["cost"] = flops[convention]
    return data, writer


def _rule_card(rule: Rule, convention: str | None) -> tuple[dict[str, Any], _Writer]:
    constraints = {
        (c.text, c.reason, tuple(getattr(c, "quantities", ()))): c for c in rule.constraints
    }
    named = {s.name: s for s in rule.defines}

    def written(c: Condition) -> tuple[sympy.Basic, dict[str, sympy.Basic]]:
        # as the catalogue writes it: the constraint's condition, its defined quantities named
        found = constraints[(c.text, c.reason, tuple(getattr(c, "only_for", ())))]
        return found.condition, {n: named[n] for n, _ in c.quantities}

    writer = _Writer(f"rule {rule.name}", written=written)
    data = _head("rule", rule.name)
    data.update(module=rule.module, family=rule.family, note=rule.note, source=rule.source)
    data["defines"] = {s.name: writer.text(e, f"defines.{s.name}") for s, e in rule.defines.items()}
    for s in rule.defines:
        writer.symbol(s)
    data["output_shape"] = [
        writer.text(e, f"output_shape[{i}]") for i, e in enumerate(rule.compact_output_shape)
    ]
    data["output_domain"] = writer.indices(rule.domain(False))
    for i, e in enumerate(rule.output_shape):
        writer.expected[f"output_shape[{i}]"] = (("output", i), e)
    for mode, where in ((False, "quantities"), (True, "training_mode.quantities")):
        entries = [
            (q, c, compact, rule.quantity(q, c, mode))
            for (q, c, m), compact in rule.compact.items()
            if m == mode
        ]
        texts, domains = writer.values(entries, where, mode)
        if mode and texts:
            data["training_mode"] = {"quantities": texts, "domains": domains}
        elif not mode:
            data["quantities"], data["domains"] = texts, domains
    return _finish(data, writer, rule.symbols, convention)


def _cost_card(
    cost: Cost,
    kind: str,
    name: str,
    convention: str | None,
    arch: Architecture | None,
    wanted: set[str] | None,
) -> tuple[dict[str, Any], _Writer]:
    meanings: dict[str, str] = {}
    symbols = sorted(s.name for s in cost.free_symbols)
    data = _head(kind, name)
    if arch is not None:
        from .zoo import _spec, defaults

        meanings = {h.name: h.meaning for h in _spec(arch.name).hyperparameters}
        hp = arch.hyperparameters
        own = [k for k, v in hp.items() if isinstance(v, sympy.Symbol) and v.name == k]
        symbols = [*own, *(s for s in symbols if s not in own)]
        data.update(
            architecture=arch.name,
            mirrors=arch.mirrors,
            hyperparameters={k: str(v) for k, v in hp.items()},
            defaults=defaults(arch.name),
        )
        if hasattr(arch, "active_params"):  # a mixture of experts': the parameters a token uses
            data["active_params"] = text_of(arch.active_params)
    writer = _Writer(f"{kind} {name}", meanings)
    hyper = [v for v in (arch.hyperparameters.values() if arch is not None else ())]
    for s in set(cost.free_symbols).union(
        *(v.free_symbols for v in hyper if isinstance(v, sympy.Basic))
    ):
        writer.symbol(s)
    data["quantities"], data["domains"] = writer.values(
        _answered(cost, wanted), "quantities", False
    )
    chosen = convention or _default_flops(data["quantities"])
    data["parts"] = {}
    for part in cost.parts:
        where = f"parts.{part.name}.quantities"
        texts: dict[str, dict[str, str]] = {}
        for (q, c), e in part.values.items():
            texts.setdefault(q, {})[c] = writer.text(e, f"{where}.{q}.{c}")
            writer.expected[f"{where}.{q}.{c}"] = (("parts", part.name, (q, c)), e)
        data["parts"][part.name] = {
            "rule": part.rule,
            "params": texts.get("params", {}).get("count", "0"),
            "cost": texts.get("flops", {}).get(chosen, ""),
            "quantities": texts,
        }
    return _finish(data, writer, symbols, chosen)


def _analysis_card(
    analysis: Any, name: str, convention: str | None, depth: int | None, wanted: set[str] | None
) -> tuple[dict[str, Any], _Writer]:
    writer = _Writer(f"analysis {name}")
    for s in analysis.symbols:
        writer.symbol(s)
    data = _head("analysis", name)
    chosen = convention or analysis.convention
    data["quantities"], data["domains"] = writer.values(
        _answered(analysis, wanted), "quantities", False
    )
    data.update(training=analysis.training, backward=analysis.backward)
    data["costs"] = dict(data["quantities"].get("flops", {}))  # shorthand: flops per convention
    data["guards"] = analysis.range
    data["layers"] = []
    for i, (part, group, params, cost) in enumerate(analysis._groups(depth, chosen)):
        row = {
            "name": part,
            # every rule, unabridged: the rows' rules before they are summarised for people
            "rules": ", ".join(dict.fromkeys(layer.rule for layer in group)),
            "params": writer.text(params, f"layers[{i}].params"),
            "cost": writer.text(cost, f"layers[{i}].cost"),
        }
        writer.expected[f"layers[{i}].params"] = (("parts", part, ("params", "count")), params)
        writer.expected[f"layers[{i}].cost"] = (("parts", part, ("flops", chosen)), cost)
        data["layers"].append(row)
    data["unsupported"] = [
        {"name": u.name, "kind": u.kind, "what": u.what, "detail": u.detail, "counted": u.counted}
        for u in analysis.unsupported
    ]
    data["costed_by_operators"] = [
        {"name": m.name, "what": m.what, "ops": list(m.ops), "detail": m.detail}
        for m in analysis.costed_by_operators
    ]
    data["pinned"] = {n: {"value": v, "note": note} for n, (v, note) in analysis.pinned.items()}
    if hasattr(analysis, "active_params"):  # a mixture of experts': the parameters a token uses
        data["active_params"] = writer.text(analysis.active_params, "active_params")
        data["notes"] = list(analysis.notes)
    return _finish(data, writer, [s.name for s in analysis.symbols], chosen)


def _verify(data: dict[str, Any], writer: _Writer) -> None:
    """Read the card back and compare every value (and its domain) with the original's."""
    loaded = load_card(data)
    for where, (key, value) in writer.expected.items():
        if key[0] == "output":
            back = loaded.output_shape[key[1]]
        elif key[0] == "values":
            back = loaded.values[key[1]]
        else:
            back = loaded.parts[key[1]][key[2]]
        if back != value:
            raise CardError(
                f"card of {writer.what}: {where}: the text reads back as another expression "
                f"than {value}"
            )
        if domain_of(back) != domain_of(value):
            raise CardError(f"card of {writer.what}: {where}: its conditions read back otherwise")


@cache
def _schema_text() -> str:
    return Path(__file__).with_name("card.schema.json").read_text(encoding="utf-8")


def schema() -> dict[str, Any]:
    """The JSON Schema of cards (``layercost_sym/card.schema.json``), as a new dict.

    >>> schema()["properties"]["format_version"]["pattern"]
    '^1\\\\.[0-9]+$'
    """
    loaded: dict[str, Any] = json.loads(_schema_text())
    return loaded


# -- reading a card ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CardSymbol:
    """One symbol of a card: its SymPy symbol, meaning, domain and LaTeX."""

    name: str
    symbol: sympy.Symbol
    meaning: str
    domain: str
    latex: str


@dataclass(frozen=True, eq=False)
class Card(QuantityShorthands):
    """A cost card read back (:func:`load_card`): its values as expressions that carry their
    domains, so that :func:`~layercost_sym.evaluate` refuses what the original refuses.

    ``values`` maps ``(quantity, convention, training)`` to a value (``training`` True for a
    rule's training-mode values); ``parts`` an architecture's parts (an analysis' ``layers``
    rows) to ``{(quantity, convention): expression}``; ``data`` is the card's JSON data."""

    kind: str
    name: str
    format_version: str
    library_version: str
    torch_version: str  # the torch the rules are proven against
    convention: str  # the FLOPs convention of the shorthand cost (and of quantity("flops"))
    symbols: tuple[sympy.Symbol, ...]
    glossary: Mapping[str, CardSymbol]
    conditions: tuple[Condition, ...]
    values: Mapping[Key, sympy.Basic]
    defaults: Mapping[str, str]  # quantity -> its default convention
    training_quantities: frozenset[str]  # the quantities that have a training mode
    parts: Mapping[str, Mapping[tuple[str, str], sympy.Basic]]
    output_shape: tuple[sympy.Basic, ...] = ()
    data: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def quantities(self) -> tuple[str, ...]:
        """The quantities the card states, in its order."""
        return tuple(dict.fromkeys(q for q, _, _ in self.values))

    def conventions_of(self, quantity: str = "flops", training: bool = False) -> tuple[str, ...]:
        """The conventions under which the card states ``quantity``, sorted."""
        mode = bool(training) and quantity in self.training_quantities
        return tuple(sorted({c for q, c, m in self.values if q == quantity and m == mode}))

    def quantity(
        self, quantity: str, convention: str | None = None, training: bool = False
    ) -> sympy.Expr:
        """``quantity`` under ``convention`` (None: the card's ``convention`` for FLOPs, else
        the quantity's default); ``training=True``: a rule card's training-mode value.  An
        expression that carries its domain."""
        if convention is None:
            convention = self.convention if quantity == "flops" else self.defaults.get(quantity)
        # as a rule: a quantity without a training mode has one value in both modes
        key = (quantity, str(convention), bool(training) and quantity in self.training_quantities)
        if key not in self.values:
            mode = " in training mode" if key[2] else ""
            raise ConventionError(
                f"the {self.kind} card {self.name!r} states no {quantity} under convention "
                f"{convention!r}{mode}; it states: "
                f"{', '.join(self.conventions_of(quantity, key[2])) or 'none'}"
            )
        return self.values[key]

    def evaluate(
        self,
        values: Mapping[Any, Any],
        convention: str | None = None,
        *,
        quantity: str = "flops",
        training: bool = False,
    ) -> Any:
        """:func:`~layercost_sym.evaluate` of :meth:`quantity` at ``values``."""
        return evaluate(self.quantity(quantity, convention, training), values)

    def to_dict(self) -> dict[str, Any]:
        """The card's JSON data (a new copy)."""
        copied: dict[str, Any] = json.loads(json.dumps(dict(self.data)))
        return copied

    def __repr__(self) -> str:
        return f"<Card {self.kind} {self.name!r}: {', '.join(self.quantities)}>"


class _Reader:
    """Reads a card's data, naming the JSON path of the first problem."""

    def __init__(self) -> None:
        self.symbols: dict[str, sympy.Basic] = {}
        self.defines: dict[sympy.Symbol, sympy.Expr] = {}

    @staticmethod
    def fail(path: str, problem: str) -> CardError:
        return CardError(f"malformed card at {path or '(top)'}: {problem}")

    def get(self, obj: Any, key: str, path: str, kind: type) -> Any:
        if not isinstance(obj, dict):
            raise self.fail(path, "expected an object")
        where = f"{path}.{key}" if path else key
        if key not in obj:
            raise self.fail(where, "missing")
        value = obj[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise self.fail(where, f"expected {kind.__name__}, got {type(value).__name__}")
        return value

    def expr(self, text: Any, path: str, condition: bool = False) -> Any:
        """Text read through the safe parser, the card's defined quantities substituted."""
        try:
            return read(text, self.symbols, condition).xreplace(self.defines)
        except ExpressionError as exc:
            raise self.fail(path, str(exc)) from None

    def symbol(self, name: str, entry: Any, path: str) -> sympy.Symbol:
        for key in _SYMBOL_FIELDS:
            self.get(entry, key, path, str)
        domain = entry["domain"]
        if not name.isidentifier() or name.startswith("__"):
            raise self.fail(path, f"symbol name {name!r} is not a plain identifier")
        if domain not in _DOMAINS:
            raise self.fail(f"{path}.domain", f"must be one of {', '.join(_DOMAINS)}")
        info = glossary().info.get(name)
        if info is not None and info.domain == domain:
            return info.symbol
        if domain == "flag":
            raise self.fail(f"{path}.domain", f"{name!r} is not a flag of the glossary")
        base, _, real = domain.partition("_")
        return sympy.Symbol(name, **{"real" if real else "integer": True, base: True})

    def values(self, block: Any, path: str) -> dict[tuple[str, str], sympy.Basic]:
        if not isinstance(block, dict):
            raise self.fail(path, "expected an object {quantity: {convention: text}}")
        out = {}
        for q, conventions in block.items():
            if not isinstance(conventions, dict):
                raise self.fail(f"{path}.{q}", "expected an object {convention: text}")
            for c, text in conventions.items():
                out[(q, c)] = self.expr(text, f"{path}.{q}.{c}")
        return out

    def indices(self, value: Any, path: str, count: int) -> list[int]:
        if not isinstance(value, list):
            raise self.fail(path, "expected a list of indices of conditions")
        for i in value:
            if type(i) is not int or not 0 <= i < count:
                raise self.fail(path, f"{i!r} is not the index of a condition")
        return value

    def condition(self, entry: Any, path: str) -> Condition:
        g = self.get
        kind = g(entry, "kind", path, str)
        if kind not in ("constraint", "guard"):
            raise self.fail(f"{path}.kind", "must be 'constraint' or 'guard'")
        named = g(entry, "quantities", path, dict)
        made: dict[str, Any] = {
            "condition": self.expr(g(entry, "condition", path, str), f"{path}.condition", True),
            "text": g(entry, "text", path, str),
            "reason": g(entry, "reason", path, str),
            "origin": g(entry, "origin", path, str),
            "quantities": tuple(
                (n, self.expr(t, f"{path}.quantities.{n}")) for n, t in named.items()
            ),
            "kind": kind,
        }
        only_for = entry.get("only_for", [])
        if not isinstance(only_for, list) or not all(isinstance(q, str) for q in only_for):
            raise self.fail(f"{path}.only_for", "expected a list of quantity names")
        if only_for and _HAS_ONLY_FOR:
            made["only_for"] = tuple(only_for)
        shown = entry.get("shown")
        if shown is not None:
            if not isinstance(shown, str):
                raise self.fail(f"{path}.shown", "expected text")
            made["display"] = lambda: shown
        return Condition(**made)

    def carrying(
        self, block: Any, domains: Any, path: str, conditions: tuple[Condition, ...]
    ) -> dict[tuple[str, str], sympy.Basic]:
        """A block's values, each carrying the conditions its ``domains`` entry names."""
        out = {}
        for (q, c), expr in self.values(block, path).items():
            found = domains.get(q) if isinstance(domains, dict) else None
            where = f"{path.replace('quantities', 'domains')}.{q}.{c}"
            if not isinstance(found, dict) or c not in found:
                raise self.fail(where, "missing: the indices of the conditions it holds under")
            chosen = self.indices(found[c], where, len(conditions))
            out[(q, c)] = with_domain(expr, Domain(tuple(conditions[i] for i in chosen)))
        return out


def _source(source: str | os.PathLike[str] | Mapping[str, Any]) -> Any:
    if isinstance(source, Mapping):
        return json.loads(json.dumps(dict(source)))  # a copy the caller cannot change
    text = os.fspath(source)
    if isinstance(source, os.PathLike) or not text.lstrip().startswith("{"):
        try:
            text = Path(text).read_text(encoding="utf-8")
        except OSError as exc:
            raise CardError(f"cannot read a card from {text[:80]!r}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CardError(f"a card is JSON, and this is not: {exc}") from None


def load_card(source: str | os.PathLike[str] | Mapping[str, Any]) -> Card:
    """A card read back: ``source`` is its JSON text, the path of a JSON file, or the data
    :func:`card` made.  Every text goes through the safe parser; a malformed card raises
    :class:`~layercost_sym.CardError` naming the JSON path of the problem
    (``quantities.flops.exact``)."""
    data = _source(source)
    r = _Reader()
    g = r.get
    version = g(data, "format_version", "", str)
    major, _, minor = version.partition(".")
    if major != FORMAT_VERSION.partition(".")[0] or not minor.isdigit():
        raise r.fail("format_version", f"{version!r}: this library reads {FORMAT_VERSION}")
    kind = g(data, "kind", "", str)
    if kind not in _KINDS:
        raise r.fail("kind", f"{kind!r} is not one of {', '.join(_KINDS)}")
    for name, entry in g(data, "glossary", "", dict).items():
        r.symbols[name] = r.symbol(name, entry, f"glossary.{name}")
    order = g(data, "symbols", "", list)
    for i, name in enumerate(order):
        if name not in r.symbols:
            raise r.fail(f"symbols[{i}]", f"{name!r} is not in the card's glossary")
    defines = []
    for name, text in (data.get("defines") or {}).items():
        if not isinstance(r.symbols.get(name), sympy.Symbol):
            raise r.fail(f"defines.{name}", f"{name!r} is not in the card's glossary")
        defines.append((r.symbols[name], r.expr(text, f"defines.{name}")))
    r.defines = expand_defines(defines)  # in order: later ones use earlier ones
    conditions = tuple(
        r.condition(entry, f"conditions[{i}]")
        for i, entry in enumerate(g(data, "conditions", "", list))
    )
    domains = g(data, "domains", "", dict)
    plain = r.carrying(g(data, "quantities", "", dict), domains, "quantities", conditions)
    values: dict[Key, sympy.Basic] = {(q, c, False): e for (q, c), e in plain.items()}
    if "training_mode" in data:
        mode = g(data, "training_mode", "", dict)
        block = g(mode, "quantities", "training_mode", dict)
        found = r.carrying(block, mode.get("domains"), "training_mode.quantities", conditions)
        values.update({(q, c, True): e for (q, c), e in found.items()})
    defaults, moded = {}, set()
    for q, info in g(data, "conventions", "", dict).items():
        defaults[q] = g(info, "default", f"conventions.{q}", str)
        if g(info, "training", f"conventions.{q}", bool):
            moded.add(q)
    for q, _, _ in values:
        if q not in defaults:
            raise r.fail(f"conventions.{q}", "missing: the definition of each quantity stated")
    convention = g(data, "convention", "", str)
    if ("flops", convention, False) not in values:
        raise r.fail("convention", f"{convention!r} is not a convention of the card's flops")
    parts: dict[str, Mapping[tuple[str, str], sympy.Basic]] = {}
    for name, part in (data.get("parts") or {}).items():
        where = f"parts.{name}"
        parts[name] = MappingProxyType(
            r.values(g(part, "quantities", where, dict), where + ".quantities")
        )
    for i, row in enumerate(data.get("layers") or []):
        where = f"layers[{i}]"
        parts[g(row, "name", where, str)] = MappingProxyType(
            {
                ("params", "count"): r.expr(g(row, "params", where, str), f"{where}.params"),
                ("flops", convention): r.expr(g(row, "cost", where, str), f"{where}.cost"),
            }
        )
    shape = [r.expr(t, f"output_shape[{i}]") for i, t in enumerate(data.get("output_shape", []))]
    chosen = r.indices(data.get("output_domain", []), "output_domain", len(conditions))
    shape_domain = Domain(tuple(conditions[i] for i in chosen))
    library = g(data, "library", "", dict)
    torch = g(data, "torch", "", dict)
    symbols = {n: s for n, s in r.symbols.items() if isinstance(s, sympy.Symbol)}
    return Card(
        kind=kind,
        name=g(data, "name", "", str),
        format_version=version,
        library_version=g(library, "version", "library", str),
        torch_version=g(torch, "proven_against", "torch", str),
        convention=convention,
        symbols=tuple(symbols[n] for n in order),
        glossary=MappingProxyType(
            {
                n: CardSymbol(n, s, *(data["glossary"][n][k] for k in _SYMBOL_FIELDS))
                for n, s in symbols.items()
            }
        ),
        conditions=conditions,
        values=MappingProxyType(values),
        defaults=MappingProxyType(defaults),
        training_quantities=frozenset(moded),
        parts=MappingProxyType(parts),
        output_shape=tuple(with_domain(e, shape_domain) for e in shape),
        data=MappingProxyType(data),
    )
