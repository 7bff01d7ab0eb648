"""``evaluate`` and ``sweep`` from many threads at once give what one thread gives.

Other tools call :func:`layercost_sym.evaluate` from thread pools.  The generated code must be
re-entrant: nothing a call needs may live in state another call can change meanwhile (the array
path records the largest intermediate magnitude to choose between ``int64`` and exact Python
ints; a recorder shared between calls would let a call with huge sizes see the small maximum of
another and overflow).  Each job is run single-threaded first, then all jobs by 8 threads at once,
several rounds, with the interpreter switching threads as often as it can.
"""

from __future__ import annotations

import random
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import layercost_sym as lc

THREADS = 8
ROUNDS = 50  # a few seconds; with one shared recorder (the race this guards) 5 runs of 5 failed

# Conv2d's sizes; the channel counts differ per job so that results differ per job
CONV = dict(N=2, C_in=3, C_out=5, k=3, s=1, p=1, d=1, g=1, b=1)


def _jobs() -> list[tuple[str, object, dict]]:
    """(kind, expression, values): scalars, small arrays (int64) and huge arrays (exact ints)."""
    conv = lc.rule("Conv2d")
    linear = lc.rule("Linear")
    jobs: list[tuple[str, object, dict]] = []
    for i in range(1, 13):
        jobs.append(("scalar", conv.flops, dict(CONV, C_out=i, H=8 + i, W=9)))
        jobs.append(("scalar", linear.cost("macs"), dict(N=i, C_in=7, C_out=3, b=1)))
        small = np.arange(4 + i, 20 + i)
        # 2**40 squared is past int64: these must take the exact (object) path
        huge = np.array([2**40 + i, 2**41 + i])
        jobs.append(("array", conv.flops, dict(CONV, C_out=i, H=small, W=small)))
        jobs.append(("array", conv.flops, dict(CONV, C_out=i, C_in=2**40, H=huge, W=huge)))
        jobs.append(("sweep", conv.cost("macs"), dict(CONV, C_out=i, H=range(1, 9), W=[4, 2**33])))
    return jobs


def _run(job: tuple[str, object, dict]):
    kind, expr, values = job
    if kind == "sweep":
        return lc.sweep(expr, invalid="mask", **values).tolist()
    result = lc.evaluate(expr, values)
    return result.tolist() if isinstance(result, np.ndarray) else result


@pytest.fixture
def busy_switching():
    """Switch threads every microsecond, so that interleavings a race needs happen."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def test_jobs_include_exact_results_beyond_int64():
    results = [_run(job) for job in _jobs()]
    beyond = [
        v for r in results if isinstance(r, list) for v in np.ravel(np.array(r, dtype=object))
    ]
    assert any(v is not None and v > 2**63 for v in beyond)


def test_eight_threads_agree_with_one(busy_switching):
    jobs = _jobs()
    expected = [_run(job) for job in jobs]
    order = list(range(len(jobs)))
    rng = random.Random(0)
    with ThreadPoolExecutor(THREADS) as pool:
        for _ in range(ROUNDS):
            rng.shuffle(order)
            got = list(pool.map(lambda i: (i, _run(jobs[i])), order))
            wrong = [(jobs[i][0], i) for i, result in got if result != expected[i]]
            assert not wrong, f"{len(wrong)} of {len(jobs)} differ from one thread: {wrong[:5]}"
