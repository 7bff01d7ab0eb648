"""Counting rules for the dropout family (Dropout, Dropout1d/2d/3d, AlphaDropout, ...).

* ``bernoulli`` (reached as ``bernoulli_.float`` from ATen's ``_dropout_impl``, which fills the
  noise tensor with ``noise.bernoulli_(1 - p)``): each element is one uniform draw (random
  generation: data movement, as ``rand`` is) compared with the probability (``u < p``): one
  comparison per element.  That is also what torch's own decomposition of ``aten.bernoulli``
  runs (``rand(...) < p``) and what the CPU kernel computes
  (``bernoulli_distribution``: ``uniform(generator) < p``), so every overload counts alike.
"""

from ..optable import register_op

register_op("bernoulli", kind="elementwise")
