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


def test_list_cuts_long_notes_at_a_word_with_an_ellipsis(capsys):
    from layercost_sym.cache import catalogue

    _, out, _ = run(capsys, "list")
    cut = 0
    for line in out.splitlines():
        if not line.startswith("  "):
            continue  # a family heading
        name, _, shown = line.strip().partition(" ")
        shown = shown.strip()
        note = " ".join(catalogue().rules[name].note.split())
        assert len(shown) <= 70, line
        if shown == note:
            continue
        cut += 1
        assert shown.endswith("..."), line
        kept = shown.removesuffix("...")
        assert note.startswith(kept) and note[len(kept)] == " ", line  # cut between words
    assert cut > 10  # many notes are longer than a line


# -- layercost arch: readable tables ----------------------------------------------------------


def _arch_lines(capsys, *argv) -> list[str]:
    code, out, err = run(capsys, "arch", *argv)
    assert code == 0, err
    return out.splitlines()


def _row(lines: list[str], part: str) -> list[str]:
    """A table row's cells (columns are separated by two or more spaces)."""
    import re

    (line,) = [x for x in lines if x.startswith(part + " ")]
    return re.split(r"\s{2,}", line.strip())


@pytest.mark.parametrize("name", lc.architectures())
def test_arch_default_output_has_no_long_lines(capsys, name):
    lines = _arch_lines(capsys, name)
    assert max(map(len, lines)) <= 200, max(lines, key=len)[:300]
    assert lines[-1].startswith("total")


def test_zoo_defaults_are_the_configurations_mirrored():
    import transformers

    from layercost_sym.zoo import _spec

    def defaults(name):
        return {h.name: h.default for h in _spec(name).hyperparameters}

    gpt2 = transformers.GPT2Config()
    assert defaults("gpt") == {
        "d_model": gpt2.n_embd,
        "n_layer": gpt2.n_layer,
        "n_head": gpt2.n_head,
        "d_ff": 4 * gpt2.n_embd,  # n_inner=None: GPT2MLP's 4 * n_embd
        "vocab": gpt2.vocab_size,
        "n_ctx": gpt2.n_positions,
    }
    bert = transformers.BertConfig()
    assert defaults("bert") == {
        "d_model": bert.hidden_size,
        "n_layer": bert.num_hidden_layers,
        "n_head": bert.num_attention_heads,
        "d_ff": bert.intermediate_size,
        "vocab": bert.vocab_size,
        "n_ctx": bert.max_position_embeddings,
    }
    llama = transformers.LlamaConfig()
    assert defaults("llama") == {
        "d_model": llama.hidden_size,
        "n_layer": llama.num_hidden_layers,
        "n_head": llama.num_attention_heads,
        "n_kv_head": llama.num_key_value_heads,
        "d_ff": llama.intermediate_size,
        "vocab": llama.vocab_size,
        "n_ctx": llama.max_position_embeddings,
    }
    import torchvision

    crop = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.transforms().crop_size[0]
    assert defaults("mobilenet_v2") == {"alpha": 1, "resolution": crop}  # width_mult=1.0
    crop = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.transforms().crop_size[0]
    assert defaults("resnet")["resolution"] == crop
    # Howard et al. 2017, Table 1: the baseline (alpha = 1) on 224 x 224 x 3 inputs
    assert defaults("mobilenet_v1") == {"alpha": 1, "resolution": 224}
    # the defaults stay out of the Python API: left out, a hyperparameter is a symbol
    assert lc.architecture("gpt").params.free_symbols == set(
        lc.symbols("d_model n_layer d_ff vocab n_ctx")
    )


def test_arch_gpt_collects_totals_and_shows_the_values_at_the_defaults(capsys):
    import sympy

    lines = _arch_lines(capsys, "gpt")
    arch = lc.architecture("gpt")
    names = {s.name: s for s in arch.free_symbols}
    expanded = sympy.expand(arch.params)  # 7 distinct terms
    full = _row(_arch_lines(capsys, "gpt", "--full"), "total")[1]
    # like terms combined (the blocks' n_layer*(d_model**2 + d_model) + n_layer*(3*d_model**2
    # + ...) are one term each): as many terms as the expanded form, highest degree first
    assert "(" not in full and len(full.split(" + ")) == len(expanded.args) == 7
    assert lc.parse(full, names) == expanded
    first = lc.parse(full.split(" + ")[0], names)
    degrees = [sum(sympy.degree_list(t)) for t in expanded.args]
    assert sum(sympy.degree_list(first)) == 3 == max(degrees)
    shown = _row(lines, "total")[1]
    assert shown.startswith(full.split(" + ")[0] + " + ") and shown.endswith("more terms)")
    hp = dict(d_model=768, n_layer=12, n_head=12, d_ff=3072, vocab=50257, n_ctx=1024)
    assert any(all(f"{k}={v}" in line for k, v in hp.items()) for line in lines[:4])
    small = lc.architecture("gpt", **hp)  # GPT-2 small, computed by the API
    total = _row(lines, "total")
    assert str(small.params) in total
    assert str(sympy.expand(small.cost("exact"))) in total
    qkv = _row(lines, "attention.qkv")  # c_attn: 12 layers of 768 x 2304 weights + 2304 biases
    assert str(12 * (768 * 2304 + 2304)) in qkv


def test_arch_mobilenet_v2_is_shortened_with_values_and_full_on_request(capsys):
    lines = _arch_lines(capsys, "mobilenet_v2")
    assert max(map(len, lines)) <= 200
    m = lc.architecture("mobilenet_v2", alpha=1, resolution=224)
    total = _row(lines, "total")
    assert str(m.params) in total  # 3504872, torchvision's 3.5M
    assert str(m.cost("exact")) in total
    full = _arch_lines(capsys, "mobilenet_v2", "--full")
    total_full = full[-1]
    assert len(total_full) > 1000 and "Max(8" in total_full  # the exact closed form, whole


def test_arch_json_carries_defaults_and_full_expressions(capsys):
    import sympy

    from layercost_sym.zoo import _spec

    _code, out, _ = run(capsys, "arch", "gpt", "--json")
    data = json.loads(out)
    arch = lc.architecture("gpt")
    names = {s.name: s for s in arch.free_symbols}
    assert lc.parse(data["params"], names) == arch.params
    assert sympy.expand(lc.parse(data["cost"], names) - arch.cost("exact")) == 0
    assert data["defaults"] == {h.name: h.default for h in _spec("gpt").hyperparameters}
    gpt2 = lc.architecture("gpt", **data["defaults"])
    assert data["at_defaults"]["params"] == str(gpt2.params)
    assert lc.evaluate(data["at_defaults"]["cost"], {"N": 3}) == gpt2.evaluate({"N": 3}, "exact")
    for part, (params, _cost) in gpt2.breakdown("exact").items():
        assert data["at_defaults"]["parts"][part]["params"] == str(params)


def test_model_lists_modules_costed_by_operators_apart_from_unsupported(capsys, monkeypatch):
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    argv = ["model", "test_analyze:tiny_gpt2", "--input", "N,L", "--dtype", "long"]
    code, out, err = run(capsys, *argv, "--depth", "3")
    assert code == 0, err
    assert "unsupported" not in out  # every module and operator is costed
    lines = out.splitlines()
    (costed,) = [line for line in lines if line.startswith("costed by their operators")]
    assert "8 Conv1D (view, addmm)" in costed  # 2 blocks x (c_attn, c_proj, c_fc, c_proj)
    assert "Conv1D (by its ops: addmm)" in out  # and the blocks' rows name the class
    assert max(map(len, lines)) <= 200


def test_arch_json_parts_read_back_for_a_large_architecture(capsys):
    import sympy

    from layercost_sym.parsing import MAX_TEXT_LENGTH

    _code, out, _ = run(capsys, "arch", "mobilenet_v2", "--json")
    data = json.loads(out)
    arch = lc.architecture("mobilenet_v2")
    names = {s.name: s for s in arch.free_symbols}
    parts = arch.breakdown("exact")
    for part, texts in data["parts"].items():
        params, cost = parts[part]
        assert sympy.expand(lc.parse(texts["params"], names) - params) == 0
        assert sympy.expand(lc.parse(texts["cost"], names) - cost) == 0
    # the totals are longer than parse's limit on text (4000 characters): the sums of the parts
    assert len(data["cost"]) > MAX_TEXT_LENGTH
    m = lc.architecture("mobilenet_v2", **data["defaults"])
    assert data["at_defaults"]["params"] == str(m.params) == "3504872"  # torchvision: 3.5M
