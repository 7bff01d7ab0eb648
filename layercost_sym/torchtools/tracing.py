"""``analyze``: a whole torch model's parameters and costs as closed forms in its input size.

(Over 500 lines by design: one trace and its retries in one place, from the fake inputs to the
analysis, with the size-1 check that retraces; the tracer, lookup and pinning live in their
modules.)

The model runs eagerly on fake tensors (``FakeTensorMode`` with a ``ShapeEnv``): the input
dimensions the caller names (``"N"``, ``"H"``, ...) are dynamic sizes, so every tensor's shape
is torch's own symbolic expression of them, floors of strides and pooling included.  The run is
turned into costed calls by :mod:`.tracer`; the result is an :class:`.analysis.Analysis`.

* Each call of a module that has a catalogue rule (the outermost one: nothing inside it is
  looked at again) is bound from the module's attributes and the symbolic shapes of its inputs,
  and costed by the rule (:mod:`.lookup`).
* Everything run outside such modules (residual adds, ``torch.flatten``, ``torch.cat``,
  ``F.relu``, matmuls, softmax, ...) is seen as ATen operators by a dispatch mode and costed by
  the functional rules of ``formulas/functional.toml``; an operator the op counter would break
  up is broken up by torch's decomposition table in the same way; data movement counts 0; an
  operator with no rule is listed in :attr:`Analysis.unsupported`, never counted as 0 silently.
  ``F.conv*d`` and the ``F.*pool*d`` functions are costed by the rule of the torch.nn module
  that runs the same operator; the peer tools count such a call as their convention files'
  ``functional_calls`` tables state.
* A module with parameters and no rule (and no submodules) has its parameters counted by
  ``numel`` and its operators by the functional rules: it is listed in
  :attr:`Analysis.costed_by_operators` (GPT-2's ``Conv1D``, costed by its ``addmm``), or in
  ``unsupported`` when an operator without a rule ran inside it.
* The guards torch records while tracing (``(H - 1)//32 + 1 != 1``, ...) are the range where
  the closed form holds; the closed forms carry them as their domain, so that
  :func:`layercost_sym.evaluate` and :meth:`Analysis.evaluate` refuse sizes outside it, naming
  the guard.  They are shown simplified where that is proven (``H >= 33``;
  :attr:`Analysis.range`); one that only says a size is not 1 (``N*X != X`` where torch
  could not prove ``X >= 1``: a memory-layout check of ``F.linear``) is left out, as torch
  leaves out those it proves (:func:`.symbolic.size_one_guards`; sizes from 1 below).  An
  ``nn.Embedding`` looked up at positions ``arange(L)`` adds
  ``L <= num_embeddings`` (GPT-2's 1024 positions), a bound torch does not record.
* A model that will not trace with a dimension left symbolic has that dimension pinned
  (:mod:`.pinning`): a guard ``H == 224`` with a note naming the model code that forced it.
* transformers' mixture-of-experts layers run their routed experts as ``batched_mm``
  (:mod:`.experts`): every (token, expert) pair through its expert, a work that does not
  depend on the routing; :attr:`Analysis.active_params` and :attr:`Analysis.notes` give the
  parameters a token uses and what the closed form assumes.
* transformers' mask code takes, on fake tensors, the branch a real run takes (see
  :func:`.patches.real_run_branches`), so ``exact`` counts the operators a real run performs.
* Sizes are traced as ``>= 2`` (torch specialises 0 and 1): a model that branches on a size
  being 1 may run other operators there (GPT-2 at ``L = 1``: ``12*N + 4`` ``exact`` operations
  per layer fewer, its causal mask; ``torch`` and ``macs`` agree).  Such a branch is found
  (:mod:`.sizeone`) and checked by a trace at 1; where a quantity differs, a guard refuses 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, cast

import sympy
import torch

from ..domain import without_domain
from ..errors import LayercostError, ShapeError, TraceError
from ..glossary import glossary
from ..ledger import Weights
from ..quantities import quantity as _quantity
from . import fixedsizes
from . import pinning as _pinning
from .analysis import Analysis, Case, OperatorCostedModule, Unsupported
from .count import SavedStorages
from .experts import batched_experts, routed_experts
from .masked import MaskedAttention
from .opbytes import storage_id, tensors_in
from .patches import (
    generic_conv_backend,
    math_sdpa,
    quiet_fake_tensor_log,
    real_run_branches,
    recurrent_by_shapes,
    resampling_by_sizes,
)
from .sizeone import SizeOneBranch, size_one_branches
from .symbolic import size_one_guards, to_sympy
from .tracer import OpMode, Tracer

__all__ = ["analyze"]

_DEFAULT_HINTS = {"N": 3, "B": 3}
_SPATIAL_HINTS = (227, 229, 233, 239, 241, 251, 257, 263)


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
                    value = _unused(_DEFAULT_HINTS.get(d), used, spatial)
                    if limit is not None and value >= limit:
                        value = _prime_below(limit, used)
                chosen[d] = value
                used.add(value)
    return chosen


def _unused(value: int | None, used: set[int], spatial: Iterator[int]) -> int:
    """``value`` (a symbol's default trace size), or the next size up, or the next odd prime of
    ``spatial``, whichever is first not in ``used``."""
    while value is None or value in used:
        value = next(spatial) if value is None or value in _SPATIAL_HINTS else value + 1
    return value


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
    convention: str | None = None,
    training: bool = False,
    hints: Mapping[str, int] | None = None,
    backward: bool = False,
    element_sizes: str = "dtype",
    check_size_one: bool = True,
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

    Where a guard is a branch of the model's code on its sizes (crossvit's ``H != 240``: it
    skips its resize at its own size; lowformer's two paths whose sizes agree at some ``W``
    only), the other side is traced too (``H`` given as 240; the sizes at a point where the
    branch goes the other way): :attr:`Analysis.cases`, from which :meth:`Analysis.quantity`
    and :meth:`Analysis.evaluate` answer there, a ``Piecewise`` (at most six such traces).

    ``element_sizes`` says how ``bytes`` carries bytes per element: ``"dtype"`` (numbers,
    from the traced dtypes) or ``"symbolic"``: the glossary's ``e_a`` (activations), ``e_w``
    (parameters and buffers, and views of them) and ``e_i`` (int64 indices) wherever a tensor
    has its role's dtype in this model, so that mixed precision is a substitution; evaluating
    bytes then needs their values (FLOPs and parameters do not).

    torch traces symbolic sizes from 2, so a branch of the model's own code on a size being 1
    (transformers' ``is_causal = query_length > 1``) is decided without a guard
    (:mod:`.sizeone`).  For each size such a branch reads, ``check_size_one`` traces the
    model again with that size 1: where a quantity differs there, the analysis carries a guard
    ``L >= 2`` naming the line (analyse with ``L`` given as 1 for that case); where none does,
    the closed form holds at 1 as it is.  ``False`` skips those traces (and the guards).

    >>> import torch, layercost_sym as lc
    >>> model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU())
    >>> a = lc.analyze(model, ("N", 8))
    >>> a.params, a.cost("exact"), a.cost("macs")
    (36, 68*N, 32*N)
    >>> table = torch.nn.Embedding(100, 8)  # token ids: inferred torch.long
    >>> lc.analyze(table, ("N", "L"), hints={"L": 7}).range
    []
    """
    convention = _quantity("flops").convention(convention)  # of .flops and the tables
    if element_sizes not in ("dtype", "symbolic"):
        raise ValueError(f"element_sizes is 'dtype' or 'symbolic', got {element_sizes!r}")
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
        branches: dict[str, str] = {}
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
            element_sizes == "symbolic",
            branches,
        )
        if isinstance(result, Analysis):

            def again(at: Sequence[tuple], hints: Mapping[str, int], size_one: bool) -> Analysis:
                """The same analysis on inputs of shapes ``at`` (``specs``' order), ``hints``."""
                keywords = dict(zip(keyword_shapes, at[len(input_shapes) :], strict=True))
                return analyze(
                    model,
                    *at[: len(input_shapes)],
                    dtype=dtype,
                    convention=convention,
                    training=training,
                    hints=dict(hints) or None,
                    backward=backward,
                    element_sizes=element_sizes,
                    check_size_one=size_one,
                    **keywords,
                    **call_kwargs,
                )

            def given(name: str, value: int, size_one: bool) -> Analysis:
                """The same analysis with size ``name`` given as ``value``."""
                at = [tuple(value if d == name else d for d in spec) for spec in specs]
                return again(at, {k: v for k, v in user_hints.items() if k != name}, size_one)

            def hinted(at: Mapping[str, int]) -> Analysis:
                """The same analysis traced with the sizes ``at`` names there, symbolic."""
                return again(specs, {**user_hints, **at}, check_size_one)

            if check_size_one and branches:
                _size_one_checked(result, branches, lambda name: given(name, 1, False))
            budget = _cases_left.get()
            token = _cases_left.set([_CASE_TRACES]) if budget is None else None
            try:
                _other_sides(
                    result,
                    lambda n, v: given(n, v, check_size_one),
                    hinted,
                )
            finally:
                if token is not None:
                    _cases_left.reset(token)
            return result
        failure, traced = result
        seen.append(failure.message)
        if _sides_taken.get():  # the other side of a guard: traced as it is, or not at all
            break
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
    symbolic_sizes: bool = False,
    size_one_branches_found: dict[str, str] | None = None,
) -> Analysis | tuple[_pinning.Failure, dict[str, int]]:
    """One trace with ``settings``: the analysis, or ``(failure, each symbol's trace size)``;
    ``size_one_branches_found`` gets, for each input size a branch of the model's own code
    decided from its being at least 2 (:mod:`.sizeone`), the line that did."""
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
                expr = cast(Any, size).node.expr  # a SymInt (typed as int by torch)
                if expr.is_Symbol and expr not in symbol_map:
                    symbol_map[expr] = _user_symbol(d)
        inputs.append(x)
    positional = inputs[: len(inputs) - len(keywords)]
    keyword_inputs = dict(zip(keywords, inputs[len(positional) :], strict=True))

    def convert(size: Any) -> sympy.Expr:
        if isinstance(size, int):
            return sympy.Integer(size)
        return to_sympy(env.replace(size.node.expr), symbol_map)

    floating = [p for p in model.parameters() if p.is_floating_point()]
    activations = dtype or (floating[0].dtype if floating else torch.float32)
    activation_size = torch.empty((), dtype=activations).element_size()
    tracer = Tracer(model, convert, training, activation_size, symbolic_sizes)
    # a weight an operator gets is the real tensor or its fake (views of them: note_weight_views);
    # the fakes are kept for the trace, so that no other tensor takes their storages' ids
    fakes = [
        fake.from_tensor(w, static_shapes=True) for w in [*model.parameters(), *model.buffers()]
    ]
    tracer.bytes.weight_storages |= {storage_id(f) for f in fakes}
    handles = []
    for module in model.modules():
        handles.append(module.register_forward_pre_hook(tracer.pre, with_kwargs=True))
        handles.append(
            module.register_forward_hook(tracer.post, with_kwargs=True, always_call=True)
        )
    was_training = model.training
    outputs: list[tuple[sympy.Expr, ...]] = []
    branches: list[SizeOneBranch] = []
    try:
        model.train(training)
        with (
            generic_conv_backend(),
            resampling_by_sizes(),
            recurrent_by_shapes(lambda: tracer.ruled_depth > 0),
            real_run_branches({**call_kwargs, **keyword_inputs}),
            batched_experts(model),  # MoE experts: a routing-independent run
            torch.enable_grad(),
            math_sdpa(),
            quiet_fake_tensor_log(),
            fake,
            OpMode(tracer),
            size_one_branches(env, branches),
            MaskedAttention(tracer),  # a torch function mode: sees the attention calls
            SavedStorages(
                tracer.bytes.weight_storages, lambda: tracer.stack[-1] if tracer.stack else ""
            ) as kept,
        ):
            out = model(*positional, **keyword_inputs, **call_kwargs)
            outputs = [tracer.shape(t) for t in tensors_in(out)]
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

    if size_one_branches_found is not None:
        for branch in branches:
            for sym in sorted(branch.symbols & symbol_map.keys(), key=str):
                size_one_branches_found.setdefault(str(symbol_map[sym]), branch.where)
    tracer.attribute_saved(kept.saved)
    tracer.outputs_reached(tensors_in(out))
    tracer.gradient_sums()
    costed_by_operators = []
    owned: set[int] = set()  # parameters attributed to a module costed by its operators
    for module_id, ops in tracer.unruled.items():
        module = next(m for m in model.modules() if id(m) == module_id)
        name = tracer.names.get(module_id, "")
        what = type(module).__name__
        why = tracer.operator_costed.get(module_id) or (
            f"no rule for class {what}; its parameters are counted by numel, its operators"
        )
        if ops:  # an operator without a rule ran inside: its cost is not in the totals
            detail = f"{why} by the functional rules except {', '.join(sorted(set(ops)))}"
            tracer.unsupported.append(Unsupported(name, "module", what, detail, False))
            continue
        costed = tuple(
            dict.fromkeys(
                layer.name.partition(":")[2]
                for layer in tracer.layers
                if layer.kind == "op" and layer.name.partition(":")[0] == name
            )
        )
        detail = f"{why} ({', '.join(costed) or 'none'}) by the functional rules"
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
    frames: dict[sympy.Basic, Any] = {}  # where in the model's code torch recorded each guard
    for g in env.guards:
        cond = to_sympy(env.simplify(g.expr), symbol_map)
        if cond is not sympy.true:
            guards.append(cond)
            frames.setdefault(cond, g.sloc.framework_loc)
    # a guard that only says a size is not 1 (N*X != X of a memory-layout check, X >= 1 beyond
    # torch's proof) is left out, as torch leaves out those it proves: see the range note below
    dropped = set(size_one_guards(guards))
    guards = [g for g in guards if g not in dropped]
    sources: dict[sympy.Basic, str] = {}
    for cond, source in tracer.guards:
        if cond not in guards and cond is not sympy.true:
            guards.append(cond)
            sources[cond] = source
    for sym, value, note in fixedsizes.unified(env, symbol_map):
        cond = sympy.Eq(symbol_map[sym], to_sympy(value, symbol_map))
        guards.append(cond)
        sources[cond] = note
    pins = dict(settings.pinned)
    pins.update(fixedsizes.specialised(env, symbol_map))  # sizes torch made ints itself
    input_names = dict.fromkeys(d for spec in specs for d in spec if isinstance(d, str))
    fixed = fixedsizes.fixed_by_guards(guards, frames, list(input_names))
    for guard, (name, value, note) in fixed.items():
        if name not in pins:
            pins[name] = (value, note)
            sources[guard] = f"{name} is pinned to {value}: {note}"
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
        # being 1, which that assumption decides without a guard (transformers' masking at
        # L = 1), is checked by a trace at 1 (analyze's check_size_one, .sizeone); torch's own
        # broadcasting checks (N != 1) change no cost and are not.
        if vr is not None and vr.lower.is_Integer and int(vr.lower) > 2:
            guards.append(sympy.Ge(user, int(vr.lower)))
    symbols = tuple(_user_symbol(name) for name in input_names)
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
        {name: pins[name] for name in input_names if name in pins},
        _weights(model, tracer),
        tracer.module_inputs,
        repeated_blocks(model),
        experts=tuple(routed_experts(model)),
    )


def _totals(analysis: Analysis) -> dict[tuple[str, str | None], sympy.Expr]:
    """Every quantity and convention ``analysis`` states, as plain expressions (an expression
    carrying a domain stays in the domain registry while held, and SymPy's caches hold what
    ``expand`` saw)."""
    keys = {key for layer in analysis.layers for key in layer.own}
    found: dict[tuple[str, str | None], sympy.Expr] = {("params", None): analysis.params}
    for quantity, convention in sorted(keys | {("flops", c) for c in analysis.conventions}):
        try:
            found[quantity, convention] = analysis.quantity(quantity, convention)
        except LayercostError:  # not stated by every call: not an answer to compare
            continue
    return {key: without_domain(sympy.sympify(value)) for key, value in found.items()}


# traces of the other side of a guard ``H != 240`` per analysis, the cases' own included
# (crossvit: H == 240, within it W == 240, and the same at 224)
_CASE_TRACES = 6
_cases_left: ContextVar[list[int] | None] = ContextVar("_cases_left", default=None)
# the guards whose other side an enclosing analysis traces (a case does not trace back)
_sides_taken: ContextVar[frozenset[sympy.Basic]] = ContextVar("_sides_taken", default=frozenset())
# the sizes a guard's other side is looked for in, nearest the usual image size first
_OTHER_SIDE_SIZES = sorted(range(2, 1025), key=lambda v: (abs(v - 224), v))


def _other_sides(
    analysis: Analysis,
    given: Callable[[str, int], Analysis],
    hinted: Callable[[Mapping[str, int]], Analysis],
) -> None:
    """Trace the other side of each guard that is a branch of the model's code on its input
    sizes, and answer there from that trace (a :class:`.Case` each, within the budget of
    traces; where that trace fails, as where the model itself does, the guard keeps refusing):

    * ``s != k`` (the model branches on the size being ``k``: crossvit skips its resize at its
      own image size): traced with ``s`` given as ``k`` (``given``), the case ``s == k``;
    * any other ``==`` or ``!=`` of two sizes computed from one or two input sizes (two paths'
      sizes that agree at some sizes only, as lowformer's ``2*floor((W - 1)/32) + 2 !=
      floor((W - 1)/16) + 1``): traced with the sizes symbolic at a point where it fails and
      the other guards in those sizes alone hold (``hinted``), the case where it fails (that
      trace's guards say where its form holds).

    Not a divisibility (``H % 16 == 0``: the model cannot run off it) nor a size torch
    specialised (``H/16 == 14``: the same would happen at any other size).  A side is traced
    as it is: where that needs a size pinned, or the model cannot run there, it is not taken."""
    left = _cases_left.get() or [0]
    taken = _sides_taken.get()
    cases = []
    for guard in analysis.guards:
        other = _other_side(guard, analysis)
        if other is None or left[0] <= 0 or sympy.Not(guard) in taken:
            continue
        left[0] -= 1
        at, point = other
        name, value = next(iter(at.items()))  # a point's one size
        token = _sides_taken.set(taken | {guard})
        try:
            traced = given(name, value) if point else hinted(at)
        except LayercostError:
            continue
        finally:
            _sides_taken.reset(token)
        condition = sympy.Eq(_user_symbol(name), value) if point else sympy.Not(guard)
        cases.append(Case(condition, guard, traced))
    analysis.cases = tuple(cases)


def _other_side(guard: sympy.Basic, analysis: Analysis) -> tuple[dict[str, int], bool] | None:
    """``({"H": 240}, True)`` for a guard ``H != 240`` on an input size of ``analysis``;
    ``({"H": v, "W": w}, False)`` for a branch on two sizes computed from input sizes (one or
    two), at a point where it fails and the analysis' other guards in those sizes alone hold;
    else None."""
    free = guard.free_symbols
    if not isinstance(guard, sympy.Ne | sympy.Eq) or not 1 <= len(free) <= 2:
        return None
    if any(s not in analysis.symbols or s.name in analysis.pinned for s in free):
        return None
    lhs, rhs = guard.args
    if isinstance(guard, sympy.Ne):
        for side, value in ((lhs, rhs), (rhs, lhs)):
            if isinstance(side, sympy.Symbol) and isinstance(value, sympy.Integer):
                return ({side.name: int(value)}, True) if value >= 1 else None
    if not (lhs.free_symbols and rhs.free_symbols):
        return None  # a size torch specialised, or a divisibility (Mod(H, 16) == 0)
    alone = [g for g in analysis.guards if g is not guard and g.free_symbols <= free]
    names = sorted(free, key=lambda s: s.name)
    for point in _points(len(names)):
        at = {s: sympy.Integer(v) for s, v in zip(names, point, strict=True)}
        if guard.xreplace(at) == sympy.false and all(g.xreplace(at) == sympy.true for g in alone):
            return {s.name: v for s, v in zip(names, point, strict=True)}, False
    return None


def _points(count: int) -> Iterator[tuple[int, ...]]:
    """The points a guard's other side is looked for at: sizes nearest the usual image size
    first, in one size; in two, square first, then within 32 of square."""
    if count == 1:
        yield from ((v,) for v in _OTHER_SIDE_SIZES)
        return
    yield from ((v, v) for v in _OTHER_SIDE_SIZES)
    for v in _OTHER_SIDE_SIZES[:128]:
        for d in range(1, 33):
            yield from ((v, v + d), (v + d, v))


def _size_one_checked(
    analysis: Analysis, branches: Mapping[str, str], at_one: Callable[[str], Analysis]
) -> None:
    """For each input size a branch of the model's code read (``branches``: name -> the line),
    keep ``analysis`` answering at that size 1 where the trace with it 1 (``at_one(name)``)
    gives every quantity the closed form gives there; else add the guard ``name >= 2`` (FLOPs
    or params differ) or a condition of the quantities that differ alone, naming the line."""
    ours: dict[tuple[str, str | None], sympy.Expr] | None = None  # the same for every size
    for name, where in branches.items():
        symbol = _user_symbol(name)
        if symbol not in analysis.symbols or name in analysis.pinned:
            continue
        ours = _totals(analysis) if ours is None else ours
        try:
            theirs = _totals(at_one(name))
            differ = [
                key
                for key in ours
                if key not in theirs
                or sympy.expand(ours[key].xreplace({symbol: 1}) - theirs[key]) != 0
            ]
        except LayercostError:
            differ = list(ours)  # no trace at 1 to show the closed form holds there
        if not differ:
            continue
        guard = sympy.Ge(symbol, 2)
        analysis.guard_sources[guard] = (
            f"at {name} = 1 the model's code takes another branch ({where}); "
            f"analyse with {name} given as 1 for that case"
        )
        if any(quantity in ("params", "flops") for quantity, _ in differ):
            analysis.guards.append(guard)  # the FLOPs or the parameters: the whole analysis
            analysis.__dict__.pop("domain", None)  # the cached domain, without the new guard
            continue
        condition = analysis._guard_condition(guard)  # bytes, saved, ...: those quantities only
        for quantity, convention in differ:
            key = (quantity, str(convention))  # params (no convention) took the branch above
            analysis.holds_if[key] = (*analysis.holds_if.get(key, ()), condition)


def repeated_blocks(model: torch.nn.Module) -> tuple[str, ...]:
    """The names of ``model``'s repeated blocks, outermost: the elements of its
    ``ModuleList``s and of its ``Sequential``s whose every element has modules of its own
    (transformers' decoder layers, torchvision's residual blocks), where activation
    recomputation checkpoints.

    >>> import torch
    >>> stack = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ModuleList(
    ...     [torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU()) for _ in range(2)]))
    >>> repeated_blocks(stack)
    ('1.0', '1.1')
    """
    found: list[str] = []
    for name, module in model.named_modules():
        children = list(module.named_children())
        composite = len(children) >= 2 and all(list(c.children()) for _, c in children)
        if isinstance(module, torch.nn.ModuleList) or (
            isinstance(module, torch.nn.Sequential) and composite
        ):
            found += [f"{name}.{child}" if name else child for child, _ in children]
    outermost = [b for b in found if not any(b != o and b.startswith(o + ".") for o in found)]
    return tuple(outermost)


def _weights(model: torch.nn.Module, tracer: Tracer) -> tuple[Weights, ...]:
    """The model's parameter tensors, grouped by element size and trainability (a symbolic
    element size ``e_w`` where the analysis keeps them so)."""
    groups: dict[tuple[Any, bool], list[torch.Tensor]] = {}
    for p in model.parameters():  # each tensor once (tied weights)
        groups.setdefault((tracer.bytes.element_size(p), p.requires_grad), []).append(p)
    return tuple(
        Weights(sum(p.numel() for p in ps), size, trainable, len(ps))
        for (size, trainable), ps in groups.items()
    )
