"""Published cost formulas and numbers of convolutional networks, re-derived from the catalogue's
rules composed with ``Rule.at`` and from the reference architectures (layercost_sym/zoo/cnn.py).

Papers: Howard et al. 2017, "MobileNets" (arXiv:1704.04861): eqs. 2-7, Tables 1-3; Sandler et
al. 2018, "MobileNetV2" (arXiv:1801.04381): the bottleneck cost of Sec. 5.1 and Table 4's
MobileNetV2 row; torchvision's documented GFLOPS (its weights' ``meta["_ops"]``, counted in
multiply-adds).  Costs are ``macs`` (the papers' "mult-adds") per image (batch ``N = 1``)
unless stated.  Where a published number does not follow, the test shows the arithmetic."""

from fractions import Fraction

import pytest
import sympy
import torch
import torchvision

import layercost_sym as lc
from layercost_sym.zoo.cnn import inverted_residual

CONV = lc.rule("Conv2d")
SAME = lc.rule("Conv2d.same")  # padding='same': output side = input side, stride 1

# The paper's symbols: kernel side D_K, input channels M, output channels N (N_out here: N
# is the batch), feature-map side D_F; width multiplier alpha, resolution multiplier rho.
D_K, M, N_OUT, D_F, J = lc.symbols("D_K M N_out D_F j")
ALPHA, RHO = lc.symbols("alpha rho", integer=False)


def _millions(count: int, places: int) -> Fraction:
    """``count`` in millions, rounded to ``places`` decimals (exactly, no floats)."""
    return round(Fraction(count, 10**6), places)


# --- Howard et al. 2017, Sec. 3.1-3.3 --------------------------------------------------------
def _standard(k, c_in, c_out, side):
    return SAME.at(N=1, C_in=c_in, C_out=c_out, k=k, s=1, g=1, b=0, H=side, W=side)


def _depthwise(k, c, side):
    return SAME.at(N=1, C_in=c, C_out=c, k=k, s=1, g=c, b=0, H=side, W=side)


def _separable(k, c_in, c_out, side):
    return _depthwise(k, c_in, side).named("depthwise") + _standard(1, c_in, c_out, side).named(
        "pointwise"
    )


def test_standard_conv_eq2():
    # Eq. 2: D_K * D_K * M * N * D_F * D_F.  The paper assumes stride one and padding that
    # keeps the side D_F ('same'); with torch's symmetric padding that is an odd kernel
    # D_K = 2j + 1 padded by j: floor((D_F + 2j - 2j - 1)/1) + 1 = D_F.
    paper = D_K * D_K * M * N_OUT * D_F * D_F
    assert _standard(D_K, M, N_OUT, D_F).cost("macs") == paper
    odd = CONV.at(N=1, C_in=M, C_out=N_OUT, k=2 * J + 1, s=1, p=J, d=1, g=1, b=0, H=D_F, W=D_F)
    assert sympy.expand(odd.cost("macs") - paper.subs(D_K, 2 * J + 1)) == 0
    assert odd.output_shape == (1, N_OUT, D_F, D_F)
    assert _standard(D_K, M, N_OUT, D_F).params == D_K**2 * M * N_OUT  # no bias (BN follows)


def test_depthwise_conv_eq4():
    # Eq. 4: D_K * D_K * M * D_F * D_F -- groups = M, one D_K x D_K filter per channel
    assert _depthwise(D_K, M, D_F).cost("macs") == D_K * D_K * M * D_F * D_F
    assert _depthwise(D_K, M, D_F).params == D_K**2 * M


def test_depthwise_separable_eq5_and_its_ratio():
    separable = _separable(D_K, M, N_OUT, D_F)
    # Eq. 5: D_K D_K M D_F D_F + M N D_F D_F
    eq5 = D_K * D_K * M * D_F * D_F + M * N_OUT * D_F * D_F
    assert sympy.expand(separable.cost("macs") - eq5) == 0
    assert separable.breakdown("macs") == {
        "depthwise": (D_K**2 * M, D_K**2 * M * D_F**2),
        "pointwise": (M * N_OUT, M * N_OUT * D_F**2),
    }
    # the reduction in computation: eq. 5 / eq. 2 = 1/N + 1/D_K^2
    ratio = separable.cost("macs") / _standard(D_K, M, N_OUT, D_F).cost("macs")
    assert sympy.simplify(ratio - (1 / N_OUT + 1 / D_K**2)) == 0


def test_width_and_resolution_multipliers_eq7():
    # Eq. 7: D_K D_K alpha M rho D_F rho D_F + alpha M alpha N rho D_F rho D_F.  alpha M, alpha N
    # and rho D_F must be integers for a real layer; the rules take them as expressions.
    thin = _separable(D_K, ALPHA * M, ALPHA * N_OUT, RHO * D_F)
    eq7 = (
        D_K * D_K * ALPHA * M * RHO * D_F * RHO * D_F + ALPHA * M * ALPHA * N_OUT * (RHO * D_F) ** 2
    )
    assert sympy.expand(thin.cost("macs") - eq7) == 0
    # alpha scales the cost (and the parameters) roughly by alpha^2, rho the cost by rho^2
    at_1 = _separable(D_K, M, N_OUT, D_F)
    assert sympy.expand(thin.cost("macs").subs(RHO, 1) - at_1.cost("macs").subs(
        {M: ALPHA * M, N_OUT: ALPHA * N_OUT})) == 0  # fmt: skip
    assert sympy.expand(thin.cost("macs").subs(ALPHA, 1) - RHO**2 * at_1.cost("macs")) == 0


def test_table3_resource_use_of_one_layer():
    # Table 3: D_K = 3, M = N = 512, D_F = 14.  rho = 0.714 stands for 160/224 = 5/7 (so that
    # D_F = 14 * 5/7 = 10; 14 * 0.714 = 9.996 is not a side).
    rows = [
        # (layer, published mult-adds (M), published params (M), cost)
        ("conv 14x14x512", "462", "2.36", _standard(3, 512, 512, 14)),
        ("separable", "52.3", "0.27", _separable(3, 512, 512, 14)),
        ("alpha = 0.75", "29.6", "0.15", _separable(3, 384, 384, 14)),
        ("rho = 0.714", "15.1", "0.15", _separable(3, 384, 384, 10)),
    ]
    # exact values: 3*3*512*512*14*14 = 462,422,016 and 9*512^2 = 2,359,296;
    # 9*512*196 + 512*512*196 = 903,168 + 51,380,224 = 52,283,392 and 4,608 + 262,144 = 266,752;
    # 9*384*196 + 384*384*196 = 677,376 + 28,901,376 = 29,578,752 and 3,456 + 147,456 = 150,912;
    # 9*384*100 + 384*384*100 = 345,600 + 14,745,600 = 15,091,200 and 150,912 again.
    exact = [(462_422_016, 2_359_296), (52_283_392, 266_752), (29_578_752, 150_912),
             (15_091_200, 150_912)]  # fmt: skip
    for (layer, madds, params, cost), (our_madds, our_params) in zip(rows, exact, strict=True):
        assert (cost.cost("macs"), cost.params) == (our_madds, our_params), layer
        # the paper's figures are these rounded to the nearest at the digits it prints
        places = len(madds.partition(".")[2])
        assert _millions(our_madds, places) == Fraction(madds), layer
        assert _millions(our_params, 2) == Fraction(params), layer
    # the same rows from eq. 7 at alpha = 3/4 and rho = 5/7
    eq7 = D_K**2 * ALPHA * M * (RHO * D_F) ** 2 + ALPHA**2 * M * N_OUT * (RHO * D_F) ** 2
    at = {D_K: 3, M: 512, N_OUT: 512, D_F: 14, ALPHA: sympy.Rational(3, 4)}
    assert eq7.subs({**at, RHO: 1}) == 29_578_752
    assert eq7.subs({**at, RHO: sympy.Rational(5, 7)}) == 15_091_200


# Table 1 of Howard et al. 2017 as printed: (type, stride, kernel, C_in, C_out, input side).
_TABLE1 = [
    ("conv", 2, 3, 3, 32, 224),
    ("dw", 1, 3, 32, 32, 112), ("pw", 1, 1, 32, 64, 112),
    ("dw", 2, 3, 64, 64, 112), ("pw", 1, 1, 64, 128, 56),
    ("dw", 1, 3, 128, 128, 56), ("pw", 1, 1, 128, 128, 56),
    ("dw", 2, 3, 128, 128, 56), ("pw", 1, 1, 128, 256, 28),
    ("dw", 1, 3, 256, 256, 28), ("pw", 1, 1, 256, 256, 28),
    ("dw", 2, 3, 256, 256, 28), ("pw", 1, 1, 256, 512, 14),
    *[("dw", 1, 3, 512, 512, 14), ("pw", 1, 1, 512, 512, 14)] * 5,
    ("dw", 2, 3, 512, 512, 14), ("pw", 1, 1, 512, 1024, 7),
    ("dw", 2, 3, 1024, 1024, 7), ("pw", 1, 1, 1024, 1024, 7),
]  # fmt: skip


def _table1_layers():
    """Each printed conv row bound to the Conv2d rule (padding (k - 1)/2, no bias), and the
    FC layer; the last depthwise row's "s2" replaced by 1 (see the test)."""
    layers = []
    for i, (kind, s, k, c_in, c_out, side) in enumerate(_TABLE1):
        if i == len(_TABLE1) - 2:
            s = 1
        g = c_in if kind == "dw" else 1
        conv = CONV.at(N=1, C_in=c_in, C_out=c_out, k=k, s=s, p=(k - 1) // 2, d=1, g=g, b=0,
                       H=side, W=side)  # fmt: skip
        layers.append((kind, conv))
    layers.append(("fc", lc.rule("Linear").at(N=1, C_in=1024, C_out=1000, b=1)))
    return layers


def test_table1_rows_are_consistent_except_the_last_depthwise_stride():
    sides = [row[5] for row in _TABLE1] + [7]  # the avg pool's input is 7x7
    for i, (_, s, k, _, _, side) in enumerate(_TABLE1):
        out = (side + 2 * ((k - 1) // 2) - k) // s + 1
        if i == len(_TABLE1) - 2:
            # "Conv dw / s2" on 7x7x1024: stride 2 would give (7 + 2 - 3)//2 + 1 = 4, but the
            # next row's input is 7x7 (and the avg pool is 7x7): the stride is 1 (as in the
            # authors' TF-slim code and Keras)
            assert (out, sides[i + 1]) == (4, 7)
        else:
            assert out == sides[i + 1], i


def test_table1_mobilenet_224_mult_adds_and_params():
    layers = _table1_layers()
    madds = sum(cost.cost("macs") for _, cost in layers)
    weights = sum(cost.params for _, cost in layers)
    # conv and FC only (no BatchNorm), FC with its bias: 568,740,352 mult-adds and 4,210,088
    # parameters -- the paper's 569M and 4.2M
    assert (madds, weights) == (568_740_352, 4_210_088)
    assert _millions(madds, 0) == 569 and _millions(weights, 1) == Fraction("4.2")
    # the reference architecture has the same mult-adds; its parameters add BatchNorm's
    # weight and bias after each of the 27 convs: 2 per output channel
    arch = lc.architecture("mobilenet_v1", alpha=1, resolution=224)
    assert arch.evaluate({"N": 1}, "macs") == madds
    bn = 2 * sum(row[4] for row in _TABLE1)  # 2 * 10,944
    assert arch.params == weights + bn == 4_210_088 + 21_888


def test_table2_resources_per_layer_type():
    layers = _table1_layers()
    madds: dict[str, int] = {}
    params: dict[str, int] = {}
    for kind, cost in layers:
        madds[kind] = madds.get(kind, 0) + cost.cost("macs")
        # Table 2's parameter shares leave the FC bias out: with it, 1x1 would be 74.57%
        params[kind] = params.get(kind, 0) + cost.params - (1000 if kind == "fc" else 0)
    total_madds, total_params = sum(madds.values()), sum(params.values())

    def share(part, total):
        return round(Fraction(100 * part, total), 2)

    published = {  # type: (mult-adds %, params %)
        "pw": ("94.86", "74.59"),
        "dw": ("3.06", "1.06"),
        "conv": ("1.19", "0.02"),
        "fc": ("0.18", "24.33"),
    }
    for kind, (m, p) in published.items():
        assert share(params[kind], total_params) == Fraction(p), kind
        if kind != "conv":
            assert share(madds[kind], total_madds) == Fraction(m), kind
    # The first conv's share does not follow: 3*3*3*32*112*112 = 10,838,016 mult-adds of
    # 568,740,352 are 1.91%, not the printed 1.19% (the digits swapped: the printed shares sum
    # to 99.29%, with 1.91% to 100.01%).
    assert madds["conv"] == 10_838_016
    assert share(madds["conv"], total_madds) == Fraction("1.91")
    assert sum(Fraction(m) for m, _ in published.values()) == Fraction("99.29")


# --- Sandler et al. 2018 ---------------------------------------------------------------------
D_IN, D_OUT, T, HH, WW = lc.symbols("d_in d_out t h w")  # the paper's d', d'', t, h, w


@pytest.mark.parametrize("k", [3, 5])
def test_mobilenet_v2_bottleneck_cost(k):
    # Sec. 5.1: a block of input h x w, expansion t, kernel k, d' input and d'' output channels
    # costs h w d' t (d' + k^2 + d'') mult-adds: the 1x1 expansion (h w d' * t d'), the
    # k x k depthwise (h w t d' * k^2) and the linear 1x1 projection (h w t d' * d''), at
    # stride 1 (as the paper states it).
    block = inverted_residual("block", (1, D_IN, HH, WW), D_OUT, s=1, t=T, k=k)
    paper = HH * WW * D_IN * T * (D_IN + k**2 + D_OUT)
    assert sympy.expand(block.cost("macs") - paper) == 0
    assert block.output_shape == (1, D_OUT, HH, WW)
    # What the formula leaves out, in the exact convention (no bias, BatchNorm in eval):
    #  - the convs' adds beyond the multiplies: a dot product of n terms is 2n - 1 operations,
    #    so each conv is 2 * macs - (its outputs): outputs h w (t d' + t d' + d'')
    #  - three BatchNorms: 4 per element (sub, mul by rsqrt, mul, add) + 2 per channel
    #  - two ReLU6: 8 per element (torch's clamp decomposition) on the t d' channels
    #  - the residual add: h w d'' when d' = d'' (stride 1)
    outputs = HH * WW * (2 * T * D_IN + D_OUT)
    bn = 4 * outputs + 2 * (2 * T * D_IN + D_OUT)
    relu6 = 8 * 2 * T * D_IN * HH * WW
    rest = 2 * paper - outputs + bn + relu6
    e = lc.symbols("e")  # d'' = d' + e: no residual
    assert sympy.expand(block.flops.subs(D_OUT, D_IN + e) - rest.subs(D_OUT, D_IN + e)) == 0
    same = block.flops.subs(D_OUT, D_IN)
    assert sympy.expand(same - rest.subs(D_OUT, D_IN) - HH * WW * D_IN) == 0


def test_mobilenet_v2_bottleneck_with_stride_2():
    # The paper's formula assumes stride 1.  With stride 2 (no residual) the depthwise conv
    # and the projection run at the halved side h' = floor((h - 1)/2) + 1 (3x3, padding 1):
    # h w d' t d' + h' w' t d' (9 + d'').
    block = inverted_residual("block", (1, D_IN, HH, WW), D_OUT, s=2, t=T)
    h2, w2 = sympy.floor((HH - 1) / 2) + 1, sympy.floor((WW - 1) / 2) + 1
    expected = HH * WW * D_IN * T * D_IN + h2 * w2 * T * D_IN * (9 + D_OUT)
    assert sympy.expand(block.cost("macs") - expected) == 0


def test_mobilenet_v2_table4_row():
    # Table 4: MobileNetV2 (1.0, 224): 300M mult-adds, 3.4M parameters.  torchvision's model
    # (the one the architecture mirrors, built as TF-slim's) has 300,774,272 mult-adds and
    # 3,504,872 parameters with BatchNorm, 3,470,760 without (conv weights + FC weights and
    # bias).  Rounded these are 301M and 3.5M; the published figures are them truncated.
    arch = lc.architecture("mobilenet_v2", alpha=1, resolution=224)
    assert arch.evaluate({"N": 1}, "macs") == 300_774_272
    model = torchvision.models.mobilenet_v2()
    bn = sum(
        p.numel()
        for m in model.modules()
        if isinstance(m, torch.nn.BatchNorm2d)
        for p in m.parameters()
    )
    assert arch.params == 3_504_872 and arch.params - bn == 3_470_760
    assert (_millions(300_774_272, 0), _millions(3_470_760, 1)) == (301, Fraction("3.5"))
    assert (_truncated(300_774_272, 0), _truncated(3_470_760, 1)) == (300, Fraction("3.4"))


def _truncated(count: int, places: int) -> Fraction:
    """``count`` in millions, cut (not rounded) to ``places`` decimals."""
    step = Fraction(1, 10**places)
    return Fraction(count, 10**6) // step * step


# --- torchvision's documented GFLOPS and parameter counts ------------------------------------
@pytest.mark.parametrize(
    ("weights", "name", "hyperparameters"),
    [
        (torchvision.models.ResNet18_Weights.IMAGENET1K_V1, "resnet", {"depth": 18}),
        (torchvision.models.ResNet34_Weights.IMAGENET1K_V1, "resnet", {"depth": 34}),
        (torchvision.models.ResNet50_Weights.IMAGENET1K_V2, "resnet", {"depth": 50}),
        (torchvision.models.ResNet101_Weights.IMAGENET1K_V2, "resnet", {"depth": 101}),
        (torchvision.models.ResNet152_Weights.IMAGENET1K_V2, "resnet", {"depth": 152}),
        (torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V2, "mobilenet_v2", {"alpha": 1}),
    ],
)
def test_torchvision_documented_gflops_are_macs_at_224(weights, name, hyperparameters):
    # torchvision's table lists "GFLOPS" (4.09 for resnet50, 0.30 for mobilenet_v2); its
    # weights' meta["_ops"] holds them to three decimals (4.089, 0.301): multiply-adds at
    # 224 x 224, batch 1, in billions.
    arch = lc.architecture(name, resolution=224, **hyperparameters)
    macs = arch.evaluate({"N": 1}, "macs")
    assert round(Fraction(macs, 10**9), 3) == Fraction(str(weights.meta["_ops"]))
    assert arch.params == weights.meta["num_params"]
