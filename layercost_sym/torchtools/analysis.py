"""The result of :func:`~layercost_sym.torchtools.tracing.analyze`: a model's costed calls and
its closed forms.

An :class:`Analysis` holds one :class:`Layer` per costed module or operator call, what could
not be costed (:class:`Unsupported`: never a silent 0), the modules costed by their operators,
and the guards (the range where the closed forms hold).  Every quantity is asked the same way:
``analysis.quantity("flops", "macs")``, ``analysis.quantity("params")`` (``cost`` and ``params``
say the same); each closed form carries the guards as its domain.  Tables, JSON and LaTeX show
the rows per module or per module prefix.

(Over 500 lines by design: the result types of one analysis and every view of them, quantities,
domain, tables and roofline, in one place; tracing, lookup and pinning live in their modules.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import sympy

from ..domain import Condition, Domain, joined, joined_domain, with_domain
from ..errors import ConventionError, EvaluationError
from ..evaluation import check_domain, evaluate
from ..glossary import glossary
from ..ledger import TrainingMemory, Weights, training_memory
from ..quantities import QuantityShorthands
from ..quantities import quantity as _quantity
from ..roofline import ChipLike, Roofline, Work, crossover, roofline, works_of
from ..rule import Rule
from ..text import clip
from .symbolic import condition_text, shown_conditions, simplify_guard

__all__ = ["Analysis", "Case", "Layer", "OperatorCostedModule", "Unsupported"]


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
    # FLOPs conventions taken from the rule (None: all): an operator costed by a module's rule
    # (F.conv2d, F.max_pool2d, ...) takes exact, macs, torch and fvcore from it
    only: tuple[str, ...] | None = None
    # FLOPs stated for this call itself, in the input symbols, beside the rule's: the peer tools
    # that count a function call otherwise than its module (their ``functional_calls`` tables)
    stated: Mapping[str, sympy.Expr] = field(default_factory=dict)
    notes: Mapping[str, str] = field(default_factory=dict)  # convention -> why (stated costs)
    # the rule's constraints the symbolic sizes leave open (part of the analysis' domain)
    conditions: tuple[Condition, ...] = ()
    # (quantity, convention) -> the value this call states itself, from the tensors it traced:
    # an operator's bytes (its functional rule states them for tensors of one element size,
    # dense; the call's own tensors also cover an expand()-ed operand or mixed dtypes)
    own: Mapping[tuple[str, str], sympy.Expr] = field(default_factory=dict)
    # (quantity, convention) -> conditions only that quantity needs (eager bytes of a copy
    # traced at sizes >= 2 that a size of 1 would make a view)
    holds_if: Mapping[tuple[str, str], tuple[Condition, ...]] = field(default_factory=dict)

    @property
    def where(self) -> str:
        """The module this call ran in: its own name for a module call, the enclosing module's
        (before ``:``) for an operator."""
        return self.name if self.kind == "module" else self.name.rpartition(":")[0]

    def conventions_of(self, quantity: str = "flops") -> tuple[str, ...]:
        """The conventions under which this call's ``quantity`` is known."""
        if quantity == "params":
            return ("count",)
        found = self._rule.conventions_of(quantity) if self._rule is not None else ()
        if quantity != "flops":
            return tuple(sorted({*found, *(c for q, c in self.own if q == quantity)}))
        if self.only is not None:
            found = tuple(c for c in found if c in self.only)
        return found + tuple(c for c in self.stated if c not in found)

    @property
    def conventions(self) -> tuple[str, ...]:
        """The conventions of this call's FLOPs."""
        return self.conventions_of("flops")

    @property
    def costs(self) -> dict[str, sympy.Expr]:
        """Convention -> FLOPs of this call, for every convention its rule defines."""
        return {c: self.cost(c) for c in self.conventions}

    def quantity(self, quantity: str, convention: str | None = None) -> sympy.Expr:
        """This call's ``quantity`` under ``convention`` (None: the quantity's default), in the
        input symbols; ``params`` counts a module once (0 on its second call)."""
        name = _quantity(quantity).convention(convention)
        if name not in self.conventions_of(quantity):
            raise ConventionError(
                f"{self.name} (rule {self.rule}) does not define {quantity} under convention "
                f"{name!r}"
            )
        if quantity == "params":
            return self.params
        if quantity == "flops" and name in self.stated:
            return self.stated[name]
        if (quantity, name) in self.own:
            return self.own[(quantity, name)]
        key = (quantity, name)
        if key not in self._cache:
            assert self._rule is not None  # conventions_of found the rule's conventions
            symbols = glossary().symbols
            subs = {symbols[k]: v for k, v in self.binding.items()}
            value = self._rule.quantity(quantity, name, self.training).xreplace(subs)
            self._cache[key] = value
        return self._cache[key]

    def cost(self, convention: str | None = None) -> sympy.Expr:
        """This call's FLOPs under ``convention`` (:meth:`quantity` ``"flops"``)."""
        return self.quantity("flops", convention)


# Under these conventions a weighted product's backward is two products of the same size
# (FlopCounterMode's formulas for mm, addmm, bmm and convolution_backward): one for the input's
# gradient, one for the weight's; a bias gradient is a sum, which they do not count.  Other
# conventions (exact) take the rules' quantity backward.
_BACKWARD_CONVENTIONS = ("macs", "torch")


def _block_of(layer: Layer, blocks: Sequence[str]) -> str | None:
    """The block of ``blocks`` whose call ``layer`` ran inside (its module, or the module an
    operator row names before ``:``), or None."""
    for block in blocks:
        if layer.where == block or layer.where.startswith(block + "."):
            return block
    return None


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


@dataclass(frozen=True)
class Case:
    """Where ``condition`` holds (``H == 240``) the model's code takes another branch than the
    trace did, which recorded ``guard`` (``H != 240``): ``analysis`` traced it, with that size
    given.  :meth:`Analysis.quantity` answers there from it (a ``Piecewise``)."""

    condition: sympy.Basic
    guard: sympy.Basic
    analysis: Analysis


@dataclass
class Analysis(QuantityShorthands):
    """The result of :func:`analyze` (see the module docstring)."""

    symbols: tuple[sympy.Symbol, ...]
    layers: list[Layer]
    unsupported: list[Unsupported]
    guards: list[sympy.Basic]
    extra_params: int  # parameters outside any called ruled module (numel)
    # the FLOPs convention of .flops and of the tables (the quantity's default unless given)
    convention: str = field(default_factory=lambda: _quantity("flops").default)
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
    # the model's parameter tensors by element size and trainability (a training ledger's)
    weights: tuple[Weights, ...] = ()
    # module name -> {storage: bytes} of the tensors its first call got
    module_inputs: dict[str, dict[int, sympy.Expr]] = field(default_factory=dict)
    # the model's repeated blocks (the elements of its ModuleLists, of Sequentials of
    # composite modules), outermost: where activation recomputation checkpoints by default
    blocks: tuple[str, ...] = ()
    # mixture-of-experts layers (.experts.RoutedExperts): E experts, k per token, their
    # parameters, and what the closed form assumes about the routing
    experts: tuple[Any, ...] = ()
    # (quantity, convention) -> conditions of that quantity alone, beyond the guards: the
    # model's branch on a size being 1 that changes only it (tracing._size_one_checked)
    holds_if: dict[tuple[str, str], tuple[Condition, ...]] = field(default_factory=dict)
    # the other sides of guards ``H != 240``, each traced: :meth:`quantity` and :meth:`check`
    # answer from them where their condition holds (every other view is of this trace alone,
    # and refuses there by its guard)
    cases: tuple[Case, ...] = ()

    @property
    def active_params(self) -> sympy.Expr:
        """The parameters one token uses: :attr:`params` less, in each mixture-of-experts
        layer, the ``E - k`` of its ``E`` routed experts a token does not go to (equal to
        :attr:`params` for a model without one)."""
        inactive = sum(e.inactive_params for e in self.experts)
        total = sympy.Add(*(layer.params for layer in self.layers)) + self.extra_params
        return with_domain(total - inactive, self.domain)

    @property
    def notes(self) -> list[str]:
        """What the closed forms assume beyond the guards (a routed experts layer's routing),
        and where :meth:`quantity` answers from a :class:`Case`'s trace instead of the rows."""
        cases = [
            f"where {condition_text(c.condition)}, the model's code takes another branch than "
            f"where {condition_text(c.guard)}: quantity() and evaluate() answer there from "
            f"cases[{i}], its own trace (the rows and tables are this trace's)"
            for i, c in enumerate(self.cases)
        ]
        return [e.note for e in self.experts] + cases

    def training_memory(
        self,
        optimizer: str = "adamw",
        *,
        master_weights: bool = False,
        recompute: str = "none",
        blocks: Sequence[str] | None = None,
    ) -> TrainingMemory:
        """The training-memory ledger (:mod:`layercost_sym.ledger`): parameters, gradients of
        the trainable ones, ``optimizer``'s state (``"sgd"``, ``"sgd-momentum"``, ``"adam"``,
        ``"adamw"``, ``"adam-amsgrad"``), a float32 master copy where ``master_weights``, and
        the activations autograd saves (quantity ``saved``: analyse with ``training=True`` for
        the forward a training step runs), as formulas in the input symbols.

        ``recompute="full"``: activation recomputation (``torch.utils.checkpoint`` around each
        of ``blocks``, by default :attr:`blocks`): the forward keeps only each block's inputs
        (each storage once) and what the layers outside the blocks save; backward runs one
        block's forward again and holds its saved activations while its backward runs, the
        row ``recomputed (largest block)``; :meth:`recomputation` is the forward work it
        repeats."""
        if recompute == "none":
            return training_memory(
                self.weights, self.quantity("saved"), optimizer, master_weights=master_weights
            )
        if recompute != "full":
            raise ValueError(f"recompute is 'none' or 'full', got {recompute!r}")
        chosen = self._blocks(blocks)
        kept: dict[int, sympy.Expr] = {}
        for block in chosen:
            kept.update(self.module_inputs[block])
        outside = [layer for layer in self.layers if _block_of(layer, chosen) is None]
        per_block = [
            sympy.Add(*(layer.quantity("saved") for layer in self.layers if _block_of(layer, [b])))
            for b in chosen
        ]
        activations = sympy.Add(*kept.values(), *(layer.quantity("saved") for layer in outside))
        return training_memory(
            self.weights,
            activations,
            optimizer,
            master_weights=master_weights,
            recomputed=sympy.Max(*per_block),
        )

    def recomputation(
        self, convention: str | None = None, *, blocks: Sequence[str] | None = None
    ) -> sympy.Expr:
        """The forward FLOPs (under ``convention``) that full activation recomputation of
        ``blocks`` (default :attr:`blocks`) runs again during backward: the price of
        :meth:`training_memory` ``(recompute="full")``, as a closed form."""
        chosen = self._blocks(blocks)
        name = convention or self.convention
        inside = [layer for layer in self.layers if _block_of(layer, chosen) is not None]
        return with_domain(sympy.Add(*(layer.cost(name) for layer in inside)), self.domain)

    def _blocks(self, blocks: Sequence[str] | None) -> tuple[str, ...]:
        chosen = tuple(self.blocks if blocks is None else blocks)
        if not chosen:
            raise ValueError(
                "the model has no repeated blocks (ModuleList elements) to checkpoint: name "
                "them with blocks=[...]"
            )
        unknown = [b for b in chosen if b not in self.module_inputs]
        if unknown:
            raise KeyError(f"no module called {', '.join(unknown)} ran in the analysed forward")
        return chosen

    @property
    def conditions(self) -> list[sympy.Basic]:
        """The guards in their simplest proven form (``H >= 33`` for torch's
        ``floor(H/32 - 1/32) + 1 != 1``; see :func:`.symbolic.simplify_guard`), one per guard.
        :attr:`guards` keep torch's own form, and :meth:`check` evaluates those."""
        return [simplify_guard(g) for g in self.guards]

    @cached_property
    def domain(self) -> Domain:
        """The guards, and the rules' constraints the symbolic sizes leave open, as a
        :class:`~layercost_sym.Domain`: every closed form this analysis hands out
        (:meth:`quantity`, :attr:`params`, :meth:`cost`) carries it, so that
        :func:`layercost_sym.evaluate` refuses sizes outside the range where it holds."""
        guards = [self._guard_condition(g) for g in self.guards]
        constraints = [c for layer in self.layers for c in layer.conditions if not c.only_for]
        return Domain(tuple(dict.fromkeys([*guards, *constraints])))

    @property
    def _uncased_domain(self) -> Domain:
        """:attr:`domain` without the guards whose other side a :class:`Case` answers."""
        lifted = {c.guard for c in self.cases}
        if not lifted:
            return self.domain
        return Domain(tuple(c for c in self.domain.conditions if c.condition not in lifted))

    def _checked_domain(self) -> Domain:
        """Where :meth:`evaluate` answers: this trace's domain, and each case's where it holds."""
        pieces = [(c.condition, c.analysis._checked_domain()) for c in self.cases]
        return joined_domain(pieces, self._uncased_domain) if pieces else self.domain

    def _own_conditions(self, quantity: str, convention: str) -> list[Condition]:
        """The conditions of ``quantity`` under ``convention`` beyond :attr:`domain`: the rules'
        constraints of that quantity alone (of ``backward`` too where FLOPs include the backward
        pass) and the layers' conditions of one (quantity, convention)."""
        named = {quantity, "backward"} if quantity == "flops" and self.backward else {quantity}
        return [
            *(c for layer in self.layers for c in layer.conditions if set(c.only_for) & named),
            *(c for layer in self.layers for c in layer.holds_if.get((quantity, convention), ())),
            *self.holds_if.get((quantity, convention), ()),
        ]

    def _guard_condition(self, guard: sympy.Basic) -> Condition:
        def display() -> str:  # simplified only when shown: proving a form takes time
            simple = simplify_guard(guard)
            text = condition_text(simple)
            return text + (f" (recorded as {condition_text(guard)})" if simple != guard else "")

        source = self.guard_sources.get(guard, "torch recorded it while tracing the model")
        return Condition(guard, condition_text(guard), source, "", kind="guard", display=display)

    def conventions_of(self, quantity: str = "flops") -> tuple[str, ...]:
        """The conventions under which every costed call's ``quantity`` is known, sorted."""
        sets = [set(layer.conventions_of(quantity)) for layer in self.layers]
        return tuple(sorted(set.intersection(*sets))) if sets else ()

    @property
    def conventions(self) -> tuple[str, ...]:
        """The conventions of FLOPs every costed call defines."""
        return self.conventions_of("flops")

    def quantity(self, quantity: str, convention: str | None = None) -> sympy.Expr:
        """The whole model's ``quantity`` under ``convention`` (None: the quantity's default;
        for FLOPs, the convention the analysis was made with): a closed form in the input
        symbols that carries the analysis' domain.  Parameters are each ruled module's rule
        once plus the ``numel`` of all others; with ``backward=True``, FLOPs are forward plus
        backward pass: under ``exact`` every call's backward from its rule (quantity
        ``backward``) and the sums of gradients autograd adds; under ``macs`` and ``torch``
        each product's input and weight gradients, products of its forward's size (the
        products the kernels run: a grouped convolution's weight gradient at its own size,
        where FlopCounterMode, and quantity ``backward`` under ``macs``, count it dense)."""
        if quantity == "flops" and convention is None:
            convention = self.convention
        name = _quantity(quantity).convention(convention)
        if quantity == "params":
            total = sympy.Add(*(layer.params for layer in self.layers)) + self.extra_params
        elif quantity == "flops":
            total = self._flops(name)
        else:
            total = sympy.Add(*(layer.quantity(quantity, name) for layer in self.layers))
        extra = self._own_conditions(quantity, name)
        domain = self._uncased_domain & Domain(tuple(dict.fromkeys(extra)))
        pieces = [(c.condition, c.analysis.quantity(quantity, name)) for c in self.cases]
        return joined(pieces, with_domain(total, domain))

    def _flops(self, convention: str) -> sympy.Expr:
        forward = sympy.Add(*(layer.cost(convention) for layer in self.layers))
        if not self.backward:
            return forward
        if convention not in _BACKWARD_CONVENTIONS:
            # the backward quantity, from the rules (every call's gradients, and the sums of
            # gradients autograd adds); a call whose rule states none is named
            if convention not in _quantity("backward").conventions:
                raise ConventionError(
                    f"backward costs are known for "
                    f"{', '.join(_quantity('backward').conventions)}, not {convention!r}"
                )
            return forward + sympy.Add(
                *(layer.quantity("backward", convention) for layer in self.layers)
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

    # -- roofline ----------------------------------------------------------------------------
    def works(self, *, bytes: str = "min") -> list[Work]:
        """Each costed call's matrix work, other arithmetic and bytes (``bytes`` convention), as
        closed forms in the input symbols (:mod:`layercost_sym.roofline` says which is which)."""
        return works_of([(layer.name or "(model)", layer) for layer in self.layers], bytes=bytes)

    def intensity(self, convention: str | None = None, *, bytes: str = "min") -> sympy.Expr:
        """Arithmetic intensity of the whole model, FLOPs (under ``convention``) per byte (under
        ``bytes``), as a formula in the input symbols (a ratio: evaluate it with ``subs``)."""
        flops = sympy.Add(*(layer.cost(convention or self.convention) for layer in self.layers))
        moved = sympy.Add(*(layer.quantity("bytes", bytes) for layer in self.layers))
        return sympy.cancel(flops / moved)

    def roofline(
        self,
        hardware: ChipLike | str,
        values: Mapping[str, int] | None = None,
        *,
        dtype: str,
        bytes: str = "min",
    ) -> Roofline:
        """Each costed call's time lower bound on ``hardware`` (a chip, or a name of
        ``formulas/hardware.toml``) with peaks of ``dtype`` (``"bf16"``, ``"fp32"``, ...) at the
        input sizes ``values`` (checked against the analysis' domain first), its bottleneck,
        and the model's total; see :mod:`layercost_sym.roofline`.

        >>> import torch, layercost_sym as lc
        >>> fc = torch.nn.Linear(4096, 4096, bias=False, dtype=torch.bfloat16)
        >>> a = lc.analyze(fc, ("N", 4096), dtype=torch.bfloat16)
        >>> [a.roofline("H100-SXM", {"N": n}, dtype="bf16").rows[0].bottleneck for n in (345, 346)]
        ['memory', 'compute']
        >>> a.crossover("H100-SXM", "N", dtype="bf16")
        10131456/29357
        """
        given = dict(values or {})
        if self.symbols:
            self.check(given)
        return roofline(self.works(bytes=bytes), hardware, dtype, given, bytes=bytes)

    def crossover(
        self,
        hardware: ChipLike | str,
        symbol: str,
        values: Mapping[str, int] | None = None,
        *,
        dtype: str,
        bytes: str = "min",
        layer: str | None = None,
    ) -> sympy.Expr:
        """The size ``symbol`` at which the whole model (or the call named ``layer``) turns from
        memory-bound to compute-bound on ``hardware`` in ``dtype``, the other input symbols
        at ``values``: exact where SymPy solves it, else the first compute-bound integer."""
        works = self.works(bytes=bytes)
        if layer is not None:
            works = [w for w in works if w.name == layer]
            if not works:
                raise KeyError(f"no costed call named {layer!r}")
            work = works[0]
        else:
            work = Work(
                "(model)",
                sympy.Add(*(w.matrix for w in works)),
                sympy.Add(*(w.other for w in works)),
                sympy.Add(*(w.bytes for w in works)),
            )
        return crossover(work, hardware, dtype, symbol, values)

    def check(self, values: Mapping[str, int]) -> None:
        """Raise :class:`~layercost_sym.DomainError` (an ``EvaluationError``) naming the first
        guard or constraint ``values`` violate."""
        given = {str(k): v for k, v in values.items()}
        missing = [s.name for s in self.symbols if s.name not in given]
        if missing:
            raise EvaluationError(f"missing value for input symbol(s) {', '.join(missing)}")
        check_domain(self._checked_domain(), given)

    def evaluate(
        self,
        values: Mapping[str, int],
        convention: str | None = None,
        *,
        quantity: str = "flops",
    ) -> int:
        """The exact ``quantity`` under ``convention`` at ``values`` (the input sizes), as
        :func:`layercost_sym.evaluate` gives it, after checking the domain."""
        self.check(values)
        return evaluate(self.quantity(quantity, convention), values)

    @property
    def range(self) -> list[str]:
        """Where the closed form holds, as condition text readable by the package's parser
        (ResNet-18: ``["H >= 33", "W >= 33"]``): the guards simplified (:attr:`conditions`),
        each symbol's tightest bounds, then the guards those bounds do not imply.  Equivalent
        to all of :attr:`guards` together."""
        return [condition_text(g) for g in shown_conditions(self.conditions, self.symbols)]

    @property
    def raw_range(self) -> list[str]:
        """The guards as torch recorded them (``floor(H/32 - 1/32) + 1 != 1``), as text."""
        return [condition_text(g) for g in self.guards]

    # -- output ----------------------------------------------------------------------------
    def rows(self, depth: int | None = None, convention: str | None = None) -> list[tuple]:
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
            if op.startswith("("):  # bookkeeping, no operator: gradient sums, saved storages
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
        if self.experts:  # mixture of experts: the parameters a token uses, beside all
            lines.append(("active per token", "", str(self.active_params), ""))
        widths = [max(len(row[i]) for row in lines) for i in range(3)]
        return "\n".join(
            "  ".join(row[i].ljust(widths[i]) for i in range(3)) + "  " + row[3] for row in lines
        )

    def __str__(self) -> str:
        return self.table(depth=1)

    def to_json(self, depth: int | None = None) -> dict[str, Any]:
        """The analysis' cost card (:func:`layercost_sym.card`, format in
        ``layercost_sym/card.schema.json``) with its parameters and FLOPs: plain data,
        expressions as text :func:`layercost_sym.parse` reads back, ``layers`` summed per
        module prefix of ``depth`` parts.  ``lc.card(analysis)`` states every quantity."""
        from ..cards import card

        return card(self, depth=depth, quantities=("params", "flops"))

    def to_latex(
        self,
        depth: int | None = 1,
        convention: str | None = None,
        *,
        at: Mapping[str, int] | None = None,
        math: bool = False,
        caption: str | None = None,
        label: str | None = None,
    ) -> str:
        """A LaTeX table of per-layer parameters and cost formulas, and the total: a
        ``booktabs`` ``table`` float (``math=True``: an ``array``), with exact values at ``at``
        (guards checked) and the convention and sizes in its caption; see
        :mod:`layercost_sym.tables`."""
        return self._table(depth, convention, at, caption).to_latex(math=math, label=label)

    def _table(self, depth: int | None, convention: str | None, at: Any, caption: Any = None):
        from ..tables import analysis_table

        if caption is None:
            return analysis_table(self, depth, convention, at=at)
        return analysis_table(self, depth, convention, at=at, description=caption)

    def to_pandas(
        self,
        depth: int | None = 1,
        convention: str | None = None,
        *,
        at: Mapping[str, int] | None = None,
    ) -> Any:
        """The table of :meth:`to_latex` as a ``pandas.DataFrame``."""
        return self._table(depth, convention, at).to_pandas()

    def _repr_html_(self) -> str:
        return self._table(1, None, None).to_html()

    def _repr_latex_(self) -> str:
        return self._table(1, None, None)._repr_latex_()

    def __repr__(self) -> str:  # short: the fields are the whole trace (the table is str())
        names = ", ".join(s.name for s in self.symbols) or "no symbols"
        return f"<Analysis of {len(self.layers)} costed calls in {names}>"


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
