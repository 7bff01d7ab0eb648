"""The model zoo as a test corpus (issue 17): build real models, analyse them, check them.

``python -m layercost_sym.torchtools.corpus timm|transformers [--limit K] [--family PREFIX]
[--max-params M] [--per-module] [--jobs J] [--timeout S] [--out docs/corpus.md]
[--results FILE.jsonl] [--shard I/K] [--report-only]`` builds each
model with random weights (timm ``create_model(name, pretrained=False)``, transformers from
small configs: :data:`TRANSFORMERS`), analyses it with symbolic input sizes
(``("N", 3, "H", "W")``; ``input_ids=("N", "L")``) and checks params and the ``exact`` and
``torch`` costs against ``lc.count`` (the exact op counter and FlopCounterMode on a real run) at
two shapes: the model's default size, and a non-square odd one where the model runs at it (a
pinned dimension keeps its pinned value).  :func:`check` does one model and returns a
:class:`Record`; the tests reuse it on a fixed sample (``tests/test_corpus.py``).

A model's status is ``symbolic`` (closed form in every input size), ``pinned`` (some sizes
pinned: :attr:`Analysis.pinned`), ``concrete only`` (no symbolic trace; the analysis at the
default shape works) or ``failed``; ``skipped`` above ``--max-params``.  Each refusal or
failure gets a cause (:data:`CAUSES`, issue 17's numbers).  A number the analysis returns
that differs from torch while it lists nothing unsupported is *silently wrong*
(:attr:`Record.wrong`): the goal is none.

(Over 500 lines by design: the runner's parts, checking one model, the pool, the records file
and the report, are one command's; the models and how each is fed are in corpus_models.py.)

>>> classify("Input height (H) should be divisible by patch size (16).")
'2'
>>> classify("cannot trace M: Could not guard on data-dependent expression Eq(u0, 0)")
'5'
>>> classify("bottleneck_attn.py:165: _assert(H == self.pos_embed.height, '') (AssertionError)")
'1'
>>> classify("halo_attn.py:208: _assert(H % self.block_size == 0, '') (AssertionError)")
'2'
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..domain import without_domain
from .corpus_models import TRANSFORMERS, Subject, build, timm_params

__all__ = ["CAUSES", "Record", "check", "classify", "main", "report", "run"]

CAUSES = {
    "1": "the model accepts one input size (asserts it)",
    "2": "sizes must be divisible by a patch or stride",
    "3": "a torch operation needs concrete sizes",
    "4": "a guard refuses a shape where another branch runs (formula wrong there)",
    "5": "data-dependent control flow",
    "6": "a module or operator without a rule (uncounted work)",
    "7": "a guard too strong (the formula is exact where it refuses)",
    "mismatch": "two sizes the model joins differ at the traced sizes (it needs divisible sizes "
    "or one size)",
    "specialised": "torch made a size an int while tracing (the model branches on it)",
    "wrong": "a number differs from torch, nothing listed unsupported (silently wrong)",
    "timeout": "over the per-model time limit",
    "build": "the model does not build offline from its config",
    "run": "the model does not run eagerly at its default size",
    "counter": "the exact op counter has no rule for an operator the model runs (no reference)",
    "value": "work that depends on the values (a router's topk): exact is not stated; params "
    "and torch are checked (FlopCounterMode, which counts none for it)",
    "package": "an error raised by layercost_sym itself",
    "other": "another trace failure (detail in the table)",
}

_RULES = [  # (pattern, cause), first match wins
    (r"divisible|multiple of|% *[\w.]+ *== *0", "2"),
    (r"data.dependent|GuardOnDataDependent|Eq\(u\d", "5"),
    (r"broadcast|must match the size|Mismatching", "mismatch"),
    (r"torch specialised", "specialised"),
    (r"concrete|fails with .* symbolic|SymInt|symbolic sizes|specialized", "3"),
    (r"doesn't match|does not match|Wrong image|expects|Expected|must be|should be", "1"),
    # a bare assert of the model's own, its line quoted: a size equal to the model's own
    (r"assert.*==.*\(AssertionError\)$", "1"),
]


def classify(text: str) -> str:
    """The cause (a key of :data:`CAUSES`) a failure's or a pin's text points to."""
    for pattern, cause in _RULES:
        if re.search(pattern, text):
            return cause
    return "other"


@dataclass
class Record:
    """One model's result; ``shapes`` holds per checked shape ``"ok"``, ``"refused: ..."``,
    ``"wrong: ..."`` or ``"model refuses"``."""

    source: str
    name: str
    params: int | None = None
    status: str = "failed"
    pinned: dict[str, int] = field(default_factory=dict)
    cause: str = ""
    detail: str = ""
    concrete: str = ""  # "equal", "differs: ...", "failed: ..."
    shapes: dict[str, str] = field(default_factory=dict)
    wrong: int = 0  # numbers returned that differ from torch, nothing listed unsupported
    unsupported: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def exact_at_both(self) -> bool:
        """Symbolic or pinned, and exact (params, exact, torch) at both shapes."""
        return (
            self.status in ("symbolic", "pinned")
            and len(self.shapes) == 2
            and all(v == "ok" for v in self.shapes.values())
        )


# -- checking one model --------------------------------------------------------------------------


class _Timeout(BaseException):  # not caught by the retries of analyze
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _Timeout


def _first_line(error: BaseException, limit: int = 160) -> str:
    text = (str(error) or type(error).__name__).strip().splitlines()
    line = text[0] if text else type(error).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


# operators whose work depends on the values, not the sizes (the comparisons of a selection):
# no rule states them, the analysis lists them, and FlopCounterMode counts none for them
VALUE_DEPENDENT = ("aten.topk.default",)


def _value_dependent(unsupported: Sequence[Any]) -> bool:
    """Whether all the analysis leaves uncounted is :data:`VALUE_DEPENDENT` work: those
    operators, and the modules listed for running them (a MoE router)."""
    ops = {u.what for u in unsupported if u.kind == "op"}
    short = {op.split(".")[1] for op in VALUE_DEPENDENT}  # a module's detail names "topk"
    modules = [u.detail.rpartition(" except ")[2] for u in unsupported if u.kind == "module"]
    return (
        bool(ops)
        and ops <= set(VALUE_DEPENDENT)
        and all(set(m.split(", ")) <= short for m in modules)
    )


def _measure(subject: Subject, sizes: Mapping[str, int]) -> dict[str, int]:
    """params, exact and torch of one real run at ``sizes``; params and torch only where the
    model runs a :data:`VALUE_DEPENDENT` operator, which the exact counter refuses."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    import layercost_sym as lc

    from .experts import batched_experts
    from .patches import math_sdpa

    positional, keywords = subject.inputs(sizes)
    # one call first: a model that builds a cache on its first call at a size (convit's
    # rel_indices) does less on every later one, and the later ones are what is measured
    with torch.no_grad():
        subject.model(*positional, **keywords)
    recurrent = any(isinstance(m, torch.nn.RNNBase) for m in subject.model.modules())
    # FlopCounterMode counts LSTM's fused CPU kernel as 0; torch's non-fused path, which it
    # sees, does the same arithmetic (the exact counter counts both alike).  MoE experts run
    # as the analysis traces them (batched_mm: grouped_mm counts 0 on CPU)
    with warnings.catch_warnings(), batched_experts(subject.model):
        warnings.filterwarnings("ignore", "TF32 acceleration on top of oneDNN")
        with torch.backends.mkldnn.flags(enabled=not recurrent):
            try:
                counted = lc.count(subject.model, *positional, **keywords)
            except lc.UncountedOpError as error:
                if not any(op in str(error) for op in VALUE_DEPENDENT):
                    raise
                flops = FlopCounterMode(display=False)
                with torch.no_grad(), math_sdpa(), flops:
                    subject.model(*positional, **keywords)
                params = sum(p.numel() for p in subject.model.parameters())
                return {"params": params, "torch": flops.get_total_flops()}
    return {
        "params": counted.params,
        "exact": counted.cost("exact"),
        "torch": counted.cost("torch"),
    }


def _compare(analysis: Any, sizes: Mapping[str, int], measured: Mapping[str, int]) -> str:
    """``"ok"``, ``"refused (cause): guard"`` or ``"wrong: ..."`` at ``sizes``."""
    import layercost_sym as lc

    got: dict[str, int] = {}
    try:
        for key in measured:
            quantity, convention = ("params", None) if key == "params" else ("flops", key)
            got[key] = analysis.evaluate(sizes, convention, quantity=quantity)
    except lc.EvaluationError as refusal:
        bare = {}
        try:  # what the closed form would have said there: right (7) or not (4)
            for key in measured:
                q, c = ("params", None) if key == "params" else ("flops", key)
                bare[key] = lc.evaluate(without_domain(analysis.quantity(q, c)), sizes)
        except lc.EvaluationError:
            pass
        cause = "7" if bare == dict(measured) else "4"
        return f"refused ({cause}): {_first_line(refusal, 120)}"
    if got == dict(measured):
        return "ok"
    diffs = ", ".join(f"{k} {got[k]} vs {v}" for k, v in measured.items() if got[k] != v)
    return f"wrong: {diffs}"


def check(source: str, name: str, max_params: int | None = None, timeout: float = 0) -> Record:
    """Build, analyse and check one model (see the module docstring); never raises for a
    model's fault: the record says what happened.  ``timeout`` (seconds, 0: none) uses
    SIGALRM, so it applies in a main thread only."""
    start = time.monotonic()
    record = Record(source, name)
    if timeout:
        signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        _check(record, max_params)
    except _Timeout:
        record.status, record.cause, record.detail = "failed", "timeout", f"over {timeout:g} s"
    except Exception as error:  # this package's fault (a model's are caught where they occur)
        record.status, record.cause = "failed", "package"
        record.detail = f"{type(error).__name__}: {_first_line(error)}"
    finally:
        if timeout:
            signal.setitimer(signal.ITIMER_REAL, 0)
        record.seconds = round(time.monotonic() - start, 1)
    return record


def _check(record: Record, max_params: int | None) -> None:
    import layercost_sym as lc

    if record.source == "timm" and max_params is not None:
        record.params = timm_params(record.name)
        if record.params > max_params:
            record.status, record.detail = "skipped", f"over {max_params} parameters"
            return
    try:
        subject = build(record.source, record.name)
    except Exception as error:
        record.cause, record.detail = "build", _first_line(error)
        return
    record.params = sum(p.numel() for p in subject.model.parameters())
    try:
        default = _measure(subject, subject.default)
    except lc.UncountedOpError as error:
        record.cause, record.detail = "counter", _first_line(error)
        return
    except Exception as error:
        record.cause, record.detail = "run", _first_line(error)
        return
    concrete_specs = {
        k: tuple(subject.default[d] if isinstance(d, str) else d for d in spec)
        for k, spec in subject.specs.items()
    }
    try:
        concrete = _analyze(subject, concrete_specs)
        verdict = _compare(concrete, {}, default)
        record.concrete = "equal" if verdict == "ok" else verdict
    except lc.TraceError as error:
        record.concrete = f"failed: {_first_line(error)}"
    try:
        analysis = _analyze(subject, subject.specs)
    except lc.TraceError as error:
        text = _first_line(error, 200)
        record.status = "concrete only" if record.concrete == "equal" else "failed"
        record.cause, record.detail = classify(text), text
        return
    except lc.LayercostError as error:
        record.cause, record.detail = "package", f"{type(error).__name__}: {_first_line(error)}"
        return
    record.unsupported = sorted({u.what for u in analysis.unsupported})
    value = _value_dependent(analysis.unsupported)  # uncounted, but none of it torch's
    record.pinned = {n: v for n, (v, _) in analysis.pinned.items()}
    record.status = "pinned" if record.pinned else "symbolic"
    notes = dict.fromkeys(note for _, note in analysis.pinned.values())
    if notes:
        record.cause = classify(" ".join(notes))
        record.detail = "; ".join(notes)
    sizes = [subject.default, *subject.second]
    for label, candidates in (("default", sizes[:1]), ("second", sizes[1:])):
        for candidate in candidates:
            at = {**candidate, **record.pinned}
            try:
                measured = default if at == subject.default else _measure(subject, at)
            except Exception:
                continue  # the model does not run at this size: the next candidate
            verdict = _compare(analysis, at, measured)
            record.shapes[f"{label} " + ",".join(f"{k}={v}" for k, v in at.items())] = verdict
            uncounted = record.unsupported and not value
            if verdict.startswith("wrong") and not uncounted:
                record.wrong += 1
            break
    if record.unsupported:  # uncounted work, listed by the analysis
        listed = "unsupported: " + ", ".join(record.unsupported)
        record.cause, record.detail = (
            record.cause or ("value" if value else "6"),
            "; ".join(filter(None, [listed, record.detail])),
        )
    refused = [v for v in record.shapes.values() if v != "ok"]
    if refused and not record.cause:
        record.cause = refused[0][9:10] if refused[0].startswith("refused") else "wrong"
        record.detail = refused[0]


def _analyze(subject: Subject, specs: Mapping[str, tuple]) -> Any:
    import layercost_sym as lc

    positional = [spec for key, spec in specs.items() if not key]
    keywords: dict[str, Any] = {key: spec for key, spec in specs.items() if key}
    return lc.analyze(subject.model, *positional, **keywords, **subject.options)


# -- many models: selection, a process pool, the report -----------------------------------------


_SMALL = re.compile(r"atto|femto|pico|nano|tiny|xxs|xs|small|mini|lite|_t$|_s\d|18|b0|_s$")


def names(source: str, family: str | None = None, per_module: bool = False) -> list[str]:
    """The models of ``source`` whose names start with ``family``; ``per_module``: one per
    timm module, a small one by its name (a size word such as ``tiny``, then the shortest;
    not timm's ``test_*`` models).

    >>> names("transformers", "gpt")
    ['gpt2', 'gpt_neox', 'gptj']
    """
    if source == "transformers":
        return [n for n in TRANSFORMERS if n.startswith(family or "")]
    import timm

    if not per_module:
        return [n for n in timm.list_models() if n.startswith(family or "")]
    chosen = []
    for module in timm.list_modules():
        found = [n for n in timm.list_models(module=module) if n.startswith(family or "")]
        found = [n for n in found if not n.startswith("test_")]
        if found:
            chosen.append(min(found, key=lambda n: (not _SMALL.search(n), len(n), n)))
    return chosen


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)  # a shared machine: one core per worker


def run(
    source: str,
    models: Sequence[str],
    *,
    max_params: int | None = 100_000_000,
    jobs: int = 2,
    timeout: float = 120,
    progress: Callable[[str], None] = lambda text: print(text, file=sys.stderr, flush=True),
    on_record: Callable[[list[Record]], None] | None = None,
    checker: Callable[..., Record] = check,
) -> list[Record]:
    """Check ``models`` in pools of ``jobs`` spawned processes, ``8 * jobs`` models a pool
    (memory stays bounded); a pool a process dies in is run again one model a pool, so a
    process that dies (out of memory) takes only its own model with it, as ``failed``.
    ``checker`` is :func:`check` or a module-level function with its signature."""
    records: dict[str, Record] = {}
    start = time.monotonic()

    def report_one(name: str, record: Record) -> None:
        records[name] = record
        elapsed = time.monotonic() - start
        progress(
            f"[{len(records)}/{len(models)} {elapsed:.0f}s] {name}: {record.status}"
            + (f" ({record.cause})" if record.cause else "")
        )
        if on_record is not None:  # a partial report survives an interrupted run
            on_record([records[n] for n in models if n in records])

    def pool(group: Sequence[str], attempt: int) -> None:
        """Check ``group`` in one pool of ``jobs`` spawned processes; on the first attempt a
        model whose pool breaks is left for the retry."""
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed
        from concurrent.futures.process import BrokenProcessPool

        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(jobs, mp_context=context, initializer=_worker_init) as workers:
            futures = {workers.submit(checker, source, n, max_params, timeout): n for n in group}
            for future in as_completed(futures):
                name = futures[future]
                try:
                    record = future.result()
                except BrokenProcessPool:
                    if attempt == 0:
                        continue  # retried, one model a pool
                    record = Record(source, name, cause="other", detail="its process died")
                except Exception as error:  # not picklable, ...: the run goes on
                    record = Record(source, name, cause="other", detail=_first_line(error))
                report_one(name, record)

    # a fresh pool per batch bounds each process' memory (max_tasks_per_child hangs on 3.11
    # when it replaces a worker); a batch whose pool breaks is retried, one model a pool, so
    # that only the model whose process dies fails
    batches = [list(models[i : i + jobs * 8]) for i in range(0, len(models), jobs * 8)]
    for batch in batches:
        for attempt in range(2):
            pending = [n for n in batch if n not in records]
            if not pending:
                break
            for group in [pending] if attempt == 0 else [[n] for n in pending]:
                pool(group, attempt)
    return [records[n] for n in models if n in records]


def totals(records: Iterable[Record]) -> dict[str, Any]:
    """Counts by status and by cause, and the goals' figures."""
    records = list(records)
    ran = [
        r for r in records if r.status != "skipped" and r.cause not in ("build", "run", "counter")
    ]
    concrete = sum(r.concrete == "equal" for r in ran)
    both = sum(r.exact_at_both for r in ran)
    return {
        "status": Counter(r.status for r in records),
        "cause": Counter(r.cause for r in records if r.cause),
        "ran": len(ran),
        "concrete": concrete,
        "both": both,
        "wrong": sum(r.wrong for r in records),
    }


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}% ({part} of {whole})" if whole else "n/a"


def report(records: Sequence[Record], title: str, command: str, note: str = "") -> str:
    """The markdown report: the command, the goals' figures, the totals, one row per model."""
    t = totals(records)
    lines = [f"# {title}", "", f"Produced by `{command}`.", ""]
    if note:
        lines += [note, ""]
    value = t["cause"].get("value", 0)
    partly = f" ({value} of cause value: params and torch only)" if value else ""
    lines += [
        f"- models that build and run on CPU: {t['ran']}",
        "- concrete analysis equals torch and the exact counter: "
        + _percent(t["concrete"], t["ran"])
        + partly,
        "- symbolic or pinned, exact at both shapes (a pinned size keeps its value at the "
        f"second): {_percent(t['both'], t['ran'])}",
        f"- silently wrong numbers: {t['wrong']}",
        "",
        "| status | models |",
        "|---|---|",
        *(f"| {s} | {n} |" for s, n in sorted(t["status"].items())),
        "",
        "| cause | models | meaning |",
        "|---|---|---|",
        *(f"| {c} | {n} | {CAUSES.get(c, '')} |" for c, n in sorted(t["cause"].items())),
        "",
        "| source | model | params | status | pinned | concrete | default shape | second shape "
        "| cause | detail |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        pinned = ", ".join(f"{k}={v}" for k, v in r.pinned.items())
        shapes = [f"{k.partition(' ')[2] or k}: {v}" for k, v in r.shapes.items()] + ["", ""]
        cells = [r.source, r.name, str(r.params or ""), r.status, pinned, r.concrete]
        cells += [*shapes[:2], r.cause, r.detail]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


FULL_RUN = (
    "python -m layercost_sym.torchtools.corpus timm transformers --jobs 8 --out docs/corpus.md"
)


def _scope(models: str | None) -> str:
    """What the report covers: a sample, or the whole registry."""
    if not models:
        return "The whole registry of each source (up to --max-params)."
    return (
        f"A stratified sample, not the whole registry: the models listed in `{models}`. "
        f"The full run (every timm model up to 100M parameters and every transformers class "
        f"here; expect hours even on 8 cores): `{FULL_RUN}`."
    )


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for package in ("torch", "timm", "transformers"):
        try:
            found.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            continue
    return "Versions: " + ", ".join(found) + "." if found else ""


def load_results(path: str) -> dict[tuple[str, str], Record]:
    """The records of a ``--results`` file by ``(source, name)``; a later line for a model
    replaces an earlier one (a model checked again).  A missing file holds none.

    >>> load_results("/nonexistent/results.jsonl")
    {}
    """
    import os

    records: dict[tuple[str, str], Record] = {}
    if not os.path.exists(path):
        return records
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = Record(**json.loads(line))
            except (ValueError, TypeError) as error:
                raise ValueError(f"{path}:{number}: not a corpus record: {error}") from None
            records[record.source, record.name] = record
    return records


def _ordered(models: Sequence[str], *found: Mapping[str, Record] | Sequence[Record]) -> list:
    """The records of ``models`` in their order, from mappings by name or lists of records."""
    by_name: dict[str, Record] = {}
    for group in found:
        by_name.update(group if isinstance(group, Mapping) else {r.name: r for r in group})
    return [by_name[n] for n in models if n in by_name]


def _shard(text: str | None) -> tuple[int, int]:
    """``"I/K"`` -> (start, step) of the I-th of K shards; None -> every model.

    >>> _shard("2/4"), _shard(None)
    ((1, 4), (0, 1))
    """
    if not text:
        return 0, 1
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit() and 1 <= int(index) <= int(count)):
        raise SystemExit(f"--shard takes I/K with 1 <= I <= K, got {text!r}")
    return int(index) - 1, int(count)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m layercost_sym.torchtools.corpus")
    parser.add_argument("source", nargs="+", choices=("timm", "transformers"))
    parser.add_argument("--limit", type=int, help="the first K models only (of each source)")
    parser.add_argument("--family", help="models whose names start with this")
    parser.add_argument("--max-params", type=int, default=100_000_000)
    parser.add_argument("--per-module", action="store_true", help="timm: one model per module")
    parser.add_argument("--models", help="a file of the models to check: source:name a line")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=120, help="seconds per model")
    parser.add_argument("--out", help="write the markdown report here (default: stdout)")
    parser.add_argument("--note", default="", help="a paragraph for the report's head")
    parser.add_argument(
        "--results",
        help="a JSON-lines file of records: each model checked is appended as it finishes, and "
        "a model already there is not checked again (a long run resumes; runs on several "
        "machines are merged by concatenating their files)",
    )
    parser.add_argument(
        "--shard", help="I/K: every K-th model from the I-th (1-based), to split a run"
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="check nothing: the report of the --results file's records of the models chosen",
    )
    args = parser.parse_args(argv)
    if args.report_only and not args.results:
        parser.error("--report-only reads the records of --results")
    shard = _shard(args.shard)
    kept = load_results(args.results) if args.results else {}
    given = None
    if args.models:
        with open(args.models) as f:
            given = [line.strip().split(":", 1) for line in f if ":" in line]
    command = "python -m layercost_sym.torchtools.corpus " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    done: list[Record] = []
    note = " ".join(filter(None, [args.note, _scope(args.models), _versions()]))

    def write(records: list[Record]) -> None:
        text = report([*done, *records], "Corpus: " + ", ".join(args.source), command, note)
        if args.out:
            with open(args.out, "w") as f:
                f.write(text)

    from ..cache import catalogue

    catalogue()  # validated once here, read from the cache by every worker
    for source in args.source:
        if given is not None:
            models = [name for where, name in given if where == source]
        else:
            models = names(source, args.family, args.per_module)
        models = models[: args.limit][shard[0] :: shard[1]]
        earlier = {n: kept[source, n] for n in models if (source, n) in kept}
        written: set[str] = set()

        def keep(
            records: list[Record],
            models: list[str] = models,
            earlier: dict[str, Record] = earlier,
            written: set[str] = written,
        ) -> None:
            if args.results:
                with open(args.results, "a") as f:
                    for record in records:
                        if record.name not in written:
                            written.add(record.name)
                            f.write(json.dumps(asdict(record)) + "\n")
            write(_ordered(models, earlier, records))

        new = run(
            source,
            [] if args.report_only else [n for n in models if n not in earlier],
            max_params=args.max_params,
            jobs=args.jobs,
            timeout=args.timeout,
            on_record=keep,
        )
        done += _ordered(models, earlier, new)
    write([])
    if not args.out:
        print(report(done, "Corpus: " + ", ".join(args.source), command, note), end="")
    return 0 if totals(done)["wrong"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
