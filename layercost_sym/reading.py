"""Reading a module: what a rule's symbols read from a module (or an operator's arguments)
and from the shapes of its inputs.

Everything that looks at a module lives here: attribute paths, the ``when`` keys that choose a
variant (:func:`choose`), the bind specs of ``formulas/README.md`` (one table, :data:`BIND_KINDS`:
how each kind's text is recognised and how its value is read, so a new kind of spec is one
entry here), and the input patterns (:func:`split_input`).  The binder,
:func:`layercost_sym.binding.read`, puts these together for one call.  Sizes may be ints or
SymPy expressions throughout.  Nothing here imports torch.

(Over 500 lines by design: every way a module is read, so that a new kind of bind spec or
``when`` key changes this module only.)

>>> from layercost_sym.cache import catalogue
>>> class Linear:                      # any object with torch.nn.Linear's attributes will do
...     in_features, out_features, bias = 3, 4, object()
>>> rule = choose(catalogue().by_module["Linear"], Linear(), [(2, 5, 3)])
>>> read_spec(Linear(), rule.binds["C_out"], "C_out", rule, {}, [(2, 5, 3)])
4
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sympy

from .errors import ShapeError
from .glossary import (
    ARGUMENT_GRADS,
    DISTINCT_INPUTS,
    ELEMENT_SIZES,
    FUSED_KERNEL,
    OUTPUT_GRADS,
    OUTPUT_SIZE,
    REQUIRES_GRAD,
    WEIGHTS_GRAD,
)
from .rule import BindSpec, InputPattern, Rule

__all__ = [
    "BIND_KINDS",
    "BindKind",
    "attribute",
    "call_sizes",
    "check_when",
    "choose",
    "dims_of",
    "distinct_inputs",
    "element_sizes",
    "fractional",
    "fused_kernel",
    "output_grads",
    "parameters_grad",
    "parse_bind_spec",
    "read_spec",
    "requires_grad",
    "split_input",
    "unread_tensors",
    "weights_grad",
    "when_matches",
]

_MISSING = object()

# An attribute path: names joined by dots (submodules: "self_attn.num_heads"), no dunders.
PATH = r"([A-Za-z][\w]*(?:\.[A-Za-z][\w]*)*)"


def attribute(obj: Any, path: str, default: Any = _MISSING) -> Any:
    """``obj.a.b`` for the path ``"a.b"`` (``default`` if any step is missing)."""
    value = obj
    for name in path.split("."):
        value = getattr(value, name, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                raise AttributeError(path)
            return default
    return value


# -- choosing a variant: the `when` keys ------------------------------------------------------

# besides an attribute path (equality): "attr?" / "attr[i]?" (the attribute, or its element i,
# is not None), "rank(i)" (the rank of input i, known only when the inputs are) and "len(attr)"
_WHEN_PRESENT = re.compile(rf"^{PATH}(?:\[(\d+)\])?\?$")
_WHEN_RANK = re.compile(r"^rank\((\d+)\)$")
_WHEN_LEN = re.compile(rf"^len\({PATH}\)$")


def _comparable(value: Any, expected: Any) -> Any:
    """A callable attribute (``activation=F.gelu`` or ``nn.GELU()``) compares by its name."""
    if isinstance(expected, str) and callable(value) and not isinstance(value, str):
        return getattr(value, "__name__", type(value).__name__)
    return value


# an attribute's value compared with bounds (``norm = { gt = 1.0, lt = 2.0 }``): every one holds
_WHEN_BOUNDS = {
    "lt": lambda v, b: v < b,
    "le": lambda v, b: v <= b,
    "gt": lambda v, b: v > b,
    "ge": lambda v, b: v >= b,
}


def _is_real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def when_matches(
    obj: Any, key: str, expected: Any, inputs: Sequence[Sequence[Any]] | None = None
) -> bool:
    """Whether one ``when`` entry holds for ``obj`` called on inputs of ``inputs`` shapes."""
    if m := _WHEN_LEN.match(key):
        value = attribute(obj, m.group(1), None)
        if not isinstance(value, Sequence) or isinstance(value, str):
            return False
        return len(value) in expected if isinstance(expected, list) else len(value) == expected
    if m := _WHEN_RANK.match(key):
        index = int(m.group(1))
        if inputs is None or index >= len(inputs):
            return False  # undecidable without the inputs: the variant is not chosen
        rank = len(inputs[index])
        return rank in expected if isinstance(expected, list) else rank == expected
    if m := _WHEN_PRESENT.match(key):  # "attr?" = true: the attribute is not None
        value = attribute(obj, m.group(1), None)
        if m.group(2) is not None and isinstance(value, Sequence) and not isinstance(value, str):
            index = int(m.group(2))  # "attr[i]?": element i, as bind's "attr[i]" reads it
            value = value[0] if len(value) == 1 else value[index] if index < len(value) else None
        return (value is not None) == expected
    value = attribute(obj, key, None)
    if isinstance(expected, dict):  # bounds: a number within all of them
        return _is_real(value) and all(_WHEN_BOUNDS[k](value, b) for k, b in expected.items())
    if isinstance(expected, list):
        value = _comparable(value, expected[0]) if expected else value
        return value in [e if not isinstance(e, list) else tuple(e) for e in expected] or (
            isinstance(value, tuple | list) and list(value) in expected
        )
    return _comparable(value, expected) == expected


def check_when(key: str, value: Any) -> str | None:
    """Why a ``when`` entry cannot be read (a message), or None when it can: an attribute path
    (any value, or a table of bounds ``{ gt = 1.0, lt = 2.0 }``), ``"attr?"`` (true / false),
    ``"rank(i)"`` or ``"len(attr)"`` (an integer or a list of integers)."""
    if _WHEN_RANK.match(key) or _WHEN_LEN.match(key):
        what = "rank" if _WHEN_RANK.match(key) else "length"
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(r, int) and not isinstance(r, bool) for r in values):
            return f"when: {key!r} takes a {what} or a list of {what}s, got {value!r}"
    elif _WHEN_PRESENT.match(key):
        if not isinstance(value, bool):
            return f"when: {key!r} takes true (not None) or false (None), got {value!r}"
    elif not re.fullmatch(PATH, key):
        return (
            f"when: cannot read key {key!r} (use an attribute path, 'attr?', 'rank(i)' or "
            "'len(attr)')"
        )
    elif isinstance(value, dict) and (
        not value or set(value) - set(_WHEN_BOUNDS) or not all(_is_real(b) for b in value.values())
    ):
        return (
            f"when: {key!r} takes a table of bounds ({', '.join(_WHEN_BOUNDS)} = a number), "
            f"got {value!r}"
        )
    return None


def when_input(key: str) -> int | None:
    """The input a ``rank(i)`` key reads (None for other keys)."""
    m = _WHEN_RANK.match(key)
    return int(m.group(1)) if m else None


def choose(rule: Rule, obj: Any, inputs: Sequence[Sequence[Any]] | None = None) -> Rule:
    """The first variant of ``rule`` whose ``when`` holds for ``obj`` (a module, or an
    operator's arguments as attributes) on inputs of ``inputs`` shapes; else ``rule``."""
    for variant in rule.variants:
        if all(when_matches(obj, k, v, inputs) for k, v in variant.when.items()):
            return variant
    return rule


# -- bind specs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Call:
    """What a bind spec may read: the object, the rule and symbol (for messages), the forward
    call's keyword arguments and the input shapes."""

    obj: Any
    rule: Rule
    symbol: str
    call: Mapping[str, Any]
    inputs: Sequence[Sequence[Any]]

    def error(self, message: str) -> ShapeError:
        return ShapeError(f"{self.rule.name}: {message}")

    def attribute(self, spec: BindSpec) -> Any:
        try:
            return attribute(self.obj, spec.attr)
        except AttributeError:
            raise self.error(
                f"module {type(self.obj).__name__} has no attribute {spec.attr!r} "
                f"(needed for symbol {self.symbol})"
            ) from None


@dataclass(frozen=True)
class BindKind:
    """One kind of bind spec: the text it is written as (``form``, matched by ``pattern``),
    how that text becomes a :class:`BindSpec` (``make``) and how its value is read (``read``)."""

    name: str
    form: str
    pattern: re.Pattern[str]
    make: Callable[[re.Match[str], str], BindSpec]
    read: Callable[[_Call, BindSpec], Any]


def _read_number(c: _Call, spec: BindSpec) -> int | sympy.Expr:
    """``attr`` / ``attr[i]``: an integer attribute (or element ``i`` of a sequence; a single
    element serves every ``i``); a bool is 1/0, an integer-valued float that integer."""
    value = c.attribute(spec)
    if spec.index is not None and isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) > 1 and spec.index >= len(value):
            raise c.error(
                f"module.{spec.attr} = {tuple(value)} has no element {spec.index} "
                f"(symbol {c.symbol})"
            )
        value = value[spec.index] if len(value) > 1 else value[0]
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)  # an integer-valued float (scale_factor=2.0) is that integer
    if isinstance(value, sympy.Expr) and value.is_integer:
        return value  # a size in the input symbols (a traced call's groups, 2*N)
    if isinstance(value, float):
        raise c.error(
            f"module.{spec.text} is {value!r}, not a whole number (symbol {c.symbol}): the "
            "rule's symbols are integers, so this option is not covered"
        )
    raise c.error(
        f"module.{spec.text} is {value!r}, not an integer (symbol {c.symbol}); no variant of "
        "the rule covers this option"
    )


def _read_size(c: _Call, spec: BindSpec) -> Any:
    """``size(attr, i)``: the length of input ``i`` along the dimension ``module.attr`` names."""
    value = c.attribute(spec)
    index = spec.index or 0
    dims = c.inputs[index] if index < len(c.inputs) else ()
    rank = max(len(dims), 1)  # torch lets a 0-d tensor take dim 0 or -1
    if isinstance(value, bool) or not isinstance(value, int) or not -rank <= value < rank:
        raise c.error(
            f"module.{spec.attr} = {value!r} is not a dimension of input {index} of shape "
            f"{tuple(dims)} (symbol {c.symbol})"
        )
    return dims[value] if dims else 1  # a 0-d input has one element along dim 0 or -1


def _read_arg(c: _Call, spec: BindSpec) -> int:
    value = c.call.get(spec.attr, spec.value)
    if isinstance(value, bool | int):
        return int(value)
    raise c.error(f"forward argument {spec.attr}={value!r} is not an integer")


def _read_sequence(c: _Call, spec: BindSpec) -> int:
    value = c.attribute(spec)
    seq = (value,) if isinstance(value, int) else tuple(value)
    return math.prod(int(v) for v in seq) if spec.kind == "prod" else len(seq)


def _read_view_size(c: _Call, spec: BindSpec) -> Any:
    """``view_size(attr[i], dim)``: entry ``i`` of a size list that splits input 0's dimension
    ``module.dim`` (Unflatten), where ``-1`` stands, as in ``Tensor.view``, for that
    dimension's length divided by the product of the other entries."""
    value = c.attribute(spec)
    sizes = tuple(value) if isinstance(value, Sequence) and not isinstance(value, str) else ()
    index = spec.index or 0
    if index >= len(sizes):
        raise c.error(f"module.{spec.attr} = {value!r} has no element {index} (symbol {c.symbol})")
    entry = sizes[index]
    if entry != -1:
        return entry
    dims = c.inputs[0] if c.inputs else ()
    dim = attribute(c.obj, spec.of, None)
    if not isinstance(dim, int) or isinstance(dim, bool) or not -len(dims) <= dim < len(dims):
        raise c.error(
            f"module.{spec.of} = {dim!r} is not a dimension of input 0 of shape {tuple(dims)} "
            f"(symbol {c.symbol})"
        )
    others = math.prod(s for j, s in enumerate(sizes) if j != index)
    return dims[dim] // others if others else 0  # 0: refused as a non-positive size


def _factor(c: _Call, spec: BindSpec, value: Any) -> int | float:
    """The factor a ``scaled(X, attr[i])`` spec reads: element ``i`` of the attribute (a single
    number serves every ``i``), a positive int or float."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        if spec.index is not None and len(value) > 1:
            if spec.index >= len(value):
                raise c.error(
                    f"module.{spec.attr} = {tuple(value)} has no element {spec.index} "
                    f"(symbol {c.symbol})"
                )
            value = value[spec.index]
        elif len(value) == 1:
            value = value[0]
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise c.error(
            f"module.{spec.attr} = {value!r} is not a positive number "
            f"(symbol {c.symbol} = {spec.text})"
        )
    return value


def _read_scaled(c: _Call, spec: BindSpec) -> Any:
    """``scaled(X, attr[i])``: ``floor(X * s)`` computed as torch computes an output side from a
    float factor (``int(float(X) * s)`` in double precision: interpolate's scale_factor,
    fractional_max_pool's output_ratio), from the input dimension X and the attribute's element
    ``i``.  A symbolic X is scaled only by a whole factor; otherwise a ``ShapeError``."""
    value = _factor(c, spec, c.attribute(spec))
    size = None
    for pattern, dims in zip(c.rule.inputs, c.inputs, strict=False):
        if spec.of in pattern.names:
            split = split_input(pattern, dims, product=lambda d: sympy.Mul(*d))
            size = dict(split[1]).get(spec.of) if split is not None else None
            break
    if size is None:
        raise c.error(f"no input dimension {spec.of} for {c.symbol} = {spec.text}")
    if isinstance(size, int) or getattr(size, "is_Integer", False):
        side = int(float(int(size)) * float(value))  # torch: a double product, truncated
        if side < 1:  # interpolate refuses it; fractional_max_pool returns an empty tensor
            raise c.error(
                f"{c.symbol} = {spec.text} = int({int(size)}*{value!r}) is {side}: an empty "
                "output side, which the rule's positive sizes do not cover"
            )
        return side
    if float(value).is_integer():
        return int(value) * size  # a symbolic side scaled by a whole factor stays exact
    raise c.error(
        f"{c.symbol} = floor({spec.of}*{value!r}) has no closed form in a symbolic "
        f"{spec.of} = {size} (give a concrete size, or a whole scale factor)"
    )


def _default(text: str) -> int:
    """An ``arg(name, default)`` default: an integer, ``True`` (1) or ``False`` (0)."""
    return {"True": 1, "False": 0}[text] if text in ("True", "False") else int(text)


def _kind(name: str, form: str, pattern: str, make: Any, read: Any) -> BindKind:
    return BindKind(name, form, re.compile(pattern), make, read)


# In the order they are tried: the first whose pattern matches reads the spec.
BIND_KINDS: tuple[BindKind, ...] = (
    _kind(
        "size",
        "size(attr)",
        rf"^size\({PATH}(?:,\s*(\d+))?\)$",
        lambda m, t: BindSpec("size", attr=m.group(1), index=int(m.group(2) or 0), text=t),
        _read_size,
    ),
    _kind(
        "arg_given",
        "arg(name)?",
        r"^arg\((\w+)\)\?$",
        lambda m, t: BindSpec("arg_given", attr=m.group(1), text=t),
        lambda c, s: int(c.call.get(s.attr) is not None),
    ),
    _kind(
        "arg",
        "arg(name, default)",
        r"^arg\((\w+),\s*(-?\d+|True|False)\)$",
        lambda m, t: BindSpec("arg", attr=m.group(1), value=_default(m.group(2)), text=t),
        _read_arg,
    ),
    _kind(
        "prod",
        "prod(attr)",
        rf"^prod\({PATH}\)$",
        lambda m, t: BindSpec("prod", attr=m.group(1), text=t),
        _read_sequence,
    ),
    _kind(
        "len",
        "len(attr)",
        rf"^len\({PATH}\)$",
        lambda m, t: BindSpec("len", attr=m.group(1), text=t),
        _read_sequence,
    ),
    _kind(
        "view_size",
        "view_size(attr[i], dim)",
        rf"^view_size\({PATH}\[(\d+)\],\s*{PATH}\)$",
        lambda m, t: BindSpec(
            "view_size", attr=m.group(1), index=int(m.group(2)), text=t, of=m.group(3)
        ),
        _read_view_size,
    ),
    _kind(
        "scaled",
        "scaled(X, attr[i])",
        rf"^scaled\((\w+),\s*{PATH}(?:\[(\d+)\])?\)$",
        lambda m, t: BindSpec(
            "scaled",
            attr=m.group(2),
            index=int(m.group(3)) if m.group(3) is not None else None,
            text=t,
            of=m.group(1),
        ),
        _read_scaled,
    ),
    _kind(
        "present",
        "attr?",
        rf"^{PATH}\?$",
        lambda m, t: BindSpec("present", attr=m.group(1), text=t),
        lambda c, s: int(c.attribute(s) is not None),
    ),
    _kind(
        "attr",
        "attr[i]",
        rf"^{PATH}(?:\[(\d+)\])?$",
        lambda m, t: BindSpec(
            "attr",
            attr=m.group(1),
            index=int(m.group(2)) if m.group(2) is not None else None,
            text=t,
        ),
        _read_number,
    ),
)
_READERS: dict[str, Callable[[_Call, BindSpec], Any]] = {k.name: k.read for k in BIND_KINDS}
_READERS["const"] = lambda c, s: s.value


def parse_bind_spec(spec: Any) -> BindSpec:
    """The :class:`BindSpec` a ``bind`` entry's value states; a ``ValueError`` naming the forms
    it may take when it states none."""
    if isinstance(spec, bool | int):
        return BindSpec("const", value=int(spec), text=str(spec))
    if isinstance(spec, str):
        for kind in BIND_KINDS:
            if m := kind.pattern.match(spec):
                return kind.make(m, spec)
    forms = ", ".join(f"'{k.form}'" for k in BIND_KINDS)
    raise ValueError(f"cannot read {spec!r} (use {forms} or an integer)")


def read_spec(
    obj: Any,
    spec: BindSpec,
    symbol: str,
    rule: Rule,
    call: Mapping[str, Any],
    inputs: Sequence[Sequence[Any]],
) -> Any:
    """The value ``spec`` reads for ``symbol`` from ``obj`` and the call."""
    return _READERS[spec.kind](_Call(obj, rule, symbol, call, inputs), spec)


def fractional(obj: Any, rule: Rule) -> tuple[str, ...]:
    """The symbols a ``scaled()`` spec bound from a factor that is not a whole number."""
    out = []
    for name, spec in rule.binds.items():
        if spec.kind == "scaled":
            call = _Call(obj, rule, name, {}, ())
            if not float(_factor(call, spec, attribute(obj, spec.attr, None))).is_integer():
                out.append(name)
    return tuple(out)


# -- input patterns ----------------------------------------------------------------------------


def dims_of(shape: Any) -> tuple[int, ...]:
    """The dimensions of a shape given as a sequence of ints, or of a tensor or array."""
    if hasattr(shape, "shape") and not isinstance(shape, tuple | list):
        shape = shape.shape  # a tensor or array: its shape
    try:
        return tuple(int(d) for d in shape)
    except TypeError:
        raise ShapeError(f"an input shape must be a sequence of ints, got {shape!r}") from None


def _product(dims: Sequence[Any]) -> Any:
    """The product of sizes: an int for ints, a SymPy expression otherwise."""
    if all(isinstance(d, int) for d in dims):
        return math.prod(dims)
    return sympy.Mul(*dims)


def split_input(
    pattern: InputPattern, dims: Sequence[Any], product: Any = _product, anchor: Any = None
) -> tuple[tuple[Any, ...], list[tuple[str, Any]], bool, tuple[Any, ...]] | None:
    """How one input's dimensions fill its pattern: ``(leading dims, [(symbol, size), ...],
    trailing dimension absent, trailing dims)``, or None when the rank does not fit.
    ``N?``/``N...`` take the product of the leading dimensions (1 when there are none), a last
    ``L...`` the product of the trailing ones; ``product`` multiplies them (ints, or SymPy
    sizes); an absent trailing ``L?`` is 1.  ``anchor`` is the dimension an anchored pattern's
    attribute names (``"N... L@dim P..."``), None when unknown (the pattern does not fit)."""
    if pattern.anchor:  # anchor: one dimension, or (first, last) of a range (inclusive)
        rank = len(dims)
        ends = anchor if isinstance(anchor, tuple) else (anchor, anchor)
        if not all(isinstance(e, int) and not isinstance(e, bool) for e in ends):
            return None
        if not all(-rank <= e < rank for e in ends) or ends[0] % rank > ends[1] % rank:
            return None
        first, last = ends[0] % rank, ends[1] % rank
        lead, trail = tuple(dims[:first]), tuple(dims[last + 1 :])
        middle = dims[first] if first == last else product(tuple(dims[first : last + 1]))
        pairs = [(pattern.names[0], product(lead)), (pattern.names[1], middle)]
        return lead, [*pairs, (pattern.names[2], product(trail))], False, trail
    if pattern.middle >= 0:  # one inner dimension may be absent: its symbol is then 1
        if len(dims) == len(pattern.names):
            return (), list(zip(pattern.names, dims, strict=True)), False, ()
        if len(dims) == len(pattern.names) - 1:
            at = pattern.middle
            pairs = [*zip(pattern.names[:at], dims[:at], strict=True), (pattern.names[at], 1)]
            pairs += zip(pattern.names[at + 1 :], dims[at:], strict=True)
            return (), pairs, True, ()
        return None
    if pattern.trailing == "...":
        fixed = len(pattern.names) - 1
        if len(dims) < fixed:
            return None
        trail = tuple(dims[fixed:])
        pairs = [*zip(pattern.names[:-1], dims[:fixed], strict=True)]
        return (), [*pairs, (pattern.names[-1], product(trail))], False, trail
    if pattern.trailing:
        if len(dims) == len(pattern.names):
            return (), list(zip(pattern.names, dims, strict=True)), False, ()
        if len(dims) == len(pattern.names) - 1:
            present = zip(pattern.names[:-1], dims, strict=True)
            return (), [*present, (pattern.names[-1], 1)], True, ()
        return None
    fixed = len(pattern.names) - (1 if pattern.leading else 0)
    if pattern.leading == "...":
        ok = len(dims) >= fixed
    elif pattern.leading == "?":
        ok = len(dims) in (fixed, fixed + 1)
    else:
        ok = len(dims) == fixed
    if not ok:
        return None
    if not pattern.leading:
        return (), list(zip(pattern.names, dims, strict=True)), False, ()
    lead, rest = tuple(dims[: len(dims) - fixed]), dims[len(dims) - fixed :]
    pairs = [(pattern.names[0], product(lead)), *zip(pattern.names[1:], rest, strict=True)]
    return lead, pairs, False, ()


def _is_tensor(value: Any) -> bool:
    return callable(getattr(value, "element_size", None)) and hasattr(value, "shape")


def _default_size() -> int:
    """The bytes per element of torch's default floating dtype (4 when torch is not loaded:
    nothing can have changed it then)."""
    torch = sys.modules.get("torch")
    return int(torch.get_default_dtype().itemsize) if torch is not None else 4


def element_sizes(
    module: Any, inputs: Sequence[Any], call: Mapping[str, Any] | None = None
) -> dict[str, int]:
    """The element-size symbols (``e_a``, ``e_w``, ``e_i``: bytes per element of activations,
    weights and integer indices) for ``module`` called on ``inputs`` (tensors, or shapes) and
    the keyword arguments ``call``, read from dtypes without importing torch.

    ``e_a`` is the size of the first floating input tensor (inputs given as shapes: torch's
    default dtype's; integer tensors only: the parameters' size); ``e_w`` the size of the
    module's first parameter (none: ``e_a``); ``e_i`` the size of the first integer input
    tensor (none: 8, torch's int64 indices)."""
    tensors = [x for x in (*inputs, *(call or {}).values()) if _is_tensor(x)]
    floating = [t for t in tensors if t.is_floating_point()]
    integer = [t for t in tensors if not t.is_floating_point() and str(t.dtype) != "torch.bool"]
    parameters = getattr(module, "parameters", None)
    weights = None
    if callable(parameters):
        weights = next((int(p.element_size()) for p in parameters()), None)
    if floating:
        e_a = int(floating[0].element_size())
    elif weights is None or any(not _is_tensor(x) for x in inputs):
        e_a = _default_size()  # shapes: lc.count fills them with the default dtype
    else:
        e_a = weights  # integer inputs only (indices): the output takes the weights' dtype
    return {
        ELEMENT_SIZES["activations"]: e_a,
        ELEMENT_SIZES["weights"]: weights if weights is not None else e_a,
        ELEMENT_SIZES["indices"]: int(integer[0].element_size()) if integer else 8,
    }


def unread_tensors(rule: Rule, extra: Sequence[tuple[str, Any]]) -> list[str]:
    """The names of a call's tensors past ``rule``'s inputs (``extra``: ``(name, value)``, a
    keyword argument by its name) that no bind spec of the rule reads (``arg(name)?``,
    ``arg(name, default)``): a mask passed to ``MultiheadAttention`` adds work the rule does not
    state, so the rule does not describe that call.

    >>> from layercost_sym.cache import catalogue
    >>> bag, mha = catalogue().get("EmbeddingBag"), catalogue().get("MultiheadAttention")
    >>> class T:  # a tensor
    ...     shape, element_size = (3,), (lambda self: 4)
    >>> unread_tensors(bag, [("per_sample_weights", T())])
    []
    >>> unread_tensors(mha, [("attn_mask", T())])
    ['attn_mask']
    """
    read = {s.attr for s in rule.binds.values() if s.kind in ("arg", "arg_given")}
    return [name for name, value in extra if _is_tensor(value) and name not in read]


def call_sizes(tensors: Sequence[Any]) -> dict[str, int]:
    """The element sizes and flags an operator call binds for its functional rule, from its
    ``tensors``: the output first, then the tensor arguments in order (as the rule's inputs).

    ``e_a`` is the size of the first floating argument (none: of the first argument, an integer
    or bool operator such as ``logical_and``), ``e_w`` the same (an operator has no parameters),
    ``e_i`` of the first integer argument (none: 8), ``e_o`` of the output; ``x_1``, ``x_2``,
    ``x_3`` are 0 where that tensor is the same object as an earlier one (``x + x``; an
    in-place ``add_`` returns its first argument, so ``x_1`` is 0 there; 1 where there is
    no such argument, or a number); ``rg_1``, ``rg_2``,
    ``rg_3`` are 1 where that argument requires grad (read before autograd records the call).

    >>> class T:                                       # duck-typed tensors: a dtype and size
    ...     shape = (2,)
    ...     def __init__(self, dtype, size): self.dtype, self.size = dtype, size
    ...     def element_size(self): return self.size
    ...     def is_floating_point(self): return self.dtype.startswith("float")
    >>> x, mask = T("float16", 2), T("bool", 1)
    >>> sorted(call_sizes([T("bool", 1), mask, x, x]).items())   # where(mask, x, x)
    [('e_a', 2), ('e_i', 8), ('e_o', 1), ('e_w', 2), ('rg_1', 0), ('rg_2', 0), ('rg_3', 0),
     ('x_1', 1), ('x_2', 1), ('x_3', 0)]
    """
    out, args = tensors[0], [t for t in tensors[1:] if _is_tensor(t)]
    floating = [t for t in args if t.is_floating_point()]
    first = floating[0] if floating else (args[0] if args else out)
    integer = [
        t for t in args if not t.is_floating_point() and "bool" not in str(getattr(t, "dtype", ""))
    ]
    e_a = int(first.element_size())
    sizes = {
        ELEMENT_SIZES["activations"]: e_a,
        ELEMENT_SIZES["weights"]: e_a,
        ELEMENT_SIZES["indices"]: int(integer[0].element_size()) if integer else 8,
        OUTPUT_SIZE: int(out.element_size()),
    }
    grads = {
        flag: int(bool(i < len(tensors) and getattr(tensors[i], "requires_grad", False)))
        for i, flag in ARGUMENT_GRADS.items()
    }
    # a number in a tensor's place (x + 1), or no argument there, is no earlier tensor: 1
    distinct = dict.fromkeys(DISTINCT_INPUTS.values(), 1) | distinct_inputs(len(tensors), tensors)
    return sizes | grads | distinct


def distinct_inputs(count: int, inputs: Sequence[Any]) -> dict[str, int]:
    """The flags ``x_i`` for inputs ``1 .. count - 1`` of a call: 0 where input ``i`` is the
    same tensor (the same object) as an earlier input, 1 otherwise (shapes: 1).  Inputs past
    the flags the glossary has are left out: only a functional rule lists more than three
    inputs (``addmm``: its output, bias and two matrices), and its bytes use no flag."""
    out = {}
    for i in range(1, min(count, len(inputs))):
        if i not in DISTINCT_INPUTS:
            continue
        x = inputs[i]
        same = _is_tensor(x) and any(x is y for y in inputs[:i])
        out[DISTINCT_INPUTS[i]] = 0 if same else 1
    return out


def requires_grad(inputs: Sequence[Any]) -> dict[str, int]:
    """The flag ``rg``: 1 when the call's first input is a tensor that requires grad (inside a
    model, every activation after a trainable layer), 0 otherwise (shapes: 0, as ``lc.count``
    fills them)."""
    first = inputs[0] if inputs else None
    return {REQUIRES_GRAD: int(bool(_is_tensor(first) and getattr(first, "requires_grad", False)))}


def fused_kernel(rule: Rule, inputs: Sequence[Any]) -> dict[str, int]:
    """The data symbol ``k_f``, where ``rule`` has it and the call's first input is a torch
    tensor: where torch sends the call to oneDNN's fused kernel, as ATen's ``use_mkldnn``
    decides for an LSTM without projection (mkldnn enabled, the input on the CPU, or a meta or
    fake tensor standing for it, not empty): 1 in float32, and in bfloat16 where oneDNN supports
    it on this CPU; 2 in float16 outside autograd where it supports that; else 0.  Shapes
    alone: nothing (the rule's default)."""
    if FUSED_KERNEL not in {s.name for s in rule.data}:
        return {}
    first: Any = inputs[0] if inputs else None
    if not _is_tensor(first) or type(first).__module__.split(".")[0] != "torch":
        return {}
    torch = sys.modules["torch"]  # a torch tensor: torch is loaded
    mkldnn, supported, dtype = torch.backends.mkldnn, torch.ops.mkldnn, first.dtype
    if not (
        mkldnn.is_available()
        and mkldnn.enabled
        and first.device.type in ("cpu", "meta")
        and first.numel() != 0
    ):
        return {FUSED_KERNEL: 0}
    if dtype == torch.float32 or (
        dtype == torch.bfloat16 and supported._is_mkldnn_bf16_supported()
    ):
        return {FUSED_KERNEL: 1}
    half = dtype == torch.float16 and not torch.is_grad_enabled()
    return {FUSED_KERNEL: 2 if half and supported._is_mkldnn_fp16_supported() else 0}


def output_grads(rule: Rule) -> dict[str, int]:
    """The flags ``go``, ``gh``, ``gc`` a rule uses, at 1: a gradient reaches every output of
    the call (the outputs' sum, as ``lc.count`` seeds its backward); ``lc.analyze`` sets them
    from the model's autograd graph after its trace."""
    return {flag: 1 for flag in OUTPUT_GRADS.values() if flag in rule.compact_symbols}


def weights_grad(module: Any) -> dict[str, int]:
    """The flag ``gw``: 1 when every parameter of ``module`` requires grad, 0 when none does
    (frozen, or no parameters); left unbound when some do and others not (a rule's backward
    states all or none: evaluating it then names ``gw``, FLOPs and bytes are unaffected)."""
    parameters = getattr(module, "parameters", None)
    return parameters_grad(parameters() if callable(parameters) else ())


def parameters_grad(parameters: Iterable[Any]) -> dict[str, int]:
    """:func:`weights_grad` of a call's weight tensors given as they are (``F.conv2d``'s weight
    and bias arguments)."""
    flags = {bool(p.requires_grad) for p in parameters}
    return {} if len(flags) > 1 else {WEIGHTS_GRAD: int(flags == {True})}
