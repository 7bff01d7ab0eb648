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
from collections.abc import Callable
from typing import Any

import torch
from torch._decomp import decomposition_table
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from ..errors import UncountedOpError

__all__ = ["OP_TABLE", "ExactCounter", "op_kind", "register_op"]

_ELEMENTWISE = """
add sub rsub mul div neg reciprocal rsqrt sqrt exp exp2 expm1 log log1p log2 log10 erf erfc
erfinv tanh sigmoid sin cos tan asin acos atan atan2 sinh cosh asinh acosh atanh pow abs sign
sgn relu gt ge lt le eq ne where maximum minimum fmax fmin clamp_min clamp_max floor ceil round
trunc frac remainder fmod logical_not logical_and logical_or logical_xor square signbit
isnan isinf hypot copysign lerp
"""
_REDUCTION = "sum amax amin prod max min any all argmax argmin logsumexp_reduction"
_MOVEMENT = """
view _unsafe_view reshape expand expand_copy permute transpose t unsqueeze squeeze clone copy
_to_copy to detach alias slice select cat stack split split_with_sizes chunk unbind contiguous
as_strided empty empty_like empty_strided new_empty new_empty_strided zeros zeros_like new_zeros
ones ones_like new_ones full full_like new_full fill zero lift_fresh lift_fresh_copy
constant_pad_nd reflection_pad1d reflection_pad2d reflection_pad3d replication_pad1d
replication_pad2d replication_pad3d index index_select gather embedding flatten unflatten
collapse_view split_dim broadcast_in_dim convert_element_type _local_scalar_dense
scalar_tensor repeat narrow roll flip view_of resize _reshape_alias unsafe_view
select_scatter slice_scatter index_put masked_fill _unsafe_index set_ item
randn rand normal uniform randint randperm arange
"""

OP_TABLE: dict[str, str] = {
    **{name: "elementwise" for name in _ELEMENTWISE.split()},
    **{name: "reduction" for name in _REDUCTION.split()},
    **{name: "movement" for name in _MOVEMENT.split()},
    "mean": "mean",
    "var": "var",
    "convolution": "conv",
    **{name: "matmul" for name in ("mm", "addmm", "bmm", "baddbmm", "mv", "addmv", "dot")},
}
"""Operator name -> counting kind; the one table the ``exact`` counter uses (see module doc)."""


CountFn = Callable[[tuple, dict, Any], int]
_CUSTOM: dict[str, CountFn] = {}
_BEFORE: set[str] = set()  # custom ops counted from their arguments before they run
"""Operator name -> function(args, kwargs, output) -> count, for ops whose count needs more than
a kind (pooling windows, transposed convolution, ...).  Filled by the modules of
:mod:`layercost_sym.torchtools.ops`, one per layer family, through :func:`register_op`."""


def register_op(*names: str, kind: str | None = None, before: bool = False):
    """Register a counting rule for operator ``names`` (overload-packet names such as
    ``"max_pool2d_with_indices"``): either a ``kind`` of :data:`OP_TABLE` or, used as a
    decorator, a function ``(args, kwargs, output) -> int``.  A name registered twice is an error.
    ``before=True``: the function is called before the op runs, with ``output=None`` (an in-place
    op whose work depends on the values it overwrites).

    >>> register_op("mm", kind="movement")
    Traceback (most recent call last):
    ...
    ValueError: operator 'mm' is already counted by matmul
    """

    def check(name: str) -> None:
        if name in OP_TABLE or name in _CUSTOM:
            raise ValueError(
                f"operator {name!r} is already counted by "
                f"{OP_TABLE.get(name) or _CUSTOM[name].__module__}"
            )

    if kind is not None:
        if before:
            raise ValueError("before=True needs a counting function, not a kind")
        if kind not in set(OP_TABLE.values()):
            raise ValueError(f"unknown kind {kind!r}")
        for name in names:
            check(name)
            OP_TABLE[name] = kind
        return None

    def decorate(fn: CountFn) -> CountFn:
        for name in names:
            check(name)
            _CUSTOM[name] = fn
            if before:
                _BEFORE.add(name)
        return fn

    return decorate


def _op_name(func: Any) -> str:
    name = func._overloadpacket.__name__
    if (
        name not in OP_TABLE
        and name not in _CUSTOM
        and name.endswith("_")
        and not name.startswith("_")
    ):
        name = name[:-1]  # in-place form counts as its functional form
    return name


def op_kind(func: Any) -> str | None:
    """The counting kind of an operator: a kind of :data:`OP_TABLE`, ``"custom"``, or None."""
    name = _op_name(func)
    return "custom" if name in _CUSTOM else OP_TABLE.get(name)


def _numel(x: Any) -> int:
    return x.numel() if isinstance(x, torch.Tensor) else 1


def _first_tensor(out: Any) -> torch.Tensor:
    flat, _ = tree_flatten(out)
    tensors = [t for t in flat if isinstance(t, torch.Tensor)]
    return tensors[0]


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
        from .ops.conv import transposed_conv_exact

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
    >>> with ExactCounter() as counter:
    ...     _ = torch.ones(2, 3) * torch.ones(3) + 1
    >>> counter.total, dict(counter.by_op)
    (12, {'mul': 6, 'add': 6})
    """

    def __init__(self) -> None:
        super().__init__()
        self.total = 0
        self.by_op: Counter[str] = Counter()

    def _add(self, name: str, amount: int) -> None:
        if amount:
            self.total += amount
            self.by_op[name] += amount

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        kind = op_kind(func)
        name = _op_name(func)
        if kind is None:
            if func in decomposition_table:
                with self:  # count the primitives the decomposition runs
                    return decomposition_table[func](*args, **kwargs)
            raise UncountedOpError(
                f"no counting rule for operator {func} and no decomposition of it in "
                "torch._decomp.decomposition_table; add it to OP_TABLE"
            )
        if name in _BEFORE:  # counted from the arguments as they are before the op
            amount = int(_CUSTOM[name](args, kwargs, None))
            out = func(*args, **kwargs)
            self._add(name, amount)
            return out
        out = func(*args, **kwargs)
        if kind == "movement":
            return out
        if kind == "custom":
            self._add(name, int(_CUSTOM[name](args, kwargs, out)))
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


from . import ops as _ops  # noqa: E402  (last: the family modules use register_op)

del _ops
