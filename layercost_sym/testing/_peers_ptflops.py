"""Run ptflops (pytorch backend) on one layer, as the ``ptflops`` convention tests do.

ptflops divides the sum of its module-hook counts (not its functional / tensor-op patches) by its
"batch counter": the length of the model's first positional input.  :func:`ptflops_count` calls
the layer through a keyword-only wrapper, so that counter is 1 and the number returned is the
layer's own count, undivided: the tool's number for any model whose first input has first
dimension 1 (ptflops' default input, built from ``input_res``).  :func:`ptflops_direct` runs the
tool on the bare module with one positional tensor, to show that division.
"""

from __future__ import annotations

import contextlib
import io

__all__ = ["ptflops_count", "ptflops_direct"]


def _run(model, constructor) -> int:
    from ptflops import get_model_complexity_info

    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        macs, _ = get_model_complexity_info(
            model,
            (1,),
            as_strings=False,
            print_per_layer_stat=False,
            backend="pytorch",
            input_constructor=constructor,
            ost=sink,
        )
    if macs is None:  # ptflops catches the exception, prints it and returns (None, None)
        raise RuntimeError(f"ptflops failed:\n{sink.getvalue()}")
    return macs


def ptflops_count(module, *tensors, **call_kwargs) -> int:
    """ptflops' MACs for ``module(*tensors, **call_kwargs)`` with the batch counter at 1."""
    import torch

    class _Call(torch.nn.Module):  # unknown to ptflops: it sums the hooked children
        def __init__(self):
            super().__init__()
            self.layer = module

        def forward(self, **inputs):
            return self.layer(*inputs.values(), **call_kwargs)

    inputs = {f"x{i}": t for i, t in enumerate(tensors)}
    return _run(_Call(), lambda _res: inputs)


def ptflops_direct(module, tensor) -> int:
    """ptflops' MACs for ``module(tensor)`` run as the model itself (batch counter len(tensor))."""
    return _run(module, lambda _res: tensor)
