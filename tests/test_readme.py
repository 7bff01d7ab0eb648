"""Every piece of code in README.md is executed or checked, so the README cannot drift.

* ``python`` blocks with ``>>>`` run as doctests (pytest collects README.md, see pyproject).
* ``console`` blocks: each ``$`` line is a command, the lines after it its output.  Commands are
  ``&&``-chains of:

  - ``layercost ...``: run here (as ``python -m layercost_sym``, the entry point the
    ``layercost`` script calls, on this checkout) and its output compared with the README's;
  - ``pip install ...`` and ``pytest``: not re-run here (that would install packages, or run the
    whole suite inside itself); they must be exactly what ``.ci/run`` runs, which CI executes
    on a fresh machine: the test command is ``.ci/run``'s last line, and each install is one of
    ``.ci/run``'s installs verbatim, or installs this project as ``.ci/run`` does (editable,
    with extras ``.ci/run`` installs too).
* ``toml`` blocks must appear verbatim in a file under ``formulas/``, and ``python`` blocks
  without ``>>>`` verbatim in a file under ``tests/`` or ``layercost_sym/``: the README quotes
  the real files, it does not paraphrase them.
* Inline commands: ``layercost ...`` in backticks is run and must succeed; ``python <path>``
  must name a file that exists (the benchmark is not re-run: it takes minutes and its result
  is the README's table).  Every relative link and every repository path in inline code exists.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
CI_SCRIPT = ROOT / ".ci" / "run"

# A fenced block, possibly indented (inside a list item): (indent, language, body).
FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```\s*$", re.S | re.M)
BLOCKS = [(lang, textwrap.dedent(body)) for indent, lang, body in FENCE.findall(README)]


def console_commands() -> list[tuple[str, str]]:
    """(command, expected output) for every ``$`` line of every console block."""
    commands = []
    for lang, body in BLOCKS:
        if lang != "console":
            continue
        for chunk in re.split(r"^\$ ", body, flags=re.M)[1:]:
            command, _, output = chunk.partition("\n")
            commands.append((command.strip(), output))
    return commands


COMMANDS = console_commands()


def ci_lines() -> list[str]:
    lines = [line.strip() for line in CI_SCRIPT.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def pip_install_args(words: list[str]) -> list[str]:
    """The arguments of a ``[python -m] pip install`` command, without output-only flags."""
    if words[:2] == ["python", "-m"]:
        words = words[2:]
    assert words[:2] == ["pip", "install"], words
    return [w for w in words[2:] if w not in ("--quiet", "-q")]


def editable_spec(args: list[str]) -> tuple[str, set[str]]:
    """(path, extras) of the ``-e`` requirement."""
    assert "-e" in args, f"pip install {' '.join(args)} is not one of .ci/run's installs"
    spec = args[args.index("-e") + 1]
    path, _, extras = spec.partition("[")
    return path, {e.strip() for e in extras.rstrip("]").split(",") if e.strip()}


def test_readme_has_the_two_commands():
    # install and run the main job; install and run the tests
    parts = [shlex.split(part) for command, _ in COMMANDS for part in command.split("&&")]
    assert any(p[:1] == ["layercost"] for p in parts)
    assert any(p[:1] == ["pytest"] for p in parts)
    assert sum(p[:2] == ["pip", "install"] for p in parts) >= 2


def test_every_block_is_checked():
    languages = {lang for lang, _ in BLOCKS}
    assert languages <= {"python", "console", "toml"}, languages
    assert sum(">>>" in body for lang, body in BLOCKS if lang == "python") >= 2  # doctests


@pytest.mark.parametrize("command, expected", COMMANDS, ids=[c[:60] for c, _ in COMMANDS] or None)
def test_console_command(command, expected):
    ci = ci_lines()
    ci_installs = [pip_install_args(shlex.split(line)) for line in ci if "pip install" in line]
    ci_path, ci_extras = editable_spec(next(a for a in ci_installs if "-e" in a))
    ran = None
    for part in (p.strip() for p in command.split("&&")):
        words = shlex.split(part)
        if words[:2] == ["pip", "install"]:
            args = pip_install_args(words)
            if args in ci_installs:
                continue  # one of .ci/run's installs, verbatim
            # otherwise the project alone, editable, as .ci/run installs it (with its extras)
            path, extras = editable_spec(args)
            assert (path, len(args)) == (ci_path, 2), f"{part!r} is not how .ci/run installs"
            assert extras <= ci_extras, f"{part!r}: extras not installed by .ci/run"
        elif words[:1] == ["pytest"]:
            assert part == ci[-1], f"the README's test command {part!r} is not .ci/run's {ci[-1]!r}"
        elif words[:1] == ["layercost"]:
            ran = run_layercost(words[1:])
        else:
            pytest.fail(f"no check for README command {part!r}")
    if ran is not None:
        assert ran.returncode == 0, ran.stderr
        assert normalise(ran.stdout) == normalise(expected)
    else:
        assert not expected.strip(), f"{command!r} shows output the test cannot check"


def run_layercost(args: list[str]) -> subprocess.CompletedProcess:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["layercost"] == "layercost_sym.cli:main"  # what python -m layercost_sym runs
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "layercost_sym", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,  # a hang bound; `layercost model` traces a ResNet in a few seconds
    )


def normalise(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


def quoted_blocks(lang: str) -> list[str]:
    return [body for block_lang, body in BLOCKS if block_lang == lang and ">>>" not in body]


@pytest.mark.parametrize("body", quoted_blocks("toml"))
def test_toml_blocks_quote_the_catalogue(body):
    files = [p.read_text() for p in (ROOT / "formulas").rglob("*.toml")]
    assert any(body in text for text in files), f"not in formulas/:\n{body}"


@pytest.mark.parametrize("body", quoted_blocks("python"))
def test_python_blocks_quote_the_code(body):
    files = [p.read_text() for d in ("tests", "layercost_sym") for p in (ROOT / d).rglob("*.py")]
    assert any(body in text for text in files), f"not in tests/ or layercost_sym/:\n{body}"


INLINE = [span for span in re.findall(r"`([^`\n]+)`", README) if not span.startswith("`")]
INLINE_LAYERCOST = sorted({span for span in INLINE if span.startswith("layercost ")})


@pytest.mark.parametrize("command", INLINE_LAYERCOST)
def test_inline_layercost_commands_run(command):
    ran = run_layercost(shlex.split(command)[1:])
    assert ran.returncode == 0, ran.stderr


def test_inline_python_scripts_exist():
    scripts = [span.split()[1] for span in INLINE if span.startswith("python ")]
    assert "tests/benchmarks/bench_evaluate.py" in scripts  # the README names its benchmark
    missing = [script for script in scripts if not (ROOT / script).is_file()]
    assert not missing, missing


def test_links_and_paths_exist():
    links = re.findall(r"\]\(([^)#]+)\)", README)
    paths = re.findall(r"`((?:formulas|tests|notebooks|layercost_sym|\.ci)/[^`\s]*)`", README)
    names = [p for p in links if "://" not in p] + [p for p in paths if "<" not in p]
    assert names
    missing = [p for p in names if not (ROOT / p).exists()]
    assert not missing, missing


def test_readme_says_what_ci_runs_beyond_the_test_command():
    """Every check .ci/run makes besides installing (linters, type checks, the test command)
    is named in the README as inline code, and so is the environment that selects the CI
    Hypothesis profile: the README says exactly what CI runs."""
    steps = [
        line for line in ci_lines() if shlex.split(line)[0] not in ("set", "cd", "export", "python")
    ]
    assert "pytest" in steps and any(s.startswith("ruff") for s in steps), steps
    missing = [step for step in steps if step not in INLINE]
    assert not missing, f".ci/run steps the README does not name: {missing}"
    exported = [line for line in ci_lines() if line.startswith("export CI=")]
    assert exported and "CI=true" in README
