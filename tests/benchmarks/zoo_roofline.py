"""The torchvision zoo through bytes and the roofline (a corpus run by hand, not by CI).

For each model: the symbolic analysis in ``(N, 3, H, W)`` evaluated at a shape must equal the
analysis traced at that shape, for FLOPs (exact) and bytes (min and eager), and its eager bytes
must equal what the op counter sees the real model's kernels move (``lc.count``); the roofline
on a chip must evaluate for every call.  The tests run a fixed sample of these (tests/test_bytes.py,
tests/test_roofline.py); this script runs the whole list:

    python tests/benchmarks/zoo_roofline.py               # every model below
    python tests/benchmarks/zoo_roofline.py vit_b_16      # some

Prints one line per model and exits with status 1 if any model disagrees or fails.
"""

from __future__ import annotations

import sys
import time

MODELS = [
    "alexnet", "vgg11", "resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small",
    "efficientnet_b0", "densenet121", "squeezenet1_0", "shufflenet_v2_x0_5", "regnet_x_400mf",
    "convnext_tiny", "googlenet", "mnasnet0_5", "vit_b_16", "swin_t",
]  # fmt: skip
AT = {"N": 2, "H": 224, "W": 224}


def check(name: str, chip: str = "H100-SXM") -> str:
    import torchvision

    import layercost_sym as lc

    options = {"aux_logits": False, "init_weights": False} if name == "googlenet" else {}
    model = getattr(torchvision.models, name)(weights=None, **options).eval()
    symbolic = lc.analyze(model, ("N", 3, "H", "W"))
    concrete = lc.analyze(model, (AT["N"], 3, AT["H"], AT["W"]))
    problems = []
    for quantity, convention in (("flops", "exact"), ("bytes", "min"), ("bytes", "eager")):
        a = symbolic.evaluate(AT, convention, quantity=quantity)
        b = lc.evaluate(concrete.quantity(quantity, convention), {})
        if a != b:
            problems.append(f"{quantity}/{convention}: closed form {a}, traced at the shape {b}")
    moved = lc.count(model, (AT["N"], 3, AT["H"], AT["W"])).quantity("bytes", "eager")
    if moved != symbolic.evaluate(AT, "eager", quantity="bytes"):
        problems.append(f"bytes/eager: closed form differs from the kernels' {moved}")
    bound = symbolic.roofline(chip, AT, dtype="fp32")
    counts = bound.bottlenecks()
    summary = f"{counts['compute']} compute-bound, {counts['memory']} memory-bound on {chip}"
    return "; ".join(problems) if problems else summary


def main(argv: list[str]) -> int:
    failed = 0
    for name in argv or MODELS:
        start = time.perf_counter()
        try:
            result = check(name)
            ok = "closed form" not in result
        except Exception as exc:  # a corpus run reports every model, then fails
            result, ok = f"{type(exc).__name__}: {exc}", False
        failed += not ok
        status = "ok  " if ok else "FAIL"
        print(f"{status} {name:20s} {result} ({time.perf_counter() - start:.1f} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
