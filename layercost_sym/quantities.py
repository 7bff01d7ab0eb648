"""Quantities and their conventions: what a rule states, read from ``formulas/quantities.toml``.

A *quantity* is what is counted (``params``, ``flops``, ``bytes``; memory saved for backward is
the next one); a *convention* is what one unit of it means (``flops`` under
``exact``, ``macs``, ``torch``, the peer tools' rules).  Rules state values per quantity and
convention (``[Linear.flops]``), :func:`layercost_sym.count` measures the conventions that can
be measured, and rules, costs and analyses answer ``quantity(name, convention)`` the same way.
Adding a quantity is a table in ``quantities.toml``, values in the rules and a measurement in
:mod:`layercost_sym.torchtools.count`.

>>> from layercost_sym.quantities import quantity
>>> flops = quantity("flops")
>>> flops.default, flops.stated, flops.derived
('exact', ('exact', 'macs', 'useful', 'seed', 'fvcore', 'thop', 'ptflops'), {'torch': ('macs', 2)})
>>> quantity("params").conventions["count"].measured
"the numel of the real module's parameters"
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from ._toml import SourceFile
from .errors import CatalogueError, ConventionError

__all__ = [
    "CONVENTIONS",
    "Convention",
    "Quantity",
    "QuantityShorthands",
    "quantities",
    "quantity",
]

_DERIVED = re.compile(r"^\s*(\d+)\s*x\s*(\w+)\s*$")


@dataclass(frozen=True)
class Convention:
    """What one unit of a quantity means under this convention.

    ``derived`` is ``(base convention, factor)`` for a convention no rule states (``torch`` is
    2 x ``macs``); ``measured`` says how :func:`layercost_sym.count` measures it (empty: it is
    not measured, a peer tool's rule); ``partial`` that it is stated for a few layers only;
    ``otherwise`` the convention whose value a rule that does not state this one has (``useful``
    FLOPs are the ``exact`` ones where nothing is masked)."""

    name: str
    meaning: str
    derived: tuple[str, int] | None = None
    measured: str = ""
    partial: bool = False  # stated for a few layers only
    otherwise: str | None = None


@dataclass(frozen=True)
class Quantity:
    """One quantity: its meaning, its conventions (in file order) and which is the default."""

    name: str
    meaning: str
    default: str
    conventions: Mapping[str, Convention]
    training: bool = False
    required: tuple[str, ...] = ()

    @property
    def stated(self) -> tuple[str, ...]:
        """The conventions a rule may state (all but the derived ones)."""
        return tuple(n for n, c in self.conventions.items() if c.derived is None)

    @property
    def otherwise(self) -> dict[str, str]:
        """``{convention: the convention a rule that does not state it takes the value of}``."""
        return {n: c.otherwise for n, c in self.conventions.items() if c.otherwise is not None}

    @property
    def derived(self) -> dict[str, tuple[str, int]]:
        """``{convention: (base convention, factor)}`` for the derived conventions."""
        return {n: c.derived for n, c in self.conventions.items() if c.derived is not None}

    @property
    def compared(self) -> tuple[str, ...]:
        """The conventions stated for every layer: those :func:`layercost_sym.compare` reads
        by default."""
        return tuple(n for n, c in self.conventions.items() if not c.partial)

    @property
    def measured(self) -> tuple[str, ...]:
        """The conventions :func:`layercost_sym.count` measures on a real module."""
        return tuple(n for n, c in self.conventions.items() if c.measured)

    def convention(self, name: str | None) -> str:
        """``name`` checked to be one of this quantity's conventions (None: the default)."""
        if name is None:
            return self.default
        if name not in self.conventions:
            raise ConventionError(
                f"unknown convention {name!r} of {self.name}; known conventions: "
                f"{', '.join(self.conventions)}"
            )
        return name


class QuantityShorthands:
    """``params``, ``flops`` and ``cost(convention)`` as the quantities they name, for a class
    that answers ``quantity(name, convention)`` (composed costs, model analyses): the one place
    the shorthands are defined."""

    def quantity(self, quantity: str, convention: str | None = None) -> Any:
        raise NotImplementedError

    @property
    def params(self) -> Any:
        """The number of parameters (:meth:`quantity` ``"params"``)."""
        return self.quantity("params")

    @property
    def flops(self) -> Any:
        """FLOPs under the default convention (:meth:`quantity` ``"flops"``)."""
        return self.quantity("flops")

    def cost(self, convention: str | None = None) -> Any:
        """FLOPs under ``convention`` (:meth:`quantity` ``"flops"``)."""
        return self.quantity("flops", convention)


def _read(source: SourceFile) -> dict[str, Quantity]:
    out: dict[str, Quantity] = {}
    for name, table in source.data.items():
        where = (name,)
        if not isinstance(table, dict) or not name.isidentifier():
            raise source.error(where, f"quantity {name!r} must be a table named by an identifier")
        unknown = set(table) - {"meaning", "default", "training", "required", "conventions"}
        if unknown:
            raise source.error(where, f"quantity {name}: unknown field(s) {sorted(unknown)}")
        for key in ("meaning", "default"):
            if not isinstance(table.get(key), str) or not table[key].strip():
                raise source.error((*where, key), f"quantity {name}: {key} must be text")
        raw = table.get("conventions")
        if not isinstance(raw, dict) or not raw:
            raise source.error(where, f"quantity {name}: needs a [{name}.conventions] table")
        conventions: dict[str, Convention] = {}
        for cname, entry in raw.items():
            at = (*where, "conventions", cname)
            if not isinstance(entry, dict) or not isinstance(entry.get("meaning"), str):
                raise source.error(at, f"convention {name}.{cname}: needs a meaning")
            extra = set(entry) - {"meaning", "derived", "measured", "partial", "otherwise"}
            if extra:
                raise source.error(at, f"convention {name}.{cname}: unknown {sorted(extra)}")
            derived = None
            if "derived" in entry:
                m = _DERIVED.match(str(entry["derived"]))
                if not m or m.group(2) not in raw or m.group(2) == cname:
                    raise source.error(
                        (*at, "derived"),
                        f"convention {name}.{cname}: derived must read '<factor> x <another "
                        f"convention of {name}>', got {entry['derived']!r}",
                    )
                derived = (m.group(2), int(m.group(1)))
            otherwise = entry.get("otherwise")
            if otherwise is not None and (otherwise not in raw or otherwise == cname):
                raise source.error(
                    (*at, "otherwise"),
                    f"convention {name}.{cname}: otherwise names another convention of {name}, "
                    f"got {otherwise!r}",
                )
            conventions[cname] = Convention(
                cname,
                entry["meaning"],
                derived,
                str(entry.get("measured", "")),
                bool(entry.get("partial", False)),
                otherwise,
            )
        if table["default"] not in conventions:
            raise source.error((*where, "default"), f"quantity {name}: default is not declared")
        required = table.get("required", [])
        if not isinstance(required, list) or not set(required) <= set(conventions):
            raise source.error((*where, "required"), f"quantity {name}: unknown required ones")
        out[name] = Quantity(
            name,
            table["meaning"],
            table["default"],
            conventions,
            bool(table.get("training", False)),
            tuple(required),
        )
    return out


@cache
def quantities() -> dict[str, Quantity]:
    """Every quantity of ``formulas/quantities.toml``, by name (read once)."""
    from .glossary import formulas_dir

    return _read(SourceFile(formulas_dir() / "quantities.toml"))


def quantity(name: str) -> Quantity:
    """The quantity ``name``; an unknown name raises :class:`ConventionError` naming those
    there are."""
    found = quantities().get(name)
    if found is None:
        raise ConventionError(
            f"unknown quantity {name!r}; known quantities: {', '.join(quantities())}"
        )
    return found


def quantity_of(convention: str) -> Quantity:
    """The quantity a convention belongs to (a convention file's name names one)."""
    for q in quantities().values():
        if convention in q.conventions:
            return q
    raise CatalogueError(f"{convention!r} is not a convention of any quantity")


class _FlopsConventions(Mapping[str, str]):
    """``{convention: meaning}`` of the ``flops`` quantity, read on first use."""

    def _data(self) -> dict[str, str]:
        return {n: c.meaning for n, c in quantity("flops").conventions.items()}

    def __getitem__(self, key: str) -> str:
        return self._data()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data())

    def __len__(self) -> int:
        return len(self._data())

    def __repr__(self) -> str:
        return repr(self._data())


CONVENTIONS: Mapping[str, str] = _FlopsConventions()
"""The conventions of FLOPs, ``{name: meaning}`` (``formulas/quantities.toml``)."""
