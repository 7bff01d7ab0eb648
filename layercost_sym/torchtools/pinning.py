"""What :func:`~layercost_sym.torchtools.tracing.analyze` does when a trace fails.

A model may refuse to run with a dimension left symbolic: its code asserts a size
(torchvision's ViT: ``Wrong image height! Expected 224``), torch needs a concrete int
(``F.pad`` by a size-dependent amount), a ``view`` needs a size divisible by a window, a table
of positions is shorter than the trace size, or token ids reach an embedding as floats.
:func:`next_settings` reads the failure (its message, the operator that raised it, the
innermost frame of the model's code) and says what the next trace changes:

* an input that an embedding looks up is made integer (``torch.long``);
* a dimension whose trace size exceeds a length the model states (``expand ... of length
  128 -> L``) is traced below it;
* a dimension the model wants divisible by ``m`` (``should be divisible by patch size (16)``)
  is traced at a multiple of ``m``, still symbolic; an image side where two sizes the model
  joins differ at the trace size (a residual add) at a multiple of 32, before it is pinned;
* otherwise the dimensions the failure names are pinned (traced as ints), the batch dimension
  last: to the value the caller's ``hints`` give, else the image size the model states
  (``image_size``, ``img_size``, timm's ``pretrained_cfg["input_size"]``), else a number the
  model's assertion names, else 224 for an image's sides (a multiple of every common stride,
  patch and window), else the trace size.  Each pin is a guard ``H == 224`` whose note names
  the model code that forced it.

When nothing is left to change, :class:`~layercost_sym.errors.TraceError` says in one line what
failed and what to try.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = [
    "Failure",
    "Settings",
    "describe",
    "next_settings",
    "raised_here",
    "sequence_limit",
    "stated_size",
    "symbols_in",
    "untraceable",
]

# A pinned side of an image with no size stated by the model: ImageNet's 224 = 2**5 * 7, a
# multiple of every common stride (32), patch (14, 16) and window (7) size.
IMAGE_SIDE = 224

_BATCH_NAMES = ("N", "B")
_TORCH_SYMBOL = re.compile(r"\b[su]\d+\b")
_NUMBER = re.compile(r"(?<![\w.])\d+(?![\w.])")
_CPP_PREFIX = re.compile(r"^\S+\.(?:cpp|h|cu):\d+: ")
_EMBEDDING_DTYPE = re.compile(r"'indices'.*(?:scalar type|must be)", re.S)
# a trace size beyond a table the model has: (the size, the table's length)
_LIMITS = (
    re.compile(r"expand a dimension of length (\d+) -> ([su]\d+)"),  # (length, size)
    re.compile(
        r"expanded size of the tensor \(([su]?\d+)\) must match the existing size \((\d+)\)"
    ),
    re.compile(r"size of tensor a \(([su]?\d+)\) must match the size of tensor b \((\d+)\)"),
)
_DIVISIBLE = re.compile(r"divisible|multiple of", re.I)
# two sizes the model joins (a residual add) differ at the trace sizes: sizes a model accepts
# are often multiples of its total stride (an anti-aliased ResNet's two downsampling paths agree
# at 224, 225, 256, not at 227, 232, 240)
_MISMATCH = re.compile(r"Attempting to broadcast a dimension|must match the size of tensor")
_STRIDE = 32


@dataclass
class Settings:
    """How one trace is made: trace sizes, pinned dimensions, inputs made integer."""

    pinned: dict[str, tuple[int, str]] = field(default_factory=dict)  # symbol -> (value, note)
    integer_inputs: set[int] = field(default_factory=set)  # input positions made torch.long
    multiples: dict[str, int] = field(default_factory=dict)  # symbol -> trace at a multiple
    limits: dict[str, int] = field(default_factory=dict)  # symbol -> trace below this


@dataclass
class Failure:
    """A failed trace, read: what it says, where, and which input dimensions it names."""

    error: BaseException
    message: str  # the error's first line, torch's size symbols renamed to the caller's
    where: str  # "torchvision/models/vision_transformer.py:271" ("" when not in model code)
    code: str  # the source line there
    dims: list[str]  # the caller's dimension names the failure mentions
    numbers: list[int]  # integers in the message
    embedded_input: int | None = None  # an input the failing embedding looked up as floats
    embedding_dtype: bool = False
    names: dict[str, str] = field(default_factory=dict)  # torch's size symbol -> the caller's
    # raised by the model's own code (an assertion, a ValueError), not inside torch
    by_model: bool = False


def _relative(filename: str) -> str:
    """``filename`` relative to the import root it was loaded from (never absolute)."""
    roots = [os.path.abspath(p or os.getcwd()) for p in sys.path if isinstance(p, str)]
    roots = [r for r in roots if filename.startswith(r + os.sep)]
    if roots:
        return os.path.relpath(filename, max(roots, key=len)).replace(os.sep, "/")
    return os.path.basename(filename)


def _is_model_code(filename: str) -> bool:
    """Whether a frame's file is the model's code: not torch's, not this package's, not
    Python's own library (site-packages are model code: torchvision, timm, transformers)."""
    import sysconfig

    if filename.startswith("<"):
        return False
    path = os.path.abspath(filename)
    paths = sysconfig.get_paths()
    packages = tuple(os.path.abspath(paths[k]) + os.sep for k in ("purelib", "platlib"))
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # layercost_sym/
    torch_dir = os.path.dirname(os.path.abspath(torch.__file__))
    if path.startswith((torch_dir + os.sep, here + os.sep)):
        return False
    stdlib = os.path.abspath(paths["stdlib"]) + os.sep
    return path.startswith(packages) or not path.startswith(stdlib)


def raised_here(error: BaseException) -> bool:
    """Whether ``error`` was raised by this package's own code (a fault to show, not a model
    to pin)."""
    frames = traceback.extract_tb(error.__traceback__)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    return bool(frames) and os.path.abspath(frames[-1].filename).startswith(here)


def _raised_in_model_code(error: BaseException) -> bool:
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and _is_model_code(frames[-1].filename)


def _model_frame(error: BaseException) -> traceback.FrameSummary | None:
    """The innermost frame of the failure in the model's own code."""
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        if _is_model_code(frame.filename):
            return frame
    return None


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[0] if lines else ""
    return _CPP_PREFIX.sub("", line)


def symbols_in(value: Any) -> set[str]:
    """Names of torch's size symbols in the SymInts of ``value`` (nested lists, tensors' shapes
    excluded)."""
    found: set[str] = set()
    if isinstance(value, torch.SymInt):
        found |= {str(s) for s in value.node.expr.free_symbols}
    elif isinstance(value, list | tuple):
        for item in value:
            found |= symbols_in(item)
    return found


def describe(
    error: BaseException,
    names: Mapping[str, str],
    failed_op: tuple[str, tuple, dict] | None,
    inputs: Sequence[Any],
) -> Failure:
    """Read a failed trace.  ``names``: torch's size symbol -> the caller's name;
    ``failed_op``: ``(operator, args, kwargs)`` of the innermost operator that raised it;
    ``inputs``: the fake input tensors, by position."""
    text = str(error) or type(error).__name__

    def rename(match: re.Match) -> str:
        return names.get(match.group(0), match.group(0))

    raw = _first_line(text)
    message = _TORCH_SYMBOL.sub(rename, raw)
    mentioned = {names[s] for s in _TORCH_SYMBOL.findall(text) if s in names}
    embedded = None
    embedding_dtype = bool(_EMBEDDING_DTYPE.search(text))
    if failed_op is not None:
        op, args, kwargs = failed_op
        for arg in [*args, *kwargs.values()]:
            if not isinstance(arg, torch.Tensor):
                mentioned |= {names[s] for s in symbols_in(arg) if s in names}
        if op == "embedding" and len(args) > 1 and isinstance(args[1], torch.Tensor):
            embedding_dtype = embedding_dtype or args[1].is_floating_point()
            indices = args[1]
            for position, x in enumerate(inputs):
                if indices is x or getattr(indices, "_base", None) is x:
                    embedded = position
    frame = _model_frame(error)
    where = f"{_relative(frame.filename)}:{frame.lineno}" if frame is not None else ""
    order = list(dict.fromkeys(names.values()))
    return Failure(
        error,
        message,
        where,
        (frame.line or "").strip() if frame is not None else "",
        [n for n in order if n in mentioned],
        [int(x) for x in _NUMBER.findall(raw)],
        embedded,
        embedding_dtype,
        dict(names),
        isinstance(error, AssertionError) or _raised_in_model_code(error),
    )


def _sizes(value: Any) -> tuple[int, ...] | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    if isinstance(value, tuple | list) and value and all(isinstance(v, int) for v in value):
        return tuple(value)
    return None


def stated_size(model: torch.nn.Module) -> tuple[int, ...] | None:
    """The input image size a model states (torchvision's ``image_size``, timm's ``img_size``
    or ``pretrained_cfg["input_size"]``, a transformers config's ``image_size``), sides last;
    None if it states none.

    >>> import torch
    >>> m = torch.nn.Identity(); m.image_size = 224
    >>> stated_size(m)
    (224,)
    """
    for module in model.modules():
        for attr in ("image_size", "img_size"):
            if (size := _sizes(getattr(module, attr, None))) is not None:
                return size
        config = getattr(module, "config", None)
        if (size := _sizes(getattr(config, "image_size", None))) is not None:
            return size
    # timm's pretrained_cfg states the pretrained weights' size: a model built with another
    # img_size states that one in its modules (above)
    for module in model.modules():
        cfg = getattr(module, "pretrained_cfg", None)
        if isinstance(cfg, Mapping) and (size := _sizes(cfg.get("input_size"))) is not None:
            return size
    return None


def sequence_limit(model: torch.nn.Module) -> int | None:
    """The longest sequence a transformers model's config states (``max_position_embeddings``,
    ``n_positions``), or None.

    >>> import types, torch
    >>> m = torch.nn.Identity(); m.config = types.SimpleNamespace(max_position_embeddings=128)
    >>> sequence_limit(m)
    128
    """
    config = getattr(model, "config", None)
    stated = [
        getattr(config, attr, None)
        for attr in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length")
    ]
    limits = [v for v in stated if isinstance(v, int) and not isinstance(v, bool) and v > 2]
    return min(limits) if limits else None


def _is_image_side(name: str, specs: Sequence[Sequence[Any]], integer: set[int]) -> bool:
    """Whether ``name`` is a trailing dimension (2 on) of a floating-point input of rank >= 3
    (an image's or a signal's side)."""
    return any(
        position not in integer and len(spec) >= 3 and name in spec[2:]
        for position, spec in enumerate(specs)
    )


def _is_batch(name: str, specs: Sequence[Sequence[Any]]) -> bool:
    return name in _BATCH_NAMES or any(len(spec) >= 2 and spec[0] == name for spec in specs)


def _pin_value(
    name: str,
    failure: Failure,
    specs: Sequence[Sequence[Any]],
    settings: Settings,
    user_hints: Mapping[str, int],
    model: torch.nn.Module,
    traced: Mapping[str, int],
) -> int:
    if name in user_hints:
        return user_hints[name]
    side = _is_image_side(name, specs, settings.integer_inputs)
    if side:
        size = stated_size(model)
        for spec in specs:
            if size is not None and name in spec[2:]:
                sides = list(spec[2:])
                if len(size) == 1:
                    return size[0]
                if len(size) >= len(sides):
                    return size[len(size) - len(sides) + sides.index(name)]
    named = [n for n in dict.fromkeys(failure.numbers) if n >= 2 and n not in traced.values()]
    if failure.by_model and len(named) == 1 and len(failure.dims) == 1:
        return named[0]
    return IMAGE_SIDE if side else traced[name]


def _note(failure: Failure, names: Sequence[str]) -> str:
    """Where the pin of ``names`` comes from: the model's code and what it said."""
    where = f"{failure.where}: " if failure.where else ""
    if failure.by_model:  # the model's own words
        said = failure.message
        if failure.code and said == type(failure.error).__name__:  # a bare assert: its line
            said = f"{failure.code} ({said})"
        return f"{where}{said}"
    code = f"{failure.code} " if failure.code else ""
    dims = ", ".join(names)
    return f"{where}{code}fails with {dims} symbolic (torch: {_short(failure.message, 100)})"


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _limit(
    text: str, names: Mapping[str, str], traced: Mapping[str, int]
) -> tuple[str, int] | None:
    """``(dimension, table length)`` when ``text`` says a dimension's trace size exceeds a
    table of the model (BERT's 128 positions: ``expand a dimension of length 128 -> s49``)."""
    for number, pattern in enumerate(_LIMITS):
        match = pattern.search(text)
        if match is None:
            continue
        size, length = (match.group(2), match.group(1)) if number == 0 else match.groups()
        by_size = [n for n, v in traced.items() if str(v) == size]
        name = names.get(size) or (by_size[0] if len(by_size) == 1 else None)
        if name is not None and name in traced and int(length) < traced[name]:
            return name, int(length)
    return None


def next_settings(
    failure: Failure,
    settings: Settings,
    specs: Sequence[Sequence[Any]],
    user_hints: Mapping[str, int],
    model: torch.nn.Module,
    traced: Mapping[str, int],
) -> Settings | None:
    """The settings of the next trace after ``failure``, or None when nothing is left to try.
    ``specs``: every input's dimensions (ints and names, pinned ones as names);
    ``traced``: each symbolic dimension's trace size in the failed trace."""
    if failure.embedding_dtype:
        if failure.embedded_input is None or failure.embedded_input in settings.integer_inputs:
            return None
        return _replace(settings, integer_inputs={*settings.integer_inputs, failure.embedded_input})
    symbolic = [n for n in traced if n not in settings.pinned]
    dims = [n for n in failure.dims if n in symbolic]
    limit = _limit(str(failure.error), failure.names, traced)
    if limit is not None and limit[0] in symbolic:
        return _replace(settings, limits={**settings.limits, limit[0]: limit[1]})
    if _DIVISIBLE.search(failure.message) and dims:
        factors = [n for n in failure.numbers if n >= 2]
        fresh = [n for n in dims if n not in settings.multiples]
        if factors and fresh:
            return _replace(
                settings, multiples={**settings.multiples, **dict.fromkeys(fresh, factors[-1])}
            )
    sides = [n for n in dims if _is_image_side(n, specs, settings.integer_inputs)]
    if _MISMATCH.search(failure.message) and sides:
        fresh = [n for n in sides if n not in settings.multiples]
        if fresh:  # first at multiples of the common total stride, then pinned
            return _replace(
                settings, multiples={**settings.multiples, **dict.fromkeys(fresh, _STRIDE)}
            )
    if not dims:  # the failure names no dimension: pin the sides of images, then the rest
        dims = [n for n in symbolic if _is_image_side(n, specs, settings.integer_inputs)]
        dims = dims or [n for n in symbolic if not _is_batch(n, specs)] or symbolic
    if not dims:
        return None
    # keep the batch symbolic while anything else can be pinned
    chosen = [n for n in dims if not _is_batch(n, specs)] or dims
    text = _note(failure, chosen)
    pinned = dict(settings.pinned)
    for name in chosen:
        value = _pin_value(name, failure, specs, settings, user_hints, model, traced)
        pinned[name] = (value, text)
    return _replace(settings, pinned=pinned)


def _replace(settings: Settings, **changes: Any) -> Settings:
    """A copy of ``settings`` (its tables copied too) with ``changes``."""
    copied = Settings(
        dict(settings.pinned),
        set(settings.integer_inputs),
        dict(settings.multiples),
        dict(settings.limits),
    )
    return dataclasses.replace(copied, **changes)


def untraceable(
    model: torch.nn.Module,
    failure: Failure,
    settings: Settings,
    specs: Sequence[Sequence[Any]],
    messages: Sequence[str],
) -> str:
    """The one-line message of :class:`~layercost_sym.errors.TraceError`: what failed, where,
    what was tried, and what to try."""
    where = f" ({failure.where})" if failure.where else ""
    tried = ""
    if settings.pinned:
        pins = ", ".join(f"{n} = {v}" for n, (v, _) in settings.pinned.items())
        tried = f" with {pins} pinned"
    text = f"cannot trace {type(model).__name__}{tried}: {_short(failure.message)}{where}"
    if len(set(messages)) > 1:
        text += f" (after {len(messages) - 1} retraces)"
    if failure.embedding_dtype:
        return f"{text}; token ids: pass dtype=torch.long (CLI: --dtype long)"
    size = stated_size(model)
    states = f"; it states {' x '.join(map(str, size))}" if size else ""
    advice = f"{text}; try sizes the model accepts as ints (concrete --input sizes{states})"
    named = [n for n in [*failure.dims, *settings.pinned] if not _is_batch(n, specs)]
    if named:  # dimensions the failure is about: trace sizes to try for them
        advice += (
            f", or trace sizes it accepts: hints={{{named[0]!r}: ...}} (CLI: --hint {named[0]}=...)"
        )
    return advice
