"""The symbol glossary: every shape symbol, defined once from ``formulas/symbols.toml``.

>>> from layercost_sym.glossary import glossary
>>> N = glossary().symbols["N"]
>>> N.is_integer, N.is_positive
(True, True)
>>> glossary().latex_names[glossary().symbols["C_in"]]
'C_{in}'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import sympy

from ._toml import SourceFile
from .errors import CatalogueError

__all__ = [
    "ARGUMENT_ELEMENTS",
    "ARGUMENT_GRADS",
    "DISTINCT_INPUTS",
    "DOMAINS",
    "ELEMENT_SIZES",
    "FUSED_KERNEL",
    "OUTPUT_GRADS",
    "OUTPUT_SIZE",
    "REQUIRES_GRAD",
    "WEIGHTS_GRAD",
    "Glossary",
    "SymbolInfo",
    "formulas_dir",
    "glossary",
]

# The element-size symbols (bytes per element, quantity ``bytes``): bound by ``lc.bind`` and
# ``lc.analyze`` from dtypes, never by a rule's inputs or bind table.  role -> symbol name
ELEMENT_SIZES = {"activations": "e_a", "weights": "e_w", "indices": "e_i"}
# the element size of an operator's output, bound for operator calls only (functional rules):
# a conversion (_to_copy) or a reduction that widens (sum of bools) writes another dtype
OUTPUT_SIZE = "e_o"
# the elements of an operator call's distinct tensor arguments (cat, stack: a tensor joined twice
# is read once), bound for operator calls only, from the traced tensors
ARGUMENT_ELEMENTS = "N_r"
# input index -> the flag that is 0 when that input is the same tensor as an earlier one (read
# once: self-attention's query, key and value), bound like the element sizes
DISTINCT_INPUTS = {1: "x_1", 2: "x_2", 3: "x_3"}
# the flag that is 1 when the call's first input requires grad (autograd records the call; an
# in-place activation whose backward needs its input copies it first), bound like the above
REQUIRES_GRAD = "rg"
# the flag that is 1 when the module's parameters require grad (0: frozen), for backward costs
WEIGHTS_GRAD = "gw"
# output index (as tensors_in flattens a call's outputs) -> the flag that is 1 when a gradient
# reaches that output: 1 in lc.bind and lc.count (the outputs' sum); lc.analyze reads them from
# the model's autograd graph (a recurrent layer whose h_n the model does not use)
OUTPUT_GRADS = {0: "go", 1: "gh", 2: "gc"}
# the data symbol for the kernel torch takes (an LSTM without projection on the CPU: 1 oneDNN's
# fused kernel in float32 or bfloat16, 2 in float16, 0 the composite steps): lc.bind and
# lc.analyze read it from the call's tensors and torch's settings (ATen's use_mkldnn), where a
# rule has it; shapes alone take the rule's default
FUSED_KERNEL = "k_f"
# argument index -> the flag that is 1 when that tensor argument of an operator call requires
# grad (functional rules' backward: each argument's gradient is computed only where needed)
ARGUMENT_GRADS = {1: "rg_1", 2: "rg_2", 3: "rg_3"}

DOMAINS = ("positive", "nonnegative", "flag")


def formulas_dir() -> Path:
    """Where the catalogue lives: inside the installed package, or beside it in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "formulas", here.parent / "formulas"):
        if (candidate / "symbols.toml").is_file():
            return candidate
    raise CatalogueError(f"formulas/ not found next to {here}")


@dataclass(frozen=True)
class SymbolInfo:
    """What the glossary says of one symbol."""

    name: str
    symbol: sympy.Symbol
    latex: str
    meaning: str
    domain: str
    default: int | None = None
    square: tuple[str, ...] = ()
    line: str = ""


@dataclass
class Glossary:
    """All glossary symbols by name, with their LaTeX and domains."""

    info: dict[str, SymbolInfo] = field(default_factory=dict)

    @property
    def symbols(self) -> dict[str, sympy.Symbol]:
        return {name: i.symbol for name, i in self.info.items()}

    @property
    def latex_names(self) -> dict[sympy.Symbol, str]:
        return {i.symbol: i.latex for i in self.info.values()}

    def by_symbol(self, symbol: sympy.Symbol) -> SymbolInfo | None:
        i = self.info.get(symbol.name)
        return i if i is not None and i.symbol == symbol else None

    def square_of(self, name: str) -> str | None:
        """The square shorthand (``k``) that stands for a per-axis symbol (``k_h``), if any."""
        for i in self.info.values():
            if name in i.square:
                return i.name
        return None


def make_symbol(name: str, domain: str) -> sympy.Symbol:
    if domain == "positive":
        return sympy.Symbol(name, integer=True, positive=True)
    return sympy.Symbol(name, integer=True, nonnegative=True)


_FIELDS = {"latex", "meaning", "domain", "default", "square"}


def load_glossary(path: Path) -> Glossary:
    """Read and validate a glossary file."""
    source = SourceFile(path)
    result = Glossary()
    for name, table in source.data.items():
        where = (name,)
        if not isinstance(table, dict):
            raise source.error(where, f"symbol {name!r} must be a table")
        if not name.isidentifier() or name.startswith("_"):
            raise source.error(where, f"symbol name {name!r} is not a plain identifier")
        unknown = set(table) - _FIELDS
        if unknown:
            raise source.error(where, f"symbol {name!r}: unknown field(s) {sorted(unknown)}")
        for required in ("latex", "meaning", "domain"):
            if required not in table:
                raise source.error(where, f"symbol {name!r}: missing field {required!r}")
        if table["domain"] not in DOMAINS:
            raise source.error(
                (name, "domain"), f"symbol {name!r}: domain must be one of {', '.join(DOMAINS)}"
            )
        result.info[name] = SymbolInfo(
            name=name,
            symbol=make_symbol(name, table["domain"]),
            latex=table["latex"],
            meaning=table["meaning"],
            domain=table["domain"],
            default=table.get("default"),
            square=tuple(table.get("square", ())),
            line=source.where(name),
        )
    for i in result.info.values():
        for member in i.square:
            if member not in result.info:
                raise source.error((i.name, "square"), f"square member {member!r} is not a symbol")
    return result


@cache
def glossary() -> Glossary:
    """The glossary of the installed catalogue (loaded once, on first use)."""
    return load_glossary(formulas_dir() / "symbols.toml")
