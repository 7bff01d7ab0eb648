"""Measured time over the roofline bound, per layer, on a real CUDA chip (not run by CI).

The roofline bound of a layer is a lower bound: no kernel can do its work faster than the
chip's peak or move its bytes faster than its bandwidth.  On a CUDA machine this script times
every leaf module of a torchvision model with CUDA events at a few batch sizes and prints, per
layer, the measured time over the bound of ``formulas/hardware.toml``'s entry for the chip.
A ratio below 1 means the table (or the formula) is wrong.

    python tests/benchmarks/measure_roofline.py --chip H100-SXM --model resnet50 --dtype bf16

Without CUDA it says so and exits with status 0 (there is nothing to measure).
"""

from __future__ import annotations

import argparse
import statistics
import sys

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chip", required=True, help="a name of formulas/hardware.toml")
    parser.add_argument("--model", default="resnet50", help="a torchvision.models builder")
    parser.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    parser.add_argument("--batch", default="1,8,64", help="batch sizes, comma-separated")
    parser.add_argument("--size", type=int, default=224, help="image side")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print(
            "measure_roofline: no CUDA device here (torch.cuda.is_available() is False); "
            "run it on a machine with the chip named by --chip to compare measured times "
            "with the roofline bound."
        )
        return 0

    import torchvision

    import layercost_sym as lc

    chip = lc.hardware(args.chip)
    dtype = getattr(torch, DTYPES[args.dtype])
    model = getattr(torchvision.models, args.model)(weights=None).eval().to("cuda", dtype)
    print(f"{args.model} on {torch.cuda.get_device_name()} against {chip.name} ({args.dtype})")
    for batch in (int(b) for b in args.batch.split(",")):
        x = torch.randn(batch, 3, args.size, args.size, device="cuda", dtype=dtype)
        analysis = lc.analyze(model, tuple(x.shape), dtype=dtype)
        bound = analysis.roofline(chip, dtype=args.dtype)
        by_module: dict[str, float] = {}
        for row in bound.rows:
            module = row.name.split(":")[0]
            by_module[module] = by_module.get(module, 0.0) + float(row.time)
        measured = _time_leaves(model, x, args.repeats)
        print(f"\nbatch {batch}: layer, measured (us), bound (us), measured / bound")
        ratios = []
        for name, seconds in measured.items():
            if name not in by_module or by_module[name] == 0:
                continue
            ratio = seconds / by_module[name]
            ratios.append(ratio)
            flag = "  <-- below the bound: check the table" if ratio < 1 else ""
            bound_us = by_module[name] * 1e6
            print(f"  {name:30s} {seconds * 1e6:10.2f} {bound_us:10.2f} {ratio:8.2f}{flag}")
        if ratios:
            print(f"  median ratio {statistics.median(ratios):.2f}, minimum {min(ratios):.2f}")
    return 0


def _time_leaves(model, x, repeats: int) -> dict[str, float]:
    """Median seconds of each leaf module's forward, timed with CUDA events around it."""
    import torch

    events: dict[str, list] = {}
    handles = []
    for name, module in model.named_modules():
        if any(module.children()):
            continue

        def pre(_module, _inputs, name=name):
            start = torch.cuda.Event(enable_timing=True)
            start.record()
            events.setdefault(name, []).append([start, None])

        def post(_module, _inputs, _output, name=name):
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            events[name][-1][1] = end

        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    with torch.no_grad():
        model(x)  # warm-up: kernels chosen, memory allocated
        events.clear()
        for _ in range(repeats):
            model(x)
    torch.cuda.synchronize()
    for handle in handles:
        handle.remove()
    return {
        name: statistics.median(s.elapsed_time(e) / 1e3 for s, e in pairs)
        for name, pairs in events.items()
    }


if __name__ == "__main__":
    sys.exit(main())
