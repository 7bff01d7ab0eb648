"""Benchmark: layercost_sym's evaluation against baselines measured in the same process.

Each row times two things side by side and prints their ratio (medians over repeats); absolute
times on a shared machine are noise, ratios are what the targets speak of.

    python tests/benchmarks/bench_evaluate.py            # full run
    python tests/benchmarks/bench_evaluate.py --quick    # CI: small sizes, proves it still runs
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import sympy

import layercost_sym as lc

RULE = "Conv2d"


def configs(count: int, seed: int = 0) -> list[dict[str, int]]:
    """Distinct valid Conv2d configurations (so no cache of SymPy's flatters the baseline)."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        k, d, p, s = rng.randint(1, 7), rng.randint(1, 2), rng.randint(0, 3), rng.randint(1, 3)
        g = rng.choice([1, 2, 4])
        size = d * (k - 1) + 1 + rng.randint(0, 300)
        out.append(
            dict(
                N=rng.randint(1, 256),
                C_in=g * rng.randint(1, 64),
                C_out=g * rng.randint(1, 64),
                k_h=k,
                k_w=k,
                s_h=s,
                s_w=s,
                p_h=p,
                p_w=p,
                d_h=d,
                d_w=d,
                g=g,
                b=rng.randint(0, 1),
                H=size,
                W=size,
            )
        )
    return out


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def row(name: str, ours: float, baseline: float, target: str, ratio: float) -> None:
    print(
        f"| {name:<46} | {ours * 1e6:>12.2f} | {baseline * 1e6:>12.2f} | {ratio:>8.2f} | "
        f"{target:<8} |"
    )


def bench_scalar(n: int, repeats: int) -> None:
    expr = lc.rule(RULE).flops
    symbols = sorted(expr.free_symbols, key=str)
    names = [s.name for s in symbols]
    fn = sympy.lambdify(symbols, expr, modules="math")
    points = configs(n)
    for p in points:  # warm: compile once, and check agreement while at it
        assert lc.evaluate(expr, p) == int(expr.xreplace({s: p[s.name] for s in symbols}))

    def ours():
        for p in points:
            lc.evaluate(expr, p)

    def lambdified():
        for p in points:
            fn(*[p[k] for k in names])

    def xreplace():
        for p in points[: max(1, n // 10)]:
            expr.xreplace({s: p[s.name] for s in symbols})

    t_ours = median_time(ours, repeats) / n
    t_lambda = median_time(lambdified, repeats) / n
    t_xreplace = median_time(xreplace, repeats) / max(1, n // 10)
    row("scalar evaluate / lambdify-with-dict", t_ours, t_lambda, "<= 3", t_ours / t_lambda)
    row("xreplace / scalar evaluate", t_xreplace, t_ours, ">= 20", t_xreplace / t_ours)


def bench_vector(n: int, repeats: int) -> None:
    expr = lc.rule(RULE).flops
    symbols = sorted(expr.free_symbols, key=str)
    points = configs(min(n, 2000), seed=1)
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(points), n)
    arrays = {k: np.array([points[i][k] for i in picks], dtype=np.int64) for k in points[0]}
    fn = sympy.lambdify(symbols, expr, modules="numpy")
    ours = lc.evaluate(expr, arrays)
    assert ours.dtype == np.int64
    for i in range(0, n, max(1, n // 200)):  # equal to scalar evaluation
        assert ours[i] == lc.evaluate(expr, points[picks[i]])
    t_ours = median_time(lambda: lc.evaluate(expr, arrays), repeats)
    t_numpy = median_time(lambda: fn(*[arrays[s.name] for s in symbols]), repeats)
    row(
        f"vectorised evaluate / numpy lambdify ({n:.0e})", t_ours, t_numpy, "<= 2", t_ours / t_numpy
    )


def compiled_env(pycache: str, **extra: str) -> dict[str, str]:
    """The environment of the new processes: bytecode written to and read from ``pycache``.

    An installed package runs from bytecode; a checkout run with ``PYTHONDONTWRITEBYTECODE``
    (as some CI images set) compiles every module of the package on each start, while sympy
    and torch, installed, do not.  With one prefix for all, both sides of every row run from
    bytecode once a first, untimed run has written it."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPYCACHEPREFIX": pycache, **extra}


def bench_import(repeats: int, quick: bool = False) -> None:
    with tempfile.TemporaryDirectory() as pycache:
        # quick (CI): the environment as it is; the row only proves it still runs
        env = dict(os.environ) if quick else compiled_env(pycache)

        def run(code: str) -> float:
            command = [sys.executable, "-c", code]
            subprocess.run(command, check=True, env=env)  # writes the bytecode; not timed
            return median_time(lambda: subprocess.run(command, check=True, env=env), repeats)

        base = run("pass")
        t_lc = run("import layercost_sym") - base
        t_sympy = run("import sympy") - base
    row("import layercost_sym / import sympy", t_lc, t_sympy, "<= 1.3", t_lc / t_sympy)


# whole processes for the start-up rows (issue 12): ours against a baseline process
_RULE_CODE = "import layercost_sym as lc; lc.rule('Conv2d')"
_EVAL_ARGS = ["eval", "Conv2d", "N=2", "C_in=3", "C_out=4", "k=3", "H=8", "W=8"]
_MODEL_ARGS = ["model", "torchvision.models:resnet18", "--input", "N,3,H,W"]
_FLOPCOUNTER_CODE = """
import torch, torchvision
from torch.utils.flop_counter import FlopCounterMode
model = torchvision.models.resnet18(weights=None).eval()
with FlopCounterMode(display=False):
    model(torch.randn(1, 3, 224, 224))
"""


def process_times(commands: dict[str, list[str]], repeats: int, env: dict[str, str]) -> dict:
    """Median wall time of each command as a new process, the commands interleaved per repeat
    (so that a load change on the shared machine affects all alike)."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, command in commands.items():
            start = time.perf_counter()
            subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def bench_startup(quick: bool, repeats: int) -> None:
    """First use in a new process against a process that imports sympy (or torch), issue 12.

    The catalogue cache lives in a temporary directory: the first process fills it (the cold
    row), the warm rows find it filled."""
    python = [sys.executable]
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as pycache:
        if quick:  # CI: the environment as it is; the rows only prove they still run
            env = {**os.environ, "LAYERCOST_CACHE_DIR": cache}
        else:
            env = compiled_env(pycache, LAYERCOST_CACHE_DIR=cache)
            for code in ("import sympy", "import layercost_sym"):  # bytecode, then the cold row
                subprocess.run([*python, "-c", code], check=True, env=env)
        start = time.perf_counter()
        subprocess.run([*python, "-c", _RULE_CODE], check=True, env=env)  # fills the cache
        cold = [time.perf_counter() - start]
        commands = {
            "sympy": [*python, "-c", "import sympy"],
            "rule": [*python, "-c", _RULE_CODE],
            "eval": [*python, "-m", "layercost_sym", *_EVAL_ARGS],
        }
        t = process_times(commands, repeats, env)
        row(
            "first lc.rule('Conv2d') / import sympy (warm)",
            t["rule"],
            t["sympy"],
            "<= 1.5",
            t["rule"] / t["sympy"],
        )
        row(
            "layercost eval Conv2d / import sympy (warm)",
            t["eval"],
            t["sympy"],
            "<= 2",
            t["eval"] / t["sympy"],
        )
        if not quick:  # the cold load again, each time into an empty cache directory
            for _ in range(2):
                with tempfile.TemporaryDirectory() as empty:
                    start = time.perf_counter()
                    command = [*python, "-c", _RULE_CODE]
                    subprocess.run(command, check=True, env={**env, "LAYERCOST_CACHE_DIR": empty})
                    cold.append(time.perf_counter() - start)
        t_cold = statistics.median(cold)
        row(
            "first lc.rule('Conv2d') / import sympy (cold)",
            t_cold,
            t["sympy"],
            "info",
            t_cold / t["sympy"],
        )
        if quick:
            return  # torch's import alone takes seconds: not in CI's quick run
        commands = {
            "flopcounter": [*python, "-c", _FLOPCOUNTER_CODE],
            "model": [*python, "-m", "layercost_sym", *_MODEL_ARGS],
        }
        for command in commands.values():  # torch's and torchvision's bytecode; not timed
            subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
        t = process_times(commands, max(5, repeats // 2), env)  # ~25 s a pair when busy
        row(
            "layercost model resnet18 / FlopCounterMode script (warm)",
            t["model"],
            t["flopcounter"],
            "<= 1.5",
            t["model"] / t["flopcounter"],
        )


def bench_model(quick: bool, repeats: int) -> None:
    """FlopCounterMode counting a model again vs its closed form evaluated at a new shape."""
    import torch
    import torchvision
    from torch.utils.flop_counter import FlopCounterMode

    name, size = ("resnet18", 64) if quick else ("resnet50", 224)
    model = getattr(torchvision.models, name)(weights=None).eval()
    closed_form = lc.analyze(model, ("N", 3, "H", "W")).cost("torch")
    shape = {"N": 1, "H": size + 1, "W": size + 3}  # a shape the analysis never saw
    x = torch.randn(1, 3, size + 1, size + 3)

    def count_again():
        with FlopCounterMode(display=False) as counter:
            model(x)
        return counter.get_total_flops()

    assert count_again() == lc.evaluate(closed_form, shape)
    n = 2000
    t_eval = median_time(lambda: [lc.evaluate(closed_form, shape) for _ in range(n)], repeats) / n
    t_count = median_time(count_again, repeats)
    row(
        f"FlopCounterMode {name} / closed form at a new shape",
        t_count,
        t_eval,
        ">= 1000",
        t_count / t_eval,
    )


def bench_analyze(quick: bool, repeats: int) -> None:
    """One symbolic analysis of a model vs one FlopCounterMode count of it (issue 4: <= 10x)."""
    import torch
    import torchvision
    from torch.utils.flop_counter import FlopCounterMode

    name, size = ("resnet18", 64) if quick else ("resnet50", 224)
    model = getattr(torchvision.models, name)(weights=None).eval()
    x = torch.randn(1, 3, size, size)

    def count_once():
        with FlopCounterMode(display=False) as counter:
            model(x)
        return counter.get_total_flops()

    def analyse():
        return lc.analyze(model, ("N", 3, "H", "W"))

    analyse()  # first call imports and warms torch's fake-tensor machinery: not what is timed
    count_once()
    t_analyse = median_time(analyse, repeats)
    t_count = median_time(count_once, repeats)
    row(
        f"analyze {name} (symbolic) / one FlopCounterMode pass",
        t_analyse,
        t_count,
        "<= 10",
        t_analyse / t_count,
    )

    # issue 14: the closed forms of bytes beside those of FLOPs, from one trace each
    def flops_only():
        return lc.analyze(model, ("N", 3, "H", "W")).cost("exact")

    def flops_and_bytes():  # both conventions of bytes
        a = lc.analyze(model, ("N", 3, "H", "W"))
        return a.cost("exact"), a.quantity("bytes", "min"), a.quantity("bytes", "eager")

    flops_and_bytes()
    t_both = median_time(flops_and_bytes, repeats)
    t_flops = median_time(flops_only, repeats)
    row(
        f"analyze {name}: FLOPs and bytes / FLOPs alone",
        t_both,
        t_flops,
        "<= 1.3",
        t_both / t_flops,
    )


def _scaling_grid(points: int) -> tuple[sympy.Expr, dict[str, range]]:
    """GPT's forward MACs (d_ff = 4 d_model) over batch x width x depth x context, ``points``
    points (1e6, 1e7 or 1e8: the batch axis takes the factor of 10)."""
    macs = lc.architecture("gpt").total.cost("macs")
    s = {symbol.name: symbol for symbol in macs.free_symbols}
    gpt = macs.xreplace({s["d_ff"]: 4 * s["d_model"], s["vocab"]: 50257})
    batch = points // 10**6
    axes = dict(
        N=range(1, batch + 1),
        d_model=range(64, 6401, 64),
        n_layer=range(1, 101),
        n_ctx=range(128, 12801, 128),
    )
    return gpt, axes


def bench_scaleout(quick: bool, repeats: int) -> list[str]:
    """Points per second of a sweep: numpy in this process (the whole grid in memory) against
    ``sweep_lazy`` on a LocalCluster of 2 single-threaded worker processes, reduced to its max
    (issue 18).  Returns the lines to print under the table."""
    import dask
    from dask.distributed import Client, LocalCluster

    sizes = [10**6] if quick else [10**7, 10**8]
    notes = []
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            memory_limit="4GiB",
            dashboard_address=None,
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        ) as cluster,
        Client(cluster),
    ):
        gpt, axes = _scaling_grid(10**6)
        lc.sweep_lazy(gpt, **axes).max().compute()  # the workers' imports and compiled code
        for points in sizes:
            gpt, axes = _scaling_grid(points)
            lazy = lc.sweep_lazy(gpt, chunks=(10, 10, 100, 100), **axes)  # 1e6-point chunks
            t_dask = median_time(lambda lazy=lazy: dask.compute(lazy.max()), repeats)
            if points <= 10**7:  # the in-memory grid: 8 B a point, several arrays at once
                top = lc.sweep(gpt, **axes).max()
                assert top == lazy.max().compute()
                t_numpy = median_time(lambda gpt=gpt, axes=axes: lc.sweep(gpt, **axes).max(), 1)
                row(
                    f"sweep {points:.0e} pts: dask 2 workers / numpy 1 proc",
                    t_dask,
                    t_numpy,
                    "info",
                    t_dask / t_numpy,
                )
                notes.append(f"numpy, one process, {points:.0e} points: {points / t_numpy:.3g}/s")
            notes.append(
                f"dask, LocalCluster 2 workers x 1 thread, {points:.0e} points: "
                f"{points / t_dask:.3g}/s"
            )
    return notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI)")
    args = parser.parse_args(argv)
    # quick: once each (the rows only prove they still run; CI time is tight)
    scalar_n, vector_n, repeats = (200, 10_000, 1) if args.quick else (5_000, 1_000_000, 7)
    print(
        f"| {'measurement':<46} | {'ours (us)':>12} | {'base (us)':>12} | {'ratio':>8} | "
        f"{'target':<8} |"
    )
    print(f"|{'-' * 48}|{'-' * 14}:|{'-' * 14}:|{'-' * 10}:|{'-' * 10}|")
    bench_scalar(scalar_n, repeats)
    bench_vector(vector_n, repeats)
    bench_import(repeats if args.quick else 15, args.quick)
    bench_startup(args.quick, 1 if args.quick else 9)
    bench_model(args.quick, repeats)
    bench_analyze(args.quick, repeats)
    notes = bench_scaleout(args.quick, 1 if args.quick else 3)
    print("\npoints per second of a sweep (GPT MACs over batch x width x depth x context):")
    print("\n".join(f"- {note}" for note in notes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
