"""Which rule costs a call, and the values of its symbols there.

* :func:`module_rule`: the rule (or variant) of a module instance, None where a subclass
  overrides the ruled class's ``forward``.
* :func:`op_rule`: the functional rule (``formulas/functional.toml``) of an ATen operator.
* :func:`module_view`: ``F.conv*d`` and the ``F.*pool*d`` functions read as the torch.nn module
  that runs the same operator, costed by its rule; each peer tool counts such a call as its
  convention file's ``functional_calls`` table states (:func:`as_function`).
* :func:`op_call`: an ATen operator call's schema arguments by name and its tensors as its
  functional rule lists them; :func:`bind_op` binds the rule there.
* :func:`bind_call`: the values of a rule's symbols at a call with symbolic sizes, through the
  same binder as :func:`layercost_sym.bind` (:func:`layercost_sym.binding.read`), its data-dependent
  symbols at their defaults and its constraints decided where the sizes decide them.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from functools import cache
from typing import Any

import sympy
import torch

from ..binding import read
from ..cache import catalogue
from ..catalogue import functional_calls
from ..domain import Condition
from ..errors import ShapeError, UnknownRuleError
from ..glossary import ARGUMENT_ELEMENTS, formulas_dir, glossary
from ..quantities import quantity as _quantity
from ..reading import call_sizes, choose
from ..rule import Rule
from .opbytes import tensors_in

__all__ = [
    "MODULE_OPS",
    "as_function",
    "bind_call",
    "bind_op",
    "module_rule",
    "module_view",
    "op_call",
    "op_rule",
    "open_conditions",
    "params_at",
]


def bind_call(
    rule: Rule,
    obj: Any,
    shapes: Sequence[Sequence[Any]],
    call: Mapping[str, Any],
    training: bool = False,
    sizes: Mapping[str, Any] | None = None,
) -> tuple[dict[str, sympy.Expr], tuple[Condition, ...]]:
    """``({symbol name: expr}, undecided constraints)`` for ``rule`` at a call of ``obj`` (a
    module, or an operator's arguments) on inputs of symbolic ``shapes``.

    Extra shapes beyond the rule's inputs are ignored (functional rules list a prefix).  A
    data-dependent symbol takes its default; a constraint the sizes decide false raises
    :class:`~layercost_sym.ShapeError` naming it, one they leave open is returned (the
    analysis' domain carries it).  ``sizes`` are the symbols the traced tensors bind: the element
    sizes (``e_a``, ``e_w``, ``e_i``: :func:`layercost_sym.reading.element_sizes`) and the flags
    of inputs that are one tensor (``x_1``, ``x_2``:
    :func:`~layercost_sym.reading.distinct_inputs`)."""
    reading = read(rule, obj, shapes, call, extra_inputs=True)
    symbols = glossary().symbols
    values = {k: sympy.sympify(v) for k, v in reading.values.items()}
    values.update({k: sympy.sympify(v) for k, v in (sizes or {}).items()})
    subs = {symbols[k]: v for k, v in values.items()}
    for symbol, default in rule.data_defaults().items():
        if symbol.name not in values:  # read from the call (the kernel torch takes: k_f)
            values[symbol.name] = subs[symbol] = default.xreplace(subs)
    return values, open_conditions(rule, training, values)


def open_conditions(
    rule: Rule, training: bool, values: Mapping[str, sympy.Expr]
) -> tuple[Condition, ...]:
    """The constraints of ``rule`` that ``values`` (symbol name -> expression: a call's
    binding) leave open, in those values; one decided false raises
    :class:`~layercost_sym.ShapeError` naming it, unless it is one of some quantities alone (a
    backward torch refuses), which is kept, false, for them."""
    symbols = glossary().symbols
    subs = {symbols[k]: v for k, v in values.items()}
    open_: list[Condition] = []
    for c in rule.conditions(training):
        decided = c.condition.xreplace(subs)
        # one of some quantities alone (a backward torch refuses) is kept, false, for them
        if (decided is sympy.false or decided == sympy.false) and not c.only_for:
            given = {k: v for k, v in values.items() if isinstance(v, sympy.Integer)}
            raise ShapeError(c.message({k: int(v) for k, v in given.items()}))
        if decided is not sympy.true and decided != sympy.true:
            quantities = tuple((n, e.xreplace(subs)) for n, e in c.quantities)
            open_.append(replace(c, condition=decided, quantities=quantities))
    return tuple(open_)


def op_call(func: Any, args: tuple, kwargs: dict, out: Any) -> tuple[dict, list[torch.Tensor]]:
    """``(schema arguments by name, tensors)`` of one call of the ATen overload ``func``: the
    tensors as a functional rule lists them, its (first) output, then every tensor argument in
    order (a number in a tensor's place is not one: ``x + 1`` has two)."""
    named = {a.name: v for a, v in zip(func._schema.arguments, args, strict=False)}
    named.update(kwargs)
    tensors = tensors_in(out)[:1] + tensors_in((args, kwargs))
    return named, tensors


def bind_op(
    rule: Rule,
    named: Mapping[str, Any],
    tensors: Sequence[torch.Tensor],
    shapes: Sequence[Sequence[Any]],
    training: bool = False,
) -> tuple[dict[str, sympy.Expr], tuple[Condition, ...]]:
    """:func:`bind_call` for a functional ``rule`` at an operator call (:func:`op_call`), its
    ``tensors`` of ``shapes`` (ints, or the analysis' symbolic sizes): their element sizes and
    which of them are one tensor (:func:`~layercost_sym.reading.call_sizes`) and the elements
    of the distinct arguments (``N_r``) bound too."""
    obj = types.SimpleNamespace(**named)
    distinct = {id(t): shape for t, shape in zip(tensors[1:], shapes[1:], strict=True)}
    sizes: dict[str, Any] = dict(call_sizes(tensors))
    sizes[ARGUMENT_ELEMENTS] = sympy.Add(*(sympy.Mul(*s) for s in distinct.values()))
    return bind_call(rule, obj, shapes, named, training, sizes)


def params_at(rule: Rule, values: Mapping[str, sympy.Expr]) -> sympy.Expr:
    """The rule's parameter count at bound ``values``."""
    symbols = glossary().symbols
    return rule.params.xreplace({symbols[k]: v for k, v in values.items()})


def module_rule(module: torch.nn.Module, inputs: list | None = None) -> Rule | None:
    """The rule of a module instance, or None: the rule of the first class in its MRO that torch
    defines; a subclass that overrides the ruled class's ``forward`` (torchvision's
    LayerNorm2d) is not described by that class's rule.  ``inputs``
    (the call's input shapes; only their ranks are read) choose variants keyed on rank."""
    by_module = catalogue().by_module
    for cls in type(module).__mro__:
        # the class torch defines, not a model's own class of the same name (a timm
        # ``Embedding`` that is a strided convolution): that one is costed by its operators
        if cls.__name__ in by_module and cls.__module__.partition(".")[0] == "torch":
            if type(module).forward is not getattr(cls, "forward", None):
                return None
            try:
                return catalogue().for_module(module, inputs)
            except UnknownRuleError:
                return None
    return None


def op_rule(name: str, arguments: Any) -> Rule | None:
    """The functional rule (or variant) of the ATen operator ``name`` called with
    ``arguments`` (its schema arguments as attributes), or None."""
    rule = catalogue().by_module.get(name)
    if rule is None or name[:1].isupper():  # a torch.nn class rule, not an operator
        return None
    return choose(rule, arguments)


@cache
def _calls() -> dict[str, dict[str, tuple[str, str]]]:
    return functional_calls(formulas_dir())


# ATen operators of F.conv*d and the F.*pool*d functions, costed by the rule of the torch.nn
# module that runs the same operator (the pools' schema arguments carry the module's attribute
# names; a convolution's channels and kernel come from its weight).  The conventions below are
# taken from the module's rule; each peer tool counts such a call as its [functional_calls]
# tables in formulas/conventions/<tool>.toml state.
MODULE_OPS = {
    "convolution": "Conv",
    "max_pool2d_with_indices": "MaxPool2d",
    "max_pool3d_with_indices": "MaxPool3d",
    "avg_pool2d": "AvgPool2d",
    "avg_pool3d": "AvgPool3d",
    "_adaptive_avg_pool2d": "AdaptiveAvgPool2d",
    "_adaptive_avg_pool3d": "AdaptiveAvgPool3d",
    "adaptive_max_pool2d": "AdaptiveMaxPool2d",
    "adaptive_max_pool3d": "AdaptiveMaxPool3d",
    "col2im": "Fold",  # F.fold: its arguments are nn.Fold's attributes
    "im2col": "Unfold",
}


def as_function(
    rule: Rule, function: str, input_shape: Sequence[sympy.Expr]
) -> tuple[tuple[str, ...], dict[str, sympy.Expr], dict[str, str]]:
    """``(FLOPs conventions taken from the rule, FLOPs stated instead, notes)`` for ``rule``'s
    operator called as ``function`` (ATen's name, or the F.* function it is told apart as) on
    an input of ``input_shape``: the measured conventions are the rule's (the same operator
    runs), each peer tool's as its convention file's ``functional_calls`` table states."""
    family = _family(rule)
    only = list(_quantity("flops").measured)
    stated: dict[str, sympy.Expr] = {}
    notes: dict[str, str] = {}
    for tool, entries in _calls().items():
        cost, notes[tool] = entries.get(function, entries[family])
        if cost == "rule":
            only.append(tool)
        elif cost == "numel":
            stated[tool] = sympy.Mul(*input_shape)
        else:
            stated[tool] = sympy.Integer(int(cost))
    return tuple(only), stated, notes


def _family(rule: Rule) -> str:
    """The [functional_calls] family of a module rule costing a function: ``conv`` (the
    convolutions, transposed too), ``fold`` (F.fold, F.unfold) or ``pool``."""
    if rule.name.startswith("Conv"):
        return "conv"
    return "fold" if rule.name.split(".")[0] in ("Fold", "Unfold") else "pool"


def module_view(
    name: str, named: dict[str, Any], schema, convert: Callable[[Any], Any]
) -> tuple[Rule, Any] | None:
    """``(rule, attributes)`` describing an operator call as its torch.nn module, or None.

    ``convert`` makes a size (an int or a SymInt) a number or a closed form in the input
    symbols: a convolution whose weight is computed per sample (timm's CondConv2d: weight
    ``(N*C_out, C_in/g, k, k)``, groups ``g*N``) has channels and groups in ``N``, and ``int``
    of them would pin ``N``."""
    attrs = dict(named)
    for arg in schema:  # arguments left at their defaults (avg_pool2d's stride, ...)
        if arg.name not in attrs and arg.has_default_value():
            attrs[arg.name] = arg.default_value
    if name == "convolution":
        weight = attrs["weight"]
        shape = [convert(d) for d in weight.shape]
        groups = convert(attrs["groups"])
        dims = len(shape) - 2
        attrs["groups"] = groups
        transposed = bool(attrs["transposed"])
        cls = f"{'ConvTranspose' if transposed else 'Conv'}{dims}d"
        channels = (shape[0], shape[1] * groups) if transposed else (shape[1] * groups, shape[0])
        attrs.update(
            in_channels=channels[0],
            out_channels=channels[1],
            kernel_size=tuple(shape[2:]),
            padding_mode="zeros",
        )
        spatial = dims
    else:
        cls = MODULE_OPS[name]
        spatial = int(cls[-2]) if cls[-2].isdigit() else 2  # Fold and Unfold: 2-d
        if not attrs.get("stride", True):  # stride [] means the kernel size
            attrs["stride"] = attrs["kernel_size"]
        # the max pools' ATen operators return their indices whether F.max_pool2d's caller asked
        # for them or not (and eager CPU kernels do not always make them): bytes' min counts the
        # values only, the lower bound
        attrs.setdefault("return_indices", False)
    for key, value in attrs.items():  # int[2] arguments given as one value
        if isinstance(value, list | tuple) and len(value) == 1 and spatial > 1:
            attrs[key] = tuple(value) * spatial
    try:
        rule = catalogue().get(cls)
    except UnknownRuleError:
        return None
    ns = types.SimpleNamespace(**attrs)
    return choose(rule, ns), ns
