"""Families of rules for side-by-side comparisons, read from ``formulas/families.toml``.

:func:`layercost_sym.compare` breaks a model's cost into families (conv, linear, norm,
activation, pooling, attention, other).  A rule's family is its catalogue file's, unless the
data file names the rule itself (an operator of ``functional.toml`` that belongs to a family,
a shape layer of ``linear.toml`` that does no arithmetic).

>>> from layercost_sym.families import families, family_of
>>> families().order
('conv', 'linear', 'norm', 'activation', 'pooling', 'attention', 'other')
>>> family_of("Conv2d.same"), family_of("addmm"), family_of("add"), family_of("LSTM")
('conv', 'linear', 'other', 'other')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from ._toml import SourceFile
from .cache import catalogue
from .glossary import formulas_dir

__all__ = ["Families", "families", "family_of"]


@dataclass(frozen=True)
class Families:
    """The families in display order (the last takes what nothing names), and which family
    each catalogue file and each named rule is in."""

    order: tuple[str, ...]
    files: Mapping[str, str]
    rules: Mapping[str, str]

    def of(self, rule_name: str) -> str:
        """The family of a rule or variant name (a variant without an entry of its own is in
        its rule's family)."""
        for name in (rule_name, rule_name.split(".")[0]):
            if name in self.rules:
                return self.rules[name]
        return self.files.get(catalogue().get(rule_name).family, self.order[-1])


@cache
def families() -> Families:
    """``formulas/families.toml``, checked (every family named is in ``order``, every rule
    named exists): errors name the file and line."""
    source = SourceFile(formulas_dir() / "families.toml")
    data = source.data
    order = data.get("order")
    if not isinstance(order, list) or not order or not all(isinstance(f, str) for f in order):
        raise source.error(("order",), "order must be a non-empty list of family names")
    tables: dict[str, dict[str, str]] = {}
    for key in ("files", "rules"):
        table = data.get(key, {})
        for name, family in table.items():
            if family not in order:
                raise source.error((key, name), f"{key}.{name}: {family!r} is not in order")
        tables[key] = dict(table)
    known = catalogue().rules
    for name in tables["rules"]:
        if name.split(".")[0] not in known:
            raise source.error(("rules", name), f"rules.{name}: no rule of that name")
    return Families(tuple(order), tables["files"], tables["rules"])


def family_of(rule_name: str) -> str:
    """The comparison family of a rule or variant name (:meth:`Families.of`)."""
    return families().of(rule_name)
