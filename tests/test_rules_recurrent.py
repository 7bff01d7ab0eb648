"""The recurrent layers' rules (RNN, LSTM, GRU and their cells) against the real torch modules.

For every drawn case: params, output shape and exact / macs / torch, evaluated at
``lc.bind(module, shape)``, equal what ``lc.count`` measures.  RNN, GRU, the cells and LSTM with
a projection decompose into addmm/mm and elementwise ops that both counters see.  LSTM without a
projection runs the fused CPU kernel ``mkldnn_rnn_layer``: FlopCounterMode counts it as 0 and the
exact counter counts it with ``ops/recurrent.py``; there both conventions are checked against
torch's own non-fused path (``torch.backends.mkldnn`` disabled), counted op by op.
"""

import pytest
import sympy
import torch
from hypothesis import given, settings
from torch.utils.flop_counter import FlopCounterMode

import layercost_sym as lc
from layercost_sym.testing import _cases_recurrent as rc
from layercost_sym.testing.case import LayerCase
from layercost_sym.testing.torchcheck import (
    check_against_torch,
    check_backward,
    check_bytes,
    eager_not_stated,
)
from layercost_sym.torchtools.opcount import ExactCounter

pytestmark = [  # torch's own notices about the options drawn, not problems of the rules
    pytest.mark.filterwarnings("ignore:dropout option adds dropout:UserWarning"),
    pytest.mark.filterwarnings("ignore:LSTM with projections is not supported:UserWarning"),
    pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN:UserWarning"),
]

CASES = {
    "RNN": rc.rnn_cases(),
    "GRU": rc.gru_cases(),
    "LSTM": rc.lstm_cases(proj=True),
    "RNNCell": rc.rnn_cell_cases(),
    "LSTMCell": rc.lstm_cell_cases(),
    "GRUCell": rc.gru_cell_cases(),
}


# the slowest properties of the suite (each example counts a multi-step recurrence forward
# and backward, twice): fewer examples than the profile's, every run drawing new ones
HEAVY = {"LSTM": 40, "GRU": 50}


@pytest.mark.parametrize("name", sorted(CASES))
def test_rule_matches_torch(name):
    def check(case):
        binding, _ = check_against_torch(case)
        assert binding.rule.module == case.name

    test = given(CASES[name])(check)
    (settings(max_examples=HEAVY[name])(test) if name in HEAVY else test)()


def _reference_counts(case):
    """exact and FlopCounterMode of ``case`` on torch's non-fused path (LSTMCell steps)."""
    module, (x,) = case.build(), case.tensors()
    with torch.backends.mkldnn.flags(enabled=False), torch.enable_grad():
        counter = ExactCounter()
        with counter:
            module(x)
        flops = FlopCounterMode(display=False)
        with flops:
            module(x)
    assert "mkldnn_rnn_layer" not in counter.by_op
    return counter.total, flops.get_total_flops()


@given(rc.lstm_cases(proj=False))
def test_lstm_fused_kernel_matches_reference_path(case):
    # the fused kernel: params, shape and exact (counted by ops/recurrent.py) via lc.count ...
    binding, counted = check_against_torch(case, conventions=("exact",))
    assert "noproj" in binding.rule.name
    assert counted.by_op.get("mkldnn_rnn_layer", 0) > 0
    assert counted.cost("torch") == 0  # FlopCounterMode cannot see the fused kernel
    # ... and the independent derivation: the same module on torch's LSTMCell path, where both
    # counters see every addmm and elementwise op
    exact, flops = _reference_counts(case)
    assert binding.cost("exact") == exact
    assert binding.cost("macs") == flops // 2
    assert binding.cost("torch") == flops


def test_lstm_macs_by_cell_loop():
    # a second, hand-written derivation: one layer, one direction, L steps of nn.LSTMCell with
    # the LSTM's own weights; FlopCounterMode sees the cells' addmm: 4*H*(I + H) MACs per row
    lstm = torch.nn.LSTM(3, 5)
    cell = torch.nn.LSTMCell(3, 5)
    cell.load_state_dict({k.removesuffix("_l0"): v for k, v in lstm.state_dict().items()})
    x = torch.randn(4, 2, 3)
    flops = FlopCounterMode(display=False)
    h = c = torch.zeros(2, 5)
    with flops:
        outputs = []
        for step in x:
            h, c = cell(step, (h, c))
            outputs.append(h)
    torch.testing.assert_close(torch.stack(outputs), lstm(x)[0])
    assert flops.get_total_flops() == 2 * 4 * 2 * 4 * 5 * (3 + 5)
    binding = lc.bind(lstm, x)
    assert binding.cost("macs") == flops.get_total_flops() // 2


def test_lstm_noproj_variant_is_general_rule_at_proj_zero():
    general, noproj = lc.rule("LSTM"), lc.rule("LSTM.noproj")
    zero = {lc.parse("H_proj"): 0}
    for convention in ("exact", "macs"):
        assert sympy.simplify(general.cost(convention).subs(zero) - noproj.cost(convention)) == 0
    assert sympy.simplify(general.params.subs(zero) - noproj.params) == 0


@pytest.mark.parametrize(("dropout", "per_element"), [(0.0, 0), (0.5, 3), (1.0, 1)])
def test_dropout_between_layers_in_training(dropout, per_element):
    # GRU(3, 4), 2 layers, (L, N) = (5, 2): one dropout on the first layer's 5*2*4 outputs;
    # 0 < p < 1: Bernoulli comparison, mask / (1 - p), input * mask (3 each); p = 1: input * 0
    gru = torch.nn.GRU(3, 4, num_layers=2, dropout=dropout)
    for training in (True, False):
        counted = lc.count(gru.train(training), (5, 2, 3), training=training)
        assert lc.bind(gru, (5, 2, 3)).cost("exact") == counted.cost("exact")
    eval_cost = lc.bind(gru.eval(), (5, 2, 3)).cost("exact")
    assert lc.bind(gru.train(), (5, 2, 3)).cost("exact") - eval_cost == per_element * 5 * 2 * 4


def test_unbatched_sequence_binds_the_product_of_length_and_batch():
    # "L? N I": an unbatched (L, I) input binds L = 1, N = L; the costs depend on L*N only
    gru = torch.nn.GRU(3, 4)
    assert lc.bind(gru, (5, 3)).cost("exact") == lc.bind(gru, (5, 1, 3)).cost("exact")
    assert lc.bind(gru, (5, 3)).output_shape() == (5, 4)


def test_layouts_and_shapes_torch_rejects():
    with pytest.raises(ValueError):
        lc.bind(torch.nn.LSTM(3, 4), (2, 5, 4))  # input_size 3, got 4
    with pytest.raises(ValueError):
        lc.bind(torch.nn.GRUCell(3, 4), (2, 2, 3))  # a cell takes (N, I) or (I,)
    assert lc.bind(
        torch.nn.RNN(3, 4, batch_first=True, bidirectional=True), (2, 5, 3)
    ).output_shape() == (2, 5, 8)


@pytest.mark.parametrize(
    ("shape", "options"),
    [
        ((50, 2, 4), dict(hidden_size=5)),  # L: the diff states pass a 4096-byte page
        ((3, 30, 4), dict(hidden_size=5)),  # N
        ((3, 2, 4), dict(hidden_size=200)),  # H_hid: the gates row of 800 floats
        ((20, 16, 32), dict(hidden_size=64)),  # 4*H_hid = 256: oneDNN pads the row to 272
        ((3, 2, 300), dict(hidden_size=5)),  # I > H_hid: the state rows are I wide
        ((7, 9, 40), dict(hidden_size=60, num_layers=3, bidirectional=True, bias=False)),
        ((9, 7, 33), dict(hidden_size=127, num_layers=2, batch_first=True, dropout=0.25)),
    ],
)
def test_lstm_fused_workspace_beyond_one_page(shape, options):
    # the drawn cases are small: every part of mkldnn_rnn_layer's workspace fits one page there
    # (7 pages, 28672 bytes); these shapes take each part past it, in both modes
    for training in (False, True):
        case = LayerCase("LSTM", dict(input_size=shape[-1], **options), (shape,), training)
        check_bytes(case)
        check_bytes(case.in_dtype("bfloat16").with_grad())  # the kernel's where oneDNN has bf16


@pytest.mark.parametrize(
    ("shape", "options", "training"),
    [
        ((3, 2, 4), dict(hidden_size=5), False),
        ((2, 3, 4), dict(hidden_size=3, num_layers=2, bidirectional=True, bias=False), True),
        ((3, 2, 5), dict(hidden_size=4, num_layers=2, batch_first=True, dropout=0.5), True),
    ],
)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("mkldnn", [True, False])
def test_lstm_bytes_follow_the_path_torch_takes(dtype, mkldnn, shape, options, training):
    # torch sends an LSTM without projection to oneDNN's fused kernel in float32, and in
    # bfloat16 too on CPUs whose oneDNN supports it (ATen's use_mkldnn: AVX512-BF16 here, where
    # every drawn bfloat16 case failed: the rule gave the composite steps' bytes, 136 against
    # 28728); with mkldnn off both dtypes run the composite steps.  The binding reads the path
    # torch takes (k_f), and the rule states both paths in both dtypes
    base = LayerCase("LSTM", dict(input_size=shape[-1], **options), (shape,), training)
    case = base.in_dtype(dtype).with_grad()
    with torch.backends.mkldnn.flags(enabled=mkldnn):
        binding = lc.bind(case.build(), *case.tensors())
        counted = lc.count(case.build(), *case.tensors(), training=training)
        assert binding["k_f"] == int("mkldnn_rnn_layer" in counted.bytes_by_op)
        assert binding.cost("exact") == counted.cost("exact")
        check_bytes(case)
        check_backward(case)


def test_lstm_bytes_refuse_the_float16_kernel_no_machine_here_has_measured():
    # float16 reaches oneDNN's kernel outside autograd on CPUs with its fp16 support (k_f = 2)
    binding = lc.bind(torch.nn.LSTM(4, 5), (3, 2, 4), data={"k_f": 2})
    assert binding.cost("exact") > 0  # the FLOPs do not depend on the kernel
    for quantity, convention in (("bytes", "eager"), ("saved", "autograd")):
        with pytest.raises(lc.DomainError, match=r"'k_f <= 1' fails .*float16"):
            lc.evaluate(binding.rule.quantity(quantity, convention), binding)


@pytest.mark.parametrize("mkldnn", [True, False])
def test_an_analysis_costs_an_lstm_on_the_path_torch_takes(mkldnn):
    # lc.analyze reads k_f from the traced call as lc.bind does: float32 and bfloat16 agree
    # with the counter on either path
    class Sequence(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = torch.nn.LSTM(4, 5)

        def forward(self, x):
            return self.rnn(x)[0]

    at = {"L": 3, "N": 2}
    for dtype in (torch.float32, torch.bfloat16):
        model = Sequence().to(dtype)
        with torch.backends.mkldnn.flags(enabled=mkldnn):
            analysis = lc.analyze(model, ("L", "N", 4), dtype=dtype)
            counted = lc.count(model, torch.randn(3, 2, 4, dtype=dtype))
        assert analysis.evaluate(at, "exact") == counted.cost("exact")
        bytes_ = analysis.evaluate(at, "eager", quantity="bytes")
        assert bytes_ == counted.values[("bytes", "eager")]


# Rules of this family that do not state bytes under eager yet (issue 14); a rule leaves the
# set when it states them (the property tests above then prove them, in float32 and bfloat16).
EAGER_NOT_YET: set[str] = set()


def test_eager_bytes_stated_by_every_recurrent_rule_but_the_listed_ones():
    assert eager_not_stated("recurrent") == EAGER_NOT_YET


class _SequenceMixer(torch.nn.Module):
    """timm's sequencer2d in small: rows and columns of an image each through a recurrent
    layer (the batch the layer sees is N*H or N*W), then a GRU and a projection."""

    def __init__(self) -> None:
        super().__init__()
        self.rows = torch.nn.LSTM(4, 3, batch_first=True, bidirectional=True)
        self.cols = torch.nn.LSTM(4, 5, num_layers=2, proj_size=2)
        self.gru = torch.nn.GRU(6, 4, batch_first=True)
        self.out = torch.nn.Linear(4, 2)

    def forward(self, x):  # (N, H, W, C)
        n, h, w, c = x.shape
        rows, _ = self.rows(x.reshape(n * h, w, c))
        cols, (h_n, _) = self.cols(x.permute(2, 0, 1, 3).reshape(w, n * h, c))
        cols = cols.permute(1, 0, 2)
        mixed = rows.reshape(n, h, w, 6) + torch.cat([cols, cols, cols], -1).reshape(n, h, w, 6)
        seq, _ = self.gru(mixed.reshape(n, h * w, 6))
        return self.out(seq) + h_n.sum()


def test_recurrent_layers_analyse_at_symbolic_sizes():
    # the fused kernels read every size as an int: lc.analyze ended in torch's raw "Cannot call
    # numel() on tensor with symbolic sizes" at any symbolic size (timm's sequencer2d in the
    # corpus); the rules cost the calls, the outputs are made at their shapes
    model = _SequenceMixer().eval()
    analysis = lc.analyze(model, ("N", "H", "W", 4))
    assert not analysis.unsupported, analysis.unsupported
    assert {"LSTM", "GRU"} <= {layer.rule.split(".")[0] for layer in analysis.layers}
    for n, h, w in [(1, 2, 3), (2, 3, 5)]:
        at = {"N": n, "H": h, "W": w}
        fused = lc.count(model, (n, h, w, 4))  # exact counts the fused kernels' arithmetic
        assert analysis.evaluate(at, "exact") == fused.cost("exact")
        assert analysis.evaluate(at, quantity="params") == fused.params
        # FlopCounterMode sees the products on torch's non-fused path only
        with torch.backends.mkldnn.flags(enabled=False):
            stepped = lc.count(model, (n, h, w, 4))
        assert analysis.evaluate(at, "torch") == stepped.cost("torch") > fused.cost("torch")
        assert stepped.cost("exact") == fused.cost("exact")


class _Uses(torch.nn.Module):
    """A recurrent layer of which the model uses some outputs: ``o`` the sequence, ``h`` h_n,
    ``c`` c_n (``rnn(x)[0]`` is ``"o"``; a classifier on the last state is ``"h"``)."""

    def __init__(self, rnn: torch.nn.Module, uses: str) -> None:
        super().__init__()
        self.rnn, self.uses = rnn, uses

    def forward(self, x):
        out, state = self.rnn(x)
        h, c = state if isinstance(state, tuple) else (state, None)
        used = {"o": out, "h": h[-1], "c": c}  # h_n[-1]: a gradient (zeros elsewhere) reaches h_n
        return sum(used[k].sum() for k in self.uses)


_RECURRENT = {
    "bidirectional LSTM": lambda: torch.nn.LSTM(4, 5, bidirectional=True, batch_first=True),
    "2-layer LSTM, projection": lambda: torch.nn.LSTM(4, 5, 2, batch_first=True, proj_size=3),
    "2-layer LSTM": lambda: torch.nn.LSTM(4, 5, 2, batch_first=True),
    "GRU": lambda: torch.nn.GRU(4, 5, batch_first=True),
    "bidirectional 2-layer GRU": lambda: torch.nn.GRU(
        4, 5, 2, bidirectional=True, batch_first=True
    ),
    "RNN": lambda: torch.nn.RNN(4, 5, batch_first=True),
}


@pytest.mark.parametrize("uses", ["ohc", "o", "oh", "oc", "h", "hc"])
@pytest.mark.parametrize("name", sorted(_RECURRENT))
def test_backward_of_the_outputs_the_model_uses(name, uses):
    # the rules' backward takes a gradient at every output (lc.count's outputs' sum); a model
    # that drops h_n or c_n (rnn(x)[0]) or the sequence (a classifier on h_n) skips the adds
    # those gradients meet: lc.analyze read 4848 where the backward runs 4836 (before go, gh,
    # gc).  The op counter running the backward is the reference, at N != L both ways
    if "c" in uses and "LSTM" not in name:
        uses = uses.replace("c", "")
    torch.manual_seed(0)
    model = _Uses(_RECURRENT[name](), uses)
    analysis = lc.analyze(model, ("N", "L", 4), backward=True)
    for n, steps in [(2, 3), (3, 2)]:
        counted = lc.count(model, (n, steps, 4), backward=True)
        assert (
            analysis.evaluate({"N": n, "L": steps}, "exact", quantity="backward")
            == (counted.values[("backward", "exact")])
        )


def test_backward_refused_where_no_gradient_reaches_output_or_h_n():
    # only c_n used: neither the output's nor h_n's gradient reaches the layer, a case the
    # rule does not state; the backward names its constraint, the forward still answers
    model = _Uses(torch.nn.LSTM(4, 5, batch_first=True), "c")
    forward = lc.analyze(model, (2, 3, 4))
    assert forward.evaluate({}, "exact") == lc.count(model, (2, 3, 4)).cost("exact")
    analysis = lc.analyze(model, (2, 3, 4), backward=True)
    for quantity in ("backward", "flops"):  # FLOPs with backward=True include the backward
        with pytest.raises(lc.DomainError, match=r"Max\(go, gh\) == 1.*uses neither"):
            analysis.evaluate({}, "exact", quantity=quantity)
