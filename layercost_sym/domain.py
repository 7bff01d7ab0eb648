"""Domains: where a formula holds, carried by the expressions the library hands out.

A rule's formulas hold where its constraints hold (``Conv2d``: the kernel fits the padded
input, the groups divide the channels); outside, torch raises and the formula's number means
nothing (a kernel larger than the input gives a cost of 0, which looks cheapest).  A whole-model
closed form holds where the guards torch recorded while tracing hold; a composed cost where the
constraints its values leave undecided hold.  That set of conditions is the expression's
:class:`Domain`.

Every expression the library hands out carries its domain: :attr:`Rule.params
<layercost_sym.Rule.params>`, :meth:`Rule.cost <layercost_sym.Rule.cost>`, :attr:`Rule.output_shape
<layercost_sym.Rule.output_shape>`, :meth:`Cost.cost <layercost_sym.Cost.cost>` and
:meth:`Analysis.cost <layercost_sym.torchtools.analysis.Analysis.cost>` return a SymPy expression
that is equal to, hashes as and prints as any other, but is its own object, which the library
remembers with its domain (two rules may state the same formula under different constraints:
``Conv2d`` and ``Conv2d.reflect``).  :func:`layercost_sym.evaluate` and
:func:`layercost_sym.sweep` check that domain and refuse values outside it with a
:class:`~layercost_sym.DomainError` naming the condition and its reason.

An expression you build yourself (``2 * e``, ``e.subs(...)``, ``e + f``, text) is a new
expression with no domain: evaluating it checks only what every expression is checked for
(every symbol given, dimensions positive, flags 0 or 1, an exact non-negative integer result).
Pass a domain along with ``evaluate(expr, values, domain=lc.domain(e))`` (domains combine with
``&``), or attach one with :func:`with_domain`.  A condition is checked when every size it names
is given: the parameters of a ``Conv2d`` are checked against the groups, not against an input
height nobody gave.

>>> import layercost_sym as lc
>>> macs = lc.rule("Conv2d").cost("macs")
>>> [c.reason for c in lc.domain(macs).conditions]  # doctest: +NORMALIZE_WHITESPACE
["kernel size can't be greater than the padded input size",
 'groups must divide in_channels and out_channels']
>>> lc.evaluate(macs, dict(N=2, C_in=3, C_out=4, k=9, s=1, p=0, d=1, g=1, H=8, W=8))
Traceback (most recent call last):
...
layercost_sym.errors.DomainError: Conv2d: constraint 'H_out >= 1 and W_out >= 1' fails
(kernel size can't be greater than the padded input size) at H=8, W=8, ..., H_out=0, W_out=0
>>> lc.domain(2 * macs)          # a new expression: no domain
Domain(())
"""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import sympy
from sympy.core.singleton import Singleton

__all__ = [
    "Condition",
    "Domain",
    "domain",
    "joined",
    "joined_domain",
    "with_domain",
    "without_domain",
]

_NAME = re.compile(r"[A-Za-z_]\w*")


@dataclass(frozen=True)
class Condition:
    """One condition of a domain: where it comes from and why it must hold.

    ``condition`` is a SymPy boolean in glossary (or user) symbols; ``text`` is the condition as
    written (a rule's ``constraints`` entry: ``"H_out >= 1 and W_out >= 1"``); ``reason`` is
    torch's words when it fails; ``origin`` names the rule (``"Conv2d"``), the part of a
    composed cost or the guard's source.  ``quantities`` are the defined quantities the text
    names (``H_out``), as expressions, so that a message can show their values.  ``only_for``
    names the quantities it is a condition of where it is not one of all (a backward pass torch
    refuses where its forward runs).
    """

    condition: sympy.Basic
    text: str
    reason: str
    origin: str
    quantities: tuple[tuple[str, sympy.Expr], ...] = ()
    kind: str = "constraint"  # "constraint" (a rule's) or "guard" (an analysis')
    # the quantities it is a condition of, where not all (a rule's ``quantities = [...]``)
    only_for: tuple[str, ...] = ()
    # how a guard is shown in a message (simplified, computed only when one fails)
    display: Callable[[], str] | None = field(default=None, compare=False, repr=False)

    def message(self, values: Mapping[str, Any]) -> str:
        """Why ``values`` (symbol name -> int) fall outside this condition, in words."""
        if self.kind == "guard":
            names = sorted(s.name for s in self.condition.free_symbols)
            shown = ", ".join(f"{n}={values[n]}" for n in names if n in values)
            text = self.display() if self.display is not None else self.text
            return (
                "input outside the range where the closed form holds: guard "
                f"{text} fails at {shown} ({self.reason})"
            )
        # the sizes the condition depends on, then the defined quantities its text names
        names = sorted(s.name for s in self.condition.free_symbols)
        detail = [f"{n}={values[n]}" for n in names if n in values]
        for name, expr in self.quantities:
            known = [s for s in expr.free_symbols if s.name in values]
            given = {s: sympy.Integer(values[s.name]) for s in known}
            detail.append(f"{name}={expr.xreplace(given)}")
        return f"{self.origin}: constraint {self.text!r} fails ({self.reason})" + (
            f" at {', '.join(detail)}" if detail else ""
        )


@dataclass(frozen=True)
class Domain:
    """The conditions under which an expression holds (empty: no condition is known).

    Domains combine with ``&`` (all conditions of both, each once).
    """

    conditions: tuple[Condition, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.conditions)

    def __hash__(self) -> int:  # evaluation looks compiled checks up by domain: hash once
        cached = self.__dict__.get("_hash")
        if cached is None:
            cached = hash(self.conditions)
            object.__setattr__(self, "_hash", cached)
        return cached

    def __and__(self, other: Domain) -> Domain:
        if not isinstance(other, Domain):
            return NotImplemented
        seen = dict.fromkeys((*self.conditions, *other.conditions))
        return Domain(tuple(seen))

    def __repr__(self) -> str:
        return f"Domain({tuple(c.text for c in self.conditions)!r})"


_EMPTY = Domain()

# id(expression) -> (the expression, its domain).  The expression is held so that its id is not
# reused while the entry lives.  SymPy objects take no weak references, so entries nobody else
# holds any more are dropped by a sweep that runs each time the table has doubled (amortised
# constant time per attachment): an expression keeps its domain exactly as long as it lives.
_ATTACHED: dict[int, tuple[sympy.Basic, Domain]] = {}
_SWEEP_AT = 1024

E = TypeVar("E", bound=sympy.Basic)


def _slots(cls: type) -> tuple[str, ...]:
    names: list[str] = []
    for klass in cls.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        names += [slots] if isinstance(slots, str) else list(slots)
    # a slot a subclass shadows with a constant (Integer's q = 1) holds no state of its own
    return tuple(
        n
        for n in dict.fromkeys(names)
        if isinstance(getattr(cls, n, None), types.MemberDescriptorType)
    )


def _fresh(expr: E) -> E:
    """A new object equal to ``expr`` in every respect but identity.

    SymPy's constructors return cached objects, so equal expressions are often one object;
    copying the node's state (its slots and attributes) without calling its constructor gives
    an object of its own, which the registry can tell apart from every equal one."""
    cls = type(expr)
    new = object.__new__(cls)
    for name in _slots(cls):
        try:
            value = object.__getattribute__(expr, name)
        except AttributeError:
            continue
        object.__setattr__(new, name, value)
    state = getattr(expr, "__dict__", None)
    if state is not None:
        new.__dict__.update(state)
    return new


def with_domain(expr: E, domain: Domain) -> E:
    """``expr`` as an expression that carries ``domain`` (a new object; ``expr`` is unchanged).

    SymPy's singletons (``0``, ``1``, ``-1``) are one object each, shared by every expression
    that holds them, so they cannot carry a domain: they are returned as they are (a count that
    is 0 at every size, evaluated through :meth:`Analysis.evaluate` or a rule's binding, is still
    checked there).

    >>> import sympy, layercost_sym as lc
    >>> H = lc.symbols("H")
    >>> d = lc.Domain((lc.Condition(sympy.Ge(H, 3), "H >= 3", "too small", "example"),))
    >>> e = lc.with_domain(H - 2, d)
    >>> e == H - 2, lc.domain(e) == d, lc.domain(H - 2)
    (True, True, Domain(()))
    >>> lc.evaluate(e, {"H": 2})
    Traceback (most recent call last):
    ...
    layercost_sym.errors.DomainError: example: constraint 'H >= 3' fails (too small) at H=2
    """
    if not isinstance(expr, sympy.Basic) or not domain or isinstance(type(expr), Singleton):
        return expr
    attached = _fresh(expr)
    _ATTACHED[id(attached)] = (attached, domain)
    if len(_ATTACHED) >= _SWEEP_AT:
        _sweep()
    return attached


def without_domain(expr: Any) -> Any:
    """``expr`` rebuilt as an equal expression that carries no domain (to see what it says
    where its domain would refuse, or to compare it without keeping it in the registry).

    >>> import sympy, layercost_sym as lc
    >>> H = lc.symbols("H")
    >>> d = lc.Domain((lc.Condition(sympy.Ge(H, 3), "H >= 3", "too small", "example"),))
    >>> e = without_domain(lc.with_domain(H - 2, d))
    >>> e == H - 2, lc.domain(e), lc.evaluate(e, {"H": 2})
    (True, Domain(()), 0)
    """
    if getattr(expr, "is_Integer", False):
        return sympy.Integer(int(expr))
    return expr.func(*expr.args) if getattr(expr, "args", ()) else expr


def joined(pieces: Sequence[tuple[sympy.Basic, sympy.Expr]], otherwise: sympy.Expr) -> sympy.Expr:
    """``Piecewise((e_1, c_1), ..., (otherwise, True))`` of expressions that carry domains,
    carrying each one's domain where it answers (:func:`joined_domain`): the closed form of a
    model whose code takes another branch where ``c_i`` holds, each branch traced.

    >>> import sympy, layercost_sym as lc
    >>> H, W = lc.symbols("H W")
    >>> d = lc.Domain((lc.Condition(sympy.Ge(H, 3), "H >= 3", "too small", "example"),))
    >>> e = joined([(sympy.Eq(W, 1), H)], lc.with_domain(H * W, d))
    >>> e
    Piecewise((H, Eq(W, 1)), (H*W, True))
    >>> lc.evaluate(e, {"H": 2, "W": 1}), lc.evaluate(e, {"H": 3, "W": 2})
    (2, 6)
    >>> lc.evaluate(e, {"H": 2, "W": 2})
    Traceback (most recent call last):
    ...
    layercost_sym.errors.DomainError: example: constraint 'H >= 3 (where W != 1)' fails
    (too small) at H=2, W=2
    """
    if not pieces:
        return otherwise
    branches = []
    for condition, e in pieces:  # a piece that is itself piecewise: its branches, flattened
        inner = without_domain(e)
        inner_pairs = inner.args if isinstance(inner, sympy.Piecewise) else ((inner, True),)
        branches += [(x, sympy.And(condition, c)) for x, c in inner_pairs]
    whole = sympy.Piecewise(*branches, (without_domain(otherwise), True))
    return with_domain(whole, joined_domain([(c, domain(e)) for c, e in pieces], domain(otherwise)))


def joined_domain(pieces: Sequence[tuple[sympy.Basic, Domain]], otherwise: Domain) -> Domain:
    """The domain of a piecewise expression: each condition ``g`` of piece ``i``'s domain
    holds where that piece answers, as ``g or not chosen_i`` (``chosen_i``: ``c_i`` and no
    earlier ``c_j``; the last, ``otherwise``, where none does), its text saying where."""
    chosen: list[tuple[sympy.Basic, Domain]] = []
    before: list[sympy.Basic] = []
    for condition, part in pieces:
        chosen.append((sympy.And(condition, *(sympy.Not(b) for b in before)), part))
        before.append(condition)
    chosen.append((sympy.And(*(sympy.Not(b) for b in before)), otherwise))
    conditions: list[Condition] = []
    for where, part in chosen:
        text = _text_of(where)
        for c in part.conditions:
            shown = c.display
            conditions.append(
                replace(
                    c,
                    condition=sympy.Or(sympy.Not(where), c.condition),
                    text=f"{c.text} (where {text})",
                    display=None if shown is None else _where(shown, text),
                )
            )
    return Domain(tuple(dict.fromkeys(conditions)))


def _where(display: Callable[[], str], text: str) -> Callable[[], str]:
    return lambda: f"{display()} (where {text})"


def _text_of(condition: sympy.Basic) -> str:
    """A piece's condition as the library writes conditions (``H == 240 and W != 1``)."""
    from .grammar import text_of

    return text_of(condition)


def _sweep() -> None:
    """Drop the entries whose expression only this table still holds."""
    global _SWEEP_AT
    # references to an entry's expression when nothing outside holds it: the entry's tuple, the
    # loop's name for it and getrefcount's own argument
    unused = [key for key, (expr, _) in _ATTACHED.items() if sys.getrefcount(expr) <= 3]
    for key in unused:
        del _ATTACHED[key]
    _SWEEP_AT = max(1024, 2 * len(_ATTACHED))


def domain(expr: Any) -> Domain:
    """The domain ``expr`` carries: the conditions of the rule, cost or analysis it came from
    (empty for an expression built elsewhere)."""
    entry = _ATTACHED.get(id(expr))
    return entry[1] if entry is not None and entry[0] is expr else _EMPTY
