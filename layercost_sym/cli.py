"""The ``layercost`` command line (also ``python -m layercost_sym``).

(Over 500 lines by design: the argument parser and one short function per command, so that
every command and its ``--help`` example are read in one place.)

>>> from layercost_sym.cli import main
>>> main(["eval", "Linear", "N=2", "C_in=3", "C_out=4"])
rule        Linear
convention  exact
params      16
cost        48
output      (2, 4)
0
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from . import rule as get_rule
from . import rules as rule_names
from .cache import catalogue
from .cards import card
from .errors import LayercostError, MissingSymbolError
from .evaluation import evaluate
from .glossary import glossary
from .hardware import format_hardware_table, hardware, hardwares
from .ledger import OPTIMIZERS
from .printing import latex
from .quantities import quantity
from .text import clip

__all__ = ["main"]

_EPILOG_LIST = "example:\n  layercost list\n  layercost list --json"
_EPILOG_SHOW = (
    "example:\n  layercost show Conv2d\n  layercost show Conv2d --convention macs --latex\n"
    "  layercost show BatchNorm2d --training --json"
)
_EPILOG_EVAL = (
    "example:\n  layercost eval Conv2d N=2 C_in=3 C_out=4 k=3 H=8 W=8\n"
    "  layercost eval Linear N=8 C_in=768 C_out=3072 b=0 --convention macs --json\n\n"
    "Symbols left out take torch's defaults where torch has one (stride 1, padding 0,\n"
    "dilation 1, groups 1, bias on); k=3 stands for k_h=3 and k_w=3."
)

_EPILOG_MODEL = (
    "example:\n  layercost model torchvision.models:resnet18 --input N,3,H,W --depth 1\n"
    "  layercost model torchvision.models:resnet18 --input N,3,H,W --at N=1,H=224,W=224 "
    "--convention macs\n"
    "  layercost model mypackage.models:build --input N,L --json\n"
    "  layercost model torchvision.models:vit_b_16 --input N,3,H,W --hint H=224,W=224\n"
    "  layercost model mymodels:t5 --input input_ids=N,L --input decoder_input_ids=N,T\n"
    "  layercost model torchvision.models:resnet50 --input N,3,H,W --at N=1,H=224,W=224 "
    "--hardware H100-SXM\n\n"
    "The model is built by calling the factory with no arguments (torchvision: weights=None);\n"
    "module is imported as python -m would, from the current directory too. Dimensions the\n"
    "model will not trace symbolically are pinned (printed as 'pinned: H = 224 (...)')."
)

_EPILOG_ARCH = (
    "example:\n  layercost arch\n  layercost arch gpt --convention torch\n"
    "  layercost arch gpt d_model=768 n_layer=12 n_head=12 d_ff=3072 vocab=50257 n_ctx=1024 "
    "--at N=1\n  layercost arch mobilenet_v2 --full\n  layercost arch resnet depth=50 --latex\n\n"
    "Hyperparameters left out stay symbols; the table lists each part's parameters and cost\n"
    "with like terms collected, the largest first, and beside each its value at the\n"
    "architecture's defaults (its reference model: GPT-2 small, 224-pixel inputs, ...).\n"
    "Formulas too long for a line are shortened to their leading terms; --full prints them\n"
    "whole, --json as text for layercost_sym.parse."
)
_ARCH_WIDTH = 180  # the widest line of `layercost arch NAME` without --full

_EPILOG_COMPARE = (
    "example:\n  layercost compare torchvision.models:resnet50 --input 1,3,224,224\n"
    "  layercost compare torchvision.models:resnet50 --input N,3,H,W --at N=1,H=224,W=224 "
    "--diff fvcore thop\n"
    "  layercost compare torchvision.models:vgg11 --input 1,3,224,224 "
    "--conventions macs,fvcore,ptflops --json\n\n"
    "Families: conv, linear, norm, activation, pooling, attention, other (see\n"
    "layercost_sym/torchtools/compare.py). The model is traced once; fvcore, thop and ptflops\n"
    "are the tools' own counting rules (formulas/conventions/), not the tools run."
)

_EPILOG_HARDWARE = (
    "example:\n  layercost hardware\n  layercost hardware H100-SXM a100-sxm-80gb\n"
    "  layercost hardware TPU-v5e --json\n\n"
    "Peaks are dense (figures quoted with sparsity are halved) and the faster of a chip's\n"
    "matrix and vector units; --json prints every peak, the memory (bytes), the bandwidth\n"
    "(bytes/s) and the vendor document each number comes from (formulas/hardware.toml)."
)


def _add_convention(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--convention",
        default=quantity("flops").default,
        choices=sorted(quantity("flops").conventions),
        help=f"cost convention (default {quantity('flops').default})",
    )


def _add_output_format(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--latex", action="store_true", help="print a LaTeX table")
    group.add_argument("--json", action="store_true", help="machine-readable output")


def _add_model_inputs(p: argparse.ArgumentParser, example: str) -> None:
    """The model factory, its input shapes and their dtype (``model`` and ``compare``)."""
    p.add_argument(
        "factory", help=f"module:callable returning the model, e.g. torchvision.models:{example}"
    )
    p.add_argument(
        "--input",
        action="append",
        required=True,
        metavar="[NAME=]DIMS",
        help="one input's dimensions, ints or symbol names: N,3,H,W (repeatable); "
        "NAME=N,L passes it as the forward's keyword argument NAME",
    )
    p.add_argument(
        "--dtype",
        help="input dtype (default float32; inputs looked up in an embedding: long)",
    )
    p.add_argument(
        "--hint",
        action="append",
        default=[],
        metavar="SYMBOL=INT,...",
        help="trace size of a symbol, e.g. H=224 (repeatable); a dimension the model pins "
        "is pinned to its hint",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="layercost",
        description="Parameter counts and FLOPs of neural-network layers as exact formulas.",
        epilog="example:\n  layercost eval Conv2d N=2 C_in=3 C_out=4 k=3 H=8 W=8",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    raw = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "list", help="list the rules, grouped by family", epilog=_EPILOG_LIST, formatter_class=raw
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    for name, helptext, epilog in (
        ("show", "show a rule's formulas", _EPILOG_SHOW),
        ("eval", "evaluate a rule at given sizes", _EPILOG_EVAL),
    ):
        p = sub.add_parser(name, help=helptext, epilog=epilog, formatter_class=raw)
        p.add_argument("rule", help="rule name, e.g. Conv2d")
        if name == "eval":
            p.add_argument("values", nargs="*", metavar="SYMBOL=INT", help="e.g. N=2 H=8")
        _add_convention(p)
        p.add_argument("--training", action="store_true", help="the module in training mode")
        if name == "show":
            p.add_argument("--latex", action="store_true", help="print LaTeX")
        p.add_argument("--json", action="store_true", help="machine-readable output")
    p = sub.add_parser(
        "model",
        help="analyse a whole torch model symbolically",
        epilog=_EPILOG_MODEL,
        formatter_class=raw,
    )
    _add_model_inputs(p, "resnet18")
    _add_convention(p)
    p.add_argument("--at", metavar="SYMBOL=INT,...", help="evaluate there, e.g. N=1,H=224,W=224")
    p.add_argument("--depth", type=int, help="sum rows per module prefix of this many parts")
    p.add_argument("--training", action="store_true", help="the model in training mode")
    p.add_argument(
        "--hardware",
        metavar="CHIP",
        help="add the roofline at --at on CHIP (layercost hardware lists them): bytes, FLOPs "
        "per byte, time bound and bottleneck per call; peaks of the input dtype",
    )
    p.add_argument(
        "--optimizer",
        choices=sorted(OPTIMIZERS),
        help="add the training-memory ledger (with --training: the forward a step runs): "
        "parameters, gradients, this optimizer's state, saved activations; at --at in bytes",
    )
    p.add_argument(
        "--master-weights",
        action="store_true",
        help="the ledger keeps a float32 copy of the weights, the optimizer's state in float32",
    )
    p.add_argument(
        "--recompute",
        choices=("none", "full"),
        default="none",
        help="the ledger under activation recomputation: full keeps only each repeated "
        "block's input (the model's ModuleList elements) and recomputes one block at a time",
    )
    p.add_argument(
        "--bytes",
        choices=("min", "eager"),
        default="min",
        help="bytes of the roofline: min (each layer's fused lower bound, the default) or eager "
        "(what torch's eager kernels move)",
    )
    _add_output_format(p)
    p = sub.add_parser(
        "arch",
        help="a symbolic reference architecture (gpt, resnet, ...) as a table of parts",
        epilog=_EPILOG_ARCH,
        formatter_class=raw,
    )
    p.add_argument("name", nargs="?", help="architecture name; leave out to list them")
    p.add_argument(
        "hyperparameters",
        nargs="*",
        metavar="NAME=VALUE",
        help="e.g. d_model=768 n_layer=12 (ints, fractions 3/4 or decimals 0.75); "
        "left out: a symbol",
    )
    _add_convention(p)
    p.add_argument("--at", metavar="SYMBOL=INT,...", help="evaluate there, e.g. N=1")
    p.add_argument(
        "--full", action="store_true", help="print every formula whole (lines may be long)"
    )
    _add_output_format(p)
    p = sub.add_parser(
        "compare",
        help="a model's cost under several conventions, per family, and why two differ",
        epilog=_EPILOG_COMPARE,
        formatter_class=raw,
    )
    _add_model_inputs(p, "resnet50")
    p.add_argument(
        "--conventions",
        default=",".join(quantity("flops").compared),
        metavar="NAME,...",
        help=f"conventions to compare (default {','.join(quantity('flops').compared)})",
    )
    p.add_argument(
        "--diff",
        nargs=2,
        metavar=("A", "B"),
        help="print A - B as a formula and the layers it comes from, largest first",
    )
    p.add_argument("--at", metavar="SYMBOL=INT,...", help="evaluate there, e.g. N=1,H=224,W=224")
    p.add_argument(
        "--top", type=int, default=20, help="rows of --diff to print (0: all; --json: all)"
    )
    p.add_argument("--training", action="store_true", help="the model in training mode")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = sub.add_parser(
        "hardware",
        help="accelerators: peak FLOP/s per dtype, memory and bandwidth, with their sources",
        epilog=_EPILOG_HARDWARE,
        formatter_class=raw,
    )
    p.add_argument(
        "names", nargs="*", metavar="NAME", help="chips to show (case ignored); default: all"
    )
    p.add_argument("--json", action="store_true", help="every field, sources included, as JSON")
    return parser


def _values(items: Sequence[str]) -> dict[str, int]:
    values = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise LayercostError(f"expected SYMBOL=INT, got {item!r}")
        if name not in glossary().info:
            raise LayercostError(f"unknown symbol {name!r} (see formulas/symbols.toml)")
        try:
            values[name] = int(text)
        except ValueError:
            raise LayercostError(f"{name}: {text!r} is not an integer") from None
    return values


def _with_defaults(rule, given: dict[str, int]) -> dict[str, int]:
    info = glossary().info
    values = dict(given)
    for name in rule.symbols:
        if name in values:
            continue
        square = glossary().square_of(name)
        if square is not None and square in given:
            continue
        default = info[name].default
        if default is not None:
            values[name] = default
    # data-dependent symbols (rows an Embedding renormalises) take the rule's documented
    # default, as bind() does, once the sizes it is written in are known
    for symbol, default in rule.data_defaults().items():
        if symbol.name not in values and default.free_symbols <= {
            glossary().symbols.get(n) for n in values
        }:
            values[symbol.name] = evaluate(default, values)
    return values


def _list(args) -> int:
    families: dict[str, list[str]] = {}
    for name in rule_names():
        families.setdefault(catalogue().rules[name].family, []).append(name)
    if args.json:
        print(json.dumps(families, indent=2))
    else:
        for family, names in sorted(families.items()):
            print(f"{family}:")
            for name in names:
                print(f"  {name:<24} {clip(catalogue().rules[name].note, 70)}")
    return 0


def _show(args) -> int:
    r = get_rule(args.rule)
    if args.latex:
        print(latex(r, args.convention, args.training))
        return 0
    data = {
        "rule": r.name,
        "module": f"torch.nn.{r.module}",
        "source": r.source,
        "note": r.note,
        "inputs": [p.text for p in r.inputs],
        "symbols": list(r.symbols),
        "defines": {str(s): str(e) for s, e in r.defines.items()},
        "params": str(r.compact_quantity("params")),
        "output_shape": [str(e) for e in r.compact_output_shape],
        "convention": args.convention,
        "training": args.training,
        "cost": str(r.compact_cost(args.convention, args.training)),
        "conventions": list(r.conventions),
        "variants": [v.name for v in r.variants],
    }
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        width = max(map(len, data))
        for key, value in data.items():
            print(f"{key:<{width}}  {value}")
    return 0


def _eval(args) -> int:
    r = get_rule(args.rule)
    values = _with_defaults(r, _values(args.values))
    missing = [n for n in r.symbols if n not in values and glossary().square_of(n) not in values]
    if missing:  # name them all at once, not one expression at a time
        raise MissingSymbolError(
            f"missing value for symbol{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(m) for m in missing)} (rule {r.name} uses "
            f"{', '.join(r.symbols)})"
        )
    data = {
        "rule": r.name,
        "convention": args.convention,
        "params": evaluate(r.params, values),
        "cost": evaluate(r.cost(args.convention, args.training), values),
        "output": tuple(evaluate(e, values) for e in r.output_shape),
    }
    if args.json:
        print(json.dumps({**data, "output": list(data["output"]), "values": values}))
    else:
        for key, value in data.items():
            print(f"{key:<10}  {value}")
    return 0


def _load_model(spec: str):
    """The model a ``module:callable`` spec builds (torchvision factories: weights=None)."""
    import importlib
    import os

    module_name, sep, attr = spec.partition(":")
    if not sep or not attr:
        raise LayercostError(f"expected module:callable, got {spec!r}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does: modules in the current directory
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise LayercostError(f"cannot load {spec!r}: {exc}") from None
    return factory(weights=None) if module_name.startswith("torchvision") else factory()


def _input_shapes(
    texts: Sequence[str],
) -> tuple[list[tuple[int | str, ...]], dict[str, tuple[int | str, ...]]]:
    """``--input N,3,H,W`` (repeatable): ints or symbol names per dimension; ``--input
    input_ids=N,L``: the forward's keyword argument ``input_ids``.  Positional and keyword
    shapes.

    >>> _input_shapes(["N,3,H,W", "decoder_input_ids=N,T"])
    ([('N', 3, 'H', 'W')], {'decoder_input_ids': ('N', 'T')})
    """
    positional: list[tuple[int | str, ...]] = []
    keyword: dict[str, tuple[int | str, ...]] = {}
    for text in texts:
        name, eq, dims = text.rpartition("=")
        shape = tuple(int(d) if d.strip().isdigit() else d.strip() for d in dims.split(","))
        if any(d == "" for d in shape):
            raise LayercostError(f"--input {text!r}: empty dimension")
        if not eq:
            positional.append(shape)
        elif not name.isidentifier():
            raise LayercostError(f"--input {text!r}: expected NAME=DIMS with NAME an identifier")
        else:
            keyword[name] = shape
    return positional, keyword


def _hints(texts: Sequence[str]) -> dict[str, int]:
    """``--hint H=224,W=224`` (repeatable)."""
    hints: dict[str, int] = {}
    for text in texts:
        hints.update(_at(text) or {})
    return hints


def _dtype(name: str | None):
    import torch

    if name is None:
        return None
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise LayercostError(f"unknown dtype {name!r}")
    return dtype


def _at(text: str | None) -> dict[str, int] | None:
    """``--at N=1,H=224,W=224``."""
    if not text:
        return None
    at = {}
    for item in text.split(","):
        name, eq, value = item.partition("=")
        if not eq or not value.strip().isdigit():
            raise LayercostError(f"expected SYMBOL=INT, got {item!r}")
        at[name.strip()] = int(value)
    return at


def _model(args) -> int:
    from . import analyze

    model = _load_model(args.factory)
    shapes, keyword_shapes = _input_shapes(args.input)
    result = analyze(
        model,
        *shapes,
        dtype=_dtype(args.dtype),
        convention=args.convention,
        training=args.training,
        hints=_hints(args.hint),
        **keyword_shapes,
    )
    at = _at(args.at)
    bound = _roofline(result, args, at) if args.hardware else None
    ledger = None
    if args.optimizer:
        ledger = result.training_memory(
            args.optimizer, master_weights=args.master_weights, recompute=args.recompute
        )
    if args.json:  # the cost card (layercost_sym/card.schema.json) with what was asked
        data = card(result, name=args.factory, depth=args.depth, quantities=("params", "flops"))
        if bound is not None:
            data["roofline"] = bound.to_json()
        if ledger is not None:
            rows = ledger.rows()
            data["training_memory"] = {
                "optimizer": args.optimizer,
                "master_weights": args.master_weights,
                "recompute": args.recompute,
                "bytes": {k: str(v) for k, v in rows.items()},
                **({"at": ledger.evaluate(at)} if at is not None else {}),
            }
        data["pinned"] = {n: {"value": v, "note": note} for n, (v, note) in result.pinned.items()}
        if at is not None:
            data["at"] = at
            data["values"] = {
                "params": result.evaluate(at, quantity="params"),
                **{c: result.evaluate(at, c) for c in result.conventions},
            }
        print(json.dumps(data, indent=2))
    elif args.latex:
        print(result.to_latex(args.depth, args.convention))
    else:
        print(result.table(args.depth, args.convention, at))
        _print_uncosted(result)
        for note in result.notes:  # what the closed forms assume (mixture of experts)
            print(f"note: {note}")
        if bound is not None:
            print()
            print(bound.table())
        if ledger is not None:
            print()
            print(_ledger_table(ledger, at, args))
    if not args.json and not args.latex:
        for name, (value, note) in result.pinned.items():
            print(f"pinned: {name} = {value} ({note})")
    return 0


def _ledger_table(ledger, at: dict[str, int] | None, args) -> str:
    """The training-memory ledger as text: each kind's bytes as a formula (and at ``--at``)."""
    master = ", float32 master copy" if args.master_weights else ""
    master += ", full recomputation" if args.recompute == "full" else ""
    title = f"training memory ({args.optimizer}{master}; {'training' if args.training else 'eval'}"
    lines = [f"{title} forward's saved activations), bytes"]
    values = ledger.evaluate(at) if at is not None else {}
    for name, expr in ledger.rows().items():
        shown = f"  {values[name]:,}" if at is not None else ""
        lines.append(f"  {name:<22} {clip(str(expr), 60)}{shown}")
    return "\n".join(lines)


# the dtype of the peaks a roofline takes, from the input dtype of the trace
_PEAK_DTYPES = {"float64": "fp64", "float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def _roofline(analysis, args, at: dict[str, int] | None):
    """``--hardware``: the roofline of every costed call at ``--at``, peaks of the inputs'
    dtype (float32 unless ``--dtype`` says otherwise)."""
    if analysis.symbols and at is None:
        names = ", ".join(s.name for s in analysis.symbols)
        raise LayercostError(f"--hardware needs sizes for {names}: give --at, e.g. N=1")
    name = args.dtype or "float32"
    if name not in _PEAK_DTYPES:
        raise LayercostError(
            f"--hardware: no peak dtype for inputs of {name}; use one of {', '.join(_PEAK_DTYPES)}"
        )
    return analysis.roofline(args.hardware, at, dtype=_PEAK_DTYPES[name], bytes=args.bytes)


def _print_uncosted(analysis) -> None:
    """What has no rule: each call not costed (``unsupported``), and in one line the
    classes of the modules costed by their operators."""
    for u in analysis.unsupported:
        print(f"unsupported: {u.name} ({u.what}): {u.detail}")
    classes: dict[str, list] = {}
    for m in analysis.costed_by_operators:
        classes.setdefault(m.what, []).append(m)
    if classes:
        shown = "; ".join(
            f"{len(ms)} {what} ({', '.join(dict.fromkeys(op for m in ms for op in m.ops))})"
            for what, ms in classes.items()
        )
        print(clip(f"costed by their operators (no rule; parameters by numel): {shown}", 200))


def _hyperparameter(name: str, text: str):
    """An exact hyperparameter value from text: int, fraction ``3/4``, decimal ``0.75``,
    or a word for a structural choice (``v1.5``)."""
    from fractions import Fraction

    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return Fraction(text)  # "3/4" and "0.75" both exactly
    except (ValueError, ZeroDivisionError):
        return text  # a structural choice; the architecture checks it


def _arch(args) -> int:
    import sympy

    from .zoo import architecture, architectures, defaults_from, describe

    if args.name is None:
        names = architectures()
        if args.json:
            print(json.dumps(names))
        else:
            for name in names:
                print(describe(name))
                print()
        return 0
    hp = {}
    for item in args.hyperparameters:
        name, sep, text = item.partition("=")
        if not sep or not name or not text:
            raise LayercostError(f"expected NAME=VALUE, got {item!r}")
        hp[name] = _hyperparameter(name, text)
    arch = architecture(args.name, **hp)
    at = _at(args.at)
    if at:
        arch = arch.at(**at)
    filled = arch.default_values()
    fallback = args.convention not in arch.conventions and arch.conventions
    if fallback and args.convention == quantity("flops").default:  # not stated (MoE: exact)
        args.convention = arch.conventions[0]
    if args.json:  # the cost card (layercost_sym/card.schema.json), its parts' cost
        data = card(arch, convention=args.convention, quantities=("params", "flops"))
        if filled:  # the same at the defaults of the hyperparameters left symbols
            known = {s.name for s in arch.free_symbols}
            there = arch.at(**{k: v for k, v in filled.items() if k in known})
            data["at_defaults"] = {
                "values": {k: str(v) for k, v in filled.items()},
                "parts": {
                    n: {"params": str(sympy.expand(p)), "cost": str(sympy.expand(c))}
                    for n, (p, c) in there.breakdown(args.convention).items()
                },
                "params": str(sympy.expand(there.params)),
                "cost": str(sympy.expand(there.cost(args.convention))),
            }
        print(json.dumps(data, indent=2, default=str))
    elif args.latex:
        print(arch.to_latex(args.convention))
    else:
        symbolic = [k for k, v in arch.hyperparameters.items() if isinstance(v, sympy.Symbol)]
        others = sorted(s.name for s in arch.free_symbols if s.name not in symbolic)
        given = [f"{k}={v}" for k, v in arch.hyperparameters.items() if k not in symbolic]
        print(f"architecture  {arch.name}" + (f" ({', '.join(given)})" if given else ""))
        if symbolic or others:
            print(f"symbols       {', '.join(symbolic + others)}")
        if filled:
            source = defaults_from(args.name)
            shown = ", ".join(f"{k}={v}" for k, v in filled.items())
            import textwrap

            line = f"at the defaults {shown}" + (f" ({source})" if source else "")
            # many hyperparameters (deepseek's 16) wrap, under the column
            first, indent = "value" + " " * 9, " " * 14
            print(textwrap.fill(line, 150, initial_indent=first, subsequent_indent=indent))
        table = arch.table(
            args.convention, width=None if args.full else _ARCH_WIDTH, values=filled or None
        )
        if not args.full and "..." in table:
            print("shortened     formulas too long for a line: their leading terms; --full")
        if fallback:
            print(f"convention    {args.convention} (the default is not stated for {arch.name})")
        if sympy.expand(arch.active_params - arch.params) != 0:  # mixture of experts
            from .text import clip

            known = {s.name for s in arch.free_symbols}
            value = arch.at(**{k: v for k, v in filled.items() if k in known}).active_params
            shown = f" ({sympy.expand(value)} at the defaults)" if filled else ""
            formula = clip(str(arch.active_params), 100)
            print(f"active        {formula} parameters per token{shown}")
        print()
        print(table)
    return 0


def _compare(args) -> int:
    from .torchtools.compare import compare

    conventions = tuple(c.strip() for c in args.conventions.split(",") if c.strip())
    known = quantity("flops").conventions
    unknown = [c for c in conventions + tuple(args.diff or ()) if c not in known]
    if unknown:
        raise LayercostError(
            f"unknown convention(s) {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(sorted(known))})"
        )
    if args.diff:  # the two compared conventions are part of the comparison
        conventions += tuple(c for c in args.diff if c not in conventions)
    shapes, keyword_shapes = _input_shapes(args.input)
    result = compare(
        _load_model(args.factory),
        *shapes,
        conventions=conventions,
        at=_at(args.at),
        dtype=_dtype(args.dtype),
        training=args.training,
        hints=_hints(args.hint),
        **keyword_shapes,
    )
    diffs = [tuple(args.diff)] if args.diff else []
    if args.json:
        data = {"model": args.factory, "inputs": args.input, **result.to_json(diffs)}
        pins = result.analysis.pinned
        data["pinned"] = {n: {"value": v, "note": note} for n, (v, note) in pins.items()}
        print(json.dumps(data, indent=2))
        return 0
    print(f"model   {args.factory}")
    print(f"input   {'; '.join(args.input)}" + (f" at {args.at}" if args.at else ""))
    print(f"params  {result.params}")
    if result.analysis.experts:  # mixture of experts: what one token uses, and why
        print(f"active  {result.analysis.active_params} parameters per token")
        for note in result.analysis.notes:
            print(f"note: {note}")
    print()
    print(result.table())
    for a, b in diffs:
        print()
        print(result.diff_table(a, b, top=args.top))
    _print_uncosted(result.analysis)
    for name, (value, note) in result.analysis.pinned.items():
        print(f"pinned: {name} = {value} ({note})")
    return 0


def _hardware(args) -> int:
    chips = [hardware(name) for name in args.names or hardwares()]
    if args.json:
        print(json.dumps({chip.name: chip.to_dict() for chip in chips}, indent=2))
    else:
        print(format_hardware_table(chips))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    commands = {
        "list": _list,
        "show": _show,
        "eval": _eval,
        "model": _model,
        "arch": _arch,
        "compare": _compare,
        "hardware": _hardware,
    }
    try:
        return commands[args.command](args)
    except LayercostError as exc:
        print(f"layercost: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
