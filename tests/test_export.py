"""The C and JavaScript exports (layercost_sym.export) agree with lc.evaluate.

Each test draws many shapes with the public Hypothesis strategies, binds them to the rule
torch picks (lc.bind), and runs every formula of every point through ONE compiled C library
(the system compiler, ``cc``; ctypes) and ONE ``node`` process: values equal evaluate's where it
answers, and refusals are of the same kind where it refuses (a constraint: DomainError and
LC_ERR_DOMAIN; a size out of range or a result that is no non-negative integer:
EvaluationError and the other codes).  Points are also pushed outside their domain on purpose.
Needs ``cc`` and ``node`` (``.ci/run`` installs nodejs where it is missing).
"""

import ctypes
import itertools
import json
import re
import subprocess

import pytest
import sympy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import layercost_sym as lc
from layercost_sym.testing.strategies import (
    conv2d_cases,
    conv_transpose2d_cases,
    linear_cases,
    max_pool_cases,
    mha_cases,
)

# C's error codes (the enum of the generated helpers, in order)
OK, SIZE, DOMAIN, OVERFLOW, NOT_INTEGER, NEGATIVE, UNDEFINED = range(7)
BATCH = settings(
    max_examples=1, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)


_BUILDS = itertools.count()


# -- running the generated code -------------------------------------------------------------------


def reference(expr, point):
    """evaluate's answer: ("ok", value) or ("refused", the exception's class name)."""
    try:
        return "ok", lc.evaluate(expr, point)
    except lc.DomainError:
        return "refused", "DomainError"
    except lc.EvaluationError:
        return "refused", "EvaluationError"


def run_c(tmp_path, formulas, points):
    """``{key: [(code, value or message), ...]}``: every key's function of ``to_c(formulas)``
    (one library, compiled once) at each of ``points[key]``."""
    source = lc.to_c(formulas, name="t")
    tmp_path = tmp_path / f"c{next(_BUILDS)}"  # a new path: dlopen reuses a loaded one
    tmp_path.mkdir()
    (tmp_path / "t.c").write_text(source)
    subprocess.run(
        ["cc", "-std=c99", "-O0", "-Wall", "-Werror", "-shared", "-fPIC", "-o", "t.so", "t.c"],
        cwd=tmp_path,
        check=True,
    )
    library = ctypes.CDLL(str(tmp_path / "t.so"))
    out = {}
    for key in formulas:
        # the sizes a function takes, in order, read from its signature
        match = re.search(rf"int t_{key}\((.*?)int64_t \*lc_out", source)
        assert match, key
        names = re.findall(r"int64_t (\w+), ", match.group(1))
        function = getattr(library, f"t_{key}")
        function.argtypes = [ctypes.c_int64] * len(names) + [
            ctypes.POINTER(ctypes.c_int64),
            ctypes.POINTER(ctypes.c_char_p),
        ]
        function.restype = ctypes.c_int
        results = []
        for point in points[key]:
            value, why = ctypes.c_int64(-1), ctypes.c_char_p()
            code = function(*(int(point[n]) for n in names), ctypes.byref(value), ctypes.byref(why))
            results.append((code, value.value if code == OK else why.value.decode()))
        out[key] = results
    return out


def run_js(tmp_path, formulas, points):
    """``{key: [("ok", value) or (error name, message), ...]}`` from one node process."""
    data = {k: [{n: str(int(v)) for n, v in p.items()} for p in points[k]] for k in formulas}
    driver = """
const data = JSON.parse(require("fs").readFileSync(0, "utf8"));
const out = {};
for (const [key, points] of Object.entries(data)) {
  out[key] = points.map((p) => {
    const sizes = Object.fromEntries(Object.entries(p).map(([n, v]) => [n, BigInt(v)]));
    try { return ["ok", String(t[key](sizes))]; } catch (e) { return [e.name, e.message]; }
  });
}
process.stdout.write(JSON.stringify(out));
"""
    (tmp_path / "t.js").write_text(lc.to_javascript(formulas, name="t") + driver)
    done = subprocess.run(
        ["node", "t.js"], cwd=tmp_path, input=json.dumps(data), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return {
        k: [(kind, int(v) if kind == "ok" else v) for kind, v in rows]
        for k, rows in json.loads(done.stdout).items()
    }


def agree(tmp_path, formulas, points):
    """Assert C, JavaScript and evaluate agree at every point; returns how many points were
    refused by evaluate (so that a test can insist on seeing refusals too)."""
    c, js = run_c(tmp_path, formulas, points), run_js(tmp_path, formulas, points)
    refused = 0
    for key, expr in formulas.items():
        for point, c_row, js_row in zip(points[key], c[key], js[key], strict=True):
            kind, value = reference(expr, point)
            if kind == "ok":
                assert c_row == (OK, value), (key, point, c_row, value)
                assert js_row == ("ok", value), (key, point, js_row, value)
                continue
            refused += 1
            assert js_row[0] == value, (key, point, js_row, value)
            if value == "DomainError":
                assert c_row[0] == DOMAIN, (key, point, c_row)
            else:
                assert c_row[0] in (SIZE, NOT_INTEGER, NEGATIVE, UNDEFINED), (key, point, c_row)
    return refused


def formulas_of(rule, training=False):
    """``rule``'s params, FLOPs under the library's own conventions (exact, torch, macs; the
    peers' are other formulas of the same kind, left to keep the batch small), and each other
    quantity under its default convention, keyed by a C name."""
    out = {"params": rule.params}
    for convention in sorted(set(rule.conventions_of("flops")) & {"exact", "torch", "macs"}):
        out[re.sub(r"\W", "_", f"flops_{convention}")] = rule.cost(convention, training)
    for quantity in rule.quantities:
        if quantity not in ("params", "flops"):
            out[quantity] = rule.quantity(quantity, None, training)
    return out


def outside(point):
    """Two copies of the point pushed out of the domain: a kernel longer than the padded input
    (a strided window hanging over in ceil mode included), and a padding longer than the input
    and kernel (a transposed convolution's output then has no positions; a pooling's padding
    passes half its kernel)."""
    long_kernel, long_padding = dict(point), dict(point)
    for side, k, p, s in (("H", "k_h", "p_h", "s_h"), ("L", "k", "p", "s")):
        if side in point and k in point:
            long_kernel[k] = point[side] + 2 * point.get(p, 0) + point.get(s, 1) + 2
            if p in point:
                long_padding[p] = point[side] * point.get(s, 1) + 2 * point[k] * 8
    return [long_kernel, long_padding]


def bound_points(cases):
    """``(formulas, points)`` over every rule variant the cases bind to, each point also pushed
    outside its domain (see :func:`outside`)."""
    formulas, points = {}, {}
    for case in cases:
        binding = lc.bind(case.build(), *case.input_shapes, **case.call_kwargs)
        prefix = re.sub(r"\W", "_", binding.rule.name)
        for key, expr in formulas_of(binding.rule, binding.training).items():
            name = f"{prefix}_{key}"
            formulas[name] = expr
            points.setdefault(name, []).extend([dict(binding), *outside(dict(binding))])
    return formulas, points


# -- rules, drawn by the public strategies --------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "pushed_out"),
    [
        (conv2d_cases(), True),
        (conv_transpose2d_cases(), True),
        (max_pool_cases(), True),
        (linear_cases(), False),  # no constraint to break: every size fits
        (mha_cases(), False),
    ],
    ids=["Conv2d", "ConvTranspose2d", "MaxPool2d", "Linear", "MultiheadAttention"],
)
def test_rules_agree_with_evaluate_on_drawn_shapes(tmp_path_factory, strategy, pushed_out):
    @BATCH
    @given(cases=st.lists(strategy, min_size=16, max_size=16))
    def check(cases):
        formulas, points = bound_points(cases)
        refused = agree(tmp_path_factory.mktemp("export"), formulas, points)
        assert refused > 0 or not pushed_out  # the points pushed outside were refused too

    check()


def test_max_pool_in_floor_and_ceil_mode(tmp_path):
    """MaxPool2d's output side by floor and by ceiling division, over sides where they differ
    (side 6, kernel 3, stride 2: floor((6-3)/2)+1 = 2 windows, ceil((6-3)/2)+1 = 3)."""
    import torch

    formulas, points = {}, {}
    for ceil_mode in (False, True):
        module = torch.nn.MaxPool2d(3, stride=2, ceil_mode=ceil_mode)
        for side in range(3, 12):
            binding = lc.bind(module, (1, 2, side, side + 1))
            name = re.sub(r"\W", "_", f"{binding.rule.name}_{int(ceil_mode)}")
            formulas[name] = binding.rule.cost("exact")
            points.setdefault(name, []).append(dict(binding))
    assert agree(tmp_path, formulas, points) == 0
    floor = [v for k in formulas if k.endswith("_0") for v in run_c(tmp_path, formulas, points)[k]]
    ceil = [v for k in formulas if k.endswith("_1") for v in run_c(tmp_path, formulas, points)[k]]
    assert len(floor) == len(ceil) == 9 and floor != ceil  # side 6: 2 windows, or 3


def test_an_architecture_agrees_with_evaluate(tmp_path):
    """Whole reference architectures: ResNet-18 in its resolution (floors of strides) and GPT
    (a d_model / n_head that must be whole), at drawn sizes."""
    resnet = lc.architecture("resnet", depth=18)
    gpt = lc.architecture("gpt")
    formulas = {"resnet_params": resnet.params}
    for convention in resnet.conventions:
        formulas[f"resnet_{convention}"] = resnet.cost(convention)
    for convention in gpt.conventions:
        formulas[f"gpt_{convention}"] = gpt.cost(convention)
    sizes = st.fixed_dictionaries({"N": st.integers(1, 64), "resolution": st.integers(1, 512)})
    heads = st.integers(1, 16).flatmap(
        lambda h: st.fixed_dictionaries(
            {
                "n_head": st.just(h),
                "d_model": st.one_of(st.integers(1, 64).map(lambda m: m * h), st.integers(1, 99)),
                "n_layer": st.integers(1, 48),
                "d_ff": st.integers(1, 4096),
                "vocab": st.integers(1, 60000),
                "n_ctx": st.integers(1, 2048),
                "N": st.integers(1, 16),
            }
        )
    )

    @BATCH
    @given(
        resnets=st.lists(sizes, min_size=30, max_size=30),
        gpts=st.lists(heads, min_size=30, max_size=30),
    )
    def check(resnets, gpts):
        points = {k: (resnets if k.startswith("resnet") else gpts) for k in formulas}
        agree(tmp_path, formulas, points)

    check()


# -- floor, ceiling and modulus of negative numerators; refusals -----------------------------------


def test_floor_ceiling_and_mod_of_negative_numerators(tmp_path):
    """C's / and % truncate toward zero; the helpers must not: floor(-3/2) = -2, ceiling(3/2) =
    2, Mod(-2, 3) = 1 (Python's, SymPy's)."""
    H, s = lc.symbols("H s")
    formulas = {
        "floor": sympy.floor((H - 7) / s) + 10,
        "ceiling": sympy.ceiling((H - 7) / s) + 10,
        "mod": sympy.Mod(H - 7, s + 1) + sympy.Mod(H, 3) * 5,
        "halves": H * (H + 1) / 2,  # one fraction num/den, divided last: always whole
        "max": sympy.Max(H / 2, s) * 2,  # max(H, 2s) over the denominator 2
    }
    grid = [{"H": h, "s": t} for h in range(1, 16) for t in range(1, 5)]
    assert agree(tmp_path, formulas, {k: grid for k in formulas}) == 0
    assert lc.evaluate(formulas["floor"], {"H": 4, "s": 2}) == 8  # floor(-3/2) + 10


def test_refusals_name_the_condition(tmp_path):
    """A Conv2d kernel larger than its input (k = 9, H = 8, the example of domain.py): C returns
    LC_ERR_DOMAIN with the constraint's text, JavaScript throws a DomainError naming it, evaluate
    raises; a negative size and a flag of 2 are refused as sizes out of range."""
    macs = lc.rule("Conv2d").cost("macs")
    point = dict(N=2, C_in=3, C_out=4, k_h=9, k_w=9, s_h=1, s_w=1, p_h=0, p_w=0, d_h=1, d_w=1)
    point.update(g=1, H=8, W=8)
    points = {"macs": [point, {**point, "H": 20, "W": 20}, {**point, "H": 0}]}
    c = run_c(tmp_path, {"macs": macs}, points)["macs"]
    js = run_js(tmp_path, {"macs": macs}, points)["macs"]
    with pytest.raises(lc.DomainError, match="H_out >= 1 and W_out >= 1"):
        lc.evaluate(macs, point)
    assert c[0] == (
        DOMAIN,
        "Conv2d: constraint 'H_out >= 1 and W_out >= 1' fails (kernel size "
        "can't be greater than the padded input size)",
    )
    assert js[0][0] == "DomainError" and "H_out >= 1 and W_out >= 1" in js[0][1]
    assert "H=8" in js[0][1]
    # H = W = 20: H_out = W_out = 12: macs = 2*4*12*12*3*9*9 = 279936
    assert c[1] == (OK, 279936) and js[1] == ("ok", 279936)
    assert c[2] == (SIZE, "H must be a positive dimension")
    assert js[2] == ("EvaluationError", "H must be a positive dimension, got 0")
    params = lc.rule("Linear").params
    flag = {"C_in": 3, "C_out": 4, "b": 2}
    assert run_c(tmp_path, {"p": params}, {"p": [flag]})["p"][0][0] == SIZE
    assert run_js(tmp_path, {"p": params}, {"p": [flag]})["p"][0][0] == "EvaluationError"


def test_overflow_is_refused_in_c_and_exact_in_javascript(tmp_path):
    """Linear's params with 2**32 features in and out: C_in*C_out = 2**64 leaves int64, so C
    refuses (LC_ERR_OVERFLOW, never a wrapped number); BigInt gives evaluate's exact value
    2**64 + 2**32 (with the bias)."""
    params = lc.rule("Linear").params
    huge = {"C_in": 2**32, "C_out": 2**32, "b": 1}
    fits = {"C_in": 2**31, "C_out": 2**31, "b": 1}  # 2**62 + 2**31: fits
    points = {"p": [huge, fits]}
    c = run_c(tmp_path, {"p": params}, points)["p"]
    js = run_js(tmp_path, {"p": params}, points)["p"]
    assert c[0] == (OVERFLOW, "an intermediate value overflows int64")
    assert js[0] == ("ok", 2**64 + 2**32) == ("ok", lc.evaluate(params, huge))
    assert c[1] == (OK, 2**62 + 2**31) and js[1] == ("ok", 2**62 + 2**31)


def test_what_cannot_be_exported_is_refused():
    H = lc.symbols("H")
    with pytest.raises(lc.ExportError, match=r"sqrt|Pow"):
        lc.to_c(sympy.sqrt(H))
    with pytest.raises(lc.ExportError, match="Float"):
        lc.to_javascript(H * sympy.Float(0.5))
    with pytest.raises(lc.ExportError, match="int64"):
        lc.to_c(H * 2**70)
    with pytest.raises(lc.ExportError, match="function name 'int'"):
        lc.to_c(H, name="int")
    with pytest.raises(lc.ExportError, match="symbol 'in'"):
        lc.to_javascript(lc.symbols("in") + 1)
    with pytest.raises(lc.ExportError, match="empty"):
        lc.to_c({})
    # text goes through the safe parser, a mapping gives one function per key
    text = lc.to_javascript({"area": "H*W", "half area": "H*W/2"}, name="sizes")
    assert "const sizes = " in text and '"half area": lc_f1' in text
