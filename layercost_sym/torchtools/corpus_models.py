"""The models of the corpus (:mod:`.corpus`): how each is built offline with random weights
and fed.

timm models come from ``timm.create_model(name, pretrained=False)`` at their
``pretrained_cfg["input_size"]``; transformers models from the small configs of
:data:`TRANSFORMERS` (no download).  A :class:`Subject` holds the built model, each input's
symbolic spec, the default sizes and the second sizes to check at.

>>> sorted(TRANSFORMERS)[:3]
['albert', 'bart', 'bert']
>>> Subject(None, {"": ("N", 3, "H", "W")}, {"N": 1, "H": 8, "W": 8}, []).default
{'N': 1, 'H': 8, 'W': 8}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LARGE_IMAGE", "TRANSFORMERS", "Subject", "build", "timm_params"]


@dataclass
class Subject:
    """A built model and how to feed it: each input's spec (``""``: positional), default
    sizes, candidate second sizes (first the model runs at is used), forward options."""

    model: Any
    specs: dict[str, tuple[int | str, ...]]
    default: dict[str, int]
    second: list[dict[str, int]]
    options: dict[str, Any] = field(default_factory=dict)
    vocab: int = 0  # inputs named *_ids are token ids below this

    def inputs(self, sizes: Mapping[str, int]) -> tuple[tuple, dict[str, Any]]:
        import torch

        generator = torch.Generator().manual_seed(0)
        positional: list[Any] = []
        keywords: dict[str, Any] = {}
        for key, spec in self.specs.items():
            shape = tuple(sizes[d] if isinstance(d, str) else d for d in spec)
            if key.endswith("_ids"):
                value = torch.randint(0, self.vocab, shape, generator=generator)
            else:
                value = torch.randn(shape, generator=generator)
            if key:
                keywords[key] = value
            else:
                positional.append(value)
        return tuple(positional), {**keywords, **self.options}


# -- building ------------------------------------------------------------------------------------

_LM = dict(
    vocab_size=100,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=64,
    max_position_embeddings=64,
    head_dim=8,
)
_ENCODER = dict(
    vocab_size=100,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=64,
)
_SEQ2SEQ = dict(
    vocab_size=100,
    d_model=32,
    encoder_layers=2,
    decoder_layers=2,
    encoder_attention_heads=4,
    decoder_attention_heads=4,
    encoder_ffn_dim=64,
    decoder_ffn_dim=64,
    max_position_embeddings=64,
)
_VISION = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    image_size=64,
    patch_size=16,
)

_GPT = dict(n_embd=32, n_layer=2, n_head=2, n_positions=64, vocab_size=100)
_MOE = dict(num_experts=4, moe_intermediate_size=32, shared_expert_intermediate_size=32)
_DISTIL = dict(dim=32, n_layers=2, n_heads=2, hidden_dim=64, vocab_size=100)
_T5 = dict(d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, vocab_size=100)
_WHISPER = dict(num_mel_bins=16, max_source_positions=32, max_target_positions=64)
_TOKENS = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
_SWIN = dict(image_size=64, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2])
_STAGES = dict(hidden_sizes=[16, 32], depths=[1, 1])

# name -> (config class, model class, config keywords, input kind); small sizes, built offline
TRANSFORMERS: dict[str, tuple[str, str, dict[str, Any], str]] = {
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", _GPT, "lm"),
    "gpt_neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM", _ENCODER, "lm"),
    "opt": ("OPTConfig", "OPTForCausalLM", {**_ENCODER, "ffn_dim": 64}, "lm"),
    "llama": ("LlamaConfig", "LlamaForCausalLM", _LM, "lm"),
    "mistral": ("MistralConfig", "MistralForCausalLM", _LM, "lm"),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", _LM, "lm"),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", _LM, "lm"),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", {**_LM, "pad_token_id": 0}, "lm"),
    "gemma": ("GemmaConfig", "GemmaForCausalLM", _LM, "lm"),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", _LM, "lm"),
    "falcon": ("FalconConfig", "FalconForCausalLM", _ENCODER, "lm"),
    "bloom": ("BloomConfig", "BloomForCausalLM", {**_ENCODER, "n_head": 2}, "lm"),
    "gptj": ("GPTJConfig", "GPTJForCausalLM", {**_GPT, "n_head": 4, "rotary_dim": 4}, "lm"),
    "phi": ("PhiConfig", "PhiForCausalLM", _ENCODER, "lm"),
    "stablelm": ("StableLmConfig", "StableLmForCausalLM", _LM, "lm"),
    "mixtral": ("MixtralConfig", "MixtralForCausalLM", {**_LM, "num_local_experts": 4}, "lm"),
    "qwen2_moe": ("Qwen2MoeConfig", "Qwen2MoeForCausalLM", {**_LM, **_MOE}, "lm"),
    "bert": ("BertConfig", "BertModel", _ENCODER, "lm"),
    "roberta": ("RobertaConfig", "RobertaModel", {**_ENCODER, "max_position_embeddings": 66}, "lm"),
    "deberta_v2": ("DebertaV2Config", "DebertaV2Model", _ENCODER, "lm"),
    "distilbert": ("DistilBertConfig", "DistilBertModel", {**_ENCODER, **_DISTIL}, "lm"),
    "albert": ("AlbertConfig", "AlbertModel", {**_ENCODER, "embedding_size": 16}, "lm"),
    "electra": ("ElectraConfig", "ElectraModel", {**_ENCODER, "embedding_size": 16}, "lm"),
    "t5": ("T5Config", "T5Model", _T5, "seq2seq"),
    "bart": ("BartConfig", "BartModel", _SEQ2SEQ, "seq2seq"),
    "whisper": ("WhisperConfig", "WhisperModel", {**_SEQ2SEQ, **_WHISPER, **_TOKENS}, "whisper"),
    "vit": ("ViTConfig", "ViTModel", _VISION, "image"),
    "clip_vision": ("CLIPVisionConfig", "CLIPVisionModel", _VISION, "image"),
    "swin": ("SwinConfig", "SwinModel", {**_SWIN, "window_size": 4}, "image"),
    "convnext": ("ConvNextConfig", "ConvNextModel", {**_STAGES, "num_stages": 2}, "image"),
    "resnet": ("ResNetConfig", "ResNetModel", {**_STAGES, "embedding_size": 16}, "image"),
}

_KINDS: dict[str, tuple[dict[str, tuple], dict[str, int], list[dict[str, int]]]] = {
    "lm": ({"input_ids": ("N", "L")}, {"N": 1, "L": 32}, [{"N": 2, "L": 13}]),
    "seq2seq": (
        {"input_ids": ("N", "L"), "decoder_input_ids": ("N", "T")},
        {"N": 1, "L": 32, "T": 16},
        [{"N": 2, "L": 13, "T": 7}],
    ),
    "whisper": (
        {"input_features": ("N", 16, "T"), "decoder_input_ids": ("N", "L")},
        {"N": 1, "T": 64, "L": 16},
        [{"N": 2, "T": 61, "L": 13}, {"N": 2, "T": 64, "L": 13}],
    ),
    "image": (
        {"pixel_values": ("N", 3, "H", "W")},
        {"N": 1, "H": 64, "W": 64},
        [{"N": 2, "H": 65, "W": 73}, {"N": 2, "H": 96, "W": 128}],
    ),
}


# a batch of two images at sides near a larger default holds twice its activations with their
# autograd graph (lc.count runs with grad): samvit_base_patch16 (1024 x 1024) peaks at 10 GB at
# batch one, and processes of such models died at batch two
LARGE_IMAGE = 512 * 512


def _image_subject(model: Any, channels: int, h: int, w: int, key: str = "") -> Subject:
    """An image model fed ``(N, channels, H, W)``: default ``1 x h x w``, then ``2 x`` odd
    non-square sides, then ``2 x`` multiples of 32, larger, then smaller (a model whose
    position tables are sized for its default runs below it only: mvitv2), then odd sides
    nearer the default (PiT's pooling accepts 224 to 231 only).  Above :data:`LARGE_IMAGE`
    pixels the batch of two is sized around the default's sides over ``sqrt(2)`` (rounded to
    32): about the default's pixels, so about its memory."""
    sh, sw = h, w
    if h * w > LARGE_IMAGE:
        sh, sw = (32 * max(1, round(side / math.sqrt(2) / 32)) for side in (h, w))
    odd_h, odd_w = sh + 1 - sh % 2, sw + 9 - sw % 2
    second = [{"N": 2, "H": odd_h, "W": odd_w}, {"N": 2, "H": sh + 32, "W": sw + 64}]
    if min(sh, sw) > 96:
        second.append({"N": 2, "H": sh - 32, "W": sw - 64})
    second.append({"N": 2, "H": odd_h, "W": odd_w - 6})
    return Subject(model, {key: ("N", channels, "H", "W")}, {"N": 1, "H": h, "W": w}, second)


def timm_params(name: str) -> int:
    """A timm model's parameter count, built on the meta device (no memory, no weights)."""
    import timm
    import torch

    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False)
    return sum(p.numel() for p in model.parameters())


def build(source: str, name: str) -> Subject:
    """The model ``name`` of ``source`` (``"timm"`` or ``"transformers"``) with random weights,
    in eval mode."""
    import torch

    torch.manual_seed(0)
    if source == "timm":
        import timm

        model: Any = timm.create_model(name, pretrained=False).eval()
        cfg: Mapping[str, Any] = getattr(model, "pretrained_cfg", None) or {}
        channels, h, w = cfg.get("input_size", (3, 224, 224))
        return _image_subject(model, channels, h, w)
    if source != "transformers":
        raise ValueError(f"source is 'timm' or 'transformers', got {source!r}")
    import transformers

    config_class, model_class, options, kind = TRANSFORMERS[name]
    config = getattr(transformers, config_class)(**options)
    model = getattr(transformers, model_class)(config).eval()
    specs, default, second = _KINDS[kind]
    call = {"use_cache": False} if kind != "image" else {}
    return Subject(model, dict(specs), dict(default), list(second), call, 100)
