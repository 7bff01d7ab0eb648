"""The bytes of the calls a trace records (:class:`CallBytes`): each operator call's ``min``
and ``eager`` bytes from its traced tensors, sizes in the input symbols, and the conditions
under which the eager ones hold; element sizes as numbers, or as the glossary's symbols by
role (``analyze(..., element_sizes="symbolic")``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sympy
import torch

from ..domain import Condition
from ..glossary import ELEMENT_SIZES, glossary
from .opbytes import kernel_bytes, moves_nothing, storage_id, tensor_bytes, tensors_in

__all__ = ["CallBytes"]


def _contiguous(sizes: list[int], strides: list[int]) -> bool:
    """torch's contiguity: row-major strides, dimensions of size 1 (and empty tensors) aside."""
    if 0 in sizes:
        return True
    expected = 1
    for size, stride in zip(reversed(sizes), reversed(strides), strict=True):
        if size != 1:
            if stride != expected:
                return False
            expected *= size
    return True


class CallBytes:
    """Bytes of a traced model's calls.  ``convert`` turns a torch size into the user's SymPy
    expression; ``activation_size`` is the bytes per element of the model's activations.

    Element sizes are numbers (``t.element_size()``) unless ``symbolic_sizes``: then the
    glossary's ``e_a``, ``e_w``, ``e_i`` wherever a tensor has its role's size in this model
    (activations; parameters and buffers, and views of them; int64 indices)."""

    def __init__(
        self, model: torch.nn.Module, convert: Any, activation_size: int, symbolic_sizes: bool
    ) -> None:
        self.convert = convert
        self.symbolic_sizes = symbolic_sizes
        self.activation_size = activation_size
        weights = [*model.parameters(), *model.buffers()]
        floating = [p for p in weights if p.is_floating_point()]
        self.weight_size = floating[0].element_size() if floating else activation_size
        self.weight_storages = {storage_id(p) for p in weights}

    def shape(self, t: torch.Tensor) -> tuple[sympy.Expr, ...]:
        return tuple(self.convert(d) for d in t.shape)

    def element_size(self, t: torch.Tensor) -> Any:
        """``t``'s bytes per element: its role's symbol where sizes are symbolic and ``t`` has
        that role's size (:meth:`role_sizes`), else the number."""
        size = t.element_size()
        if not self.symbolic_sizes:
            return size
        if storage_id(t) in self.weight_storages and t.is_floating_point():
            return self.role_sizes({ELEMENT_SIZES["weights"]: size})[ELEMENT_SIZES["weights"]]
        if t.is_floating_point():
            role = ELEMENT_SIZES["activations"]
        elif t.dtype == torch.int64:
            role = ELEMENT_SIZES["indices"]
        else:
            return size  # bool masks, other integers: a number
        return self.role_sizes({role: size})[role]

    def role_sizes(self, sizes: Mapping[str, Any]) -> dict[str, Any]:
        """Element sizes a call binds (``e_a``, ``e_w``, ``e_i`` -> bytes), each replaced by its
        symbol where sizes are symbolic and the value is its role's in this model (the
        activations', the weights', 8 for int64 indices); other names and values as given."""
        out = dict(sizes)
        if not self.symbolic_sizes:
            return out
        roles = {
            ELEMENT_SIZES["activations"]: self.activation_size,
            ELEMENT_SIZES["weights"]: self.weight_size,
            ELEMENT_SIZES["indices"]: 8,
        }
        symbols = glossary().symbols
        for name, size in roles.items():
            if out.get(name) == size:
                out[name] = symbols[name]
        return out

    def note_weight_views(self, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
        """A view of a weight (``weight.t()`` for F.linear) is a weight too: read at the
        weights' size, and not an activation when autograd saves it."""
        tensors = tensors_in((args, kwargs))
        if not any(storage_id(t) in self.weight_storages for t in tensors):
            return
        if moves_nothing(func, args, kwargs, out):
            self.weight_storages.update(storage_id(t) for t in tensors_in(out))

    def min(
        self, func: Any, args: tuple, kwargs: dict, inputs: list[torch.Tensor], out: Any
    ) -> sympy.Expr:
        """An operator call's ``bytes`` under ``min``, from the tensors it traced: each distinct
        input tensor read once, each output tensor written once (numel x element size).  An
        operator whose outputs are views of its inputs (``view``, ``slice``, ``select``,
        ``transpose``, ...: its schema marks every return as an alias it does not write) moves
        nothing: 0; an in-place operator (``add_``) reads and writes as any other.  A
        symbolic trace records some views a concrete one does not (``x[:, 0]`` as a ``slice``
        and a ``select``, or a ``select`` alone), and views take no time on any chip."""
        # a view's returns alias an input without writing it (by its schema, or by its storage:
        # _unsafe_view); an in-place op's (add_) write it: the op counter's test of a view
        if moves_nothing(func, args, kwargs, out):
            return sympy.Integer(0)
        outputs = tensors_in(out)
        distinct = list({id(t): t for t in inputs}.values())
        return sympy.Add(
            *(sympy.Mul(*self.shape(t)) * self.element_size(t) for t in [*distinct, *outputs])
        )

    def eager(self, func: Any, args: tuple, kwargs: dict, out: Any) -> sympy.Expr:
        """An operator call's ``bytes`` under ``eager``: what its kernel reads and writes
        (:func:`~layercost_sym.torchtools.opbytes.kernel_bytes`), sizes in the input symbols."""

        def nbytes(t: torch.Tensor) -> Any:
            return tensor_bytes(t, self.shape(t), self.element_size(t))

        read, written = kernel_bytes(func, args, kwargs, out, nbytes, key=self.tensor_key)
        return sympy.sympify(read + written)

    def tensor_key(self, t: torch.Tensor) -> tuple:
        """What makes two arguments one tensor to a kernel (as the op counter's key: storage,
        dtype, offset, sizes, strides), sizes as SymPy expressions."""
        return (
            storage_id(t),
            t.dtype,
            sympy.sympify(self.convert(t.storage_offset())),
            self.shape(t),
            tuple(sympy.sympify(self.convert(s)) for s in t.stride()),
        )

    def alias_conditions(self, args: tuple, kwargs: dict, what: str) -> tuple[Condition, ...]:
        """Two arguments of a kernel that are one tensor to torch at some sizes only (``x`` and
        ``x[:1]`` when ``N`` is 1: the kernel reads it once there): the eager bytes, which
        count both, hold where they differ (analyse those sizes as numbers for theirs)."""
        tensors = tensors_in((args, kwargs))
        keys = list({self.tensor_key(t): None for t in tensors})
        out = []
        for i, a in enumerate(keys):
            for b in keys[i + 1 :]:
                if a[:2] != b[:2] or len(a[3]) != len(b[3]):
                    continue
                pairs = [(a[2], b[2]), *zip(a[3], b[3], strict=True)]
                pairs += zip(a[4], b[4], strict=True)
                differ = [sympy.Ne(x, y) for x, y in pairs if sympy.expand(x - y) != 0]
                if differ and not any(sympy.expand(x - y).is_number for x, y in pairs if x != y):
                    condition = sympy.Or(*differ)
                    out.append(
                        Condition(
                            condition,
                            str(condition),
                            "eager bytes: two arguments of this kernel are one tensor in torch "
                            "where this fails (read once there); analyse those sizes as numbers",
                            what,
                        )
                    )
        return tuple(out)

    def copy_conditions(
        self, name: str, inputs: list[torch.Tensor], where: str
    ) -> tuple[Condition, ...]:
        """A ``clone`` of a tensor that is not contiguous was traced at sizes >= 2 (as torch
        traces every symbolic size); where a whole dimension is a symbol, eager torch at a size
        of 1 may take a view instead (``reshape`` and ``contiguous`` ignore dimensions of size
        1: GPT-2's value heads at batch 1), so the copy's eager bytes hold for that symbol >= 2
        (analyse that size as a number for its exact bytes)."""
        if name != "clone" or not inputs:
            return ()

        def hint(size: Any) -> int:  # the trace's value of a size, no guard recorded
            return size if isinstance(size, int) else int(size.node.hint)

        t = inputs[0]
        shape = [sympy.sympify(e) for e in self.shape(t)]
        symbols = sorted(set().union(*(e.free_symbols for e in shape)), key=str)
        # the layout at the sizes the trace ran at (a made-up size may be outside the domain
        # of the size expressions: sqrt(H - 4) at H = 3)
        if _contiguous([hint(d) for d in t.shape], [hint(s) for s in t.stride()]):
            return ()
        return tuple(
            Condition(
                s >= 2,
                f"{s} >= 2",
                f"eager bytes: this copy may be a view in torch when {s} is 1; analyse {s} = 1 "
                "as a number",
                f"clone at {where or '(model)'}",
            )
            for s in symbols
            if s in shape  # a whole dimension of this size
        )
