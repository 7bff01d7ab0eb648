"""Validating one rule table of ``formulas/<family>.toml`` (or a variant of it) into a
:class:`~layercost_sym.rule.Rule`: every field known, every expression parsed by the allow-list,
every symbol used bound, every error at ``file:line``.

:mod:`layercost_sym.catalogue` reads the files, merges variants and convention files into the
tables this module validates, and registers the rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import sympy

from ._toml import SourceFile
from .errors import CatalogueError, ExpressionError
from .glossary import (
    ARGUMENT_ELEMENTS,
    ARGUMENT_GRADS,
    DISTINCT_INPUTS,
    ELEMENT_SIZES,
    OUTPUT_GRADS,
    OUTPUT_SIZE,
    REQUIRES_GRAD,
    WEIGHTS_GRAD,
    Glossary,
)
from .parsing import parse, parse_condition
from .quantities import Quantity, quantities
from .reading import PATH, check_when, parse_bind_spec
from .rule import BindSpec, Constraint, InputPattern, Rule, expand_defines

__all__ = ["RuleTable", "check_when_table", "fields"]


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


def fields() -> tuple[set[str], set[str], tuple[str, ...]]:
    """(a rule's fields, a variant's fields, the fields a variant merges key by key)."""
    names = set(quantities())
    rule = _RULE_FIELDS | names
    variant = (rule - {"module", "variants"}) | {"when", "unbind"}
    return rule, variant, (*_MERGED, *sorted(names))


_ANCHORED = re.compile(rf"^\s*(\w+)\.\.\.\s+(\w+)@{PATH}(?::{PATH})?\s+(\w+)\.\.\.\s*$")


# (quantity, convention) a required convention the loader derives where a rule does not state it
_DERIVED_BY_LOADER = {("bytes", "min")}


def _numel(pattern_names: Iterable[str], symbols: Mapping[str, sympy.Symbol]) -> sympy.Expr:
    return sympy.Mul(*(symbols[n] for n in pattern_names))


def min_bytes(
    inputs: tuple[InputPattern, ...],
    output_shape: tuple[sympy.Expr, ...],
    params: sympy.Expr | int,
    family: str,
    symbols: Mapping[str, sympy.Symbol],
) -> sympy.Expr:
    """The loader's ``bytes.min`` for a rule that does not state it: its inputs read once, its
    parameters read once, its output written once, ``e_a*(numel of each input) + e_w*params +
    e_a*(numel of the output)``.  An input's numel is the product of its pattern's symbols (an
    absent optional dimension is 1, ``N...``/``P...`` are products already), the output's the
    product of the output shape; input ``i > 0`` is read where the flag ``x_i`` says it is a
    tensor of its own (not the same tensor as an earlier input).

    A functional rule (``formulas/functional.toml``) lists the operator's output as input 0 and
    then a prefix of its tensor arguments: its default is the bytes of the tensors it lists,
    each once; the model analysis costs an operator call's bytes from every tensor it traced.
    """
    e_a, e_w = symbols[ELEMENT_SIZES["activations"]], symbols[ELEMENT_SIZES["weights"]]
    numels = [_numel(p.names, symbols) for p in inputs]
    if family == "functional":
        return e_a * sympy.Add(*numels)
    for i in range(1, len(numels)):
        if i not in DISTINCT_INPUTS:
            raise CatalogueError(f"min bytes: no flag for input {i}; add one to DISTINCT_INPUTS")
        numels[i] *= symbols[DISTINCT_INPUTS[i]]
    output = sympy.Mul(*output_shape)
    return e_a * sympy.Add(*numels) + e_w * sympy.sympify(params) + e_a * output


# -- validation helpers --------------------------------------------------------------------------


class RuleTable:
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
        required = [
            q.name
            for q in quantities().values()
            if set(q.required) - {c for qq, c in _DERIVED_BY_LOADER if qq == q.name}
        ]
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
        stated: dict[tuple[str, str, bool], sympy.Expr | str] = {}
        for q in quantities().values():
            if q.name in table:
                stated.update(self.quantity(q, table[q.name]))
        if ("bytes", "min", False) not in stated and "bytes" in quantities():
            params = stated.get(("params", "count", False), 0)
            assert not isinstance(params, str)  # params has one convention: never a reference
            stated[("bytes", "min", False)] = min_bytes(inputs, shape, params, family, symbols)
        if "bytes" in quantities() and quantities()["bytes"].training:
            stated.setdefault(("bytes", "min", True), stated[("bytes", "min", False)])
        values = self.resolve(stated)
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
        # bound from the call's tensors by lc.bind and lc.analyze: their dtypes, their identity
        bound |= (
            set(ELEMENT_SIZES.values())
            | set(DISTINCT_INPUTS.values())
            | {REQUIRES_GRAD, WEIGHTS_GRAD, *OUTPUT_GRADS.values()}
        )
        if family == "functional":  # from an operator call's tensors (lc.analyze)
            bound |= {OUTPUT_SIZE, ARGUMENT_ELEMENTS, *ARGUMENT_GRADS.values()}
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

    def resolve(
        self, stated: Mapping[tuple[str, str, bool], sympy.Expr | str]
    ) -> dict[tuple[str, str, bool], sympy.Expr]:
        """``stated`` with each reference (``eager = "min"``: the expression of another
        convention of the same quantity, in the same mode) replaced by what it names."""
        values: dict[tuple[str, str, bool], sympy.Expr] = {}
        for (q, conv, training), e in stated.items():
            if isinstance(e, str):
                target = stated.get((q, e, training))
                if target is None or isinstance(target, str):
                    keys = (q, "training", conv) if training else (q, conv)
                    raise self.error(
                        keys,
                        f"{q}.{conv} = {e!r} names {q}.{e}, which the rule does not state "
                        "as an expression",
                    )
                e = target
            values[(q, conv, training)] = e
        return values

    def quantity(self, q: Quantity, table: Any) -> dict[tuple[str, str, bool], sympy.Expr | str]:
        """The values a rule states for quantity ``q``: ``{(q, convention, training): expr}``,
        training mode inheriting what it does not restate, derived conventions added.  A value
        that is the name of another convention of ``q`` (``eager = "min"``) is kept as that
        name, a reference :meth:`resolve` replaces once the loader's defaults are in."""
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
        out: dict[tuple[str, bool], sympy.Expr | str] = {}
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
                if isinstance(text, str) and text.strip() in q.stated and text.strip() != conv:
                    out[(conv, training)] = text.strip()  # a reference, resolved by .resolve
                    continue
                out[(conv, training)] = self.expr((*keys, conv), text, symbols)
        for conv in q.required:
            if (conv, False) not in out and (q.name, conv) not in _DERIVED_BY_LOADER:
                raise self.error((q.name,), f"{q.name}.{conv} is required")
        modes = (False, True) if q.training else (False,)
        if q.training:  # training inherits what it does not restate
            for conv in dict.fromkeys(c for c, _ in out):
                out.setdefault((conv, True), out[(conv, False)])
        for conv, other in q.otherwise.items():  # not stated: the other convention's value
            for training in modes:
                if (conv, training) not in out and (other, training) in out:
                    out[(conv, training)] = out[(other, training)]
        for derived, (base, factor) in q.derived.items():
            for training in modes:
                base_value = out.get((base, training))
                if base_value is not None:
                    if isinstance(base_value, str):
                        raise self.error((q.name, base), f"{q.name}.{base} must be an expression")
                    out[(derived, training)] = factor * base_value
        return {(q.name, c, t): e for (c, t), e in out.items()}

    def constraint(self, entry: Any, names: Mapping[str, sympy.Expr]) -> Constraint:
        if isinstance(entry, str):
            entry = {"check": entry}
        if not isinstance(entry, dict) or "check" not in entry:
            raise self.error(("constraints",), f"constraint {entry!r} needs a 'check'")
        unknown = set(entry) - {"check", "reason", "training", "quantities"}
        if unknown:
            raise self.error(("constraints",), f"constraint has unknown field(s) {sorted(unknown)}")
        try:
            cond = parse_condition(entry["check"], names)
        except ExpressionError as exc:
            raise self.error(("constraints",), f"constraint: {exc}") from None
        only = entry.get("quantities", [])  # a condition of these quantities alone
        if "quantities" in entry and (
            not isinstance(only, list) or not only or set(only) - set(quantities())
        ):
            raise self.error(
                ("constraints",),
                f"constraint {entry['check']!r}: quantities must be a non-empty list of "
                f"{', '.join(sorted(quantities()))}, got {only!r}",
            )
        return Constraint(
            cond,
            entry["check"],
            str(entry.get("reason", entry["check"])),
            bool(entry.get("training", False)),
            tuple(only),
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


def check_when_table(reader: RuleTable, when: Mapping[str, Any]) -> None:
    """Every ``when`` entry is one :func:`.reading.check_when` can read."""
    for key, value in when.items():
        message = check_when(key, value)
        if message is not None:
            raise reader.error(("when",), message)
