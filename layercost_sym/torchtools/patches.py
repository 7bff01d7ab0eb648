"""Patches a trace of a model runs under: each one makes fake tensors take the path a real run
takes, or keeps a cost-neutral choice of torch's from recording a guard.

* :func:`generic_conv_backend`: convolution's kernel choice is not guarded on the batch.
* :func:`quiet_fake_tensor_log`: a failing operator is read and retried, never logged.
* :func:`math_sdpa`: scaled dot-product attention on its math path, which the counters see
  (also used by :func:`~layercost_sym.torchtools.count.count`).
* :func:`real_run_branches`: transformers' packed-sequence test answers as a real run does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch

__all__ = ["generic_conv_backend", "math_sdpa", "quiet_fake_tensor_log", "real_run_branches"]


@contextlib.contextmanager
def generic_conv_backend() -> Iterator[None]:
    """Fake convolution picks a memory format by asking which CPU kernel torch would run, and
    that choice guards on the batch size (``N < 16``); the cost does not depend on the kernel,
    so the trace asks for the plain one."""
    internals: Any = torch._C  # private, and not in torch's type stubs
    original = internals._select_conv_backend
    internals._select_conv_backend = lambda *a, **k: internals._ConvBackend.Slow2d
    try:
        yield
    finally:
        internals._select_conv_backend = original


@contextlib.contextmanager
def quiet_fake_tensor_log() -> Iterator[None]:
    """Fake tensors log a traceback for every operator that fails (``failed while attempting
    to run meta``); a failed trace is read and retried (:mod:`.pinning`), never printed."""
    import logging

    logger = logging.getLogger("torch._subclasses.fake_tensor")
    was = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = was


def math_sdpa() -> Any:
    """Scaled dot-product attention on its math backend (the fused CPU kernels count 0)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH)


@contextlib.contextmanager
def real_run_branches(call_kwargs: Mapping[str, Any]) -> Iterator[None]:
    """Make transformers take, on fake tensors, the branch a real run takes.

    transformers' mask code looks for packed sequences in the position ids
    (``masking_utils.find_packed_sequence_indices``: ``diff``, ``!= 1``, ``cumsum``) and, in a
    real run, drops the result when ``(mask[:, -1] == 0).all()`` -- no packing, so SDPA gets
    ``is_causal=True`` and no mask is built.  That test reads tensor values, so under fake
    tensors (its ``is_tracing`` check) it keeps the result, and the model then builds an
    explicit causal-and-packing mask a real run never computes.  Inside this scope the function
    runs its operators and the real run's test (so they are costed as the op counter counts
    them) and answers as the real run does for the position ids the model makes itself
    (``arange(L)`` per row: one sequence per row, never packed).  Position ids passed by the
    caller are not the model's own: the function is left alone then.
    """
    import sys

    masking: Any = sys.modules.get("transformers.masking_utils")
    original = getattr(masking, "find_packed_sequence_indices", None)
    if original is None or "position_ids" in call_kwargs:
        yield
        return

    def unpacked(position_ids: torch.Tensor) -> None:
        packed = original(position_ids)
        if packed is not None:
            _ = (packed[:, -1] == 0).all()  # the real run's test, costed; its answer: True
        return None

    masking.find_packed_sequence_indices = unpacked
    try:
        yield
    finally:
        masking.find_packed_sequence_indices = original
