"""Resampling and shape rules against the real torch modules, over drawn configurations.

For every drawn case: params, output shape and exact / macs / torch costs of the rule, evaluated
at ``lc.bind(module, shape)``, equal what ``lc.count`` measures on the module.  Options the rules
do not cover must be rejected by ``lc.bind``, never counted wrongly.
"""

import pytest
import sympy
import torch
from hypothesis import given

import layercost_sym as lc
from layercost_sym.errors import ShapeError
from layercost_sym.testing import _cases_resampling as cases
from layercost_sym.testing import torchcheck
from layercost_sym.testing.torchcheck import eager_not_stated

CASES = {
    # fractional=True: whole scale factors and others (k/4, awkward decimals such as 0.7, 2.3)
    **{
        f"Upsample-{mode}": cases.upsample_cases(mode=mode, fractional=True)
        for mode in cases.UPSAMPLE_MODES
    },
    "UpsamplingNearest2d": cases.upsampling_nearest2d_cases(fractional=True),
    "UpsamplingBilinear2d": cases.upsampling_bilinear2d_cases(fractional=True),
    "PixelShuffle": cases.pixel_shuffle_cases(),
    "PixelUnshuffle": cases.pixel_unshuffle_cases(),
    "ChannelShuffle": cases.channel_shuffle_cases(),
    "Unfold": cases.unfold_cases(),
    "Fold": cases.fold_cases(),
    **{name: cases.padding_cases(name=name) for name in cases.PADDING_LAYERS},
}


def check_against_torch(case) -> None:
    binding, _ = torchcheck.check_against_torch(case)
    assert binding.rule.module == case.name


@pytest.mark.parametrize("name", sorted(CASES))
def test_rule_matches_torch(name):
    given(CASES[name])(check_against_torch)()


def test_upsample_variant_follows_mode_and_scale():
    # the variant picked by bind is the one named after the module's options
    up = torch.nn.Upsample(scale_factor=3, mode="bicubic", align_corners=True)
    assert lc.bind(up, (1, 2, 4, 5)).rule.name == "Upsample.bicubic_align_scale"
    up = torch.nn.Upsample(scale_factor=(2.0, 7.0), mode="nearest")  # per axis
    binding = lc.bind(up, (1, 2, 4, 5))
    assert binding.rule.name == "Upsample.nearest_scale"
    assert (binding["H_out"], binding["W_out"], binding.output_shape()) == (8, 35, (1, 2, 8, 35))
    # nearest on 3-d and 5-d input: the variant follows the input's rank
    up = torch.nn.Upsample(size=5, mode="nearest")
    assert lc.bind(up, (1, 1, 4)).rule.name == "Upsample.nearest_1d"
    assert lc.bind(up, (1, 1, 2, 3, 4)).rule.name == "Upsample.nearest_3d"
    assert lc.bind(up, (1, 1, 2, 3)).rule.name == "Upsample"
    up = torch.nn.Upsample(size=(3, 9, 4), mode="trilinear")
    binding = lc.bind(up, (2, 1, 2, 2, 2))
    assert binding.rule.name == "Upsample.trilinear"
    # 21 per output element (7 lerps) + 21 per output index of each axis
    assert binding.cost() == 21 * 2 * 1 * 3 * 9 * 4 + 21 * (3 + 9 + 4)


def test_nearest_cost_does_not_grow_with_batch_or_channels():
    # the decomposition computes source indices once per output row/column; the gather is free
    r = lc.rule("Upsample.nearest_scale")
    assert r.flops.free_symbols == {lc.parse(n) for n in ("H_out", "W_out")}
    assert lc.evaluate(r.flops, {"H_out": 10, "W_out": 21}) == 2 * (10 + 21)


@pytest.mark.parametrize(
    "module, shape",
    [
        (torch.nn.Upsample(scale_factor=1.5, mode="bilinear"), (1, 1, 4, 5)),
        (torch.nn.Upsample(scale_factor=(2, 0.5), mode="nearest"), (1, 1, 4, 4)),
        (torch.nn.Upsample(scale_factor=(1.25, 2.5), mode="bicubic"), (2, 1, 3, 5)),
        (torch.nn.Upsample(scale_factor=0.7, mode="area"), (1, 2, 10, 3)),
        (torch.nn.Upsample(scale_factor=2.3, mode="linear", align_corners=True), (1, 1, 3)),
        (torch.nn.UpsamplingNearest2d(scale_factor=2.5), (1, 1, 4, 4)),
        (torch.nn.UpsamplingBilinear2d(scale_factor=(0.75, 1.1)), (1, 1, 4, 10)),
        # 0.29*100 is 28.999999999999996 in doubles: torch makes 28 rows, not 29
        (torch.nn.Upsample(scale_factor=(0.29, 1.0), mode="nearest"), (1, 1, 100, 2)),
    ],
)
def test_non_integer_scale_factor_binds_torch_output_sides(module, shape):
    # the output sides are bound as torch computes them, int(float(H) * s)
    binding = lc.bind(module, shape)
    assert binding.output_shape() == tuple(module(torch.randn(shape)).shape)
    torchcheck.check_against_torch(_case(module, shape))


def _case(module, shape):
    from layercost_sym.testing.strategies import LayerCase

    keys = ("size", "scale_factor", "mode", "align_corners", "recompute_scale_factor")
    kwargs = {k: getattr(module, k) for k in keys if hasattr(module, k)}
    if type(module) is not torch.nn.Upsample:  # the subclasses fix mode and align_corners
        kwargs = {k: kwargs[k] for k in ("size", "scale_factor")}
    return LayerCase(type(module).__name__, kwargs, (shape,))


def test_rows_of_an_awkward_scale_are_torch_double_product():
    up = torch.nn.Upsample(scale_factor=(0.29, 1.0), mode="nearest")
    assert lc.bind(up, (1, 1, 100, 2))["H_out"] == 28  # int(100.0 * 0.29); 29 in exact rationals
    assert up(torch.randn(1, 1, 100, 2)).shape[2] == 28


@pytest.mark.parametrize(
    "module, shape",
    [
        (torch.nn.Upsample(size=5, mode="nearest"), (1, 4)),  # 2-d: torch rejects too
        (torch.nn.Upsample(size=5, mode="bilinear"), (1, 1, 4)),  # torch rejects too
        (torch.nn.ReflectionPad1d(3), (1, 3)),  # pad >= side
        (torch.nn.CircularPad2d(4), (1, 3, 3)),  # wraps twice
        (torch.nn.PixelShuffle(2), (1, 6, 2, 2)),  # 6 % 4 != 0
        (torch.nn.PixelUnshuffle(2), (1, 1, 3, 4)),  # 3 % 2 != 0
        (torch.nn.ChannelShuffle(2), (1, 3, 2, 2)),  # 3 % 2 != 0
        (torch.nn.Unfold(kernel_size=4), (1, 1, 3, 5)),  # no block fits
        (torch.nn.Fold(output_size=4, kernel_size=2), (1, 8, 8)),  # 8 != 3*3 blocks
        (torch.nn.Fold(output_size=4, kernel_size=2), (1, 7, 9)),  # 7 % 4 != 0
    ],
)
def test_uncovered_options_are_rejected(module, shape):
    with pytest.raises(ShapeError):
        lc.bind(module, shape)


def test_negative_padding_is_not_counted():
    # torch crops with negative padding; the nonnegative padding symbols refuse it
    pad = torch.nn.ZeroPad2d((-1, 0, 1, 1))
    assert pad(torch.randn(1, 3, 4)).shape == (1, 5, 3)
    with pytest.raises(ValueError):
        binding = lc.bind(pad, (1, 3, 4))
        binding.output_shape()


def test_pixel_shuffle_round_trip_restores_shape():
    c, h, w = (lc.parse(n) for n in ("C", "H", "W"))
    down = lc.rule("PixelUnshuffle").output_shape[-3:]
    up = lc.rule("PixelShuffle").output_shape[-3:]
    c_in = lc.parse("C_in")
    restored = tuple(sympy.simplify(e.subs({c_in: down[0], h: down[1], w: down[2]})) for e in up)
    assert restored == (c, h, w)


def test_fold_counts_the_sum_of_overlapping_blocks():
    # Fold(Unfold(x)) with 2x2 blocks at stride 1 on a 3x3 image: 4 blocks of 4 values are added
    # into the output (16 adds) + index adds 2*2 + 2*2 = 24; Unfold alone is the 8 index adds
    fold = torch.nn.Fold(output_size=3, kernel_size=2)
    unfold = torch.nn.Unfold(kernel_size=2)
    assert lc.count(fold, (1, 4, 4)).flops == lc.bind(fold, (1, 4, 4)).cost() == 24
    assert lc.count(unfold, (1, 1, 3, 3)).flops == lc.bind(unfold, (1, 1, 3, 3)).cost() == 8


# Rules of this family that do not state bytes under eager yet (issue 14); a rule leaves the
# set when it states them (the property tests above then prove them, in float32 and bfloat16).
EAGER_NOT_YET: set[str] = set()


def test_eager_bytes_stated_by_every_resampling_rule_but_the_listed_ones():
    assert eager_not_stated("resampling") == EAGER_NOT_YET
