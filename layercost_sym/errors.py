"""The library's exception and warning classes.

Every error a caller can provoke is one of these, so it can be caught without catching
everything; each subclasses the builtin it behaves like (``ValueError`` for bad values,
``KeyError`` for unknown names).
"""

from __future__ import annotations

__all__ = [
    "ArchitectureError",
    "CardError",
    "CatalogueError",
    "CompositionError",
    "ConventionError",
    "DomainError",
    "EvaluationError",
    "ExportError",
    "ExpressionError",
    "HardwareError",
    "LayercostError",
    "MissingSymbolError",
    "PlainDataError",
    "ShapeError",
    "TraceError",
    "UncountedOpError",
    "UnknownArchitectureError",
    "UnknownHardwareError",
    "UnknownRuleError",
]


class LayercostError(Exception):
    """Base class of every error raised by layercost_sym."""


class ExpressionError(LayercostError, ValueError):
    """Expression text was rejected by the safe parser (names the offending token)."""


class CatalogueError(LayercostError, ValueError):
    """A file of ``formulas/`` is broken; the message starts with ``file:line``."""


class UnknownRuleError(LayercostError, KeyError):
    """No rule has the requested name, or no rule describes a module's class."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else ""


class ConventionError(LayercostError, KeyError):
    """A rule was asked for a cost convention it does not define."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class EvaluationError(LayercostError, ValueError):
    """An expression could not be evaluated to an exact non-negative integer."""


class ExportError(LayercostError, ValueError):
    """An expression cannot be written as C or JavaScript (:mod:`layercost_sym.export`): a node
    those printers do not print, a constant beyond int64, a name that is no identifier there."""


class MissingSymbolError(EvaluationError):
    """``evaluate`` was not given a value for a symbol of the expression."""


class PlainDataError(LayercostError, ValueError):
    """Data that is not a well-formed plain encoding of catalogue values (a damaged or altered
    cache file); the cache treats it as missing."""


class ShapeError(LayercostError, ValueError):
    """Input shapes or module options that torch itself would reject (names the constraint)."""


class DomainError(ShapeError, EvaluationError):
    """Values outside a formula's domain: a rule's constraint or an analysis' guard fails (the
    message names it and torch's reason).  Both a :class:`ShapeError` (torch would reject the
    shapes) and an :class:`EvaluationError` (the formula has no value there)."""


class UncountedOpError(LayercostError, RuntimeError):
    """The empirical counter met an operator it has no counting rule for (never counted as 0)."""


class CompositionError(LayercostError, ValueError):
    """A rule was bound (``Rule.at``) to a name it does not have or a value it cannot take."""


class ArchitectureError(LayercostError, ValueError):
    """A reference architecture was given a hyperparameter it does not take or cannot use."""


class CardError(LayercostError, ValueError):
    """A cost card could not be made (an expression the catalogue's grammar cannot say) or read
    (malformed: the message names the JSON path of the problem, ``quantities.flops.exact``)."""


class UnknownArchitectureError(LayercostError, KeyError):
    """No reference architecture has the requested name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class TraceError(LayercostError, ValueError):
    """``analyze`` could not trace a model at all, even with dimensions pinned (says what failed
    and what to try)."""


class HardwareError(LayercostError, ValueError):
    """A chip's figures are malformed: a peak that is not a positive integer, a dtype or kind not
    known, a number without a source (``layercost_sym.hardware.Chip`` built directly; the file
    loader reports the same as a :class:`CatalogueError` at its line)."""


class UnknownHardwareError(LayercostError, KeyError):
    """No accelerator has the requested name, or a chip states no peak for the requested dtype
    (the message names the chip, the dtype and the peaks it has)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
