"""Convolutional reference architectures: MobileNet v1 and v2, ResNet v1 and v1.5.

Each is composed layer by layer from the catalogue's rules (``Conv2d``, ``BatchNorm2d``,
``ReLU``, ``ReLU6``, ``MaxPool2d``, ``AdaptiveAvgPool2d``, ``Linear``, ``Dropout`` and the
functional ``add``, ``mean`` and ``view``), in exactly the calls ``lc.analyze`` sees when it
runs the torch model, so the two agree term by term.  Inputs are square,
``resolution x resolution`` pixels; the batch is the glossary's ``N``, left as a symbol.

(Over 500 lines by design: the three CNN families share their block helpers, which are public.)

>>> import layercost_sym as lc
>>> r18 = lc.architecture("resnet", depth=18, resolution=224)
>>> r18.params, r18.evaluate({"N": 1}, "macs")          # torchvision: 11.69M, 1.81 GFLOPS
(11689512, 1814073344)
>>> list(r18.breakdown("macs"))
['stem', 'layer1', 'layer2', 'layer3', 'layer4', 'head']

Spatial sizes stay closed forms in ``resolution``: the floors of successive strides are
merged (``floor((floor(x) + c) / s) = floor((x + c) / s)`` for integers ``c`` and ``s > 0``), so
the side after the stem of a ResNet reads ``floor(resolution/4 - 1/4) + 1``.

The helpers :func:`conv_bn_act`, :func:`depthwise_separable`, :func:`inverted_residual`,
:func:`basic_block` and :func:`bottleneck` build one block on a symbolic input shape
``(N, C, H, W)`` and return its :class:`~layercost_sym.composition.Cost` with
``output_shape`` set, so papers' per-block formulas can be checked on them directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import sympy

from ..cache import catalogue
from ..composition import Cost, symbols
from ..errors import ArchitectureError
from . import Hyperparameter, register

__all__ = [
    "basic_block",
    "bottleneck",
    "conv_bn_act",
    "depthwise_separable",
    "inverted_residual",
    "make_divisible",
]

Shape = tuple[Any, ...]  # (N, C, H, W) as SymPy expressions or ints


# --- spatial sizes --------------------------------------------------------------------------
def _merge_floors(expr: sympy.Expr) -> sympy.Expr:
    """``floor(floor(x)/s + q)`` -> ``floor(x/s + q)`` where ``s`` is a positive integer and
    ``q*s`` an integer: ``floor(x) + q*s = floor(x + q*s)``, and ``floor(floor(y)/s) =
    floor(y/s)`` for a positive integer ``s``.  Keeps a deep network's sides one floor deep."""

    def merge(node: sympy.Basic) -> sympy.Basic:
        arg = node.args[0]
        inner = [t for t in sympy.Add.make_args(arg) if t.has(sympy.floor)]
        if len(inner) != 1:
            return node
        coeff, core = inner[0].as_coeff_Mul()
        if not isinstance(core, sympy.floor) or not coeff.is_Rational or coeff <= 0:
            return node
        s = 1 / coeff
        rest = arg - inner[0]
        if not (s.is_integer and rest.is_Rational and (rest * s).is_integer):
            return node
        return sympy.floor(sympy.expand(core.args[0] / s + rest))

    previous = None
    while previous != expr:
        previous = expr
        expr = expr.replace(
            lambda e: isinstance(e, sympy.floor) and e.args[0].has(sympy.floor), merge
        )
    return expr


def _floor_clause(expr: sympy.Basic) -> sympy.Basic:
    """MaxPool2d's output side without ceil_mode: ``Min(floor(...) + 1, ceiling((X + p)/s))``
    is its floor clause, since 2*p <= k gives ``(X + 2p - k)/s < (X + p)/s`` and so
    ``floor(...) + 1 <= ceiling(...)`` (the ceiling clause binds only in ceil_mode)."""
    return expr.replace(
        lambda e: (
            isinstance(e, sympy.Min)
            and len(e.args) == 2
            and sum(a.has(sympy.ceiling) for a in e.args) == 1
        ),
        lambda e: next(a for a in e.args if not a.has(sympy.ceiling)),
    )


def _tidy(cost: Cost, pool: bool = False) -> Cost:
    """``cost`` with its floors merged (see :func:`_merge_floors`); ``pool``: a MaxPool2d
    without ceil_mode, whose output side is its floor clause (see :func:`_floor_clause`)."""

    def tidy(e: sympy.Basic) -> sympy.Basic:
        return _merge_floors(_floor_clause(e) if pool else e)

    parts = [p._map(tidy) for p in cost.parts]
    out = cost.output_shape
    if out is not None:
        out = tuple(tidy(e) for e in out)  # rule outputs: SymPy already
    conditions = []
    for c in cost.conditions:
        merged = tidy(c.condition)
        if merged is not sympy.true:  # decided once the floors are merged
            conditions.append(replace(c, condition=merged))
    return Cost(parts, out, conditions)


def _numel(x: Shape) -> Any:
    n = sympy.Integer(1)
    for e in x:
        n *= e
    return n


# --- layers ---------------------------------------------------------------------------------
def _conv(
    name: str, x: Shape, c_out: Any, k: int, s: int = 1, p: int = 0, g: Any = 1, b: int = 0
) -> Cost:
    n, c_in, h, w = x
    cost = (
        catalogue()
        .get("Conv2d")
        .at(name=name, N=n, C_in=c_in, C_out=c_out, k=k, s=s, p=p, d=1, g=g, b=b, H=h, W=w)
    )
    return _tidy(cost)


def _bn(name: str, x: Shape) -> Cost:
    n, c, h, w = x
    return catalogue().get("BatchNorm2d").at(name=name, N=n, C=c, H=h, W=w, a=1, r=1)


def _elementwise(rule: str, name: str, x: Shape) -> Cost:
    """A rule over all elements of ``x`` (ReLU, ReLU6, the residual ``add``, ...); the
    output keeps the shape of ``x``."""
    cost = catalogue().get(rule).at(name=name, N=_numel(x))
    return Cost(cost.parts, tuple(x), cost.conditions)


def _chain(name: str, x: Shape, *steps: Callable[[str, Shape], Cost]) -> Cost:
    """Apply ``steps`` in order, each to the previous output; one part ``name``."""
    total: list[Cost] = []
    for step in steps:
        cost = step(name, x)
        total.append(cost)
        if cost.output_shape is not None:
            x = cost.output_shape
    return Cost([p for c in total for p in c.parts], x, [q for c in total for q in c.conditions])


def conv_bn_act(
    name: str, x: Shape, c_out: Any, k: int, s: int = 1, g: Any = 1, act: str | None = "ReLU"
) -> Cost:
    """Conv2d (``k x k``, stride ``s``, padding ``(k - 1) // 2``, no bias), BatchNorm2d and an
    activation (``act``: a rule name, or ``None``), as torchvision's ``Conv2dNormActivation``.

    >>> import layercost_sym as lc
    >>> N, h = lc.symbols("N h")
    >>> block = conv_bn_act("stem", (N, 3, h, h), 32, k=3, s=2, act="ReLU6")
    >>> block.output_shape
    (N, 32, floor(h/2 - 1/2) + 1, floor(h/2 - 1/2) + 1)
    >>> block.cost("macs")
    864*N*(floor(h/2 - 1/2) + 1)**2
    """
    steps: list[Callable[[str, Shape], Cost]] = [
        lambda nm, y: _conv(nm, y, c_out, k, s, (k - 1) // 2, g),
        _bn,
    ]
    if act is not None:
        steps.append(lambda nm, y: _elementwise(act, nm, y))
    return _chain(name, x, *steps)


def _equal(a: Any, b: Any) -> Any:
    """1 where the integers ``a`` and ``b`` are equal, else 0 (an integer expression where
    they are symbolic: SymPy would try to solve a Piecewise's condition, which takes seconds).
    """
    return 1 - sympy.Min(1, sympy.Abs(a - b))


def _residual(name: str, x: Shape, body: Cost, factor: Any = 1) -> Cost:
    """``x + body(x)``: the residual ``add`` (times a 0/1 ``factor``)."""
    assert body.output_shape is not None  # a body ends in a rule's part
    add = factor * _elementwise("add", name, body.output_shape)
    return Cost((*body.parts, *add.parts), body.output_shape, (*body.conditions, *add.conditions))


def depthwise_separable(name: str, x: Shape, c_out: Any, s: int = 1) -> Cost:
    """MobileNet's depthwise-separable block (Howard et al. 2017, Fig. 3): a 3x3 depthwise
    conv (stride ``s``) and a 1x1 pointwise conv to ``c_out``, each with BatchNorm and ReLU.
    """
    c_in = x[1]
    return _chain(
        name,
        x,
        lambda nm, y: conv_bn_act(nm, y, c_in, k=3, s=s, g=c_in),
        lambda nm, y: conv_bn_act(nm, y, c_out, k=1),
    )


def inverted_residual(name: str, x: Shape, c_out: Any, s: int, t: int, k: int = 3) -> Cost:
    """MobileNetV2's inverted residual block as torchvision's ``InvertedResidual(inp, oup,
    stride, expand_ratio)`` builds it: a 1x1 expansion to ``t*C_in`` with BatchNorm and ReLU6
    (left out when ``t == 1``), a ``k x k`` depthwise conv of stride ``s`` with BatchNorm and
    ReLU6, a linear 1x1 projection to ``c_out`` with BatchNorm, and the residual ``add`` when
    ``s == 1`` and ``C_in == c_out`` (a 0/1 factor where channel counts are symbolic).

    >>> import layercost_sym as lc
    >>> N, h, d = lc.symbols("N h d")
    >>> block = inverted_residual("b", (N, d, h, h), d, s=1, t=6)
    >>> sympy.factor(block.cost("macs"))
    6*N*d*h**2*(2*d + 9)
    """
    c_in = x[1]
    hidden = c_in * t
    steps: list[Callable[[str, Shape], Cost]] = []
    if t != 1:
        steps.append(lambda nm, y: conv_bn_act(nm, y, hidden, k=1, act="ReLU6"))
    steps += [
        lambda nm, y: conv_bn_act(nm, y, hidden, k=k, s=s, g=hidden, act="ReLU6"),
        lambda nm, y: conv_bn_act(nm, y, c_out, k=1, act=None),
    ]
    body = _chain(name, x, *steps)
    if s != 1:
        return body
    return _residual(name, x, body, _equal(c_in, c_out))


def basic_block(name: str, x: Shape, planes: int, s: int) -> Cost:
    """torchvision's ``BasicBlock``: two 3x3 convs (the first of stride ``s``) with BatchNorm,
    ReLU between; a 1x1 downsample (conv of stride ``s`` + BatchNorm) when the shape changes;
    the residual ``add`` and a ReLU."""
    c_in = x[1]
    body = _chain(
        name,
        x,
        lambda nm, y: conv_bn_act(nm, y, planes, k=3, s=s),
        lambda nm, y: conv_bn_act(nm, y, planes, k=3, act=None),
    )
    return _shortcut(name, x, body, planes, s, c_in)


def bottleneck(name: str, x: Shape, planes: int, s: int, version: str = "v1.5") -> Cost:
    """torchvision's ``Bottleneck`` (expansion 4): 1x1 to ``planes``, 3x3, 1x1 to
    ``4*planes``, each with BatchNorm (ReLU after the first two); the stride ``s`` on the 3x3
    (``version="v1.5"``, torchvision) or on the first 1x1 (``"v1"``, He et al. 2016 and the
    original Caffe model); a 1x1 downsample when the shape changes; ``add`` and ReLU."""
    c_in = x[1]
    s1, s2 = (s, 1) if version == "v1" else (1, s)
    body = _chain(
        name,
        x,
        lambda nm, y: conv_bn_act(nm, y, planes, k=1, s=s1),
        lambda nm, y: conv_bn_act(nm, y, planes, k=3, s=s2),
        lambda nm, y: conv_bn_act(nm, y, 4 * planes, k=1, act=None),
    )
    return _shortcut(name, x, body, 4 * planes, s, c_in)


def _shortcut(name: str, x: Shape, body: Cost, c_out: int, s: int, c_in: Any) -> Cost:
    parts = list(body.parts)
    conditions = list(body.conditions)
    if s != 1 or c_in != c_out:
        down = _chain(name, x, lambda nm, y: _conv(nm, y, c_out, 1, s), _bn)
        parts += down.parts
        conditions += down.conditions
    out = body.output_shape
    assert out is not None  # the body ends in a rule's part
    for extra in (_elementwise("add", name, out), _elementwise("ReLU", name, out)):
        parts += extra.parts
        conditions += extra.conditions
    return Cost(parts, out, conditions)


def _head(x: Shape, c_out: int, pool: str, dropout: bool) -> Cost:
    """Global average pool, flatten, [Dropout,] Linear(C, c_out) with bias: one part ``head``."""
    n, c, h, w = x
    if pool == "module":  # nn.AdaptiveAvgPool2d((1, 1))
        pooled = (
            catalogue()
            .get("AdaptiveAvgPool2d")
            .at(name="head", N=n, C=c, H=h, W=w, H_out=1, W_out=1)
        )
    else:  # F.adaptive_avg_pool2d(x, (1, 1)) runs aten.mean(dim=[-1, -2], keepdim=True)
        pooled = (
            catalogue().get("mean.adaptive_avg_pool2d").at(name="head", N=n * c, N_in=n * c * h * w)
        )
    steps = [pooled, catalogue().get("view").at(name="head", N=n * c)]
    if dropout:
        steps.append(catalogue().get("Dropout").at(name="head", N=n * c))
    steps.append(catalogue().get("Linear").at(name="head", N=n, C_in=c, C_out=c_out, b=1))
    return sum(steps[1:], steps[0])


def _input(resolution: Any) -> Shape:
    return (symbols("N"), sympy.Integer(3), resolution, resolution)


def _then(total: list[Cost], cost: Cost) -> Shape:
    total.append(cost)
    assert cost.output_shape is not None  # a rule's part: its output shape is known
    return cost.output_shape


def _sum(costs: list[Cost]) -> Cost:
    return Cost([p for c in costs for p in c.parts], None, [q for c in costs for q in c.conditions])


# --- MobileNet v1 ---------------------------------------------------------------------------
# Howard et al. 2017, Table 1: (stride of the depthwise conv, output channels of the pointwise
# conv) of the 13 depthwise-separable blocks.  The table's last "Conv dw / s2" on a 7x7 input
# with a 7x7 output is a known typo: every implementation (the authors' TF-slim, Keras) uses 1.
_MOBILENET_V1 = (
    (1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512),
    (1, 512), (1, 512), (1, 512), (1, 512), (1, 512), (2, 1024), (1, 1024),
)  # fmt: skip


def _width(alpha: Any, m: int) -> Any:
    """``floor(alpha*M)``: Keras' ``int(filters * alpha)``; equals the paper's ``alpha*M``
    whenever that is an integer (alpha = 1, 0.75, 0.5, 0.25 for every layer)."""
    c = sympy.floor(alpha * m)
    if c.is_number and c < 1:
        raise ArchitectureError(f"alpha = {alpha} leaves floor({alpha}*{m}) = {c} channels")
    return c


@register(
    "mobilenet_v1",
    hyperparameters=(
        Hyperparameter(
            "alpha", "width multiplier: alpha*M channels per layer", integer=False, default=1
        ),
        Hyperparameter("resolution", "input side in pixels (the paper's rho*224)", default=224),
    ),
    defaults_from="the paper's baseline: Table 1, 224 x 224 x 3 input, alpha = 1",
    mirrors=(
        "Howard et al. 2017, Table 1 (no torchvision model): Conv2d(3, 32a, 3, stride 2, "
        "padding 1, bias=False), BatchNorm2d, ReLU; 13 x [depthwise Conv2d 3x3 (padding 1, "
        "groups = channels), BatchNorm2d, ReLU, Conv2d 1x1, BatchNorm2d, ReLU]; "
        "AdaptiveAvgPool2d(1), torch.flatten, Linear(1024a, 1000); channels floor(alpha*M)"
    ),
)
def mobilenet_v1(alpha: Any, resolution: Any) -> Cost:
    """MobileNet v1 (Howard et al. 2017, Table 1) with width multiplier ``alpha``.

    Every conv is followed by BatchNorm and ReLU and has no bias; padding 1 on the 3x3
    convs gives TF's 'SAME' output size ``ceil(side/stride)`` at any input side; the final
    7x7 average pool is a global one (``AdaptiveAvgPool2d(1)``) so that any resolution works;
    the softmax is left out (a classifier returns logits, as torchvision's do).  Layer ``i``
    has ``floor(alpha*M_i)`` channels (Keras' ``int(filters * alpha)``): the paper's
    ``alpha*M`` whenever that is an integer.  Parts: ``stem``, ``block1`` ... ``block13``,
    ``head``.

    >>> import layercost_sym as lc
    >>> m = lc.architecture("mobilenet_v1", alpha=1, resolution=224)
    >>> m.params, m.evaluate({"N": 1}, "macs")
    (4231976, 568740352)
    """
    total: list[Cost] = []
    x = _input(resolution)
    x = _then(total, conv_bn_act("stem", x, _width(alpha, 32), k=3, s=2))
    for i, (s, m) in enumerate(_MOBILENET_V1, start=1):
        x = _then(total, depthwise_separable(f"block{i}", x, _width(alpha, m), s))
    total.append(_head(x, 1000, pool="module", dropout=False))
    return _sum(total)


# --- MobileNet v2 ---------------------------------------------------------------------------
# torchvision's inverted_residual_setting: expansion t, channels c, repeats n, first stride s.
_MOBILENET_V2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                 (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip


def make_divisible(v: Any, divisor: int = 8) -> Any:
    """torchvision's ``_make_divisible(v, divisor)`` exactly, also for a symbolic ``v``.

    ``max(divisor, int(v + divisor/2) // divisor * divisor)`` (for ``v > 0``, ``int`` is
    ``floor``), plus ``divisor`` where that rounded down by more than 10% of ``v``.  torchvision
    computes in floats; for multipliers whose products are exact in binary (``k/64``, ...) the
    two agree everywhere.

    >>> make_divisible(sympy.Rational(3, 4) * 32), make_divisible(sympy.Rational(35, 100) * 16)
    (24, 8)
    >>> a = sympy.Symbol("a", positive=True)
    >>> make_divisible(16 * a).subs(a, sympy.Rational(1, 2))
    8
    """
    rounded = sympy.Max(divisor, divisor * sympy.floor(v / divisor + sympy.Rational(1, 2)))
    # "+ divisor where rounded < 0.9*v", as an integer expression rather than a Piecewise
    # (SymPy tries to solve a Piecewise's conditions for alpha, which takes seconds): for an
    # integer r and a real u, min(1, max(0, ceiling(u - r))) is 1 exactly when r < u.
    bump = sympy.Min(1, sympy.Max(0, sympy.ceiling(sympy.Rational(9, 10) * v - rounded)))
    return rounded + divisor * bump


@register(
    "mobilenet_v2",
    hyperparameters=(
        Hyperparameter(
            "alpha", "width multiplier (torchvision's width_mult)", integer=False, default=1
        ),
        Hyperparameter("resolution", "input side in pixels", default=224),
    ),
    defaults_from="torchvision mobilenet_v2(): width_mult 1.0, its weights' 224-pixel crop",
    mirrors="torchvision.models.mobilenet_v2(width_mult=alpha), num_classes=1000, eval mode",
)
def mobilenet_v2(alpha: Any, resolution: Any) -> Cost:
    """MobileNetV2 (Sandler et al. 2018) as ``torchvision.models.mobilenet_v2`` builds it.

    ``width_mult = alpha``, 1000 classes, eval mode.

    Channel counts are torchvision's ``_make_divisible(c*alpha, 8)`` written exactly
    (:func:`make_divisible`: floor, ceiling, Max and Min), so a symbolic ``alpha`` gives a
    cost that is exact at every multiplier, not only the paper's ``alpha*c``; the last conv
    has ``_make_divisible(1280*max(1, alpha))`` channels.  A stride-1 block whose input and
    output channels are equal adds its input (the residual ``add``); in the first block of a
    stage that depends on ``alpha`` (at small multipliers both round up to 8), so its add
    carries a 0/1 factor ``1 - min(1, |C_in - C_out|)``.  Head: ``F.adaptive_avg_pool2d``
    (``aten.mean``), ``torch.flatten``, Dropout(0.2) (free in eval), Linear with bias.
    Parts: ``stem``, ``bottleneck1`` ... ``bottleneck7`` (the rows of the paper's Table 2),
    ``conv_last``, ``head``.

    >>> import layercost_sym as lc
    >>> m = lc.architecture("mobilenet_v2", alpha=1, resolution=224)
    >>> m.params, m.evaluate({"N": 1}, "macs")              # torchvision: 3.5M, 0.30 GFLOPS
    (3504872, 300774272)
    """
    total: list[Cost] = []
    x = _input(resolution)
    x = _then(total, conv_bn_act("stem", x, make_divisible(32 * alpha), k=3, s=2, act="ReLU6"))
    for row, (t, c, n, s) in enumerate(_MOBILENET_V2, start=1):
        c_out = make_divisible(c * alpha)
        for i in range(n):
            x = _then(total, inverted_residual(f"bottleneck{row}", x, c_out, s if i == 0 else 1, t))
    last = make_divisible(1280 * sympy.Max(1, alpha))
    x = _then(total, conv_bn_act("conv_last", x, last, k=1, act="ReLU6"))
    total.append(_head(x, 1000, pool="functional", dropout=True))
    return _sum(total)


# --- ResNet ---------------------------------------------------------------------------------
_RESNET = {  # depth: (block, blocks per stage)
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}


@register(
    "resnet",
    hyperparameters=(
        Hyperparameter("depth", "number of weighted layers", choices=tuple(_RESNET), default=50),
        Hyperparameter(
            "version",
            "v1: bottleneck stride on the first 1x1 (He et al. 2016, Caffe); "
            "v1.5: on the 3x3 (torchvision)",
            choices=("v1", "v1.5"),
            default="v1.5",
        ),
        Hyperparameter("resolution", "input side in pixels", default=224),
    ),
    defaults_from="torchvision resnet50(): its weights' 224-pixel crop",
    mirrors=(
        "torchvision.models.resnet18/34/50/101/152(), num_classes=1000, eval mode (v1.5); "
        "v1 moves each downsampling bottleneck's stride from conv2 (3x3) to conv1 (1x1)"
    ),
)
def resnet(depth: int, version: str, resolution: Any) -> Cost:
    """ResNet (He et al. 2016) as ``torchvision.models.resnet<depth>`` builds it.

    Stem: Conv2d(3, 64, 7, stride 2, padding 3, no bias), BatchNorm, ReLU, MaxPool2d(3, 2, 1);
    four stages of basic blocks (depth 18, 34) or bottlenecks (50, 101, 152) with 64, 128, 256,
    512 planes, the first block of stages 2-4 of stride 2; head: AdaptiveAvgPool2d(1),
    flatten, Linear(512 * expansion, 1000).  ``version="v1"`` puts a bottleneck's stride on
    its first 1x1 conv instead of the 3x3 (no change for basic blocks: depth 18 and 34 are
    the same in both).  Parts: ``stem``, ``layer1`` ... ``layer4``, ``head``.

    >>> import layercost_sym as lc
    >>> v15 = lc.architecture("resnet", depth=50, resolution=224)
    >>> v1 = lc.architecture("resnet", depth=50, version="v1", resolution=224)
    >>> v15.evaluate({"N": 1}, "macs"), v1.evaluate({"N": 1}, "macs")
    (4089184256, 3857973248)
    """
    kind, blocks = _RESNET[depth]
    total: list[Cost] = []
    n, _, h, w = _input(resolution)
    x = _then(total, conv_bn_act("stem", (n, 3, h, w), 64, k=7, s=2))
    pool = (
        catalogue()
        .get("MaxPool2d")
        .at(name="stem", N=n, C=64, H=x[2], W=x[3], k=3, s=2, p=1, d=1, c_m=0)
    )
    pool = _tidy(pool, pool=True)
    x = _then(total, pool)
    for stage, (planes, count) in enumerate(zip((64, 128, 256, 512), blocks, strict=True), start=1):
        for i in range(count):
            s = 2 if stage > 1 and i == 0 else 1
            if kind == "basic":
                block = basic_block(f"layer{stage}", x, planes, s)
            else:
                block = bottleneck(f"layer{stage}", x, planes, s, version)
            x = _then(total, block)
    total.append(_head(x, 1000, pool="module", dropout=False))
    return _sum(total)
