"""The layercost command line, in-process and as `python -m layercost_sym`."""

import json
import subprocess
import sys

import pytest

import layercost_sym as lc
from layercost_sym.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_groups_by_family(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0 and "conv:" in out and "  Conv2d" in out
    code, out, _ = run(capsys, "list", "--json")
    families = json.loads(out)
    assert (
        "Conv2d" in families["conv"]
        and sorted(n for names in families.values() for n in names) == lc.rules()
    )


def test_show_text_latex_json(capsys):
    code, out, _ = run(capsys, "show", "Conv2d")
    assert code == 0 and "floor" in out and "formulas/conv.toml" in out
    code, out, _ = run(capsys, "show", "Conv2d", "--convention", "macs", "--latex")
    assert out.startswith("\\begin{aligned}") and "H_{out}" in out
    code, out, _ = run(capsys, "show", "BatchNorm2d", "--training", "--json")
    data = json.loads(out)
    assert data["training"] is True and lc.parse(data["cost"]) == lc.rule(
        "BatchNorm2d"
    ).compact_cost("exact", True)


def test_eval_uses_torch_defaults_for_optional_symbols(capsys):
    _, out, _ = run(
        capsys, "eval", "Conv2d", "N=2", "C_in=3", "C_out=4", "k=3", "H=8", "W=8", "--json"
    )
    data = json.loads(out)
    # stride 1, padding 0, dilation 1, groups 1, bias on: 2*4*6*6 outputs x (2*27) each
    assert data["cost"] == 2 * 4 * 6 * 6 * 54 and data["params"] == 4 * 27 + 4
    assert data["output"] == [2, 4, 6, 6]
    _code, out, _ = run(
        capsys,
        "eval",
        "Conv2d",
        "N=2",
        "C_in=3",
        "C_out=4",
        "k=3",
        "H=8",
        "W=8",
        "b=0",
        "--convention",
        "seed",
        "--json",
    )
    assert json.loads(out)["cost"] == 2 * (3 * 9 * 4 * 36 * 2 - 1) + 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "Conv2D", "N=1"], "no rule named 'Conv2D'; did you mean Conv2d"),
        (["eval", "Conv2d", "N=1", "Z=3"], "unknown symbol 'Z'"),
        (["eval", "Conv2d", "N=x"], "'x' is not an integer"),
        (["eval", "Conv2d", "N"], "expected SYMBOL=INT"),
        (
            ["eval", "Conv2d", "N=1", "C_in=3"],
            "missing value for symbols 'C_out', 'H', 'W', 'k_h', 'k_w' (rule Conv2d",
        ),
        (["eval", "Linear", "N=1", "C_in=0", "C_out=2"], "C_in must be a positive dimension"),
        (["show", "Nope"], "no rule named 'Nope'"),
    ],
)
def test_errors_are_clear_and_exit_2(capsys, argv, message):
    code, _out, err = run(capsys, *argv)
    assert code == 2 and message in err and "Traceback" not in err


def test_every_command_has_help_with_an_example():
    for argv in ([], ["list"], ["show"], ["eval"]):
        out = subprocess.run(
            [sys.executable, "-m", "layercost_sym", *argv, "--help"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "example:" in out


def test_console_script_and_module_agree():
    argv = ["eval", "Linear", "N=2", "C_in=3", "C_out=4", "--json"]
    via_module = subprocess.run(
        [sys.executable, "-m", "layercost_sym", *argv], capture_output=True, text=True, check=True
    ).stdout
    via_script = subprocess.run(
        ["layercost", *argv], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(via_module) == json.loads(via_script)
    assert json.loads(via_module)["cost"] == 2 * 4 * 6  # 8 outputs x (3 mul + 2 add + 1 bias)


def test_eval_fills_data_dependent_symbols_with_their_default(capsys):
    # Embedding with max_norm: the distinct and renormalised rows default to their bound
    r = lc.rule("Embedding")
    values = {"N": 10, "V": 100, "E": 8, "renorm": 1}
    defaults = {s.name: lc.evaluate(e, values) for s, e in r.data_defaults().items()}
    code, out, _ = run(capsys, "eval", "Embedding", "N=10", "V=100", "E=8", "renorm=1", "--json")
    assert code == 0
    assert json.loads(out)["cost"] == lc.evaluate(r.flops, {**values, **defaults})
    code, out, _ = run(
        capsys, "eval", "Embedding", "N=10", "V=100", "E=8", "renorm=1", "V_r=2", "--json"
    )
    assert json.loads(out)["cost"] == lc.evaluate(r.flops, {**values, **defaults, "V_r": 2})
