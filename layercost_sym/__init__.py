"""layercost_sym: every layer's parameter count and FLOPs as an exact SymPy expression.

>>> import layercost_sym as lc
>>> r = lc.rule("Conv2d")
>>> lc.evaluate(r.flops, {"N": 1, "C_in": 3, "C_out": 64, "k": 7, "s": 2, "p": 3, "d": 1,
...                       "g": 1, "b": 0, "H": 224, "W": 224})
235225088

Torch is imported only by :func:`count` and :func:`analyze` (and only when called).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__ as __version__
from .binding import Binding, bind
from .cache import catalogue
from .cards import Card, card, load_card
from .composition import Cost, symbols
from .domain import Condition, Domain, domain, with_domain
from .errors import (
    ArchitectureError,
    CardError,
    CatalogueError,
    CompositionError,
    ConventionError,
    DomainError,
    EvaluationError,
    ExportError,
    ExpressionError,
    HardwareError,
    LayercostError,
    MissingSymbolError,
    ShapeError,
    TraceError,
    UncountedOpError,
    UnknownArchitectureError,
    UnknownHardwareError,
    UnknownRuleError,
)
from .evaluation import evaluate, sweep
from .export import to_c, to_javascript
from .hardware import Chip, hardware, hardwares, load_hardware
from .inverse import largest, largest_answer
from .parsing import parse
from .printing import latex, simplify
from .quantities import CONVENTIONS, quantities, quantity
from .rule import Rule
from .scaleout import sweep_lazy
from .scaling import iso_flop, meets_budget, training_flops
from .tables import labelled_sweep
from .zoo import Architecture, architecture, architectures

if TYPE_CHECKING:
    from .torchtools.analysis import Analysis
    from .torchtools.compare import Comparison
    from .torchtools.count import CountResult

__all__ = [
    "CONVENTIONS",
    "Architecture",
    "ArchitectureError",
    "Binding",
    "Card",
    "CardError",
    "CatalogueError",
    "Chip",
    "CompositionError",
    "Condition",
    "ConventionError",
    "Cost",
    "Domain",
    "DomainError",
    "EvaluationError",
    "ExportError",
    "ExpressionError",
    "HardwareError",
    "LayercostError",
    "MissingSymbolError",
    "Rule",
    "ShapeError",
    "TraceError",
    "UncountedOpError",
    "UnknownArchitectureError",
    "UnknownHardwareError",
    "UnknownRuleError",
    "analyze",
    "architecture",
    "architectures",
    "bind",
    "card",
    "compare",
    "count",
    "domain",
    "evaluate",
    "generation",
    "hardware",
    "hardwares",
    "iso_flop",
    "labelled_sweep",
    "largest",
    "largest_answer",
    "latex",
    "load_card",
    "load_hardware",
    "meets_budget",
    "parse",
    "quantities",
    "quantity",
    "rule",
    "rule_for",
    "rules",
    "simplify",
    "sweep",
    "sweep_lazy",
    "symbols",
    "to_c",
    "to_javascript",
    "training_flops",
    "with_domain",
]


def rules() -> list[str]:
    """Names of all rules, sorted.

    >>> "Conv2d" in rules()
    True
    """
    return sorted(catalogue().rules)


def rule(name: str) -> Rule:
    """The rule of a layer, by its torch.nn class name (``"Conv2d"``), or a variant
    (``"Conv2d.same"``); an unknown name raises :class:`UnknownRuleError` naming it."""
    return catalogue().get(name)


def rule_for(module: Any) -> Rule:
    """The rule (or the variant of it) that describes a module instance."""
    return catalogue().for_module(module)


def count(
    module: Any,
    *inputs: Any,
    convention: str | None = None,
    training: bool = False,
    **call_kwargs: Any,
) -> CountResult:
    """Run a real torch module on ``inputs`` (tensors or shapes) and count what it did.

    Returns parameters (numel), the output shape and the costs ``exact`` (the package's op
    counter), ``torch`` (``FlopCounterMode``) and ``macs`` (``torch / 2``); ``.flops`` is the
    cost under ``convention``; ``call_kwargs`` go to the module's forward.  Imports torch on
    first call.
    """
    from .torchtools.count import count as _count

    return _count(module, *inputs, convention=convention, training=training, **call_kwargs)


def analyze(
    model: Any,
    *input_shapes: Any,
    dtype: Any = None,
    convention: str = "exact",
    training: bool = False,
    **kwargs: Any,
) -> Analysis:
    """A whole torch model's parameters and costs as closed forms in its input size.

    Shape entries are ints or symbol names: ``lc.analyze(model, ("N", 3, "H", "W"))``;
    token ids ``("N", "L")`` are traced as ``torch.long`` (inferred); keyword inputs are
    keyword shapes (``input_ids=("N", "L")``); ``hints={"H": 224}`` choose trace sizes;
    dimensions the model insists on are pinned (``.pinned``).  The result has ``.params``,
    ``.flops``, ``.cost(convention)``, ``.layers`` (one row per module or operator call),
    ``.unsupported`` (calls with no rule whose cost is not counted, never a silent 0),
    ``.costed_by_operators`` (modules with no rule costed by their operators' rules),
    ``.guards`` (where the closed form holds) and ``.evaluate(shapes, convention)``.  Imports
    torch on first call.
    """
    from .torchtools.tracing import analyze as _analyze

    if dtype is not None:
        kwargs["dtype"] = dtype
    return _analyze(model, *input_shapes, convention=convention, training=training, **kwargs)


def generation(model: Any, **kwargs: Any) -> Any:
    """A Hugging Face causal LM generating ``G`` tokens from a prompt of ``P``, batch ``N``:
    ``.prefill_cost(quantity, convention)``, ``.step(...)`` (one decode step at position
    ``t``), ``.total(...)`` (prefill plus the ``G - 1`` decode steps, summed in closed form),
    ``.kv_cache()``, ``.kv_peak()``, ``.ttft(chip, ...)`` and ``.tpot(chip, ...)``; symbol
    names by ``batch=, prompt=, new=, position=``.  Imports torch on first call."""
    from .torchtools.generation import generation as _generation

    return _generation(model, **kwargs)


def compare(
    model: Any,
    *input_shapes: Any,
    conventions: Any = None,
    at: Any = None,
    **kwargs: Any,
) -> Comparison:
    """One model's cost under several conventions, per family, and why two of them differ.

    ``conventions`` left out are the FLOPs conventions stated for every layer
    (``quantity("flops").compared``).  Traces the model once (as :func:`analyze`, which
    ``kwargs`` go to) and returns a
    :class:`~layercost_sym.torchtools.compare.Comparison`: ``.totals`` per convention,
    ``.breakdown(convention)`` over the families conv, linear, norm, activation, pooling,
    attention and other, ``.diff(a, b)`` (the difference as a formula and the rows it comes
    from, largest first) and ``.table()``; ``at`` gives sizes for exact values.  Imports torch
    on first call.
    """
    from .torchtools.compare import compare as _compare

    return _compare(model, *input_shapes, conventions=conventions, at=at, **kwargs)
