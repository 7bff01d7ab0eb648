"""The benchmark runs in CI in quick mode so it cannot rot (timings printed, not asserted)."""

import importlib.util
from pathlib import Path


def test_benchmark_prints_every_row(capsys):
    path = Path(__file__).with_name("bench_evaluate.py")
    spec = importlib.util.spec_from_file_location("bench_evaluate", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--quick"]) == 0
    out = capsys.readouterr().out
    for row in (
        "scalar evaluate / lambdify",
        "xreplace / scalar evaluate",
        "vectorised evaluate / numpy lambdify",
        "import layercost_sym / import sympy",
        "first lc.rule('Conv2d') / import sympy (warm)",
        "layercost eval Conv2d / import sympy (warm)",
        "first lc.rule('Conv2d') / import sympy (cold)",
        "FlopCounterMode resnet18 / closed form",
        "analyze resnet18 (symbolic) / one FlopCounterMode pass",
        "analyze resnet18: FLOPs and bytes / FLOPs alone",
    ):
        assert row in out
