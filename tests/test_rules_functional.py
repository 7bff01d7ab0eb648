"""The functional rules (formulas/functional.toml) against the ATen calls they describe.

For every drawn call of an operator (shapes of rank 1 to 4, broadcasting, a number in a
tensor's place, one tensor passed twice, the in-place form; float32 and bfloat16) the rule
torch's operator name selects, bound at that call by the analysis' own binder
(``lookup.bind_op``), gives

* ``flops`` under ``exact`` and ``bytes`` under ``eager``: what the op counter
  (``ExactCounter``) measures when torch runs that call;
* ``bytes`` under ``min``: each distinct tensor argument read once, each output written once
  (numel x element size), nothing for a view: how the analysis costs an operator call;
* ``backward`` and ``saved`` under ``autograd``, where stated, with the drawn tensor arguments
  requiring grad (the flags ``rg_i``): the op counter and FlopCounterMode around
  ``torch.autograd.grad``, and the storages autograd saves for the call
  (``saved_tensors_hooks``, each once and whole).

Some operators (``true_divide``, ``reshape``, ``softmax``, ``square``, ...) never reach a
dispatch mode as themselves (torch rewrites them first); the counter measures what torch runs
in their place, which their rules must equal all the same.
"""

from __future__ import annotations

import types
from typing import Any

import pytest
import sympy
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from layercost_sym.cache import catalogue
from layercost_sym.glossary import ARGUMENT_GRADS, glossary
from layercost_sym.testing.torchcheck import eager_not_stated
from layercost_sym.torchtools.count import SavedStorages, backward_counts
from layercost_sym.torchtools.lookup import bind_op, op_call, op_rule
from layercost_sym.torchtools.opbytes import moves_nothing
from layercost_sym.torchtools.opcount import ExactCounter, op_name

aten = torch.ops.aten

# A call: (overload, args, kwargs, elements of the distinct tensors a cat/stack reads or None)
Call = tuple[Any, tuple, dict, int | None]


@st.composite
def _shape(draw, rank_min: int = 1, rank_max: int = 4) -> tuple[int, ...]:
    rank = draw(st.integers(rank_min, rank_max))
    return tuple(draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank)))


@st.composite
def _broadcast(draw, shape: tuple[int, ...]) -> tuple[int, ...]:
    """A shape that broadcasts to ``shape``: some dimensions 1, some leading ones dropped."""
    dims = [d if draw(st.booleans()) else 1 for d in shape]
    return tuple(dims[draw(st.integers(0, len(dims))) :])


_DTYPES = st.sampled_from([torch.float32, torch.bfloat16])


def _t(shape, dtype) -> torch.Tensor:
    return torch.randn(shape).to(dtype)


def _bool(shape) -> torch.Tensor:
    return torch.randn(shape) > 0


UNARY = {  # rule -> overload on one floating tensor
    "neg": aten.neg.default,
    "reciprocal": aten.reciprocal.default,
    "rsqrt": aten.rsqrt.default,
    "sqrt": aten.sqrt.default,
    "exp": aten.exp.default,
    "log": aten.log.default,
    "log1p": aten.log1p.default,
    "erf": aten.erf.default,
    "tanh": aten.tanh.default,
    "sigmoid": aten.sigmoid.default,
    "abs": aten.abs.default,
    "floor": aten.floor.default,
    "relu": aten.relu.default,
    "square": aten.square.default,
    "cos": aten.cos.default,
    "sin": aten.sin.default,
    "silu": aten.silu.default,
    "hardswish": aten.hardswish.default,
    "clone": aten.clone.default,
    "isnan": aten.isnan.default,
    "logical_not": aten.logical_not.default,
    "gelu": aten.gelu.default,
}
IN_PLACE = {"neg", "exp", "tanh", "sigmoid", "relu", "abs", "sqrt", "silu", "hardswish"}

BINARY = {  # rule -> (tensor-tensor overload, tensor-number overload or None, in-place overload)
    "add": (aten.add.Tensor, aten.add.Scalar, aten.add_.Tensor),
    "sub": (aten.sub.Tensor, aten.sub.Scalar, aten.sub_.Tensor),
    "rsub": (aten.rsub.Tensor, aten.rsub.Scalar, None),
    "mul": (aten.mul.Tensor, aten.mul.Scalar, aten.mul_.Tensor),
    "div": (aten.div.Tensor, aten.div.Scalar, aten.div_.Tensor),
    "true_divide": (aten.true_divide.Tensor, aten.true_divide.Scalar, None),
    "pow": (aten.pow.Tensor_Tensor, aten.pow.Tensor_Scalar, None),
    "gt": (aten.gt.Tensor, aten.gt.Scalar, None),
    "ge": (aten.ge.Tensor, aten.ge.Scalar, None),
    "lt": (aten.lt.Tensor, aten.lt.Scalar, None),
    "le": (aten.le.Tensor, aten.le.Scalar, None),
    "eq": (aten.eq.Tensor, aten.eq.Scalar, None),
    "ne": (aten.ne.Tensor, aten.ne.Scalar, None),
    "maximum": (aten.maximum.default, None, None),
    "minimum": (aten.minimum.default, None, None),
    "clamp_min": (aten.clamp_min.Tensor, aten.clamp_min.default, aten.clamp_min_.Tensor),
    "clamp_max": (aten.clamp_max.Tensor, aten.clamp_max.default, aten.clamp_max_.Tensor),
}
LOGICAL = {  # rule -> (bool-bool overload, bool-number overload or None)
    "logical_and": (aten.logical_and.default, None),
    "logical_or": (aten.logical_or.default, None),
    "bitwise_and": (aten.bitwise_and.Tensor, aten.bitwise_and.Scalar),
    "bitwise_or": (aten.bitwise_or.Tensor, aten.bitwise_or.Scalar),
    "bitwise_xor": (aten.bitwise_xor.Tensor, aten.bitwise_xor.Scalar),
    "bitwise_not": (aten.bitwise_not.default, None),
}


def _unary(name: str) -> st.SearchStrategy[Call]:
    @st.composite
    def draw_call(draw):
        x = _t(draw(_shape()), draw(_DTYPES))
        if name == "gelu":
            approximate = draw(st.sampled_from(["none", "tanh"]))
            return aten.gelu.default, (x,), {"approximate": approximate}, None
        if name in IN_PLACE and draw(st.booleans()):
            return getattr(aten, f"{name}_").default, (x,), {}, None
        return UNARY[name], (x,), {}, None

    return draw_call()


def _binary(name: str) -> st.SearchStrategy[Call]:
    tensor_op, number_op, in_place = BINARY[name]

    @st.composite
    def draw_call(draw):
        dtype, shape = draw(_DTYPES), draw(_shape())
        x, y = _t(shape, dtype), _t(draw(_broadcast(shape)), dtype)
        forms = ["tensors", "swapped", "same"] + ["number"] * bool(number_op)
        form = draw(st.sampled_from(forms + ["in place"] * bool(in_place)))
        if name == "pow":  # a positive base: no NaN (the count does not care, the reader does)
            x = x.abs() + 1
        if form == "number":
            return number_op, (x, 2), {}, None
        if form == "same":
            return tensor_op, (x, x), {}, None
        if form == "swapped":  # the output larger than the first operand
            return tensor_op, (y, x), {}, None
        return (in_place if form == "in place" else tensor_op), (x, y), {}, None

    return draw_call()


def _logical(name: str) -> st.SearchStrategy[Call]:
    tensor_op, number_op = LOGICAL[name]

    @st.composite
    def draw_call(draw):
        shape = draw(_shape())
        a, b = _bool(shape), _bool(draw(_broadcast(shape)))
        if name == "bitwise_not":
            return tensor_op, (a,), {}, None
        form = draw(st.sampled_from(["tensors", "same"] + ["number"] * bool(number_op)))
        args = {"tensors": (a, b), "same": (a, a), "number": (a, True)}[form]
        return (number_op if form == "number" else tensor_op), args, {}, None

    return draw_call()


@st.composite
def _where(draw) -> Call:
    dtype, shape = draw(_DTYPES), draw(_shape())
    c, x, y = _bool(draw(_broadcast(shape))), _t(shape, dtype), _t(draw(_broadcast(shape)), dtype)
    form = draw(st.sampled_from(["tensors", "same", "number other", "number self", "numbers"]))
    return {
        "tensors": (aten.where.self, (c, x, y), {}, None),
        "same": (aten.where.self, (c, x, x), {}, None),
        "number other": (aten.where.ScalarOther, (c, x, 0.0), {}, None),
        "number self": (aten.where.ScalarSelf, (c, 0.0, y), {}, None),
        "numbers": (aten.where.Scalar, (c, 1.0, 0.0), {}, None),
    }[form]


@st.composite
def _view(draw, name: str) -> Call:
    x = _t(draw(_shape()), draw(_DTYPES))
    n, rank = x.numel(), x.dim()
    dim = draw(st.integers(0, rank - 1))
    calls = {
        "view": (aten.view.default, (x, [n]), {}, None),
        "_unsafe_view": (aten._unsafe_view.default, (x, [n]), {}, None),
        "reshape": (aten.reshape.default, (x, [n]), {}, None),
        "permute": (aten.permute.default, (x, list(reversed(range(rank)))), {}, None),
        "transpose": (aten.transpose.int, (x, 0, rank - 1), {}, None),
        "t": (aten.t.default, (x if rank <= 2 else x.reshape(n),), {}, None),
        "expand": (aten.expand.default, (x, [2, *x.shape]), {}, None),
        "unsqueeze": (aten.unsqueeze.default, (x, dim), {}, None),
        "squeeze": (aten.squeeze.dim, (x, dim), {}, None),
        "select": (aten.select.int, (x, dim, 0), {}, None),
        "slice": (aten.slice.Tensor, (x, dim, 0, 1), {}, None),
    }
    return calls[name]


@st.composite
def _copy(draw, name: str) -> Call:
    dtype, shape = draw(_DTYPES), draw(_shape())
    x = _t(shape, dtype)
    if name == "_to_copy":
        to = draw(st.sampled_from([torch.float32, torch.float16, torch.float64, torch.int64]))
        return aten._to_copy.default, (x,), {"dtype": to}, None
    if name in ("_softmax", "softmax", "_safe_softmax"):
        dim = draw(st.integers(-x.dim(), x.dim() - 1))
        op = (
            {"_softmax": aten._softmax.default, "softmax": aten.softmax.int}[name]
            if (name != "_safe_softmax")
            else aten._safe_softmax.default
        )
        return op, ((x, dim, False) if name == "_softmax" else (x, dim)), {}, None
    # cat / stack: two or three tensors, one possibly passed twice
    dim = draw(st.integers(0, len(shape) - 1))
    other = list(shape)
    if name == "cat":
        other[dim] = draw(st.integers(1, 4))
    y = _t(tuple(other), dtype)
    parts = draw(st.sampled_from([[x, y], [x, x], [x, y, x]]))
    distinct = sum(t.numel() for t in {id(t): t for t in parts}.values())
    op = aten.cat.default if name == "cat" else aten.stack.default
    return op, (parts, dim), {}, distinct


@st.composite
def _reduction(draw, name: str) -> Call:
    shape = draw(_shape())
    x = _bool(shape) if name in ("all", "any") else _t(shape, draw(_DTYPES))
    if name == "sum" and draw(st.booleans()):
        x = _bool(shape)  # a count: int64 out
    dim = draw(st.integers(0, len(shape) - 1))
    keep = draw(st.booleans())
    if name == "mean" and len(shape) >= 3 and draw(st.booleans()):
        return aten.mean.dim, (x, [-1, -2], True), {}, None  # the adaptive_avg_pool2d variant
    if name == "var":  # unbiased over everything, or a correction of 0 or 1 along a dim
        if draw(st.booleans()):
            return aten.var.default, (x,), {}, None
        correction = draw(st.sampled_from([0, 1]))
        return aten.var.correction, (x, [dim]), {"correction": correction, "keepdim": keep}, None
    if draw(st.booleans()):  # over everything
        whole = {
            "sum": aten.sum.default,
            "amax": None,
            "max": aten.max.default,
            "all": aten.all.default,
            "any": aten.any.default,
            "mean": aten.mean.default,
        }[name]
        if whole is not None:
            return whole, (x,), {}, None
    by_dim = {
        "sum": aten.sum.dim_IntList,
        "amax": aten.amax.default,
        "max": aten.max.dim,
        "all": aten.all.dim,
        "any": aten.any.dim,
        "mean": aten.mean.dim,
    }[name]
    dims = dim if name in ("all", "any", "max") else [dim]
    return by_dim, (x, dims, keep), {}, None


@st.composite
def _product(draw, name: str) -> Call:
    dtype = draw(_DTYPES)
    n, k, m, b = (draw(st.integers(1, 5)) for _ in range(4))
    if name in ("bmm", "baddbmm"):
        x = _t((b, n, k), dtype)
        y = x if n == k and draw(st.booleans()) else _t((b, k, m), dtype)
        if name == "bmm":
            return aten.bmm.default, (x, y), {}, None
        cols = y.shape[2]  # the added input: a mask, broadcast or full
        added = _t(draw(st.sampled_from([(cols,), (n, cols), (b, n, cols), (1, 1, cols)])), dtype)
        return aten.baddbmm.default, (added, x, y), {}, None
    x = _t((n, k), dtype)
    w = x if n == k and draw(st.booleans()) else _t((k, m), dtype)
    cols = w.shape[1]
    if name == "mm":
        return aten.mm.default, (x, w), {}, None
    bias = _t(draw(st.sampled_from([(cols,), (n, cols), (1, cols)])), dtype)
    return aten.addmm.default, (bias, x, w), {}, None


@st.composite
def _layer_norm(draw) -> Call:
    dtype, shape = draw(_DTYPES), draw(_shape())
    normalized = list(shape[draw(st.integers(0, len(shape) - 1)) :])
    weight = _t(normalized, dtype) if draw(st.booleans()) else None
    bias = _t(normalized, dtype) if draw(st.booleans()) else None
    x = _t(shape, dtype)
    return aten.native_layer_norm.default, (x, normalized, weight, bias, 1e-5), {}, None


def _calls(name: str) -> st.SearchStrategy[Call]:
    if name in UNARY:
        return _unary(name)
    if name in BINARY:
        return _binary(name)
    if name in LOGICAL:
        return _logical(name)
    if name == "where":
        return _where()
    if name in (
        "view",
        "_unsafe_view",
        "reshape",
        "permute",
        "transpose",
        "t",
        "expand",
        "unsqueeze",
        "squeeze",
        "select",
        "slice",
    ):
        return _view(name)
    if name in ("_to_copy", "_softmax", "softmax", "_safe_softmax", "cat", "stack"):
        return _copy(name)
    if name in ("sum", "amax", "max", "all", "any", "mean", "var"):
        return _reduction(name)
    if name in ("mm", "addmm", "bmm", "baddbmm"):
        return _product(name)
    assert name == "native_layer_norm", name
    return _layer_norm()


def _functional_rules() -> list[str]:
    return sorted(r.name for r in catalogue().rules.values() if r.family == "functional")


def _min_bytes(func, args, kwargs, out) -> int:
    """Each distinct tensor argument read once, each output written once; a view nothing."""
    if moves_nothing(func, args, kwargs, out):
        return 0
    tensors = op_call(func, args, kwargs, out)[1]
    outputs = list(out) if isinstance(out, tuple | list) else [out]
    inputs = {id(t): t for t in tensors[1:]}.values()
    return sum(t.numel() * t.element_size() for t in [*inputs, *outputs])


def _copies(args: tuple) -> list:
    """Copies of a call's tensors (an in-place call changes them); one tensor passed twice
    stays one tensor."""
    seen: dict[int, torch.Tensor] = {}
    out: list = []
    for a in args:
        if isinstance(a, torch.Tensor):
            out.append(seen.setdefault(id(a), a.clone()))
        elif isinstance(a, list) and a and isinstance(a[0], torch.Tensor):
            out.append([seen.setdefault(id(t), t.clone()) for t in a])
        else:
            out.append(a)
    return out


def _measure(func, args, kwargs) -> tuple[int, int]:
    """(exact FLOPs, eager bytes) the op counter measures when torch runs the call."""
    copies = _copies(args)
    with ExactCounter() as counter:
        func(*copies, **kwargs)
    return counter.total, counter.bytes


class _Recorder(TorchDispatchMode):
    """The ATen calls that reach dispatch: ``[(func, args, kwargs, out), ...]``."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, tuple, dict, Any]] = []

    def __torch_dispatch__(self, func, types_, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.calls.append((func, args, kwargs or {}, out))
        return out


def _with_grad(args: tuple, grads: tuple[bool, ...]) -> tuple[list, list[torch.Tensor]]:
    """Copies of a call's arguments (as :func:`_copies`) where floating tensor ``i`` (in the
    order :func:`~layercost_sym.torchtools.lookup.op_call` lists them) requires grad when
    ``grads[i]``: a clone of a leaf (a clone's backward is no kernel; an in-place call works on
    a tensor of its own), as ``lc.count`` makes them; and those leaves."""
    seen: dict[int, torch.Tensor] = {}
    leaves: list[torch.Tensor] = []
    position = iter(range(10**6))

    def copy(t: torch.Tensor) -> torch.Tensor:
        i = next(position)
        if id(t) not in seen:
            if t.is_floating_point() and grads[i % len(grads)]:
                leaves.append(t.detach().clone().requires_grad_())
                seen[id(t)] = leaves[-1].clone()
            else:
                seen[id(t)] = t.clone()
        return seen[id(t)]

    out: list = []
    for a in args:
        if isinstance(a, torch.Tensor):
            out.append(copy(a))
        elif isinstance(a, list) and a and isinstance(a[0], torch.Tensor):
            out.append([copy(t) for t in a])
        else:
            out.append(a)
    return out, leaves


def _measure_backward(func, args, kwargs, grads: tuple[bool, ...]) -> tuple[int, int]:
    """(exact FLOPs, FlopCounterMode's FLOPs) of the backward of one call: the gradients of its
    floating outputs (seeded with ones, as ``lc.count(..., backward=True)``) with respect to
    the arguments that require grad."""
    call, leaves = _with_grad(args, grads)
    outputs = [t for t in tree_flatten(func(*call, **kwargs))[0] if isinstance(t, torch.Tensor)]
    return backward_counts(outputs, leaves)


def _measure_saved(func, args, kwargs, grads: tuple[bool, ...]) -> int:
    """The bytes autograd saves for backward when the call runs on the copies
    :func:`_with_grad` makes (``grads``: which tensor arguments require grad), each storage
    once and whole (:class:`~layercost_sym.torchtools.count.SavedStorages`; no parameters
    here, nothing aside).  A saved argument that requires grad is a clone of its leaf: its
    storage is the clone's, of the same size."""
    call = _with_grad(args, grads)[0]
    with torch.enable_grad(), SavedStorages(set()) as saved:
        func(*call, **kwargs)
    return saved.nbytes


def check_call(name: str, call: Call, grads: tuple[bool, ...] = (False,)) -> None:
    """The rule at each call of its operator that reaches dispatch (``where`` with a number
    reaches it as ``where.self`` on a 0-dim tensor that ``scalar_tensor`` made), measured
    alone; an operator torch rewrites before dispatch (``true_divide`` runs ``div``) at the
    call as made, measured with everything torch runs in its place.  ``grads``: which tensor
    arguments require grad, for the rule's backward and saved bytes (where it states them)."""
    func, args, kwargs, distinct = call
    with _Recorder() as recorder:
        func(*_copies(args), **kwargs)
    reached = [c for c in recorder.calls if op_name(c[0]) == name]
    for f, a, k, _ in reached or [(func, args, kwargs, None)]:
        _check(name, f, a, k, distinct, grads)


def _check(name: str, func, args, kwargs, distinct: int | None, grads=(False,)) -> None:
    flops, eager = _measure(func, args, kwargs)
    args = tuple(_copies(args))
    out = func(*args, **kwargs)
    named, tensors = op_call(func, args, kwargs, out)
    rule = op_rule(name, types.SimpleNamespace(**named))
    assert rule is not None and rule.module == name
    values, open_ = bind_op(rule, named, tensors, [tuple(t.shape) for t in tensors])
    assert open_ == ()
    if distinct is not None:  # a concatenation: the elements of the tensors it joins, once
        assert values["N_r"] == distinct
    symbols = glossary().symbols
    at = {symbols[k]: v for k, v in values.items()}

    def value(quantity: str, convention: str) -> sympy.Expr:
        return rule.quantity(quantity, convention).xreplace(at)

    assert value("flops", "exact") == flops, f"{name}: exact FLOPs"
    assert value("bytes", "eager") == eager, f"{name}: eager bytes"
    assert value("bytes", "min") == _min_bytes(func, args, kwargs, out), f"{name}: min bytes"
    backward = bool(rule.conventions_of("backward"))
    saved = "autograd" in rule.conventions_of("saved")
    if not (backward or saved):
        return
    # the backward and what autograd saves for it: the flags rg_i read from the arguments as
    # they enter the call
    call = _with_grad(args, grads)[0]
    entering = op_call(func, tuple(call), kwargs, None)[1]  # no output: argument i at i - 1
    for i, flag in ARGUMENT_GRADS.items():
        at[symbols[flag]] = int(i <= len(entering) and entering[i - 1].requires_grad)
    if backward:
        exact, torch_flops = _measure_backward(func, args, kwargs, grads)
        assert value("backward", "exact") == exact, f"{name}: exact backward"
        assert 2 * value("backward", "macs") == torch_flops, f"{name}: backward macs"
    if saved:
        kept = _measure_saved(func, args, kwargs, grads)
        assert value("saved", "autograd") == kept, f"{name}: saved (autograd) at {at}"


_GRADS = st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans())


@pytest.mark.parametrize("name", _functional_rules())
def test_functional_rule_matches_the_call_torch_runs(name):
    given(_calls(name), _GRADS)(lambda call, grads: check_call(name, call, grads))()


def test_every_functional_rule_has_calls_drawn():
    for name in _functional_rules():
        assert _calls(name) is not None


# Rules of this family that do not state bytes under eager (issue 14); a rule leaves the set
# when it states them (the property test above then proves them, in float32 and bfloat16).
EAGER_NOT_YET: set[str] = set()


def test_eager_bytes_stated_by_every_functional_rule_but_the_listed_ones():
    assert eager_not_stated("functional") == EAGER_NOT_YET


# Rules of this family that do not state backward yet (issue 15); a rule leaves the set when it
# states it (the property test above then proves it with each tensor argument requiring grad
# or not, against the op counter and FlopCounterMode around torch.autograd.grad).
BACKWARD_NOT_YET: set[str] = set()


def test_backward_stated_by_every_functional_rule_but_the_listed_ones():
    stated = {r for r in _functional_rules() if catalogue().rules[r].conventions_of("backward")}
    assert set(_functional_rules()) - stated == BACKWARD_NOT_YET


# Rules of this family that do not state saved under autograd yet; a rule leaves the set when it
# states it (the property test above then proves it with each tensor argument requiring grad or
# not, against the storages saved_tensors_hooks sees autograd save for the call).
SAVED_NOT_YET: set[str] = set()


def test_saved_stated_by_every_functional_rule_but_the_listed_ones():
    rules = catalogue().rules
    stated = {r for r in _functional_rules() if "autograd" in rules[r].conventions_of("saved")}
    assert set(_functional_rules()) - stated == SAVED_NOT_YET
