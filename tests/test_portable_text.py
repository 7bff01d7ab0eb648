"""What the repository shows a reader holds no trace of the machine that produced it.

Committed notebook outputs, the notebooks' metadata and the Markdown documents must not contain
an absolute filesystem path (``/root/.pyenv/...``, ``C:\\Users\\...``): such text differs from
machine to machine, so a notebook's freshness check fails on every other machine, and it tells
the reader nothing about the library.  Paths relative to the repository (``formulas/conv.toml``),
URLs and ``~/...`` (a user's own directory, written generically) are fine.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = sorted(
    p
    for p in [*ROOT.glob("*.md"), *ROOT.glob("formulas/*.md"), *ROOT.glob("notebooks/*.md")]
    if p.is_file()
)
NOTEBOOKS = sorted(ROOT.glob("notebooks/*.ipynb"))

# A POSIX path: a slash that does not continue a word, a URL or a relative path ("a/b", "x.io/",
# "https://", "../"), then at least two segments.  A Windows path: a drive letter, then two
# segments each after one backslash (LaTeX's "g:\\ " and "x:\mathrm{}" are not paths).
_POSIX = re.compile(r"(?<![\w.:/~$%{}\\-])/(?:[\w.+@-]+/)+[\w.+@-]*")
_WINDOWS = re.compile(r"(?<![\w\\])[A-Za-z]:\\\w[\w.$ -]*\\\w[\w.$-]*")


def absolute_paths(text: str) -> list[str]:
    """The absolute filesystem paths in ``text``.

    >>> absolute_paths("/root/.pyenv/versions/3.11.7/lib/python3.11/site-packages/tqdm/auto.py:21")
    ['/root/.pyenv/versions/3.11.7/lib/python3.11/site-packages/tqdm/auto.py']
    >>> absolute_paths("see formulas/conv.toml, https://example.org/a/b and ~/.cache/x")
    []
    """
    return _POSIX.findall(text) + _WINDOWS.findall(text)


def test_the_detector_finds_what_it_must_and_only_that():
    found = [
        "/work/main/README.md",
        "/tmp/x/y",
        "/home/alice/src/model.py",
        "/usr/lib/python3/dist-packages/",
        r"C:\Users\alice",
    ]
    for text in found:
        assert absolute_paths(f"error at {text}: boom"), text
        assert absolute_paths(f'"{text}"'), text
        assert absolute_paths(f"({text})"), text
    fine = [
        "formulas/conventions/fvcore.toml",
        "layercost_sym/torchtools/analysis.py:412",
        "https://ipywidgets.readthedocs.io/en/stable/user_install.html",
        "[notebook](notebooks/01_seed_article.ipynb)",
        "../shared/DESIGN.md",
        "~/.cache/layercost_sym",
        "$XDG_CACHE_HOME/layercost_sym",
        "FLOPs/byte and N/2, H/32 - 1/32",
        r"\frac{a}{b}",
        r"\begin{aligned} g:\\ x:\mathrm{params} g:\ \mathrm{x}\end{aligned}",
    ]
    for text in fine:
        assert absolute_paths(text) == [], text


def _notebook_texts(path: Path) -> list[tuple[str, str]]:
    """(where, text) for every output text and the metadata of a committed notebook."""
    nb = nbformat.read(path, as_version=4)
    texts = [("metadata", str(nb.metadata))]
    for index, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            where = f"cell {index + 1} {out['output_type']}"
            if out["output_type"] == "stream":
                texts.append((where, out["text"]))
            elif out["output_type"] == "error":
                texts.append((where, "\n".join(out.get("traceback", []))))
            else:
                for mime, data in out.get("data", {}).items():
                    if mime.startswith("text/"):
                        texts.append((f"{where} {mime}", "".join(data)))
    return texts


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_outputs_hold_no_absolute_path(path):
    for where, text in _notebook_texts(path):
        assert absolute_paths(text) == [], f"{path.name}, {where}: {absolute_paths(text)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_metadata_names_no_python_patch_version(path):
    info = nbformat.read(path, as_version=4).metadata.get("language_info", {})
    assert "version" not in info, f"{path.name}: language_info.version = {info.get('version')}"


@pytest.mark.parametrize("path", DOCUMENTS, ids=[str(p.relative_to(ROOT)) for p in DOCUMENTS])
def test_documents_hold_no_absolute_path(path):
    assert absolute_paths(path.read_text()) == []


def test_documents_are_found():
    names = {str(p.relative_to(ROOT)) for p in DOCUMENTS}
    assert {"README.md", "formulas/README.md"} <= names, names
