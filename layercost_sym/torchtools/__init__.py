"""Everything that imports torch: the empirical counters.

This subpackage is imported only when a function that needs torch is first called
(:func:`layercost_sym.count`), so ``import layercost_sym`` stays free of torch.
"""

from .count import CountResult, count
from .opcount import OP_TABLE, ExactCounter

__all__ = ["OP_TABLE", "CountResult", "ExactCounter", "count"]
