"""Patches a trace of a model runs under: each one makes fake tensors take the path a real run
takes, or keeps a cost-neutral choice of torch's from recording a guard.

* :func:`generic_conv_backend`: convolution's kernel choice is not guarded on the batch.
* :func:`resampling_by_sizes`: ``F.interpolate`` (to a size or by a scale factor) keeps the
  input sizes symbolic.
* :func:`recurrent_by_shapes`: a ruled LSTM, GRU or RNN makes its outputs at symbolic shapes.
* :func:`quiet_fake_tensor_log`: a failing operator is read and retried, never logged.
* :func:`math_sdpa`: scaled dot-product attention on its math path, which the counters see
  (also used by :func:`~layercost_sym.torchtools.count.count`).
* :func:`real_run_branches`: transformers' packed-sequence test answers as a real run does,
  and its padding check runs as in a real run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch

__all__ = [
    "generic_conv_backend",
    "math_sdpa",
    "quiet_fake_tensor_log",
    "real_run_branches",
    "recurrent_by_shapes",
    "resampling_by_sizes",
]


@contextlib.contextmanager
def _replaced(owner: Any, name: str, value: Any) -> Iterator[None]:
    """``owner.name`` is ``value`` inside this scope, and what it was again after."""
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


@contextlib.contextmanager
def generic_conv_backend() -> Iterator[None]:
    """Fake convolution picks a memory format by asking which CPU kernel torch would run, and
    that choice guards on the batch size (``N < 16``); the cost does not depend on the kernel,
    so the trace asks for the plain one."""
    internals: Any = torch._C  # private, and not in torch's type stubs
    plain = internals._ConvBackend.Slow2d
    with _replaced(internals, "_select_conv_backend", lambda *a, **k: plain):
        yield


# torch._C._nn's resampling entries F.interpolate calls (their ``.vec`` overloads): name ->
# (spatial dimensions, whether align_corners comes before the scale factors)
_RESAMPLERS = {
    "upsample_nearest1d": (1, False),
    "upsample_nearest2d": (2, False),
    "upsample_nearest3d": (3, False),
    "_upsample_nearest_exact1d": (1, False),
    "_upsample_nearest_exact2d": (2, False),
    "_upsample_nearest_exact3d": (3, False),
    "upsample_linear1d": (1, True),
    "upsample_bilinear2d": (2, True),
    "upsample_trilinear3d": (3, True),
    "upsample_bicubic2d": (2, True),
}


@contextlib.contextmanager
def resampling_by_sizes() -> Iterator[None]:
    """``F.interpolate`` calls ATen's ``upsample_*.vec``, whose C++ entry reads every input
    size as an int: torch specialises the batch, the channels and the sides to their trace
    sizes (an ``nn.Upsample(scale_factor=2)`` pins HRNet's ``N``, ``H`` and ``W``).  ``.vec``
    computes the output size and calls the ``.default`` overload, which takes symbolic sizes:
    the trace calls it with the same output size (``.vec``'s: the side times an integral scale
    factor, else the product truncated) and the same scales, as torch's own decomposition does
    (``torch._decomp``'s ``upsample_compute_output_size``)."""
    internals: Any = torch._C._nn  # private, and not in torch's type stubs
    with contextlib.ExitStack() as stack:
        for name, (dims, aligned) in _RESAMPLERS.items():
            by_sizes = _by_sizes(getattr(internals, name), name, dims, aligned)
            stack.enter_context(_replaced(internals, name, by_sizes))
        yield


def _by_sizes(original: Callable[..., Any], name: str, dims: int, aligned: bool) -> Callable:
    op = getattr(torch.ops.aten, name).default

    def call(x: Any, output_size: Any, *rest: Any) -> Any:
        align, scale_factors = (rest[:1], rest[1:]) if aligned else ((), rest)
        scales = scale_factors[0] if scale_factors else None
        if output_size is not None and scales is None:
            return op(x, list(output_size), *align)
        if output_size is None and scales is not None and len(scales) == dims:
            sides = [_scaled(x.shape[2 + i], float(s)) for i, s in enumerate(scales)]
            return op(x, sides, *align, *scales)
        return original(x, output_size, *rest)

    return call


def _scaled(side: Any, scale: float) -> Any:
    """``.vec``'s output side: ``side * scale``, truncated (exact for an integral scale)."""
    return side * int(scale) if scale.is_integer() else torch.sym_int(side * scale)


@contextlib.contextmanager
def recurrent_by_shapes(costed_by_rule: Callable[[], bool]) -> Iterator[None]:
    """``nn.LSTM``, ``nn.GRU`` and ``nn.RNN`` call one fused ATen operator whose C++ entry
    reads every size as an int (``Cannot call numel() on tensor with symbolic sizes``), so no
    symbolic trace went through them.  Where the call is inside a module a rule costs
    (``costed_by_rule()``: the recurrent module's own rule, or an enclosing one), its operators
    are not costed anyway: the outputs are made at the shapes the kernel gives, tied to the
    input, the initial state and the weights so that autograd sees what it would (the rule
    states the backward).  Elsewhere the kernel runs as it is."""
    from torch import _VF

    def by_shapes(original: Any) -> Any:
        def call(*args: Any) -> Any:
            if not costed_by_rule():
                return original(*args)
            # packed sequences: (data, batch_sizes, hx, weights, bias, layers, dropout,
            # training, bidirectional); else (input, hx, weights, ..., bidirectional, batch_first)
            packed = isinstance(args[1], torch.Tensor) and not args[1].is_floating_point()
            x, hx, weights = args[0], args[2 if packed else 1], args[3 if packed else 2]
            directions = 2 if args[8 if packed else 7] else 1
            states = list(hx) if isinstance(hx, (list, tuple)) else [hx]
            tied = sum((t.sum() for t in [x, *states, *weights] if t.is_floating_point()), 0)
            zero = tied * 0
            out = x.new_zeros((*x.shape[:-1], directions * states[0].shape[-1])) + zero
            return (out, *(state.new_zeros(state.shape) + zero for state in states))

        return call

    with contextlib.ExitStack() as stack:
        for name in ("lstm", "gru", "rnn_tanh", "rnn_relu"):
            stack.enter_context(_replaced(_VF, name, by_shapes(getattr(_VF, name))))
        yield


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
    """Make transformers take, on fake tensors, the branches a real run takes, with the
    operators of the real run's tests costed as the op counter counts them.  transformers
    reads tensor values in a few places and, under fake tensors (its ``is_tracing`` check),
    takes the branch that does not read them; a real run without an attention mask or
    position ids from the caller always answers the same way, and that answer is given here:

    * packed sequences (:func:`_unpacked`): none, so SDPA gets ``is_causal=True``;
    * the padding mask a model makes itself from ``ones`` (:func:`_own_masks_skipped`): no
      token is padding, so no explicit mask is built where a real run builds none;
    * the padding warning's look for the pad token (:func:`_padding_check`): runs, answer unused.
    """
    with contextlib.ExitStack() as stack:
        stack.enter_context(_unpacked(call_kwargs))
        stack.enter_context(_own_masks_skipped(call_kwargs))
        stack.enter_context(_padding_check())
        yield


def _masking() -> Any:
    import sys

    return sys.modules.get("transformers.masking_utils")


@contextlib.contextmanager
def _unpacked(call_kwargs: Mapping[str, Any]) -> Iterator[None]:
    """transformers' mask code looks for packed sequences in the position ids
    (``masking_utils.find_packed_sequence_indices``: ``diff``, ``!= 1``, ``cumsum``) and, in a
    real run, drops the result when ``(mask[:, -1] == 0).all()`` -- no packing, so SDPA gets
    ``is_causal=True`` and no mask is built.  Under fake tensors it keeps the result, and the
    model then builds an explicit causal-and-packing mask a real run never computes.  Here the
    function runs its operators and the real run's test and answers as the real run does for
    the position ids the model makes itself (``arange(L)`` per row: one sequence per row,
    never packed).  Position ids passed by the caller are not the model's own: the function is
    left alone then."""
    masking = _masking()
    original = getattr(masking, "find_packed_sequence_indices", None)
    if original is None or "position_ids" in call_kwargs:
        yield
        return

    def unpacked(position_ids: torch.Tensor) -> None:
        packed = original(position_ids)
        if packed is not None:
            _ = (packed[:, -1] == 0).all()  # the real run's test, costed; its answer: True
        return None

    with _replaced(masking, "find_packed_sequence_indices", unpacked):
        yield


@contextlib.contextmanager
def _own_masks_skipped(call_kwargs: Mapping[str, Any]) -> Iterator[None]:
    """A decoder given no attention mask makes one of ``ones`` (BART's ``torch.ones(N, T)``)
    and asks ``_ignore_causal_mask_sdpa`` whether SDPA's ``is_causal`` can replace it: a real
    run reads the mask (``fast_all``: a ``sum`` and an ``eq``), finds no padding and builds no
    mask wherever the query and key lengths are equal or the query is one token; under fake
    tensors the function answers "build it".  Here, when the caller passed no attention mask
    (so every padding mask is the model's own ``ones``), the function costs the real run's test
    and answers as the real run does in those cases; elsewhere (a cache longer than the query,
    a sliding window reached, a mask from the caller) it is left to decide."""
    masking = _masking()
    original = getattr(masking, "_ignore_causal_mask_sdpa", None)
    if original is None or any("attention_mask" in key for key in call_kwargs):
        yield
        return

    def skipped(
        padding_mask: Any,
        q_length: Any,
        kv_length: Any,
        q_offset: Any,
        kv_offset: Any,
        local_attention_size: Any = None,
    ) -> bool:
        args = (padding_mask, q_length, kv_length, q_offset, kv_offset, local_attention_size)
        fake = isinstance(padding_mask, torch._subclasses.fake_tensor.FakeTensor)
        windowed = local_attention_size is not None and kv_length >= local_attention_size
        if not fake or windowed or not (q_length == 1 or kv_length == q_length):
            return bool(original(*args))
        if padding_mask.shape[-1] > kv_length:  # as the original: the keys' columns only
            columns = torch.arange(kv_length, device=padding_mask.device) + kv_offset
            padding_mask = padding_mask[:, columns]
        _ = padding_mask.sum() == padding_mask.numel()  # fast_all, costed; on ones: True
        return True

    with _replaced(masking, "_ignore_causal_mask_sdpa", skipped):
        yield


@contextlib.contextmanager
def _padding_check() -> Iterator[None]:
    """transformers' ``warn_if_padding_and_no_attention_mask`` looks for the pad token in the
    first and last token ids of every row (``pad_token_id in input_ids[:, [-1, 0]]``: an ``eq``
    of ``2N`` elements and an ``any``) on each forward without an attention mask, and skips
    that under tracing (``is_tracing``).  Inside this scope it runs the real run's operators,
    so they are costed as the op counter counts them; what it does with the answer is a
    warning, no tensor work."""
    import sys

    utils: Any = sys.modules.get("transformers.modeling_utils")
    owner: Any = getattr(utils, "PreTrainedModel", None)
    original = getattr(owner, "warn_if_padding_and_no_attention_mask", None)
    if original is None:
        yield
        return

    def check(self: Any, input_ids: Any, attention_mask: Any) -> None:
        pad = self.config.pad_token_id
        if attention_mask is None and pad is not None and isinstance(input_ids, torch.Tensor):
            _ = (input_ids[:, [-1, 0]] == pad).any()  # Tensor.__contains__, answer unused

    with _replaced(owner, "warn_if_padding_and_no_attention_mask", check):
        yield
