"""Bridges: the convolutional reference architectures (layercost_sym/zoo/cnn.py) equal
``lc.analyze`` of the torch model they mirror, as closed forms in the batch ``N`` and the input
side ``resolution`` (analyze's ``H = W = resolution``) and at drawn points; parameters and every
convention both define (exact, macs, torch, fvcore, thop, ptflops).

Each torch model is built and analysed once (module-level cache); the closed forms are then
compared symbolically and evaluated at many points."""

from fractions import Fraction
from functools import cache

import pytest
import sympy
import torch
import torchvision
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch import nn
from torchvision.models._utils import _make_divisible

import layercost_sym as lc
from layercost_sym.zoo.cnn import _floor_clause, _merge_floors, make_divisible

N, H, W = lc.symbols("N H W")
R = lc.symbols("resolution")
ALPHA = lc.symbols("alpha", integer=False)
CONVENTIONS = ("exact", "macs", "torch", "fvcore", "thop", "ptflops")


# --- the MobileNet v1 mirror ----------------------------------------------------------------
class MobileNetV1(nn.Module):
    """Howard et al. 2017, Table 1, in torch (torchvision has no MobileNet v1): every conv
    without bias and followed by BatchNorm2d and ReLU, 3x3 convs padded by 1 (TF 'SAME' output
    sizes), the last depthwise conv of stride 1 (the table's "s2" there is a typo: 7x7 in and
    out), a global average pool, flatten, FC with bias; ``int(M * alpha)`` channels (Keras)."""

    # (depthwise stride, pointwise output channels) of blocks 1 .. 13
    BLOCKS = ((1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512), *[(1, 512)] * 5,
              (2, 1024), (1, 1024))  # fmt: skip

    def __init__(self, alpha: float = 1.0, classes: int = 1000) -> None:
        super().__init__()

        def width(m: int) -> int:
            return int(m * alpha)

        def cba(c_in: int, c_out: int, k: int, s: int, g: int) -> nn.Sequential:
            conv = nn.Conv2d(c_in, c_out, k, s, (k - 1) // 2, groups=g, bias=False)
            return nn.Sequential(conv, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))

        self.stem = cba(3, width(32), 3, 2, 1)
        c = width(32)
        for i, (s, m) in enumerate(self.BLOCKS, start=1):
            block = nn.Sequential(cba(c, c, 3, s, c), cba(c, width(m), 1, 1, 1))
            self.add_module(f"block{i}", block)
            c = width(m)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        x = self.stem(x)
        for i in range(1, len(self.BLOCKS) + 1):
            x = getattr(self, f"block{i}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _resnet50_v1() -> nn.Module:
    """torchvision's resnet50 with each downsampling bottleneck's stride moved from its 3x3
    (conv2) to its first 1x1 (conv1): ResNet v1 as He et al. 2016 and Caffe build it."""
    model = torchvision.models.resnet50(weights=None)
    for stage in (model.layer2, model.layer3, model.layer4):
        stage[0].conv1.stride, stage[0].conv2.stride = (2, 2), (1, 1)
    return model


# --- which part of the architecture each analysed call belongs to ---------------------------
def _resnet_part(name: str) -> str:
    top = name.split(":")[0].split(".")[0]
    if top in ("conv1", "bn1", "relu", "maxpool"):
        return "stem"
    return top if top.startswith("layer") else "head"  # avgpool, :view, fc


# features.<i> of torchvision's MobileNetV2 -> the row of Table 2 it belongs to
_V2_ROWS = {i: f"bottleneck{row}" for i, row in enumerate([1, 2, 2, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5,
                                                          6, 6, 6, 7], start=1)}  # fmt: skip


def _mobilenet_v2_part(name: str) -> str:
    parts = name.split(":")[0].split(".")
    if parts[0] != "features":
        return "head"  # :mean, :view, classifier.*
    i = int(parts[1])
    return "stem" if i == 0 else "conv_last" if i == 18 else _V2_ROWS[i]


def _mobilenet_v1_part(name: str) -> str:
    top = name.split(":")[0].split(".")[0]
    return top if top.startswith(("stem", "block")) else "head"


# key: (torch model constructor, architecture name, hyperparameters, part of a call)
BRIDGES = {
    "resnet18": (torchvision.models.resnet18, "resnet", {"depth": 18}, _resnet_part),
    "resnet34": (torchvision.models.resnet34, "resnet", {"depth": 34}, _resnet_part),
    "resnet50": (torchvision.models.resnet50, "resnet", {"depth": 50}, _resnet_part),
    "resnet101": (torchvision.models.resnet101, "resnet", {"depth": 101}, _resnet_part),
    "resnet152": (torchvision.models.resnet152, "resnet", {"depth": 152}, _resnet_part),
    "resnet50_v1": (_resnet50_v1, "resnet", {"depth": 50, "version": "v1"}, _resnet_part),
    "mobilenet_v2": (torchvision.models.mobilenet_v2, "mobilenet_v2", {"alpha": 1},
                     _mobilenet_v2_part),
    "mobilenet_v2_0.75": (lambda: torchvision.models.mobilenet_v2(width_mult=0.75),
                          "mobilenet_v2", {"alpha": 0.75}, _mobilenet_v2_part),
    "mobilenet_v1": (MobileNetV1, "mobilenet_v1", {"alpha": 1}, _mobilenet_v1_part),
    "mobilenet_v1_0.5": (lambda: MobileNetV1(0.5), "mobilenet_v1", {"alpha": 0.5},
                         _mobilenet_v1_part),
}  # fmt: skip


@cache
def _model(key: str) -> nn.Module:
    torch.manual_seed(0)
    return BRIDGES[key][0]().eval()


@cache
def _analysis(key: str):
    analysis = lc.analyze(_model(key), ("N", 3, "H", "W"))
    assert not analysis.unsupported
    return analysis


@cache
def _architecture(key: str):
    """The architecture with resolution (and N) left symbolic."""
    _, name, hyperparameters, _ = BRIDGES[key]
    return lc.architecture(name, **hyperparameters)


def _normal(expr: sympy.Expr) -> sympy.Expr:
    """analyze's closed form at H = W = resolution, written as the architecture writes it:
    MaxPool2d's output side without ceil_mode is its floor clause, nested floors of strides
    merged (both identities proven in cnn.py's docstrings; the point tests below do not rely on
    them)."""
    return sympy.expand(_merge_floors(_floor_clause(expr.xreplace({H: R, W: R}))))


@pytest.mark.parametrize("key", list(BRIDGES))
def test_architecture_equals_analyze_as_closed_forms(key):
    analysis, arch = _analysis(key), _architecture(key)
    assert arch.free_symbols == {N, R}
    assert arch.params == analysis.params
    assert set(CONVENTIONS) <= set(arch.conventions) & set(analysis.conventions)
    for convention in CONVENTIONS:
        difference = _normal(analysis.cost(convention)) - sympy.expand(arch.cost(convention))
        assert difference == 0, (convention, difference)


@pytest.mark.parametrize("key", list(BRIDGES))
def test_each_part_equals_the_calls_of_the_torch_modules_it_names(key):
    analysis, arch = _analysis(key), _architecture(key)
    to_part = BRIDGES[key][3]
    for convention in ("exact", "macs"):
        grouped: dict[str, list] = {}
        for layer in analysis.layers:
            entry = grouped.setdefault(to_part(layer.name), [0, 0])
            entry[0] += layer.params
            entry[1] += layer.cost(convention)
        breakdown = arch.breakdown(convention)
        assert list(breakdown) == list(grouped)  # the same parts, in the model's order
        for part, (params, cost) in breakdown.items():
            assert params == grouped[part][0], part
            assert sympy.expand(cost - _normal(grouped[part][1])) == 0, (part, convention)


# Resolutions from 33 (below it the last stage is 1x1, a shape torch specialises away while
# tracing: analyze's guards) to 4x the usual 224; the batch 1 or 2.
@given(key=st.sampled_from(list(BRIDGES)), n=st.integers(1, 2), side=st.integers(33, 900))
@example(key="resnet50", n=1, side=224)
@example(key="mobilenet_v2", n=2, side=193)
@example(key="mobilenet_v2_0.75", n=1, side=161)
def test_architecture_equals_analyze_at_drawn_points(key, n, side):
    analysis, arch = _analysis(key), _architecture(key)
    at = {"N": n, "H": side, "W": side}
    assert arch.evaluate({"N": n, "resolution": side}, quantity="params") == analysis.evaluate(
        at, quantity="params"
    )
    for convention in ("exact", "macs", "torch"):
        assert arch.evaluate({"N": n, "resolution": side}, convention) == analysis.evaluate(
            at, convention
        ), convention


@pytest.mark.parametrize("key", ["resnet18", "resnet50", "mobilenet_v2", "mobilenet_v2_0.75",
                                 "mobilenet_v1"])  # fmt: skip
@pytest.mark.parametrize("side", [224, 193, 161])
def test_architecture_at_a_number_resolution(key, side):
    _, name, hyperparameters, _ = BRIDGES[key]
    arch = lc.architecture(name, resolution=side, **hyperparameters)
    assert arch.free_symbols <= {N}
    analysis = _analysis(key)
    for n in (1, 2):
        at = {"N": n, "H": side, "W": side}
        for convention in ("exact", "macs", "torch"):
            assert arch.evaluate({"N": n}, convention) == analysis.evaluate(at, convention)


def test_mobilenet_v1_mirror_is_what_torch_counts():
    # the mirror against torch itself (the analyses above go through analyze's symbolic trace)
    model = _model("mobilenet_v1")
    counted = lc.count(model, (2, 3, 37, 37))
    arch = _architecture("mobilenet_v1")
    assert counted.params == arch.params == sum(p.numel() for p in model.parameters())
    for convention in ("exact", "macs", "torch"):
        assert arch.evaluate({"N": 2, "resolution": 37}, convention) == counted.cost(convention)


# --- MobileNetV2 at any width multiplier ----------------------------------------------------
# Multipliers k/64: every c*alpha is then exact in binary floating point, so torchvision's
# float arithmetic in _make_divisible equals the exact rational one.
_MULTIPLIERS = st.integers(1, 160).map(lambda k: Fraction(k, 64))


@given(alpha=_MULTIPLIERS, c=st.sampled_from([16, 24, 32, 64, 96, 160, 320, 1280]))
def test_make_divisible_is_torchvisions(alpha, c):
    ours = make_divisible(c * sympy.Rational(alpha.numerator, alpha.denominator))
    assert ours == _make_divisible(c * float(alpha), 8)
    symbolic = make_divisible(c * ALPHA).xreplace({ALPHA: sympy.Rational(alpha)})
    assert symbolic == ours


@cache
def _mobilenet_v2_symbolic():
    return lc.architecture("mobilenet_v2")  # alpha and resolution both symbols


# A fresh torchvision model and its analysis per example (about 1 s each): few examples.
@settings(max_examples=3)
@given(alpha=_MULTIPLIERS, side=st.integers(33, 300))
@example(alpha=Fraction(1, 16), side=97)  # 32a -> 8 and 16a -> 8: the first block adds
@example(alpha=Fraction(7, 4), side=224)  # alpha > 1 widens the last conv too
def test_mobilenet_v2_symbolic_width_equals_torchvision(alpha, side):
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2(width_mult=float(alpha)).eval()
    analysis = lc.analyze(model, ("N", 3, side, side))
    arch = _mobilenet_v2_symbolic().at(alpha=sympy.Rational(alpha), resolution=side)
    assert arch.free_symbols == {N}
    assert arch.params == analysis.params == sum(p.numel() for p in model.parameters())
    for convention in ("exact", "macs", "torch"):
        assert sympy.expand(arch.cost(convention) - analysis.cost(convention)) == 0, convention


def test_first_block_adds_its_input_only_where_its_channels_agree():
    blocks = [m for m in torchvision.models.mobilenet_v2(width_mult=1 / 16).features[1:]]
    assert blocks[0].use_res_connect  # 32/16 and 16/16 both round up to 8 channels
    symbolic = _mobilenet_v2_symbolic().at(resolution=64)
    # at alpha = 1/16 the stem halves 64 to 32 and bottleneck1 is a dw 3x3 conv on 8 channels
    # (2*9 - 1 per output), BatchNorm (4 per element, 2 per channel), ReLU6 (8 per element),
    # a 1x1 conv 8 -> 8 (2*8 - 1 per output), BatchNorm, and the residual add (1 per element)
    per_pixel = 8 * 17 + 4 * 8 + 8 * 8 + 8 * 15 + 4 * 8 + 8
    expected = per_pixel * N * 32 * 32 + 2 * 8 + 2 * 8
    for arch in (
        symbolic.at(alpha=sympy.Rational(1, 16)),
        lc.architecture("mobilenet_v2", alpha=sympy.Rational(1, 16), resolution=64),
    ):
        assert sympy.expand(arch.breakdown("exact")["bottleneck1"][1] - expected) == 0
    # at alpha = 1 (32 -> 16 channels) there is no add: the add rule's part is 0
    assert blocks[0].use_res_connect is True
    assert not torchvision.models.mobilenet_v2().features[1].use_res_connect


# --- v1 against v1.5 -----------------------------------------------------------------------
def _side(stride: int) -> sympy.Expr:
    # the side after a total stride of 2**j with 3x3/7x7 'same'-padded convs: ceil(R/stride)
    return sympy.floor((R - 1) / stride) + 1


@pytest.mark.parametrize("depth", [50, 101, 152])
def test_v1_and_v1_5_differ_by_the_first_1x1_at_the_input_resolution(depth):
    v15 = lc.architecture("resnet", depth=depth)
    v1 = lc.architecture("resnet", depth=depth, version="v1")
    assert v15.params == v1.params  # the same convolutions, strided elsewhere
    # Only the first bottleneck of stages 2-4 differs.  Its conv2 (3x3) outputs the halved side
    # h' = floor((h - 1)/2) + 1 in both versions (3x3, padding 1, stride 2 in v1.5; stride 1 on
    # the already halved map in v1), and conv3, the downsample and the add see h' in both.
    # conv1 (1x1, C_in -> w) runs at the input side h in v1.5 but at h' in v1 (1x1, stride 2:
    # floor((h - 1)/2) + 1 = h'), and so do bn1 and relu after it.  Per sample:
    #   macs:  C_in*w*(h^2 - h'^2)
    #   exact: w*(2*C_in - 1)*(h^2 - h'^2) for the conv (2*C_in - 1 per output, no bias)
    #          + 4*w*(h^2 - h'^2) for BatchNorm in eval (sub, mul by rsqrt, mul, add; the
    #          2*w per-channel terms cancel) + w*(h^2 - h'^2) for ReLU
    #        = w*(2*C_in + 4)*(h^2 - h'^2)
    # with (C_in, w) = (256, 128), (512, 256), (1024, 512) entering stages 2, 3, 4 at the
    # total strides 4, 8, 16.
    macs = exact = 0
    for c_in, w, stride in ((256, 128, 4), (512, 256, 8), (1024, 512, 16)):
        area = _side(stride) ** 2 - _side(2 * stride) ** 2
        macs += N * c_in * w * area
        exact += N * w * (2 * c_in + 4) * area
    assert sympy.expand(v15.cost("macs") - v1.cost("macs") - macs) == 0
    assert sympy.expand(v15.cost("torch") - v1.cost("torch") - 2 * macs) == 0
    assert sympy.expand(v15.flops - v1.flops - exact) == 0
    # at 224: (56^2 - 28^2)*2^15 = (28^2 - 14^2)*2^17 = (14^2 - 7^2)*2^19 = 77,070,336 per
    # stage, 231,211,008 in all: torchvision's 4.09 GFLOPS against 3.86 for v1
    assert lc.evaluate(macs, {"N": 1, "resolution": 224}) == 3 * 77_070_336


@pytest.mark.parametrize("depth", [18, 34])
def test_v1_is_v1_5_for_basic_blocks(depth):
    v15 = lc.architecture("resnet", depth=depth)
    v1 = lc.architecture("resnet", depth=depth, version="v1")
    assert v15.params == v1.params and v15.cost("exact") == v1.cost("exact")


# --- shape of the results -----------------------------------------------------------------
def test_resnet_to_latex_renders_every_part_in_the_resolution():
    arch = lc.architecture("resnet", depth=18)
    assert arch.hyperparameters["resolution"] == R
    for convention in ("exact", "macs"):
        latex = arch.to_latex(convention)
        lines = latex.splitlines()
        assert lines[3] == r"\begin{tabular}{lll}" and lines[-2] == r"\end{tabular}"
        rows = [line.split(" & ")[0] for line in lines if line.endswith(r"\\")]
        assert rows == ["part", "stem", "layer1", "layer2", "layer3", "layer4", "head", "total"]
        assert r"\left\lfloor" in latex and "resolution" in latex
    assert "resolution" in arch._repr_latex_()


def test_registered_names_and_parts():
    assert {"mobilenet_v1", "mobilenet_v2", "resnet"} <= set(lc.architectures())
    assert list(lc.architecture("mobilenet_v1").breakdown()) == [
        "stem",
        *[f"block{i}" for i in range(1, 14)],
        "head",
    ]
    assert list(lc.architecture("mobilenet_v2").breakdown()) == [
        "stem",
        *[f"bottleneck{i}" for i in range(1, 8)],
        "conv_last",
        "head",
    ]
    arch = lc.architecture("resnet")  # default: depth 50, v1.5 (torchvision)
    assert arch.hyperparameters["depth"] == 50 and arch.hyperparameters["version"] == "v1.5"
    assert "torchvision.models.resnet" in arch.mirrors


def test_mobilenet_v1_width_is_floor_of_alpha_m():
    arch = lc.architecture("mobilenet_v1")
    # the stem: 3x3 conv 3 -> floor(32 alpha), BatchNorm (2 per channel)
    assert arch.breakdown()["stem"][0] == 29 * sympy.floor(32 * ALPHA)
    # at alpha = 0.3 every width is int(M * 0.3), as in the mirror (Keras' rule)
    model = MobileNetV1(0.3)
    assert arch.at(alpha=sympy.Rational(3, 10)).params == sum(p.numel() for p in model.parameters())


def test_bad_hyperparameters_are_errors_naming_them():
    with pytest.raises(lc.ArchitectureError, match="depth=20"):
        lc.architecture("resnet", depth=20)
    with pytest.raises(lc.ArchitectureError, match="version"):
        lc.architecture("resnet", version="v2")
    with pytest.raises(lc.ArchitectureError, match=r"floor\(1/64\*32\) = 0 channels"):
        lc.architecture("mobilenet_v1", alpha=sympy.Rational(1, 64))
    with pytest.raises(lc.ArchitectureError, match="resolution must be an integer"):
        lc.architecture("resnet", resolution=22.5)
