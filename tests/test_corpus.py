"""The corpus runner (issue 17) on a fixed stratified sample: each model goes through the
runner's own :func:`~layercost_sym.torchtools.corpus.check`, which builds it with random weights,
analyses it with symbolic sizes and compares params and the ``exact`` and ``torch`` costs with
``lc.count`` (the exact op counter and FlopCounterMode on a real run) at the default shape and
at a second one.  The sample spans the statuses: symbolic, pinned (by the model's own check,
cause 1; by a torch operation that needs ints, cause 3) and failed with a named cause.  The
full runs are ``python -m layercost_sym.torchtools.corpus`` (docs/corpus.md)."""

from __future__ import annotations

from functools import cache

import pytest

from layercost_sym.torchtools import corpus
from layercost_sym.torchtools.corpus import Record, check, classify, report, totals


@cache
def record(source: str, name: str) -> Record:
    return check(source, name, max_params=100_000_000)


def assert_exact(r: Record) -> None:
    """Exact at both shapes (params, exact, torch), the concrete analysis too, nothing wrong."""
    assert r.concrete == "equal", r
    assert r.wrong == 0 and not r.unsupported, r
    assert len(r.shapes) == 2 and set(r.shapes.values()) == {"ok"}, r.shapes
    assert r.exact_at_both


@pytest.mark.parametrize(
    ("source", "name", "second"),
    [
        ("transformers", "gpt2", "N=2,L=13"),  # a causal LM: N and L symbolic
        ("transformers", "bert", "N=2,L=13"),  # an encoder
        ("timm", "test_resnet", "N=2,H=161,W=169"),  # convolutions, odd non-square sides
    ],
)
def test_symbolic_models_are_exact_at_both_shapes(source, name, second):
    r = record(source, name)
    assert r.status == "symbolic" and r.pinned == {} and r.cause == ""
    assert_exact(r)
    assert any(key.endswith(second) for key in r.shapes), r.shapes


@pytest.mark.parametrize(
    ("source", "name", "pinned", "cause", "where"),
    [
        # the model raises "Input image size (H*W) doesn't match model (64*64)." itself
        ("transformers", "vit", {"H": 64, "W": 64}, "1", "modeling_vit.py"),
        # resampling the position table to a symbolic grid needs ints (F.interpolate)
        ("timm", "test_vit", {"H": 160, "W": 160}, "3", "timm/layers/pos_embed.py"),
    ],
)
def test_pinned_models_name_the_dims_the_cause_and_the_code(source, name, pinned, cause, where):
    r = record(source, name)
    assert r.status == "pinned" and r.pinned == pinned
    assert r.cause == cause and where in r.detail and not r.detail.startswith("/")
    assert_exact(r)
    # the second shape keeps the pinned sides and changes the batch
    assert any(key.startswith("second N=2") for key in r.shapes), r.shapes


def test_a_router_s_topk_is_value_dependent_and_the_rest_is_checked():
    # Qwen2-MoE routes tokens with topk, whose comparisons depend on the values: no rule states
    # it and the exact op counter refuses it (the record said "counter": no reference).  The
    # analysis lists it; params and torch (FlopCounterMode, which counts none for topk, the
    # experts run as batched_mm as the trace runs them) are checked at both shapes
    r = record("transformers", "qwen2_moe")
    assert r.status == "symbolic" and r.cause == "value" and r.concrete == "equal", r
    assert "aten.topk.default" in r.unsupported and r.exact_at_both and r.wrong == 0
    assert r.params == sum(
        p.numel() for p in corpus.build("transformers", "qwen2_moe").model.parameters()
    )


def test_only_value_dependent_work_is_value_dependent():
    from layercost_sym.torchtools.analysis import Unsupported

    topk = Unsupported("gate:topk", "op", "aten.topk.default", "no functional rule", False)
    router = Unsupported("gate", "module", "R", "... by the functional rules except topk", False)
    other = Unsupported("m:max", "op", "aten.max.dim", "no functional rule", False)
    assert corpus._value_dependent([topk, router])
    assert not corpus._value_dependent([topk, other])  # uncounted work beside topk: cause 6
    assert not corpus._value_dependent([router])  # a module's own listing, no topk call
    both = Unsupported("m", "module", "M", "... by the functional rules except max, topk", False)
    assert not corpus._value_dependent([topk, both])


def test_max_params_skips_from_a_meta_build():
    r = check("timm", "test_resnet", max_params=1000)
    assert r.status == "skipped" and r.params is not None and r.params > 1000
    assert r.params == record("timm", "test_resnet").params  # the meta build's count is numel's


def test_the_pool_runs_a_model_and_writes_the_report(tmp_path, capsys):
    out = tmp_path / "corpus.md"
    # no time limit: a spawned process imports torch and transformers first (slow when busy)
    argv = ["transformers", "--family", "resnet", "--jobs", "1", "--timeout", "0"]
    results = tmp_path / "results.jsonl"
    argv += ["--out", str(out), "--results", str(results)]
    assert corpus.main(argv) == 0
    text = out.read_text()
    assert "| transformers | resnet |" in text and "| symbolic |" in text
    assert "silently wrong numbers: 0" in text
    assert (
        "exact at both shapes (a pinned size keeps its value at the second): 100% (1 of 1)" in text
    )
    assert "[1/1 " in capsys.readouterr().err  # the progress line
    # the record was appended to the results; run again, the model is read back, not checked
    (kept,) = corpus.load_results(str(results)).values()
    assert kept.name == "resnet" and kept.status == "symbolic" and kept.exact_at_both
    out.unlink()
    assert corpus.main(argv) == 0
    assert "[1/" not in capsys.readouterr().err  # nothing checked
    assert out.read_text().split("Produced by")[1] == text.split("Produced by")[1]
    assert len(results.read_text().splitlines()) == 1
    out.unlink()  # the report alone, from the records
    assert corpus.main([*argv, "--report-only"]) == 0
    assert out.read_text().split("Produced by")[1].startswith(text.split("Produced by")[1][:40])
    assert "| transformers | resnet |" in out.read_text()
    # a second shard of one model holds none; a broken line names its file and line
    assert corpus._shard("2/2") == (1, 2)
    results.write_text(results.read_text() + "{not json\n")
    with pytest.raises(ValueError, match=r"results\.jsonl:2: not a corpus record"):
        corpus.load_results(str(results))


def test_causes_are_read_from_the_failure_text():
    assert classify("Input height (H) doesn't match model (224).") == "1"
    assert classify("Input height (227) should be divisible by patch size (16).") == "2"
    assert classify("F.pad(x, p) fails with W symbolic (torch: SymIntArrayRef expected") == "3"
    assert classify("GuardOnDataDependentSymNode: Could not guard on Eq(u0, 0)") == "5"
    # DLA's residual add at 227 x 229: its two branches' floors differ
    text = "out += shortcut fails with H, W symbolic (torch: Attempting to broadcast a dimension"
    assert classify(text) == "mismatch"
    assert classify("something else entirely") == "other"


def test_totals_count_a_wrong_number_and_the_goals():
    both = {"default N=1,H=8,W=8": "ok", "second N=2,H=9,W=11": "ok"}
    ok = Record("timm", "a", 10, "symbolic", concrete="equal", shapes=both)
    pinned = Record("timm", "b", 10, "pinned", {"H": 224}, "1", concrete="equal")
    pinned.shapes = {**both, "second N=2,H=9,W=11": "refused (7): guard H >= 9 fails at H=8"}
    wrong = Record(
        "timm", "c", 10, "symbolic", concrete="equal", shapes={"default N=1": "wrong: x"}
    )
    wrong.wrong = 1
    built = Record("transformers", "d", cause="build")
    t = totals([ok, pinned, wrong, built])
    assert (t["ran"], t["concrete"], t["both"], t["wrong"]) == (3, 3, 1, 1)
    text = report([ok, pinned, wrong, built], "Corpus", "cmd")
    assert "silently wrong numbers: 1" in text and "| b | 10 | pinned | H=224 |" in text
    assert "at the second): 33% (1 of 3)" in text
    assert "| N=2,H=9,W=11: refused (7): guard H >= 9 fails at H=8 |" in text


def test_a_refusal_is_told_apart_from_a_wrong_number_by_the_bare_formula():
    import torch

    import layercost_sym as lc

    analysis = lc.analyze(torch.nn.Conv2d(3, 4, 5, padding=1), ("N", 3, "H", "W"))
    inside = {"N": 1, "H": 6, "W": 7}
    counted = lc.count(torch.nn.Conv2d(3, 4, 5, padding=1), (1, 3, 6, 7))
    measured = {"params": counted.params, "exact": counted.cost("exact")}
    assert corpus._compare(analysis, inside, measured) == "ok"
    assert corpus._compare(analysis, inside, {**measured, "exact": 1}).startswith("wrong: exact")
    # H = 2 leaves no output row (5 > 2 + 2): refused; the formula without its guards says
    # 0 FLOPs and 304 params (4 * 3 * 5 * 5 + 4) there
    outside = {"N": 1, "H": 2, "W": 7}
    assert corpus._compare(analysis, outside, {"params": 304, "exact": 0}).startswith("refused (7)")
    assert corpus._compare(analysis, outside, {"params": 304, "exact": 5}).startswith("refused (4)")


@pytest.mark.parametrize(
    ("name", "shapes"),
    [
        # transformers' padding warning looks for the pad token in each row's first and last id
        # (eq of 2N ids, any) in a real run and skips that under tracing: was 3 short at N=1
        ("deberta_v2", [{"N": 1, "L": 32}, {"N": 2, "L": 13}]),
        # BART's decoder makes its padding mask of ones; a real run reads it (sum, eq) and gives
        # SDPA is_causal instead of a mask; the trace built the mask: 752 short at N=1, right
        # at N=2 by coincidence, 752 over at N=3
        (
            "bart",
            [{"N": 1, "L": 32, "T": 16}, {"N": 2, "L": 13, "T": 7}, {"N": 3, "L": 32, "T": 16}],
        ),
    ],
)
def test_branches_a_real_run_takes_by_reading_values_are_costed(name, shapes):
    import layercost_sym as lc
    from layercost_sym.torchtools.corpus_models import build

    subject = build("transformers", name)
    keywords = {key: spec for key, spec in subject.specs.items() if key}
    analysis = lc.analyze(subject.model, **keywords, **subject.options)
    for sizes in shapes:
        positional, inputs = subject.inputs(sizes)
        counted = lc.count(subject.model, *positional, **inputs)
        for convention in ("exact", "torch"):
            assert analysis.evaluate(sizes, convention) == counted.cost(convention), (
                sizes,
                convention,
            )


def test_a_model_that_builds_a_cache_on_its_first_call_is_measured_as_it_runs_after():
    # convit's GPSA builds rel_indices on its first call (a cache: every later call at that
    # size reuses it), and the corpus compared the analysis with that first call: "wrong" by
    # the cache's cost at N = 1. A call does what later calls do; the runner measures after one.
    import torch

    import layercost_sym as lc
    from layercost_sym.torchtools.corpus_models import Subject

    class Cached(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.table: torch.Tensor | None = None

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.table is None or self.table.shape[0] != x.shape[-1]:
                n = x.shape[-1]
                self.table = (torch.arange(n) ** 2).float().outer(torch.arange(n).float())
            return x @ self.table

    subject = Subject(Cached(), {"": ("N", "L")}, {"N": 2, "L": 5}, [])
    measured = corpus._measure(subject, {"N": 2, "L": 5})
    # (N, L) @ (L, L): 2*5*5 multiplies and 2*5*4 adds, exact 90; torch counts 2*N*L*L = 100
    assert measured["exact"] == 90 and measured["torch"] == 100
    again = lc.count(subject.model, torch.randn(2, 5))  # a later call: the cache is there
    assert (again.cost("exact"), again.cost("torch")) == (90, 100)


def test_a_recurrent_model_is_measured_where_flop_counter_sees_its_products():
    # FlopCounterMode counts LSTM's fused CPU kernel as 0 (sequencer2d was "wrong" by all its
    # LSTM products): the runner measures torch's non-fused path, the same arithmetic
    import torch

    import layercost_sym as lc
    from layercost_sym.torchtools.corpus_models import Subject

    lstm = torch.nn.LSTM(4, 3, batch_first=True)
    subject = Subject(lstm, {"": ("N", "L", 4)}, {"N": 2, "L": 5}, [])
    measured = corpus._measure(subject, {"N": 2, "L": 5})
    # per step and row, the two gate products: 2 * 4*H*(I + H) = 2 * 12 * 7 = 168 FLOPs
    assert measured["torch"] == 2 * 5 * 168
    assert measured["exact"] == lc.analyze(lstm, ("N", "L", 4)).evaluate({"N": 2, "L": 5})


def _dies_on_crash(source: str, name: str, max_params: int | None, timeout: float) -> Record:
    """A checker for the pool: the model named "crash" ends its process (as memory does)."""
    import os

    if name == "crash":
        os._exit(1)
    return Record(source, name, status="symbolic")


def test_a_process_that_dies_takes_only_its_own_model_with_it():
    # a pool whose process died was retried whole, and died again: one model out of memory
    # (efficientnet_b8 at 672 px) failed the 7 others of its pool as "its process died"
    records = corpus.run(
        "timm",
        ["crash", "fine", "also fine"],
        jobs=1,
        progress=lambda text: None,
        checker=_dies_on_crash,
    )
    assert [(r.name, r.status, r.detail) for r in records] == [
        ("crash", "failed", "its process died"),
        ("fine", "symbolic", ""),
        ("also fine", "symbolic", ""),
    ]


def test_second_shape_candidates_include_smaller_multiples_of_32():
    # mvitv2 sizes its relative-position tables for its default side: it runs at 192 x 160 but
    # not at 225 x 233 or 256 x 288, and was checked at one shape only; the third candidate is
    # below the default (where the sides leave room: above 96)
    import torch

    from layercost_sym.torchtools.corpus_models import _image_subject

    model = torch.nn.Identity()
    assert _image_subject(model, 3, 224, 224).second == [
        {"N": 2, "H": 225, "W": 233},
        {"N": 2, "H": 256, "W": 288},
        {"N": 2, "H": 192, "W": 160},
        # pit_b_224's guards hold for sides 224 to 231 only: it was checked at one shape
        {"N": 2, "H": 225, "W": 227},
    ]
    assert len(_image_subject(model, 3, 64, 64).second) == 3


def test_second_shapes_of_large_default_images_hold_about_the_default_s_pixels():
    # a batch of two near a large default holds twice its activations: samvit_base_patch16
    # (1024 x 1024) peaks at 10 GB at batch one, and its process died at batch two; above
    # 512 x 512 the sides are the default's over sqrt(2), rounded to 32 (1024 -> 736)
    import torch

    from layercost_sym.torchtools.corpus_models import _image_subject

    for h, w in [(1024, 1024), (672, 672), (600, 600), (448, 896)]:
        second = _image_subject(torch.nn.Identity(), 3, h, w).second
        for size in second:
            assert size["N"] == 2 and size["H"] != size["W"], size
            assert size["N"] * size["H"] * size["W"] <= 1.25 * h * w, (h, w, size)
        assert second[0]["H"] % 2 == 1 and second[0]["W"] % 2 == 1  # odd, non-square first
    assert _image_subject(torch.nn.Identity(), 3, 1024, 1024).second[1] == {
        "N": 2,
        "H": 736 + 32,
        "W": 736 + 64,
    }


def test_the_report_says_which_models_were_checked_without_exact():
    both = {"default N=1,L=32": "ok", "second N=2,L=13": "ok"}
    moe = Record("transformers", "mixtral", 10, "symbolic", cause="value", concrete="equal")
    moe.shapes = dict(both)
    text = corpus.report([moe], "t", "c")
    assert "100% (1 of 1) (1 of cause value: params and torch only)" in text
    assert "| value | 1 | work that depends on the values" in text
