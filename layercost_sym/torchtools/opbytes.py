"""The bytes one ATen kernel moves, for ``bytes`` under ``eager`` (:class:`ExactCounter`).

A kernel reads each distinct tensor among its arguments once and writes each tensor it
returns that is not a view of an argument, plus each argument its schema says it mutates:

- a tensor's bytes are ``element_size`` times the elements it addresses: a broadcast
  (stride-0) dimension addresses one element, so an ``expand``-ed bias is read at its own size;
- "distinct" is by storage, offset, sizes, strides and dtype: ``mul(x, x)`` reads ``x`` once;
- metadata-only kernels move nothing: views (every returned tensor shares an argument's
  storage and nothing is mutated), in-place views (``t_``, ``unsqueeze_``, ...) and
  allocations whose contents are undefined (``empty``, ``empty_like``, ...);
- an argument the kernel only overwrites is written, not read: ``out=`` arguments and the
  destination of ``copy_``, ``fill_``, ``zero_`` and the in-place random draws; any other
  mutated argument (``add_``, ``relu_``) is read and written;
- copies (``clone``, ``_to_copy``, ``cat``, padding) read and write like any kernel.

>>> import torch
>>> x = torch.ones(2, 3)
>>> kernel_bytes(torch.ops.aten.mul.Tensor, (x, x), {}, x * x)
(24, 24)
>>> kernel_bytes(torch.ops.aten.t.default, (x,), {}, x.t())
(0, 0)
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch
from torch.utils._pytree import tree_flatten

__all__ = ["kernel_bytes", "moves_nothing", "storage_id", "tensor_bytes", "tensors_in"]

# kernels whose output holds no defined values: nothing is written
ALLOCATIONS = frozenset(
    {"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "empty_permuted"}
)
# kernels that always return a new tensor where torch's decomposition of them (which the counter
# runs to count their FLOPs) may return a view: channel_shuffle with one group or one channel
# per group.  Other kernels without a counting rule return what their decomposition returns,
# views included (unsafe_chunk, unsafe_split: their schemas mark no alias)
COPIES = frozenset({"channel_shuffle", "native_channel_shuffle"})
# in-place kernels that overwrite their first argument without reading it
OVERWRITES = frozenset(
    {
        "copy_",
        "fill_",
        "zero_",
        "normal_",
        "uniform_",
        "bernoulli_",
        "random_",
        "exponential_",
        "geometric_",
        "cauchy_",
        "log_normal_",
    }
)


def tensor_bytes(
    t: torch.Tensor, sizes: Sequence[Any] | None = None, element_size: Any = None
) -> Any:
    """Bytes of the elements ``t`` addresses (a stride-0 dimension addresses one element);
    ``sizes`` stand for ``t.shape`` and ``element_size`` for ``t.element_size()`` where given
    (the model analysis: SymPy expressions).

    >>> import torch
    >>> tensor_bytes(torch.zeros(4, dtype=torch.float16)), tensor_bytes(torch.zeros(3).expand(5, 3))
    (8, 12)
    """
    elements = 1
    for size, stride in zip(t.shape if sizes is None else sizes, t.stride(), strict=True):
        if not (isinstance(stride, int) and stride == 0) or size == 0:  # symbolic: not 0
            elements *= size
    return elements * (t.element_size() if element_size is None else element_size)


def _key(t: torch.Tensor) -> tuple:
    return (storage_id(t), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)


def tensors_in(value: Any) -> list[torch.Tensor]:
    """The tensors of ``value`` in order: nested tuples, lists, dicts (any pytree), the rest
    (numbers, None) skipped.

    >>> tensors_in(((torch.ones(1), 2), {"x": torch.zeros(2)}, None))
    [tensor([1.]), tensor([0., 0.])]
    """
    return [t for t in tree_flatten(value)[0] if isinstance(t, torch.Tensor)]


def storage_id(t: torch.Tensor) -> int:
    """The identity of the storage ``t`` views."""
    return t.untyped_storage()._cdata


def kernel_bytes(
    func: Any,
    args: tuple,
    kwargs: dict,
    out: Any,
    nbytes: Callable[[torch.Tensor], Any] = tensor_bytes,
    key: Callable[[torch.Tensor], Hashable] | None = None,
) -> tuple[Any, Any]:
    """``(read, written)`` bytes of one call of the ATen overload ``func`` (see module doc).

    ``nbytes`` gives a tensor's bytes and ``key`` what makes two arguments the same tensor
    (by default: storage, offset, sizes, strides and dtype); the model analysis passes
    symbolic ones (sizes as SymPy expressions, tensors told apart by identity).
    """
    key = key or _key
    name = func.__name__.split(".")[0]  # "add_.Tensor" -> "add_"
    if name.removesuffix("_") in ALLOCATIONS or torch.Tag.inplace_view in func.tags:
        return 0, 0
    schema = func._schema
    aliases = [r.alias_info for r in schema.returns]
    if aliases and all(a is not None and not a.is_write for a in aliases):
        return 0, 0  # a view by its schema (its storage may not show it: a fake of a real)
    written: dict[Hashable, torch.Tensor] = {}
    not_read: set[Hashable] = set()
    bound = dict(zip((a.name for a in schema.arguments), args, strict=False)) | kwargs
    for arg in schema.arguments:
        value = bound.get(arg.name)
        if arg.alias_info is None or not arg.alias_info.is_write:
            continue
        for t in tensors_in(value):
            written[key(t)] = t
            if arg.is_out or (name in OVERWRITES and arg is schema.arguments[0]):
                not_read.add(key(t))
    inputs = tensors_in((args, kwargs))
    read = {key(t): t for t in inputs if key(t) not in not_read}
    storages = {storage_id(t) for t in inputs}
    returned = tensors_in(out)
    fresh = {key(t): t for t in returned if storage_id(t) not in storages}
    if name in COPIES:  # its decomposition (run to count FLOPs) may have returned a view
        fresh = {key(t): t for t in returned}
    if returned and not fresh and not written:  # a view: it moves nothing
        return 0, 0
    writes: dict[Hashable, torch.Tensor] = {**fresh, **written}
    return (
        sum((nbytes(t) for t in read.values()), 0),
        sum((nbytes(t) for t in writes.values()), 0),
    )


def moves_nothing(func: Any, args: tuple, kwargs: dict, out: Any) -> bool:
    """Whether one call of ``func`` is a view (by its schema or by its storage, as
    ``_unsafe_view``), an in-place view or an allocation: :func:`kernel_bytes` is 0 for it
    whatever the sizes (tensors told apart by identity)."""
    return kernel_bytes(func, args, kwargs, out, lambda t: 1, key=id) == (0, 0)
