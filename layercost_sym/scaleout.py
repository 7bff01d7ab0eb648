"""Sweeps beyond one machine: a grid evaluated lazily on dask arrays, chunk by chunk.

:func:`sweep_lazy` takes the arguments of :func:`layercost_sym.sweep` and returns a
:class:`dask.array.Array` instead of a numpy array.  Nothing is evaluated until it is computed,
and the full grid is never built: each swept axis is a one-dimensional dask array (a ``range``
stays a lazy ``dask.array.arange``), and :func:`dask.array.blockwise` hands every chunk of the
grid the slices of the axes that span it.  A chunk is evaluated by the in-memory code itself
(:func:`~layercost_sym.evaluate`, or :func:`~layercost_sym.sweep` with ``invalid="mask"``) on its
sub-grid, so it gets the same checks and the same arithmetic: ``int64`` where the bound on every
intermediate proves that it cannot overflow *in that chunk*, exact Python ints otherwise.  A grid
larger than memory streams through reductions (``max``, ``argmax``, a count under a budget), and
the same array computes on a ``dask.distributed`` cluster when a client is active.

The array's dtype is fixed before any chunk runs: ``int64`` when the same bound, at the largest
value of every axis, proves that no value of the grid can leave ``int64`` (each chunk's values
are then ``int64`` whichever arithmetic it ran), else ``object`` (exact Python ints).

Dask is imported only when :func:`sweep_lazy` is called (``pip install layercost_sym[scaleout]``).

>>> import layercost_sym as lc
>>> grid = lc.sweep_lazy("H*W*C", H=range(1, 5), W=[10, 20, 30], C=3, chunks=2)
>>> grid.shape, grid.chunks, grid.dtype
((4, 3), ((2, 2), (2, 1)), dtype('int64'))
>>> (grid.compute() == lc.sweep("H*W*C", H=range(1, 5), W=[10, 20, 30], C=3)).all()
np.True_
>>> # the largest is 4*30*3; at most 100: H*W*3 for (H, W) = (1..3, 10), (1, 20), (1, 30)
>>> int(grid.max().compute()), int((grid <= 100).sum().compute())
(360, 5)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sympy

from .codegen import compile_expression
from .domain import Condition, Domain
from .domain import domain as domain_of
from .errors import EvaluationError
from .evaluation import _INT64_SAFE, _gather, _parse_cached, evaluate, sweep

__all__ = ["sweep_lazy"]

# default chunk: 2**20 points, 8 MiB of int64; a chunk's evaluation holds a few dozen arrays of
# its size at once, so this keeps a worker's memory in the hundreds of MiB at most
CHUNK_BYTES = 8 * 2**20


def _axis_values(name: str, value: Any) -> tuple[Any, Any]:
    """``(axis, sample)``: the axis as a ``range`` or a 1-D numpy array, and a small array
    holding its smallest and largest values (every value for an array), to check eagerly."""
    import numpy as np

    if isinstance(value, range):
        if not value:
            raise EvaluationError(f"{name}: the range {value} is empty")
        ends = [value[0], value[-1]]
        if max(abs(e) for e in ends) < 2**63:
            return value, np.array(ends, dtype=np.int64)
        value = list(value)  # beyond int64: exact Python ints, as sweep takes them
    array = np.asarray(value)
    if array.ndim == 0:
        raise EvaluationError(f"{name} must be an int or a sequence of ints, got {value!r}")
    if array.ndim != 1:
        raise EvaluationError(f"{name}: an axis is one-dimensional, got shape {array.shape}")
    if not array.size:
        raise EvaluationError(f"{name}: the axis is empty")
    return array, array


def _chunk(
    *blocks: Any,
    expr: sympy.Basic,
    conditions: tuple[Condition, ...],
    names: tuple[str, ...],
    fixed: Mapping[str, int],
    invalid: str,
    out_dtype: Any,
) -> Any:
    """One chunk of the grid: the in-memory evaluation of the sub-grid its axis slices span."""
    import numpy as np

    domain = Domain(conditions)  # rebuilt here: a domain's cached hash is per process
    shape = tuple(len(b) for b in blocks)
    if invalid == "mask":
        out = sweep(
            expr, invalid="mask", domain=domain, **fixed, **dict(zip(names, blocks, strict=True))
        )
    else:
        # sparse: each axis a view of its slice, broadcast by the evaluation, never copied
        grids = np.meshgrid(*blocks, indexing="ij", sparse=True)
        out = np.asarray(
            evaluate(expr, {**fixed, **dict(zip(names, grids, strict=True))}, domain=domain)
        )
        if out.shape != shape:  # an axis the expression does not use
            out = np.broadcast_to(out, shape).copy()
    if out.dtype != out_dtype:
        if out_dtype.kind != "O":  # the grid's bound rules this out; refuse rather than wrap
            raise EvaluationError(f"a chunk's values do not fit {out_dtype}")
        out = out.astype(object)
    return out


def sweep_lazy(
    expr: sympy.Basic | str,
    /,
    *,
    chunks: Any = "auto",
    invalid: str = "raise",
    domain: Domain | None = None,
    **axes: Any,
):
    """:func:`layercost_sym.sweep` as a lazy :class:`dask.array.Array`, evaluated chunk by chunk.

    The axes are those of :func:`~layercost_sym.sweep`: a keyword with a sequence (``range``,
    list, 1-D array) spans an axis of the grid, in the order given; an int is held fixed.
    ``chunks`` is the chunk length along each axis, in dask's terms: an int for every axis, a
    tuple with one entry per swept axis, a dict from axis name to length (the others
    ``"auto"``), or ``"auto"`` (the default: chunks of about 2**20 points).

    Checked at once: every symbol of ``expr`` has a value, and every value of every axis is in
    range (a positive dimension, a flag 0 or 1).  Checked per chunk, when computed: the domain
    ``expr`` carries (and ``domain``).  ``invalid="raise"`` makes computing a chunk that holds a
    point outside it raise :class:`~layercost_sym.DomainError` naming a point of that chunk;
    ``invalid="mask"`` gives chunks that are :class:`numpy.ma.MaskedArray`, invalid points
    masked (holding 0), which dask's reductions skip (``da.ma.getmaskarray`` is the mask).

    >>> import layercost_sym as lc
    >>> macs = lc.rule("Conv2d").cost("macs")
    >>> fixed = dict(N=1, C_in=4, C_out=4, s=1, p=0, d=1, g=1, W=4)
    >>> grid = lc.sweep_lazy(macs, k=[1, 3, 5], H=[3, 4], chunks=1, **fixed)
    >>> grid[:2].compute().tolist()          # the chunks with k = 5 never run
    [[192, 256], [288, 576]]
    >>> grid.max().compute()
    Traceback (most recent call last):
    ...
    layercost_sym.errors.DomainError: Conv2d: constraint 'H_out >= 1 and W_out >= 1' fails
    (kernel size can't be greater than the padded input size) at H=..., k_h=5, k_w=5, ...
    >>> masked = lc.sweep_lazy(macs, k=[1, 3, 5], H=[3, 4], chunks=1, invalid="mask", **fixed)
    >>> masked.compute().tolist(), int(masked.max().compute())
    ([[192, 256], [288, 576], [None, None]], 576)
    """
    import numpy as np

    if invalid not in ("raise", "mask"):
        raise EvaluationError(f"invalid={invalid!r}: use 'raise' or 'mask'")
    if type(expr) is str:
        expr = _parse_cached(expr)
    elif not isinstance(expr, sympy.Basic):
        raise EvaluationError(f"cannot sweep an object of type {type(expr).__name__}")
    conditions = domain_of(expr) & (domain or Domain())
    fixed = {n: v for n, v in axes.items() if isinstance(v, int | np.integer)}
    swept = {n: _axis_values(n, v) for n, v in axes.items() if n not in fixed}
    if not swept:
        raise EvaluationError("nothing to sweep: give an axis as a sequence (one point: evaluate)")
    # eager checks, on each axis' extremes: every symbol given, every value in range; the same
    # extremes bound the whole grid's values, which decides the array's dtype
    compiled = compile_expression(expr)
    values, _ = _gather(compiled, {**fixed, **{n: sample for n, (_, sample) in swept.items()}})
    maxima = [int(v.max()) if isinstance(v, np.ndarray) else v for v in values]
    bound = compiled.bound(*maxima)
    dtype = np.dtype(np.int64 if bound is not None and bound < _INT64_SAFE else object)
    return _graph(expr, conditions, fixed, swept, chunks, invalid, dtype)


def _graph(expr, conditions, fixed, swept, chunks, invalid, dtype):
    """The blockwise graph: one 1-D dask array per axis, one task per chunk of the grid."""
    import dask.array as da
    import numpy as np
    from dask.array.core import normalize_chunks
    from dask.base import tokenize

    names = tuple(swept)
    shape = tuple(len(axis) for axis, _ in swept.values())
    if isinstance(chunks, Mapping):
        unknown = sorted(set(chunks) - set(names))
        if unknown:
            raise EvaluationError(f"chunks name {unknown}, which are not swept axes {list(names)}")
        chunks = tuple(chunks.get(n, "auto") for n in names)
    try:
        normal = normalize_chunks(chunks, shape, limit=CHUNK_BYTES, dtype=np.dtype(np.int64))
    except (ValueError, TypeError) as error:
        raise EvaluationError(f"chunks={chunks!r} for axes of lengths {shape}: {error}") from None
    pairs: list[Any] = []
    for index, (name, (axis, _)) in enumerate(swept.items()):
        if isinstance(axis, range):  # lazy: the axis itself is never held
            array = da.arange(axis.start, axis.stop, axis.step, chunks=(normal[index],))
        else:
            array = da.from_array(
                axis, chunks=(normal[index],), name=f"axis-{name}-{tokenize(axis)}"
            )
        pairs += [array, (index,)]
    meta = np.empty((0,) * len(names), dtype=dtype)
    if invalid == "mask":
        meta = np.ma.MaskedArray(meta, mask=np.zeros(meta.shape, dtype=bool))
    token = tokenize(
        sympy.srepr(expr),
        [sympy.srepr(c.condition) for c in conditions.conditions],
        sorted(fixed.items()),
        [a.name for a in pairs[::2]],
        invalid,
        str(dtype),
    )
    return da.blockwise(
        _chunk,
        tuple(range(len(names))),
        *pairs,
        name=f"sweep-{token}",
        dtype=dtype,
        meta=meta,
        concatenate=True,
        align_arrays=False,  # one axis per input: nothing to align (an outer product)
        expr=expr,
        conditions=conditions.conditions,
        names=names,
        fixed={n: int(v) for n, v in fixed.items()},
        invalid=invalid,
        out_dtype=dtype,
    )
