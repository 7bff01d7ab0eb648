"""The tracer of :func:`~layercost_sym.torchtools.tracing.analyze`: module hooks and a
dispatch mode that turn one run of a model on fake tensors into costed calls.

Each call of a module with a rule (the outermost one) becomes a :class:`.analysis.Layer` bound
from the module's attributes and its inputs' symbolic shapes; every operator run outside such
modules is costed by its functional rule, broken up by torch's decomposition table where the
op counter breaks it up, or listed as unsupported (never a silent 0).  Integer index tensors
made by ``arange`` are followed into embedding and tensor-indexing lookups, which bound the
size they index.  After the run, the calls whose rule states which outputs get a gradient
(recurrent layers: ``go``, ``gh``, ``gc``) are bound from the model's autograd graph.

(Over 500 lines by design: the hooks and the dispatch mode share one state, the calls of one
run; what is not that state lives beside it: gradients.py, indices.py, callbytes.py.)
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping, Sequence
from typing import Any

import sympy
import torch
from torch._decomp import decomposition_table
from torch.utils._python_dispatch import TorchDispatchMode

from ..errors import ShapeError
from ..glossary import ELEMENT_SIZES, OUTPUT_GRADS
from ..quantities import quantity as _quantity
from ..reading import (
    distinct_inputs,
    element_sizes,
    fused_kernel,
    output_grads,
    parameters_grad,
    requires_grad,
    unread_tensors,
    weights_grad,
)
from . import pinning as _pinning
from .analysis import Layer, Unsupported
from .callbytes import CallBytes
from .gradients import (
    GRADIENT_SUM,
    MOVEMENT_BACKWARD,
    NO_BACKWARD,
    GradientSums,
    grad_key,
    reached_keys,
)
from .indices import IndexRanges
from .lookup import (
    MODULE_OPS,
    as_function,
    bind_call,
    bind_op,
    module_rule,
    module_view,
    op_call,
    op_rule,
    open_conditions,
    params_at,
)
from .opbytes import storage_id, tensors_in
from .opcount import op_kind, op_name

__all__ = ["OpMode", "Tracer"]


# operators whose fake kernel needs concrete sizes (F.pad's constant_pad_nd: torch would
# specialise every size of its input to the trace size, or fail on a symbolic padding)
_SIZE_SPECIALISING = {torch.ops.aten.constant_pad_nd.default}
# operators whose meta function (fake tensors) refuses symbolic sizes: baddbmm (torch 2.14's
# meta_baddbmm; MultiheadAttention with attn_mask scores through it)
_META_NEEDS_INTS = {torch.ops.aten.baddbmm.default}
MOVEMENT = "(data movement)"  # the rule column of an operator call costed by its bytes only

# products whose backward is two products of the same size (FlopCounterMode's formulas for
# mm, addmm, bmm and convolution_backward): input and weight gradients
_SIMPLE_PRODUCTS = {"Linear", "Conv1d", "Conv2d", "Conv3d", "Bilinear"}
_PRODUCT_OPS = {"mm", "addmm", "bmm"}


def _movement_row(name: str, own: Mapping[tuple[str, str], sympy.Expr]) -> Layer:
    """A row with no arithmetic under any FLOPs convention and the quantities ``own`` gives
    (an operator that only moves data, the activations a module saved with no row of its own)."""
    no_arithmetic = {c: sympy.Integer(0) for c in _quantity("flops").conventions}
    notes = {c: "data movement: no arithmetic" for c in no_arithmetic}
    return Layer(name, MOVEMENT, "op", sympy.Integer(0), stated=no_arithmetic, notes=notes, own=own)


class Tracer:
    def __init__(
        self,
        model: torch.nn.Module,
        convert,
        training: bool,
        activation_size: int = 4,
        symbolic_sizes: bool = False,
    ) -> None:
        self.model = model
        self.convert = convert  # torch size -> user sympy
        self.training = training
        self.bytes = CallBytes(model, convert, activation_size, symbolic_sizes)
        self.names = {id(m): name for name, m in model.named_modules()}
        self.stack: list[str] = []
        self.ruled_depth = 0  # > 0 while inside a ruled module
        self.layers: list[Layer] = []
        self.unsupported: list[Unsupported] = []
        self.decomposing = 0  # > 0 inside a decomposition the tracer runs for an operator
        self.counted_modules: set[int] = set()
        self.covered_params: set[int] = set()
        self.unruled: dict[int, list[str]] = {}  # unruled leaf module -> its uncosted ops
        # a ruled module called with a tensor its rule does not read (a mask) -> why it is
        # costed by its operators instead
        self.operator_costed: dict[int, str] = {}
        self.current_unruled: list[int] = []
        self.indices = IndexRanges(convert)  # the range of values of arange()'s index tensors
        self.guards: list[tuple[sympy.Basic, str]] = []  # (condition, where it comes from)
        # outputs of unsqueeze(x, -2): id -> tensor (F.adaptive_avg_pool1d runs ATen's 2-d pool
        # on one; see the peers' [functional_calls] in formulas/conventions/)
        self.row_unsqueezed: dict[int, torch.Tensor] = {}
        # (error, operator, args, kwargs) of the innermost operator that raised an error
        self.failed_op: tuple[BaseException, str, tuple, dict] | None = None
        self.gradients = GradientSums(self.shape)  # the sums autograd adds
        # module name -> {storage: bytes} of the tensors its first call got (what a checkpoint
        # of the module keeps: activation recomputation in the training-memory ledger)
        self.module_inputs: dict[str, dict[int, sympy.Expr]] = {}
        # ruled module -> (its outputs, once known; the gradient keys it read)
        self.module_reads: dict[int, tuple[list, dict]] = {}
        # the calls whose rule states which of their outputs a gradient reaches (go, gh, gc:
        # a recurrent layer's h_n the model may not use): (its row, its outputs once known);
        # rows are replaced in place until gradient_sums inserts its own
        self.output_flagged: list[tuple[int, list]] = []

    def shape(self, t: torch.Tensor) -> tuple[sympy.Expr, ...]:
        return tuple(self.convert(d) for d in t.shape)

    # activations saved for backward
    def storage_bytes(self, t: torch.Tensor) -> sympy.Expr:
        """The bytes of ``t``'s whole storage (what keeping ``t`` keeps), in the input symbols
        (and element-size symbols where the analysis keeps them)."""
        elements = self.convert(t.untyped_storage().nbytes()) / t.element_size()
        return elements * self.bytes.element_size(t)

    def attribute_saved(self, saved: Mapping[int, tuple[str, torch.Tensor]]) -> None:
        """Give each costed call its ``saved`` bytes (``autograd``): the storages autograd saved
        (``saved``: storage -> (the module running, a tensor of it), as
        :class:`~.count.SavedStorages` notes them) while its module ran, whole, on the module's
        first row (0 on the others: measured, nothing saved); a module that saved storages and
        has no row gets one of its own."""
        by_module: dict[str, sympy.Expr] = {}
        for where, t in saved.values():
            by_module[where] = by_module.get(where, sympy.Integer(0)) + self.storage_bytes(t)
        key = ("saved", "autograd")
        for i, layer in enumerate(self.layers):
            kept = by_module.pop(layer.where, sympy.Integer(0))
            self.layers[i] = dataclasses.replace(layer, own={**layer.own, key: kept})
        for where, kept in by_module.items():
            nothing = sympy.Integer(0)
            own = {("bytes", "min"): nothing, ("bytes", "eager"): nothing, key: kept}
            self.layers.append(_movement_row(f"{where}:(saved for backward)", own | NO_BACKWARD))

    # gradients that autograd adds up
    def gradient_sums(self) -> None:
        """A row per tensor whose gradients autograd adds (:mod:`.gradients`): ``backward``
        under ``exact`` ``k - 1`` adds per element, 0 under the other conventions; after the
        row of the call that read the tensor first."""
        nothing = sympy.Integer(0)
        totals = sorted(self.gradients.totals(), key=lambda t: t[0][1], reverse=True)
        for (where, position), adds in totals:
            own = {
                **NO_BACKWARD,
                ("backward", "exact"): adds,
                ("bytes", "min"): nothing,
                ("bytes", "eager"): nothing,
                ("saved", "autograd"): nothing,
            }
            self.layers.insert(position, _movement_row(f"{where}:{GRADIENT_SUM}", own))

    def outputs_reached(self, results: Sequence[Any]) -> None:
        """Bind the flags ``go``, ``gh``, ``gc`` of the calls whose rule states them: 1 where
        the gradient of the model's ``results`` reaches that output of the call, 0 where the
        model does not use it (``rnn(x)[0]`` leaves h_n and c_n without one)."""
        if not self.output_flagged:
            return
        reached = reached_keys(results)
        for position, outputs in self.output_flagged:
            layer = self.layers[position]
            assert layer._rule is not None  # output_flagged holds ruled calls only
            flags = output_grads(layer._rule)
            for i, flag in OUTPUT_GRADS.items():
                if flag in flags and i < len(outputs):
                    flags[flag] = int(grad_key(outputs[i]) in reached)
            binding = {**layer.binding, **{k: sympy.Integer(v) for k, v in flags.items()}}
            # the rule's constraints again: one may state which outputs its backward needs
            conditions = open_conditions(layer._rule, layer.training, binding)
            self.layers[position] = dataclasses.replace(
                layer, binding=binding, conditions=conditions, _cache={}
            )
        self.output_flagged.clear()

    def _guard(self, guard: tuple[sympy.Basic, str] | None) -> None:
        if guard is not None:
            self.guards.append(guard)

    # module hooks
    def pre(self, module, args, kwargs):
        name = self.names.get(id(module), type(module).__name__)
        self.stack.append(name)
        if isinstance(module, torch.nn.Embedding) and args:
            self._guard(self.indices.guard(name, args[0], module.num_embeddings))
        if name not in self.module_inputs:
            given = [
                t
                for t in tensors_in((args, kwargs))
                if storage_id(t) not in self.bytes.weight_storages
            ]
            self.module_inputs[name] = {storage_id(t): self.storage_bytes(t) for t in given}
        if self.ruled_depth:
            self.ruled_depth += 1
            return
        named = [(f"argument {i}", a) for i, a in enumerate(args) if isinstance(a, torch.Tensor)]
        named += [(k, v) for k, v in kwargs.items() if isinstance(v, torch.Tensor)]
        tensors = [t for _, t in named]
        rule = module_rule(module, [tuple(t.shape) for t in tensors])
        unread = unread_tensors(rule, named[len(rule.inputs) :]) if rule is not None else []
        if unread:  # a mask the rule does not state: the module is costed by its operators
            self.operator_costed[id(module)] = (
                f"rule {rule.name if rule else ''} does not state the cost of "
                f"{', '.join(unread)}; its parameters are counted by numel, its operators"
            )
        if rule is None or unread:
            if unread or (not list(module.children()) and list(module.parameters(recurse=False))):
                self.current_unruled.append(id(module))
                self.unruled.setdefault(id(module), [])
            return
        self.ruled_depth = 1
        shapes = [self.shape(t) for t in tensors][: len(rule.inputs)]
        call = dict(kwargs)  # bind specs read what they name (arg(per_sample_weights)?)
        try:
            sizes: dict[str, Any] = self.bytes.role_sizes(element_sizes(module, tensors))
            sizes.update(distinct_inputs(len(rule.inputs), tensors))
            sizes.update(requires_grad(tensors))
            sizes.update(weights_grad(module))
            sizes.update(fused_kernel(rule, tensors))
            flagged = output_grads(rule)  # 1 until outputs_reached reads the graph
            sizes.update(flagged)
            values, conditions = bind_call(rule, module, shapes, call, bool(module.training), sizes)
            params = params_at(rule, values)
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
        outputs: list = []  # post() fills it
        # the sums of its inputs' gradients go on a row after the one appended below
        where = (name, len(self.layers) + 1)
        read = self.gradients.note([*tensors, *module.parameters()], outputs, where)
        self.module_reads[id(module)] = (outputs, read)
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
                conditions=conditions,
            )
        )
        if flagged:
            self.output_flagged.append((len(self.layers) - 1, outputs))

    def post(self, module, args, kwargs, output):
        self.stack.pop()
        if self.ruled_depth == 1 and id(module) in self.module_reads:
            outputs, read = self.module_reads.pop(id(module))
            outputs.extend(tensors_in(output))
            self.gradients.passed(read, outputs)
        if self.ruled_depth:
            self.ruled_depth -= 1
        elif self.current_unruled and self.current_unruled[-1] == id(module):
            self.current_unruled.pop()

    # operators outside ruled modules
    def op(self, mode: TorchDispatchMode, func, args, kwargs):
        try:
            out = self._op(mode, func, args, kwargs)
            self.bytes.note_weight_views(func, args, kwargs, out)
            return out
        except Exception as exc:
            if not self.failed_op or self.failed_op[0] is not exc:  # the innermost operator
                self.failed_op = (exc, op_name(func), args, kwargs)
            raise

    def _run_uncosted(self, mode: TorchDispatchMode, func, args, kwargs):
        """The output of ``func``'s decomposition in torch's table, its primitives run through
        the tracer uncosted (the caller costs the call itself)."""
        self.ruled_depth += 1
        try:
            with mode:
                return decomposition_table[func](*args, **kwargs)
        finally:
            self.ruled_depth -= 1

    def _op(self, mode: TorchDispatchMode, func, args, kwargs):
        if func in _SIZE_SPECIALISING and not _pinning.symbols_in(args[1:]):
            # data movement whose kernel reads every size of its input as an int (pinning N,
            # H, W to their trace sizes): torch's decomposition keeps them symbolic; its
            # operators are the same data movement, not costed.  A padding by a symbolic amount
            # is left to the kernel, which refuses it: the dimensions it depends on are pinned.
            out = self._run_uncosted(mode, func, args, kwargs)
            if not self.ruled_depth:
                self._movement(func, args, kwargs, out, min_bytes=True)
                self._note_op_reads(func, args, kwargs, out)
            return out
        if self.ruled_depth or func.namespace == "prim":
            return func(*args, **kwargs)
        name = op_name(func)
        for guard in self.indices.lookups(self.stack[-1] if self.stack else "", name, args):
            self._guard(guard)
        out = self._cost(mode, func, name, args, kwargs)
        self._note_op_reads(func, args, kwargs, out)
        self.indices.track(name, args, kwargs, out)
        if name == "unsqueeze" and isinstance(out, torch.Tensor) and out.dim() >= 3:
            dim = args[1] if len(args) > 1 else kwargs.get("dim")
            if isinstance(dim, int) and dim % out.dim() == out.dim() - 2:
                self.row_unsqueezed[id(out)] = out
        return out

    def _note_op_reads(self, func, args, kwargs, out) -> None:
        if not self.decomposing:  # a decomposition's primitives are no autograd nodes
            where = (self.stack[-1] if self.stack else "", len(self.layers))
            self.gradients.note(op_call(func, args, kwargs, None)[1], tensors_in(out), where)

    def _cost(self, mode: TorchDispatchMode, func, name: str, args, kwargs):
        schema = func._schema.arguments
        named = op_call(func, args, kwargs, None)[0]
        where = self.stack[-1] if self.stack else ""
        if name in MODULE_OPS:
            view = module_view(name, named, schema, self.convert)
            if view is not None:
                return self._cost_as_module(func, name, where, view, args, kwargs)
        rule = op_rule(name, types.SimpleNamespace(**named))
        if rule is None and op_kind(func) is None and func in decomposition_table:
            # as the op counter does: count the primitives torch decomposes it to; their min
            # bytes are theirs, the eager bytes the kernel's that torch runs (a row of its own)
            self.decomposing += 1
            try:
                with mode:
                    out = decomposition_table[func](*args, **kwargs)
            finally:
                self.decomposing -= 1
            # autograd runs the operator's own backward, not its primitives': unknown here
            self._movement(func, args, kwargs, out, min_bytes=False, backward_known=False)
            return out
        if func in _META_NEEDS_INTS:
            # torch's meta function refuses symbolic sizes; its decomposition computes the same
            # output, its primitives not costed (the rule costs the call)
            out = self._run_uncosted(mode, func, args, kwargs)
        else:
            out = func(*args, **kwargs)
        if rule is None and op_kind(func) == "movement":
            known = name in MOVEMENT_BACKWARD
            self._movement(func, args, kwargs, out, min_bytes=True, backward_known=known)
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
        if _empty(tensors_in(out)):
            return out  # no element computed, none read (phi-3's q[..., rotary_dim:] of size 0)
        tensors = op_call(func, args, kwargs, out)[1]
        shapes = [self.shape(t) for t in tensors]
        inputs = tensors[1:]
        values, conditions = bind_op(rule, named, tensors, shapes, self.training)
        operands = tensors[-2:] if rule.name in _PRODUCT_OPS else []
        factor = sum(int(t.requires_grad) for t in operands)
        self.layers.append(
            Layer(
                f"{where}:{name}",
                rule.name,
                "op",
                params_at(rule, values),
                tuple(shapes[1:]),
                values,
                self.training,
                rule,
                factor,
                conditions=conditions,
                own={
                    ("bytes", "min"): self.bytes.min(func, args, kwargs, inputs, out),
                    ("bytes", "eager"): self._eager_bytes(func, args, kwargs, out),
                    # a primitive of a decomposition the tracer ran: no autograd node
                    **(NO_BACKWARD if self.decomposing else {}),
                },
                holds_if={
                    ("bytes", "eager"): self.bytes.copy_conditions(name, inputs, where)
                    + self.bytes.alias_conditions(args, kwargs, f"{name} at {where or '(model)'}")
                },
            )
        )
        return out

    def _eager_bytes(self, func: Any, args: tuple, kwargs: dict, out: Any) -> sympy.Expr:
        """An operator call's eager bytes; 0 for a primitive of a kernel the tracer decomposed
        (not a kernel: the operator torch dispatched carries them)."""
        if self.decomposing:
            return sympy.Integer(0)
        return self.bytes.eager(func, args, kwargs, out)

    def _movement(
        self,
        func: Any,
        args: tuple,
        kwargs: dict,
        out: Any,
        min_bytes: bool,
        backward_known: bool = True,
    ) -> None:
        """A row for an operator call with no rule of its own whose kernel moves bytes (a copy,
        a factory such as ``arange`` or ``ones``, a kernel the tracer decomposed to count its
        arithmetic): no FLOPs under any convention, its kernel's eager bytes, and (unless the
        primitives of a decomposition already carry them) the same as min bytes; no backward
        where ``backward_known`` or no argument requires grad (else none stated: the model's
        backward names the call).  A view moves nothing; it gets a row only where its backward
        is not known."""
        if self.decomposing:
            return  # the decomposed operator's own row has its kernel's bytes
        moved = self._eager_bytes(func, args, kwargs, out)
        needs_grad = not backward_known and any(t.requires_grad for t in tensors_in((args, kwargs)))
        backward = {} if needs_grad else NO_BACKWARD
        if moved == 0 and backward:
            return
        where = self.stack[-1] if self.stack else ""
        own = {
            ("bytes", "eager"): moved,
            ("bytes", "min"): moved if min_bytes else sympy.Integer(0),
            **backward,
        }
        self.layers.append(_movement_row(f"{where}:{op_name(func)}", own))

    def _cost_as_module(self, func, name: str, where: str, view, args, kwargs):
        rule, attrs = view
        out = func(*args, **kwargs)
        x = args[0]
        weight = getattr(attrs, "weight", None)
        sizes: dict[str, Any] = element_sizes(None, [x])
        if isinstance(weight, torch.Tensor):  # F.conv*d: the weight is an argument
            sizes[ELEMENT_SIZES["weights"]] = weight.element_size()
        sizes = self.bytes.role_sizes(sizes)
        sizes.update(requires_grad([x]))
        weights = [getattr(attrs, k, None) for k in ("weight", "bias")]
        sizes.update(parameters_grad(w for w in weights if isinstance(w, torch.Tensor)))
        values, conditions = bind_call(rule, attrs, [self.shape(x)], {}, self.training, sizes)
        factor = int(x.requires_grad) + int(weight is not None and weight.requires_grad)
        function = name
        if name == "_adaptive_avg_pool2d" and self.row_unsqueezed.get(id(x)) is x:
            function = "adaptive_avg_pool1d"  # ATen's adaptive_avg_pool1d: unsqueeze(-2), 2-d
        only, stated, notes = as_function(rule, function, self.shape(x))
        self.layers.append(
            Layer(
                f"{where}:{name}",
                rule.name,
                "op",
                params_at(rule, values) if weight is None else sympy.Integer(0),
                (self.shape(x),),
                values,
                self.training,
                rule,
                factor,
                only=only,
                stated=stated,
                notes=notes,
                conditions=conditions,
                own={("bytes", "eager"): self._eager_bytes(func, args, kwargs, out)},
            )
        )
        return out


class OpMode(TorchDispatchMode):
    def __init__(self, tracer: Tracer) -> None:
        super().__init__()
        self.tracer = tracer

    def __torch_dispatch__(self, func, types_, args=(), kwargs=None):
        return self.tracer.op(self, func, args, kwargs or {})


def _empty(outputs: Sequence[torch.Tensor]) -> bool:
    """Every output has a dimension of size 0 (an int, not a symbol): an operator that writes
    no element.  Its cost is 0 in every quantity, whatever its rule would bind: a rule's
    dimensions are positive."""
    return bool(outputs) and all(
        any(isinstance(d, int) and d == 0 for d in t.shape) for t in outputs
    )
