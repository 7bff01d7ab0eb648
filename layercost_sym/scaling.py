"""Architectures under budgets: training FLOPs of a composition, the width or depth that meets
a budget, and an iso-FLOP grid in the manner of Chinchilla's approach 2, each answer an exact
integer checked on both sides by the one search of :mod:`layercost_sym.inverse`.

>>> import layercost_sym as lc
>>> d = lc.symbols("d_model")
>>> lc.meets_budget("gpt", budget=10**8, vary="n_layer", d_model=768, n_head=12, d_ff=4 * d,
...                 vocab=50257, n_ctx=1024)    # 39385344 + 8 * 7087872 <= 10**8 (blocks)
8
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import sympy

from .domain import with_domain
from .errors import ArchitectureError, ConventionError, EvaluationError
from .evaluation import evaluate
from .inverse import exact_budget, exact_value, nondecreasing, search, univariate

__all__ = ["IsoFlopRow", "iso_flop", "meets_budget", "training_flops"]

_GRADIENT_FLAGS = ("rg", "gw", "rg_1", "rg_2", "rg_3", "go", "gh", "gc")


def training_flops(architecture: Any, convention: str = "torch") -> sympy.Expr:
    """FLOPs of one training step of a :class:`~layercost_sym.Cost` or an
    :class:`~layercost_sym.Architecture`: its forward plus its backward (quantity
    ``backward``), every parameter trained and every activation's gradient computed (the
    flags ``rg``, ``gw``, ``rg_1`` ... at 1), carrying its domain.

    Only under ``torch`` and ``macs``: there a model's backward is its parts' backward.  Under
    ``exact`` a whole model also adds the gradients that meet where one tensor feeds several
    calls (a residual stream, a tied head), which a composition does not see:
    ``lc.analyze(model, ..., backward=True)`` counts them.

    >>> import layercost_sym as lc
    >>> mlp = lc.rule("Linear").at(C_in=8, C_out=4, N=lc.symbols("N"), b=1)
    >>> lc.training_flops(mlp)                  # forward 2*8*4 N, input and weight grads 2x that
    192*N
    """
    if convention not in ("torch", "macs"):
        raise ConventionError(
            f"training FLOPs of a composition are stated under 'torch' and 'macs', not "
            f"{convention!r}: under 'exact' autograd's gradient sums are missing "
            "(lc.analyze(model, ..., backward=True) counts them)"
        )
    cost = getattr(architecture, "total", architecture)
    forward = cost.quantity("flops", convention)
    backward = cost.quantity("backward", convention)
    flags = {s: 1 for s in backward.free_symbols if s.name in _GRADIENT_FLAGS}
    total = sympy.expand(forward + backward.xreplace(flags))
    return with_domain(total, cost.domain)


def _hyperparameters(name: str, vary: str | None, fixed: Mapping[str, Any]) -> None:
    """Every numeric hyperparameter of ``name`` but ``vary`` has a value in ``fixed``."""
    from .zoo import _spec

    spec = _spec(name)
    numeric = [h.name for h in spec.hyperparameters if h.choices is None]
    if vary is not None and vary not in numeric:
        raise ArchitectureError(
            f"architecture {name!r} has no numeric hyperparameter {vary!r}: {', '.join(numeric)}"
        )
    if vary is not None and vary in fixed:
        raise ArchitectureError(f"{vary} is what varies: do not give it a value too")
    missing = [h for h in numeric if h != vary and h not in fixed]
    if missing:
        raise ArchitectureError(
            f"architecture {name!r}: give {', '.join(missing)} (only {vary or 'nothing'} varies)"
        )


def _at_value(values: Mapping[str, Any], symbol: sympy.Symbol, n: int) -> dict[str, Any]:
    """Hyperparameters with ``symbol`` replaced by ``n`` (``d_ff = 4 * d_model`` follows)."""
    out = {}
    for k, v in values.items():
        if isinstance(v, sympy.Basic) and symbol in v.free_symbols:
            v = v.xreplace({symbol: n})
            if not v.is_Integer:
                raise ArchitectureError(f"{k} = {values[k]} is not an integer at {symbol} = {n}")
            v = int(v)
        out[k] = v
    return out


def _resolved(values: Mapping[str, Any]) -> dict[str, Any]:
    """Hyperparameters given as expressions in others given as numbers, with those numbers
    put in (``d_ff = 4 * d_model`` beside ``d_model = 768``)."""
    numbers = {k: v for k, v in values.items() if not isinstance(v, sympy.Basic) or v.is_number}
    out = {}
    for k, v in values.items():
        if isinstance(v, sympy.Basic) and not v.is_number:
            v = v.xreplace({s: numbers[s.name] for s in v.free_symbols if s.name in numbers})
            v = int(v) if v.is_Integer else v
        out[k] = v
    return out


def meets_budget(
    architecture: str,
    quantity: str = "params",
    *,
    budget: Any,
    vary: str = "d_model",
    convention: str | None = None,
    at: Mapping[str, int] | None = None,
    low: int = 1,
    **fixed: Any,
) -> int | None:
    """The largest ``vary`` (a width ``d_model``, a depth ``n_layer``) of the reference
    architecture ``architecture`` whose ``quantity`` (under ``convention``; sizes such as the
    batch ``N`` at ``at``) is within ``budget``, the other hyperparameters at ``fixed`` (values,
    or expressions in ``vary``: ``d_ff=4 * d``).  An answer is a value the architecture takes:
    ``d_model`` a multiple of ``n_head``.  None when not even ``low`` fits.

    >>> import layercost_sym as lc
    >>> d = lc.symbols("d_model")
    >>> gpt = dict(n_layer=12, n_head=12, d_ff=4 * d, vocab=50257, n_ctx=1024)
    >>> lc.meets_budget("gpt", budget=124439808, **gpt)    # GPT-2 small's parameters
    768
    >>> lc.meets_budget("gpt", budget=124439807, **gpt)    # one fewer: the next multiple of 12
    756
    """
    from .zoo import architecture as build

    _hyperparameters(architecture, vary, fixed)
    fixed = _resolved(fixed)
    symbolic = build(architecture, **fixed)
    expr = symbolic.quantity(quantity, convention)
    sizes = dict(at or {})
    formula, s = univariate(expr, vary, sizes)
    value = exact_value(formula, s)

    def admissible(n: int) -> bool:
        # the architecture built at n (its own checks: n_head divides d_model), evaluated there
        try:
            concrete = build(architecture, **_at_value(fixed, s, n), **{vary: n})
            evaluate(concrete.quantity(quantity, convention), sizes, domain=concrete.domain)
        except (ArchitectureError, EvaluationError):
            return False
        return True

    proved = nondecreasing(formula, s, low)
    answer = search(
        value, exact_budget(budget), vary, admissible, low=low, limit=2**64, proved=proved
    )
    return answer.value


@dataclass(frozen=True)
class IsoFlopRow:
    """One model of an iso-FLOP grid: its ``hyperparameters``, ``params`` (every parameter),
    ``tokens`` (the most it trains on within the compute), ``flops`` (the training FLOPs of
    those tokens: ``tokens * per_token``, exact), ``per_token`` (training FLOPs per token from
    the architecture's formula) and ``six_nd`` (``6 * params * tokens``, the usual estimate)."""

    hyperparameters: dict[str, Any]
    params: int
    tokens: int
    flops: Fraction
    per_token: Fraction
    six_nd: int


def iso_flop(
    architecture: str,
    *,
    compute: Any,
    sizes: Sequence[Mapping[str, Any]],
    convention: str = "torch",
    **fixed: Any,
) -> list[IsoFlopRow]:
    """An iso-FLOP grid in the manner of Chinchilla's approach 2 (Hoffmann et al. 2022): for
    each model size (``sizes``: hyperparameters, with ``fixed`` for the ones they share; the
    context ``n_ctx`` among them), the tokens ``D`` that spend the training ``compute``:
    ``D * per_token <= compute < (D + 1) * per_token``, ``per_token`` from the
    architecture's own training FLOPs (:func:`training_flops`: forward plus backward of one
    sequence of ``n_ctx`` tokens, divided by ``n_ctx``), with ``6 N D`` beside it.

    >>> import layercost_sym as lc
    >>> rows = lc.iso_flop("gpt", compute=10**18, vocab=50257, n_ctx=1024,
    ...                    sizes=[dict(d_model=512, n_layer=8, n_head=8, d_ff=2048)])
    >>> r = rows[0]
    >>> r.params, r.per_token, r.tokens            # 10**18 // 355716096 tokens
    (51475968, Fraction(355716096, 1), 2811230673)
    >>> r.flops <= 10**18 < r.flops + r.per_token, r.six_nd < r.flops
    (True, True)
    """
    from .zoo import architecture as build

    compute_budget = exact_budget(compute)
    rows = []
    for size in sizes:
        hyper = _resolved({**fixed, **size})
        _hyperparameters(architecture, None, hyper)
        arch = build(architecture, **hyper)
        if "n_ctx" not in hyper:
            raise ArchitectureError(f"architecture {architecture!r} has no context n_ctx")
        flops = training_flops(arch, convention)
        batch = [t for t in flops.free_symbols if t.name == "N"]
        if flops.free_symbols - set(batch):
            raise ArchitectureError(f"the training FLOPs still depend on {flops.free_symbols}")
        # tokens are counted at a fractional batch: the cost must be proportional to it
        if not batch or sympy.expand(flops - batch[0] * flops.coeff(batch[0])) != 0:
            raise EvaluationError(f"the training FLOPs {flops} are not proportional to N")
        per_sequence = evaluate(flops, {"N": 1}, domain=arch.domain)
        per_token = Fraction(per_sequence, int(hyper["n_ctx"]))
        tokens = int(compute_budget // per_token)
        spent = tokens * per_token
        assert spent <= compute_budget < spent + per_token  # both sides of the answer
        params = int(evaluate(arch.params, {}, domain=arch.domain))
        rows.append(IsoFlopRow(dict(size), params, tokens, spent, per_token, 6 * params * tokens))
    return rows
