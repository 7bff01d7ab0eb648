"""Running fvcore's ``FlopCountAnalysis`` on one layer (imports torch and fvcore lazily).

fvcore traces the model with ``torch.jit`` and counts only the ATen ops it has a handle for
(conv, linear/addmm/mm/matmul/bmm/einsum, batch/group/layer/instance norm, 2-D nearest and
bilinear upsampling, ``adaptive_avg_pool2d``, ``grid_sampler``); every other op counts 0 with a
warning, silenced here.  Its "flops" are multiply-accumulates for the matmul family.

The harness wraps the layer in a module that passes the forward keyword arguments (a traced
model takes positional tensors only) and drops ``None`` from the output (``jit.trace`` accepts
only tensors, e.g. MultiheadAttention's ``(out, None)`` with ``need_weights=False``); the wrapper
itself runs no op, so ``.total()`` is the layer's own count.

>>> import torch
>>> fvcore_total(torch.nn.Linear(3, 2), (torch.randn(4, 3),))   # doctest: +SKIP
24
"""

from __future__ import annotations

import warnings
from typing import Any

__all__ = ["fvcore_total"]


def _strip(out: Any) -> Any:
    """The output without ``None`` entries (what jit.trace can return)."""
    if isinstance(out, tuple):
        kept = tuple(_strip(o) for o in out if o is not None)
        return kept[0] if len(kept) == 1 else kept
    return out


def fvcore_total(module, tensors: tuple, call_kwargs: dict | None = None) -> int:
    """``FlopCountAnalysis(module, tensors).total()`` with fvcore's default handles, the module
    in its own train/eval mode, forward keyword arguments ``call_kwargs``."""
    import torch
    from fvcore.nn import FlopCountAnalysis

    kwargs = dict(call_kwargs or {})

    class _Call(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            return _strip(self.inner(*args, **kwargs))

    wrapper = _Call(module).train(module.training)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarning etc.: the count is what matters
        analysis = FlopCountAnalysis(wrapper, tuple(tensors))
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        total = analysis.total()
    if isinstance(total, float):
        assert total.is_integer(), total
        total = int(total)
    return total
