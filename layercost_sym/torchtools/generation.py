"""``generation``: a causal LM's text generation as closed forms: prefill, decode step, total.

A Hugging Face causal LM generates ``G`` tokens from a prompt of ``P`` as ``model.generate``
does (greedy, ``DynamicCache``): one **prefill** call on the ``P`` prompt tokens, whose logits
(``logits_to_keep=1``: the last position only) give the first new token, then ``G - 1``
**decode steps**, each feeding the last token with the cache of what came before.  The decode
step *at position* ``t`` feeds the token at (0-based) position ``t`` with ``t`` positions in
the cache; it attends ``t + 1`` keys (a sliding-window layer of window ``w`` keeps the last
``w - 1`` positions: ``min(t, w - 1) + 1`` keys).  The decode steps of one generation run at
``t = P, ..., P + G - 2``, and the total is

    total(N, P, G) = prefill(N, P) + sum_{t = P}^{P + G - 2} step(N, t)

summed by SymPy: a polynomial for a model with full attention.  Both calls get the inputs
``generate`` gives them (``position_ids``, ``use_cache=True``, ``logits_to_keep=1``).

Each call is traced by :func:`~layercost_sym.torchtools.tracing.analyze` through a small
wrapper module (its own operators, making position ids and the cache, are dropped: generate
makes them outside the model).  The decode wrapper gets the cache as inputs of shape
``(N, n_kv_head, t, head_dim)`` per layer, so that ``t`` is symbolic.  A trace takes one branch
of the model's shape tests (a mask skipped while the cache is shorter than the window, a full
sliding window); the guards say where each branch holds, and the traces are repeated at hints
below until every size from 1 is covered: a :class:`Piece` each, and a ``Piecewise`` in ``t``
(or ``P``) where there is more than one, each piece exact on its side.

The KV cache holds ``2 * N * n_kv_head * head_dim * element_size`` bytes per layer and cached
position (``min(t, w - 1)`` positions in a sliding-window layer), read off the model's own
cache after one real step (nothing per family); its peak is at the end of the generation, with
``P + G - 1`` positions processed.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, cast

import sympy
import torch

from ..domain import Condition, Domain, with_domain, without_domain
from ..domain import domain as domain_of
from ..errors import ShapeError, TraceError
from ..roofline import ChipLike
from .analysis import Analysis
from .tracing import _user_symbol, analyze

__all__ = ["Generation", "Piece", "generation"]

# traces a generation may take per call (a branch each) before it gives up
_MAX_PIECES = 8


@dataclass(frozen=True)
class Piece:
    """One branch of a call: its analysis and the sizes ``low <= size <= high`` (``high``
    None: unbounded) of the size symbol where it holds."""

    analysis: Analysis
    low: int
    high: int | None


@dataclass(frozen=True)
class CacheLayer:
    """One layer's KV cache: heads, head size, bytes an element, sliding window (or None)."""

    heads: int
    head_dim: int
    element_size: int
    window: int | None


class _Prefill(torch.nn.Module):
    """The prompt call as ``generate`` makes it: position ids ``0 .. P-1``, a new cache."""

    def __init__(self, model: torch.nn.Module, cache_name: str) -> None:
        super().__init__()
        self.model, self.cache_name = model, cache_name
        self.training = model.training  # analyze restores this mode, recursively

    def forward(self, input_ids: torch.Tensor) -> Any:
        from transformers import DynamicCache

        n, length = input_ids.shape
        input_ids = input_ids.long()  # traced as the float inputs analyze makes
        positions = torch.arange(length).unsqueeze(0).expand(n, -1).contiguous()
        cache = DynamicCache(config=cast(Any, self.model).config)
        kwargs = {self.cache_name: cache}
        return self.model(
            input_ids, position_ids=positions, use_cache=True, logits_to_keep=1, **kwargs
        ).logits


class _Decode(torch.nn.Module):
    """One decode step: the cache built from ``past`` (keys and values of each layer in turn);
    ``probe``'s length, where given, is the number of positions seen (a full sliding window
    stores fewer than that)."""

    def __init__(self, model: torch.nn.Module, cache_name: str) -> None:
        super().__init__()
        self.model, self.cache_name = model, cache_name
        self.training = model.training  # analyze restores this mode, recursively

    def forward(self, input_ids: torch.Tensor, *past: torch.Tensor, probe: Any = None) -> Any:
        from transformers import DynamicCache

        input_ids = input_ids.long()  # traced as the float inputs analyze makes
        seen = probe.shape[0] if probe is not None else past[0].shape[2]
        cache = DynamicCache(config=cast(Any, self.model).config)
        layer: Any
        for i, layer in enumerate(cache.layers):
            keys, values = past[2 * i], past[2 * i + 1]
            layer.lazy_initialization(keys, values)
            layer.keys, layer.values = keys, values
            if getattr(layer, "is_sliding", False):
                layer.cumulative_length = seen
        positions = (
            torch.arange(seen, seen + 1).unsqueeze(0).expand(input_ids.shape[0], -1).contiguous()
        )
        kwargs = {self.cache_name: cache}
        return self.model(
            input_ids, position_ids=positions, use_cache=True, logits_to_keep=1, **kwargs
        ).logits


def cache_argument(model: torch.nn.Module) -> str:
    """The name of the forward's cache argument (``cache`` in newer transformers, else
    ``past_key_values``)."""
    names = inspect.signature(model.forward).parameters
    return "cache" if "cache" in names else "past_key_values"


def cache_layers(model: torch.nn.Module) -> tuple[CacheLayer, ...]:
    """Each layer's KV cache, read from the cache a real two-token call fills."""
    from transformers import DynamicCache

    config = getattr(model, "config", None)
    if config is None or not hasattr(model, "generation_config"):
        raise TraceError(
            f"generation needs a Hugging Face causal LM (a model with .config that can "
            f"generate), got {type(model).__name__}"
        )
    cache = DynamicCache(config=config)
    with torch.no_grad():
        model(
            torch.zeros((1, 2), dtype=torch.long), use_cache=True, **{cache_argument(model): cache}
        )
    out = []
    layer: Any
    for layer in cache.layers:
        keys = layer.keys
        if keys is None or keys.dim() != 4:
            raise TraceError(f"{type(model).__name__}: a cache layer holds no (N, heads, t, d)")
        window = getattr(layer, "sliding_window", None) if getattr(layer, "is_sliding", 0) else None
        out.append(CacheLayer(int(keys.shape[1]), int(keys.shape[3]), keys.element_size(), window))
    return tuple(out)


def _kept(analysis: Analysis) -> Analysis:
    """``analysis`` without the wrapper's own calls (those outside the wrapped ``model``)."""
    layers = [layer for layer in analysis.layers if layer.name.startswith("model")]
    return dataclasses.replace(analysis, layers=layers)


def _interval(guards: Sequence[sympy.Basic], symbol: sympy.Symbol) -> tuple[int, int | None]:
    """The integers where every guard on ``symbol`` alone holds, as ``(low, high)``.

    >>> t = sympy.Symbol("t", integer=True, positive=True)
    >>> _interval([t < 8, -t - 1 > -7, t + 1 > 0], t), _interval([t >= 8], t)
    ((1, 5), (8, None))
    """
    x = sympy.Symbol("x", real=True)
    found = sympy.Interval(1, sympy.oo)
    for g in guards:
        if isinstance(g, sympy.Basic) and g.free_symbols == {symbol}:
            found = found & sympy.solveset(g.xreplace({symbol: x}), x, sympy.S.Reals)
    if isinstance(found, sympy.FiniteSet) and len(found) == 1:
        value = int(next(iter(found)))
        return value, value
    if not isinstance(found, sympy.Interval) or found.is_empty:
        raise TraceError(f"the guards on {symbol} are not one range: {found}")
    low = int(sympy.ceiling(found.inf)) + (1 if found.left_open and found.inf.is_integer else 0)
    if found.sup == sympy.oo:
        return low, None
    high = int(sympy.floor(found.sup)) - (1 if found.right_open and found.sup.is_integer else 0)
    return low, high


def _pieces(
    trace: Callable[[int | None], Analysis],
    symbol: sympy.Symbol,
    first: Piece | None = None,
    upto: int | None = None,
) -> tuple[Piece, ...]:
    """The branches of a call in ``symbol`` from 1: ``first`` (or the trace at the default
    hint), then traces at the first size not covered yet below it, each held where its guards
    hold, until every size from 1 to ``first.low - 1`` (or ``upto``) is covered.  Size 1 is a
    trace of its own (``trace(1)``: the size a number): torch traces symbolic sizes from 2 and
    decides a branch on a size of 1 without a guard (transformers' ``is_causal`` is
    ``q_len > 1``: a one-token prompt builds no causal mask)."""
    if first is None:
        a = trace(None)
        first = Piece(a, *_interval(a.guards, symbol))
    first = Piece(first.analysis, max(first.low, 2), first.high)
    end = first.low - 1 if upto is None else upto
    found: list[Piece] = []
    at = 1
    while at <= end:
        if len(found) >= _MAX_PIECES:
            raise TraceError(f"more than {_MAX_PIECES} branches in {symbol} below {end + 1}")
        if at == 1:
            found.append(Piece(trace(1), 1, 1))
            at = 2
            continue
        a = trace(at)
        low, high = _interval(a.guards, symbol)
        if low > at or (high is not None and high < at):
            raise TraceError(f"a trace at {symbol} = {at} holds on [{low}, {high}]")
        high = end if high is None else min(high, end)
        found.append(Piece(a, at, high))
        at = high + 1
    return (*found, first)


def _same(a: sympy.Expr, b: sympy.Expr, x: sympy.Symbol, low: int, high: int | None) -> bool:
    """Whether ``a`` and ``b`` agree for ``low <= x <= high``: at each size of a short range
    (a trace at one size may keep that size's value in a form of its own), else as formulas."""
    if high is not None and high - low < 64:
        return all(
            sympy.expand(a.xreplace({x: k}) - b.xreplace({x: k})) == 0 for k in range(low, high + 1)
        )
    return sympy.expand(a - b) == 0


def _merged(pieces: Sequence[tuple[sympy.Expr, int, int | None]], x: sympy.Symbol) -> list[list]:
    """Adjacent pieces joined where one's formula gives the other's values."""
    out: list[list] = []
    for expr, low, high in pieces:
        if out and _same(out[-1][0], expr, x, low, high):
            out[-1][2] = high
        elif out and _same(expr, out[-1][0], x, out[-1][1], out[-1][2]):
            out[-1] = [expr, out[-1][1], high]
        else:
            out.append([expr, low, high])
    return out


def _piecewise(pieces: Sequence[tuple[sympy.Expr, int, int | None]], x: sympy.Symbol) -> Any:
    """One expression of the pieces (ordered, covering 1 .. the last's high) in ``x``: a
    ``Min`` where the cost stops growing at a size, else a ``Piecewise``.

    >>> t = sympy.Symbol("t", integer=True, positive=True)
    >>> _piecewise([(4 * t, 1, 6), (2 * t + 14, 7, 7), (sympy.Integer(28), 8, None)], t)
    4*Min(7, t)
    >>> _piecewise([(4 * t, 1, 6), (sympy.Integer(30), 7, None)], t)
    Piecewise((4*t, t <= 6), (30, True))
    """
    merged = _merged(pieces, x)
    if len(merged) == 1:
        return merged[0][0]
    if len(merged) == 2 and merged[1][0].free_symbols.isdisjoint({x}):
        grows, flat = merged
        if sympy.expand(grows[0].xreplace({x: grows[2]}) - flat[0]) == 0:
            return grows[0].xreplace({x: sympy.Min(x, grows[2])})
    branches = [(expr, x <= high) for expr, _low, high in merged[:-1]]
    return sympy.Piecewise(*branches, (merged[-1][0], True))


def _parts(
    pieces: Sequence[Piece], quantity: str, convention: str | None
) -> list[tuple[sympy.Expr, int, int | None]]:
    """Each piece's ``quantity`` (rebuilt: without the piece's own domain), low, high."""
    out = []
    for p in pieces:
        expr = p.analysis.quantity(quantity, convention)
        out.append((without_domain(expr), p.low, p.high))
    return out


@dataclass(frozen=True)
class Generation:
    """Prefill, decode step and whole generation of one causal LM as closed forms in the batch
    ``N``, prompt ``P``, new tokens ``G`` and position ``t`` (see the module docstring)."""

    prefill: tuple[Piece, ...]  # in P
    decode: tuple[Piece, ...]  # in t
    cache: tuple[CacheLayer, ...]
    batch: sympy.Expr  # a symbol, or the number the traces were made at
    prompt: sympy.Symbol
    new: sympy.Symbol
    position: sympy.Symbol

    @property
    def params(self) -> sympy.Expr:
        return self.prefill[-1].analysis.params

    def prefill_cost(self, quantity: str = "flops", convention: str | None = None) -> Any:
        """The prompt call's ``quantity`` in ``N, P``."""
        parts = _parts(self.prefill, quantity, convention)
        domain = self._domain(self.prefill, False, quantity, convention)
        return with_domain(_piecewise(parts, self.prompt), domain)

    def step(self, quantity: str = "flops", convention: str | None = None) -> Any:
        """The decode step's ``quantity`` at position ``t`` (``t`` positions cached), in
        ``N, t``."""
        parts = _parts(self.decode, quantity, convention)
        domain = self._domain(self.decode, False, quantity, convention)
        return with_domain(_piecewise(parts, self.position), domain)

    def total(self, quantity: str = "flops", convention: str | None = None) -> Any:
        """Prefill plus the ``G - 1`` decode steps at ``t = P .. P + G - 2``, summed in closed
        form, in ``N, P, G``."""
        t, first, last = self.position, self.prompt, self.prompt + self.new - 2
        u, v = sympy.symbols("u v", integer=True)
        parts = _parts(self.decode, quantity, convention)
        sums = []
        merged = _merged(parts, t)
        for i, (expr, low, high) in enumerate(merged):
            summed = sympy.expand(sympy.summation(sympy.expand(expr), (t, u, v)))
            # the last piece runs to the last step (the domain bounds it), the others to
            # their end; the first starts at the first step
            start = first if low <= 1 else sympy.Max(first, low)
            stop = last if i == len(merged) - 1 else sympy.Min(last, high)
            value = summed.xreplace({u: start, v: stop})
            # an empty range sums to 0 (the polynomial at v = u - 1); further apart it is none
            exact = low <= 1 and i == len(merged) - 1
            sums.append(value if exact else sympy.Piecewise((value, start <= stop + 1), (0, True)))
        prefill = self.prefill_cost(quantity, convention)
        total = sympy.expand(sympy.Add(prefill, *sums))
        domain = self._domain(self.prefill, False, quantity, convention)
        return with_domain(total, domain & self._domain(self.decode, True, quantity, convention))

    def kv_cache(self) -> sympy.Expr:
        """Bytes the KV cache holds with ``t`` positions processed (keys and values of every
        layer; ``min(t, w - 1)`` positions in a sliding-window layer of window ``w``)."""
        n, t = self.batch, self.position
        total = sympy.Integer(0)
        for layer in self.cache:
            kept = t if layer.window is None else sympy.Min(t, layer.window - 1)
            total += 2 * n * layer.heads * layer.head_dim * layer.element_size * kept
        return total

    def kv_peak(self) -> sympy.Expr:
        """The KV cache's bytes at the end of the generation: ``P + G - 1`` positions (the last
        new token is never fed back)."""
        return self.kv_cache().xreplace({self.position: self.prompt + self.new - 1})

    def ttft(
        self,
        hardware: ChipLike | str,
        values: Mapping[str, int],
        *,
        dtype: str,
        bytes: str = "min",
    ) -> Fraction:
        """Time to first token on ``hardware``: the prefill's roofline time (seconds, exact) at
        ``values`` (``N``, ``P``)."""
        piece = self._piece(self.prefill, values, self.prompt.name)
        return piece.analysis.roofline(hardware, values, dtype=dtype, bytes=bytes).time

    def tpot(
        self,
        hardware: ChipLike | str,
        values: Mapping[str, int],
        *,
        dtype: str,
        bytes: str = "min",
    ) -> Fraction:
        """Time per output token on ``hardware``: the decode step's roofline time at ``values``
        (``N`` and the position ``t``)."""
        piece = self._piece(self.decode, values, self.position.name)
        names = {s.name for s in piece.analysis.symbols}
        given = {k: v for k, v in values.items() if k in names}
        return piece.analysis.roofline(hardware, given, dtype=dtype, bytes=bytes).time

    def _piece(self, pieces: Sequence[Piece], values: Mapping[str, int], name: str) -> Piece:
        if name not in values:
            raise ShapeError(f"missing value for {name}")
        at = values[name]
        for p in pieces:
            if p.low <= at and (p.high is None or at <= p.high):
                return p
        raise ShapeError(f"{name} = {at} is outside every traced branch")

    def _domain(
        self,
        pieces: Sequence[Piece],
        summed: bool,
        quantity: str = "flops",
        convention: str | None = None,
    ) -> Domain:
        """The pieces' guards on other symbols (with those ``quantity`` alone needs: the
        sizes an eager copy was traced at), and the range of sizes they cover (over the
        decode steps' range of ``t`` where ``summed``)."""
        symbol = self.position if pieces is self.decode else self.prompt
        ends = (self.prompt, self.prompt + self.new - 2)
        conditions = []
        for p in pieces:
            for c in domain_of(p.analysis.quantity(quantity, convention)).conditions:
                names = c.condition.free_symbols
                if symbol not in names or (not summed and names != {symbol}):
                    conditions.append(c)
                elif names != {symbol}:  # on t and other sizes: at both ends of the steps
                    for end in ends:
                        held = c.condition.xreplace({symbol: end})
                        conditions.append(dataclasses.replace(c, condition=held, text=str(held)))
        high = pieces[-1].high
        if high is not None:
            last = self.prompt + self.new - 2 if summed else symbol
            bound = sympy.Le(last, high)
            note = f"the traced branches hold up to {symbol} = {high}"
            conditions.append(Condition(bound, str(bound), note, "generation", kind="guard"))
        return Domain(tuple(dict.fromkeys(conditions)))


def generation(
    model: torch.nn.Module,
    *,
    batch: str | int = "N",
    prompt: str = "P",
    new: str = "G",
    position: str = "t",
    dtype: torch.dtype | None = None,
) -> Generation:
    """Trace ``model`` (a Hugging Face causal LM, eval mode) generating: its prefill at a
    symbolic prompt length and its decode step at a symbolic cache length (see the module
    docstring); every quantity and convention of the traces goes through
    :class:`Generation`.  ``batch`` may be a number: the traces at that batch (at 1, the
    eager bytes of copies that a batch of 1 makes views are known there)."""
    layers = cache_layers(model)
    name = cache_argument(model)
    floating = [p.dtype for p in model.parameters() if p.is_floating_point()]
    dtype = dtype or (floating[0] if floating else torch.float32)
    p, t = _user_symbol(prompt), _user_symbol(position)
    n = sympy.Integer(batch) if isinstance(batch, int) else _user_symbol(batch)

    # a hint of 1 traces that size as a number (see _pieces): the prompt and cache lengths'
    # size-1 branches are pieces of their own, so analyze's own check of them is not run
    def prefill(hint: int | None) -> Analysis:
        hints = {prompt: hint} if hint not in (None, 1) else None
        ids = (batch, 1 if hint == 1 else prompt)
        model_ = _Prefill(model, name)
        return _kept(analyze(model_, input_ids=ids, hints=hints, check_size_one=False))

    def past(full: bool, length: str | int = position) -> list[tuple[Any, ...]]:
        shapes: list[tuple[Any, ...]] = []
        for layer in layers:
            kept = layer.window - 1 if full and layer.window is not None else length
            shapes += [(batch, layer.heads, kept, layer.head_dim)] * 2
        return shapes

    def decode(hint: int | None) -> Analysis:
        hints = {position: hint} if hint not in (None, 1) else None
        cached = past(False, 1 if hint == 1 else position)
        step = _Decode(model, name)
        return _kept(
            analyze(step, (batch, 1), *cached, dtype=dtype, hints=hints, check_size_one=False)
        )

    windows = {layer.window for layer in layers if layer.window is not None}
    if len(windows) > 1:
        raise TraceError(f"sliding windows of several sizes: {sorted(windows)}")
    if windows:
        w = windows.pop()
        full = _kept(
            analyze(
                _Decode(model, name),
                (batch, 1),
                *past(True),
                dtype=dtype,
                probe=(position,),
                hints={position: w + 1},
                check_size_one=False,
            )
        )
        low, high = _interval(full.guards, t)
        if low != w:
            raise TraceError(f"a full sliding window of {w} traced on {position} >= {low}")
        steps = _pieces(decode, t, Piece(full, low, high))
    else:
        steps = _pieces(decode, t)
    return Generation(_pieces(prefill, p), steps, layers, n, p, _user_symbol(new), t)
