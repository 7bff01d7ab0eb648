"""sweep_lazy: sweeps on dask arrays equal the in-memory sweep, check the same domain, fall back
to exact ints the same way, and stream a 1e8-point grid through a LocalCluster in bounded memory.

The small grids run on dask's synchronous scheduler (one process, no threads); the large one on
a ``LocalCluster`` of two single-threaded worker processes that the test starts and stops.
"""

import subprocess
import sys

import dask
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import layercost_sym as lc
from layercost_sym.errors import DomainError, EvaluationError, MissingSymbolError

MACS = lc.rule("Conv2d").cost("macs")
CONV_FIXED = dict(N=2, C_in=4, s=1, p=0, d=1, g=2)


@pytest.fixture(autouse=True)
def _synchronous():
    with dask.config.set(scheduler="synchronous"):
        yield


def _grid(chunks, invalid="raise"):
    return lc.sweep_lazy(
        MACS,
        k=[1, 2, 3, 5],
        H=range(2, 9),
        W=[4, 7, 9],
        C_out=[2, 6],
        chunks=chunks,
        invalid=invalid,
        **CONV_FIXED,
    )


# -- equal to the in-memory sweep --------------------------------------------------------------


@settings(max_examples=6)  # each draws a new chunking of the same grid: a few suffice
@given(
    chunks=st.one_of(
        st.integers(2, 8),
        st.tuples(*(st.integers(1, n) for n in (4, 7, 3, 2))),
        st.just("auto"),
    )
)
def test_masked_grid_equals_the_in_memory_sweep(chunks):
    lazy = _grid(chunks, invalid="mask")
    eager = lc.sweep(
        MACS,
        k=[1, 2, 3, 5],
        H=range(2, 9),
        W=[4, 7, 9],
        C_out=[2, 6],
        invalid="mask",
        **CONV_FIXED,
    )
    budget = int(np.ma.median(eager))
    # one pass over the chunks for the grid and its reductions, which skip the masked points
    got, top, cheap, valid = dask.compute(
        lazy, lazy.max(), (lazy <= budget).sum(), (~dask.array.ma.getmaskarray(lazy)).sum()
    )
    assert isinstance(got, np.ma.MaskedArray) and got.dtype == eager.dtype == np.int64
    assert eager.mask.any() and not eager.mask.all()  # the grid does cross the domain's edge
    assert (got.mask == eager.mask).all()
    assert (got.data == eager.data).all()
    assert top == eager.max() and cheap == (eager <= budget).sum() and valid == eager.count()


def test_valid_grid_equals_the_in_memory_sweep_at_every_point():
    axes = dict(k=[1, 3], H=range(3, 40, 3), W=[5, 8, 13], C_out=range(2, 13, 2), N=[1, 7])
    fixed = dict(C_in=4, s=2, p=1, d=1, g=2, b=1)
    lazy = lc.sweep_lazy(lc.rule("Conv2d").flops, chunks=(1, 5, 2, 4, 1), **axes, **fixed)
    eager = lc.sweep(lc.rule("Conv2d").flops, **axes, **fixed)
    assert lazy.shape == eager.shape and lazy.dtype == eager.dtype == np.int64
    assert (lazy.compute() == eager).all()
    # one point by hand: k=3, H=6, W=8, C_out=4, N=7: H_out = (6+2-3)//2+1 = 3,
    # W_out = (8+2-3)//2+1 = 4; per output (C_in/g)*k*k = 18 multiplies, 17 adds, 1 bias add
    assert lazy[1, 1, 1, 1, 1].compute() == 7 * 4 * 3 * 4 * 36
    flat = int(lazy.argmax().compute())
    assert flat == int(np.argmax(eager)) and lazy.min().compute() == eager.min()


def test_an_axis_the_expression_does_not_use_still_spans_the_grid():
    lazy = lc.sweep_lazy("H*W", H=[1, 2, 3], W=4, unused=range(1, 6), chunks=2)
    assert lazy.shape == (3, 5)
    assert (lazy.compute() == lc.sweep("H*W", H=[1, 2, 3], W=4, unused=range(1, 6))).all()


# -- the domain, lazily --------------------------------------------------------------------------


def test_raise_is_lazy_and_names_an_invalid_point():
    grid = _grid(chunks=(1, 7, 3, 2))  # one chunk per kernel size
    # k = 3 does not fit H = 2, nor k = 5 H = 2..4 (H_out = H - k + 1 < 1); k = 1, 2 fit every
    # H and W: those chunks compute, and building the array checked nothing yet
    assert (
        grid[:2].compute()
        == lc.sweep(MACS, k=[1, 2], H=range(2, 9), W=[4, 7, 9], C_out=[2, 6], **CONV_FIXED)
    ).all()
    with pytest.raises(DomainError, match=r"H_out >= 1 and W_out >= 1.* k_h=[35], k_w=[35]") as e:
        grid.max().compute()
    # the point it names is outside the domain for the in-memory path too
    named = dict(part.split("=") for part in str(e.value).split(" at ")[1].split(", "))
    point = {n: int(v) for n, v in named.items() if n not in ("H_out", "W_out")}
    assert int(named["H_out"]) < 1
    for c_out in (2, 6):
        with pytest.raises(DomainError):
            lc.evaluate(MACS, {**CONV_FIXED, "C_out": c_out, **point})


def test_a_domain_passed_along_is_checked_in_every_chunk():
    doubled = 2 * MACS  # a new expression: no domain of its own
    axes = dict(k=[1, 5], H=[4, 9], W=9, C_out=2, **CONV_FIXED)
    # unchecked, k = 5 and H = 4 give H_out = 0 and a cost of 0: the number the domain refuses
    assert int(lc.sweep_lazy(doubled, chunks=1, **axes).min().compute()) == 0
    with pytest.raises(DomainError):
        lc.sweep_lazy(doubled, chunks=1, domain=lc.domain(MACS), **axes).max().compute()


# -- int64 where proven, exact ints otherwise ------------------------------------------------------


def test_overflowing_chunks_fall_back_to_exact_ints():
    # N*C*H*W reaches 2**40 * 2**20 * (3 * 2**9) * 2**11 = 3 * 2**80: past int64, so the array
    # is of Python ints; the chunks with N = 1 (at most 3 * 2**40) run in int64, exact too
    n_axis, h_axis = [1, 2**40], [2**10, 3 * 2**9]
    lazy = lc.sweep_lazy("N*C*H*W", N=n_axis, C=2**20, H=h_axis, W=[2**11, 5], chunks=1)
    assert lazy.dtype == object
    got = lazy.compute()
    expected = [[[n * 2**20 * h * w for w in (2**11, 5)] for h in h_axis] for n in n_axis]
    assert got.tolist() == expected
    assert all(type(v) is int for v in got.flat)
    assert got.tolist() == lc.sweep("N*C*H*W", N=n_axis, C=2**20, H=h_axis, W=[2**11, 5]).tolist()
    # the largest at N = 2**40, H = 3 * 2**9, W = 2**11: flat index 1*4 + 1*2 + 0 = 6
    assert lazy.max().compute() == 3 * 2**80 and int(lazy.argmax().compute()) == 6


def test_an_intermediate_past_int64_is_exact_where_the_result_fits():
    # (N*C) // 3 with N*C up to 2**70: the product leaves int64, the quotient does not
    expr = "floor(N*C/3)"
    lazy = lc.sweep_lazy(expr, N=[5, 2**50], C=[7, 2**20], chunks=1)
    assert lazy.dtype == object  # the grid's bound cannot prove int64
    assert lazy.compute().tolist() == [[n * c // 3 for c in (7, 2**20)] for n in (5, 2**50)]
    assert (lazy.compute() == lc.sweep(expr, N=[5, 2**50], C=[7, 2**20])).all()


def test_a_range_axis_stays_lazy():
    # 10**12 points: only the chunks computed ever exist
    lazy = lc.sweep_lazy("H*W", H=range(1, 10**6 + 1), W=range(1, 10**6 + 1), chunks=1000)
    assert lazy.shape == (10**6, 10**6) and lazy.dtype == np.int64
    corner = lazy[-2:, -3:].compute()
    assert corner.tolist() == [
        [h * w for w in range(10**6 - 2, 10**6 + 1)] for h in (10**6 - 1, 10**6)
    ]


# -- bad input -------------------------------------------------------------------------------


def test_bad_input_is_refused_when_the_array_is_built():
    with pytest.raises(MissingSymbolError, match="'W'"):
        lc.sweep_lazy("H*W", H=[1, 2])
    with pytest.raises(EvaluationError, match="H must be >= 1; got 0"):
        lc.sweep_lazy("H*W", H=[0, 1], W=2)
    with pytest.raises(EvaluationError, match="H must be >= 1; got -3"):
        lc.sweep_lazy("H*W", H=range(-3, 4), W=2)
    with pytest.raises(EvaluationError, match="b is a flag"):
        lc.sweep_lazy(lc.rule("Linear").params, C_in=[1, 2], C_out=2, b=2)
    with pytest.raises(EvaluationError, match="the axis is empty"):
        lc.sweep_lazy("H*W", H=[], W=2)
    with pytest.raises(EvaluationError, match="one-dimensional"):
        lc.sweep_lazy("H*W", H=[[1, 2]], W=2)
    with pytest.raises(EvaluationError, match="nothing to sweep"):
        lc.sweep_lazy("H*W", H=1, W=2)
    with pytest.raises(EvaluationError, match="invalid='drop'"):
        lc.sweep_lazy("H*W", H=[1], W=2, invalid="drop")
    with pytest.raises(EvaluationError, match="not swept axes"):
        lc.sweep_lazy("H*W", H=[1], W=2, chunks={"K": 1})
    with pytest.raises(EvaluationError, match="chunks="):
        lc.sweep_lazy("H*W", H=[1, 2], W=[2, 3], chunks=(1, 1, 1))
    with pytest.raises(EvaluationError, match="must be an int or a sequence"):
        lc.sweep_lazy("H*W", H=[1, 2], W=2.0)


def test_import_does_not_load_dask():
    code = "import sys, layercost_sym; print(sorted({'dask', 'distributed'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- a 1e8-point scaling-law grid on a LocalCluster ------------------------------------------------


def _memory() -> dict[str, int]:
    """This process' resident memory now and its peak since the last reset, in bytes (Linux)."""
    found = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0]) * 1024
    return found


def _reset_peak() -> dict[str, int]:
    """Reset the kernel's peak resident size of this process to its current size (Linux:
    writing 5 to clear_refs), and return the memory."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    return _memory()


def local_cluster():
    """Two worker processes of one thread each on this machine (README: on a cluster)."""
    from dask.distributed import LocalCluster

    return LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        memory_limit="2GiB",
        # no dashboard; its HTTP server on a free loopback port (8787 may be taken)
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
    )


def test_a_1e8_point_grid_streams_through_a_local_cluster():
    import cloudpickle
    from dask.distributed import Client

    # GPT's forward MACs over a scaling-law grid: batch x width x depth x context, 100 each.
    # The expression factors as N * X(d_model, n_layer, n_ctx) with X > 0 (every term holds N).
    macs = lc.architecture("gpt").total.cost("macs")
    s = {symbol.name: symbol for symbol in macs.free_symbols}
    gpt = macs.xreplace({s["d_ff"]: 4 * s["d_model"], s["vocab"]: 50257})
    axes = dict(
        N=range(1, 101),
        d_model=range(64, 6401, 64),
        n_layer=range(1, 101),
        n_ctx=range(128, 12801, 128),
    )
    # chunks of 100*10*10*100 = 1e6 points (8 MB of int64): 100 chunks
    chunks = (100, 10, 10, 100)
    lazy = lc.sweep_lazy(gpt, chunks=chunks, **axes)
    assert lazy.size == 10**8 and lazy.dtype == np.int64 and lazy.npartitions == 100
    budget = 10**15
    window = np.s_[37:41, 50:53, 90:100, :7]  # a sub-grid across chunk boundaries

    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)  # the workers cannot import this test file
    try:
        with (
            local_cluster() as cluster,
            Client(cluster) as client,
        ):
            # warm the workers up (imports, compiled code), then measure from there
            lc.sweep_lazy(gpt, chunks=chunks, **{**axes, "N": range(1, 3)}).max().compute()
            before = client.run(_reset_peak)
            top, where, cheap = dask.compute(lazy.max(), lazy.argmax(), (lazy <= budget).sum())
            after = client.run(_memory)
            sample = lazy[window].compute()
    finally:
        cloudpickle.unregister_pickle_by_value(module)

    # in-memory, on one process: a sub-grid, the extremes and the count under the budget
    sub = {n: list(a)[s] for (n, a), s in zip(axes.items(), window, strict=True)}
    assert (sample == lc.sweep(gpt, **sub)).all()
    # every coefficient of the polynomial is positive: it grows along every axis, so the
    # largest point is the last corner, at flat index 1e8 - 1
    assert top == lc.evaluate(gpt, {n: a[-1] for n, a in axes.items()})
    assert where == 10**8 - 1
    # macs = N * X with N = 1..100: at each (d_model, n_layer, n_ctx), min(100, budget // X)
    # values of N are at most the budget; X is the 1e6-point sweep at N = 1
    per_n = lc.sweep(gpt, **{**axes, "N": 1})
    assert cheap == np.minimum(100, budget // per_n).sum() and 0 < cheap < 10**8

    # Memory: the full grid as int64 is 1e8 * 8 B = 800 MB, and the in-memory path holds a
    # few such arrays at once.  A worker evaluates one 1e6-point chunk at a time: 8 MB per
    # int64 array; the fused code holds a few dozen at most (sums, products, the quotient
    # check), about 200 MB.  Bound each worker's growth at 256 MiB, under a third of the grid.
    for address, start in before.items():
        grown = after[address]["VmHWM"] - start["VmRSS"]
        assert grown < 256 * 2**20, f"worker {address} grew by {grown / 2**20:.0f} MiB"
