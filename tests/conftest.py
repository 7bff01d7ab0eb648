"""Hypothesis profiles: ``ci`` (derandomised, no deadline, failure blobs printed) and ``dev``.

CI selects ``ci`` through the ``CI`` environment variable; ``HYPOTHESIS_PROFILE`` overrides.
"""

import os

import pytest
from hypothesis import HealthCheck, settings

# The modules under test are tiny: one intra-op thread per test process is fastest, and with
# pytest-xdist's workers sharing the cores, more threads only contend. Set before torch loads.
os.environ.setdefault("OMP_NUM_THREADS", "1")

settings.register_profile(
    "ci",
    max_examples=100,  # 200 took the whole CI run past 20 minutes on 2 cores
    deadline=None,
    print_blob=True,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=40, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@pytest.fixture
def small_causal_lm():
    """A factory: ``"gpt2"`` or ``"llama"`` -> a two-layer causal LM from a small config
    (width 32, 4 heads, LLaMA with 2 key/value heads, vocabulary 50), in eval mode."""
    import transformers

    def build(family: str):
        if family == "gpt2":
            config = transformers.GPT2Config(
                n_layer=2, n_embd=32, n_head=4, vocab_size=50, eos_token_id=0
            )
            return transformers.GPT2LMHeadModel(config).eval()
        config = transformers.LlamaConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=50,
        )
        return transformers.LlamaForCausalLM(config).eval()

    return build
