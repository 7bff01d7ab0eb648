"""The ``exact`` convention's empirical counter: every ATen op torch runs, counted by one table.

:class:`ExactCounter` is a ``TorchDispatchMode``.  For each operator torch dispatches it looks the
operator up in :data:`OP_TABLE` (by its overload-packet name, in-place ``_`` suffix removed) and
counts by the entry's kind:

==============  ===========================================================================
kind            count
==============  ===========================================================================
``matmul``      ``mm``/``addmm``/``bmm``/``baddbmm``/``mv``/``addmv``/``dot``: an
                ``(m, k) x (k, n)`` product is ``m*n*(2k-1)`` (k multiplies, k-1 adds per
                output), plus one add per output for the ``add*`` forms
``conv``        ``convolution``: ``out_numel * (2 * C_in/g * prod(kernel) - 1)``, plus
                ``out_numel`` bias adds when a bias is given; transposed: the scatter from
                the input (``ops/conv.py``: products kept, minus outputs reached, plus bias)
``elementwise`` one per output element (add, mul, div, rsqrt, exp, erf, gt, where, ...)
``reduction``   an ``n``-term reduction is ``n - 1`` per output (sum, amax, ...)
``mean``        ``n - 1`` adds and 1 divide per output: ``n`` per output
``var``         two-pass variance per output: mean (``n``), ``n`` subtracts, ``n`` squares,
                ``n - 1`` adds, 1 divide: ``4n`` per output
``movement``    0: views, copies, casts, concatenation, padding, allocation, random draws
==============  ===========================================================================

Operators whose count needs more than a kind (pooling windows, ...) are counted by functions
registered with :func:`register_op` in :mod:`layercost_sym.torchtools.ops`, one module per
layer family.  A function registered with ``before=True`` is called before the op runs (output
``None``): for in-place ops whose work depends on the values they overwrite (``max_norm``'s
``embedding_renorm_`` rescales the rows whose norm exceeds the bound; afterwards a rescaled row
and one already at the bound look alike).  An op not in the table is broken into primitives by
torch's own decomposition table (``torch._decomp.decomposition_table``), re-entering the mode so
the primitives are counted; an op with neither raises
:class:`~layercost_sym.errors.UncountedOpError`: never a silent 0.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import torch
from torch._decomp import decomposition_table
from torch.utils._python_dispatch import TorchDispatchMode

from ..errors import UncountedOpError
from . import ops  # noqa: F401  (the family modules register their counting rules)
from .opbytes import kernel_bytes, tensors_in
from .ops.conv import transposed_conv_exact
from .optable import CUSTOM, OP_TABLE, RUN_FIRST, op_kind, op_name, register_op

__all__ = ["OP_TABLE", "ExactCounter", "op_kind", "op_name", "register_op"]  # the table: .optable


def _numel(x: Any) -> int:
    return x.numel() if isinstance(x, torch.Tensor) else 1


def _first_tensor(out: Any) -> torch.Tensor:
    return tensors_in(out)[0]


def _matmul_cost(name: str, args: tuple) -> int:
    if name in ("mm", "bmm", "addmm", "baddbmm"):
        a, b = (args[1], args[2]) if name.startswith("add") or name == "baddbmm" else args[:2]
        *batch, m, k = a.shape
        n = b.shape[-1]
        outputs = math.prod(batch) * m * n
    elif name in ("mv", "addmv"):
        a = args[1] if name == "addmv" else args[0]
        m, k = a.shape
        outputs = m
    else:  # dot
        k, outputs = args[0].shape[0], 1
    cost = outputs * (2 * k - 1)
    if name.startswith("add") or name == "baddbmm":
        cost += outputs  # the added tensor (bias), alpha = beta = 1 as nn layers call it
    return cost


def _conv_cost(args: tuple, out: torch.Tensor) -> int:
    x, weight, bias = args[0], args[1], args[2]
    transposed = bool(args[6]) if len(args) > 6 else False
    if transposed:  # a scatter from the input: its own derivation (ops/conv.py)
        return transposed_conv_exact(
            x.shape,
            weight.shape,
            bias is not None,
            args[3],
            args[4],
            args[5],
            args[7],
            args[8],
            out.shape,
        )
    per_output = (
        2 * weight.shape[1] * math.prod(weight.shape[2:]) - 1
    )  # weight: C_out, C_in/g, k...
    cost = out.numel() * per_output
    if bias is not None:
        cost += out.numel()
    return cost


class ExactCounter(TorchDispatchMode):
    """Counts the ``exact`` convention's operations of everything run inside it.

    >>> import torch
    >>> x, y = torch.ones(2, 3), torch.ones(3)
    >>> with ExactCounter() as counter:
    ...     _ = x * y + 1
    >>> counter.total, dict(counter.by_op)
    (12, {'mul': 6, 'add': 6})

    It also adds up the bytes each kernel that runs moves (``bytes`` under ``eager``,
    :func:`~layercost_sym.torchtools.opbytes.kernel_bytes`): counted at the operator torch
    dispatches, never at the primitives of a decomposition the counter runs to count FLOPs.

    >>> counter.bytes, dict(counter.bytes_by_op)  # mul: 24 + 12 read, 24 written; add: 24 + 24
    (108, {'mul': 60, 'add': 48})
    """

    def __init__(self) -> None:
        super().__init__()
        self.total = 0
        self.by_op: Counter[str] = Counter()
        self.bytes = 0
        self.bytes_by_op: Counter[str] = Counter()
        self._depth = 0  # > 0 inside a decomposition: its primitives move no bytes of their own

    def _add(self, name: str, amount: int) -> None:
        if amount:
            self.total += amount
            self.by_op[name] += amount

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = self._dispatch(func, args, kwargs)
        if self._depth == 0:
            read, written = kernel_bytes(func, args, kwargs, out)
            if read + written:
                self.bytes += read + written
                self.bytes_by_op[op_name(func)] += read + written
        return out

    def _dispatch(self, func, args, kwargs):
        kind = op_kind(func)
        name = op_name(func)
        if kind is None:
            if func in decomposition_table:
                self._depth += 1
                try:
                    with self:  # count the primitives the decomposition runs
                        return decomposition_table[func](*args, **kwargs)
                finally:
                    self._depth -= 1
            raise UncountedOpError(
                f"no counting rule for operator {func} and no decomposition of it in "
                "torch._decomp.decomposition_table; add it to OP_TABLE"
            )
        if name in RUN_FIRST:  # counted from the arguments as they are before the op
            amount = int(CUSTOM[name](args, kwargs, None))
            out = func(*args, **kwargs)
            self._add(name, amount)
            return out
        out = func(*args, **kwargs)
        if kind == "movement":
            return out
        if kind == "custom":
            self._add(name, int(CUSTOM[name](args, kwargs, out)))
            return out
        if kind == "matmul":
            self._add(name, _matmul_cost(name, args))
        elif kind == "conv":
            self._add(name, _conv_cost(args, out))
        elif kind == "elementwise":
            self._add(name, _numel(_first_tensor(out)))
        else:  # reductions: n terms into each output
            inputs = _numel(args[0])
            outputs = _numel(_first_tensor(out))
            if kind == "reduction":
                self._add(name, inputs - outputs)
            elif kind == "mean":
                self._add(name, inputs)
            elif kind == "var":
                self._add(name, 4 * inputs)
        return out
