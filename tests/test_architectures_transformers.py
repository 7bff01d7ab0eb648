"""Bridges: the transformer reference architectures equal ``lc.analyze`` of the transformers
models they mirror, for the parameters and every convention (exact, macs, torch, fvcore, thop,
ptflops): GPT-2 and BERT at their default configurations, a small grouped-query Llama, and
small models of all three drawn by Hypothesis."""

import functools
import re

import pytest
import sympy
import torch
import transformers  # a test dependency (pyproject's test extra): never skipped
from hypothesis import given, settings
from hypothesis import strategies as st

import layercost_sym as lc

N_CTX = lc.symbols("n_ctx")
BATCH = lc.symbols("N")


def _gpt2(hp: dict) -> torch.nn.Module:
    config = transformers.GPT2Config(
        n_embd=hp["d_model"],
        n_layer=hp["n_layer"],
        n_head=hp["n_head"],
        n_inner=hp["d_ff"],
        vocab_size=hp["vocab"],
        n_positions=hp["n_ctx"],
        bos_token_id=0,  # inside small vocabularies (the default 50256 draws a warning)
        eos_token_id=0,
    )
    return transformers.GPT2LMHeadModel(config).eval()


def _bert(hp: dict) -> torch.nn.Module:
    config = transformers.BertConfig(
        hidden_size=hp["d_model"],
        num_hidden_layers=hp["n_layer"],
        num_attention_heads=hp["n_head"],
        intermediate_size=hp["d_ff"],
        vocab_size=hp["vocab"],
        max_position_embeddings=hp["n_ctx"],
    )
    return transformers.BertModel(config).eval()


def _llama(hp: dict) -> torch.nn.Module:
    config = transformers.LlamaConfig(
        hidden_size=hp["d_model"],
        num_hidden_layers=hp["n_layer"],
        num_attention_heads=hp["n_head"],
        num_key_value_heads=hp["n_kv_head"],
        intermediate_size=hp["d_ff"],
        vocab_size=hp["vocab"],
        max_position_embeddings=hp["n_ctx"],
        bos_token_id=0,
        eos_token_id=0,
    )
    return transformers.LlamaForCausalLM(config).eval()


BUILD = {"gpt": _gpt2, "bert": _bert, "llama": _llama}


def _numel(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _assert_same(ours, theirs, what: str) -> None:
    difference = sympy.expand(ours - theirs)
    assert difference == 0, f"{what}: architecture - analyze = {difference}"


def _bridge_every_length(name: str, hp: dict) -> None:
    """The model at ``hp`` analysed with a symbolic batch ``N`` and length ``L``: the
    architecture equals it at ``L = n_ctx`` (an identity in ``N``), and its costs with ``n_ctx``
    left a symbol equal the analysis with ``n_ctx = L`` (an identity in ``N`` and ``L``: the
    costs depend on ``n_ctx`` only as the length processed; the position table's size only
    enters the parameters)."""
    torch.manual_seed(0)
    model = BUILD[name](hp)
    analysis = lc.analyze(model, ("N", "L"), dtype=torch.long)
    assert analysis.unsupported == [], analysis.unsupported
    (length,) = (s for s in analysis.symbols if s.name == "L")
    arch = lc.architecture(name, **hp)
    free = lc.architecture(name, **{k: v for k, v in hp.items() if k != "n_ctx"})
    assert arch.params == analysis.params == _numel(model)
    assert arch.free_symbols == {BATCH}
    for convention in arch.conventions:
        theirs = analysis.cost(convention)
        _assert_same(arch.cost(convention), theirs.xreplace({length: hp["n_ctx"]}), convention)
        _assert_same(free.cost(convention).xreplace({N_CTX: length}), theirs, convention)


def test_every_convention_is_defined():
    # the bridges compare every convention an architecture defines: all but the seed article's
    # (which has no rule for attention's products or the elementwise operators)
    expected = tuple(sorted(set(lc.CONVENTIONS) - {"seed"}))
    for name in ("gpt", "bert", "llama"):
        assert lc.architecture(name).conventions == expected


def test_gpt_equals_gpt2lmheadmodel_default_config():
    c = transformers.GPT2Config()
    hp = dict(
        d_model=c.n_embd,
        n_layer=c.n_layer,
        n_head=c.n_head,
        d_ff=4 * c.n_embd,
        vocab=c.vocab_size,
        n_ctx=c.n_positions,
    )  # n_inner=None means 4 n_embd
    assert c.n_inner is None
    _bridge_every_length("gpt", hp)


def test_bert_equals_bertmodel_default_config():
    c = transformers.BertConfig()
    hp = dict(
        d_model=c.hidden_size,
        n_layer=c.num_hidden_layers,
        n_head=c.num_attention_heads,
        d_ff=c.intermediate_size,
        vocab=c.vocab_size,
        n_ctx=c.max_position_embeddings,
    )
    assert c.type_vocab_size == 2  # the architecture's fixed number of token types
    _bridge_every_length("bert", hp)


def test_llama_equals_small_grouped_query_llama():
    # 8 query heads sharing 2 key/value heads (head_dim 8), SwiGLU width 172
    hp = dict(d_model=64, n_layer=2, n_head=8, n_kv_head=2, d_ff=172, vocab=100, n_ctx=32)
    _bridge_every_length("llama", hp)


# -- drawn hyperparameters -----------------------------------------------------------------------


@st.composite
def hyperparameters(draw, name: str) -> dict:
    n_head = draw(st.integers(1, 4))
    # rotary embeddings rotate pairs: Llama's head_dim is even
    head_dim = draw(st.sampled_from((2, 4, 6)) if name == "llama" else st.integers(1, 6))
    hp = dict(
        d_model=n_head * head_dim,
        n_layer=draw(st.integers(1, 3)),
        n_head=n_head,
        d_ff=draw(st.integers(1, 40)),
        vocab=draw(st.integers(2, 64)),
        # causal models take n_ctx >= 2: at one token transformers asks SDPA for no causal
        # mask (test_one_token_has_no_causal_mask)
        n_ctx=draw(st.integers(1 if name == "bert" else 2, 9)),
    )
    if name == "llama":
        hp["n_kv_head"] = draw(
            st.sampled_from([k for k in range(1, n_head + 1) if n_head % k == 0])
        )
    return hp


def _bridge_drawn(name: str, hp: dict, n: int) -> None:
    """A fresh model at ``hp`` analysed at ``L = n_ctx`` (symbolic batch): the architecture
    equals it as an identity in ``N``, and at the drawn batch ``n``."""
    torch.manual_seed(0)
    model = BUILD[name](hp)
    analysis = lc.analyze(model, ("N", hp["n_ctx"]), dtype=torch.long)
    arch = lc.architecture(name, **hp)
    assert arch.params == analysis.params == _numel(model)
    for convention in arch.conventions:
        _assert_same(arch.cost(convention), analysis.cost(convention), convention)
        assert arch.evaluate({"N": n}, convention) == analysis.evaluate({"N": n}, convention)


# Each example builds a transformers model and traces it on fake tensors (~0.2 s): 25
# examples per architecture keep the file within its CI budget.
@settings(max_examples=25)
@given(hp=hyperparameters("gpt"), n=st.integers(1, 4))
def test_gpt_equals_drawn_gpt2(hp, n):
    _bridge_drawn("gpt", hp, n)


@settings(max_examples=25)
@given(hp=hyperparameters("bert"), n=st.integers(1, 4))
def test_bert_equals_drawn_bert(hp, n):
    _bridge_drawn("bert", hp, n)


@settings(max_examples=25)
@given(hp=hyperparameters("llama"), n=st.integers(1, 4))
def test_llama_equals_drawn_llama(hp, n):
    _bridge_drawn("llama", hp, n)


@functools.cache
def _tiny(name: str) -> tuple[dict, torch.nn.Module]:
    hp = dict(d_model=8, n_layer=2, n_head=2, d_ff=12, vocab=20, n_ctx=4)
    if name == "llama":
        hp["n_kv_head"] = 1
    torch.manual_seed(0)
    return hp, BUILD[name](hp)


@pytest.mark.parametrize("name", ["gpt", "llama"])
def test_one_token_has_no_causal_mask(name):
    # transformers' SDPA path sets is_causal only for more than one query, so a real run on
    # one token per sequence skips the mask: exactly the attention.mask part, n_layer *
    # (n_head N + 4) at n_ctx = 1 (the sub, le, logical_and, where over 1 x 1 and the add)
    hp, model = _tiny(name)
    n = 3
    arch = lc.architecture(name, **{**hp, "n_ctx": 1}).at(N=n)
    counted = lc.count(model, torch.randint(0, hp["vocab"], (n, 1)))
    mask = arch.breakdown("exact")["attention.mask"][1]
    assert mask == hp["n_layer"] * (hp["n_head"] * n + 4)
    assert counted.cost("exact") == arch.cost("exact") - mask
    for convention in ("macs", "torch"):
        assert counted.cost(convention) == arch.cost(convention)


@pytest.mark.parametrize("name", ["gpt", "bert", "llama"])
def test_real_forward_pass_counts_agree(name):
    # the op counter on a real forward pass (not the fake-tensor trace) agrees too
    hp, _ = _tiny(name)
    hp = {**hp, "n_ctx": 5}
    torch.manual_seed(0)
    model = BUILD[name](hp)
    n = 2
    counted = lc.count(model, torch.randint(0, hp["vocab"], (n, hp["n_ctx"])))
    arch = lc.architecture(name, **hp).at(N=n)
    assert counted.params == arch.params
    for convention in ("exact", "macs", "torch"):
        assert counted.cost(convention) == arch.cost(convention), convention


# -- part by part ----------------------------------------------------------------------------------

# GPT2LMHeadModel's costed calls -> the gpt architecture's parts: by module (a module's own
# rule or the operators it runs), inside the attention by operator, and for calls a module
# makes twice by their order.
_GPT2_MODULES = {
    "wte": "embedding.tokens",
    "wpe": "embedding.positions",
    "ln_1": "attention.norm",
    "attn.c_attn": "attention.qkv",
    "attn.c_proj": "attention.project",
    "ln_2": "mlp.norm",
    "mlp.c_fc": "mlp.up",
    "mlp.act": "mlp.act",
    "mlp.c_proj": "mlp.down",
    "ln_f": "final_norm",
    "lm_head": "head",
}
_GPT2_ATTENTION_OPS = {
    "mul": "attention.scale",
    "_safe_softmax": "attention.softmax",
    **dict.fromkeys(("sub", "le", "logical_and", "where", "add"), "attention.mask"),
    "(pairs the mask of scaled_dot_product_attention drops)": "attention.masked",  # useful
}
_GPT2_IN_ORDER = {
    "bmm": ("attention.scores", "attention.values"),  # in transformer.h.<i>.attn
    "add": ("attention.residual", "mlp.residual"),  # in transformer.h.<i>
    "embedding add": ("embedding.positions", "embedding.add"),  # position ids, then the sum
}


def _gpt2_part(layer_name: str, seen: dict) -> str:
    module, _, op = layer_name.partition(":")
    local = re.sub(r"^(transformer\.)?(h\.\d+\.?)?", "", module)
    if local in _GPT2_MODULES:
        return _GPT2_MODULES[local]
    if local == "attn" and op != "bmm":
        return _GPT2_ATTENTION_OPS[op]
    key = "embedding add" if module == "transformer" else op
    seen[module, op] = seen.get((module, op), -1) + 1
    return _GPT2_IN_ORDER[key][seen[module, op] % 2]


def test_gpt_parts_equal_the_calls_they_name():
    # each part of gpt equals the calls of GPT2LMHeadModel it stands for, in every convention,
    # and holds the parameters of the modules it names (lm_head's weight is wte's)
    hp = dict(d_model=8, n_layer=2, n_head=2, d_ff=12, vocab=20, n_ctx=4)
    torch.manual_seed(0)
    model = _gpt2(hp)
    analysis = lc.analyze(model, ("N", hp["n_ctx"]), dtype=torch.long)
    arch = lc.architecture("gpt", **hp)
    conventions = arch.conventions
    costs: dict = {}
    seen: dict = {}
    for layer in analysis.layers:
        if all(layer.cost(c) == 0 for c in conventions):
            continue  # views, copies, dropout in eval
        part = costs.setdefault(_gpt2_part(layer.name, seen), dict.fromkeys(conventions, 0))
        for c in conventions:
            part[c] += layer.cost(c)
    params: dict = {}
    for name, p in model.named_parameters():  # shared parameters are listed once
        part = _gpt2_part(name.rsplit(".", 1)[0], {})
        params[part] = params.get(part, 0) + p.numel()
    for c in conventions:
        for part, (p, cost) in arch.breakdown(c).items():
            assert params.get(part, 0) == p, part
            _assert_same(cost, costs.get(part, {}).get(c, 0), f"{part} ({c})")
    assert set(costs) <= set(arch.breakdown())


# -- structure and errors -------------------------------------------------------------------------


def test_parts_read_like_a_paper():
    parts = list(lc.architecture("gpt").breakdown("torch"))
    assert parts[:3] == ["embedding.tokens", "embedding.positions", "embedding.add"]
    assert parts[-2:] == ["final_norm", "head"]
    for part in (
        "attention.qkv",
        "attention.scores",
        "attention.softmax",
        "attention.values",
        "attention.project",
        "mlp.up",
        "mlp.act",
        "mlp.down",
    ):
        assert part in parts
    assert "attention.mask" not in lc.architecture("bert").breakdown("torch")  # bidirectional
    assert {"pooler.dense", "pooler.act"} <= set(lc.architecture("bert").breakdown("torch"))
    assert {"rotary.table", "attention.rotary", "mlp.gate"} <= set(
        lc.architecture("llama").breakdown("torch")
    )


def test_no_constraint_left_undecided():
    # every rule's constraint is decided by the bindings (an Embedding's data-dependent rows
    # take the rule's default), so evaluate needs only the batch
    for name in ("gpt", "bert", "llama"):
        assert lc.architecture(name).conditions == ()


def test_tied_and_untied_heads():
    d, v = lc.symbols("d_model vocab")
    assert lc.architecture("gpt").breakdown("torch")["head"][0] == 0  # tied to wte
    assert lc.architecture("llama").breakdown("torch")["head"][0] == d * v


def test_grouped_query_attention_shrinks_keys_and_values():
    d, n_layer = lc.symbols("d_model n_layer")
    # q: d x d; k and v: d x (n_kv_head * d / n_head) each
    mha = lc.architecture("llama", n_head=8, n_kv_head=8).breakdown("torch")["attention.qkv"][0]
    mqa = lc.architecture("llama", n_head=8, n_kv_head=1).breakdown("torch")["attention.qkv"][0]
    assert sympy.expand(mha - 3 * n_layer * d**2) == 0
    assert sympy.expand(mqa - n_layer * (d**2 + 2 * d**2 / 8)) == 0


@pytest.mark.parametrize(
    ("name", "hp", "message"),
    [
        ("gpt", dict(d_model=10, n_head=4), "n_head=4 must divide d_model=10"),
        ("bert", dict(d_model=10, n_head=3), "n_head=3 must divide d_model=10"),
        ("llama", dict(n_head=6, n_kv_head=4), "n_kv_head=4 must divide n_head=6"),
        ("gpt", dict(d_model=0), "d_model must be positive"),
        ("llama", dict(n_kv_heads=2), "no hyperparameter n_kv_heads"),
    ],
)
def test_bad_hyperparameters_are_named(name, hp, message):
    with pytest.raises(lc.ArchitectureError, match=message):
        lc.architecture(name, **hp)


@pytest.mark.parametrize("name", ["gpt", "bert", "llama"])
def test_latex_table_with_symbolic_hyperparameters(name):
    arch = lc.architecture(name)  # every hyperparameter a symbol
    for convention in ("exact", "torch"):
        text = arch.to_latex(convention)
        lines = text.splitlines()
        # a booktabs table float: table, centering, caption, tabular, toprule, header, midrule
        assert lines[3] == r"\begin{tabular}{lll}" and lines[-2] == r"\end{tabular}"
        rows = [line.split(" & ")[0] for line in lines[7:-5]]
        assert rows == [p.replace("_", r"\_") for p in arch.breakdown(convention)]
        assert lines[-4].startswith("total & ")
        assert r"d_{\mathrm{model}}" in text and r"n_{\mathrm{layer}}" in text
    assert r"\begin{array}" in arch._repr_latex_()


def test_mirrors_and_docstrings():
    from layercost_sym.zoo import describe

    for name, cls in (
        ("gpt", "GPT2LMHeadModel"),
        ("bert", "BertModel"),
        ("llama", "LlamaForCausalLM"),
    ):
        arch = lc.architecture(name)
        assert cls in arch.mirrors
        assert "mirrors: " in describe(name) and "d_model" in describe(name)
