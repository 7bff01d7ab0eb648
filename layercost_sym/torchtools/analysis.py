"""``analyze``: a whole torch model's parameters and costs as closed forms in its input size.

The model runs once, eagerly, on fake tensors (``FakeTensorMode`` with a ``ShapeEnv``): the
input dimensions the caller names (``"N"``, ``"H"``, ...) are dynamic sizes, so every tensor's
shape is torch's own symbolic expression of them, floors of strides and pooling included.

* Each call of a module that has a catalogue rule (the outermost one: nothing inside it is
  looked at again) is bound from the module's attributes and the symbolic shapes of its inputs,
  and costed by the rule.
* Everything run outside such modules (residual adds, ``torch.flatten``, ``torch.cat``,
  ``F.relu``, matmuls, softmax, ...) is seen as ATen operators by a dispatch mode and costed by
  the functional rules of ``formulas/functional.toml``; an operator the op counter would break
  up is broken up by torch's decomposition table in the same way; data movement counts 0; an
  operator with no rule is listed in :attr:`Analysis.unsupported`, never counted as 0 silently.
  ``F.conv*d`` and the ``F.*pool*d`` functions are costed by the rule of the torch.nn module
  that runs the same operator (``exact``, ``macs``, ``torch``, ``fvcore``); thop and ptflops
  count such a call otherwise than the module, as :data:`_AS_FUNCTION` states.
* A module with parameters and no rule (and no submodules) has its parameters counted by
  ``numel`` and its operators by the functional rules: it is listed in
  :attr:`Analysis.costed_by_operators` (GPT-2's ``Conv1D``, costed by its ``addmm``), or in
  ``unsupported`` when an operator without a rule ran inside it.
* The guards torch records while tracing (``(H - 1)//32 + 1 != 1``, ...) are the range where
  the closed form holds; :meth:`Analysis.evaluate` refuses shapes outside it, naming the guard.
  They are shown simplified where that is proven (``H >= 33``; :attr:`Analysis.range`).  An
  ``nn.Embedding`` looked up at positions ``arange(L)`` adds ``L <= num_embeddings`` (GPT-2's
  1024 positions), a bound torch does not record.
* transformers' mask code takes, on fake tensors, the branch a real run takes (see
  :func:`_real_run_branches`), so ``exact`` counts the operators a real run performs.
* Sizes are traced as ``>= 2`` (torch specialises 0 and 1): a model that branches on a size
  being 1 may run other operators there (GPT-2 at ``L = 1``: ``12*N + 4`` ``exact`` operations
  per layer fewer, its causal mask; ``torch`` and ``macs`` agree).
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sympy
import torch
from torch._decomp import decomposition_table
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from ..catalogue import catalogue
from ..conventions import DEFAULT_CONVENTION
from ..domain import Condition, Domain, with_domain
from ..errors import (
    ConventionError,
    EvaluationError,
    LayercostError,
    ShapeError,
    TraceError,
    UnknownRuleError,
)
from ..evaluation import check_domain, evaluate
from ..glossary import glossary
from ..reading import attribute, split_input
from ..reading import read_spec as _read
from ..reading import when_matches as _attr_equals
from ..rule import Rule
from ..text import clip
from . import pinning as _pinning
from .opcount import _op_name, op_kind
from .symbolic import implied_by_bounds, simplify_guard, to_sympy

__all__ = ["Analysis", "Layer", "OperatorCostedModule", "Unsupported", "analyze"]


@dataclass(frozen=True, eq=False)
class Layer:
    """One costed call: a module call (``kind="module"``) or an operator (``"op"``)."""

    name: str  # qualified module name; operators: "<enclosing module>:<op>" ("" = the model)
    rule: str
    kind: str
    params: sympy.Expr  # counted once per module (0 on the module's second call)
    input_shapes: tuple[tuple[sympy.Expr, ...], ...] = ()
    binding: Mapping[str, sympy.Expr] = field(default_factory=dict)  # symbol -> expr
    training: bool = False
    _rule: Rule | None = field(default=None, repr=False)
    # backward (macs, torch): products the backward pass runs per forward product: 2 when
    # both operands need a gradient (input and weight), 1 when one does, None: not known
    grad_factor: int | None = None
    _cache: dict = field(default_factory=dict, repr=False, compare=False)
    # conventions taken from the rule (None: all): an operator costed by a module's rule
    # (F.conv2d, F.max_pool2d, ...) takes exact, macs, torch and fvcore from it (see _AS_FUNCTION)
    only: tuple[str, ...] | None = None
    # costs stated for this call itself, in the input symbols, beside the rule's: the peer tools
    # that count a function call otherwise than its module (thop, ptflops; see _AS_FUNCTION)
    stated: Mapping[str, sympy.Expr] = field(default_factory=dict)
    notes: Mapping[str, str] = field(default_factory=dict)  # convention -> why (stated costs)

    @property
    def conventions(self) -> tuple[str, ...]:
        found = self._rule.conventions if self._rule is not None else ()
        if self.only is not None:
            found = tuple(c for c in found if c in self.only)
        return found + tuple(c for c in self.stated if c not in found)

    @property
    def costs(self) -> dict[str, sympy.Expr]:
        """Convention -> cost of this call, for every convention its rule defines."""
        return {c: self.cost(c) for c in self.conventions}

    def cost(self, convention: str = DEFAULT_CONVENTION) -> sympy.Expr:
        """This call's cost under ``convention``, in the input symbols."""
        if convention not in self.conventions:
            raise ConventionError(
                f"{self.name} (rule {self.rule}) does not define convention {convention!r}"
            )
        if convention in self.stated:
            return self.stated[convention]
        if convention not in self._cache:
            symbols = glossary().symbols
            subs = {symbols[k]: v for k, v in self.binding.items()}
            self._cache[convention] = self._rule.cost(convention, self.training).xreplace(subs)
        return self._cache[convention]


# A weighted product's backward is two products of the same size (FlopCounterMode's formulas
# for mm, addmm, bmm and convolution_backward): one for the input's gradient, one for the
# weight's; a bias gradient is a sum, which these conventions do not count.
_BACKWARD_CONVENTIONS = ("macs", "torch")
_SIMPLE_PRODUCTS = {"Linear", "Conv1d", "Conv2d", "Conv3d", "Bilinear"}
_PRODUCT_OPS = {"mm", "addmm", "bmm"}


@dataclass(frozen=True)
class Unsupported:
    """A module or operator call with no rule whose cost is not in the totals (an operator
    with no functional rule, a module running one, a rule that does not bind): never a silent
    zero.  ``counted`` is False for every entry of :attr:`Analysis.unsupported`."""

    name: str
    kind: str  # "module" or "op"
    what: str  # class or operator name
    detail: str
    counted: bool


@dataclass(frozen=True)
class OperatorCostedModule:
    """A module with parameters and no rule whose operators all have functional rules
    (GPT-2's ``Conv1D``: ``addmm``): costed by those operators, its parameters by ``numel``."""

    name: str
    what: str  # class name
    ops: tuple[str, ...]  # the operators costed inside it, in the order first run
    detail: str
    params: int = 0  # its parameters (numel; those no ruled module counts), in Analysis.params


@dataclass
class Analysis:
    """The result of :func:`analyze` (see the module docstring)."""

    symbols: tuple[sympy.Symbol, ...]
    layers: list[Layer]
    unsupported: list[Unsupported]
    guards: list[sympy.Basic]
    extra_params: int  # parameters outside any called ruled module (numel)
    convention: str = DEFAULT_CONVENTION
    training: bool = False
    output_shapes: list[tuple[sympy.Expr, ...]] = field(default_factory=list)
    backward: bool = False
    # guard -> where it comes from, for guards the analysis adds itself (torch's otherwise)
    guard_sources: dict[sympy.Basic, str] = field(default_factory=dict)
    # modules with no rule costed by their operators (not unsupported: their cost is counted)
    costed_by_operators: list[OperatorCostedModule] = field(default_factory=list)
    # symbol -> (value, note): dimensions the model would not trace symbolically, traced at
    # that value (a guard ``H == 224`` each); the note names the model code that forced it
    pinned: dict[str, tuple[int, str]] = field(default_factory=dict)

    @property
    def conditions(self) -> list[sympy.Basic]:
        """The guards in their simplest proven form (``H >= 33`` for torch's
        ``floor(H/32 - 1/32) + 1 != 1``; see :func:`.symbolic.simplify_guard`), one per guard.
        :attr:`guards` keep torch's own form, and :meth:`check` evaluates those."""
        return [simplify_guard(g) for g in self.guards]

    @property
    def domain(self) -> Domain:
        """The guards as a :class:`~layercost_sym.Domain`: every closed form this analysis
        hands out (:attr:`params`, :meth:`cost`) carries it, so that
        :func:`layercost_sym.evaluate` refuses sizes outside the range where it holds."""
        return Domain(tuple(self._guard_condition(g) for g in self.guards))

    def _guard_condition(self, guard: sympy.Basic) -> Condition:
        def display() -> str:  # simplified only when shown: proving a form takes time
            simple = simplify_guard(guard)
            text = _condition_text(simple)
            return text + (f" (recorded as {_condition_text(guard)})" if simple != guard else "")

        source = self.guard_sources.get(guard, "torch recorded it while tracing the model")
        return Condition(guard, _condition_text(guard), source, "", kind="guard", display=display)

    @property
    def params(self) -> sympy.Expr:
        """Parameters: each ruled module's rule once, plus the ``numel`` of all others."""
        total = sympy.Add(*(layer.params for layer in self.layers)) + self.extra_params
        return with_domain(total, self.domain)

    @property
    def flops(self) -> sympy.Expr:
        """Total cost under the convention the analysis was made with."""
        return self.cost(self.convention)

    @property
    def conventions(self) -> tuple[str, ...]:
        """Conventions every costed call defines."""
        sets = [set(layer.conventions) for layer in self.layers]
        return tuple(sorted(set.intersection(*sets))) if sets else ()

    def cost(self, convention: str = DEFAULT_CONVENTION) -> sympy.Expr:
        """The whole model's cost under ``convention`` (a closed form in the input symbols);
        with ``backward=True``, forward plus backward pass (``macs`` and ``torch`` only)."""
        return with_domain(self._total(convention), self.domain)

    def _total(self, convention: str) -> sympy.Expr:
        if not self.backward:
            return sympy.Add(*(layer.cost(convention) for layer in self.layers))
        if convention not in _BACKWARD_CONVENTIONS:
            raise ConventionError(
                f"backward costs are known for {', '.join(_BACKWARD_CONVENTIONS)}, "
                f"not {convention!r}"
            )
        terms = []
        for layer in self.layers:
            forward = layer.cost(convention)
            if forward == 0:
                continue
            if layer.grad_factor is None:
                raise ConventionError(
                    f"{layer.name} (rule {layer.rule}): its backward cost is not known "
                    "(a frozen weight or an input without gradient inside a composite layer)"
                )
            terms.append((1 + layer.grad_factor) * forward)
        return sympy.Add(*terms)

    def check(self, shapes: Mapping[str, int]) -> None:
        """Raise :class:`~layercost_sym.DomainError` (an ``EvaluationError``) naming the first
        guard ``shapes`` violate."""
        values = {str(k): v for k, v in shapes.items()}
        missing = [s.name for s in self.symbols if s.name not in values]
        if missing:
            raise EvaluationError(f"missing value for input symbol(s) {', '.join(missing)}")
        check_domain(self.domain, values)

    def evaluate(
        self, shapes: Mapping[str, int], convention: str | None = None, what: str = "cost"
    ) -> int:
        """The exact cost (``what="params"``: parameters) at ``shapes``, after checking the
        guards."""
        self.check(shapes)
        expr = self.params if what == "params" else self.cost(convention or self.convention)
        return evaluate(expr, shapes)

    @property
    def range(self) -> list[str]:
        """Where the closed form holds, as condition text readable by the package's parser
        (ResNet-18: ``["H >= 33", "W >= 33"]``): the guards simplified (:attr:`conditions`),
        each symbol's tightest bounds, then the guards those bounds do not imply.  Equivalent
        to all of :attr:`guards` together."""
        return [_condition_text(g) for g in _shown(self.conditions, self.symbols)]

    @property
    def raw_range(self) -> list[str]:
        """The guards as torch recorded them (``floor(H/32 - 1/32) + 1 != 1``), as text."""
        return [_condition_text(g) for g in self.guards]

    # -- output ----------------------------------------------------------------------------
    def rows(self, depth: int | None = None, convention: str | None = None):
        """``(name, rules, params, cost)`` per module call, or summed per module prefix of
        ``depth`` dotted parts (operators count with the module they run in).  ``rules`` is
        short (:data:`RULES_WIDTH` characters at most): the rules of the modules by name, a
        module costed by its operators as ``Conv1D (by its ops: addmm)``, then the other
        operators in brief (``ops: add, mul +3``)."""
        convention = convention or self.convention
        return [
            (name, self._rules_text(group, convention), params, cost)
            for name, group, params, cost in self._groups(depth, convention)
        ]

    def _groups(self, depth: int | None, convention: str | None):
        """``(name, layers, params, cost)`` per row of :meth:`rows`."""
        convention = convention or self.convention
        grouped: dict[str, list[Layer]] = {}
        # a module costed by its operators owns its parameters: shown on its first call's row
        owned = {m.name: m.params for m in self.costed_by_operators}
        extra: dict[str, int] = {}
        for layer in self.layers:
            name = layer.name.split(":")[0] if depth is not None else layer.name
            if depth is not None:
                name = ".".join(name.split(".")[:depth]) if name else ""
            grouped.setdefault(name, []).append(layer)
            where = layer.name.split(":")[0]
            if layer.kind == "op" and where in owned:
                extra[name] = extra.get(name, 0) + owned.pop(where)
        return [
            (
                name or "(model)",
                group,
                sympy.Add(*(layer.params for layer in group)) + extra.get(name, 0),
                sympy.Add(*(layer.cost(convention) for layer in group)),
            )
            for name, group in grouped.items()
        ]

    def _rules_text(self, group: Sequence[Layer], convention: str) -> str:
        """The ``rules`` cell of :meth:`rows` for the calls ``group``: operators that cost
        something under ``convention`` are named first, data movement (views, copies) last."""
        by_operators = {m.name: m for m in self.costed_by_operators}
        modules: dict[str, None] = {}
        # operator -> whether any call of it costs something, per class costed by its
        # operators ("" for operators run outside such modules)
        ops: dict[str, dict[str, bool]] = {"": {}}
        for layer in group:
            where, _, op = layer.name.partition(":")
            if layer.kind == "module":
                modules[layer.rule.split(".")[0]] = None  # the class, not its variant
                continue
            seen = ops.setdefault(by_operators[where].what if where in by_operators else "", {})
            seen[op] = seen.get(op, False) or layer.cost(convention) != 0

        def ranked(found: dict[str, bool]) -> list[str]:
            return [op for op, c in found.items() if c] + [op for op, c in found.items() if not c]

        classes = [  # a class by the operators that cost something (its views say little)
            f"{c} (by its ops: {', '.join([o for o, v in found.items() if v] or list(found))})"
            for c, found in ops.items()
            if c
        ]
        return _summary([*modules, *classes], ranked(ops[""]), RULES_WIDTH)

    def table(
        self,
        depth: int | None = None,
        convention: str | None = None,
        at: Mapping[str, int] | None = None,
    ) -> str:
        """A text table, one row per call (or per module prefix of ``depth`` parts); with
        ``at``, costs are evaluated there (after checking the guards)."""
        if at is not None:
            self.check(at)
        convention = convention or self.convention
        lines = [("layer", "rule", "params", f"cost ({convention})")]
        for name, rules, params, cost in self.rows(depth, convention):
            shown = evaluate(cost, at) if at is not None else cost
            lines.append((name, rules, str(params), str(shown)))
        total = evaluate(self.cost(convention), at) if at is not None else self.cost(convention)
        lines.append(("total", "", str(self.params), str(total)))
        widths = [max(len(row[i]) for row in lines) for i in range(3)]
        return "\n".join(
            "  ".join(row[i].ljust(widths[i]) for i in range(3)) + "  " + row[3] for row in lines
        )

    def __str__(self) -> str:
        return self.table(depth=1)

    def to_json(self, depth: int | None = None) -> dict[str, Any]:
        """Plain data (expressions as strings, readable by :func:`layercost_sym.evaluate`)."""
        conventions = self.conventions
        return {
            "symbols": [s.name for s in self.symbols],
            "guards": self.range,
            "params": str(self.params),
            "costs": {c: str(self.cost(c)) for c in conventions},
            "layers": [
                {
                    "name": name,
                    # every rule, unabridged: ", ".join of the rows' rules before they were
                    # summarised for people
                    "rules": ", ".join(dict.fromkeys(layer.rule for layer in group)),
                    "params": str(params),
                    "cost": str(cost),
                }
                for name, group, params, cost in self._groups(depth, self.convention)
            ],
            "convention": self.convention,
            "unsupported": [
                {
                    "name": u.name,
                    "kind": u.kind,
                    "what": u.what,
                    "detail": u.detail,
                    "counted": u.counted,
                }
                for u in self.unsupported
            ],
            "costed_by_operators": [
                {"name": m.name, "what": m.what, "ops": list(m.ops), "detail": m.detail}
                for m in self.costed_by_operators
            ],
        }

    def to_latex(self, depth: int | None = 1, convention: str | None = None) -> str:
        """A LaTeX ``tabular`` of per-layer parameters and cost formulas, and the total."""
        from ..printing import latex

        convention = convention or self.convention
        lines = [
            r"\begin{tabular}{lll}",
            r"\hline",
            rf"layer & params & FLOPs$_{{\mathrm{{{convention}}}}}$ \\",
            r"\hline",
        ]
        for name, _rules, params, cost in self.rows(depth, convention):
            shown = name.replace("_", r"\_")
            lines.append(rf"\texttt{{{shown}}} & ${latex(params)}$ & ${latex(cost)}$ \\")
        lines += [
            r"\hline",
            rf"total & ${latex(self.params)}$ & ${latex(self.cost(convention))}$ \\",
            r"\hline",
            r"\end{tabular}",
        ]
        return "\n".join(lines)


RULES_WIDTH = 60  # the widest rules cell of Analysis.rows


def _summary(named: Sequence[str], ops: Sequence[str], width: int) -> str:
    """``named`` (rules, classes) joined, then ``ops: a, b +k`` with as many operators as fit
    ``width``; what still does not fit is cut with an ellipsis."""
    head = ", ".join(named)
    if not ops:
        return clip(head, width)
    sep = "; " if head else ""
    for shown in range(len(ops), 0, -1):
        rest = len(ops) - shown
        text = f"{head}{sep}ops: {', '.join(ops[:shown])}" + (f" +{rest}" if rest else "")
        if len(text) <= width:
            return text
    return clip(f"{head}{sep}ops: {len(ops)}", width) if head else f"ops: {len(ops)}"


def _shown(conditions: Sequence[sympy.Basic], symbols: Sequence[sympy.Symbol]) -> list:
    """The conjunction of ``conditions`` with each symbol's bounds merged to its tightest and
    the conditions those lower bounds imply (:func:`.symbolic.implied_by_bounds`) left out."""
    lower: dict[sympy.Symbol, int] = {}
    upper: dict[sympy.Symbol, int] = {}
    pending = list(conditions)
    while True:  # bounds found so far may simplify the rest further (a smaller domain)
        others: list[sympy.Basic] = []
        found = False
        for cond in pending:
            for part in cond.args if isinstance(cond, sympy.And) else (cond,):
                if part is sympy.true:
                    continue
                if len(part.free_symbols) == 1:
                    (x,) = part.free_symbols
                    part = simplify_guard(part, lower.get(x, 1))
                bound = isinstance(part, sympy.Ge | sympy.Le) and part.lhs.is_Symbol
                if bound and part.rhs.is_Integer:
                    found = True
                    value = int(part.rhs)
                    if isinstance(part, sympy.Ge):
                        lower[part.lhs] = max(lower.get(part.lhs, value), value)
                    else:
                        upper[part.lhs] = min(upper.get(part.lhs, value), value)
                elif part is not sympy.true:
                    others.append(part)
        if not found or not others:
            break
        pending = others
    order = list(dict.fromkeys([*symbols, *lower, *upper]))
    shown: list[sympy.Basic] = []
    for x in order:
        if x in lower and lower[x] == upper.get(x):  # one value: a pinned size
            shown.append(sympy.Eq(x, lower[x]))
            continue
        if x in lower:
            shown.append(sympy.Ge(x, lower[x]))
        if x in upper:
            shown.append(sympy.Le(x, upper[x]))
    shown += [c for c in dict.fromkeys(others) if not implied_by_bounds(c, lower)]
    return shown


def _condition_text(cond: sympy.Basic) -> str:
    if isinstance(cond, sympy.core.relational.Relational):
        return f"{cond.lhs} {cond.rel_op} {cond.rhs}"
    if isinstance(cond, sympy.And):
        return " and ".join(f"({_condition_text(a)})" for a in cond.args)
    return str(cond)


# -- symbolic binding ----------------------------------------------------------------------------


def _as_expr(value: Any) -> sympy.Expr:
    """A size as SymPy: ints become Integers; SymPy expressions pass (never text)."""
    return sympy.Integer(value) if isinstance(value, int) else value


def _differ(a: Any, b: Any) -> bool:
    return a != b and sympy.expand(_as_expr(a) - _as_expr(b)) != 0


def bind_symbolic(
    rule: Rule, obj: Any, shapes: Sequence[Sequence[sympy.Expr]], call: Mapping[str, Any]
) -> dict[str, sympy.Expr]:
    """``{symbol name: expr}`` for ``rule`` at symbolic input ``shapes``; attributes of ``obj``
    (a module, or an operator's arguments) are read as :func:`layercost_sym.bind` reads them.
    Extra shapes beyond the rule's inputs are ignored (functional rules list a prefix)."""
    if len(shapes) < len(rule.inputs):
        raise ShapeError(f"{rule.name} takes {len(rule.inputs)} input(s), got {len(shapes)}")
    values: dict[str, sympy.Expr] = {}
    dims_list = [tuple(d) for d in shapes]
    for index, pattern in enumerate(rule.inputs):
        dims = dims_list[index]
        anchor = None  # "N... L@start_dim:end_dim P...": the dimensions attributes name
        if getattr(pattern, "anchor", None):
            ends = [attribute(obj, a, None) for a in pattern.anchor.split(":")]
            anchor = tuple(ends) if len(ends) > 1 else ends[0]
        split = split_input(pattern, dims, product=lambda lead: sympy.Mul(*lead), anchor=anchor)
        if split is None:
            raise ShapeError(
                f"{rule.name}: input {index} of shape {dims} does not match {pattern.text!r}"
            )
        for name, size in split[1]:
            if name in values and _differ(values[name], size):
                raise ShapeError(f"{rule.name}: {name} is {values[name]} and {size}")
            values.setdefault(name, _as_expr(size))
    for name, spec in rule.binds.items():
        value = _read(obj, spec, name, rule, dict(call), list(dims_list))
        if name in values and _differ(values[name], value):
            raise ShapeError(
                f"{rule.name}: input has {name} = {values[name]}, but {spec.text} = {value}"
            )
        values[name] = _as_expr(value)
    return values


def _params(rule: Rule, values: Mapping[str, sympy.Expr]) -> sympy.Expr:
    symbols = glossary().symbols
    return rule.params.xreplace({symbols[k]: v for k, v in values.items()})


def _module_rule(module: torch.nn.Module, inputs: list | None = None) -> Rule | None:
    """The rule of a module instance, or None; a subclass that overrides the ruled class's
    ``forward`` (torchvision's LayerNorm2d) is not described by that class's rule.  ``inputs``
    (the call's input shapes; only their ranks are read) choose variants keyed on rank."""
    by_module = catalogue().by_module
    for cls in type(module).__mro__:
        if cls.__name__ in by_module:
            if type(module).forward is not cls.forward:
                return None
            try:
                return catalogue().for_module(module, inputs)
            except UnknownRuleError:
                return None
    return None


def _op_rule(name: str, arguments: Any) -> Rule | None:
    rule = catalogue().by_module.get(name)
    if rule is None or name[:1].isupper():  # a torch.nn class rule, not an operator
        return None
    for variant in rule.variants:
        if all(_attr_equals(arguments, k, v) for k, v in variant.when.items()):
            return variant
    return rule


# -- tracing -------------------------------------------------------------------------------------


# operators whose output holds exactly the values of their first input (index tracking)
_VALUE_PRESERVING = {
    "view",
    "_unsafe_view",
    "reshape",
    "unsqueeze",
    "squeeze",
    "expand",
    "clone",
    "_to_copy",
    "alias",
    "detach",
    "permute",
    "transpose",
    "t",
    "lift_fresh",
}

# operators whose fake kernel needs concrete sizes (F.pad's constant_pad_nd: torch would
# specialise every size of its input to the trace size, or fail on a symbolic padding)
_SIZE_SPECIALISING = {torch.ops.aten.constant_pad_nd.default}

_DEFAULT_HINTS = {"N": 3, "B": 3}
_SPATIAL_HINTS = (227, 229, 233, 239, 241, 251, 257, 263)


@contextlib.contextmanager
def _generic_conv_backend() -> Iterator[None]:
    """Fake convolution picks a memory format by asking which CPU kernel torch would run, and
    that choice guards on the batch size (``N < 16``); the cost does not depend on the kernel,
    so the trace asks for the plain one."""
    original = torch._C._select_conv_backend
    torch._C._select_conv_backend = lambda *a, **k: torch._C._ConvBackend.Slow2d
    try:
        yield
    finally:
        torch._C._select_conv_backend = original


@contextlib.contextmanager
def _quiet_fake_tensor_log() -> Iterator[None]:
    """Fake tensors log a traceback for every operator that fails (``failed while attempting
    to run meta``); a failed trace is read and retried (:mod:`.pinning`), never printed."""
    import logging

    logger = logging.getLogger("torch._subclasses.fake_tensor")
    was = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = was


def _math_sdpa():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH)


@contextlib.contextmanager
def _real_run_branches(call_kwargs: Mapping[str, Any]) -> Iterator[None]:
    """Make transformers take, on fake tensors, the branch a real run takes.

    transformers' mask code looks for packed sequences in the position ids
    (``masking_utils.find_packed_sequence_indices``: ``diff``, ``!= 1``, ``cumsum``) and, in a
    real run, drops the result when ``(mask[:, -1] == 0).all()`` -- no packing, so SDPA gets
    ``is_causal=True`` and no mask is built.  That test reads tensor values, so under fake
    tensors (its ``is_tracing`` check) it keeps the result, and the model then builds an
    explicit causal-and-packing mask a real run never computes.  Inside this scope the function
    runs its operators and the real run's test (so they are costed as the op counter counts
    them) and answers as the real run does for the position ids the model makes itself
    (``arange(L)`` per row: one sequence per row, never packed).  Position ids passed by the
    caller are not the model's own: the function is left alone then.
    """
    import sys

    masking = sys.modules.get("transformers.masking_utils")
    original = getattr(masking, "find_packed_sequence_indices", None)
    if original is None or "position_ids" in call_kwargs:
        yield
        return

    def unpacked(position_ids: torch.Tensor) -> None:
        packed = original(position_ids)
        if packed is not None:
            _ = (packed[:, -1] == 0).all()  # the real run's test, costed; its answer: True
        return None

    masking.find_packed_sequence_indices = unpacked
    try:
        yield
    finally:
        masking.find_packed_sequence_indices = original


class _Tracer:
    def __init__(self, model: torch.nn.Module, convert, training: bool) -> None:
        self.model = model
        self.convert = convert  # torch size -> user sympy
        self.training = training
        self.names = {id(m): name for name, m in model.named_modules()}
        self.stack: list[str] = []
        self.ruled_depth = 0  # > 0 while inside a ruled module
        self.layers: list[Layer] = []
        self.unsupported: list[Unsupported] = []
        self.counted_modules: set[int] = set()
        self.covered_params: set[int] = set()
        self.unruled: dict[int, list[str]] = {}  # unruled leaf module -> its uncosted ops
        self.current_unruled: list[int] = []
        # integer tensors made by arange (and views, casts, shifts of them): id -> (tensor, the
        # largest value in it, which some element attains)
        self.index_max: dict[int, tuple[torch.Tensor, sympy.Expr]] = {}
        self.guards: list[tuple[sympy.Basic, str]] = []  # (condition, where it comes from)
        # outputs of unsqueeze(x, -2): id -> tensor (F.adaptive_avg_pool1d runs ATen's 2-d pool
        # on one; see _AS_FUNCTION)
        self.row_unsqueezed: dict[int, torch.Tensor] = {}
        # (error, operator, args, kwargs) of the innermost operator that raised an error
        self.failed_op: tuple[BaseException, str, tuple, dict] | None = None

    def shape(self, t: torch.Tensor) -> tuple[sympy.Expr, ...]:
        return tuple(self.convert(d) for d in t.shape)

    # index ranges: an embedding looked up at arange(L) needs L rows
    def _largest(self, t: Any) -> sympy.Expr | None:
        entry = self.index_max.get(id(t)) if isinstance(t, torch.Tensor) else None
        return entry[1] if entry is not None and entry[0] is t else None

    def _track(self, name: str, args: tuple, kwargs: Mapping[str, Any], out: Any) -> None:
        """Follow the largest value of integer index tensors made by ``arange``: exact through
        ``arange`` itself, views, casts and shifts by a scalar (each keeps or moves every value, so
        the largest is still attained)."""
        if not isinstance(out, torch.Tensor) or out.is_floating_point() or out.is_complex():
            return
        largest = None
        if name == "arange" and out.dim() == 1:
            numbers = [a for a in args if isinstance(a, int | torch.SymInt)]
            start = numbers[0] if len(numbers) >= 2 else 0
            step = numbers[2] if len(numbers) >= 3 else 1
            if isinstance(step, int) and step > 0 and not isinstance(args[0], float):
                largest = self.convert(start) + step * (self.convert(out.shape[0]) - 1)
        elif args and (source := self._largest(args[0])) is not None:
            if name in _VALUE_PRESERVING:
                largest = source
            elif (
                name in ("add", "sub")
                and len(args) > 1
                and isinstance(args[1], int | torch.SymInt)
                and kwargs.get("alpha", 1) == 1
            ):
                shift = self.convert(args[1])
                largest = source + shift if name == "add" else source - shift
        if largest is not None:
            self.index_max[id(out)] = (out, largest)

    def _index_guard(self, where: str, indices: Any, rows: int) -> None:
        largest = self._largest(indices)
        if largest is None or not largest.free_symbols:
            return
        self.guards.append(
            (
                sympy.Le(largest, rows - 1),
                f"{where} looks up rows arange() made, up to {largest}, in a table of {rows}: a "
                "real run raises IndexError beyond it",
            )
        )

    # module hooks
    def pre(self, module, args, kwargs):
        name = self.names.get(id(module), type(module).__name__)
        self.stack.append(name)
        if isinstance(module, torch.nn.Embedding) and args:
            self._index_guard(name, args[0], module.num_embeddings)
        if self.ruled_depth:
            self.ruled_depth += 1
            return
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        tensors += [v for v in kwargs.values() if isinstance(v, torch.Tensor)]
        rule = _module_rule(module, [tuple(t.shape) for t in tensors])
        if rule is None:
            if not list(module.children()) and list(module.parameters(recurse=False)):
                self.current_unruled.append(id(module))
                self.unruled.setdefault(id(module), [])
            return
        self.ruled_depth = 1
        shapes = [self.shape(t) for t in tensors][: len(rule.inputs)]
        call = {k: v for k, v in kwargs.items() if not isinstance(v, torch.Tensor)}
        try:
            values = bind_symbolic(rule, module, shapes, call)
            params = _params(rule, values)
        except ShapeError as exc:
            self.unsupported.append(
                Unsupported(
                    name,
                    "module",
                    type(module).__name__,
                    f"rule {rule.name} does not bind: {exc}",
                    False,
                )
            )
            return
        if id(module) in self.counted_modules:
            params = sympy.Integer(0)  # a module called again: its parameters counted once
        else:  # a parameter shared with a module seen before (tied embeddings) counts once
            params -= sum(p.numel() for p in module.parameters() if id(p) in self.covered_params)
        self.counted_modules.add(id(module))
        self.covered_params.update(id(p) for p in module.parameters())
        input_grad = any(t.requires_grad for t in tensors)
        weights = [p.requires_grad for p in module.parameters()]
        if input_grad and all(weights):
            factor: int | None = 2 if weights else None
        elif rule.name.split(".")[0] in _SIMPLE_PRODUCTS and weights:
            factor = int(input_grad) + int(all(weights))
        else:
            factor = None
        self.layers.append(
            Layer(
                name,
                rule.name,
                "module",
                params,
                tuple(shapes),
                values,
                bool(module.training),
                rule,
                factor,
            )
        )

    def post(self, module, args, kwargs, output):
        self.stack.pop()
        if self.ruled_depth:
            self.ruled_depth -= 1
        elif self.current_unruled and self.current_unruled[-1] == id(module):
            self.current_unruled.pop()

    # operators outside ruled modules
    def op(self, mode: TorchDispatchMode, func, args, kwargs):
        try:
            return self._op(mode, func, args, kwargs)
        except Exception as exc:
            if not self.failed_op or self.failed_op[0] is not exc:  # the innermost operator
                self.failed_op = (exc, _op_name(func), args, kwargs)
            raise

    def _op(self, mode: TorchDispatchMode, func, args, kwargs):
        if func in _SIZE_SPECIALISING and not _pinning.symbols_in(args[1:]):
            # data movement whose kernel reads every size of its input as an int (pinning N,
            # H, W to their trace sizes): torch's decomposition keeps them symbolic; its
            # operators are the same data movement, not costed.  A padding by a symbolic amount
            # is left to the kernel, which refuses it: the dimensions it depends on are pinned.
            self.ruled_depth += 1
            try:
                with mode:
                    return decomposition_table[func](*args, **kwargs)
            finally:
                self.ruled_depth -= 1
        if self.ruled_depth or func.namespace == "prim":
            return func(*args, **kwargs)
        name = _op_name(func)
        if name == "embedding" and len(args) > 1:  # F.embedding between modules
            self._index_guard(self.stack[-1] if self.stack else "", args[1], args[0].shape[0])
        out = self._cost(mode, func, name, args, kwargs)
        self._track(name, args, kwargs, out)
        if name == "unsqueeze" and isinstance(out, torch.Tensor) and out.dim() >= 3:
            dim = args[1] if len(args) > 1 else kwargs.get("dim")
            if isinstance(dim, int) and dim % out.dim() == out.dim() - 2:
                self.row_unsqueezed[id(out)] = out
        return out

    def _cost(self, mode: TorchDispatchMode, func, name: str, args, kwargs):
        schema = func._schema.arguments
        named = {a.name: v for a, v in zip(schema, args, strict=False)}
        named.update(kwargs)
        where = self.stack[-1] if self.stack else ""
        if name in _MODULE_OPS:
            view = _module_view(name, named, schema)
            if view is not None:
                return self._cost_as_module(func, name, where, view, args, kwargs)
        rule = _op_rule(name, types.SimpleNamespace(**named))
        if rule is None and op_kind(func) is None and func in decomposition_table:
            with mode:  # as the op counter does: count the primitives torch decomposes it to
                return decomposition_table[func](*args, **kwargs)
        out = func(*args, **kwargs)
        if rule is None and op_kind(func) == "movement":
            return out
        if rule is None:
            self.unsupported.append(
                Unsupported(
                    f"{where}:{name}",
                    "op",
                    str(func),
                    "no functional rule for this operator",
                    False,
                )
            )
            if self.current_unruled:
                self.unruled[self.current_unruled[-1]].append(name)
            return out
        tensors = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)][:1]
        tensors += [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        shapes = [self.shape(t) for t in tensors]
        values = bind_symbolic(rule, types.SimpleNamespace(**named), shapes, named)
        operands = tensors[-2:] if rule.name in _PRODUCT_OPS else []
        factor = sum(int(t.requires_grad) for t in operands)
        self.layers.append(
            Layer(
                f"{where}:{name}",
                rule.name,
                "op",
                _params(rule, values),
                tuple(shapes[1:]),
                values,
                self.training,
                rule,
                factor,
            )
        )
        return out

    def _cost_as_module(self, func, name: str, where: str, view, args, kwargs):
        rule, attrs = view
        out = func(*args, **kwargs)
        x = args[0]
        values = bind_symbolic(rule, attrs, [self.shape(x)], {})
        weight = getattr(attrs, "weight", None)
        factor = int(x.requires_grad) + int(weight is not None and weight.requires_grad)
        function = name
        if name == "_adaptive_avg_pool2d" and self.row_unsqueezed.get(id(x)) is x:
            function = "adaptive_avg_pool1d"  # ATen's adaptive_avg_pool1d: unsqueeze(-2), 2-d
        only, stated, notes = _as_function(rule, function, self.shape(x))
        self.layers.append(
            Layer(
                f"{where}:{name}",
                rule.name,
                "op",
                _params(rule, values) if weight is None else sympy.Integer(0),
                (self.shape(x),),
                values,
                self.training,
                rule,
                factor,
                only=only,
                stated=stated,
                notes=notes,
            )
        )
        return out


# ATen operators of F.conv*d and the F.*pool*d functions, costed by the rule of the torch.nn
# module that runs the same operator (the pools' schema arguments carry the module's attribute
# names; a convolution's channels and kernel come from its weight).  The conventions below are
# taken from the module's rule; each peer tool counts such a call as _AS_FUNCTION states.
_MODULE_OPS = {
    "convolution": "Conv",
    "max_pool2d_with_indices": "MaxPool2d",
    "max_pool3d_with_indices": "MaxPool3d",
    "avg_pool2d": "AvgPool2d",
    "avg_pool3d": "AvgPool3d",
    "_adaptive_avg_pool2d": "AdaptiveAvgPool2d",
    "_adaptive_avg_pool3d": "AdaptiveAvgPool3d",
    "adaptive_max_pool2d": "AdaptiveMaxPool2d",
    "adaptive_max_pool3d": "AdaptiveMaxPool3d",
}
_MODULE_CONVENTIONS = ("exact", "macs", "torch")

# How each peer tool counts these operators called as functions between modules, per family
# ("conv": F.conv*d, F.conv_transpose*d; "pool": F.{max,avg}_pool*d, F.adaptive_{max,avg}_pool*d)
# or, where one function differs from its family, per function: (cost, note).  Cost "rule" is
# the module rule's own entry (formulas/conventions/<tool>.toml), "numel" the number of elements
# of the operator's input, otherwise an integer.  Checked against fvcore 0.1.5, ultralytics-thop
# 2.x and ptflops 0.7.5 (pytorch backend) in tests/test_peers_functional.py.
_AS_FUNCTION: dict[str, dict[str, tuple[str, str]]] = {
    "fvcore": {
        "conv": ("rule", "fvcore: its jit trace records aten::_convolution, as for the module"),
        "pool": (
            "rule",
            "fvcore: counts the ATen operator its jit trace records, the module's own (only "
            "adaptive_avg_pool2d has a handle)",
        ),
        "adaptive_avg_pool1d": (
            "0",
            "fvcore: F.adaptive_avg_pool1d runs ATen's 2-d pool on x.unsqueeze(-2), but its jit "
            "trace records aten::adaptive_avg_pool1d, which has no handle: 0 (told apart by the "
            "unsqueeze: F.adaptive_avg_pool2d(x.unsqueeze(-2), ...) is taken for it too)",
        ),
    },
    "thop": {
        "conv": ("0", "thop: hooks module classes (and matmul-family functions), not F.conv*d"),
        "pool": ("0", "thop: hooks module classes, not the pooling functions"),
    },
    "ptflops": {
        "conv": ("0", "ptflops: does not patch F.conv*d / F.conv_transpose*d"),
        "pool": (
            "numel",
            "ptflops: its patched F.*pool*d counts numel(input) once (a pooling module counts "
            "it twice: its hook and the patched function its forward calls)",
        ),
    },
}


def _as_function(
    rule: Rule, function: str, input_shape: Sequence[sympy.Expr]
) -> tuple[tuple[str, ...], dict[str, sympy.Expr], dict[str, str]]:
    """``(conventions taken from the rule, costs stated instead, notes)`` for ``rule``'s
    operator called as ``function`` (ATen's name, or the F.* function it is told apart as) on
    an input of ``input_shape`` (:data:`_AS_FUNCTION`)."""
    family = "conv" if rule.name.startswith("Conv") else "pool"  # ConvTranspose too
    only = list(_MODULE_CONVENTIONS)
    stated: dict[str, sympy.Expr] = {}
    notes: dict[str, str] = {}
    for tool, entries in _AS_FUNCTION.items():
        cost, notes[tool] = entries.get(function, entries[family])
        if cost == "rule":
            only.append(tool)
        elif cost == "numel":
            stated[tool] = sympy.Mul(*input_shape)
        else:
            stated[tool] = sympy.Integer(int(cost))
    return tuple(only), stated, notes


def _module_view(name: str, named: dict[str, Any], schema) -> tuple[Rule, Any] | None:
    """``(rule, attributes)`` describing an operator call as its torch.nn module, or None."""
    attrs = dict(named)
    for arg in schema:  # arguments left at their defaults (avg_pool2d's stride, ...)
        if arg.name not in attrs and arg.has_default_value():
            attrs[arg.name] = arg.default_value
    if name == "convolution":
        weight = attrs["weight"]
        try:
            shape = [int(d) for d in weight.shape]
        except (TypeError, RuntimeError):  # a weight of symbolic shape: not a module's
            return None
        dims, groups = len(shape) - 2, int(attrs["groups"])
        transposed = bool(attrs["transposed"])
        cls = f"{'ConvTranspose' if transposed else 'Conv'}{dims}d"
        channels = (shape[0], shape[1] * groups) if transposed else (shape[1] * groups, shape[0])
        attrs.update(
            in_channels=channels[0],
            out_channels=channels[1],
            kernel_size=tuple(shape[2:]),
            padding_mode="zeros",
        )
        spatial = dims
    else:
        cls = _MODULE_OPS[name]
        spatial = int(cls[-2])
        if not attrs.get("stride", True):  # stride [] means the kernel size
            attrs["stride"] = attrs["kernel_size"]
    for key, value in attrs.items():  # int[2] arguments given as one value
        if isinstance(value, list | tuple) and len(value) == 1 and spatial > 1:
            attrs[key] = tuple(value) * spatial
    try:
        rule = catalogue().get(cls)
    except UnknownRuleError:
        return None
    ns = types.SimpleNamespace(**attrs)
    for variant in rule.variants:
        if all(_attr_equals(ns, k, v) for k, v in variant.when.items()):
            return variant, ns
    return rule, ns


class _OpMode(TorchDispatchMode):
    def __init__(self, tracer: _Tracer) -> None:
        super().__init__()
        self.tracer = tracer

    def __torch_dispatch__(self, func, types_, args=(), kwargs=None):
        return self.tracer.op(self, func, args, kwargs or {})


def _hints(
    specs: Sequence[Sequence[Any]],
    hints: Mapping[str, int],
    limits: Mapping[str, int] | None = None,
    multiples: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """The trace size of each symbol of ``specs``: the caller's ``hints`` as given (two sides
    may be equal); otherwise batch 3 and odd primes 227, 229, ... (sizes that make floors and
    branches visible), each different from every other size, traced below ``limits[name]``
    (a length the model states) and at a multiple of ``multiples[name]`` (a size the model
    wants divisible).

    >>> _hints([("N", 3, "H", "W")], {})
    {'N': 4, 'H': 227, 'W': 229}
    >>> _hints([("N", "L")], {"N": 2}, limits={"L": 128}), _hints([("H",)], {}, multiples={"H": 16})
    ({'N': 2, 'L': 127}, {'H': 224})
    """
    limits, multiples = limits or {}, multiples or {}
    chosen: dict[str, int] = {}
    spatial = iter(_SPATIAL_HINTS)
    used = {int(d) for spec in specs for d in spec if not isinstance(d, str)}
    used |= {hints[d] for spec in specs for d in spec if isinstance(d, str) and d in hints}
    for spec in specs:
        for d in spec:
            if isinstance(d, str) and d not in chosen:
                if d in hints:
                    chosen[d] = hints[d]
                    continue
                limit = limits.get(d)
                if d in multiples:
                    value = _multiple(multiples[d], used, limit)
                else:
                    value = _DEFAULT_HINTS.get(d)
                    while value is None or value in used:
                        value = (
                            next(spatial) if value is None or value in _SPATIAL_HINTS else value + 1
                        )
                    if limit is not None and value >= limit:
                        value = _prime_below(limit, used)
                chosen[d] = value
                used.add(value)
    return chosen


def _prime_below(limit: int, used: set[int]) -> int:
    """The largest prime below ``limit`` that is not in ``used`` (2 if there is none)."""
    for n in range(limit - 1, 2, -1):
        if n not in used and all(n % p for p in range(2, int(n**0.5) + 1)):
            return n
    return 2


def _multiple(factor: int, used: set[int], limit: int | None) -> int:
    """A multiple of ``factor`` near the pinned image side (224), below ``limit``, unused."""
    k = max(1, -(-_pinning.IMAGE_SIDE // factor))
    if limit is not None:
        k = min(k, max(1, (limit - 1) // factor))
    while factor * k in used:
        k += 1
    return factor * k


def _user_symbol(name: str) -> sympy.Symbol:
    return glossary().symbols.get(name) or sympy.Symbol(name, integer=True, positive=True)


def _is_shape(value: Any) -> bool:
    """Whether a keyword argument of :func:`analyze` is an input's shape (a tuple or list of
    ints and symbol names) rather than an option of the model's forward."""
    return (
        isinstance(value, tuple | list)
        and len(value) > 0
        and all(
            isinstance(d, str) or (isinstance(d, int) and not isinstance(d, bool)) for d in value
        )
    )


# a failing trace is retried with what it showed (pinned or integer inputs, other trace sizes)
# at most this many times
_MAX_TRACES = 8


def analyze(
    model: torch.nn.Module,
    *input_shapes: Sequence[int | str],
    dtype: torch.dtype | None = None,
    convention: str = DEFAULT_CONVENTION,
    training: bool = False,
    hints: Mapping[str, int] | None = None,
    backward: bool = False,
    **call_kwargs: Any,
) -> Analysis:
    """Trace ``model`` on inputs whose dimensions are ints or symbol names and return its
    parameters and costs as closed forms (see the module docstring).

    Inputs are positional shapes, or keyword arguments whose value is a shape (a tuple of
    ints and names: ``input_ids=("N", "L"), decoder_input_ids=("N", "T")``); other keyword
    arguments go to the model's forward as they are (``use_cache=False``).  Inputs are
    ``dtype`` (float32 by default); an input that reaches an embedding lookup is made
    ``torch.long`` (token ids need no ``dtype``).

    ``hints`` choose the size each symbol has while tracing (torch may only take one branch of
    a shape-dependent ``if``; the result holds where the recorded guards hold); by default sizes
    are odd primes (227, 229, ...; below the ``max_position_embeddings`` of a transformers
    config), batch 3 or 4.  When the model cannot be traced with a dimension left symbolic
    (it asserts a size, torch needs an int, a ``view`` needs a divisible size), the dimensions
    the failure names are pinned, the batch last: to their hint, the image size the model
    states, or 224 (:mod:`.pinning`).  A pin is a guard ``H == 224`` in :attr:`Analysis.guards`
    and an entry of :attr:`Analysis.pinned` whose note names the model code that forced it; the
    other dimensions stay symbolic.  A model that cannot be traced at all raises
    :class:`~layercost_sym.errors.TraceError`.  ``backward=True`` adds the backward pass of a
    loss on the output (``macs`` and ``torch``: each weighted product's input and weight
    gradients, as FlopCounterMode counts ``loss.backward()``).

    >>> import torch, layercost_sym as lc
    >>> model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU())
    >>> a = lc.analyze(model, ("N", 8))
    >>> a.params, a.cost("exact"), a.cost("macs")
    (36, 68*N, 32*N)
    >>> table = torch.nn.Embedding(100, 8)  # token ids: inferred torch.long
    >>> lc.analyze(table, ("N", "L"), hints={"L": 7}).range
    []
    """
    keyword_shapes = {k: v for k, v in call_kwargs.items() if _is_shape(v)}
    call_kwargs = {k: v for k, v in call_kwargs.items() if k not in keyword_shapes}
    specs = [tuple(s) for s in input_shapes] + [tuple(s) for s in keyword_shapes.values()]
    if not specs:
        raise ShapeError("analyze needs at least one input shape, e.g. ('N', 3, 'H', 'W')")
    user_hints = dict(hints or {})
    limit = _pinning.sequence_limit(model)
    settings = _pinning.Settings()
    if limit is not None:  # trace below the positions a transformers config states
        settings.limits = {
            d: limit for spec in specs for d in spec[1:] if isinstance(d, str) and d not in "NB"
        }
    seen: list[str] = []
    for _ in range(_MAX_TRACES):
        result = _trace(
            model,
            specs,
            list(keyword_shapes),
            settings,
            user_hints,
            dtype,
            convention,
            training,
            backward,
            call_kwargs,
        )
        if isinstance(result, Analysis):
            return result
        failure, traced = result
        seen.append(failure.message)
        after = _pinning.next_settings(failure, settings, specs, user_hints, model, traced)
        if after is None:
            break
        settings = after
    raise TraceError(_pinning.untraceable(model, failure, settings, specs, seen))


def _trace(
    model: torch.nn.Module,
    specs: Sequence[tuple[int | str, ...]],
    keywords: Sequence[str],
    settings: _pinning.Settings,
    user_hints: Mapping[str, int],
    dtype: torch.dtype | None,
    convention: str,
    training: bool,
    backward: bool,
    call_kwargs: Mapping[str, Any],
) -> Analysis | tuple[_pinning.Failure, dict[str, int]]:
    """One trace with ``settings``: the analysis, or ``(failure, each symbol's trace size)``."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import (
        DimDynamic,
        ShapeEnv,
        StatelessSymbolicContext,
    )

    pinned = {name: value for name, (value, _note) in settings.pinned.items()}
    traced_specs = [tuple(pinned.get(d, d) if isinstance(d, str) else d for d in s) for s in specs]
    hints = {k: v for k, v in user_hints.items() if k not in pinned}
    chosen = _hints(traced_specs, hints, settings.limits, settings.multiples)
    # distinct symbols for equal trace sizes (torch's duck sizing would make H and W one)
    env = ShapeEnv(duck_shape=False)
    fake = FakeTensorMode(shape_env=env, allow_non_fake_inputs=True)
    symbol_map: dict[sympy.Symbol, sympy.Expr] = {}
    inputs = []
    for position, spec in enumerate(traced_specs):
        concrete = tuple(chosen[d] if isinstance(d, str) else int(d) for d in spec)
        dynamic = [DimDynamic.DYNAMIC if isinstance(d, str) else DimDynamic.STATIC for d in spec]
        kind = torch.long if position in settings.integer_inputs else (dtype or torch.float32)
        real = (
            torch.zeros(concrete, dtype=kind)
            if not kind.is_floating_point
            else torch.empty(concrete, dtype=kind)
        )
        x = fake.from_tensor(real, symbolic_context=StatelessSymbolicContext(dynamic_sizes=dynamic))
        for d, size in zip(spec, x.shape, strict=True):
            if isinstance(d, str):
                expr = size.node.expr
                if expr.is_Symbol and expr not in symbol_map:
                    symbol_map[expr] = _user_symbol(d)
        inputs.append(x)
    positional = inputs[: len(inputs) - len(keywords)]
    keyword_inputs = dict(zip(keywords, inputs[len(positional) :], strict=True))

    def convert(size: Any) -> sympy.Expr:
        if isinstance(size, int):
            return sympy.Integer(size)
        return to_sympy(env.replace(size.node.expr), symbol_map)

    tracer = _Tracer(model, convert, training)
    handles = []
    for module in model.modules():
        handles.append(module.register_forward_pre_hook(tracer.pre, with_kwargs=True))
        handles.append(
            module.register_forward_hook(tracer.post, with_kwargs=True, always_call=True)
        )
    was_training = model.training
    outputs: list[tuple[sympy.Expr, ...]] = []
    try:
        model.train(training)
        with (
            _generic_conv_backend(),
            _real_run_branches({**call_kwargs, **keyword_inputs}),
            torch.enable_grad(),
            _math_sdpa(),
            _quiet_fake_tensor_log(),
            fake,
            _OpMode(tracer),
        ):
            out = model(*positional, **keyword_inputs, **call_kwargs)
            outputs = [tracer.shape(t) for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
    except LayercostError:
        raise
    except Exception as exc:  # the model cannot run so: read why (pinning.next_settings)
        if _pinning.raised_here(exc):  # a fault of this package's own, not the model's
            raise
        failed = tracer.failed_op if tracer.failed_op and tracer.failed_op[0] is exc else None
        names = {str(k): str(v) for k, v in symbol_map.items()}
        failure = _pinning.describe(exc, names, failed[1:] if failed else None, inputs)
        return failure, {d: chosen[d] for spec in traced_specs for d in spec if d in chosen}
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    costed_by_operators = []
    owned: set[int] = set()  # parameters attributed to a module costed by its operators
    for module_id, ops in tracer.unruled.items():
        module = next(m for m in model.modules() if id(m) == module_id)
        name = tracer.names.get(module_id, "")
        what = type(module).__name__
        if ops:  # an operator without a rule ran inside: its cost is not in the totals
            detail = (
                f"no rule for class {what}; its parameters are counted by numel, its operators "
                f"by the functional rules except {', '.join(sorted(set(ops)))}"
            )
            tracer.unsupported.append(Unsupported(name, "module", what, detail, False))
            continue
        costed = tuple(
            dict.fromkeys(
                layer.name.partition(":")[2]
                for layer in tracer.layers
                if layer.kind == "op" and layer.name.partition(":")[0] == name
            )
        )
        detail = (
            f"no rule for class {what}; its parameters are counted by numel, its operators "
            f"({', '.join(costed) or 'none'}) by the functional rules"
        )
        mine = [
            p
            for p in module.parameters()
            if id(p) not in tracer.covered_params and id(p) not in owned
        ]
        owned.update(id(p) for p in mine)
        params = sum(p.numel() for p in mine)
        costed_by_operators.append(OperatorCostedModule(name, what, costed, detail, params))
    seen: set[int] = set()
    extra = 0
    for p in model.parameters():
        if id(p) not in tracer.covered_params and id(p) not in seen:
            extra += p.numel()
        seen.add(id(p))

    guards = []
    for g in env.guards:
        cond = to_sympy(env.simplify(g.expr), symbol_map)
        if cond is not sympy.true:
            guards.append(cond)
    sources: dict[sympy.Basic, str] = {}
    for cond, source in tracer.guards:
        if cond not in guards and cond is not sympy.true:
            guards.append(cond)
            sources[cond] = source
    for sym, value, note in _pinning.unified(env, symbol_map):
        cond = sympy.Eq(symbol_map[sym], to_sympy(value, symbol_map))
        guards.append(cond)
        sources[cond] = note
    pins = dict(settings.pinned)
    pins.update(_pinning.specialised(env, symbol_map))  # sizes torch made ints itself
    for name, (value, note) in pins.items():
        cond = sympy.Eq(_user_symbol(name), value)
        if cond not in guards:
            guards.append(cond)
        sources[cond] = f"{name} is pinned to {value}: {note}"
    for sym, user in symbol_map.items():
        vr = env.var_to_range.get(sym)
        if vr is not None and vr.upper.is_Integer:
            guards.append(sympy.Le(user, int(vr.upper)))
        # torch assumes sizes >= 2 while tracing (0 and 1 are specialised); the closed forms of
        # the rules hold from 1 (shown equal to the counters at N = 1 by the tests), so the
        # range starts at 1 unless a guard says otherwise.  A model's own branch on a size
        # being 1 is decided by that assumption without a guard (transformers' SDPA wrapper
        # passes is_causal only when L > 1: at L = 1 GPT-2's real run lacks the causal mask's
        # 12*N + 4 operations per layer that the trace saw; torch and macs agree).  Lowering
        # the range to 1 would record that branch, but also the broadcasting checks (N != 1)
        # of every operator, which do not change any cost.
        if vr is not None and vr.lower.is_Integer and int(vr.lower) > 2:
            guards.append(sympy.Ge(user, int(vr.lower)))
    names = dict.fromkeys(d for spec in specs for d in spec if isinstance(d, str))
    symbols = tuple(_user_symbol(name) for name in names)
    return Analysis(
        symbols,
        tracer.layers,
        tracer.unsupported,
        guards,
        extra,
        convention,
        training,
        outputs,
        backward,
        sources,
        costed_by_operators,
        {name: pins[name] for name in names if name in pins},
    )
