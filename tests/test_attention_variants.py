"""The zoo's ``attention`` and ``mla`` layers proven against torch (issue 16, "Attention, every
variant a user meets").

- ``attention``: a torch layer written here (``Layer``: nn.Linear projections, the heads'
  ``view(...).transpose(1, 2)``, ``F.scaled_dot_product_attention`` with the mask as the
  variant names it and ``enable_gqa`` for fewer key/value heads, the output projection) counted
  by ``lc.count`` (the op counter and FlopCounterMode): params, ``exact``, ``macs``, ``torch``
  and eager ``bytes`` (float32 and bfloat16) for multi-head, grouped-query and multi-query
  attention, bidirectional, causal and sliding masks given as bool, float or ``is_causal``,
  keys projected from a context or appended to a cache; and ``lc.analyze`` of the same layer
  at symbolic sizes.
- ``mla``: transformers' ``DeepseekV3Attention`` (built from a config, no weights), prefill and
  decode against a cache of compressed latents: params, FLOPs and eager ``bytes`` (float32 and
  bfloat16), at given and at symbolic sizes.
- ``useful``: the same torch layers with the attention replaced by one that computes, row by
  row, only the (query, key) pairs the mask keeps, with the math backend's own kernels; its
  exact count is the useful work.
"""

import math

import numpy
import pytest
import sympy
import torch
import torch.nn.functional as F
import transformers  # a test dependency (pyproject's test extra)
from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3Attention

import layercost_sym as lc
from layercost_sym.errors import ArchitectureError, ConventionError, DomainError
from layercost_sym.zoo.attention import masked_work, mla_sizes, pairs

FLOPS = ("exact", "macs", "torch")


class Layer(torch.nn.Module):
    """The layer ``attention`` mirrors (see its ``mirrors``)."""

    def __init__(self, d_model, n_head, n_kv_head, head_dim, bias=False):
        super().__init__()
        self.h, self.kvh, self.hd = n_head, n_kv_head, head_dim
        self.q = torch.nn.Linear(d_model, n_head * head_dim, bias=bias)
        self.k = torch.nn.Linear(d_model, n_kv_head * head_dim, bias=bias)
        self.v = torch.nn.Linear(d_model, n_kv_head * head_dim, bias=bias)
        self.o = torch.nn.Linear(n_head * head_dim, d_model, bias=bias)

    def heads(self, t, n):
        return t.view(t.shape[0], t.shape[1], n, self.hd).transpose(1, 2)

    def forward(self, x, context, past_k=None, past_v=None, mask=None, is_causal=False):
        n, q_len, _ = x.shape
        q = self.heads(self.q(x), self.h)
        k, v = self.heads(self.k(context), self.kvh), self.heads(self.v(context), self.kvh)
        if past_k is not None:  # decode: the new keys and values appended to the cache
            k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=is_causal, enable_gqa=self.kvh != self.h
        )
        return self.o(out.transpose(1, 2).reshape(n, q_len, self.h * self.hd))


def band(n_q, n_kv, mask, window):
    """The kept pairs, built independently of the package: query i at position n_kv - n_q + i
    sees key j <= its position, and (sliding) j > position - window."""
    position = torch.arange(n_kv - n_q, n_kv)[:, None]
    key = torch.arange(n_kv)[None, :]
    keep = key <= position
    if mask == "sliding":
        keep &= key > position - window
    return keep


def _inputs(n, n_q, n_kv, d_model, kvh, hd, mask, mask_input, kv_from, window, dtype):
    x = torch.randn(n, n_q, d_model, dtype=dtype)
    if kv_from == "context":  # self-attention: one tensor; cross-attention: a longer context
        args = (x, x if n_kv == n_q else torch.randn(n, n_kv, d_model, dtype=dtype))
    else:
        past = [torch.randn(n, kvh, n_kv - n_q, hd, dtype=dtype) for _ in range(2)]
        args = (x, x, *past)
    kwargs = {}
    if mask_input == "is_causal":
        kwargs["is_causal"] = True
    elif mask != "none":
        keep = band(n_q, n_kv, mask, window)
        kwargs["mask"] = (
            keep
            if mask_input == "bool"
            else torch.zeros(n_q, n_kv, dtype=dtype).masked_fill(~keep, float("-inf"))
        )
    return args, kwargs


def _arch(n, n_q, n_kv, d_model, h, kvh, hd, mask, mask_input, kv_from, bias, window):
    return lc.architecture(
        "attention", n_q=n_q, n_kv=n_kv, d_model=d_model, n_head=h, n_kv_head=kvh, head_dim=hd,
        mask=mask, mask_input=mask_input, kv_from=kv_from, bias=bias, window=window,
    ).at(N=n)  # fmt: skip


# (N, n_q, n_kv, n_head, n_kv_head, mask, mask_input, kv_from, bias): every variant at least once,
# with the shapes that change torch's copies (N = 1, one query, one head)
VARIANTS = [
    (2, 3, 3, 4, 4, "none", "bool", "context", True),  # MHA self-attention, bidirectional
    (2, 3, 5, 4, 4, "none", "bool", "context", False),  # cross-attention
    (1, 4, 4, 4, 2, "causal", "is_causal", "context", False),  # GQA, torch's own causal mask
    (2, 4, 4, 4, 4, "causal", "is_causal", "context", True),
    (2, 3, 5, 4, 2, "causal", "bool", "cache", False),  # GQA prefill of 3 onto a cache of 2
    (2, 1, 5, 4, 1, "causal", "bool", "cache", True),  # MQA decode of one token
    (3, 2, 6, 4, 4, "causal", "float", "cache", False),  # MHA decode, additive mask
    (2, 3, 5, 4, 2, "causal", "float", "context", False),
    (2, 4, 4, 4, 4, "sliding", "bool", "context", False),  # sliding window, 2 < n_kv
    (2, 1, 6, 4, 2, "sliding", "float", "cache", True),  # decode past the window
    (1, 3, 7, 4, 1, "sliding", "bool", "cache", False),
    (2, 3, 5, 1, 1, "sliding", "bool", "context", False),  # one head
]
WINDOW = 2


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(map(str, v)))
def test_attention_matches_torch(variant):
    n, n_q, n_kv, h, kvh, mask, mask_input, kv_from, bias = variant
    d_model, hd = 8, 3
    torch.manual_seed(0)
    for dtype, size in ((torch.float32, 4), (torch.bfloat16, 2)):
        layer = Layer(d_model, h, kvh, hd, bias).to(dtype)
        args, kwargs = _inputs(
            n, n_q, n_kv, d_model, kvh, hd, mask, mask_input, kv_from, WINDOW, dtype
        )
        counted = lc.count(layer, *args, **kwargs)
        arch = _arch(n, n_q, n_kv, d_model, h, kvh, hd, mask, mask_input, kv_from, bias, WINDOW)
        assert arch.params == counted.params == sum(p.numel() for p in layer.parameters())
        for convention in FLOPS:
            assert arch.cost(convention) == counted.cost(convention), (convention, counted.by_op)
        sizes = {"e_a": size, "e_w": size}
        assert lc.evaluate(arch.quantity("bytes", "eager"), sizes) == counted.quantity(
            "bytes", "eager"
        ), (dtype, counted.bytes_by_op)
        # the same variant with every size a symbol, evaluated there (its domain checked)
        symbolic = lc.architecture(
            "attention", mask=mask, mask_input=mask_input, kv_from=kv_from, bias=bias
        )
        values = dict(N=n, n_q=n_q, n_kv=n_kv, d_model=d_model, n_head=h, n_kv_head=kvh,
                      head_dim=hd, window=WINDOW, **sizes)  # fmt: skip
        for convention in FLOPS:
            assert symbolic.evaluate(values, convention) == counted.cost(convention)
        assert symbolic.evaluate(values, quantity="bytes", convention="eager") == (
            counted.quantity("bytes", "eager")
        )


# -- useful: only the kept pairs ------------------------------------------------------------------


def kept_rows(query, key, value, attn_mask=None, is_causal=False, scale=None, enable_gqa=False,
              dropout_p=0.0):  # fmt: skip
    """scaled_dot_product_attention computed row by row over the keys each query's mask keeps,
    with the math backend's kernels (keys and values repeated to the query heads, q and k each
    scaled by the root of the scale, a product, _safe_softmax and a product per row)."""
    q_len, s_len = query.shape[-2], key.shape[-2]
    if enable_gqa:
        repeat = query.shape[-3] // key.shape[-3]
        key, value = key.repeat_interleave(repeat, -3), value.repeat_interleave(repeat, -3)
    # which keys each row keeps, read in numpy (no torch operator: nothing counted)
    if attn_mask is None:
        keep = numpy.ones((q_len, s_len), dtype=bool)
        if is_causal:  # torch's tril: aligned to the first key
            keep = numpy.tril(keep)
    else:
        keep = attn_mask.numpy().reshape(q_len, s_len)
        if keep.dtype != bool:  # an additive mask: -inf where dropped
            keep = numpy.isfinite(keep)
    root = math.sqrt(scale if scale is not None else 1 / math.sqrt(query.shape[-1]))
    query, key = query * root, key * root
    rows = []
    for i in range(q_len):
        kept = keep[i].nonzero()[0].tolist()
        lo, hi = kept[0], kept[-1] + 1
        assert kept == list(range(lo, hi))  # a band: one slice
        scores = query[..., i : i + 1, :] @ key[..., lo:hi, :].transpose(-2, -1)
        rows.append(torch.ops.aten._safe_softmax(scores, -1) @ value[..., lo:hi, :])
    return torch.cat(rows, dim=-2)


@pytest.mark.parametrize("variant", VARIANTS[1::2], ids=lambda v: "-".join(map(str, v)))
def test_useful_is_the_work_of_the_kept_pairs(variant, monkeypatch):
    n, n_q, n_kv, h, kvh, mask, mask_input, kv_from, bias = variant
    d_model, hd = 8, 3
    layer = Layer(d_model, h, kvh, hd, bias)
    args, kwargs = _inputs(n, n_q, n_kv, d_model, kvh, hd, mask, mask_input, kv_from, WINDOW,
                           torch.float32)  # fmt: skip
    executed = lc.count(layer, *args, **kwargs).cost("exact")
    monkeypatch.setattr(F, "scaled_dot_product_attention", kept_rows)
    useful = lc.count(layer, *args, **kwargs).cost("exact")
    arch = _arch(n, n_q, n_kv, d_model, h, kvh, hd, mask, mask_input, kv_from, bias, WINDOW)
    assert arch.cost("useful") == useful
    assert arch.cost("exact") == executed
    assert lc.evaluate(masked_work(arch), {}) == executed - useful
    assert (executed > useful) == (mask != "none")


# -- the kept pairs, and their difference from the square as a formula ---------------------------


def test_pairs_closed_form_equals_the_mask_on_both_sides_of_the_window():
    n_q, n_kv, w = lc.symbols("n_q n_kv window")
    causal, sliding = pairs(n_q, n_kv, "causal"), pairs(n_q, n_kv, "sliding", w)
    for s in range(1, 9):
        for q in range(1, s + 1):
            values = {n_q: q, n_kv: s}
            assert causal.xreplace(values) == int(band(q, s, "causal", None).sum())
            for window in range(1, 10):  # shorter than, as long as and longer than the keys
                expected = int(band(q, s, "sliding", window).sum())
                assert sliding.xreplace({**values, w: window}) == expected, (q, s, window)


def test_masked_work_formula():
    arch = lc.architecture("attention", mask="causal")  # bool mask, every size a symbol
    N, h, d, q, s = lc.symbols("N n_head head_dim n_q n_kv")
    # Q(Q - 1)/2 dropped pairs per head, each a score (2d - 1), its softmax share (8) and d
    # products and sums (2d); the mask made float (n_q n_kv) and added to every score
    expected = N * h * q * (q - 1) / 2 * (4 * d + 7) + q * s + N * h * q * s
    assert sympy.expand(masked_work(arch) - expected) == 0
    # the formula carries the layer's domain: a masked query after the last key is refused
    with pytest.raises(DomainError, match="n_q <= n_kv"):
        lc.evaluate(masked_work(arch), dict(N=1, n_head=2, head_dim=4, n_q=5, n_kv=3))


def test_sliding_attention_card_reads_back_with_its_domain():
    arch = lc.architecture("attention", mask="sliding", kv_from="cache")
    loaded = lc.load_card(lc.card(arch))
    for quantity, convention in (("flops", "useful"), ("flops", "exact"), ("bytes", "eager")):
        assert loaded.quantity(quantity, convention) == arch.quantity(quantity, convention)
    # one token decoded against 9 keys, window 4: 4 kept pairs per head (the formula's middle
    # branch), the useful work of the card equals the architecture's
    at = dict(N=1, n_q=1, n_kv=9, window=4, d_model=8, n_head=2, n_kv_head=1, head_dim=4)
    assert loaded.evaluate(at, "useful") == arch.evaluate(at, "useful")
    assert pairs(1, 9, "sliding", 4) == 4
    with pytest.raises(DomainError, match="n_q <= n_kv"):
        loaded.evaluate({**at, "n_q": 10}, "useful")


# -- lc.analyze of the same layer ----------------------------------------------------------------


_Q, _S, _L, _P = (sympy.Symbol(name, integer=True, positive=True) for name in "QSLP")
# what analyze traces, the architecture's variant, and its n_q and n_kv in analyze's symbols
TRACED = {
    "cross": (dict(x=("N", "Q", 8), context=("N", "S", 8)), dict(mask="none"), _Q, _S),
    "causal": (
        dict(x=("N", "L", 8), context=("N", "L", 8), is_causal=True),
        dict(mask="causal", mask_input="is_causal"),
        _L,
        _L,
    ),
    "cache": (  # Q new tokens onto a cache of P: n_kv = P + Q
        dict(
            x=("N", "Q", 8), context=("N", "Q", 8), past_k=("N", 2, "P", 3), past_v=("N", 2, "P", 3)
        ),
        dict(mask="none", kv_from="cache"),
        _Q,
        _P + _Q,
    ),
}


@pytest.mark.parametrize("name", TRACED)
def test_attention_equals_analyze_at_symbolic_sizes(name):
    traced, variant, n_q, n_kv = TRACED[name]
    layer = Layer(8, 4, 2, 3)  # grouped-query: 4 heads, 2 key/value heads of 3
    analysis = lc.analyze(layer, **traced)
    arch = lc.architecture("attention", d_model=8, n_head=4, n_kv_head=2, head_dim=3, **variant)
    N = sympy.Symbol("N", integer=True, positive=True)
    renamed = {lc.symbols("n_q"): n_q, lc.symbols("n_kv"): n_kv, lc.symbols("N"): N}
    for convention in FLOPS:
        formula = arch.cost(convention).xreplace(renamed)
        assert sympy.expand(formula - analysis.cost(convention)) == 0, convention
    assert analysis.params == arch.params
    # eager bytes where torch's copies are taken (every size > 1): the analysis' closed form
    free = sorted((n_q + n_kv).free_symbols, key=str)
    for point in ((2, 3, 5), (3, 7, 2), (5, 2, 11)):
        sizes = dict(zip(free, point[1:], strict=False))
        at = {"N": point[0], "n_q": n_q.xreplace(sizes), "n_kv": n_kv.xreplace(sizes)}
        measured = analysis.evaluate(
            {"N": point[0], **{s.name: v for s, v in sizes.items()}},
            quantity="bytes",
            convention="eager",
        )
        assert lc.evaluate(arch.quantity("bytes", "eager"), {**at, "e_a": 4, "e_w": 4}) == measured


# -- multi-head latent attention: transformers' DeepseekV3Attention ------------------------------

MLA = dict(d_model=16, n_head=4, q_rank=12, kv_rank=8, d_nope=4, d_rope=2, d_v=4)


class Latents:
    """The cache as DeepseekV3Attention uses it: update(new latents) returns all of them."""

    def __init__(self, kv, rot):
        self.kv, self.rot = kv, rot

    def update(self, kv, rot, layer_idx, kwargs=None):
        return torch.cat([self.kv, kv], dim=2), torch.cat([self.rot, rot], dim=2)


class DeepseekLayer(torch.nn.Module):
    def __init__(self, attention):
        super().__init__()
        self.attention = attention

    def forward(self, x, cos, sin, past_kv=None, past_rot=None, mask=None):
        cache = None if past_kv is None else Latents(past_kv, past_rot)
        return self.attention(x, (cos, sin), mask, cache=cache)[0]


def _deepseek_attention(mask):
    config = transformers.DeepseekV3Config(
        hidden_size=MLA["d_model"], num_attention_heads=MLA["n_head"],
        num_key_value_heads=MLA["n_head"], q_lora_rank=MLA["q_rank"],
        kv_lora_rank=MLA["kv_rank"], qk_nope_head_dim=MLA["d_nope"],
        qk_rope_head_dim=MLA["d_rope"], v_head_dim=MLA["d_v"], num_hidden_layers=1,
        vocab_size=50, max_position_embeddings=64,
    )  # fmt: skip
    config._attn_implementation = "sdpa"
    assert config.rope_interleave  # the default, which mla mirrors
    attention = DeepseekV3Attention(config, 0).eval()
    attention.is_causal = mask != "none"  # no mask given: not causal either
    return DeepseekLayer(attention)


@pytest.mark.parametrize(
    "n, n_q, n_kv, mask",
    [(2, 3, 3, "none"), (1, 4, 4, "causal"), (2, 3, 5, "causal"), (2, 1, 5, "sliding"),
     (2, 4, 6, "sliding")],
)  # fmt: skip
def test_mla_matches_deepseek_v3_attention(n, n_q, n_kv, mask, monkeypatch):
    symbolic = lc.architecture("mla", mask=mask, **MLA)  # N, n_q, n_kv and window symbols
    arch = lc.architecture("mla", n_q=n_q, n_kv=n_kv, mask=mask, window=WINDOW, **MLA).at(N=n)
    for dtype, size in ((torch.float32, 4), (torch.bfloat16, 2)):
        torch.manual_seed(0)
        layer = _deepseek_attention(mask).to(dtype)
        # the rotary cos/sin in the layer's dtype, as transformers' rotary embedding returns them
        x, cos, sin = (
            torch.randn(n, n_q, MLA[d], dtype=dtype) for d in ("d_model", "d_rope", "d_rope")
        )
        kwargs = {}
        if n_kv > n_q:  # the cache holds the compressed latents of the earlier positions
            kwargs["past_kv"] = torch.randn(n, 1, n_kv - n_q, MLA["kv_rank"], dtype=dtype)
            kwargs["past_rot"] = torch.randn(n, 1, n_kv - n_q, MLA["d_rope"], dtype=dtype)
        if mask != "none":
            kwargs["mask"] = band(n_q, n_kv, mask, WINDOW).view(1, 1, n_q, n_kv)
        counted = lc.count(layer, x, cos, sin, **kwargs)
        if dtype == torch.float32:  # for useful, below
            float32 = (layer, x, cos, sin), kwargs
        assert arch.params == counted.params == sum(p.numel() for p in layer.parameters())
        for convention in FLOPS:
            assert arch.cost(convention) == counted.cost(convention), (convention, counted.by_op)
        sizes = {"e_a": size, "e_w": size}
        measured = counted.quantity("bytes", "eager")
        assert lc.evaluate(arch.quantity("bytes", "eager"), sizes) == measured, (
            dtype,
            counted.bytes_by_op,
        )
        values = dict(N=n, n_q=n_q, n_kv=n_kv, window=WINDOW, **sizes)
        assert symbolic.evaluate(values, quantity="bytes", convention="eager") == measured
    monkeypatch.setattr(F, "scaled_dot_product_attention", kept_rows)
    assert arch.cost("useful") == lc.count(*float32[0], **float32[1]).cost("exact")


def test_mla_shares_deepseeks_sizes_and_caches_latents():
    mla = lc.architecture("mla", **MLA)
    sizes = mla_sizes(*(MLA[k] for k in ("d_model", "n_head", "q_rank", "kv_rank", "d_nope",
                                         "d_rope", "d_v")))  # fmt: skip
    # the five products' weights and the two RMSNorms' (q_rank, kv_rank): q_a 16*12, q_b
    # 12*4*(4 + 2), kv_a 16*(8 + 2), kv_b 8*4*(4 + 4), o 4*4*16, then 12 + 8
    assert sizes == dict(q_a=192, q_b=288, kv_a=160, kv_b=256, o=256)
    assert mla.params == sum(sizes.values()) + MLA["q_rank"] + MLA["kv_rank"] == 1172
    deepseek = lc.architecture("deepseek", n_layer=1, n_dense=1, d_ff=8, d_expert=8, n_expert=2,
                               n_shared=1, top_k=1, vocab=10, **MLA)  # fmt: skip
    mine, theirs = mla.breakdown("macs"), deepseek.breakdown("macs")
    for part in ("attention.q", "attention.kv"):
        assert mine[part][0] == theirs[part][0], part
    # the cache's cat reads the n_kv - n_q cached and n_q new latents and rotary keys, and
    # writes all n_kv: 2 N n_kv (kv_rank + d_rope) e_a = 2*2*9*(8 + 2)*2; nothing at prefill
    (cache,) = (p.values[("bytes", "eager")] for p in mla.parts if p.name == "attention.cache")
    assert lc.evaluate(cache, dict(N=2, n_q=1, n_kv=9, e_a=2)) == 720
    assert lc.evaluate(cache, dict(N=2, n_q=9, n_kv=9, e_a=2)) == 0
    with pytest.raises(ConventionError, match=r"attention\.q"):  # only eager bytes are stated
        mla.quantity("bytes", "min")


# -- bad input ------------------------------------------------------------------------------------


def test_bad_variants_are_refused():
    with pytest.raises(ArchitectureError, match="n_q <= n_kv"):
        lc.architecture("attention", n_q=5, n_kv=3, mask="causal")
    with pytest.raises(ArchitectureError, match="n_q = n_kv"):
        lc.architecture("attention", n_q=1, n_kv=3, mask="causal", mask_input="is_causal")
    with pytest.raises(ArchitectureError, match="sliding"):
        lc.architecture("attention", mask="sliding", mask_input="is_causal")
    with pytest.raises(ArchitectureError, match="must divide"):
        lc.architecture("attention", n_head=4, n_kv_head=3)
    with pytest.raises(ArchitectureError, match="mask"):
        lc.architecture("mla", mask="diagonal")
    with pytest.raises(ArchitectureError, match="even"):
        lc.architecture("mla", d_rope=3)
    # symbolic lengths: the condition travels and evaluation refuses outside it
    decode = lc.architecture("attention", kv_from="cache", mask="none")
    with pytest.raises(DomainError, match="n_q <= n_kv"):
        decode.evaluate(dict(N=1, n_q=4, n_kv=2, d_model=8, n_head=2, n_kv_head=1, head_dim=4))
