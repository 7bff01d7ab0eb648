"""Convolutions and pools called as functions between modules, under the peer conventions.

``lc.analyze`` costs ``F.conv*d``, ``F.conv_transpose*d``, ``F.{max,avg}_pool*d``,
``F.adaptive_{max,avg}_pool*d``, ``F.fold`` and ``F.unfold`` called between modules by the
rule of the torch.nn module that runs the same ATen operator; each peer tool counts such a
call as its ``[functional_calls]`` tables (``formulas/conventions/<tool>.toml``) state
(fvcore: as the module, the ATen operator of its jit trace; thop: 0, it hooks modules;
ptflops: 0 for convolutions and folds, numel(input) once for the pools it patches).  Each
model here is traced once with symbolic sizes and evaluated at a few shapes; each peer
convention's total must equal the tool's own total on the real model, run as a user runs it
(as in tests/test_peers_models.py):

* fvcore: ``FlopCountAnalysis(model, x).total()`` (default handles, warnings silenced);
* thop: ``profile(model, inputs=(x,))`` (floats, for the whole batch);
* ptflops: ``get_model_complexity_info(model, input_res, as_strings=False, backend='pytorch')``,
  which builds its own batch-1 input: compared at N = 1.

Each model also holds one module of the same kind as a function it calls (ptflops counts a
pooling module twice, the function once; thop counts the module, not the function), so a rule
taken from the wrong side would show.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import warnings

import pytest
import sympy
import torch
import torch.nn.functional as F
from torch import nn

import layercost_sym as lc

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

TOOLS = ("fvcore", "thop", "ptflops")


class Functional2d(nn.Module):
    """2-d convolutions and pools as functions, with their options, between modules."""

    def __init__(self) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(8, 3, 3, 3))
        self.b1 = nn.Parameter(torch.randn(8))
        self.w2 = nn.Parameter(torch.randn(8, 2, 3, 3))  # groups=4
        self.w3 = nn.Parameter(torch.randn(8, 8, 3))
        self.wt = nn.Parameter(torch.randn(8, 4, 2, 2))  # transposed: (C_in, C_out/g, k, k)
        self.conv = nn.Conv2d(8, 8, 1)
        self.pool = nn.MaxPool2d(2, 1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = F.relu(F.conv2d(x, self.w1, self.b1, stride=2, padding=1))
        x = self.pool(self.conv(x))
        x = F.conv2d(x, self.w2, None, padding=1, groups=4)
        x = F.max_pool2d(x, 3, 2, 1, ceil_mode=True)
        y = F.avg_pool2d(x, 2, 1, 1, count_include_pad=False)
        y = F.conv_transpose2d(y, self.wt, stride=2, groups=2)
        z = F.adaptive_avg_pool2d(x, (3, 2)).sum() + F.adaptive_max_pool2d(x, 2).sum()
        v = F.conv1d(x.mean(2), self.w3, padding=1)
        return self.fc(F.adaptive_avg_pool2d(y, 1).flatten(1)) + z + v.mean()


class Functional1d(nn.Module):
    """1-d convolutions and pools as functions (ATen runs the pools as 2-d ones on
    x.unsqueeze(-2); fvcore counts the 2-d adaptive average pool, but not
    F.adaptive_avg_pool1d, which its trace records as aten::adaptive_avg_pool1d)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(6, 4, 3))
        self.b = nn.Parameter(torch.randn(6))
        self.wt = nn.Parameter(torch.randn(6, 4, 3))
        self.pool = nn.AvgPool1d(2)

    def forward(self, x):
        x = F.conv1d(x, self.w, self.b, padding=1)
        y = F.avg_pool1d(self.pool(x), 2, 1, padding=1)
        y = F.conv_transpose1d(y, self.wt, stride=2)
        z = F.adaptive_max_pool1d(y, 3).sum() + F.adaptive_avg_pool1d(y, 4).sum()
        return z + y.sum()


class MaxPool1dCall(nn.Module):
    """F.max_pool1d between modules.  Its trace specialises the length (torch records L == its
    traced size), so this model is traced at a fixed length, with a symbolic batch."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(4, 4, 1)

    def forward(self, x):
        return F.max_pool1d(self.conv(x), 2, ceil_mode=True)


class Functional3d(nn.Module):
    """3-d convolutions and pools as functions."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 2, 3, 3, 3))
        self.wt = nn.Parameter(torch.randn(4, 2, 2, 2, 2))
        self.pool = nn.AdaptiveAvgPool3d(2)

    def forward(self, x):
        x = F.conv3d(x, self.w, None, padding=1)
        x = F.max_pool3d(x, 2)
        y = F.avg_pool3d(x, 2, 1)
        y = F.conv_transpose3d(y, self.wt, stride=2)
        z = F.adaptive_avg_pool3d(y, 2).sum() + F.adaptive_max_pool3d(y, (1, 2, 3)).sum()
        return z + self.pool(y).sum()


class FunctionalFold(nn.Module):
    """F.unfold and F.fold between modules (volo's outlook attention folds its windows back
    with F.fold), beside an nn.Unfold module.  torch specialises every size of F.unfold and
    F.fold (their C++ entries), so this model is traced at one shape."""

    def __init__(self) -> None:
        super().__init__()
        self.unfold = nn.Unfold(3, padding=1)
        self.conv = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        h, w = x.shape[-2:]
        cols = F.unfold(self.conv(x), 2, stride=2)
        y = F.fold(cols * 2, (h - h % 2, w - w % 2), 2, stride=2)
        return y.sum() + F.fold(self.unfold(x), (h, w), 3, padding=1).sum()


# model -> (its class, symbolic input, the ATen-level rules its functions must reach, sizes)
MODELS = {
    "2d": (
        Functional2d,
        ("N", 3, "H", "W"),
        {"Conv2d", "ConvTranspose2d", "Conv1d", "MaxPool2d", "AvgPool2d"}
        | {"AdaptiveAvgPool2d", "AdaptiveMaxPool2d"},
        [{"H": 17, "W": 19}, {"H": 33, "W": 21}, {"H": 40, "W": 41}],
    ),
    "1d": (
        Functional1d,
        ("N", 4, "L"),
        {"Conv1d", "ConvTranspose1d", "AvgPool2d", "AdaptiveMaxPool2d", "AdaptiveAvgPool2d"},
        [{"L": 11}, {"L": 24}],
    ),
    "1d-max": (MaxPool1dCall, ("N", 4, 13), {"MaxPool2d"}, [{}]),
    "fold": (FunctionalFold, (1, 4, 7, 9), {"Fold", "Unfold"}, [{}]),
    "3d": (
        Functional3d,
        ("N", 2, "D", "H", "W"),
        {"Conv3d", "ConvTranspose3d", "MaxPool3d", "AvgPool3d"}
        | {"AdaptiveAvgPool3d", "AdaptiveMaxPool3d"},
        [{"D": 6, "H": 7, "W": 8}, {"D": 9, "H": 6, "W": 11}],
    ),
}


@functools.cache
def _traced(name: str):
    """(model, its analysis with symbolic sizes): built and traced once per process."""
    cls, spec, _, _ = MODELS[name]
    torch.manual_seed(0)
    model = cls().eval()
    return model, lc.analyze(model, spec)


def _fvcore(model, x) -> int:
    from fvcore.nn import FlopCountAnalysis

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis = FlopCountAnalysis(model, x)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        total = analysis.total()
    assert float(total).is_integer(), total
    return int(total)


def _thop(model, x) -> int:
    from thop import profile

    logging.getLogger("thop").setLevel(logging.ERROR)
    macs, _ = profile(model, inputs=(x,), verbose=False)
    assert float(macs).is_integer(), macs
    return int(macs)


def _ptflops(model, input_res: tuple[int, ...]) -> int:
    from ptflops import get_model_complexity_info

    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        macs, _ = get_model_complexity_info(
            model,
            input_res,
            as_strings=False,
            print_per_layer_stat=False,
            backend="pytorch",
            ost=sink,
        )
    assert macs is not None, sink.getvalue()  # ptflops prints an exception and returns None
    return int(macs)


def _input(spec, at: dict[str, int]) -> tuple[int, ...]:
    return tuple(at[d] if isinstance(d, str) else d for d in spec)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_functions_reach_module_rules_and_every_convention(name):
    _, analysis = _traced(name)
    assert analysis.unsupported == []
    rows = [layer for layer in analysis.layers if layer.kind == "op"]
    assert MODELS[name][2] <= {layer.rule.split(".")[0] for layer in rows}
    # every peer convention is defined for the function calls (issue 7: no ConventionError)
    assert set(TOOLS) <= set(analysis.conventions)
    for layer in rows:
        if layer.rule[0].isupper():  # a function costed by a module's rule
            assert set(TOOLS) <= set(layer.notes)
            assert layer.cost("thop") == 0
            if layer.rule.startswith("Conv"):
                assert layer.cost("ptflops") == 0
                # fvcore's aten::_convolution handle: N * numel(weight) * prod(output spatial)
                # (transposed: input spatial), no bias -- the products, i.e. macs
                assert sympy.expand(layer.cost("fvcore") - layer.cost("macs")) == 0
            elif layer.rule.split(".")[0] in ("Fold", "Unfold"):
                assert layer.cost("ptflops") == layer.cost("fvcore") == 0  # no handle, no patch
            else:  # ptflops' patched pool: numel of its input
                assert layer.cost("ptflops") == sympy.Mul(*layer.input_shapes[0])


CASES = [
    pytest.param(name, i, tool, id=f"{name}-{i}-{tool}")
    for name in sorted(MODELS)
    for i in range(len(MODELS[name][3]))
    for tool in TOOLS
]


@pytest.mark.parametrize(("name", "index", "tool"), CASES)
def test_peer_total_equals_the_tool(name, index, tool):
    model, analysis = _traced(name)
    spec = MODELS[name][1]
    sizes = MODELS[name][3][index]
    if tool == "ptflops":  # ptflops builds its own batch-1 input from input_res
        at = {**sizes, "N": 1}
        assert analysis.evaluate(at, tool) == _ptflops(model, _input(spec, at)[1:])
        return
    at = {**sizes, "N": 2}  # fvcore and thop count the whole batch
    x = torch.randn(_input(spec, at))
    counted = _fvcore(model, x) if tool == "fvcore" else _thop(model, x)
    assert analysis.evaluate(at, tool) == counted


def test_compare_reads_every_convention():
    # lc.compare traces the model itself; its totals at a shape are the tools' own totals
    model, analysis = _traced("2d")
    at = {"N": 1, "H": 17, "W": 19}
    c = lc.compare(model, ("N", 3, "H", "W"), at=at)
    assert set(TOOLS) <= set(c.conventions)
    assert c.totals == {conv: analysis.cost(conv) for conv in c.conventions}
    totals = {conv: values["total"] for conv, values in c.values().items()}
    x = torch.randn(1, 3, 17, 19)
    assert totals["fvcore"] == _fvcore(model, x)
    assert totals["thop"] == _thop(model, x)
    assert totals["ptflops"] == _ptflops(model, (3, 17, 19))
    # ptflops - thop: the pooling family differs by what ptflops counts there (the max-pool
    # module twice, each pooling function and the final mean once; thop: 0 for all of them)
    d = c.diff("ptflops", "thop")
    pools = [layer for layer in analysis.layers if c.family(layer) == "pooling"]
    assert pools and all(lc.evaluate(layer.cost("thop"), at) == 0 for layer in pools)
    assert d.value(d.families["pooling"]) == sum(
        lc.evaluate(layer.cost("ptflops"), at) for layer in pools
    )


class RowPool2d(nn.Module):
    """F.adaptive_avg_pool2d of x.unsqueeze(-2): what ATen runs for F.adaptive_avg_pool1d."""

    def forward(self, x):
        return F.adaptive_avg_pool2d(x.unsqueeze(-2), (1, 3))


def test_a_2d_adaptive_average_pool_of_a_row_is_taken_for_the_1d_pool():
    # the analysis tells F.adaptive_avg_pool1d apart by the unsqueeze ATen runs it with, so the
    # 2-d function written the same way is taken for it: fvcore 0, where fvcore counts its
    # numel(input) = 2*4*9 = 72 (the documented limit); ptflops patches both functions alike
    module = RowPool2d()
    analysis = lc.analyze(module, ("N", 4, "L"))
    (row,) = [layer for layer in analysis.layers if layer.rule == "AdaptiveAvgPool2d"]
    assert row.cost("fvcore") == 0 and "adaptive_avg_pool1d" in row.notes["fvcore"]
    assert (
        _fvcore(module, torch.randn(2, 4, 9)) - analysis.evaluate({"N": 2, "L": 9}, "fvcore") == 72
    )
    assert analysis.evaluate({"N": 1, "L": 9}, "ptflops") == _ptflops(module, (4, 9)) == 36
