"""Loading, validating and registering the rules of ``formulas/*.toml``.

Parsing (TOML -> dicts), validating (every name known, every expression parsed by the
allow-list, every used symbol bound) and registering (one rule per name, one rule per torch
class) are separate steps; every error names ``file:line`` and the rule.

:func:`catalogue` keeps what was built in a user cache directory between processes, keyed by
the contents of ``formulas/`` and of this engine (:mod:`layercost_sym.cache`), so a process
validates the files only when they (or the engine) changed since the cache was written.

>>> from layercost_sym.catalogue import load_catalogue
>>> from layercost_sym.glossary import formulas_dir
>>> "Conv2d" in load_catalogue(formulas_dir()).rules
True
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sympy

from ._toml import SourceFile
from .errors import CatalogueError, ExpressionError, UnknownRuleError
from .glossary import Glossary, glossary
from .parsing import parse, parse_condition
from .quantities import Quantity, quantities
from .reading import PATH, check_when, choose, parse_bind_spec, when_input
from .rule import BindSpec, Constraint, InputPattern, Rule, expand_defines

__all__ = ["FUNCTIONAL_CALLS", "Catalogue", "functional_calls", "load_catalogue"]

# A rule's own fields; besides these, one field per quantity of formulas/quantities.toml
# (``params``, ``flops``): see _fields().
_RULE_FIELDS = {
    "module",
    "note",
    "inputs",
    "output_shape",
    "constraints",
    "bind",
    "define",
    "data",
    "variants",
}
_REQUIRED = ("module", "note", "inputs", "output_shape")
# variant tables merged key by key into the rule's (and the quantities' tables); others replace
_MERGED = ("bind", "define", "data")


def _fields() -> tuple[set[str], set[str], tuple[str, ...]]:
    """(a rule's fields, a variant's fields, the fields a variant merges key by key)."""
    names = set(quantities())
    rule = _RULE_FIELDS | names
    variant = (rule - {"module", "variants"}) | {"when", "unbind"}
    return rule, variant, (*_MERGED, *sorted(names))


_ANCHORED = re.compile(rf"^\s*(\w+)\.\.\.\s+(\w+)@{PATH}(?::{PATH})?\s+(\w+)\.\.\.\s*$")


@dataclass
class Catalogue:
    """All rules, by name and by the torch class they describe (in file order).

    A catalogue read from the cache holds read-only mappings that rebuild a rule when it is
    first looked up; ``load_catalogue`` fills plain dicts."""

    rules: Mapping[str, Rule] = field(default_factory=dict)
    by_module: Mapping[str, Rule] = field(default_factory=dict)
    files: tuple[Path, ...] = ()

    def get(self, name: str) -> Rule:
        if name in self.rules:
            return self.rules[name]
        base, _, variant = name.partition(".")
        if variant and base in self.rules:
            try:
                return self.rules[base].variant(variant)
            except KeyError:
                pass
        import difflib  # only on this error path

        close = difflib.get_close_matches(name, list(self.rules), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownRuleError(f"no rule named {name!r}{hint} (see layercost_sym.rules())")

    def for_module(self, module: Any, inputs: Sequence[Sequence[int]] | None = None) -> Rule:
        """The rule (or variant) describing a module instance, looked up by class name.

        ``inputs`` are the input shapes of the call, for variants chosen by an input's rank
        (``when = { "rank(0)" = 2 }``); without them such variants never match."""
        name = type(module).__name__
        if name.startswith("Lazy") and name not in self.by_module:
            # materialising swaps in the eager class; before that, attributes are placeholders
            raise UnknownRuleError(
                f"{name} is not materialised yet: run one forward pass, then ask again"
            )
        rule = None
        for cls in type(module).__mro__:
            if cls.__name__ in self.by_module:
                rule = self.by_module[cls.__name__]
                break
        if rule is None:
            raise UnknownRuleError(f"no rule describes module class {name!r}")
        return choose(rule, module, inputs)


# -- validation helpers --------------------------------------------------------------------------


class _RuleReader:
    """Validates one rule table (or variant) and builds a :class:`Rule`."""

    def __init__(self, source: SourceFile, gloss: Glossary, path: tuple[str, ...], name: str):
        self.source = source
        self.gloss = gloss
        self.path = path  # TOML path of the table, for line numbers
        self.name = name

    def error(self, keys: Iterable[str], message: str) -> CatalogueError:
        return self.source.error(self.path + tuple(keys), f"rule {self.name}: {message}")

    def expr(self, keys: tuple[str, ...], text: Any, names: Mapping[str, sympy.Symbol]):
        if isinstance(text, bool) or not isinstance(text, str | int):
            raise self.error(keys, f"{'.'.join(keys)} must be expression text, got {text!r}")
        try:
            return parse(str(text), names)
        except ExpressionError as exc:
            raise self.error(keys, f"{'.'.join(keys)}: {exc}") from None

    def build(self, table: Mapping[str, Any], module: str, family: str) -> Rule:
        symbols = self.gloss.symbols
        required = [q.name for q in quantities().values() if q.required]
        missing = [f for f in (*_REQUIRED, *required) if f not in table]
        if missing:
            raise self.error((), f"missing field(s) {', '.join(missing)}")
        if not isinstance(table["note"], str) or not table["note"].strip():
            raise self.error(("note",), "note must be a non-empty line of text")

        inputs = tuple(
            self.input_pattern(i, text) for i, text in enumerate(self._list("inputs", table))
        )
        input_names = [n for p in inputs for n in p.names]

        binds: dict[str, BindSpec] = {}
        for sym, spec in table.get("bind", {}).items():
            if sym not in symbols:
                raise self.error(("bind", sym), f"bind: unknown symbol {sym!r}")
            binds[sym] = self.bind_spec(sym, spec)
            if binds[sym].kind == "scaled" and binds[sym].of not in input_names:
                raise self.error(
                    ("bind", sym),
                    f"bind.{sym}: {binds[sym].of!r} in {spec!r} is not a symbol of the inputs",
                )

        defines: dict[sympy.Symbol, sympy.Expr] = {}
        for sym, text in table.get("define", {}).items():
            if sym not in symbols:
                raise self.error(("define", sym), f"define: {sym!r} is not a glossary symbol")
            if sym in binds or sym in input_names:
                raise self.error(("define", sym), f"define: {sym!r} is also bound")
            defines[symbols[sym]] = self.expr(("define", sym), text, symbols)

        data: dict[sympy.Symbol, sympy.Expr] = {}
        raw_data = table.get("data", {})
        if not isinstance(raw_data, dict):
            raise self.error(("data",), "data must be a table of symbol = default expression")
        for sym, text in raw_data.items():
            if sym not in symbols:
                raise self.error(("data", sym), f"data: {sym!r} is not a glossary symbol")
            if sym in binds or sym in input_names or symbols[sym] in defines:
                raise self.error(("data", sym), f"data: {sym!r} is also bound or defined")
            data[symbols[sym]] = self.expr(("data", sym), text, symbols)

        raw_shape = self._list("output_shape", table)
        output_leading = ""
        if isinstance(raw_shape[0], str) and raw_shape[0].endswith(("...", "?")):
            output_leading = "..." if raw_shape[0].endswith("...") else "?"
            raw_shape = [raw_shape[0].removesuffix(output_leading), *raw_shape[1:]]
            if not inputs[0].leading:
                raise self.error(
                    ("output_shape",),
                    f"output_shape starts with {output_leading!r}"
                    " but inputs[0] has no optional or variadic first dimension",
                )
        output_trailing = ""
        last = raw_shape[-1] if len(raw_shape) > 1 and isinstance(raw_shape[-1], str) else ""
        if last.endswith(("...", "?")):
            output_trailing = "..." if last.endswith("...") else "?"
            raw_shape = [*raw_shape[:-1], last.removesuffix(output_trailing)]
            if inputs[0].trailing != output_trailing:
                kind = "variadic" if output_trailing == "..." else "optional"
                raise self.error(
                    ("output_shape",),
                    f"output_shape ends with {output_trailing!r} but inputs[0] has no {kind} "
                    "last dimension",
                )
        output_middle = -1
        for position in range(1, len(raw_shape) - 1):
            entry = raw_shape[position]
            if isinstance(entry, str) and entry.endswith("?"):
                if inputs[0].middle < 0 or output_middle >= 0:
                    raise self.error(
                        ("output_shape",),
                        f"output_shape entry {entry!r} ends with '?' but inputs[0] has no "
                        "optional inner dimension (or it is marked twice)",
                    )
                output_middle = position
                raw_shape = [*raw_shape[:position], entry[:-1], *raw_shape[position + 1 :]]
        shape = tuple(self.expr(("output_shape",), t, symbols) for t in raw_shape)
        values: dict[tuple[str, str, bool], sympy.Expr] = {}
        for q in quantities().values():
            if q.name in table:
                values.update(self.quantity(q, table[q.name]))
        # Conditions are parsed with the defined quantities already substituted: SymPy would
        # decide "H_out >= 1" from H_out's own assumption (positive) instead of checking it.
        if not isinstance(table.get("constraints", []), list):
            raise self.error(("constraints",), "constraints must be a list")
        expanded = expand_defines(_needed_defines(defines, table.get("constraints", [])))
        condition_names = {**symbols, **{s.name: e for s, e in expanded.items()}}
        constraints = tuple(
            self.constraint(c, condition_names) for c in table.get("constraints", [])
        )

        # every symbol an expression uses must be bound, from an input or from the module
        bound = set(input_names) | set(binds) | {s.name for s in defines}
        earlier: set[str] = set()
        for s, e in data.items():  # a default may use bound symbols and earlier data symbols
            unbound = sorted(x.name for x in e.free_symbols if x.name not in bound | earlier)
            if unbound:
                raise self.error(
                    ("data", s.name),
                    f"data.{s.name}: default uses {', '.join(unbound)}, which nothing binds "
                    "before it",
                )
            earlier.add(s.name)
        bound |= earlier
        used: dict[str, tuple[str, ...]] = {}
        for key, e in [
            *((("output_shape",), e) for e in shape),
            *(((q, c), e) for (q, c, _), e in values.items()),
            *(((("define", s.name)), e) for s, e in defines.items()),
            *(((("constraints",)), c.condition) for c in constraints),
        ]:
            for s in e.free_symbols:
                used.setdefault(s.name, key)
        for name, key in sorted(used.items()):
            if name not in bound:
                raise self.error(
                    key, f"symbol {name!r} is used but never bound (from inputs or bind)"
                )

        return Rule(
            name=self.name,
            module=module,
            family=family,
            note=table["note"].strip(),
            source=self.source.where(*self.path),
            inputs=inputs,
            binds=binds,
            defines=defines,
            compact_output_shape=shape,
            compact=values,
            constraints=constraints,
            output_leading=output_leading,
            output_trailing=output_trailing,
            output_middle=output_middle,
            data=data,
        )

    def _list(self, key: str, table: Mapping[str, Any]) -> list:
        value = table[key]
        if not isinstance(value, list) or not value:
            raise self.error((key,), f"{key} must be a non-empty list")
        return value

    def input_pattern(self, index: int, text: Any) -> InputPattern:
        if not isinstance(text, str) or not text.split():
            raise self.error(("inputs",), f"inputs[{index}] must be a string of symbol names")
        if "@" in text:  # "N... L@dim P...": the dimension module.dim names, and all around it
            m = _ANCHORED.match(text)
            if not m:
                raise self.error(
                    ("inputs",),
                    f"inputs[{index}]: an anchored pattern is 'A... X@attr B...' or "
                    f"'A... X@first:last B...', got {text!r}",
                )
            for name in m.group(1, 2, 5):
                if name not in self.gloss.info:
                    raise self.error(("inputs",), f"inputs[{index}]: unknown symbol {name!r}")
            anchor = m.group(3) + (f":{m.group(4)}" if m.group(4) else "")
            return InputPattern(m.group(1, 2, 5), "...", text, "...", anchor=anchor)
        names, leading, trailing, middle = [], "", "", -1
        tokens = text.split()
        for position, token in enumerate(tokens):
            name = token
            for suffix in ("...", "?"):
                if token.endswith(suffix):
                    last = position == len(tokens) - 1 and position > 0
                    inner = 0 < position < len(tokens) - 1 and suffix == "?"
                    if position and not ((last or inner) and not leading and middle < 0):
                        raise self.error(
                            ("inputs",),
                            f"inputs[{index}]: only the first dimension may end in {suffix!r}, "
                            f"or the last in '?' or '...' when the first does not, or one other "
                            f"in '?' ({token!r})",
                        )
                    name = token.removesuffix(suffix)
                    if inner:
                        middle = position
                    elif position:
                        trailing = suffix
                    else:
                        leading = suffix
            if name not in self.gloss.info:
                raise self.error(("inputs",), f"inputs[{index}]: unknown symbol {name!r}")
            names.append(name)
        return InputPattern(tuple(names), leading, text, trailing, middle)

    def bind_spec(self, sym: str, spec: Any) -> BindSpec:
        try:
            return parse_bind_spec(spec)
        except ValueError as exc:
            raise self.error(("bind", sym), f"bind.{sym}: {exc}") from None

    def quantity(self, q: Quantity, table: Any) -> dict[tuple[str, str, bool], sympy.Expr]:
        """The values a rule states for quantity ``q``: ``{(q, convention, training): expr}``,
        training mode inheriting what it does not restate, derived conventions added."""
        symbols = self.gloss.symbols
        if isinstance(table, str | int) and not isinstance(table, bool):
            if len(q.stated) != 1:
                raise self.error(
                    (q.name,),
                    f"{q.name} has conventions {', '.join(q.stated)}: state it as a table "
                    "of convention = expression",
                )
            table = {q.stated[0]: table}
        if not isinstance(table, dict):
            raise self.error((q.name,), f"{q.name} must be a table of convention = expression")
        out: dict[tuple[str, bool], sympy.Expr] = {}
        for training in (False, True):
            entries = table.get("training", {}) if training else table
            keys = (q.name, "training") if training else (q.name,)
            if training and entries and not q.training:
                raise self.error(keys, f"{q.name} has no training mode")
            for conv, text in entries.items():
                if conv == "training" and not training:
                    continue
                if conv in q.derived:
                    base, factor = q.derived[conv]
                    raise self.error(
                        (*keys, conv),
                        f"{q.name}.{conv} is derived ({factor} x {base}); do not state it",
                    )
                if conv not in q.conventions:
                    raise self.error(
                        (*keys, conv),
                        f"unknown convention {conv!r} of {q.name} (known: "
                        f"{', '.join(q.conventions)})",
                    )
                out[(conv, training)] = self.expr((*keys, conv), text, symbols)
        for conv in q.required:
            if (conv, False) not in out:
                raise self.error((q.name,), f"{q.name}.{conv} is required")
        modes = (False, True) if q.training else (False,)
        if q.training:  # training inherits what it does not restate
            for conv in dict.fromkeys(c for c, _ in out):
                out.setdefault((conv, True), out[(conv, False)])
        for derived, (base, factor) in q.derived.items():
            for training in modes:
                if (base, training) in out:
                    out[(derived, training)] = factor * out[(base, training)]
        return {(q.name, c, t): e for (c, t), e in out.items()}

    def constraint(self, entry: Any, names: Mapping[str, sympy.Expr]) -> Constraint:
        if isinstance(entry, str):
            entry = {"check": entry}
        if not isinstance(entry, dict) or "check" not in entry:
            raise self.error(("constraints",), f"constraint {entry!r} needs a 'check'")
        unknown = set(entry) - {"check", "reason", "training"}
        if unknown:
            raise self.error(("constraints",), f"constraint has unknown field(s) {sorted(unknown)}")
        try:
            cond = parse_condition(entry["check"], names)
        except ExpressionError as exc:
            raise self.error(("constraints",), f"constraint: {exc}") from None
        return Constraint(
            cond,
            entry["check"],
            entry.get("reason", entry["check"]),
            bool(entry.get("training", False)),
        )


def _needed_defines(
    defines: Mapping[sympy.Symbol, sympy.Expr], constraints: list
) -> list[tuple[sympy.Symbol, sympy.Expr]]:
    """The definitions the constraints' text names, with those they use, in file order.

    Substituting a definition rebuilds the Max/Min terms around it (slow in SymPy, seconds
    for the pooling areas); a definition no condition reads need not be expanded here."""
    words = set()
    for entry in constraints:
        text = entry.get("check") if isinstance(entry, dict) else entry
        words |= set(re.findall(r"\w+", text)) if isinstance(text, str) else set()
    needed = {s for s in defines if s.name in words}
    for symbol in reversed(defines):  # a definition may use only earlier ones
        if symbol in needed:
            needed |= defines[symbol].free_symbols & defines.keys()
    return [(s, e) for s, e in defines.items() if s in needed]


def _check_when(reader: _RuleReader, when: Mapping[str, Any]) -> None:
    """Every ``when`` entry is one :func:`.reading.check_when` can read."""
    for key, value in when.items():
        message = check_when(key, value)
        if message is not None:
            raise reader.error(("when",), message)


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    merged_fields = _fields()[2]
    for key, value in override.items():
        if key in merged_fields and isinstance(value, dict):
            inner = dict(merged.get(key, {}))
            for k, v in value.items():
                if isinstance(v, dict) and isinstance(inner.get(k), dict):
                    inner[k] = {**inner[k], **v}
                else:
                    inner[k] = v
            merged[key] = inner
        else:
            merged[key] = value
    return merged


_OVERLAY_FIELDS = {"training", "note", "variants", "whole_factors_only"}
# the reserved table of a convention file that says how the tool counts a layer's operator
# called as a function (F.conv2d, F.max_pool2d, ...): see functional_calls()
FUNCTIONAL_CALLS = "functional_calls"


@dataclass
class _Overlay:
    """One rule's entry in a convention file ``formulas/conventions/<convention>.toml``: the
    value of ``quantity`` under ``convention`` (the quantity the convention belongs to)."""

    convention: str
    quantity: str
    source: SourceFile
    path: tuple[str, ...]
    entry: dict[str, Any]


def _read_overlays(directory: Path, gloss: Glossary) -> dict[str, list[_Overlay]]:
    """Convention files: one per named convention, one table per rule (see formulas/README.md).

    Each entry is checked here (fields, and expressions through the allow-list parser) so that
    an error names the convention file and line.
    """
    overlays: dict[str, list[_Overlay]] = {}
    for path in sorted((directory / "conventions").glob("*.toml")):
        source = SourceFile(path)
        convention = path.stem
        owner = next((q for q in quantities().values() if convention in q.conventions), None)
        if owner is None or convention in owner.derived:
            known = [c for q in quantities().values() for c in q.stated]
            raise CatalogueError(
                f"{source.where()}: {convention!r} is not a convention a file "
                f"may state (known: {', '.join(known)})"
            )
        fields = _OVERLAY_FIELDS | {owner.name}
        for name, entry in source.data.items():
            if name == FUNCTIONAL_CALLS:  # not a rule: read by functional_calls()
                continue
            entries = [((name,), entry)]
            if isinstance(entry, dict):
                entries += [
                    ((name, "variants", v), e) for v, e in entry.get("variants", {}).items()
                ]
            for where, item in entries:
                if not isinstance(item, dict) or owner.name not in item:
                    raise source.error(
                        where, f"{'.'.join(where)}: needs a '{owner.name}' expression"
                    )
                unknown = set(item) - fields
                if unknown:
                    raise source.error(
                        where, f"{'.'.join(where)}: unknown field(s) {sorted(unknown)}"
                    )
                if not isinstance(item.get("whole_factors_only", False), bool):
                    raise source.error(
                        (*where, "whole_factors_only"),
                        f"{'.'.join(where)}.whole_factors_only: must be true or false",
                    )
                if "training" in item and not owner.training:
                    raise source.error((*where, "training"), f"{owner.name} has no training mode")
                for key in (owner.name, "training"):
                    if key in item:
                        try:
                            parse(str(item[key]), gloss.symbols)
                        except ExpressionError as exc:
                            raise source.error(
                                (*where, key), f"{'.'.join(where)}.{key}: {exc}"
                            ) from None
            overlay = _Overlay(convention, owner.name, source, (name,), entry)
            overlays.setdefault(name, []).append(overlay)
    return overlays


def _overlay_entry(overlay: _Overlay, variant: str | None) -> dict[str, Any]:
    """The entry of a convention file for a rule, or for one of its variants where it has one."""
    entry = overlay.entry
    if variant is not None and variant in entry.get("variants", {}):
        return entry["variants"][variant]
    return entry


def _apply_overlays(
    table: dict[str, Any], overlays: list[_Overlay], variant: str | None
) -> dict[str, Any]:
    """The rule table with the convention files' values added to its quantities' tables."""
    out = dict(table)
    for overlay in overlays:
        entry = _overlay_entry(overlay, variant)
        values = out.get(overlay.quantity, {})
        values = dict(values) if isinstance(values, dict) else {}
        values[overlay.convention] = entry[overlay.quantity]
        if "training" in entry:
            training = {**values.get("training", {}), overlay.convention: entry["training"]}
            values["training"] = training
        out[overlay.quantity] = values
    return out


def _load_file(
    source: SourceFile, gloss: Glossary, overlays: dict[str, list[_Overlay]] | None = None
) -> list[Rule]:
    family = source.path.stem
    rules = []
    overlays = overlays or {}
    for name, table in source.data.items():
        if not isinstance(table, dict):
            raise source.error((name,), f"top-level key {name!r} must be a rule table")
        if not name.isidentifier():
            raise source.error((name,), f"rule name {name!r} is not an identifier")
        table = _apply_overlays(table, overlays.get(name, []), None)
        reader = _RuleReader(source, gloss, (name,), name)
        rule_fields, variant_fields, _ = _fields()
        unknown = set(table) - rule_fields
        if unknown:
            raise reader.error((sorted(unknown)[0],), f"unknown field(s) {sorted(unknown)}")
        module = table.get("module")
        if not isinstance(module, str) or not module.isidentifier():
            raise reader.error(("module",), "module must be a torch.nn class name such as 'Conv2d'")
        base = reader.build(table, module, family)
        variants = []
        raw_variants = table.get("variants", {})
        for vname, vtable in raw_variants.items():
            vpath = (name, "variants", vname)
            vreader = _RuleReader(source, gloss, vpath, f"{name}.{vname}")
            if not isinstance(vtable, dict) or not isinstance(vtable.get("when"), dict):
                raise vreader.error((), "a variant needs a 'when' table of attribute = value")
            _check_when(vreader, vtable["when"])
            unknown = set(vtable) - variant_fields
            if unknown:
                raise vreader.error((), f"unknown field(s) {sorted(unknown)}")
            merged = _merge(
                {k: v for k, v in table.items() if k != "variants"},
                {k: v for k, v in vtable.items() if k not in ("when", "unbind")},
            )
            merged = _apply_overlays(merged, overlays.get(name, []), vname)
            for sym in vtable.get("unbind", []):  # a binding or a definition of the base rule
                if sym in table.get("bind", {}):
                    merged["bind"] = {k: v for k, v in merged["bind"].items() if k != sym}
                elif sym in table.get("define", {}):
                    if sym in vtable.get("define", {}):
                        raise vreader.error(
                            ("unbind",), f"unbind: {sym!r} is dropped and redefined by the variant"
                        )
                    merged["define"] = {k: v for k, v in merged["define"].items() if k != sym}
                else:
                    raise vreader.error(
                        ("unbind",), f"unbind: {sym!r} is not bound or defined by the rule"
                    )
            variant = vreader.build(merged, module, family)
            for key in vtable["when"]:
                if (i := when_input(key)) is not None and i >= len(variant.inputs):
                    raise vreader.error(
                        ("when",), f"when: {key!r} names an input the variant does not take"
                    )
            object.__setattr__(variant, "when", dict(vtable["when"]))
            variants.append(variant)
        object.__setattr__(base, "variants", tuple(variants))
        notes = {o.convention: o.entry["note"] for o in overlays.get(name, []) if "note" in o.entry}
        for rule in (base, *variants):
            object.__setattr__(rule, "convention_notes", notes)
            vname = rule.name.partition(".")[2] or None
            whole = frozenset(
                o.convention
                for o in overlays.get(name, [])
                # a variant's own entry may say; otherwise the rule's entry does
                if _overlay_entry(o, vname).get(
                    "whole_factors_only", o.entry.get("whole_factors_only", False)
                )
            )
            object.__setattr__(rule, "whole_factor_conventions", whole)
        rules.append(base)
    return rules


def load_catalogue(directory: Path, gloss: Glossary | None = None) -> Catalogue:
    """Load and validate every ``*.toml`` rule file of ``directory`` (the glossary excluded)."""
    gloss = glossary() if gloss is None else gloss
    # the glossary and the quantities are not rule files
    not_rules = ("symbols.toml", "quantities.toml", "families.toml")
    files = tuple(sorted(p for p in directory.glob("*.toml") if p.name not in not_rules))
    rules: dict[str, Rule] = {}
    by_module: dict[str, Rule] = {}
    result = Catalogue(rules, by_module, files)
    overlays = _read_overlays(directory, gloss)
    for path in files:
        source = SourceFile(path)
        for rule in _load_file(source, gloss, overlays):
            if rule.name in result.rules:
                raise CatalogueError(
                    f"{rule.source}: duplicate rule {rule.name!r} "
                    f"(first defined at {result.rules[rule.name].source})"
                )
            if rule.module in result.by_module:
                raise CatalogueError(
                    f"{rule.source}: rule {rule.name}: module {rule.module!r} "
                    f"already has rule {result.by_module[rule.module].name}"
                )
            rules[rule.name] = rule
            by_module[rule.module] = rule
    for name, entries in overlays.items():
        for overlay in entries:
            if name not in result.rules:
                raise overlay.source.error(
                    overlay.path, f"no rule named {name!r} to give a {overlay.convention} cost"
                )
            known = {v.name.rsplit(".", 1)[1] for v in result.rules[name].variants}
            for variant in overlay.entry.get("variants", {}):
                if variant not in known:
                    raise overlay.source.error(
                        (name, "variants", variant),
                        f"rule {name} has no variant {variant!r} (it has: "
                        f"{', '.join(sorted(known)) or 'none'})",
                    )
    return result


def functional_calls(directory: Path) -> dict[str, dict[str, tuple[str, str]]]:
    """``{convention: {family or function: (flops, note)}}``: how each convention file's tool
    counts a layer's operator called as a function between modules (its ``functional_calls``
    table; formulas/README.md).  ``flops`` is ``"rule"``, ``"numel"`` or an integer's text;
    every entry is checked here, an error naming the file and line."""
    out: dict[str, dict[str, tuple[str, str]]] = {}
    for path in sorted((directory / "conventions").glob("*.toml")):
        source = SourceFile(path)
        table = source.data.get(FUNCTIONAL_CALLS, {})
        entries: dict[str, tuple[str, str]] = {}
        for name, entry in table.items():
            where = (FUNCTIONAL_CALLS, name)
            if not isinstance(entry, dict) or set(entry) != {"flops", "note"}:
                raise source.error(where, f"{FUNCTIONAL_CALLS}.{name}: needs flops and note only")
            flops = str(entry["flops"])
            if flops not in ("rule", "numel") and not flops.isdigit():
                raise source.error(
                    (*where, "flops"),
                    f"{FUNCTIONAL_CALLS}.{name}.flops: 'rule', 'numel' or an integer, got "
                    f"{flops!r}",
                )
            entries[name] = (flops, str(entry["note"]))
        if table and not {"conv", "pool"} <= set(entries):
            raise source.error((FUNCTIONAL_CALLS,), f"{FUNCTIONAL_CALLS}: needs conv and pool")
        if entries:
            out[path.stem] = entries
    return out
