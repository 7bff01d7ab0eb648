"""SymPy expressions and catalogue records as plain data (JSON), rebuilt through an allow-list.

The persistent catalogue cache (:mod:`layercost_sym.cache`) stores what the loader built in this
form. Reading it back executes no code (no ``pickle``, no ``eval``/``sympify`` of text): the data
holds only ints, strings, lists and dicts, and every SymPy node is rebuilt by a constructor named
in :data:`NODE_TYPES`, with ``evaluate=False`` (or ``_from_args``), so that SymPy does not
simplify it again and the rebuilt tree is structurally equal (``==`` and ``hash``) to the one
written. Symbols are the glossary's own; any other name, node kind or malformed entry is a
:class:`~layercost_sym.errors.PlainDataError`.

An expression pool is a list of nodes; a node refers to its arguments by their (smaller) index,
so shared sub-expressions are stored once:

* an ``int``: ``Integer``; ``["Q", p, q]``: ``Rational(p, q)``; ``["S", name]``: a glossary
  symbol; ``["true"]``, ``["false"]``: SymPy's booleans;
* ``[kind, i, j, ...]``: a node of kind ``Add``, ``Mul``, ``Max``, ``floor``, ``Piecewise``, ...

>>> from layercost_sym.glossary import glossary
>>> from layercost_sym.parsing import parse
>>> symbols = glossary().symbols
>>> e = parse("Max(H - k + 1, 1) * C_out // 2", symbols)
>>> writer = ExpressionWriter(symbols)
>>> index = writer.add(e)
>>> writer.nodes[index]
['floor', 9]
>>> ExpressionReader(writer.nodes, symbols).get(index) == e
True
>>> ExpressionReader([["eval", 0]], symbols)
Traceback (most recent call last):
...
layercost_sym.errors.PlainDataError: node 0: unknown kind 'eval'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sympy
from sympy.core.basic import Basic
from sympy.core.containers import Tuple
from sympy.functions.elementary.piecewise import ExprCondPair
from sympy.logic.boolalg import BooleanFunction

from .errors import PlainDataError
from .parsing import gcd

__all__ = [
    "NODE_TYPES",
    "ExpressionReader",
    "ExpressionWriter",
    "from_plain",
    "to_plain",
]


def _assoc(cls: Any) -> Callable[..., Basic]:
    # Add/Mul keep their arguments in the canonical order they were written in
    return lambda *args: cls._from_args(args)


def _lattice(cls: type) -> Callable[..., Basic]:
    # And/Or, as LatticeOp.__new__ ends, without re-simplifying the arguments
    def build(*args: Basic) -> Basic:
        obj = Basic.__new__(cls, *args)
        obj._argset = frozenset(args)
        return obj

    return build


def _unevaluated(cls: type) -> Callable[..., Basic]:
    return lambda *args: cls(*args, evaluate=False)


def _plain_new(cls: type) -> Callable[..., Basic]:
    # what the class's own constructor ends with once its arguments are canonical
    return lambda *args: Basic.__new__(cls, *args)


# kind: (class, rebuild, number of arguments or None for "one or more")
NODE_TYPES: dict[str, tuple[type, Callable[..., Basic], int | None]] = {
    "Add": (sympy.Add, _assoc(sympy.Add), None),
    "Mul": (sympy.Mul, _assoc(sympy.Mul), None),
    "Pow": (sympy.Pow, _unevaluated(sympy.Pow), 2),
    "floor": (sympy.floor, _unevaluated(sympy.floor), 1),
    "ceiling": (sympy.ceiling, _unevaluated(sympy.ceiling), 1),
    "Mod": (sympy.Mod, _unevaluated(sympy.Mod), 2),
    "gcd": (gcd, _unevaluated(gcd), 2),
    "Max": (sympy.Max, _unevaluated(sympy.Max), None),
    "Min": (sympy.Min, _unevaluated(sympy.Min), None),
    "Piecewise": (sympy.Piecewise, _plain_new(sympy.Piecewise), None),
    "ExprCondPair": (ExprCondPair, lambda e, c: Tuple.__new__(ExprCondPair, e, c), 2),
    "Eq": (sympy.Eq, _unevaluated(sympy.Eq), 2),
    "Ne": (sympy.Ne, _unevaluated(sympy.Ne), 2),
    "Lt": (sympy.Lt, _unevaluated(sympy.Lt), 2),
    "Le": (sympy.Le, _unevaluated(sympy.Le), 2),
    "Gt": (sympy.Gt, _unevaluated(sympy.Gt), 2),
    "Ge": (sympy.Ge, _unevaluated(sympy.Ge), 2),
    "And": (sympy.And, _lattice(sympy.And), None),
    "Or": (sympy.Or, _lattice(sympy.Or), None),
    "Not": (sympy.Not, _unevaluated(sympy.Not), 1),
    "ITE": (sympy.ITE, lambda *a: BooleanFunction.__new__(sympy.ITE, *a, evaluate=False), 3),
}
_KIND_OF = {cls: kind for kind, (cls, _, _) in NODE_TYPES.items()}


class ExpressionWriter:
    """Collects expressions into a pool of plain nodes (``nodes``), each sub-tree once."""

    def __init__(self, symbols: Mapping[str, sympy.Symbol]) -> None:
        self.symbols = symbols
        self.nodes: list[Any] = []
        self._index: dict[Basic, int] = {}

    def add(self, expr: Basic) -> int:
        """The index of ``expr`` in :attr:`nodes` (added with its arguments if new)."""
        index = self._index.get(expr)
        if index is None:
            node = self._node(expr)
            index = self._index[expr] = len(self.nodes)
            self.nodes.append(node)
        return index

    def _node(self, expr: Basic) -> Any:
        if isinstance(expr, sympy.Integer):
            return int(expr)
        if isinstance(expr, sympy.Rational):
            return ["Q", int(expr.p), int(expr.q)]
        if expr is sympy.true or expr is sympy.false:
            return [str(bool(expr)).lower()]
        if isinstance(expr, sympy.Symbol):
            if self.symbols.get(expr.name) != expr:
                raise PlainDataError(f"symbol {expr.name!r} is not the glossary's")
            return ["S", expr.name]
        kind = _KIND_OF.get(type(expr))
        if kind is None:
            raise PlainDataError(f"no plain form for a {type(expr).__name__} ({expr})")
        return [kind, *(self.add(arg) for arg in expr.args)]


class ExpressionReader:
    """Rebuilds the expressions of a pool on demand; the pool is checked whole on creation."""

    def __init__(self, nodes: Sequence[Any], symbols: Mapping[str, sympy.Symbol]) -> None:
        if not isinstance(nodes, list):
            raise PlainDataError("an expression pool must be a list")
        for index, node in enumerate(nodes):
            _check_node(index, node, symbols)
        self.nodes = nodes
        self.symbols = symbols
        self._built: dict[int, Basic] = {}

    def get(self, index: Any) -> Basic:
        """The expression at ``index``."""
        if type(index) is not int or not 0 <= index < len(self.nodes):
            raise PlainDataError(f"no expression {index!r} in the pool")
        built = self._built.get(index)
        if built is None:
            built = self._built[index] = self._build(self.nodes[index])
        return built

    def _build(self, node: Any) -> Basic:
        if type(node) is int:
            return sympy.Integer(node)
        kind = node[0]
        if kind == "Q":
            return sympy.Rational(node[1], node[2])
        if kind == "S":
            return self.symbols[node[1]]
        if kind in ("true", "false"):
            return sympy.true if kind == "true" else sympy.false
        try:
            return NODE_TYPES[kind][1](*(self.get(i) for i in node[1:]))
        except (TypeError, ValueError, AttributeError) as exc:
            raise PlainDataError(f"cannot rebuild a {kind} node: {exc}") from None


def _check_node(index: int, node: Any, symbols: Mapping[str, sympy.Symbol]) -> None:
    """Shape of one pool entry: a known kind, arguments that are earlier entries."""
    if type(node) is int:
        return
    if not isinstance(node, list) or not node or not isinstance(node[0], str):
        raise PlainDataError(f"node {index}: not a node: {node!r}")
    kind, args = node[0], node[1:]
    if kind == "Q":
        if len(args) != 2 or not all(type(a) is int for a in args) or args[1] <= 1:
            raise PlainDataError(f"node {index}: bad rational {node!r}")
    elif kind == "S":
        if len(args) != 1 or not isinstance(args[0], str) or args[0] not in symbols:
            raise PlainDataError(f"node {index}: unknown symbol in {node!r}")
    elif kind in ("true", "false"):
        if args:
            raise PlainDataError(f"node {index}: {kind} takes no arguments")
    elif kind not in NODE_TYPES:
        raise PlainDataError(f"node {index}: unknown kind {kind!r}")
    else:
        arity = NODE_TYPES[kind][2]
        if (arity is None and not args) or (arity is not None and len(args) != arity):
            raise PlainDataError(f"node {index}: {kind} with {len(args)} arguments")
        if not all(type(a) is int and 0 <= a < index for a in args):
            raise PlainDataError(f"node {index}: arguments must be earlier nodes: {node!r}")


# -- records: the values a rule holds ------------------------------------------------------------
#
# Plain values (None, bool, int, float, str) stay as they are; everything else is a one-key dict:
# {"x": i} an expression of the pool, {"t": [...]} a tuple, {"l": [...]} a list, {"f": [...]} a
# frozenset, {"d": [[k, v], ...]} a dict (any keys, order kept) and {"c": name, "v": {...}} an
# instance of one of the dataclasses the caller allows.

_SCALARS = (type(None), bool, int, float, str)


def to_plain(value: Any, writer: ExpressionWriter, classes: Mapping[str, type]) -> Any:
    """``value`` (a record of catalogue values) as plain data, expressions into ``writer``."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, Basic):
        return {"x": writer.add(value)}
    if isinstance(value, tuple | list | frozenset):
        tag = "t" if isinstance(value, tuple) else "l" if isinstance(value, list) else "f"
        return {tag: [to_plain(v, writer, classes) for v in value]}
    if isinstance(value, dict):
        items = value.items()
        return {
            "d": [[to_plain(k, writer, classes), to_plain(v, writer, classes)] for k, v in items]
        }
    name = type(value).__name__
    if classes.get(name) is type(value) and dataclasses.is_dataclass(value):
        fields = {f.name: to_plain(getattr(value, f.name), writer, classes) for f in _fields(value)}
        return {"c": name, "v": fields}
    raise PlainDataError(f"no plain form for a {name}")


def from_plain(data: Any, reader: ExpressionReader, classes: Mapping[str, type]) -> Any:
    """The value :func:`to_plain` wrote, expressions from ``reader``."""
    if isinstance(data, _SCALARS):
        return data
    if not isinstance(data, dict) or len(data) != (2 if "c" in data else 1):
        raise PlainDataError(f"not a plain record: {data!r:.80}")
    if "x" in data:
        return reader.get(data["x"])
    if "c" in data:
        cls = classes.get(data["c"]) if isinstance(data["c"], str) else None
        values = data.get("v")
        if cls is None or not isinstance(values, dict):
            raise PlainDataError(f"unknown record class {data['c']!r}")
        if set(values) != {f.name for f in _fields(cls)}:
            raise PlainDataError(f"{data['c']} record with fields {sorted(values)}")
        return cls(**{k: from_plain(v, reader, classes) for k, v in values.items()})
    (tag, items), *_ = data.items()
    if not isinstance(items, list):
        raise PlainDataError(f"not a plain record: {data!r:.80}")
    if tag == "d":
        if not all(isinstance(i, list) and len(i) == 2 for i in items):
            raise PlainDataError("a dict record holds [key, value] pairs")
        return {from_plain(k, reader, classes): from_plain(v, reader, classes) for k, v in items}
    kinds: dict[str, Callable[[list], Any]] = {"t": tuple, "l": list, "f": frozenset}
    if tag not in kinds:
        raise PlainDataError(f"unknown record tag {tag!r}")
    return kinds[tag]([from_plain(v, reader, classes) for v in items])


def _fields(value: Any) -> tuple[dataclasses.Field, ...]:
    return tuple(f for f in dataclasses.fields(value) if f.init)
