"""Every public class of torch.nn.modules has a rule, or a reasoned place in EXCLUDED."""

import inspect

import torch.nn as nn

import layercost_sym as lc
from layercost_sym.cache import catalogue

# One line of reason each. Losses are objectives, not layers of a model's forward pass.
EXCLUDED = {
    "Module": "base class of every layer; a model is analysed through its leaves",
    "Container": "deprecated alias of a container; no arithmetic of its own",
    "Sequential": "container: its cost is the sum of its children's",
    "ModuleList": "container of modules, never called itself",
    "ModuleDict": "container of modules, never called itself",
    "ParameterList": "container of parameters, never called",
    "ParameterDict": "container of parameters, never called",
    "Transformer": "container of TransformerEncoder/Decoder stacks: composed from their layers",
    "TransformerEncoder": "container of TransformerEncoderLayer (+ optional norm)",
    "TransformerDecoder": "container of TransformerDecoderLayer (+ optional norm)",
    "RNNBase": "abstract base of RNN, LSTM, GRU",
    "RNNCellBase": "abstract base of RNNCell, LSTMCell, GRUCell",
    "AdaptiveLogSoftmaxWithLoss": "a training objective (returns the loss); not a forward layer",
}
LOSS_SUFFIX = "Loss"  # every *Loss class (and NLLLoss2d): an objective, not a layer
LOSSES = {"NLLLoss2d"}


def public_module_classes():
    return sorted(
        name
        for name, cls in vars(nn.modules).items()
        if inspect.isclass(cls) and issubclass(cls, nn.Module) and not name.startswith("_")
    )


def test_every_torch_nn_module_has_a_rule_or_a_reason():
    by_module = catalogue().by_module
    missing = []
    for name in public_module_classes():
        if name in by_module or name in EXCLUDED:
            continue
        if name.endswith(LOSS_SUFFIX) or name in LOSSES:
            continue
        cls = getattr(nn, name)
        eager = getattr(cls, "cls_to_become", None)  # Lazy* turn into their eager class
        if name.startswith("Lazy") and eager is not None and eager.__name__ in by_module:
            continue
        missing.append(name)
    assert not missing, f"no rule and no exclusion for: {', '.join(missing)}"


def test_exclusions_are_short_reasoned_and_not_stale():
    for name, reason in EXCLUDED.items():
        assert hasattr(nn, name), f"{name} is no longer in torch.nn"
        assert name not in catalogue().by_module, f"{name} has a rule; drop its exclusion"
        assert 10 < len(reason) < 100


def test_lazy_modules_bind_after_materialising():
    conv = nn.LazyConv2d(4, 3)
    try:
        lc.bind(conv, (1, 2, 8, 8))
    except lc.UnknownRuleError as exc:
        assert "LazyConv2d is not materialised" in str(exc)
    else:  # pragma: no cover - must raise
        raise AssertionError("an unmaterialised lazy module bound")
    import torch

    conv(torch.zeros(1, 2, 8, 8))
    shape = (1, 2, 8, 8)  # the rule (variant) a plain Conv2d of these options binds
    assert lc.bind(conv, shape).rule is lc.bind(nn.Conv2d(2, 4, 3), shape).rule
