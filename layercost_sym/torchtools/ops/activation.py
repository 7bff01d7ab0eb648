"""Counting rules for the activation and linear families.

* ``bitwise_or``: torch's decomposition of ``clamp`` (Hardtanh, ReLU6, Hardswish, Hardsigmoid) is
  ``where(isnan(x) | (x >= lo), x, lo)``; the ``|`` of two bool tensors is one logical operation
  per element, as ``logical_or`` is.  Shared with the resampling family: registered by whichever
  family module is imported first.
* ``true_divide``: an alias of ``div`` (CELU's ``x / alpha``, Softplus's ``log1p(exp(b*x)) / b``):
  one divide per output element.  Registered here unless another family did so first.
* ``tensor_split``: GLU's decomposition splits its input in halves with it: views, no arithmetic.
* ``rrelu_with_noise``: RReLU has no decomposition.  Eval: ``leaky_relu(x, (lower + upper) / 2)``
  (the mean slope is one host-side scalar); training: per element a slope ``r`` drawn from
  U(lower, upper) (a random draw: data movement, as in the table) used where ``x <= 0``.  Both are
  counted as the branch-free form torch's leaky_relu decomposition runs, ``where(x > 0, x, x * r)``:
  a comparison, a multiply and a select per element, 3 per element (the kernel multiplies only the
  non-positive elements, a data-dependent count; the select form counts every element).
* ``_trilinear``: Bilinear's kernel (no decomposition).  ``bilinear`` calls it on
  ``x1 (B, in1)``, ``W (out, in1, in2)``, ``x2 (B, in2)`` and unrolls the loop over ``out``; per
  output feature ``k`` it computes ``t = x1 @ W[k]`` (``B*in2`` outputs of an ``in1``-term dot
  product: ``B*in2*(2*in1 - 1)``), then the row-wise dot products ``t . x2`` (``B*(2*in2 - 1)``),
  then adds them into the zero-filled output (``B``).  Total ``B*out*in2*(2*in1 + 1)``.
"""

from __future__ import annotations

from ...errors import UncountedOpError
from ..optable import CUSTOM, OP_TABLE, register_op


def _register_shared(name: str, kind: str) -> None:
    if name not in OP_TABLE and name not in CUSTOM:  # another family may have registered it
        register_op(name, kind=kind)


_register_shared("bitwise_or", "elementwise")
_register_shared("true_divide", "elementwise")
_register_shared("tensor_split", "movement")


@register_op("rrelu_with_noise")
def _rrelu_with_noise(args: tuple, kwargs: dict, out) -> int:
    # compare, multiply by the slope, select: 3 per element, in training and in eval
    return 3 * args[0].numel()


@register_op("_trilinear")
def _trilinear(args: tuple, kwargs: dict, out) -> int:
    x1, weight = args[0], args[1]
    expands = tuple(tuple(a) for a in args[3:7])
    unroll = args[7] if len(args) > 7 else kwargs.get("unroll_dim", 1)
    if expands != ((1, 3), (0,), (1, 2), (2, 3)) or unroll != 1 or x1.dim() != 2:
        raise UncountedOpError(
            f"_trilinear is counted only as nn.Bilinear calls it, got expand/sum dims {expands}"
        )
    batch, in1 = x1.shape
    out_features, _, in2 = weight.shape
    # per output feature: x1 @ W[k] (B*in2 dots of in1 terms), dot with x2 (B dots of in2
    # terms), add into the zero-filled output (B)
    per_k = batch * in2 * (2 * in1 - 1) + batch * (2 * in2 - 1) + batch
    return out_features * per_k
