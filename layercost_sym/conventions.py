"""The named cost conventions: what one "FLOP" means under each.

>>> from layercost_sym.conventions import CONVENTIONS
>>> sorted(CONVENTIONS)
['exact', 'fvcore', 'macs', 'ptflops', 'seed', 'thop', 'torch']
"""

from __future__ import annotations

__all__ = ["CONVENTIONS", "DEFAULT_CONVENTION", "DERIVED_CONVENTIONS"]

DEFAULT_CONVENTION = "exact"

CONVENTIONS: dict[str, str] = {
    "exact": (
        "every scalar add, subtract, multiply, divide, comparison and elementary function the "
        "layer performs (an n-term reduction is n-1 adds, a k-term dot product is k multiplies "
        "and k-1 adds, a bias add counts); decomposed layers count as torch's decomposition"
    ),
    "macs": (
        "multiply-accumulates of weighted sums (convolution, linear, matmul, attention, "
        "recurrent gates); 0 elsewhere"
    ),
    "torch": "2 x macs: FLOPs as torch.utils.flop_counter.FlopCounterMode reports them",
    "seed": "the formulas of the article the project grew from, verbatim, for the layers it covers",
    "fvcore": "fvcore's FlopCountAnalysis rule for the layer",
    "thop": "thop's profile rule for the layer",
    "ptflops": "ptflops' get_model_complexity_info rule for the layer (pytorch backend)",
}

# Conventions a rule never states itself: the loader derives them from another convention.
DERIVED_CONVENTIONS: dict[str, tuple[str, int]] = {"torch": ("macs", 2)}
