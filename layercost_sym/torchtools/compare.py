"""``compare``: one model's cost under several conventions side by side, and why they differ.

A :class:`Comparison` holds one :func:`~layercost_sym.torchtools.tracing.analyze` trace and
reads it under each convention: the total, a breakdown into seven families and, for any two
conventions, their difference as an expression together with the rows (module or operator
calls) it comes from, largest first.  Nothing is traced twice: every convention is a sum over
the same rows.

Families.  A row's family comes from its rule's catalogue file (``formulas/<family>.toml``),
or from the rule's own entry in ``formulas/families.toml`` (:mod:`layercost_sym.families`):

============  ==============================================================================
family        rules
============  ==============================================================================
conv          ``conv`` (Conv1d-3d, ConvTranspose1d-3d)
linear        ``linear`` (Linear, Bilinear); operators ``mm``, ``addmm``, ``bmm`` (matmul,
              einsum, F.linear, and the products of attention written as functions)
norm          ``norm``; operator ``native_layer_norm`` (F.layer_norm)
activation    ``activation``; operators ``relu``, ``gelu``, ``silu``, ``hardswish``,
              ``sigmoid``, ``tanh``, ``_softmax``, ``softmax``
pooling       ``pooling``; operator ``mean`` where it is F.adaptive_avg_pool*d to size 1
              (variants ``mean.adaptive_avg_pool2d`` / ``3d``)
attention     ``attention`` (MultiheadAttention, Transformer layers, the SDPA rule); operator
              ``_safe_softmax`` (only the math SDPA path runs it)
other         everything else: ``recurrent``, ``embedding``, ``dropout``, ``resampling``,
              ``distance``, the shape layers Flatten / Unflatten / Identity, and every other
              operator (residual ``add``, ``mul``, ``cat``, ``mean``, ``sum``, views, ...)
============  ==============================================================================

>>> import torch
>>> from layercost_sym.torchtools.compare import compare
>>> net = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU())
>>> c = compare(net, ("N", 8), conventions=("macs", "fvcore", "ptflops"))
>>> c.totals
{'macs': 32*N, 'fvcore': 32*N, 'ptflops': 44*N}
>>> c.breakdown("ptflops")["activation"]        # the ReLU hook plus its patched F.relu
8*N
>>> d = c.diff("ptflops", "fvcore", at={"N": 2})  # Linear: + bias; ReLU: 2 per element
>>> d.total, d.value(), [(r.name, r.rule, r.difference) for r in d.rows]
(12*N, 24, [('1', 'ReLU', 8*N), ('0', 'Linear', 4*N)])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sympy

from ..errors import ConventionError
from ..evaluation import evaluate
from ..families import families, family_of
from ..quantities import quantity
from .analysis import Analysis, Layer
from .tracer import MOVEMENT

__all__ = [
    "Comparison",
    "Diff",
    "DiffRow",
    "compare",
]


@dataclass(frozen=True)
class DiffRow:
    """One call's share of a difference: its cost under ``a`` and ``b`` and ``a - b``."""

    name: str  # the analysis row's name (module path, or "<module>:<operator>")
    rule: str
    family: str
    a: sympy.Expr
    b: sympy.Expr

    @property
    def difference(self) -> sympy.Expr:
        return self.a - self.b  # like terms of the two rules' forms collect by themselves


@dataclass(frozen=True)
class Diff:
    """``a - b`` for a whole model: :attr:`total` and the rows it comes from, largest first
    (by absolute value at :attr:`at`; without it, for large inputs: every input symbol at
    1000).  Rows where the two conventions agree are left out."""

    a: str
    b: str
    rows: list[DiffRow]
    at: Mapping[str, int] | None = None

    @property
    def total(self) -> sympy.Expr:
        return sympy.Add(*(r.difference for r in self.rows))

    @property
    def families(self) -> dict[str, sympy.Expr]:
        """The difference per family (all seven, 0 where the conventions agree)."""
        out = {f: sympy.Integer(0) for f in families().order}
        for r in self.rows:
            out[r.family] += r.difference
        return out

    def value(self, expr: sympy.Expr | DiffRow | None = None) -> int:
        """The exact value at :attr:`at` of the total (or of a row's difference)."""
        if self.at is None:
            raise ConventionError("this difference has no 'at' shapes to evaluate it at")
        if isinstance(expr, DiffRow):
            return evaluate(expr.a, self.at) - evaluate(expr.b, self.at)
        if expr is None:
            return sum(self.value(r) for r in self.rows)
        return _signed(expr, self.at)


@dataclass
class Comparison:
    """Costs of one traced model under several conventions (see the module docstring)."""

    analysis: Analysis
    # by default, the FLOPs conventions stated for every layer (quantity("flops").compared)
    conventions: tuple[str, ...] = field(default_factory=lambda: quantity("flops").compared)
    at: Mapping[str, int] | None = None
    _families: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.conventions = tuple(self.conventions)
        if not self.conventions:
            raise ConventionError("compare needs at least one convention")
        for convention in self.conventions:
            self._require(convention)
        if self.at is not None:
            self.at = {str(k): int(v) for k, v in self.at.items()}
            self.analysis.check(self.at)

    def _require(self, convention: str) -> None:
        quantity("flops").convention(convention)  # an unknown name: an error naming the known
        missing = [
            f"{layer.name} ({layer.rule})"
            for layer in self.analysis.layers
            if convention not in layer.conventions
        ]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise ConventionError(
                f"convention {convention!r} is not defined for every layer of the model: {shown}"
            )

    def family(self, layer: Layer) -> str:
        if layer.rule == MOVEMENT:  # no rule: data movement, the sums of gradients
            return families().order[-1]
        if layer.rule not in self._families:
            self._families[layer.rule] = family_of(layer.rule)
        return self._families[layer.rule]

    @property
    def params(self) -> sympy.Expr:
        return self.analysis.params

    @property
    def totals(self) -> dict[str, sympy.Expr]:
        """Convention -> the model's total cost (a closed form in the input symbols)."""
        return {c: self.analysis.cost(c) for c in self.conventions}

    def breakdown(self, convention: str) -> dict[str, sympy.Expr]:
        """Family -> cost under ``convention`` (all seven families; they sum to the total)."""
        self._require(convention)
        out: dict[str, list[sympy.Expr]] = {f: [] for f in families().order}
        for layer in self.analysis.layers:
            out[self.family(layer)].append(layer.cost(convention))
        return {f: sympy.Add(*terms) for f, terms in out.items()}

    def values(self, at: Mapping[str, int] | None = None) -> dict[str, dict[str, int]]:
        """Convention -> {"total": int, family: int, ...} at ``at`` (default: :attr:`at`),
        after checking the analysis' guards."""
        at = self._at(at)
        self.analysis.check(at)
        out = {}
        for c in self.conventions:
            parts = {f: evaluate(e, at) for f, e in self.breakdown(c).items()}
            out[c] = {"total": sum(parts.values()), **parts}
        return out

    def diff(self, a: str, b: str, at: Mapping[str, int] | None = None) -> Diff:
        """``a - b``: the symbolic difference and the rows it comes from, largest first."""
        for convention in (a, b):
            self._require(convention)
        at = dict(at) if at is not None else self.at
        if at is not None:
            self.analysis.check(at)
        rows = [
            DiffRow(layer.name, layer.rule, self.family(layer), layer.cost(a), layer.cost(b))
            for layer in self.analysis.layers
        ]
        rows = [r for r in rows if r.difference != 0 and sympy.expand(r.difference) != 0]
        point = at if at is not None else {s.name: 1000 for s in self.analysis.symbols}
        rows.sort(key=lambda r: -abs(_signed(r.a, point) - _signed(r.b, point)))
        return Diff(a, b, rows, at)

    def _at(self, at: Mapping[str, int] | None) -> dict[str, int]:
        if at is not None:
            return {str(k): int(v) for k, v in at.items()}
        if self.at is not None:
            return dict(self.at)
        if not self.analysis.symbols:
            return {}
        names = ", ".join(s.name for s in self.analysis.symbols)
        raise ConventionError(f"values need the input symbols' sizes ({names}): pass at=...")

    # -- output ----------------------------------------------------------------------------
    def table(self, at: Mapping[str, int] | None = None) -> str:
        """Families down, conventions across: exact values at ``at`` (or :attr:`at`); with
        symbolic inputs and no sizes, one block of formulas per convention."""
        try:
            values = self.values(at)
        except ConventionError:
            values = None
        if values is None:
            blocks = []
            for c in self.conventions:
                lines = [f"{c}:", f"  {'total':<10}  {self.analysis.cost(c)}"]
                lines += [f"  {f:<10}  {e}" for f, e in self.breakdown(c).items()]
                blocks.append("\n".join(lines))
            return "\n".join(blocks)
        header = ["family", *self.conventions]
        rows = [[f, *(str(values[c][f]) for c in self.conventions)] for f in families().order]
        rows.append(["total", *(str(values[c]["total"]) for c in self.conventions)])
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines = []
        for r in [header, *rows]:
            cells = [r[0].ljust(widths[0])] + [r[i].rjust(widths[i]) for i in range(1, len(r))]
            lines.append("  ".join(cells).rstrip())
        return "\n".join(lines)

    def diff_table(self, a: str, b: str, at: Mapping[str, int] | None = None, top: int = 20):
        """The text form of :meth:`diff`: total, per family, then the ``top`` largest rows."""
        d = self.diff(a, b, at)
        known = d.at is not None
        lines = [f"{a} - {b} = {d.total}" + (f" = {d.value()}" if known else "")]
        for f, e in d.families.items():
            if e != 0:
                lines.append(f"  {f:<10}  {e}" + (f" = {d.value(e)}" if known else ""))
        if d.rows:
            lines.append("rows, largest first:")
            shown = d.rows[:top] if top > 0 else d.rows
            cells = [("layer", "rule", a, b, "difference")]
            for r in shown:
                if d.at is not None:
                    av, bv = evaluate(r.a, d.at), evaluate(r.b, d.at)
                    cells.append((r.name, r.rule, str(av), str(bv), str(av - bv)))
                else:
                    cells.append((r.name, r.rule, str(r.a), str(r.b), str(r.difference)))
            widths = [max(len(c[i]) for c in cells) for i in range(4)]
            for c in cells:
                cells_text = "  ".join(c[i].ljust(widths[i]) for i in range(4))
                lines.append(f"  {cells_text}  {c[4]}")
            if len(d.rows) > len(shown):
                lines.append(f"  ... and {len(d.rows) - len(shown)} more rows")
        return "\n".join(lines)

    def to_json(self, diffs: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
        """Plain data: expressions as text (readable by :func:`layercost_sym.evaluate`), and
        exact values where :attr:`at` is known (or the inputs are concrete)."""
        data: dict[str, Any] = {
            "symbols": [s.name for s in self.analysis.symbols],
            "params": str(self.params),
            "conventions": list(self.conventions),
            "totals": {c: str(e) for c, e in self.totals.items()},
            "families": {
                c: {f: str(e) for f, e in self.breakdown(c).items()} for c in self.conventions
            },
        }
        at = self._at(None) if self.at is not None or not self.analysis.symbols else None
        if at is not None:
            data["at"] = at
            data["values"] = self.values(at)
        data["diffs"] = []
        for a, b in diffs:
            d = self.diff(a, b, at)
            rows = []
            for r in d.rows:
                row: dict[str, Any] = {"name": r.name, "rule": r.rule, "family": r.family}
                row.update({a: str(r.a), b: str(r.b), "difference": str(r.difference)})
                if at is not None:
                    row["value"] = d.value(r)
                rows.append(row)
            entry: dict[str, Any] = {
                "a": a,
                "b": b,
                "total": str(d.total),
                "families": {f: str(e) for f, e in d.families.items()},
                "rows": rows,
            }
            if at is not None:
                entry["value"] = d.value()
            data["diffs"].append(entry)
        data["unsupported"] = [
            {"name": u.name, "kind": u.kind, "what": u.what, "detail": u.detail}
            for u in self.analysis.unsupported
        ]
        return data

    def to_latex(
        self,
        at: Mapping[str, int] | None = None,
        *,
        math: bool = False,
        caption: str | None = None,
        label: str | None = None,
    ) -> str:
        """A LaTeX table, one row per convention: the model's total FLOPs as a formula and its
        exact value at ``at`` (default :attr:`at`; guards checked), a ``booktabs`` ``table``
        float (``math=True``: an ``array``); see :mod:`layercost_sym.tables`."""
        return self._table(at, caption).to_latex(math=math, label=label)

    def _table(self, at: Mapping[str, int] | None, caption: str | None = None) -> Any:
        from ..tables import comparison_table

        if caption is None:
            return comparison_table(self, at=at)
        return comparison_table(self, at=at, description=caption)

    def to_pandas(self, at: Mapping[str, int] | None = None) -> Any:
        """The table of :meth:`to_latex` as a ``pandas.DataFrame``."""
        return self._table(at).to_pandas()

    def _repr_html_(self) -> str:
        return self._table(None).to_html()

    def _repr_latex_(self) -> str:
        return self._table(None)._repr_latex_()

    def __repr__(self) -> str:  # short: the analysis is the whole trace
        return f"<Comparison under {', '.join(self.conventions)}: {self.analysis!r}>"


def _signed(expr: sympy.Expr, at: Mapping[str, int]) -> int:
    """An exact value that may be negative (``evaluate`` refuses negative costs)."""
    value = sympy.expand(expr).xreplace({s: sympy.Integer(at[s.name]) for s in expr.free_symbols})
    return int(sympy.floor(value))


def compare(
    model: Any,
    *input_shapes: Sequence[int | str],
    conventions: Sequence[str] | None = None,
    at: Mapping[str, int] | None = None,
    **analyze_kwargs: Any,
) -> Comparison:
    """Trace ``model`` once (:func:`~layercost_sym.torchtools.tracing.analyze`, to which
    ``analyze_kwargs`` go: ``dtype``, ``training``, ``hints``, forward keyword arguments) and
    compare it under ``conventions`` (default: ``quantity("flops").compared``: exact, macs,
    torch, fvcore, thop, ptflops).

    ``at`` gives the input symbols' sizes for exact values (:meth:`Comparison.values`, the
    ordering of :meth:`Comparison.diff`); a convention some layer does not define raises
    :class:`~layercost_sym.errors.ConventionError` naming the layers.
    """
    from .tracing import analyze

    if "backward" in analyze_kwargs:
        raise ConventionError("compare covers the forward pass only (no backward=...)")
    chosen = quantity("flops").compared if conventions is None else tuple(conventions)
    return Comparison(analyze(model, *input_shapes, **analyze_kwargs), chosen, at)
