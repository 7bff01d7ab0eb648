"""The backward of a trace beyond its calls' rules: the operators whose backward is data
movement only, and the gradients autograd adds up.  Where one tensor feeds several recorded
calls (a residual stream read by a block and by the add after it, a weight tied to two
modules), its ``k`` gradients arrive at one place and autograd adds them, ``k - 1`` adds per
element, work that belongs to no single call's rule.

A tensor's place is the autograd node that made it (its output number), or the tensor itself
for a leaf (a parameter): an in-place call later gives the tensor a new node, and a view has a
node of its own, so both count right.  The nodes are held, so that no id is reused.

>>> import torch, sympy
>>> sums = GradientSums(lambda t: tuple(sympy.Integer(d) for d in t.shape))
>>> x = torch.randn(3, 4, requires_grad=True)
>>> y = x * 2                               # one call reads x ...
>>> read = sums.note([x], [y], "double")
>>> z = x + y                               # ... and another: x's two gradients are added
>>> read = sums.note([x, y], [z], "add")
>>> sums.totals()
[('double', 12)]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sympy
import torch

__all__ = [
    "GRADIENT_SUM",
    "MOVEMENT_BACKWARD",
    "NO_BACKWARD",
    "GradientSums",
    "grad_key",
    "reached_keys",
]

# operators without a functional rule whose backward, where an argument requires grad, is data
# movement only (derivatives.yaml: a view, a slice, a copy or a concatenation of the output's
# gradient; a factory such as empty_like sends none): 0 under every backward convention.
# Others (expand, repeat, index, gather, the reflection and replication pads) sum or
# scatter-add gradients: their rows state no backward.
MOVEMENT_BACKWARD = set(
    """
view _unsafe_view reshape permute transpose t unsqueeze squeeze clone copy _to_copy to detach
alias slice select cat stack split split_with_sizes chunk unbind contiguous flatten unflatten
narrow roll flip constant_pad_nd masked_fill select_scatter slice_scatter lift_fresh
lift_fresh_copy _reshape_alias unsafe_view collapse_view
empty_like zeros_like ones_like full_like new_empty new_zeros new_ones new_full
""".split()
)
_BACKWARD_CONVENTIONS = ("exact", "macs", "torch")
NO_BACKWARD = {("backward", c): sympy.Integer(0) for c in _BACKWARD_CONVENTIONS}
GRADIENT_SUM = "(gradient accumulation)"  # the row of gradients that autograd adds up


def grad_key(t: torch.Tensor) -> tuple[int, int]:
    """Where autograd sends ``t``'s gradient: ``(id(node), output number)``, or ``(id(t), -1)``
    for a leaf."""
    node = t.grad_fn
    return (id(node), t.output_nr) if node is not None else (id(t), -1)


def reached_keys(results: Sequence[Any]) -> dict[tuple[int, int], Any]:
    """The places (:func:`grad_key`) a gradient of ``results`` reaches: the tensors' own and
    every node output the autograd graph leads to from them, each with its node.

    A key is the id of a node's Python wrapper, which lives only while something holds it:
    the mapping holds every node it names, so that no wrapper made later (another tensor's
    :func:`grad_key`) takes a freed one's id while the mapping lives.

    >>> x = torch.randn(2, requires_grad=True)
    >>> a, b = x * 2, x * 3                  # b is not used
    >>> reached = reached_keys([a.sum()])
    >>> grad_key(a) in reached, grad_key(b) in reached
    (True, False)
    """
    found: dict[tuple[int, int], Any] = {}
    todo = []
    for t in results:
        if isinstance(t, torch.Tensor) and t.requires_grad and t.grad_fn is not None:
            node = t.grad_fn
            found[(id(node), t.output_nr)] = node
            todo.append(node)
    seen: set[int] = set()
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        for following, number in node.next_functions:
            if following is not None:
                found[(id(following), number)] = following
                todo.append(following)
    return found


class GradientSums:
    """The calls of a trace that read tensors requiring grad, and the sums they cause.

    ``shape`` turns a tensor into its (symbolic) sizes."""

    def __init__(self, shape: Callable[[torch.Tensor], Sequence[Any]]) -> None:
        self.shape = shape
        # each call's (outputs, {key: (tensor, its node, elements)}, where)
        self.reads: list[tuple[list, dict[tuple[int, int], tuple], str]] = []

    def note(
        self, tensors: Sequence[Any], outputs: list, where: Any
    ) -> dict[tuple[int, int], tuple]:
        """A call at ``where`` (a name, a position: the caller's) that reads ``tensors`` (those
        that require grad count, each key once) and made ``outputs`` (a list the caller may
        fill later: a module's, in its forward hook, with :meth:`passed`); the keys read."""
        keys: dict[tuple[int, int], tuple] = {}
        for t in tensors:
            if isinstance(t, torch.Tensor) and t.requires_grad:
                keys.setdefault(grad_key(t), (t, t.grad_fn, sympy.Mul(*self.shape(t))))
        if keys:
            self.reads.append((outputs, keys, where))
        return keys

    @staticmethod
    def passed(keys: dict[tuple[int, int], tuple], outputs: Sequence[torch.Tensor]) -> None:
        """A module call returned ``outputs``: an input it returned as it was (Dropout in eval,
        Identity) is no read (no node of the call takes its gradient)."""
        for t in outputs:
            keys.pop(grad_key(t), None)

    def totals(self) -> list[tuple[Any, sympy.Expr]]:
        """``(where the tensor was first read, adds)`` for each tensor whose gradient arrives
        from more than one call; a call counts where its output requires grad (a comparison,
        or ``zeros_like``, reads a tensor without sending it a gradient)."""
        arrivals: dict[tuple[int, int], list] = {}
        for outputs, keys, where in self.reads:
            if not any(t.requires_grad for t in outputs):
                continue
            for key, (_t, _node, elements) in keys.items():
                arrivals.setdefault(key, [0, elements, where])[0] += 1
        return [(where, (k - 1) * n) for k, n, where in arrivals.values() if k > 1]
