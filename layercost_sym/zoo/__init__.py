"""The zoo of reference architectures: whole models composed from the catalogue's rules by hand.

Each architecture is a function of its hyperparameters (``d_model``, ``n_layer``, ...) that
composes rules with :meth:`Rule.at <layercost_sym.Rule.at>` into a
:class:`~layercost_sym.composition.Cost`, mirroring one torch structure exactly.  A
hyperparameter left out stays a symbol (a positive integer unless the architecture says
otherwise); structural ones (a ResNet's depth) take one of a few values.

>>> import layercost_sym as lc
>>> "gpt" in lc.architectures()
True

Architectures live in the modules of this package and register themselves with
:func:`register`; they import SymPy only.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import sympy

from ..composition import Cost, as_exact, symbols
from ..errors import ArchitectureError, UnknownArchitectureError

__all__ = [
    "Architecture",
    "Hyperparameter",
    "architecture",
    "architectures",
    "defaults",
    "defaults_from",
    "register",
]

# The modules that define architectures; imported on first use.
_MODULES = ("transformers", "cnn", "moe", "attention")


@dataclass(frozen=True)
class Hyperparameter:
    """One hyperparameter of an architecture.

    ``choices`` marks a structural hyperparameter (it changes the structure, so it cannot
    stay a symbol): the value must be one of them, and ``default`` is used when it is left
    out.  Other hyperparameters become symbols when left out: integers unless
    ``integer=False`` (a width multiplier); their ``default`` is the value of the reference
    model the architecture mirrors (GPT-2 small's ``d_model = 768``, a 224-pixel input), which
    :func:`architecture` does *not* substitute: ``layercost arch`` shows each formula's value
    there beside it, and ``lc.architecture(name, **defaults(name))`` builds that model.
    """

    name: str
    meaning: str
    integer: bool = True
    choices: tuple[Any, ...] | None = None
    default: Any = None


@dataclass(frozen=True)
class _Spec:
    name: str
    build: Callable[..., Cost]
    hyperparameters: tuple[Hyperparameter, ...]
    mirrors: str
    doc: str
    defaults_from: str = ""


_REGISTRY: dict[str, _Spec] = {}
_loaded = False


def register(
    name: str,
    *,
    hyperparameters: tuple[Hyperparameter, ...],
    mirrors: str,
    defaults_from: str = "",
) -> Callable[[Callable[..., Cost]], Callable[..., Cost]]:
    """Register ``build(**hyperparameters) -> Cost`` as the architecture ``name``.

    ``mirrors`` states the torch structure the composition follows (the class and how it is
    built), which the bridge tests compare against; ``defaults_from`` names the reference
    model the hyperparameters' defaults come from (``"GPT-2 small: GPT2Config()"``).  A name
    registered twice is an error.
    """

    def decorate(build: Callable[..., Cost]) -> Callable[..., Cost]:
        if name in _REGISTRY:
            raise ArchitectureError(f"architecture {name!r} is registered twice")
        doc = build.__doc__ or ""
        _REGISTRY[name] = _Spec(name, build, hyperparameters, mirrors, doc, defaults_from)
        return build

    return decorate


def _load() -> None:
    global _loaded
    if not _loaded:
        for module in _MODULES:
            importlib.import_module(f"{__name__}.{module}")
        _loaded = True


def architectures() -> list[str]:
    """Names of the reference architectures, sorted.

    >>> import layercost_sym as lc
    >>> lc.architectures()[:3]
    ['attention', 'bert', 'deepseek']
    """
    _load()
    return sorted(_REGISTRY)


def _spec(name: str) -> _Spec:
    _load()
    if name not in _REGISTRY:
        raise UnknownArchitectureError(
            f"no architecture named {name!r}; known: {', '.join(sorted(_REGISTRY))}"
        )
    return _REGISTRY[name]


def _exact(name: str, value: Any, integer: bool) -> sympy.Expr:
    """An exact value for a hyperparameter (floats through their shortest decimal form)."""
    if isinstance(value, bool):
        raise ArchitectureError(f"{name}: {value!r} is not a number")
    if isinstance(value, int):
        out = sympy.Integer(value)
    elif isinstance(value, Fraction):
        out = sympy.Rational(value.numerator, value.denominator)
    elif isinstance(value, float):
        out = sympy.Rational(repr(value))  # 0.35 -> 7/20, not the binary expansion
    elif isinstance(value, sympy.Basic) and not value.has(sympy.Float):
        out = value
    else:
        raise ArchitectureError(
            f"{name}: {value!r} is not an int, a fraction or a SymPy expression"
        )
    if out.is_number:
        if integer and not out.is_integer:
            raise ArchitectureError(f"{name} must be an integer, got {value!r}")
        if not out.is_positive:
            raise ArchitectureError(f"{name} must be positive, got {value!r}")
    return out


@dataclass(frozen=True)
class Architecture:
    """A reference architecture at some hyperparameters: a :class:`Cost` with a name.

    Everything a :class:`Cost` offers (``params``, ``flops``, ``cost(convention)``,
    ``breakdown``, ``table``, ``to_latex``, ``evaluate``) is available here directly.
    """

    name: str
    hyperparameters: Mapping[str, Any]
    mirrors: str
    total: Cost = field(repr=False)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(self.total, attr)

    def at(self, **values: Any) -> Architecture:
        """The architecture with more of its symbols given values."""
        total = self.total.at(**values)
        hp = {}
        for k, v in self.hyperparameters.items():
            if isinstance(v, sympy.Basic):
                given = {
                    s: as_exact(s.name, values[s.name]) for s in v.free_symbols if s.name in values
                }
                v = v.xreplace(given)
            hp[k] = v
        return Architecture(self.name, hp, self.mirrors, total)

    def default_values(self) -> dict[str, sympy.Expr]:
        """The exact defaults (:func:`defaults`) of the numeric hyperparameters this
        architecture still has as symbols: where a table shows its formulas' values."""
        values = {}
        for h in _spec(self.name).hyperparameters:
            value = self.hyperparameters.get(h.name)
            if h.choices is None and h.default is not None and isinstance(value, sympy.Symbol):
                values[h.name] = _exact(h.name, h.default, h.integer)
        return values

    def _repr_latex_(self) -> str:
        return self.total._repr_latex_()

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={v}" for k, v in self.hyperparameters.items())
        return f"<Architecture {self.name}({hp}): {len(self.total.parts)} parts>"


def architecture(name: str, **hyperparameters: Any) -> Architecture:
    """The reference architecture ``name`` at the given hyperparameters.

    Hyperparameters left out stay symbols; an unknown one is an error naming the ones the
    architecture takes.
    """
    spec = _spec(name)
    known = {h.name: h for h in spec.hyperparameters}
    unknown = set(hyperparameters) - set(known)
    if unknown:
        raise ArchitectureError(
            f"architecture {name!r} takes no hyperparameter {', '.join(sorted(unknown))}; "
            f"it takes: {', '.join(known)}"
        )
    values: dict[str, Any] = {}
    for h in spec.hyperparameters:
        given = hyperparameters.get(h.name)
        if h.choices is not None:
            value = h.default if given is None else given
            if value is None:
                raise ArchitectureError(
                    f"architecture {name!r} needs {h.name} ({h.meaning}): one of "
                    f"{', '.join(map(str, h.choices))}"
                )
            if value not in h.choices:
                raise ArchitectureError(
                    f"architecture {name!r}: {h.name}={value!r} is not one of "
                    f"{', '.join(map(str, h.choices))}"
                )
            values[h.name] = value
        elif given is None:
            values[h.name] = symbols(h.name, integer=h.integer)
        else:
            values[h.name] = _exact(h.name, given, h.integer)
    return Architecture(name, values, spec.mirrors, spec.build(**values))


def defaults(name: str) -> dict[str, Any]:
    """The default of each hyperparameter of ``name`` that has one: the reference model's
    values (see :class:`Hyperparameter`).

    >>> import layercost_sym as lc
    >>> defaults("gpt")["d_model"], defaults("resnet")
    (768, {'depth': 50, 'version': 'v1.5', 'resolution': 224})
    >>> lc.architecture("gpt", **defaults("gpt")).params        # GPT-2 small
    124439808
    """
    return {h.name: h.default for h in _spec(name).hyperparameters if h.default is not None}


def defaults_from(name: str) -> str:
    """The reference model the defaults of ``name`` come from (``""``: not stated)."""
    return _spec(name).defaults_from


def describe(name: str) -> str:
    """The architecture's docstring, hyperparameters and the torch structure it mirrors."""
    spec = _spec(name)
    summary = " ".join(spec.doc.strip().split("\n\n")[0].split())  # the first paragraph
    lines = [f"{name}: {summary}"]
    lines.append(f"mirrors: {spec.mirrors}")
    if spec.defaults_from:
        lines.append(f"defaults: {spec.defaults_from}")
    for h in spec.hyperparameters:
        if h.choices:
            extra = f" (one of {', '.join(map(str, h.choices))}; default {h.default})"
        elif h.default is not None:
            extra = f" (default {h.default})"
        else:
            extra = ""
        lines.append(f"  {h.name}: {h.meaning}{extra}")
    return "\n".join(lines)
