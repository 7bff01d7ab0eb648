"""Issue 17's causes of a failed symbolic analysis, each on two small real models.

Every closed form is checked against :func:`layercost_sym.count` (params by numel, ``exact`` by
the op counter, ``torch`` by FlopCounterMode) at two shapes.  Tests elsewhere cover the same
causes on other models: cause 1 (asserted size) on torchvision's vit_b_16, timm's mixer and
transformers' ViT, cause 2 (divisible trace sizes) on a dynamic timm ViT and square hints on a
toy model, cause 3 (a torch op needing ints) on swin_t and maxvit_t
(tests/test_analyze_pinning.py); cause 4's sliding window (Mistral, window 8) as a piecewise
closed form exact on both sides of the window: the prefill at P = 3, 5, 9 and the decode steps
below, across and beyond it (tests/test_generation.py, test_closed_forms_equal_hand_stepped_counts
and test_sliding_window_is_flat_beyond_the_window; ``lc.analyze`` alone refuses L < 8, naming
its guard ``L >= 8``);
cause 5 on Mixtral and DeepSeek-V3 (tests/test_moe.py); cause 6 in tests/test_analyze.py; cause
7's simplified guards on a toy model (tests/test_analyze.py, guards shown simplified).
The models are timm's ``test_*`` models, small kwargs variants, blocks of a model, and the
corpus' tiny transformers configs (``layercost_sym.torchtools.corpus_models``).
"""

from functools import cache
from typing import Any

import pytest
import sympy
import torch

import layercost_sym as lc
from layercost_sym.torchtools.corpus_models import build


def _timm(name: str, **kwargs: Any) -> torch.nn.Module:
    import timm

    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, **kwargs).eval()


def _assert_exact(model, analysis, inputs, at: dict[str, int], **options: Any) -> None:
    """The closed form at ``at`` equals lc.count of ``model`` on ``inputs``."""
    counted = lc.count(model, *inputs, **options)
    assert analysis.evaluate(at, quantity="params") == counted.params
    for convention in ("exact", "torch"):
        assert analysis.evaluate(at, convention) == counted.cost(convention), (at, convention)


def _image(n: int, h: int, w: int, channels: int = 3) -> tuple[int, ...]:
    return (n, channels, h, w)


@cache
def _corpus(source: str, name: str):
    subject = build(source, name)
    positional = [spec for key, spec in subject.specs.items() if not key]
    keywords = {key: spec for key, spec in subject.specs.items() if key}
    analysis = lc.analyze(subject.model, *positional, **keywords, **subject.options)
    return subject, analysis


def _assert_corpus_exact(subject, analysis, sizes: dict[str, int]) -> None:
    positional, keywords = subject.inputs(sizes)
    _assert_exact(subject.model, analysis, positional, sizes, **keywords)


# -- 1: the model accepts one input size ---------------------------------------------------------


def test_cause_1_an_asserted_size_is_pinned_and_the_rest_stays_symbolic():
    # timm's PatchEmbed asserts the size it was built for ("Input height (H) doesn't match
    # model (64)."): H and W pinned there, N symbolic
    model = _timm("test_vit3", img_size=64, num_classes=10)
    analysis = lc.analyze(model, ("N", 3, "H", "W"))
    assert {d: v for d, (v, _) in analysis.pinned.items()} == {"H": 64, "W": 64}
    assert analysis.pinned["H"][1] == (
        "timm/layers/patch_embed.py:124: Input height (H) doesn't match model (64)."
    )
    assert {"H == 64", "W == 64"} <= set(analysis.range)
    assert {s.name for s in analysis.cost("exact").free_symbols} == {"N"}
    for n in (1, 3):
        _assert_exact(model, analysis, [torch.randn(_image(n, 64, 64))], {"N": n, "H": 64, "W": 64})
    with pytest.raises(lc.EvaluationError, match="guard H == 64 fails at H=80"):
        analysis.evaluate({"N": 1, "H": 80, "W": 64})


def test_cause_1_whisper_pins_its_mel_length_and_keeps_the_batch_and_text_length():
    # Whisper's encoder: "expects the mel input features to be of length 64" (its config)
    subject, analysis = _corpus("transformers", "whisper")
    assert analysis.pinned["T"][0] == 64 and set(analysis.pinned) == {"T"}
    assert analysis.pinned["T"][1].startswith("transformers/models/whisper/modeling_whisper.py:")
    assert "expects the mel input features to be of length 64" in analysis.pinned["T"][1]
    assert {s.name for s in analysis.cost("exact").free_symbols} == {"N", "L"}
    for sizes in (subject.default, subject.second[0]):  # N=1, L=16 and N=2, L=13
        _assert_corpus_exact(subject, analysis, {**sizes, "T": 64})
    with pytest.raises(lc.EvaluationError, match="guard T == 64 fails"):
        analysis.evaluate({**subject.default, "T": 80})


# -- 2: the model needs sizes divisible by its patch -----------------------------------------------


@pytest.mark.parametrize("name", ["test_vit", "test_vit2"])
def test_cause_2_traced_at_multiples_of_the_patch_and_symbolic(name):
    # dynamic_img_size without a position table to resample: 227 is refused ("should be
    # divisible by patch size (16)"), the retrace at multiples of 16 keeps H and W symbolic
    model = _timm(name, dynamic_img_size=True, pos_embed="none", class_token=False,
                  global_pool="avg", num_classes=10)  # fmt: skip
    analysis = lc.analyze(model, ("N", 3, "H", "W"))
    assert analysis.pinned == {}
    assert {s.name for s in analysis.cost("exact").free_symbols} == {"N", "H", "W"}
    for n, h, w in [(1, 32, 32), (2, 48, 80)]:  # 80 = 5 * 16: divisible, not square
        _assert_exact(model, analysis, [torch.randn(_image(n, h, w))], {"N": n, "H": h, "W": w})
    with pytest.raises(lc.EvaluationError, match="H=65"):  # not divisible: refused
        analysis.evaluate({"N": 1, "H": 65, "W": 80})


def test_cause_2_square_hints_stay_symbolic_on_a_real_model():
    # before, a hint for H moved W's trace size; the two sides stay two symbols (duck sizing
    # off) and the closed form is exact at a non-square size
    model = _timm("test_vit2", dynamic_img_size=True, pos_embed="none", class_token=False,
                  global_pool="avg", num_classes=10)  # fmt: skip
    square = lc.analyze(model, ("N", 3, "H", "W"), hints={"H": 64, "W": 64})
    assert square.pinned == {}
    assert {s.name for s in square.cost("exact").free_symbols} == {"N", "H", "W"}
    _assert_exact(model, square, [torch.randn(_image(2, 32, 96))], {"N": 2, "H": 32, "W": 96})


# -- 3: a torch operation needs concrete sizes -----------------------------------------------------


@pytest.mark.parametrize(
    ("source", "name", "call"),
    [
        # transformers' Swin pads to its window by a size-dependent amount
        ("transformers", "swin", "nn.functional.pad("),
        # timm's dynamic ViT resamples its position table to the symbolic grid
        ("timm", "test_vit", "F.interpolate("),
    ],
)
def test_cause_3_a_torch_op_that_needs_ints_pins_its_dims_and_names_the_op(source, name, call):
    subject, analysis = _corpus(source, name)
    assert set(analysis.pinned) == {"H", "W"}
    for _value, note in analysis.pinned.values():
        assert call in note and "SymIntArrayRef expected to contain only concrete" in note, note
    assert {s.name for s in analysis.cost("exact").free_symbols} == {"N"}
    pins = {d: v for d, (v, _) in analysis.pinned.items()}
    for sizes in (subject.default, subject.second[0]):
        _assert_corpus_exact(subject, analysis, {**sizes, **pins})


def test_cause_3_upsampling_by_a_scale_factor_keeps_the_sizes_symbolic():
    # nn.Upsample(scale_factor=2) reaches ATen's upsample_nearest2d.vec, whose C++ entry read
    # every size as an int: torch specialised N, H and W (HRNet's fuse layers: all 11 hrnet
    # models pinned, N too).  The trace now calls the .default overload with .vec's output size
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, stride=2, padding=1),
        torch.nn.Upsample(scale_factor=2, mode="nearest"),
        torch.nn.Conv2d(4, 2, 1),
    ).eval()
    analysis = lc.analyze(model, ("N", 3, "H", "W"))
    assert analysis.pinned == {} and analysis.range == []
    for n, h, w in [(1, 9, 12), (2, 16, 7), (3, 5, 5)]:
        _assert_exact(model, analysis, [torch.randn(_image(n, h, w))], {"N": n, "H": h, "W": w})


# -- 4: guards that refuse the shapes a user asks for ----------------------------------------------


def test_cause_4_a_memory_layout_guard_does_not_refuse_batch_1():
    # NextViT's transformer block: F.linear's layout check records N*X != X (X the tokens after
    # the spatial reduction), that is N != 1, which refused N=1 although the formula is exact
    # there (the whole nextvit_small: the same guard, shown in docs/corpus.md)
    from timm.models.nextvit import NextTransformerBlock

    torch.manual_seed(0)
    block = NextTransformerBlock(64, 128, stride=2, sr_ratio=2, head_dim=32, drop_path=0.0)
    block.eval()
    analysis = lc.analyze(block, ("N", 64, "H", "W"))
    assert analysis.pinned == {}
    for n, h, w in [(1, 28, 28), (2, 29, 37)]:
        at = {"N": n, "H": h, "W": w}
        _assert_exact(block, analysis, [torch.randn(_image(n, h, w, 64))], at)


@cache
def _crossvit():
    model = _timm("crossvit_tiny_240", depth=[[1, 1, 0]], num_classes=10)
    return model, lc.analyze(model, ("N", 3, "H", "W"))


def test_cause_4_a_model_that_resizes_its_input_is_piecewise_over_its_branches():
    # CrossViT resizes to 240 and 224 (bicubic, its own branch "if H != ss[0] ..."): before,
    # torch specialised N, H and W to their trace sizes and aten.floor was uncounted; then the
    # closed form refused 240 (its guard H != 240), the model's default size.  Now each guard
    # H != k is traced on its other side too (H given as k: there W != k, traced again), and the
    # closed form is a Piecewise: exact at the sizes the model resizes and at its own
    model, analysis = _crossvit()
    assert analysis.pinned == {} and analysis.unsupported == []
    assert {"H != 240", "H != 224"} <= set(analysis.range)  # the general trace's branch
    H, W = lc.symbols("H W")
    assert [c.condition for c in analysis.cases] == [sympy.Eq(H, 240), sympy.Eq(H, 224)]
    assert [[d.condition for d in c.analysis.cases] for c in analysis.cases] == [
        [sympy.Eq(W, 240)],
        [sympy.Eq(W, 224)],
    ]
    assert "where H == 240, the model's code takes another branch" in analysis.notes[0]
    general = analysis.cost("exact").args[-1].expr  # resized to 240 and 224: H, W gone
    assert {s.name for s in general.free_symbols} == {"N"}
    shapes = [(1, 227, 229), (2, 200, 256), (1, 240, 240), (2, 240, 231), (1, 224, 224)]
    for n, h, w in shapes:
        _assert_exact(model, analysis, [torch.randn(_image(n, h, w))], {"N": n, "H": h, "W": w})
    # lc.evaluate of the closed form answers as the analysis does, on every branch
    at = {"N": 1, "H": 240, "W": 240}
    assert lc.evaluate(analysis.cost("exact"), at) == analysis.evaluate(at, "exact")


def test_cause_4_crossvit_at_its_own_size_pins_it_and_keeps_the_batch():
    model, _ = _crossvit()
    analysis = lc.analyze(model, ("N", 3, "H", "W"), hints={"H": 240, "W": 240})
    assert {d: v for d, (v, _) in analysis.pinned.items()} == {"H": 240, "W": 240}
    assert "crossvit.py:" in analysis.pinned["H"][1]
    assert {s.name for s in analysis.cost("exact").free_symbols} == {"N"}
    for n in (1, 2):
        at = {"N": n, "H": 240, "W": 240}
        _assert_exact(model, analysis, [torch.randn(_image(n, 240, 240))], at)


# -- 5: data-dependent control flow (mixture of experts) -------------------------------------------


def test_cause_5_qwen2_moe_counts_what_each_experts_implementation_runs():
    # Qwen2-MoE (Mixtral: tests/test_moe.py): the closed form counts every routed (token,
    # expert) pair; FlopCounterMode on real runs of the eager loop (which skips experts no token
    # chose: a zero router sends every token to the same k) and of batched_mm equals it
    from torch.utils.flop_counter import FlopCounterMode

    from layercost_sym.torchtools.patches import math_sdpa

    subject, analysis = _corpus("transformers", "qwen2_moe")
    model = subject.model
    gates = [layer.mlp.gate for layer in model.model.layers]
    saved = [g.weight.detach().clone() for g in gates]
    n, length = 2, 5
    positional, keywords = subject.inputs({"N": n, "L": length})
    expected = analysis.evaluate({"N": n, "L": length}, "torch")
    try:
        for zero in (False, True):
            if zero:
                with torch.no_grad():
                    for g in gates:
                        g.weight.zero_()
            for implementation in ("eager", "batched_mm"):
                model.config._experts_implementation = implementation
                with FlopCounterMode(display=False) as counter, torch.no_grad(), math_sdpa():
                    model(*positional, **keywords)
                assert counter.get_total_flops() == expected, (zero, implementation)
    finally:
        model.config._experts_implementation = "grouped_mm"
        with torch.no_grad():
            for g, w in zip(gates, saved, strict=True):
                g.weight.copy_(w)


# -- 7: guards too strong, implied ones kept -------------------------------------------------------


def test_cause_7_implied_guards_are_proven_and_left_out():
    # the average pools with ceil_mode (the "d" variants' shortcut) record
    # 2*floor((H - 1)/8) < floor((H - 1)/4) + 1, true for every H (periodic in H: decided
    # over one period); the range shows only the bounds, and the closed form is exact there
    model = _timm("resnet18d", layers=(1, 1, 1, 1), num_classes=10)
    analysis = lc.analyze(model, ("N", 3, "H", "W"))
    periodic = [g for g in analysis.guards if str(g).startswith("2*floor(")]
    assert periodic, "torch records the ceil_mode pools' guards"
    assert analysis.range == ["H >= 33", "W >= 33"]
    for n, h, w in [(1, 33, 34), (2, 225, 233)]:
        _assert_exact(model, analysis, [torch.randn(_image(n, h, w))], {"N": n, "H": h, "W": w})
    with pytest.raises(lc.EvaluationError, match="H=32"):
        analysis.evaluate({"N": 1, "H": 32, "W": 40})


def test_cause_7_two_downsampling_paths_that_agree_only_at_some_sizes():
    # the anti-aliased ResNet's residual add joins ((H-1)//2 - 1)//4 + 1 (blur pool) and
    # (((H-1)//2 - 1)//2 - 1)//2 + 1 (shortcut): not equal for every H (at 68: 9 and 8, where
    # the model itself fails), equal at 64, 65, 97.  Traced at multiples of 32 it stays
    # symbolic, its guards say where the two agree, and it is exact there
    model = _timm("resnetaa34d", layers=(1, 1, 1, 1), num_classes=10)
    analysis = lc.analyze(model, ("N", 3, "H", "W"))
    assert analysis.pinned == {}
    assert {s.name for s in analysis.cost("exact").free_symbols} == {"N", "H", "W"}
    for n, h, w in [(1, 64, 64), (2, 65, 97)]:
        _assert_exact(model, analysis, [torch.randn(_image(n, h, w))], {"N": n, "H": h, "W": w})
    with pytest.raises(RuntimeError, match="must match"):
        model(torch.randn(1, 3, 68, 64))
    with pytest.raises(lc.EvaluationError, match="fails at H=68"):
        analysis.evaluate({"N": 1, "H": 68, "W": 64})


class TwoScales(torch.nn.Module):
    """lowformer's fusion in small: a stride-4 path doubled by a transposed convolution joins a
    stride-2 path, cropped (and scaled) to it where their sizes differ: 2*((S - 1)//4) + 2 and
    (S - 1)//2 + 1 agree where (S - 1) % 4 is 2 or 3, per side S."""

    def __init__(self):
        super().__init__()
        self.fine = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.coarse = torch.nn.Conv2d(3, 4, 3, stride=4, padding=1)
        self.up = torch.nn.ConvTranspose2d(4, 4, 2, stride=2)

    def forward(self, x):
        a, b = self.up(self.coarse(x)), self.fine(x)
        if a.shape[-2:] != b.shape[-2:]:
            a = a[:, :, : b.shape[-2], : b.shape[-1]] * 2
        return a + b


def test_cause_7_a_branch_on_two_paths_sizes_is_piecewise_over_both_sides():
    # before: the trace took one side of "if a.shape[-2:] != b.shape[-2:]" per size and the
    # closed form refused the other (lowformer_b0 at its default 224: guard
    # 2*floor(W/32 - 1/32) + 2 != floor(W/16 - 1/16) + 1).  Now each side is traced at a size
    # where it holds, and the closed form is a Piecewise: exact at every (H, W) mod 4
    torch.manual_seed(0)
    model = TwoScales().eval()
    analysis = lc.analyze(model, ("N", 3, "H", "W"))
    assert analysis.cases and analysis.pinned == {}
    for n, h in [(1, 9), (2, 10), (1, 11), (2, 12)]:
        for w in (13, 14, 15, 16):
            at = {"N": n, "H": h, "W": w}
            _assert_exact(model, analysis, [torch.randn(_image(n, h, w))], at)


def test_cause_7_a_periodic_guard_is_kept_where_it_is_not_constant():
    from layercost_sym.torchtools.symbolic import simplify_guard

    H = sympy.Symbol("H", integer=True, positive=True)

    def f(d):
        return sympy.floor(H / d - sympy.Rational(1, d))  # (H - 1)//d

    always = sympy.Lt(2 * f(8), f(4) + 1)
    sometimes = sympy.Ne(2 * f(32) + 2, f(16) + 1)  # the example: false at H = 33
    assert simplify_guard(always) is sympy.true
    assert all(always.xreplace({H: h}) for h in range(1, 200))  # the proof's claim, sampled
    assert simplify_guard(sometimes) == sometimes
    assert {bool(sometimes.xreplace({H: h})) for h in range(1, 100)} == {True, False}
