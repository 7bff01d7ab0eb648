"""Published transformer cost formulas, re-derived from the reference architectures.

Kaplan et al. 2020 (Scaling Laws for Neural Language Models), Table 1; Narayanan et al. 2021
(Efficient Large-Scale Language Model Training on GPU Clusters Using Megatron-LM), eqs. 2 and
3; Chowdhery et al. 2022 (PaLM), Appendix B; Hoffmann et al. 2022 (Training Compute-Optimal
Large Language Models), Appendix F.  FLOPs are the ``torch`` convention (2 per
multiply-accumulate, the papers' own), unless a test says otherwise.  Each test writes the
derivation out and, where the paper counts differently from the architecture, asserts the
exact symbolic difference.
"""

from fractions import Fraction

import pytest
import sympy
import torch
import transformers

import layercost_sym as lc

d, n_layer, n_head, d_ff, vocab, n_ctx, n_kv = lc.symbols(
    "d_model n_layer n_head d_ff vocab n_ctx n_kv_head"
)
B = lc.symbols("N")  # the batch (sequences per forward pass)


def same(a, b) -> bool:
    return sympy.expand(a - b) == 0


def per_token(expr):
    """FLOPs of a forward pass over B sequences of n_ctx tokens, per token."""
    return sympy.expand(expr / (B * n_ctx))


# -- the assumption every paper makes: backward = 2 x forward ------------------------------------


@pytest.mark.parametrize("name", ["gpt", "llama"])
def test_backward_is_twice_forward_under_torch_counting(name):
    # Kaplan, Megatron-LM, PaLM and Chinchilla all take the backward pass as twice the forward:
    # every product Y = X W has two of the same size behind it (dX = dY W^T, dW = X^T dY), and
    # in these models every product's operands need gradients (the first block's input comes
    # from the trainable embedding).  FlopCounterMode's count of loss.backward(), as analyze
    # reproduces it, confirms it exactly for a small GPT-2 and a small grouped-query Llama.
    torch.manual_seed(0)
    if name == "gpt":
        model = transformers.GPT2LMHeadModel(
            transformers.GPT2Config(
                n_embd=16,
                n_layer=2,
                n_head=2,
                vocab_size=40,
                n_positions=8,
                bos_token_id=0,
                eos_token_id=0,
            )
        )
    else:
        model = transformers.LlamaForCausalLM(
            transformers.LlamaConfig(
                hidden_size=16,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                intermediate_size=24,
                vocab_size=40,
                bos_token_id=0,
                eos_token_id=0,
            )
        )
    forward = lc.analyze(model.eval(), ("N", 8), dtype=torch.long)
    both = lc.analyze(model, ("N", 8), dtype=torch.long, backward=True)
    assert same(both.cost("torch"), 3 * forward.cost("torch"))


# -- Kaplan et al. 2020, Table 1 ------------------------------------------------------------------


def test_kaplan_table_1():
    gpt = lc.architecture("gpt")
    parts = gpt.breakdown("torch")
    params = {name: p for name, (p, _) in parts.items()}
    flops = {name: per_token(c) for name, (_, c) in parts.items()}
    d_attn = d  # GPT-2: n_head heads of d_model / n_head

    # Embed: (n_vocab + n_ctx) d_model parameters -- exactly the two tables.
    assert same(params["embedding.tokens"] + params["embedding.positions"], (vocab + n_ctx) * d)
    # Its "4 d_model" FLOPs per token are no product: a lookup is data movement, so torch
    # counts 0; every scalar operation (exact) is the position + token add, d_model per token,
    # and the position ids arange(n_ctx) + 0, n_ctx per batch, 1/N per token.
    embed = ("embedding.tokens", "embedding.positions", "embedding.add")
    assert sum(flops[p] for p in embed) == 0
    exact = gpt.breakdown("exact")
    assert same(sum(per_token(exact[p][1]) for p in embed), d + 1 / B)

    # Attention: QKV -- n_layer d_model 3 d_attn weights (+ 3 d_attn biases per layer),
    # 2 n_layer d_model 3 d_attn FLOPs per token.
    assert same(params["attention.qkv"], n_layer * d * 3 * d_attn + n_layer * 3 * d_attn)
    assert same(flops["attention.qkv"], 2 * n_layer * d * 3 * d_attn)

    # Attention: Mask -- 2 n_layer n_ctx d_attn per token is the scores q.k (each token against
    # n_ctx keys, d_attn multiply-adds).  The paper's single row leaves out the weighted sum of
    # the values, a product of the same size: counting every matmul adds 2 n_layer n_ctx d_attn.
    assert same(flops["attention.scores"], 2 * n_layer * n_ctx * d_attn)
    assert same(flops["attention.values"], 2 * n_layer * n_ctx * d_attn)
    # (the mask itself, the scaling and the softmax are no products: 0 here)
    assert flops["attention.mask"] == flops["attention.softmax"] == flops["attention.scale"] == 0

    # Attention: Project -- n_layer d_attn d_model (+ d_model biases), 2 n_layer d_attn d_model.
    assert same(params["attention.project"], n_layer * d_attn * d + n_layer * d)
    assert same(flops["attention.project"], 2 * n_layer * d_attn * d)

    # Feedforward -- n_layer 2 d_model d_ff (+ d_ff + d_model biases), 2 n_layer 2 d_model d_ff.
    ff = ("mlp.up", "mlp.act", "mlp.down")
    assert same(sum(params[p] for p in ff), n_layer * 2 * d * d_ff + n_layer * (d_ff + d))
    assert same(sum(flops[p] for p in ff), 2 * n_layer * 2 * d * d_ff)

    # De-embed -- no parameters of its own (tied to the token table), 2 d_model n_vocab.
    assert params["head"] == 0
    assert same(flops["head"], 2 * d * vocab)

    # Total (non-embedding): N = 2 d_model n_layer (2 d_attn + d_ff).  The architecture also
    # has the biases (qkv 3 d, project d, feed-forward d_ff + d per layer) and the LayerNorms'
    # weights and biases (2 x 2 d per layer, 2 d final), which the paper leaves out:
    kaplan_n = 2 * d * n_layer * (2 * d_attn + d_ff)
    non_embedding = gpt.params - (vocab + n_ctx) * d
    assert same(non_embedding - kaplan_n, n_layer * (9 * d + d_ff) + 2 * d)

    # C_forward = 2N + 2 n_layer n_ctx d_attn, the QKV, Mask, Project and Feedforward rows.
    # Counting every product adds the values' weighted sum and the de-embedding:
    c_forward = 2 * kaplan_n + 2 * n_layer * n_ctx * d_attn
    assert same(
        per_token(gpt.cost("torch")), c_forward + 2 * n_layer * n_ctx * d_attn + 2 * d * vocab
    )

    # Every scalar operation (exact), per token, differs from 2 per multiply-add by what no
    # product counts, part by part.  A product with a bias is 2 C_in per output either way (the
    # bias add is the last add); one without is 2 k - 1 per output of a k-term dot product,
    # one less than torch's 2 k (scores, values, head).
    per_layer = [
        2 * (9 * d + 2),  # the two LayerNorms: 7 + a + b per element, 2 per row
        2 * d,  # q and k scaled by sqrt(1/sqrt(head_dim)) each
        -n_head * n_ctx,  # scores: n_head n_ctx outputs per token, 2 head_dim - 1 each
        n_head * n_ctx + 4 * n_ctx / B,  # causal mask: its add; sub, le, and, where per n_ctx^2
        n_head * (8 * n_ctx - 3),  # _safe_softmax: 8 n_ctx - 3 per row of n_ctx
        -d,  # values: d outputs per token, 2 n_ctx - 1 each
        2 * d,  # the two residual adds
        8 * d_ff,  # gelu_new: eight elementwise operators
    ]
    extra = (
        (d + 1 / B)  # the embedding adds (above)
        + n_layer * sum(per_layer)
        + (9 * d + 2)  # final LayerNorm
        - vocab  # head without bias: 2 d_model - 1 per logit
    )
    assert same(per_token(gpt.cost("exact")) - per_token(gpt.cost("torch")), extra)


def test_kaplan_6n_for_training():
    # Training = forward + backward = 3 forward (test_backward_is_twice_forward...): per token
    # 3 C_forward = 6N + 6 n_layer n_ctx d_attn.  With d_attn = d_model and d_ff = 4 d_model,
    # N = 12 n_layer d_model^2 and the context term is n_ctx / (12 d_model) of 2N: Kaplan's
    # "relatively small when d_model > n_ctx / 12", and C -> 6N as d_model grows.
    kaplan_n = 2 * d * n_layer * (2 * d + 4 * d)
    assert same(kaplan_n, 12 * n_layer * d**2)
    c_forward = 2 * kaplan_n + 2 * n_layer * n_ctx * d
    assert sympy.simplify(c_forward / (2 * kaplan_n) - 1 - n_ctx / (12 * d)) == 0
    assert sympy.limit(3 * c_forward / (6 * kaplan_n), d, sympy.oo) == 1
    # the architecture's products (torch), per token, without the de-embedding, and without
    # the values' product the paper leaves out, are exactly Kaplan's C_forward:
    gpt = lc.architecture("gpt", d_ff=4 * d)
    parts = gpt.breakdown("torch")
    body = gpt.cost("torch") - parts["head"][1] - parts["attention.values"][1]
    assert same(per_token(body), c_forward)
    assert same(per_token(3 * body), 6 * kaplan_n + 6 * n_layer * n_ctx * d)


# -- Narayanan et al. 2021 (Megatron-LM) ----------------------------------------------------------

h, V, s = d, vocab, n_ctx  # the paper's names (its l is n_layer)


def test_megatron_eq2_parameters():
    # Per layer: qkv 3h^2 + 3h, projection h^2 + h, MLP (d_ff = 4h) 4h^2 + 4h and 4h^2 + h,
    # two LayerNorms 2 x 2h: 12 h^2 + 13 h.  Embeddings (V + s) h, the head tied.  So
    # P = 12 l h^2 + 13 l h + (V + s) h = 12 l h^2 (1 + 13/(12h) + (V + s)/(12 l h)) -- eq. 2,
    # which leaves out the final LayerNorm's 2h.
    gpt = lc.architecture("gpt", d_ff=4 * h)
    eq2 = 12 * n_layer * h**2 * (1 + sympy.Rational(13, 12) / h + (V + s) / (12 * n_layer * h))
    assert same(gpt.params - eq2, 2 * h)
    block = sum(
        p
        for name, (p, _) in gpt.breakdown("torch").items()
        if name.startswith(("attention.", "mlp."))
    )
    assert same(block, n_layer * (12 * h**2 + 13 * h))


# Megatron-LM Table 1: (billions of parameters as published, heads, hidden size h, layers l),
# with the vocabulary V = 51,200 and sequence length s = 2048 its caption states.
MEGATRON_TABLE_1 = [
    ("1.7", 24, 2304, 24),
    ("3.6", 32, 3072, 30),
    ("7.5", 32, 4096, 36),
    ("18.4", 48, 6144, 40),
    ("39.1", 64, 8192, 48),
    ("76.1", 80, 10240, 60),
    ("145.6", 96, 12288, 80),
    ("310.1", 128, 16384, 96),
    ("529.6", 128, 20480, 105),
    ("1008.0", 160, 25600, 128),
]


@pytest.mark.parametrize(("published", "heads", "hidden", "layers"), MEGATRON_TABLE_1)
def test_megatron_table_1_parameters_follow_eq2(published, heads, hidden, layers):
    hp = dict(
        d_model=hidden, n_layer=layers, n_head=heads, d_ff=4 * hidden, vocab=51200, n_ctx=2048
    )
    params = lc.architecture("gpt", **hp).params
    eq2 = 12 * layers * hidden**2 + 13 * layers * hidden + (51200 + 2048) * hidden
    assert params == eq2 + 2 * hidden  # the final LayerNorm
    # both round to the published count, in billions to one decimal
    for count in (eq2, params):
        assert abs(Fraction(count, 10**9) - Fraction(published)) <= Fraction(1, 20)


def test_megatron_eq3_flops_per_iteration():
    # Forward, per layer (torch: 2 per multiply-add; d_ff = 4h): qkv 6 B s h^2, projection
    # 2 B s h^2, MLP 16 B s h^2, scores and values 2 B s^2 h each: 24 B s h^2 + 4 B s^2 h.
    # With backward = 2 x forward and one extra forward to recompute the activations, each
    # layer runs 4 forwards' worth: 96 B s l h^2 + 16 B s^2 l h.  The logits (2 B s h V) are
    # not recomputed: 3 x 2 B s h V.  Together eq. 3,
    # F = 96 B s l h^2 (1 + s/(6h) + V/(16 l h)).
    gpt = lc.architecture("gpt", d_ff=4 * h)
    forward = gpt.cost("torch")
    logits = gpt.breakdown("torch")["head"][1]
    assert same(logits, 2 * B * s * h * V)
    assert same(forward - logits, n_layer * (24 * B * s * h**2 + 4 * B * s**2 * h))
    eq3 = 96 * B * s * n_layer * h**2 * (1 + s / (6 * h) + V / (16 * n_layer * h))
    assert same(4 * (forward - logits) + 3 * logits, eq3)
    # no product is left out: the LayerNorms, softmax, embeddings and biases are 0 in torch
    assert same(eq3 - 4 * forward + logits, 0)


# -- Chowdhery et al. 2022 (PaLM), Appendix B ----------------------------------------------------


def test_palm_model_flops_per_token():
    # Model FLOPs per token of training = 6N + 12 L H Q T (L layers, H heads, Q head size,
    # T sequence length): 6N for the products with the N weights (2 forward, 4 backward), and
    # 6 L H (2 Q T) for the attention's two products of each query with T keys and values.
    # N is the number of weights in products: every matrix, the output projection included
    # (for a tied head, the embedding matrix once); not the lookups' tables, biases or norms.
    Q = d / n_head
    # Llama (PaLM-like: SwiGLU, no biases; n_kv_head = 1 is PaLM's multi-query attention):
    llama = lc.architecture("llama")
    kv = n_kv * Q
    n_mm = n_layer * (d * d + 2 * d * kv + d * d + 3 * d * d_ff) + d * vocab
    assert same(llama.params - n_mm, vocab * d + (2 * n_layer + 1) * d)  # table, RMSNorms
    assert same(3 * per_token(llama.cost("torch")), 6 * n_mm + 12 * n_layer * n_head * Q * n_ctx)
    # GPT-2 (tied head, biases, LayerNorms, learned positions):
    gpt = lc.architecture("gpt")
    n_mm = n_layer * (4 * d * d + 2 * d * d_ff) + d * vocab
    assert same(gpt.params - n_mm, n_ctx * d + n_layer * (9 * d + d_ff) + 2 * d)
    assert same(3 * per_token(gpt.cost("torch")), 6 * n_mm + 12 * n_layer * n_head * Q * n_ctx)


def test_palm_540b_model_flops_utilization():
    # Appendix B's example: PaLM 540B (N = 540.35e9, L = 118, H = 48, Q = 256, T = 2048) at
    # 238.3K tokens/s on 6144 TPU v4 chips (275 TFLOP/s peak each) has MFU 46.2%:
    # (6 N + 12 L H Q T) = 3.2421e12 + 3.5635e10 FLOPs per token; x 238.3e3 / 1.6896e18.
    per_tok = 6 * Fraction(54035, 100) * 10**9 + 12 * 118 * 48 * 256 * 2048
    mfu = per_tok * Fraction(2383, 10) * 1000 / (6144 * 275 * 10**12)
    assert abs(mfu - Fraction(462, 1000)) < Fraction(5, 10000)


# -- Hoffmann et al. 2022 (Chinchilla), Appendix F -----------------------------------------------


def test_chinchilla_appendix_f_components():
    # Forward FLOPs of one sequence (seq_len = n_ctx, key_size x num_heads = d_model,
    # ffw_size = d_ff), per component, against the architecture's parts (torch convention):
    gpt = lc.architecture("gpt").at(N=1)
    torch_ = gpt.breakdown("torch")
    exact = gpt.breakdown("exact")
    kq_h = d  # key_size x num_heads

    def part(*names, table=torch_):
        return sum(table[name][1] for name in names)

    per_layer = {  # the paper's single-layer attention and dense block
        "qkv": 2 * 3 * n_ctx * d * kq_h,
        "logits": 2 * n_ctx * n_ctx * kq_h,
        "softmax": 3 * n_head * n_ctx * n_ctx,
        "reduce": 2 * n_ctx * n_ctx * kq_h,
        "final_linear": 2 * n_ctx * kq_h * d,
        "dense": 2 * n_ctx * (d * d_ff + d * d_ff),
    }
    embeddings = 2 * n_ctx * vocab * d
    final_logits = 2 * n_ctx * d * vocab

    assert same(part("attention.qkv"), n_layer * per_layer["qkv"])
    assert same(part("attention.scores"), n_layer * per_layer["logits"])
    assert same(part("attention.values"), n_layer * per_layer["reduce"])
    assert same(part("attention.project"), n_layer * per_layer["final_linear"])
    assert same(part("mlp.up", "mlp.down"), n_layer * per_layer["dense"])
    assert same(part("head"), final_logits)
    # Embeddings: the paper counts the lookup as a one-hot product, 2 seq_len vocab d_model;
    # a lookup is data movement (0 in torch and in exact).
    assert part("embedding.tokens", "embedding.positions") == 0
    # Softmax at 3 per element (exp, sum, divide): no product, so 0 in torch; every scalar
    # operation of torch's _safe_softmax is 8 n_ctx - 3 per row of n_ctx (amax n_ctx - 1, sub,
    # exp, sum n_ctx - 1, div; then the all-masked check eq, all n_ctx - 1, where), n_head
    # n_ctx rows per layer: n_head n_ctx (5 n_ctx - 3) more than the paper's count.
    assert part("attention.softmax") == 0
    softmax = part("attention.softmax", table=exact)
    assert same(
        softmax - n_layer * per_layer["softmax"], n_layer * n_head * n_ctx * (5 * n_ctx - 3)
    )

    # Total forward = embeddings + num_layers (attention + dense) + logits; the architecture's
    # products are that, without the embedding's one-hot product and the softmax:
    paper_total = embeddings + n_layer * sum(per_layer.values()) + final_logits
    assert same(paper_total - gpt.cost("torch"), embeddings + n_layer * per_layer["softmax"])


# -- Korthikanti et al. 2022: activation memory per transformer layer ----------------------------


def test_korthikanti_activation_memory_beside_what_torch_saves_for_a_gpt_block():
    # The paper (section 4.1): a layer keeps s*b*h*(34 + 5*a*s/h) bytes, stated verbatim as the
    # convention korthikanti of TransformerEncoderLayer's saved bytes.  Beside it, what autograd
    # keeps for one GPT-2 block (bfloat16, training, dropout on, erf GELU as the paper's), traced
    # by lc.analyze and equal to torch's own count of the whole model
    s, b = lc.symbols("L N")
    h, a = 64, 4
    paper = lc.rule("TransformerEncoderLayer").quantity("saved", "korthikanti")
    paper = paper.xreplace(dict(zip(lc.symbols("S N E h"), (s, b, h, a), strict=True)))
    assert same(paper, 34 * s * b * h + 5 * a * s**2 * b)
    config = transformers.GPT2Config(
        n_layer=1,
        n_embd=h,
        n_head=a,
        vocab_size=50,
        activation_function="gelu",
        bos_token_id=0,
        eos_token_id=0,
    )
    model = transformers.GPT2LMHeadModel(config).to(torch.bfloat16).train()
    analysis = lc.analyze(model, ("N", "L"), training=True)
    ids = torch.randint(0, 50, (2, 7))
    whole = lc.count(model, ids, training=True).quantity("saved")
    assert lc.evaluate(analysis.quantity("saved"), {"N": 2, "L": 7}) == whole
    block = sympy.Add(
        *(x.quantity("saved") for x in analysis.layers if x.name.startswith("transformer.h.0."))
    )
    # The difference: torch's math attention on the CPU computes a 16-bit input in float32
    # (Q, K, V at 4 bytes: +6sbh; the probabilities, the dropout output and its noise at 4
    # bytes each, 12 per score against the paper's 5: +7as^2b); CPU dropout keeps its noise in
    # the input's dtype, 2 bytes, not a 1-byte mask (+sbh for each of the two outside
    # attention); each LayerNorm keeps a mean and a reciprocal standard deviation per token,
    # 2 bytes each, which the paper leaves out (+8sb)
    assert same(block - paper, 7 * a * s**2 * b + 8 * s * b * h + 8 * s * b)
