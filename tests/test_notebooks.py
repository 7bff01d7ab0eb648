"""The teaching notebooks run top to bottom on a fresh kernel; their committed outputs are current.

Every ``notebooks/*.ipynb`` is executed by nbclient (kernel ``python3``, working directory
``notebooks/``, matplotlib's non-interactive inline backend, this checkout first on the path).
A test fails when a cell raises, when the notebook was committed without its outputs (or not run
top to bottom in one fresh kernel), and when a code cell's committed text outputs (stdout,
stderr, and every ``text/*`` representation of results and displays: ``text/plain``,
``text/latex``, ``text/markdown``) differ from what the fresh run prints, or a cell that drew a
figure no longer does (or the other way round).  Image bytes are not compared.

A cell whose text output legitimately changes from run to run (a timing) carries the cell tag
``nondeterministic``: it is executed, its output is not compared.

Committed outputs hold what the notebook computes, not the machine it ran on: the kernel starts
with a filter that silences warnings raised from third-party packages (a missing ``ipywidgets``
makes ``tqdm`` warn, with the absolute path of its install, when transformers is imported);
warnings raised from ``layercost_sym`` or from the notebook's own code still show.  The kernel's
Python version is not written into the notebook's metadata.  ``tests/test_portable_text.py``
checks that no committed output holds an absolute path.

After changing a notebook or the library, rewrite the committed outputs with the same
execution as the test (from the repository root)::

    python tests/test_notebooks.py                    # every notebook
    python tests/test_notebooks.py 03_resolution      # one (name without .ipynb)
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
NONDETERMINISTIC = "nondeterministic"  # cell tag: executed, text output not compared
CELL_TIMEOUT = 300  # seconds per cell: a hang bound; each notebook runs in well under 2 minutes

# Run by the kernel before the first cell (an IPython startup file): a warning whose module is not
# layercost_sym or the notebook itself (__main__) comes from the environment, not from what the
# notebook computes, and would differ from machine to machine.
KERNEL_STARTUP = """\
import warnings
warnings.filterwarnings("ignore", module=r"(?!layercost_sym|__main__)")
"""


def execute(path: Path) -> nbformat.NotebookNode:
    """Run the notebook at ``path`` in a fresh kernel and return it with the new outputs."""
    nb = nbformat.read(path, as_version=4)
    env = dict(os.environ)
    # The kernel imports this checkout's layercost_sym, installed or not, and draws figures
    # with the inline backend (rendered to PNG in the outputs, no window).
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    # One intra-op thread, as tests/conftest.py sets for the test workers: with the cores
    # shared, more threads only contend (a notebook ran 10x slower on a loaded machine).
    env.setdefault("OMP_NUM_THREADS", "1")
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=CELL_TIMEOUT,
        record_timing=False,  # no timestamps in the committed files
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    with tempfile.TemporaryDirectory() as ipython_dir:
        startup = Path(ipython_dir, "profile_default", "startup")
        startup.mkdir(parents=True)
        (startup / "00-layercost-notebook.py").write_text(KERNEL_STARTUP)
        env["IPYTHONDIR"] = ipython_dir  # a fresh IPython profile: no user startup files either
        client.execute(env=env)
    # the kernel's exact Python version describes the machine, not the notebook
    nb.metadata.get("language_info", {}).pop("version", None)
    for cell in nb.cells:  # one print may arrive as several messages: keep the files stable
        if cell.cell_type == "code":
            cell.outputs = merge_streams(cell.outputs)
    return nb


def merge_streams(outputs: list) -> list:
    """Consecutive stream outputs of the same stream joined into one."""
    merged: list = []
    for out in outputs:
        last = merged[-1] if merged else None
        same = last is not None and last.output_type == out.output_type == "stream"
        if same and last.name == out.name:
            last.text += out.text
        else:
            merged.append(out)
    return merged


def text_outputs(cell: nbformat.NotebookNode) -> dict[str, str]:
    """A code cell's text outputs by kind: streams joined per name (a kernel may split one
    print into several messages), each ``text/*`` representation of results and displays."""
    texts: dict[str, str] = {}
    for out in cell.get("outputs", []):
        kind = out["output_type"]
        if kind == "stream":
            texts[out["name"]] = texts.get(out["name"], "") + out["text"]
        elif kind in ("execute_result", "display_data"):
            for mime, data in out["data"].items():
                if mime.startswith("text/"):
                    key = f"{kind} {mime}"
                    texts[key] = texts.get(key, "") + (
                        data if isinstance(data, str) else "".join(data)
                    )
    return texts


def has_image(cell: nbformat.NotebookNode) -> bool:
    return any(
        mime.startswith("image/")
        for out in cell.get("outputs", [])
        if out["output_type"] in ("execute_result", "display_data")
        for mime in out["data"]
    )


def code_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]


def test_notebooks_exist():
    names = [p.name for p in NOTEBOOKS]
    assert names, "no notebooks in notebooks/"
    # numbered: the reading order is the file order
    assert all(name[:2].isdigit() and name[2] == "_" for name in names), names


def test_at_least_two_notebooks_plot():
    plotting = [p.name for p in NOTEBOOKS if any(map(has_image, code_cells(nbformat.read(p, 4))))]
    assert len(plotting) >= 2, plotting


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_with_outputs(path):
    """Committed as run: every code cell executed, in order, by one fresh kernel."""
    cells = code_cells(nbformat.read(path, as_version=4))
    counts = [c.execution_count for c in cells]
    assert counts == list(range(1, len(cells) + 1)), (
        f"{path.name}: execution counts {counts}; run `python tests/test_notebooks.py "
        f"{path.stem}` to commit it with fresh outputs"
    )
    assert any(c.outputs for c in cells), f"{path.name} has no outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_and_outputs_are_current(path):
    committed = code_cells(nbformat.read(path, as_version=4))
    fresh = code_cells(execute(path))  # raises CellExecutionError naming the failing cell
    assert len(fresh) == len(committed)
    for index, (old, new) in enumerate(zip(committed, fresh, strict=True)):
        where = f"{path.name}, code cell {index + 1} ({old.source.splitlines()[0]!r})"
        if NONDETERMINISTIC in old.metadata.get("tags", []):
            continue
        assert text_outputs(new) == text_outputs(old), (
            f"{where}: committed output is stale; run `python tests/test_notebooks.py "
            f"{path.stem}` and review the diff"
        )
        assert has_image(new) == has_image(old), f"{where}: a figure appeared or disappeared"


def main(names: list[str]) -> None:
    """Execute notebooks (all, or those named) and write them back with their outputs."""
    paths = [NOTEBOOK_DIR / f"{n.removesuffix('.ipynb')}.ipynb" for n in names] or NOTEBOOKS
    for path in paths:
        start = time.perf_counter()
        nb = execute(path)
        nbformat.validate(nb)
        nbformat.write(nb, path)
        print(f"wrote {path.relative_to(ROOT)} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main(sys.argv[1:])
