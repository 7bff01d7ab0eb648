"""Counting rules for operators that need more than a kind, one module per layer family.

Each module registers its rules with :func:`~layercost_sym.torchtools.optable.register_op`
(importing only :mod:`~layercost_sym.torchtools.optable`); the counter imports this package so
that every family's rules are in the table before anything is counted.
"""

from . import (  # noqa: F401  (imported for the rules they register)
    activation,
    attention,
    backward,
    conv,
    dropout,
    embedding,
    functional,
    norm,
    pooling,
    recurrent,
    resampling,
)
