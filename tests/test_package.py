"""Package hygiene: a lean import without torch, a sorted __all__, typing marker."""

import subprocess
import sys
from pathlib import Path

import layercost_sym as lc


def test_import_does_not_import_torch():
    code = (
        "import sys, layercost_sym as lc; lc.rules(); lc.rule('Conv2d').flops; "
        "lc.evaluate('N+1', {'N': 1}); assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_count_imports_torch_lazily():
    code = (
        "import sys, layercost_sym as lc; assert 'torch' not in sys.modules; "
        "import torch; c = lc.count(torch.nn.Linear(2, 2), (1, 2)); assert c.params == 6"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_all_is_sorted_and_complete():
    # isort-style, as ruff's RUF022 keeps it: CONSTANTS, then Classes, then functions
    assert lc.__all__ == sorted(lc.__all__, key=lambda n: (not n.isupper(), n.islower(), n))
    for name in lc.__all__:
        assert hasattr(lc, name), name


def test_py_typed_marker_ships():
    assert (Path(lc.__file__).parent / "py.typed").is_file()


def test_errors_subclass_builtins():
    assert issubclass(lc.ShapeError, ValueError) and issubclass(lc.EvaluationError, ValueError)
    assert issubclass(lc.UnknownRuleError, KeyError) and issubclass(lc.ConventionError, KeyError)
    assert issubclass(lc.CatalogueError, ValueError) and issubclass(lc.ExpressionError, ValueError)
