"""The :class:`LayerCase`: a torch.nn layer to build and the input(s) to run it on (no torch
import until :meth:`LayerCase.build` or :meth:`LayerCase.tensors` is called)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["LayerCase"]


@dataclass(frozen=True)
class LayerCase:
    """A torch.nn layer to build and the input(s) to run it on.

    ``integer_inputs`` maps an input's index to the exclusive upper bound of its random integer
    (``torch.long``) values, e.g. token ids; ``literal_inputs`` gives an input's exact integer
    values (e.g. EmbeddingBag offsets); ``call_kwargs`` are keyword arguments of the forward call.
    ``dtype`` names the torch dtype of the module's floating parameters and buffers and of the
    floating inputs (``"bfloat16"``: :meth:`in_dtype`); with ``requires_grad`` the floating
    inputs require grad, as activations inside a model do (:meth:`with_grad`).
    """

    name: str
    kwargs: dict[str, Any]
    input_shapes: tuple[tuple[int, ...], ...]
    training: bool = False
    integer_inputs: dict[int, int] = field(default_factory=dict)
    literal_inputs: dict[int, tuple[int, ...]] = field(default_factory=dict)
    call_kwargs: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)
    dtype: str = "float32"
    requires_grad: bool = False
    frozen: bool = False  # the module's parameters do not require grad

    def in_dtype(self, dtype: str) -> LayerCase:
        """The same case with floating parameters and inputs of ``dtype`` (a torch dtype name)."""
        return replace(self, dtype=dtype)

    def with_grad(self) -> LayerCase:
        """The same case with floating inputs that require grad (not leaves: an in-place layer
        may write them)."""
        return replace(self, requires_grad=True)

    def freeze(self) -> LayerCase:
        """The same case with the module's parameters frozen (no weight gradients)."""
        return replace(self, frozen=True)

    def build(self):
        """The torch module, in the case's mode and dtype (imports torch)."""
        import torch

        module = getattr(torch.nn, self.name)(**self.kwargs)
        if self.dtype != "float32":
            module = module.to(getattr(torch, self.dtype))
        if self.frozen:
            module.requires_grad_(False)
        return module.train(self.training)

    def tensors(self) -> tuple:
        """The inputs as tensors: random floats, random integers or literal values."""
        import torch

        out = []
        for index, shape in enumerate(self.input_shapes):
            if index in self.literal_inputs:
                out.append(
                    torch.tensor(self.literal_inputs[index], dtype=torch.long).reshape(shape)
                )
            elif index in self.integer_inputs:
                out.append(torch.randint(0, self.integer_inputs[index], shape))
            else:
                x = torch.randn(shape, dtype=getattr(torch, self.dtype))
                out.append(x.requires_grad_() * 1 if self.requires_grad else x)
        return tuple(out)
