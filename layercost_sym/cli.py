"""The ``layercost`` command line (also ``python -m layercost_sym``).

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
from .catalogue import catalogue
from .conventions import CONVENTIONS, DEFAULT_CONVENTION
from .errors import LayercostError, MissingSymbolError
from .evaluation import evaluate
from .glossary import glossary
from .printing import latex

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
    "  layercost model mypackage.models:build --input N,L --dtype long --json\n\n"
    "The model is built by calling the factory with no arguments (torchvision: weights=None)."
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
        p.add_argument(
            "--convention",
            default=DEFAULT_CONVENTION,
            choices=sorted(CONVENTIONS),
            help=f"cost convention (default {DEFAULT_CONVENTION})",
        )
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
    p.add_argument(
        "factory", help="module:callable returning the model, e.g. torchvision.models:resnet18"
    )
    p.add_argument(
        "--input",
        action="append",
        required=True,
        metavar="DIMS",
        help="one input's dimensions, ints or symbol names: N,3,H,W (repeatable)",
    )
    p.add_argument("--dtype", default="float32", help="input dtype (long for token ids)")
    p.add_argument(
        "--convention",
        default=DEFAULT_CONVENTION,
        choices=sorted(CONVENTIONS),
        help=f"cost convention (default {DEFAULT_CONVENTION})",
    )
    p.add_argument("--at", metavar="SYMBOL=INT,...", help="evaluate there, e.g. N=1,H=224,W=224")
    p.add_argument("--depth", type=int, help="sum rows per module prefix of this many parts")
    p.add_argument("--training", action="store_true", help="the model in training mode")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--latex", action="store_true", help="print a LaTeX table")
    group.add_argument("--json", action="store_true", help="machine-readable output")
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
        if info[name].default is not None:
            values[name] = info[name].default
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
                print(f"  {name:<24} {catalogue().rules[name].note[:70]}")
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
        "params": str(r.compact_params),
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


def _model(args) -> int:
    import importlib

    import torch

    from . import analyze

    module_name, sep, attr = args.factory.partition(":")
    if not sep or not attr:
        raise LayercostError(f"expected module:callable, got {args.factory!r}")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise LayercostError(f"cannot load {args.factory!r}: {exc}") from None
    model = factory(weights=None) if module_name.startswith("torchvision") else factory()
    shapes = [
        tuple(int(d) if d.strip().isdigit() else d.strip() for d in text.split(","))
        for text in args.input
    ]
    dtype = getattr(torch, args.dtype, None)
    if not isinstance(dtype, torch.dtype):
        raise LayercostError(f"unknown dtype {args.dtype!r}")
    result = analyze(
        model, *shapes, dtype=dtype, convention=args.convention, training=args.training
    )
    at = None
    if args.at:
        at = {}
        for item in args.at.split(","):
            name, eq, text = item.partition("=")
            if not eq or not text.strip().isdigit():
                raise LayercostError(f"expected SYMBOL=INT, got {item!r}")
            at[name.strip()] = int(text)
    if args.json:
        data = result.to_json(args.depth)
        if at is not None:
            data["at"] = at
            data["values"] = {
                "params": result.evaluate(at, what="params"),
                **{c: result.evaluate(at, c) for c in result.conventions},
            }
        print(json.dumps(data, indent=2))
    elif args.latex:
        print(result.to_latex(args.depth, args.convention))
    else:
        print(result.table(args.depth, args.convention, at))
        for u in result.unsupported:
            print(f"unsupported: {u.name} ({u.what}): {u.detail}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"list": _list, "show": _show, "eval": _eval, "model": _model}[args.command](args)
    except LayercostError as exc:
        print(f"layercost: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
