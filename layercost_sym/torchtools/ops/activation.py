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
* ``_trilinear``: Bilinear's kernel (no decomposition), in the forward pass and, with other
  expand / sum dims, the three calls of its backward (``_trilinear_backward``).  The kernel
  (ATen ``Linear.cpp``) unsqueezes each operand at its expand dims, then for each of the
  ``unroll`` slices along ``unroll_dim`` runs two ``sumproduct_pair``s and adds the result into
  the zero-filled output (one add per element of the output slice, or of the whole output where
  the unrolled dim is summed).  ``sumproduct_pair(left, right, sum_dims)`` is ``mul`` (one
  multiply per element of the broadcast) where no dim is summed; otherwise a summed dim of size
  above 1 on one side only is first summed there (``n - 1`` adds per output element), and a
  ``bmm`` of the kept dims' sizes with ``K`` = the product of the summed dims both sides share
  gives each output a ``K``-term dot product (``2*K - 1``).  As ``bilinear`` calls it on
  ``x1 (B, in1)``, ``W (out, in1, in2)``, ``x2 (B, in2)``: per output feature ``k``,
  ``t = x1 @ W[k]`` (``B*in2*(2*in1 - 1)``), the row-wise dot products ``t . x2``
  (``B*(2*in2 - 1)``), the add into the output (``B``): ``B*out*in2*(2*in1 + 1)`` in all.
"""

from __future__ import annotations

import math

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
    i1, i2, i3 = (list(t.shape) for t in args[:3])
    if 0 in (math.prod(i1), math.prod(i2), math.prod(i3)):
        return 0  # the kernel only fills its output with zeros
    expand1, expand2, expand3, sumdim = (set(a) for a in args[3:7])
    unroll = args[7] if len(args) > 7 else kwargs.get("unroll_dim", 1)
    total = len(i1) + len(expand1)
    # unsqueeze each operand at its expand dims (in increasing order, as the kernel does)
    for shape, expand in ((i1, expand1), (i2, expand2), (i3, expand3)):
        for i in sorted(expand):
            shape.insert(i, 1)
    if not len(i1) == len(i2) == len(i3) == total:
        raise UncountedOpError(f"_trilinear: operands of unequal rank after expand: {args[3:7]}")
    sum12 = [i for i in range(total) if i in sumdim and i in expand3 and i != unroll]
    sum23 = [i for i in range(total) if i in sumdim and i not in expand3 and i != unroll]
    sizes = [max(a, b, c) for a, b, c in zip(i1, i2, i3, strict=True)]
    slices = sizes[unroll]
    for shape in (i1, i2, i3):
        shape[unroll] = 1  # narrow(unroll_dim, k, 1)
    buf, first = _sumproduct_pair(i1, i2, sum12)
    buf, second = _sumproduct_pair(buf, i3, sum23)
    # add into the output: its slice at k, or all of it where the unrolled dim is summed
    output = [1 if i in sumdim else n for i, n in enumerate(sizes)]
    if unroll not in sumdim:
        output[unroll] = 1
    return slices * (first + second + math.prod(output))


def _sumproduct_pair(left: list, right: list, sum_dims: list) -> tuple[list, int]:
    """ATen's ``sumproduct_pair`` on shapes (keepdim): the result's shape and its operations."""
    if not sum_dims:  # at::mul of the two, broadcast
        shape = [max(a, b) for a, b in zip(left, right, strict=True)]
        return shape, math.prod(shape)
    left, right, ops, k = list(left), list(right), 0, 1
    for i in range(len(left)):
        if i in sum_dims:
            if left[i] != 1 and right[i] != 1:  # a dim both share: the bmm's inner size
                k *= left[i]
            elif left[i] != 1:  # on one side only: summed there first
                ops += math.prod(left) // left[i] * (left[i] - 1)
                left[i] = 1
            elif right[i] != 1:
                ops += math.prod(right) // right[i] * (right[i] - 1)
                right[i] = 1
    pairs = enumerate(zip(left, right, strict=True))
    shape = [1 if i in sum_dims else max(a, b) for i, (a, b) in pairs]
    return shape, ops + math.prod(shape) * (2 * k - 1)
