"""No public path returns a number for a configuration torch rejects.

Expressions handed out by a rule carry the rule's constraints, by a composed cost its undecided
constraints, by an analysis its guards; ``evaluate``, ``sweep``, ``bind``, ``Rule.at`` and the
CLI's ``eval`` refuse values outside them with the same reason.  Which configurations torch
rejects is asked of torch itself.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import re
from types import SimpleNamespace

import numpy as np
import pytest
import sympy
import torch
from hypothesis import given
from hypothesis import strategies as st

import layercost_sym as lc
from layercost_sym.cli import main

CONV = dict(N=2, C_in=3, C_out=4, s=1, p=0, d=1, g=1, b=1)
KERNEL = "kernel size can't be greater than the padded input size"
GROUPS = "groups must divide in_channels and out_channels"
REFLECT = "padding size should be less than the corresponding input dimension (reflect)"


def torch_rejects(make, shape) -> str | None:
    """torch's error message when building the module or running it on ``shape``, else None."""
    try:
        make()(torch.zeros(shape))
    except (RuntimeError, ValueError) as exc:
        return str(exc)
    return None


def test_the_issue_examples_are_refused_where_torch_refuses():
    # layercost eval Conv2d N=2 C_in=3 C_out=4 k=9 H=8 W=8 printed cost 0 and output (2, 4, 0, 0)
    assert "Kernel size can't be greater" in torch_rejects(
        lambda: torch.nn.Conv2d(3, 4, 9), (2, 3, 8, 8)
    )
    conv = lc.rule("Conv2d")
    values = dict(CONV, k=9, H=8, W=8)
    for expr in (conv.flops, conv.cost("macs"), conv.params, *conv.output_shape[2:]):
        with pytest.raises(lc.DomainError, match=re.escape(KERNEL)):
            lc.evaluate(expr, values)
    # ... k=3 g=2 with C_in=3 printed params 58
    assert "divisible by groups" in torch_rejects(
        lambda: torch.nn.Conv2d(3, 4, 3, groups=2), (2, 3, 8, 8)
    )
    with pytest.raises(lc.DomainError, match=re.escape(GROUPS)):
        lc.evaluate(conv.params, dict(C_in=3, C_out=4, k=3, g=2, b=1))
    # a DomainError is both: torch rejects the shapes, and the formula has no value there
    assert issubclass(lc.DomainError, lc.ShapeError)
    assert issubclass(lc.DomainError, lc.EvaluationError)


def test_valid_values_still_give_the_count_torch_makes():
    conv = torch.nn.Conv2d(3, 4, 3)
    counted = lc.count(conv, (2, 3, 8, 8))
    assert lc.evaluate(lc.rule("Conv2d").flops, dict(CONV, k=3, H=8, W=8)) == counted.costs["exact"]


def test_equal_formulas_of_two_rules_carry_each_its_own_domain():
    """Conv2d and Conv2d.reflect state the same cost under different constraints: zero padding
    may exceed the input, reflect padding may not.  Each expression refuses what its own
    module refuses, not what the other one does."""
    base, reflect = lc.rule("Conv2d"), lc.rule("Conv2d.reflect")
    assert base.cost("macs") == reflect.cost("macs")  # the same formula
    values = dict(CONV, C_in=4, k=3, p=5, H=4, W=4)  # padding 5 on a 4x4 input
    zeros = lambda: torch.nn.Conv2d(4, 4, 3, padding=5)  # noqa: E731
    reflecting = lambda: torch.nn.Conv2d(4, 4, 3, padding=5, padding_mode="reflect")  # noqa: E731
    assert torch_rejects(zeros, (2, 4, 4, 4)) is None
    assert "Padding size should be less" in torch_rejects(reflecting, (2, 4, 4, 4))
    expected = lc.count(zeros(), (2, 4, 4, 4)).costs["macs"]
    assert lc.evaluate(base.cost("macs"), values) == expected
    with pytest.raises(lc.DomainError, match=re.escape(REFLECT)):
        lc.evaluate(reflect.cost("macs"), values)


def test_a_condition_is_checked_only_when_its_sizes_are_given():
    # the parameters of a Conv2d do not depend on the input: without H, W the kernel check is
    # undecided and the parameter count stands (torch builds the module: it has these weights)
    conv = lc.rule("Conv2d")
    assert lc.evaluate(conv.params, dict(C_in=3, C_out=4, k=9, g=1, b=1)) == 3 * 4 * 81 + 4
    assert torch.nn.Conv2d(3, 4, 9).weight.numel() + 4 == 3 * 4 * 81 + 4


def test_built_expressions_carry_no_domain_unless_given_one():
    macs = lc.rule("Conv2d").cost("macs")
    values = dict(CONV, k=9, H=8, W=8)
    doubled = 2 * macs
    assert lc.domain(doubled) == lc.Domain()
    assert lc.evaluate(doubled, values) == 0  # what the bare formula says: no check
    with pytest.raises(lc.DomainError, match=re.escape(KERNEL)):
        lc.evaluate(doubled, values, domain=lc.domain(macs))
    carried = lc.with_domain(doubled, lc.domain(macs))
    assert carried == doubled and carried is not doubled
    with pytest.raises(lc.DomainError, match=re.escape(KERNEL)):
        lc.evaluate(carried, values)


def test_arrays_name_the_first_invalid_point_or_mask_it():
    macs = lc.rule("Conv2d").cost("macs")
    fixed = dict(CONV, C_in=4, C_out=4)
    ks, hs = [1, 3, 5], [3, 4, 6]
    # sweep: the first point of the grid in C order that torch rejects is k=5, H=3
    with pytest.raises(lc.DomainError, match=r"k_h=5.*H_out=-1"):
        lc.sweep(macs, k=ks, H=hs, W=6, **fixed)
    masked = lc.sweep(macs, k=ks, H=hs, W=6, invalid="mask", **fixed)
    assert isinstance(masked, np.ma.MaskedArray) and masked.shape == (3, 3)
    for i, k in enumerate(ks):
        for j, h in enumerate(hs):
            module = lambda k=k: torch.nn.Conv2d(4, 4, k)  # noqa: E731
            rejected = torch_rejects(module, (2, 4, h, 6)) is not None
            assert bool(masked.mask[i, j]) == rejected, (k, h)
            if not rejected:
                assert masked[i, j] == lc.count(module(), (2, 4, h, 6)).costs["macs"]
    # evaluate on arrays refuses the same way
    grid = np.array([8, 2])
    with pytest.raises(lc.DomainError, match=r"H=2"):
        lc.evaluate(macs, dict(fixed, k=3, H=grid, W=8))
    with pytest.raises(lc.EvaluationError, match="invalid='maybe'"):
        lc.sweep(macs, k=ks, invalid="maybe", H=3, W=6, **fixed)


def test_composed_costs_carry_their_undecided_constraints():
    C = lc.symbols("C")
    block = lc.rule("Conv2d").at(N=1, C_in=C, C_out=C, k=3, s=1, p=0, d=1, g=2, b=0, H=8, W=8)
    assert [c.reason for c in block.domain.conditions] == [GROUPS]  # C % 2 is undecided
    total = block.cost("macs")
    assert lc.evaluate(total, {"C": 4}) == 4 * 6 * 6 * 2 * 9  # C_out*H_out*W_out*(C_in/g)*k*k
    for refused in (lambda: lc.evaluate(total, {"C": 3}), lambda: block.evaluate({"C": 3})):
        with pytest.raises(lc.DomainError, match=re.escape(GROUPS)):
            refused()
    with pytest.raises(lc.DomainError, match=re.escape(GROUPS)):
        block.at(C=5)


def test_analysis_closed_forms_carry_their_guards():
    class Positions(torch.nn.Module):  # looks up rows arange(L): needs L <= 10
        def __init__(self):
            super().__init__()
            self.table = torch.nn.Embedding(10, 4)

        def forward(self, x):
            return self.table(torch.arange(x.shape[1])) + x

    analysis = lc.analyze(Positions(), ("N", "L", 4))
    assert lc.evaluate(analysis.cost("exact"), {"N": 2, "L": 10}) == 2 * 10 * 4  # the add
    assert analysis.params == 40 and analysis.cost("macs") == 0
    for expr in (analysis.cost("exact"), analysis.params):  # 40: a number, still carried
        with pytest.raises(lc.DomainError, match=r"guard L <= 10 .*fails at L=11"):
            lc.evaluate(expr, {"N": 2, "L": 11})
    with pytest.raises(lc.DomainError, match=r"guard L <= 10 .*fails at L=11"):
        analysis.evaluate({"N": 2, "L": 11}, "macs")  # 0 is one shared object: checked here
    with pytest.raises(IndexError):  # torch: index out of range in self
        Positions()(torch.zeros(2, 11, 4))


class _RelativePositions(torch.nn.Module):
    """mvitv2's relative positions: a table of 2*7 - 1 rows indexed by the distances of the
    sequence's positions, ``arange(q) * ratio - arange(k) * ratio + (k - 1) * ratio``: any
    length up to 7 runs, beyond it torch raises IndexError (timm's mvitv2 at 232 px)."""

    def __init__(self, ratio: float | int = 1.0):
        super().__init__()
        self.table = torch.nn.Parameter(torch.randn(13, 4))
        self.ratio = ratio

    def forward(self, x):
        length = x.shape[1]
        r = self.ratio
        distance = torch.arange(length).unsqueeze(-1) * r - torch.arange(length).unsqueeze(0) * r
        distance += (length - 1) * r
        return x + self.table[distance.long()].sum(1)


@pytest.mark.parametrize("ratio", [1.0, 1])
def test_relative_position_lookup_guards_its_table(ratio):
    model = _RelativePositions(ratio)
    analysis = lc.analyze(model, ("N", "L", 4))
    for length in (2, 7):  # what a run does there, to the op
        assert analysis.evaluate({"N": 2, "L": length}, "exact") == (
            lc.count(model, (2, length, 4)).cost("exact")
        )
    with pytest.raises(IndexError):
        model(torch.zeros(2, 8, 4))
    with pytest.raises(lc.DomainError, match=r"guard L <= 7 .*fails at L=8"):
        analysis.evaluate({"N": 2, "L": 8}, "exact")


def _cli(*args: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["eval", *args])
    return code, err.getvalue()


def test_cli_eval_refuses_with_one_line():
    code, err = _cli("Conv2d", "N=2", "C_in=3", "C_out=4", "k=9", "H=8", "W=8")
    assert code == 2 and err.count("\n") == 1 and KERNEL in err
    code, err = _cli("Conv2d", "N=2", "C_in=3", "C_out=4", "k=3", "g=2", "H=8", "W=8")
    assert code == 2 and GROUPS in err


# -- property test: every entry point refuses what torch refuses, with one reason ---------------


@st.composite
def rejected_conv2d(draw):
    """A Conv2d configuration and input that break exactly one of torch's rules, by
    construction: ``(fault, attributes, input shape, symbol values)``."""
    fault = draw(st.sampled_from(["kernel", "groups", "reflect"]))
    g = draw(st.integers(1, 3))
    C_in = g * draw(st.integers(1, 3))
    C_out = g * draw(st.integers(1, 3))
    k = draw(st.integers(1, 4))
    d = draw(st.integers(1, 2))
    s = draw(st.integers(1, 3))
    reach = d * (k - 1) + 1  # the kernel's extent
    if fault == "kernel":  # the padded input is smaller than the kernel's extent
        k = draw(st.integers(2, 5))
        reach = d * (k - 1) + 1
        p = draw(st.integers(0, (reach - 2) // 2))
        H = draw(st.integers(1, reach - 1 - 2 * p))
        W = draw(st.integers(reach, reach + 4))
        mode = "zeros"
    elif fault == "groups":  # the groups do not divide the input channels
        g = draw(st.integers(2, 4))
        C_in = g * draw(st.integers(1, 3)) + draw(st.integers(1, g - 1))
        C_out = g * draw(st.integers(1, 3))
        p = draw(st.integers(0, 2))
        H = draw(st.integers(reach, reach + 5))
        W = draw(st.integers(reach, reach + 5))
        mode = "zeros"
    else:  # reflect padding at least as large as the input
        H = draw(st.integers(1, 6))
        W = draw(st.integers(1, 6))
        p = draw(st.integers(max(H, W, reach), max(H, W, reach) + 3))
        mode = "reflect"
    N = draw(st.integers(1, 2))
    b = draw(st.booleans())
    attrs = SimpleNamespace(
        in_channels=C_in,
        out_channels=C_out,
        kernel_size=(k, k),
        stride=(s, s),
        padding=(p, p),
        dilation=(d, d),
        groups=g,
        bias=object() if b else None,
        padding_mode=mode,
    )
    values = dict(N=N, C_in=C_in, C_out=C_out, k=k, s=s, p=p, d=d, g=g, b=int(b), H=H, W=W)
    return fault, attrs, (N, C_in, H, W), values


REASONS = {"kernel": KERNEL, "groups": GROUPS, "reflect": REFLECT}
TORCH_SAYS = {
    "kernel": "Kernel size can't be greater than actual input size",
    "groups": "in_channels must be divisible by groups",
    "reflect": "Padding size should be less than the corresponding input dimension",
}


@given(rejected_conv2d())
def test_every_entry_point_refuses_what_torch_refuses(case):
    fault, attrs, shape, values = case
    Conv2d = type("Conv2d", (), {})  # bind reads attributes off any object of this class name
    module = Conv2d()
    module.__dict__.update(vars(attrs))

    def build():
        return torch.nn.Conv2d(
            attrs.in_channels,
            attrs.out_channels,
            attrs.kernel_size,
            attrs.stride,
            attrs.padding,
            attrs.dilation,
            attrs.groups,
            attrs.bias is not None,
            attrs.padding_mode,
        )

    message = torch_rejects(build, shape)
    assert message is not None and TORCH_SAYS[fault] in message
    reason = re.escape(REASONS[fault])
    rule = lc.rule_for(module)
    with pytest.raises(lc.DomainError, match=reason):
        lc.bind(module, shape)
    for expr in (rule.flops, rule.cost("macs"), rule.params, rule.output_shape[2]):
        if expr.free_symbols:
            with pytest.raises(lc.DomainError, match=reason):
                lc.evaluate(expr, values)
    swept = {k: v for k, v in values.items() if k != "H"}
    with pytest.raises(lc.DomainError, match=reason):
        lc.sweep(rule.flops, H=[values["H"]], **swept)
    masked = lc.sweep(rule.flops, H=[values["H"]], invalid="mask", **swept)
    assert masked.mask.all()
    with pytest.raises(lc.DomainError, match=reason):
        rule.at(**values)
    code, err = _cli(rule.name, *(f"{k}={v}" for k, v in values.items()))
    assert code == 2 and REASONS[fault] in err, err


def test_the_strategy_draws_every_fault():
    faults = set()

    @given(rejected_conv2d())
    def collect(case):
        faults.add(case[0])

    collect()
    assert faults == set(REASONS)


def test_domain_of_a_number_and_of_text_is_empty():
    assert lc.domain(sympy.Integer(3)) == lc.Domain()
    assert lc.with_domain(sympy.Integer(0), lc.rule("Conv2d").domain()) is sympy.S.Zero
    assert lc.evaluate("C_in*k", {"C_in": 3, "k": 2}) == 6


def test_handed_out_expressions_are_the_catalogue_formulas_with_their_domain():
    from layercost_sym.cache import catalogue

    checked = 0
    for rule in catalogue().rules.values():
        for r in (rule, *rule.variants):
            for (quantity, convention, training), compact in r.compact.items():
                handed = r.quantity(quantity, convention, training)
                plain = r.expand(compact)
                assert handed == plain and plain == handed and hash(handed) == hash(plain)
                assert sympy.srepr(handed) == sympy.srepr(plain), r.name
                if r.constraints and not isinstance(type(plain), sympy.core.singleton.Singleton):
                    # a quantity's own constraints too (CrossMapLRN2d's backward)
                    assert lc.domain(handed) == r.domain(training, quantity), (r.name, convention)
                assert r.quantity(quantity, convention, training) is handed  # made once
                checked += 1
            assert r.params == r.expand(r.compact_quantity("params"))
    assert checked > 2000


def test_registry_forgets_expressions_nobody_holds():
    registry = importlib.import_module("layercost_sym.domain")  # lc.domain is the function

    H = lc.symbols("H")
    d = lc.rule("Conv2d").domain()
    kept = [lc.with_domain(H + i, d) for i in range(10)]
    registry._sweep()  # the table now holds only what is held (the catalogue's expressions)
    held = len(registry._ATTACHED)
    # more than the table held (the catalogue's rules a worker has loaded: thousands after
    # the model tests), so that the table doubles at least once
    added = max(5000, held + 1)
    for i in range(added):  # attached, then dropped at once
        lc.with_domain(H * (i + 2), d)
    # swept whenever the table doubles what it held: never the held + added of no sweep
    assert len(registry._ATTACHED) < max(1024, 2 * held) <= held + added
    assert all(lc.domain(e) == d for e in kept)
