"""Counting rules for the normalisation family.

* ``resize_as``: the legacy ``CrossMapLRN2d`` forward allocates its output and scale buffers with
  ``Tensor.resize_as_``, which only (re)allocates storage to the input's shape: data movement.
  Registered only if no family module did so first.

Everything else the family runs (native_batch_norm, native_layer_norm, native_group_norm,
instance_norm, _fused_rms_norm) is broken into primitives by torch's own decompositions.
"""

from ..optable import CUSTOM, OP_TABLE, register_op

if "resize_as" not in OP_TABLE and "resize_as" not in CUSTOM:
    register_op("resize_as", kind="movement")
