"""The table of the ``exact`` counter: how each ATen operator is counted (its *kind*), and the
registry of counting functions for operators that need more than a kind.

:data:`OP_TABLE` maps an operator's overload-packet name to a kind (see
:mod:`layercost_sym.torchtools.opcount`, which counts by it); :func:`register_op` adds kinds
and functions, one module of :mod:`layercost_sym.torchtools.ops` per layer family, each
importing only this module (so registration does not depend on import order).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["CUSTOM", "OP_TABLE", "RUN_FIRST", "CountFn", "op_kind", "op_name", "register_op"]

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
CUSTOM: dict[str, CountFn] = {}
RUN_FIRST: set[str] = set()  # custom ops counted from their arguments before they run
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
        if name in OP_TABLE or name in CUSTOM:
            raise ValueError(
                f"operator {name!r} is already counted by "
                f"{OP_TABLE.get(name) or CUSTOM[name].__module__}"
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
            CUSTOM[name] = fn
            if before:
                RUN_FIRST.add(name)
        return fn

    return decorate


def op_name(func: Any) -> str:
    name = func._overloadpacket.__name__
    if (
        name not in OP_TABLE
        and name not in CUSTOM
        and name.endswith("_")
        and not name.startswith("_")
    ):
        name = name[:-1]  # in-place form counts as its functional form
    return name


def op_kind(func: Any) -> str | None:
    """The counting kind of an operator: a kind of :data:`OP_TABLE`, ``"custom"``, or None."""
    name = op_name(func)
    return "custom" if name in CUSTOM else OP_TABLE.get(name)
