"""Whole models: each peer convention's total equals the tool's own total, exactly.

For torchvision's resnet18, resnet50, mobilenet_v2, vgg11 and vit_b_16 (weights=None, eval) at
224x224 and at an odd shape, ``lc.analyze`` traced once per model with symbolic sizes and
evaluated at the shape under ``fvcore`` / ``thop`` / ``ptflops`` equals what the tool itself
reports for the real model, run as a user runs it:

* fvcore: ``FlopCountAnalysis(model, x).total()``, default handles (the warnings it prints
  about ops without a handle are silenced; they do not change the count);
* thop (ultralytics-thop 2.x): ``profile(model, inputs=(x,))`` returns ``(macs, params)`` as
  floats, for the whole batch (batch 2 counts twice batch 1: the odd shapes use batch 2);
* ptflops (0.7.x, pytorch backend, its default): ``get_model_complexity_info(model, (3, H, W),
  as_strings=False, print_per_layer_stat=False)`` builds its own batch-1 input, so it is
  compared at N = 1 whatever the batch of the case.

No model-level correction is applied anywhere: the totals agree because every row's rule
(formulas/conventions/<tool>.toml, functional ATen-op rules included) counts what the tool
counts.  The quirk these models exercise beyond the per-rule tests is mobilenet_v2's
``F.adaptive_avg_pool2d(x, (1, 1))`` between modules: ATen runs it as ``mean(dim=[-1, -2],
keepdim=True)`` (the rule variant ``mean.adaptive_avg_pool2d``), fvcore's jit trace sees
``aten::adaptive_avg_pool2d`` (numel(input)), ptflops its patched ``F.adaptive_avg_pool2d``
(numel(input)), thop nothing; :func:`test_functional_adaptive_pool_and_mean` checks that
variant and its spellings on their own.

Each model is built and traced once per test process (``_traced``); the tools run per case.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import layercost_sym as lc
from layercost_sym.testing._peers_fvcore import fvcore_total
from layercost_sym.testing._peers_ptflops import ptflops_count
from layercost_sym.testing._peers_thop import thop_macs

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

CNNS = ("resnet18", "resnet50", "mobilenet_v2", "vgg11")
# (batch, height, width): 224x224 at batch 1, and an odd shape at batch 2 (ptflops: batch 1)
CNN_SHAPES = ((1, 224, 224), (2, 193, 257))
# vit_b_16 takes one image size, fixed at construction: 224, and 208 (13 x 16) at batch 2
VIT_SHAPES = ((1, 224, 224), (2, 208, 208))
TOOLS = ("fvcore", "thop", "ptflops")

CASES = [
    pytest.param(name, shape, tool, id=f"{name}-{'x'.join(map(str, shape))}-{tool}")
    for name in (*CNNS, "vit_b_16")
    for shape in (VIT_SHAPES if name == "vit_b_16" else CNN_SHAPES)
    for tool in TOOLS
]


@functools.cache
def _traced(name: str, image_size: int | None):
    """(model, its analysis with symbolic sizes): built and traced once per process."""
    import torchvision

    torch.manual_seed(0)
    if name == "vit_b_16":
        model = torchvision.models.vit_b_16(weights=None, image_size=image_size).eval()
        return model, lc.analyze(model, ("N", 3, image_size, image_size))
    model = getattr(torchvision.models, name)(weights=None).eval()
    return model, lc.analyze(model, ("N", 3, "H", "W"))


def _fvcore(model, x) -> int:
    from fvcore.nn import FlopCountAnalysis

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis = FlopCountAnalysis(model, x)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        total = analysis.total()
    assert float(total).is_integer(), total
    return int(total)


def _thop(model, x) -> tuple[int, int]:
    from thop import profile

    logging.getLogger("thop").setLevel(logging.ERROR)
    macs, params = profile(model, inputs=(x,), verbose=False)
    assert float(macs).is_integer() and float(params).is_integer(), (macs, params)
    return int(macs), int(params)


def _ptflops(model, height: int, width: int) -> tuple[int, int]:
    from ptflops import get_model_complexity_info

    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        macs, params = get_model_complexity_info(
            model,
            (3, height, width),
            as_strings=False,
            print_per_layer_stat=False,
            backend="pytorch",
            ost=sink,
        )
    assert macs is not None, sink.getvalue()  # ptflops prints an exception and returns None
    return int(macs), int(params)


@pytest.mark.parametrize(("name", "shape", "tool"), CASES)
def test_model_total_equals_the_tool(name, shape, tool):
    n, h, w = shape
    model, analysis = _traced(name, h if name == "vit_b_16" else None)
    assert analysis.unsupported == []
    at = {"N": n} if name == "vit_b_16" else {"N": n, "H": h, "W": w}
    x = torch.randn(n, 3, h, w)
    params = lc.evaluate(analysis.params, {})
    if tool == "fvcore":
        assert analysis.evaluate(at, "fvcore") == _fvcore(model, x)
    elif tool == "thop":
        assert (analysis.evaluate(at, "thop"), params) == _thop(model, x)
    else:
        one = {**at, "N": 1}  # ptflops runs its own (1, 3, H, W) input
        assert (analysis.evaluate(one, "ptflops"), params) == _ptflops(model, h, w)


def test_tools_disagree_where_the_rules_say():
    # the point of the conventions: at resnet50 224x224 the three tools give three numbers,
    # and each gap is the sum of its rows' differences (BatchNorm: thop 2*(1 + affine) per
    # element, fvcore 1 + affine; ptflops also counts ReLU twice, pools, the Linear bias)
    _, analysis = _traced("resnet50", None)
    at = {"N": 1, "H": 224, "W": 224}
    totals = {tool: analysis.evaluate(at, tool) for tool in TOOLS}
    assert len(set(totals.values())) == 3
    for a, b in (("fvcore", "thop"), ("ptflops", "fvcore")):
        rows = [
            lc.evaluate(layer.cost(a), at) - lc.evaluate(layer.cost(b), at)
            for layer in analysis.layers
        ]
        assert sum(rows) == totals[a] - totals[b]
        by_rule = {}
        for layer, d in zip(analysis.layers, rows, strict=True):
            by_rule[layer.rule] = by_rule.get(layer.rule, 0) + d
        if a == "fvcore":  # fvcore - thop: BatchNorm2d and the final AdaptiveAvgPool2d only
            assert {r for r, d in by_rule.items() if d} == {"BatchNorm2d", "AdaptiveAvgPool2d"}


# -- the quirk these models add: F.adaptive_avg_pool*d to size 1 between modules ------------------


class _Call(torch.nn.Module):
    """A model whose forward is one functional call (no hooked module)."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


# spelling -> (function, input rank, the rule the ATen call resolves to)
SPELLINGS = {
    "F.adaptive_avg_pool2d": (lambda x: F.adaptive_avg_pool2d(x, (1, 1)), 4, "pool2d"),
    "F.adaptive_avg_pool2d unbatched": (lambda x: F.adaptive_avg_pool2d(x, 1), 3, "pool2d"),
    "F.adaptive_avg_pool3d": (lambda x: F.adaptive_avg_pool3d(x, 1), 5, "pool3d"),
    "x.mean((2, 3))": (lambda x: x.mean((2, 3), keepdim=True), 4, "mean"),
    "x.mean(-1)": (lambda x: x.mean(-1), 3, "mean"),
}
RULES = {
    "pool2d": "mean.adaptive_avg_pool2d",
    "pool3d": "mean.adaptive_avg_pool3d",
    "mean": "mean",
}


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
@settings(max_examples=10)  # each example runs analyze and the three tools
@given(data=st.data())
def test_functional_adaptive_pool_and_mean(spelling, data):
    fn, rank, expected = SPELLINGS[spelling]
    shape = tuple(data.draw(st.lists(st.integers(1, 5), min_size=rank, max_size=rank)))
    x = torch.randn(shape)
    module = _Call(fn)
    analysis = lc.analyze(module, shape)
    (row,) = [layer for layer in analysis.layers if layer.rule.startswith("mean")]
    assert row.rule == RULES[expected]
    counted = {
        "fvcore": fvcore_total(module, (x,)),
        "thop": thop_macs(module, x),
        "ptflops": ptflops_count(module, x),
    }
    assert {tool: analysis.evaluate({}, tool) for tool in TOOLS} == counted
    # the package's own conventions are those of the op counter and FlopCounterMode
    own = lc.count(module, shape).costs
    assert {c: analysis.evaluate({}, c) for c in own} == own
    assert own["exact"] == x.numel()  # every spelling: n - 1 adds and a divide per output


def test_adaptive_avg_pool1d_to_one_is_taken_for_the_2d_pool():
    # F.adaptive_avg_pool1d(x, 1) reaches ATen as unsqueeze + the same mean the 2-d pool runs,
    # so analyze costs it as mean.adaptive_avg_pool2d.  ptflops and thop agree with that; fvcore
    # traces aten::adaptive_avg_pool1d, which it has no handle for (0), where the variant says
    # numel(input): the one spelling the ATen operator cannot tell apart (the entry's note).
    x = torch.randn(2, 3, 5)
    module = _Call(lambda t: F.adaptive_avg_pool1d(t, 1))
    analysis = lc.analyze(module, tuple(x.shape))
    assert [layer.rule for layer in analysis.layers if layer.rule.startswith("mean")] == [
        "mean.adaptive_avg_pool2d"
    ]
    assert analysis.evaluate({}, "ptflops") == ptflops_count(module, x) == x.numel()
    assert analysis.evaluate({}, "thop") == thop_macs(module, x) == 0
    assert fvcore_total(module, (x,)) == 0 and analysis.evaluate({}, "fvcore") == x.numel()
