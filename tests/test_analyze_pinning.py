"""Models that will not trace with every dimension symbolic (issue 12, point 4).

``lc.analyze`` pins the dimensions the model insists on (a guard ``H == 224`` whose note names
the model code that forced it) and keeps the others symbolic; traces token inputs as integers
and below the positions a config states; takes keyword inputs; and raises one
:class:`~layercost_sym.TraceError` line when nothing can be traced.  Every closed form is
checked against torch at the pinned shape: ``torch`` by FlopCounterMode (grad enabled, MATH
SDPA backend), ``macs`` = its half, params by numel (``lc.count`` adds the ``exact`` op counter
on the small models).
"""

import json
import os
import subprocess
import sys
from functools import cache

import pytest
import sympy
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import layercost_sym as lc
from layercost_sym.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def flop_counter(model: nn.Module, *inputs: torch.Tensor, **kwargs) -> int:
    """FlopCounterMode's total for one forward pass (grad enabled, math attention)."""
    with torch.enable_grad(), sdpa_kernel(SDPBackend.MATH):
        with FlopCounterMode(display=False) as counter:
            model(*inputs, **kwargs)
    return int(counter.get_total_flops())


def assert_pinned_image(analysis, model, where: str, shapes=((1, 224, 224),)) -> None:
    """H and W pinned with a note naming ``where`` (relative), N symbolic, and the closed form
    equal to FlopCounterMode and numel at the pinned shape."""
    assert set(analysis.pinned) == {"H", "W"}
    for _value, note in analysis.pinned.values():
        assert where in note and not note.startswith("/"), note
    assert f"H == {analysis.pinned['H'][0]}" in analysis.range
    assert f"W == {analysis.pinned['W'][0]}" in analysis.range
    assert {s.name for s in analysis.cost("macs").free_symbols} == {"N"}
    params = sum(p.numel() for p in model.parameters())
    for n, h, w in shapes:
        at = {"N": n, "H": h, "W": w}
        flops = flop_counter(model, torch.randn(n, 3, h, w))
        assert analysis.evaluate(at, "torch") == flops
        assert analysis.evaluate(at, "macs") * 2 == flops
        assert analysis.evaluate(at, quantity="params") == params


# -- torchvision: an asserted size, a padding by a size-dependent amount, a window view ---------


@cache
def torchvision_model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return getattr(torchvision.models, name)(weights=None).eval()


@cache
def torchvision_analysis(name: str):
    return lc.analyze(torchvision_model(name), ("N", 3, "H", "W"))


def test_vit_b_16_is_pinned_where_it_asserts_its_image_size():
    # before: AssertionError "Wrong image height! Expected 224 but got s36!" from torch
    model, analysis = torchvision_model("vit_b_16"), torchvision_analysis("vit_b_16")
    assert analysis.pinned["H"] == (
        224,
        "torchvision/models/vision_transformer.py:271: Wrong image height! Expected 224 but got H!",
    )
    assert "Wrong image width! Expected 224 but got W!" in analysis.pinned["W"][1]
    assert_pinned_image(analysis, model, "torchvision/models/vision_transformer.py:")
    assert analysis.evaluate({"N": 3, "H": 224, "W": 224}, "macs") == 3 * analysis.evaluate(
        {"N": 1, "H": 224, "W": 224}, "macs"
    )
    with pytest.raises(lc.EvaluationError, match=r"guard H == 224 fails at H=225.*vision_trans"):
        analysis.evaluate({"N": 1, "H": 225, "W": 224})


def test_maxvit_t_is_pinned_where_its_window_view_fails():
    # before: RuntimeError "shape '[s26, 64, ...]' is invalid for input of size ..." (227 x 229
    # is no multiple of the 32 x 7 its windows need); pinned at 224, N symbolic
    model, analysis = torchvision_model("maxvit_t"), torchvision_analysis("maxvit_t")
    assert analysis.pinned["H"][0] == analysis.pinned["W"][0] == 224
    assert_pinned_image(analysis, model, "torchvision/models/maxvit.py:")
    assert "fails with H, W symbolic" in analysis.pinned["H"][1]


def test_swin_t_from_the_command_line_prints_its_table_and_pins(capsys):
    # before: a 136-line traceback ending in "SymIntArrayRef expected to contain only concrete
    # integers" (F.pad by (7 - W % 7) % 7); now pinned there, the batch symbolic
    argv = ["model", "torchvision.models:swin_t", "--input", "N,3,H,W", "--depth", "1"]
    assert main([*argv, "--convention", "macs", "--at", "N=1,H=224,W=224"]) == 0
    out = capsys.readouterr().out.splitlines()
    total = next(line for line in out if line.startswith("total"))
    flops = flop_counter(torchvision_model("swin_t"), torch.randn(1, 3, 224, 224))
    assert int(total.split()[-1]) * 2 == flops
    assert int(total.split()[-2]) == sum(
        p.numel() for p in torchvision_model("swin_t").parameters()
    )
    pins = [line for line in out if line.startswith("pinned: ")]
    assert [p.split(" (")[0] for p in pins] == ["pinned: H = 224", "pinned: W = 224"]
    assert all("(torchvision/models/swin_transformer.py:" in p for p in pins)
    assert all("F.pad" in p for p in pins)


# -- timm (pretrained=False): a fixed img_size, and a dynamic one that needs divisible sizes -----


def test_timm_mixer_is_pinned_to_its_img_size():
    import timm

    torch.manual_seed(0)
    model = timm.create_model("mixer_s16_224", pretrained=False).eval()
    analysis = lc.analyze(model, ("N", 3, "H", "W"))
    # timm's PatchEmbed asserts the size it was built for: "Input height (s36) doesn't match
    # model (224)." (before: that AssertionError)
    assert analysis.pinned["H"] == (
        224,
        "timm/layers/patch_embed.py:124: Input height (H) doesn't match model (224).",
    )
    assert_pinned_image(
        analysis, model, "timm/layers/patch_embed.py:", [(1, 224, 224), (2, 224, 224)]
    )


def test_timm_dynamic_vit_traces_at_multiples_of_its_patch_then_pins():
    import timm

    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, dynamic_img_size=True)
    model.eval()
    # 227 is refused ("Input height (s36) should be divisible by patch size (16).": traced at
    # 224 and 240 instead), then resampling the position table to a symbolic grid needs ints
    # (F.interpolate): H and W are pinned to the model's img_size, 224
    analysis = lc.analyze(model, ("N", 3, "H", "W"))
    assert all("timm/layers/pos_embed.py:" in note for _, note in analysis.pinned.values())
    assert_pinned_image(analysis, model, "F.interpolate", [(1, 224, 224), (2, 224, 224)])


def test_transformers_vit_is_pinned_to_its_configs_image_size():
    import transformers

    torch.manual_seed(0)
    config = transformers.ViTConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=64,
        patch_size=16,
    )
    model = transformers.ViTModel(config).eval()
    analysis = lc.analyze(model, ("N", 3, "H", "W"))
    # the model raises "Input image size (227*229) doesn't match model (64*64)." itself
    assert analysis.pinned["W"] == (
        64,
        "transformers/models/vit/modeling_vit.py:153: Input image size (H*W) doesn't match "
        "model (64*64).",
    )
    assert_pinned_image(analysis, model, "modeling_vit.py", [(1, 64, 64), (3, 64, 64)])


# -- trace sizes: the caller's hints, square allowed ---------------------------------------------


class SquareOnly(nn.Module):
    """A model that asserts square images, as some do."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2)

    def forward(self, x):
        torch._assert(x.shape[-1] == x.shape[-2], "square images only")
        return self.conv(x)


def test_square_hints_are_traced_as_given_and_stay_symbolic():
    torch.manual_seed(0)
    model = SquareOnly().eval()
    # before: W's trace size was moved to 65, and the assertion failed
    analysis = lc.analyze(model, ("N", 3, "H", "W"), hints={"H": 64, "W": 64})
    assert analysis.pinned == {}
    assert {s.name for s in analysis.cost("exact").free_symbols} == {"N", "H"}  # W == H
    for n, side in [(1, 9), (2, 33)]:
        counted = lc.count(model, (n, 3, side, side))
        for convention in ("exact", "macs", "torch"):
            assert analysis.evaluate({"N": n, "H": side, "W": side}, convention) == counted.cost(
                convention
            )
    with pytest.raises(lc.EvaluationError, match="H=9, W=11"):
        analysis.evaluate({"N": 1, "H": 9, "W": 11})


def test_a_failure_naming_no_dimension_pins_the_image_sides_and_names_the_code():
    torch.manual_seed(0)
    model = SquareOnly().eval()
    analysis = lc.analyze(model, ("N", 3, "H", "W"))  # traced at 227 x 229: refused
    assert {name: value for name, (value, _) in analysis.pinned.items()} == {"H": 224, "W": 224}
    note = analysis.pinned["H"][1]
    assert note.endswith(
        "test_analyze_pinning.py:" + str(_line_of("square images only")) + ": square images only"
    )
    assert not note.startswith("/")
    counted = lc.count(model, (2, 3, 224, 224))
    assert analysis.evaluate({"N": 2, "H": 224, "W": 224}, "exact") == counted.cost("exact")


class FloatOfSide(nn.Module):
    """Divides by ``float()`` of its feature map's side, as timm's rotary grid does (DINOv3):
    torch makes that side an int and guards ``H/4 == 16``, keeping H a symbol."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 4, stride=4)

    def forward(self, x):
        torch._assert(x.shape[-2] % 4 == 0, "sides divisible by 4")
        y = self.conv(x)
        return y / float(y.shape[-2])  # float of a size


def test_a_guard_that_fixes_a_size_pins_it_and_names_the_code():
    # before: H stayed "symbolic" under a guard H/4 == 16 refusing every other H, and a
    # caller (the corpus: timm's DINOv3 and LingBot ViTs) read a closed form in H; it is H
    # given as 16*4, pinned as a size torch specialised is, with the line that did it
    torch.manual_seed(0)
    model = FloatOfSide().eval()
    analysis = lc.analyze(model, ("N", 3, "H", "W"), hints={"H": 64, "W": 80})
    assert {name: value for name, (value, _) in analysis.pinned.items()} == {"H": 64}
    note = analysis.pinned["H"][1]
    line = next(i for i, text in enumerate(open(__file__), 1) if "# float of a size" in text)
    assert f"test_analyze_pinning.py:{line}: return y / float(" in note
    assert not note.startswith("/")
    assert note.endswith("torch specialised H to its trace size (H/4 == 16)")
    counted = lc.count(model, (2, 3, 64, 21))
    assert analysis.evaluate({"N": 2, "H": 64, "W": 21}, "exact") == counted.cost("exact")
    with pytest.raises(lc.EvaluationError, match="H is pinned to 64"):
        analysis.evaluate({"N": 2, "H": 68, "W": 21})


def _line_of(text: str) -> int:
    with open(__file__) as f:
        return next(i for i, line in enumerate(f, 1) if text in line and "_assert" in line)


class PadToFour(nn.Module):
    """Pads its width to a multiple of 4 (by a size-dependent amount: F.pad needs an int)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 4, stride=4)

    def forward(self, x):
        return self.conv(F.pad(x, (0, (4 - x.shape[-1] % 4) % 4)))


@pytest.mark.parametrize(("hints", "width"), [({}, 224), ({"W": 30}, 30)])
def test_only_the_dimension_the_failure_names_is_pinned_to_its_hint_or_224(hints, width):
    torch.manual_seed(0)
    model = PadToFour().eval()
    analysis = lc.analyze(model, ("N", 3, "H", "W"), hints=hints)
    assert list(analysis.pinned) == ["W"] and analysis.pinned["W"][0] == width
    assert (
        "F.pad(x, (0, (4 - x.shape[-1] % 4) % 4))) fails with W symbolic" in analysis.pinned["W"][1]
    )
    assert {s.name for s in analysis.cost("exact").free_symbols} == {"N", "H"}
    for n, h in [(1, 17), (2, 8)]:
        counted = lc.count(model, (n, 3, h, width))
        for convention in ("exact", "macs", "torch"):
            assert analysis.evaluate({"N": n, "H": h, "W": width}, convention) == counted.cost(
                convention
            )
    with pytest.raises(lc.EvaluationError, match=f"guard W == {width} fails at W={width + 4}"):
        analysis.evaluate({"N": 1, "H": 8, "W": width + 4})


# -- token inputs, keyword inputs, position tables -----------------------------------------------


@cache
def tiny_bert():
    import transformers  # a test dependency (pyproject's test extra): never skipped

    torch.manual_seed(0)
    config = transformers.BertConfig(
        max_position_embeddings=128,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=100,
    )
    return transformers.BertModel(config).eval()


def test_bert_traces_below_its_position_table_with_token_ids_inferred():
    # before: "Expected tensor for argument #1 'indices' to have one of the following scalar
    # types" without dtype=torch.long, and with it "expand: attempting to expand a dimension of
    # length 128 -> s49" (L traced at 227 > 128 positions)
    model = tiny_bert()
    analysis = lc.analyze(model, ("N", "L"))
    assert analysis.pinned == {}
    assert "L <= 128" in analysis.range
    for n, length in [(1, 5), (2, 128)]:
        counted = lc.count(model, torch.randint(0, 100, (n, length)))
        assert analysis.evaluate({"N": n, "L": length}, quantity="params") == counted.params
        for convention in ("exact", "macs", "torch"):
            assert analysis.evaluate({"N": n, "L": length}, convention) == counted.cost(convention)


class PositionTable(nn.Module):
    """Token and learned position embeddings of 50 positions, with no config saying so."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens = nn.Embedding(100, 8)
        self.positions = nn.Parameter(torch.randn(1, 50, 8))
        self.head = nn.Linear(8, 100)

    def forward(self, ids):
        n, length = ids.shape
        return self.head(self.tokens(ids) + self.positions[:, :length].expand(n, length, 8))


def test_a_trace_size_beyond_a_position_table_is_retried_below_it():
    torch.manual_seed(0)
    model = PositionTable().eval()
    analysis = lc.analyze(model, ("N", "L"), dtype=torch.long)  # before: the expand error
    assert analysis.pinned == {}
    with pytest.raises(lc.EvaluationError, match="L=51"):  # torch: the slice holds 50 rows
        analysis.evaluate({"N": 1, "L": 51})
    for n, length in [(1, 7), (3, 50)]:
        counted = lc.count(model, torch.randint(0, 100, (n, length)))
        for convention in ("exact", "macs", "torch"):
            assert analysis.evaluate({"N": n, "L": length}, convention) == counted.cost(convention)


def test_gpt2_token_ids_need_no_dtype():
    import transformers

    torch.manual_seed(0)
    config = transformers.GPT2Config(n_positions=64, n_embd=32, n_layer=2, n_head=2, vocab_size=100)
    model = transformers.GPT2LMHeadModel(config).eval()
    analysis = lc.analyze(model, ("N", "L"), use_cache=False)  # a forward option stays one
    assert analysis.range == ["L >= 2", "L <= 64"]  # L = 1: no causal mask (a branch)
    for n, length in [(1, 3), (2, 64)]:
        counted = lc.count(model, torch.randint(0, 100, (n, length)), use_cache=False)
        for convention in ("exact", "macs", "torch"):
            assert analysis.evaluate({"N": n, "L": length}, convention) == counted.cost(convention)


@cache
def tiny_t5():
    import transformers

    torch.manual_seed(0)
    config = transformers.T5Config(
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        vocab_size=100,
        use_cache=False,
    )
    return transformers.T5Model(config).eval()


def test_t5_with_keyword_inputs():
    # before: "embedding(): argument 'indices' (position 2) must be Tensor, not tuple"
    model = tiny_t5()
    analysis = lc.analyze(model, input_ids=("N", "L"), decoder_input_ids=("N", "T"))
    assert [s.name for s in analysis.symbols] == ["N", "L", "T"]
    n, length, target = sympy.symbols("N L T", integer=True, positive=True)
    # the decoder's cross-attention: T queries against L keys, a term in N*L*T
    assert analysis.cost("macs").coeff(n * length * target) != 0
    for n_, l_, t_ in [(1, 5, 3), (2, 9, 4)]:
        ids = torch.randint(0, 100, (n_, l_))
        decoder_ids = torch.randint(0, 100, (n_, t_))
        counted = lc.count(model, input_ids=ids, decoder_input_ids=decoder_ids)
        at = {"N": n_, "L": l_, "T": t_}
        assert analysis.evaluate(at, quantity="params") == counted.params
        for convention in ("exact", "macs", "torch"):
            assert analysis.evaluate(at, convention) == counted.cost(convention), convention


# -- nothing to pin: one error line ---------------------------------------------------------------


class Branchy(nn.Module):
    """Branches on a value, which no trace can know."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        return self.fc(x) if x.sum() > 0 else x


class WidthOnly(nn.Module):
    """Accepts one width only."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width

    def forward(self, x):
        torch._assert(x.shape[-1] == self.width, "wrong width")
        return x.relu()


class FloatIds(nn.Module):
    """Token ids that reach the embedding through arithmetic, not as the input itself."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Embedding(10, 4)

    def forward(self, ids):
        return self.table(ids * 1)


def test_an_untraceable_model_raises_one_trace_error_line():
    with pytest.raises(lc.TraceError) as info:
        lc.analyze(Branchy(), ("N", 8))
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, lc.LayercostError)
    assert message.startswith("cannot trace Branchy with N = ")
    assert "test_analyze_pinning.py:" in message and "concrete --input sizes" in message
    with pytest.raises(lc.TraceError) as info:  # nothing symbolic: nothing to pin
        lc.analyze(SquareOnly(), (1, 3, 20, 24))
    assert str(info.value).startswith("cannot trace SquareOnly: square images only (test_analyze_")
    with pytest.raises(lc.TraceError, match=r"hints=\{'W': ...\} \(CLI: --hint W=...\)"):
        lc.analyze(WidthOnly(32), ("N", 3, 16, "W"), hints={"W": 30})  # pinned to 30: refused
    with pytest.raises(
        lc.TraceError, match=r"token ids: pass dtype=torch.long \(CLI: --dtype long\)"
    ):
        lc.analyze(FloatIds(), ("N", "L"))
    assert lc.analyze(FloatIds(), ("N", "L"), dtype=torch.long).params == 40
    assert "TraceError" in lc.__all__


def test_cli_untraceable_model_is_one_error_line(capsys, monkeypatch, tmp_path):
    (tmp_path / "pinmodels.py").write_text(
        "import torch\n"
        "class Branchy(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        return x * 2 if x.sum() > 0 else x\n"
        "def branchy():\n"
        "    return Branchy()\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", os.getcwd())])
    code = main(["model", "pinmodels:branchy", "--input", "N,8"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("layercost: error: cannot trace Branchy") and err.count("\n") == 1
    assert "pinmodels.py:4" in err and "Traceback" not in err


# -- the command line: a factory from the current directory, keyword inputs, hints --------------


def test_cli_imports_the_factory_from_the_current_directory(tmp_path):
    (tmp_path / "mymodels.py").write_text(
        "import torch\n"
        "def factory():\n"
        "    return torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU())\n"
    )
    env = dict(os.environ, PYTHONPATH=ROOT)  # this checkout, not the current directory
    argv = ["--input", "N,8", "--json"]
    ran = subprocess.run(  # -P: the current directory not on sys.path, as for the script
        [sys.executable, "-P", "-m", "layercost_sym", "model", "mymodels:factory", *argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert ran.returncode == 0, ran.stderr  # before: cannot load 'mymodels:factory'
    data = json.loads(ran.stdout)
    # Linear(8, 4): 4 outputs of 8 multiplies, 7 adds and a bias add; ReLU 1 per output
    assert data["params"] == "36" and data["costs"]["exact"] == "68*N"


TWO_TOKEN_INPUTS = """
import torch

class TwoTokenInputs(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.source = torch.nn.Embedding(100, 8)
        self.target = torch.nn.Embedding(100, 8)

    def forward(self, input_ids, decoder_input_ids):
        return self.target(decoder_input_ids) @ self.source(input_ids).transpose(1, 2)

def two_token_inputs():
    torch.manual_seed(0)
    return TwoTokenInputs().eval()
"""


def test_cli_keyword_inputs_and_hints(capsys, monkeypatch, tmp_path):
    (tmp_path / "kwmodels.py").write_text(TWO_TOKEN_INPUTS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", os.getcwd())])
    argv = ["model", "kwmodels:two_token_inputs"]
    argv += ["--input", "input_ids=N,L", "--input", "decoder_input_ids=N,T"]
    argv += ["--hint", "L=11,T=7", "--at", "N=2,L=9,T=4", "--json"]
    assert main(argv) == 0  # before: an unrecognised --hint, and input_ids=N a symbol name
    data = json.loads(capsys.readouterr().out)
    assert data["symbols"] == ["N", "L", "T"] and data["pinned"] == {}
    ids, decoder_ids = torch.randint(0, 100, (2, 9)), torch.randint(0, 100, (2, 4))
    model = sys.modules["kwmodels"].two_token_inputs()
    counted = lc.count(model, input_ids=ids, decoder_input_ids=decoder_ids)
    for convention in ("exact", "macs", "torch"):
        assert data["values"][convention] == counted.cost(convention)


def test_cli_hint_and_pinned_in_json(capsys, monkeypatch, tmp_path):
    (tmp_path / "squaremodels.py").write_text(
        "import torch\n"
        "class Square(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        torch._assert(x.shape[-1] == x.shape[-2], 'square images only')\n"
        "        return x.relu()\n"
        "def square():\n"
        "    return Square()\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", os.getcwd())])
    argv = ["model", "squaremodels:square", "--input", "N,3,H,W", "--json"]
    assert main([*argv, "--hint", "H=32", "--hint", "W=32"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["pinned"] == {} and data["symbols"] == ["N", "H", "W"]
    counted = lc.count(torch.nn.ReLU(), (2, 3, 5, 5))  # the model's one operator
    assert lc.evaluate(data["costs"]["exact"], {"N": 2, "H": 5}) == counted.cost("exact")
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["pinned"]["H"] == {"value": 224, "note": "squaremodels.py:4: square images only"}
    assert (
        main(["compare", "squaremodels:square", "--input", "N,3,H,W", "--conventions", "macs"]) == 0
    )
    out = capsys.readouterr().out
    assert "pinned: W = 224 (squaremodels.py:4: square images only)" in out.splitlines()


class _BareAssert(nn.Module):
    """timm's halo and bottleneck attention: ``_assert(H % block == 0, '')`` and
    ``_assert(H == height, '')``, asserts with no message of their own; the model states its
    image size (``img_size``), as timm's do."""

    def __init__(self, divisible: bool) -> None:
        super().__init__()
        self.divisible, self.img_size = divisible, 16

    def forward(self, x):
        if self.divisible:
            torch._assert(x.shape[-2] % 8 == 0, "")
        else:
            torch._assert(x.shape[-2] == 16, "")
        return x * 2


@pytest.mark.parametrize(("divisible", "cause"), [(True, "2"), (False, "1")])
def test_a_bare_assert_is_pinned_with_its_line(divisible, cause):
    # the note said "file:line: AssertionError" and the corpus filed timm's botnet, halonet and
    # bat_resnext under "other": the assert's own line says which cause it is
    from layercost_sym.torchtools.corpus import classify

    analysis = lc.analyze(_BareAssert(divisible), ("N", 3, "H", "W"))
    value, note = analysis.pinned["H"]
    line = 'x.shape[-2] % 8 == 0, ""' if divisible else 'x.shape[-2] == 16, ""'
    assert value == 16 and note.startswith("test_analyze_pinning.py:"), note
    assert line in note and note.endswith("(AssertionError)") and classify(note) == cause
    # both sides are pinned, as for an image model (the pin names the line for each)
    assert analysis.evaluate({"N": 3, "H": 16, "W": 16}, "exact") == 3 * 3 * 16 * 16
