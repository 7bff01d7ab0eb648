"""The training-memory ledger: what one training step keeps in memory, as formulas.

Parameters, their gradients, the optimizer's state (and a 32-bit master copy under mixed
precision) and the activations autograd saves for backward (quantity ``saved``), each a SymPy
expression in the input sizes (and element sizes where they are left symbolic), summed as the
usual accounting does: a ledger, not a peak (torch frees saved activations as backward goes,
while gradients appear).

>>> from layercost_sym.ledger import Weights, training_memory
>>> weights = [Weights(numel=1000, element_size=2, trainable=True, tensors=2)]
>>> ledger = training_memory(weights, activations=0, optimizer="adamw", master_weights=True)
>>> ledger.per_parameter()       # Transformer Math: 2 + 2 + 4 + 4 + 4 bytes per parameter
16
>>> ledger.optimizer             # exp_avg, exp_avg_sq in float32, and a float32 step per tensor
8008
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sympy

from .errors import EvaluationError
from .evaluation import evaluate
from .inverse import largest

__all__ = ["OPTIMIZERS", "Optimizer", "TrainingMemory", "Weights", "training_memory"]


@dataclass(frozen=True)
class Optimizer:
    """What a ``torch.optim`` optimizer keeps per trainable parameter tensor: ``states``
    tensors of the parameter's shape (in its dtype, or float32 with a master copy) and
    ``scalar_bytes`` of per-tensor scalars (Adam's ``step``, a 0-d float32 tensor)."""

    name: str
    states: int
    scalar_bytes: int
    source: str


OPTIMIZERS = {
    o.name: o
    for o in (
        Optimizer("sgd", 0, 0, "torch.optim.SGD, momentum=0: no state"),
        Optimizer("sgd-momentum", 1, 0, "torch.optim.SGD, momentum > 0: momentum_buffer"),
        Optimizer("adam", 2, 4, "torch.optim.Adam: exp_avg, exp_avg_sq, step (0-d float32)"),
        Optimizer("adamw", 2, 4, "torch.optim.AdamW: exp_avg, exp_avg_sq, step (0-d float32)"),
        Optimizer("adam-amsgrad", 3, 4, "torch.optim.Adam, amsgrad=True: + max_exp_avg_sq"),
    )
}


@dataclass(frozen=True)
class Weights:
    """Parameter tensors of one kind: ``numel`` elements in all, ``element_size`` bytes each
    (a number or the symbol ``e_w``), in ``tensors`` tensors, trainable or frozen."""

    numel: int
    element_size: Any
    trainable: bool
    tensors: int = 1


@dataclass(frozen=True)
class TrainingMemory:
    """Bytes one training step keeps, by kind (SymPy expressions); :attr:`total` their sum."""

    parameters: sympy.Expr
    gradients: sympy.Expr
    optimizer: sympy.Expr
    master: sympy.Expr
    activations: sympy.Expr
    trainable: int  # trainable parameters (elements)
    optimizer_name: str
    scalars: sympy.Expr  # the optimizer's per-tensor scalars (Adam's step), in optimizer
    # activation recomputation: the saved activations of the largest block, run again in
    # backward and held while its backward runs (None: no recomputation)
    recomputed: sympy.Expr | None = None

    @property
    def total(self) -> sympy.Expr:
        kinds = [self.parameters, self.gradients, self.optimizer, self.master, self.activations]
        return sympy.expand(sympy.Add(*kinds, self.recomputed or 0))

    def rows(self) -> dict[str, sympy.Expr]:
        """Each kind and the total, in the order a table shows them."""
        recomputed = (
            {} if self.recomputed is None else {"recomputed (largest block)": self.recomputed}
        )
        return {
            "parameters": self.parameters,
            "gradients": self.gradients,
            f"optimizer ({self.optimizer_name})": self.optimizer,
            "master copy": self.master,
            "activations (saved)": self.activations,
            **recomputed,
            "total": self.total,
        }

    def evaluate(self, values: Mapping[str, int] | None = None) -> dict[str, int]:
        """Each row at ``values`` (input sizes; element sizes where symbolic), exact ints."""
        return {k: int(evaluate(v, dict(values or {}))) for k, v in self.rows().items()}

    def per_parameter(self) -> sympy.Expr:
        """Bytes per trainable parameter of parameters, gradients, optimizer state and master
        copy, the optimizer's per-tensor scalars aside (exact; a model with frozen parameters
        counts them here too): the literature's "16 bytes per parameter" for mixed-precision
        Adam."""
        fixed = self.parameters + self.gradients + self.optimizer + self.master - self.scalars
        return sympy.nsimplify(fixed / self.trainable) if self.trainable else sympy.Integer(0)

    def largest(self, symbol: str, capacity: int, values: Mapping[str, int] | None = None) -> int:
        """The largest value of ``symbol`` (batch ``N``, sequence ``L``) whose total fits
        ``capacity`` bytes, the other symbols at ``values``: an exact integer, checked on both
        sides (the total grows with the symbol).  Raises ``EvaluationError`` when even 1 does
        not fit."""
        answer = largest(self.total, capacity, symbol, at=values)  # the one search
        if answer is None:
            raise EvaluationError(
                f"the training step does not fit {capacity} bytes at {symbol} = 1"
            )
        return answer


def training_memory(
    weights: Sequence[Weights],
    activations: Any,
    optimizer: str = "adamw",
    *,
    master_weights: bool = False,
    recomputed: Any = None,
) -> TrainingMemory:
    """The ledger of a model with ``weights`` whose forward saves ``activations`` bytes, trained
    with ``optimizer`` (:data:`OPTIMIZERS`); ``master_weights``: a float32 copy of each
    trainable parameter kept beside its 16-bit one, the optimizer's state in float32 too;
    ``recomputed``: under activation recomputation, the bytes one recomputed block saves."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer is one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    rule = OPTIMIZERS[optimizer]
    parameters = sympy.Add(*(w.numel * w.element_size for w in weights))
    trained = [w for w in weights if w.trainable]
    gradients = sympy.Add(*(w.numel * w.element_size for w in trained))
    state_size = (lambda w: 4) if master_weights else (lambda w: w.element_size)
    scalars = sympy.Integer(sum(rule.scalar_bytes * w.tensors for w in trained))
    optimizer_bytes = sympy.Add(*(rule.states * w.numel * state_size(w) for w in trained)) + scalars
    master = sympy.Add(*(4 * w.numel for w in trained)) if master_weights else sympy.Integer(0)
    return TrainingMemory(
        parameters,
        gradients,
        optimizer_bytes,
        master,
        sympy.expand(activations),
        sum(w.numel for w in trained),
        optimizer,
        scalars,
        None if recomputed is None else sympy.expand(recomputed),
    )
