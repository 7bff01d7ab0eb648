"""The catalogue ships inside the wheel: build it, install it into a fresh venv, load every rule."""

import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_carries_the_catalogue(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(dist),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("layercost_sym-*.whl")
    env = tmp_path / "venv"
    # system site-packages gives the venv sympy without a download; the wheel installed into the
    # venv comes first on sys.path, and the check below proves it is the one imported
    venv.EnvBuilder(with_pip=True, system_site_packages=True).create(env)
    python = env / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", str(wheel)],
        check=True,
    )
    code = (
        "import layercost_sym as lc, layercost_sym.glossary as g, pathlib, sys\n"
        "names = lc.rules()\n"
        "for n in names: lc.rule(n).flops\n"
        "d = g.formulas_dir()\n"
        f"assert {str(ROOT)!r} not in str(d), d\n"
        "assert 'site-packages' in str(d), d\n"
        "print(len(names))\n"
    )
    out = subprocess.run(
        [str(python), "-c", code], cwd=tmp_path, check=True, capture_output=True, text=True
    ).stdout
    expected = len(list((ROOT / "formulas").glob("*.toml")))
    assert int(out) >= expected - 1  # at least one rule per family file (symbols.toml excluded)
