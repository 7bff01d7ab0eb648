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

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._toml import SourceFile
from .errors import CatalogueError, ExpressionError, UnknownRuleError
from .glossary import Glossary, glossary
from .parsing import parse
from .quantities import quantities
from .reading import choose, when_input
from .rule import Rule
from .rule_table import RuleTable, check_when_table, fields

__all__ = ["FUNCTIONAL_CALLS", "Catalogue", "functional_calls", "load_catalogue"]


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


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    merged_fields = fields()[2]
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
            entries: list[tuple[tuple[str, ...], Any]] = [((name,), entry)]
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
        reader = RuleTable(source, gloss, (name,), name)
        rule_fields, variant_fields, _ = fields()
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
            vreader = RuleTable(source, gloss, vpath, f"{name}.{vname}")
            if not isinstance(vtable, dict) or not isinstance(vtable.get("when"), dict):
                raise vreader.error((), "a variant needs a 'when' table of attribute = value")
            check_when_table(vreader, vtable["when"])
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
            variants.append(dataclasses.replace(variant, when=dict(vtable["when"])))
        mine = overlays.get(name, [])
        variants = [_with_conventions(v, mine) for v in variants]
        base = _with_conventions(base, mine, variants=tuple(variants))
        rules.append(base)
    return rules


def _with_conventions(rule: Rule, overlays: list[_Overlay], **more: Any) -> Rule:
    """``rule`` completed with what the convention files say of it (and ``more``)."""
    vname = rule.name.partition(".")[2] or None
    whole = frozenset(
        o.convention
        for o in overlays
        # a variant's own entry may say; otherwise the rule's entry does
        if _overlay_entry(o, vname).get(
            "whole_factors_only", o.entry.get("whole_factors_only", False)
        )
    )
    notes = {o.convention: o.entry["note"] for o in overlays if "note" in o.entry}
    return dataclasses.replace(rule, convention_notes=notes, whole_factor_conventions=whole, **more)


def load_catalogue(directory: Path, gloss: Glossary | None = None) -> Catalogue:
    """Load and validate every ``*.toml`` rule file of ``directory`` (the glossary excluded)."""
    gloss = glossary() if gloss is None else gloss
    # the glossary, the quantities, the families and the accelerators are not rule files
    not_rules = ("symbols.toml", "quantities.toml", "families.toml", "hardware.toml")
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
