"""Counting rules for operators that need more than a kind, one module per layer family.

Every module here is imported (by :mod:`layercost_sym.torchtools.opcount`) and registers its
rules with :func:`~layercost_sym.torchtools.opcount.register_op`.
"""

import importlib
import pkgutil

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_info.name}")
