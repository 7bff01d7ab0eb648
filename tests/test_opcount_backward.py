"""The exact counter on backward passes: the rules of ``torchtools/ops/backward.py`` against
arithmetic worked by hand, against independent implementations counted by the same counter
(unfold + matmul, an ordinary convolution, torch's reference LSTM path) and against brute-force
enumeration; and whole models' ``loss.backward()`` counted without an uncounted operator."""

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch._decomp import decomposition_table

from layercost_sym.torchtools.opcount import ExactCounter
from layercost_sym.torchtools.ops.backward import lstm_layer_backward_exact

# torch's own notice when the LSTM tests switch mkldnn off and on, not a problem of the counts
pytestmark = pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN:UserWarning")


def backward_count(outputs, inputs, grads=None):
    """Count ``torch.autograd.grad`` of ``outputs`` (sum of each, or ``grads``) w.r.t. inputs."""
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    grads = grads or tuple(torch.ones_like(o) for o in outputs)
    with ExactCounter() as counter:
        torch.autograd.grad(outputs, inputs, grads)
    return counter.total, dict(counter.by_op)


def counted(fn, *args):
    with ExactCounter() as counter:
        fn(*args)
    return counter.total, dict(counter.by_op)


# ------------------------------------------------------------------------------- convolution


def brute_force_conv_backward(x_shape, w_shape, stride, padding, dilation, groups, transposed):
    """(grad_input, grad_weight) counts by enumerating every (n, channel, position, tap) tuple."""
    n, spatial = x_shape[0], len(w_shape) - 2
    sizes = x_shape[2:]
    kernel = w_shape[2:]
    if not transposed:
        c_in, c_out = x_shape[1], w_shape[0]
        outs = [
            (sizes[a] + 2 * padding[a] - dilation[a] * (kernel[a] - 1) - 1) // stride[a] + 1
            for a in range(spatial)
        ]
    else:
        c_in, c_out = x_shape[1], w_shape[1] * groups
        outs = [
            (sizes[a] - 1) * stride[a] - 2 * padding[a] + dilation[a] * (kernel[a] - 1) + 1
            for a in range(spatial)
        ]
    cin_g, cout_g = c_in // groups, c_out // groups

    def land(o, j):  # the position o*s - p + j*d, per axis
        return tuple(o[a] * stride[a] - padding[a] + j[a] * dilation[a] for a in range(spatial))

    positions = list(itertools.product(*[range(s) for s in sizes]))
    out_positions = list(itertools.product(*[range(s) for s in outs]))
    taps = list(itertools.product(*[range(k) for k in kernel]))
    if not transposed:
        # grad_input: each gy[n, co, o] times w[co, ci, j] scattered to x[n, ci, o*s - p + j*d]
        # when inside the input; each reached x element sums its products
        products, reached = 0, set()
        for b, co, o, ci_g, j in itertools.product(
            range(n), range(c_out), out_positions, range(cin_g), taps
        ):
            t = land(o, j)
            if all(0 <= t[a] < sizes[a] for a in range(spatial)):
                products += 1
                reached.add((b, (co // cout_g) * cin_g + ci_g, t))
        grad_input = 2 * products - len(reached)
        # grad_weight: per weight element, one product per (n, output position), padding included
        terms = n * len(out_positions)
        grad_weight = c_out * cin_g * len(taps) * (2 * terms - 1)
    else:
        # grad_input: an ordinary convolution of gy, a full window per input element
        grad_input = n * c_in * len(positions) * (2 * cout_g * len(taps) - 1)
        # grad_weight[ci, co, j]: sum over (n, i) whose scatter target lies inside the output
        grad_weight = 0
        for j in taps:
            terms = n * sum(
                1 for i in positions if all(0 <= land(i, j)[a] < outs[a] for a in range(spatial))
            )
            if terms:
                grad_weight += c_in * cout_g * (2 * terms - 1)
    return grad_input, grad_weight


CONVS = [
    # (cls, in, out, kernel, stride, padding, dilation, groups, x_shape)
    (nn.Conv1d, 4, 6, 3, 2, 1, 2, 2, (2, 4, 11)),
    (nn.Conv2d, 4, 6, 3, 2, 1, 1, 2, (2, 4, 7, 6)),
    (nn.Conv2d, 2, 3, (2, 3), (1, 2), (1, 0), (2, 1), 1, (1, 2, 6, 7)),
    (nn.Conv3d, 2, 2, 2, 1, 1, 1, 1, (1, 2, 3, 4, 3)),
    (nn.ConvTranspose1d, 4, 6, 3, 2, 1, 1, 2, (2, 4, 5)),
    (nn.ConvTranspose2d, 2, 3, 3, 2, 1, (1, 2), 1, (1, 2, 4, 3)),
    (nn.ConvTranspose3d, 2, 2, 2, 2, 1, 1, 1, (1, 2, 2, 3, 2)),
]


@pytest.mark.parametrize("case", CONVS, ids=lambda c: c[0].__name__)
@pytest.mark.parametrize("mask", [(True, True, True), (False, True, True), (True, False, False)])
def test_convolution_backward_against_brute_force(case, mask):
    cls, c_in, c_out, k, s, p, d, g, x_shape = case
    torch.manual_seed(0)
    conv = cls(c_in, c_out, k, stride=s, padding=p, dilation=d, groups=g)
    x = torch.randn(x_shape, requires_grad=mask[0])
    y = conv(x)
    inputs = [t for t, m in zip((x, conv.weight, conv.bias), mask, strict=True) if m]
    total, by_op = backward_count(y, inputs)
    assert set(by_op) == {"convolution_backward"}
    grad_input, grad_weight = brute_force_conv_backward(
        x_shape,
        tuple(conv.weight.shape),
        conv.stride,
        conv.padding,
        conv.dilation,
        g,
        conv.transposed,
    )
    grad_bias = y.numel() - c_out  # N * prod(out) - 1 adds per output channel
    expected = mask[0] * grad_input + mask[1] * grad_weight + mask[2] * grad_bias
    assert total == expected


def test_conv1d_backward_by_hand():
    # x (1, 1, 5), w (1, 1, 3), padding 1: gy (1, 1, 5).
    # grad_input: pairs (o, j), t = o - 1 + j; 15 pairs, 2 land outside [0, 5) ((0,0) -> -1,
    # (4,2) -> 5): 13 products onto 5 inputs: 13 multiplies + 13 - 5 adds = 21.
    # grad_weight: 3 weights, each a 5-term dot product (padding included): 3 * 9 = 27.
    # grad_bias: a 5-term sum: 4.
    conv = nn.Conv1d(1, 1, 3, padding=1)
    x = torch.randn(1, 1, 5, requires_grad=True)
    y = conv(x)
    assert backward_count(y, [x, conv.weight, conv.bias]) == (52, {"convolution_backward": 52})
    assert backward_count(conv(x), [conv.weight])[0] == 27
    assert backward_count(conv(x), [conv.bias])[0] == 4


@pytest.mark.parametrize("groups", [1, 2])
def test_conv2d_grad_weight_and_bias_equal_unfold_matmul(groups):
    # grad_weight = per group gy (C_out/g, N*L) @ cols^T (N*L, C_in/g*k*k) with cols the unfolded
    # zero-padded input; grad_bias = gy summed over batch and positions: counted by the same
    # counter as an mm and a sum, and computing the same numbers as torch
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=1, groups=groups)
    x = torch.randn(2, 4, 7, 6)
    y = conv(x)
    gy = torch.randn_like(y)
    n, c_out, oh, ow = y.shape
    cols = F.unfold(x, 3, dilation=1, padding=1, stride=2)  # (N, C_in*9, L)

    def explicit():
        gw = []
        for gi in range(groups):
            cin_g, cout_g = 4 // groups, c_out // groups
            cols_g = cols[:, gi * cin_g * 9 : (gi + 1) * cin_g * 9]
            cols_g = cols_g.permute(0, 2, 1).reshape(n * oh * ow, cin_g * 9)
            gy_g = gy[:, gi * cout_g : (gi + 1) * cout_g].permute(1, 0, 2, 3)
            gw.append(torch.mm(gy_g.reshape(cout_g, n * oh * ow), cols_g))
        return torch.cat(gw).reshape(conv.weight.shape), gy.sum(dim=(0, 2, 3))

    with ExactCounter() as reference:
        gw, gb = explicit()
    total, _ = backward_count(y, [conv.weight, conv.bias], (gy,))
    assert total == reference.total
    assert set(reference.by_op) == {"mm", "sum"}
    torch.testing.assert_close((gw, gb), torch.autograd.grad(conv(x), [conv.weight, conv.bias], gy))


def test_transposed_grad_input_equals_the_ordinary_convolution_counted_forward():
    # grad_input of a transposed convolution is F.conv2d(gy, w) with its stride, padding,
    # dilation and groups: the counter's own `conv` kind counts that
    torch.manual_seed(0)
    conv = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2)
    x = torch.randn(2, 4, 3, 4, requires_grad=True)
    y = conv(x)
    gy = torch.randn_like(y)
    total, _ = backward_count(y, [x], (gy,))
    with ExactCounter() as reference:
        gx = F.conv2d(gy, conv.weight, None, 2, 1, 1, 2)
    assert total == reference.total
    torch.testing.assert_close(gx, torch.autograd.grad(conv(x), x, gy)[0])


# ---------------------------------------------------------------------------------- pooling


def test_max_pool_backward_scatter_adds_one_per_output():
    # max_pool2d_with_indices_backward adds the 2x2 grad_output into the zero-filled grad_input at
    # the saved indices: 4 adds (each value an add), as its decomposition's scatter_add would;
    # the 3-d, adaptive and fractional kernels do the same at their indices: one add per
    # grad_output element
    x = torch.randn(1, 1, 4, 4, requires_grad=True)
    assert backward_count(F.max_pool2d(x, 2), [x]) == (4, {"max_pool2d_with_indices_backward": 4})
    grad = torch.randn(1, 1, 2, 2)
    _, indices = F.max_pool2d(x.detach(), 2, return_indices=True)
    with ExactCounter() as reference:  # the decomposition's scatter_add: the same count
        torch.zeros(1, 16).scatter_add(1, indices.reshape(1, 4), grad.reshape(1, 4))
    assert reference.total == 4
    x3 = torch.randn(1, 2, 4, 4, 4, requires_grad=True)
    assert backward_count(F.max_pool3d(x3, 2), [x3])[0] == 2 * 8
    assert backward_count(F.adaptive_max_pool2d(x, (3, 2)), [x])[0] == 6
    assert backward_count(F.adaptive_max_pool3d(x3, 2), [x3])[0] == 2 * 8
    frac = nn.FractionalMaxPool2d(2, output_size=3)
    assert backward_count(frac(x), [x])[0] == 9


def test_max_pool_backward_with_a_window_wholly_in_the_padding():
    # MaxPool1d(2, padding=1, dilation=2) on L = 1: the one window's taps are -1 and 1, both
    # outside the input; the forward keeps -inf and the index 1, outside the plane of 1 element,
    # on which torch's decomposition (scatter_add) fails (the CPU kernel would add outside
    # grad_input: not run here)
    x = torch.randn(1, 2, 1)
    y, indices = F.max_pool2d(x.unsqueeze(-2), (1, 2), 1, (0, 1), (1, 2), return_indices=True)
    assert indices.flatten().tolist() == [1, 1]
    decomposition = decomposition_table[torch.ops.aten.max_pool2d_with_indices_backward.default]
    with pytest.raises(RuntimeError, match="index"):
        decomposition(
            torch.ones_like(y), x.unsqueeze(-2), (1, 2), (1, 1), (0, 1), (1, 2), False, indices
        )
    # a wholly padded window whose index stays inside the plane: x (1, 1, 2, 1), kernel (1, 2),
    # stride (2, 1), padding (0, 1), dilation (1, 2): the taps along W are -1 and 1, both out;
    # index 0*1 + 1 = 1 < 2.  The kernel adds the one output's gradient there: 1 add
    x = torch.randn(1, 1, 2, 1, requires_grad=True)
    y = F.max_pool2d(x, (1, 2), (2, 1), (0, 1), (1, 2))
    assert backward_count(y, [x]) == (1, {"max_pool2d_with_indices_backward": 1})
    # MaxPool2d(3, 2, 1) on 5x5, 3 channels: 3 x 3 x 3 outputs, one add each
    x = torch.randn(1, 3, 5, 5, requires_grad=True)
    assert backward_count(F.max_pool2d(x, 3, 2, 1), [x])[0] == 27


def test_avg_pool_backward_by_hand():
    # AvgPool2d(3, 2, 1) on 5x5: per axis the windows [-1,2), [1,4), [3,6) clipped to the input
    # hold 2, 3, 2 elements (7 in all): 3x3 outputs cover 7 * 7 = 49 input positions.  The
    # contiguous kernel divides each output gradient once and adds it into each covered
    # position: 49 adds + 9 divides = 58, the forward's 49 plus one per output
    x = torch.randn(1, 1, 5, 5, requires_grad=True)
    y = F.avg_pool2d(x, 3, 2, 1)
    assert backward_count(y, [x]) == (58, {"avg_pool2d_backward": 58})
    assert counted(F.avg_pool2d, x.detach(), 3, 2, 1)[0] == 49
    # channels last: a divide inside the loop, per covered position: 2 * 49 per channel (3)
    xc = torch.randn(1, 3, 5, 5).to(memory_format=torch.channels_last).requires_grad_()
    assert backward_count(F.avg_pool2d(xc, 3, 2, 1), [xc])[0] == 3 * 2 * 49
    # AvgPool3d(2) on 4x4x4: 8 windows of 8: 64 adds + 8 divides
    x3 = torch.randn(1, 1, 4, 4, 4, requires_grad=True)
    assert backward_count(F.avg_pool3d(x3, 2), [x3])[0] == 72


def test_adaptive_avg_pool_backward_by_hand():
    # 5 -> 3 per axis: windows [0,2), [1,4), [3,5): 2 + 3 + 2 = 7; a 3x3 output covers 49
    # positions; the kernel computes grad / kh / kw (2 divides) per output: 49 + 18 = 67
    x = torch.randn(1, 1, 5, 5, requires_grad=True)
    y = F.adaptive_avg_pool2d(x, 3)
    assert backward_count(y, [x]) == (67, {"_adaptive_avg_pool2d_backward": 67})
    # 3-d, 4 -> 2 per axis: windows of 2, 8 outputs of 8 elements: 64 adds + 3 * 8 divides
    x3 = torch.randn(1, 1, 4, 4, 4, requires_grad=True)
    assert backward_count(F.adaptive_avg_pool3d(x3, 2), [x3])[0] == 64 + 24


# ------------------------------------------------------------------------- other layer kernels


def test_shrink_nearest_upsampling_and_replication_padding():
    x = torch.randn(2, 3, 4, requires_grad=True)
    # (x >= -l) & (x <= l), then the select: 4 per element
    assert backward_count(F.hardshrink(x), [x])[0] == 4 * 24
    assert backward_count(F.softshrink(x), [x])[0] == 4 * 24
    x4 = torch.randn(1, 2, 3, 3, requires_grad=True)
    # each of the 2 * 6 * 6 output gradients added into its source pixel
    assert backward_count(F.interpolate(x4, scale_factor=2), [x4])[0] == 72
    assert backward_count(F.interpolate(x4, scale_factor=2, mode="nearest-exact"), [x4])[0] == 72
    # replication padding: each of the 2 * 5 * 5 output gradients added into the pixel it copied
    assert backward_count(F.pad(x4, (1, 1, 1, 1), mode="replicate"), [x4])[0] == 50


def test_linear_upsampling_backward_by_hand():
    # per output position along a resized axis 14 (source index 3, its bound to 0 2, floor and
    # min 2, fraction sub, max, min 3, i1's comparison, select, add 3, lambda0 1), 10 with
    # align_corners (scale*i: 1 instead of 5), 0 on an axis not resized; per output element and
    # each of its 2^d taps d multiplies and an add
    x1 = torch.randn(1, 1, 2, requires_grad=True)
    y = F.interpolate(x1, size=3, mode="linear")
    assert backward_count(y, [x1]) == (3 * 14 + 3 * 2 * 2, {"upsample_linear1d_backward": 54})
    y = F.interpolate(x1, size=3, mode="linear", align_corners=True)
    assert backward_count(y, [x1])[0] == 3 * 10 + 3 * 2 * 2  # 42
    # bilinear, C = 3 (contiguous kernel): 14*(3 + 4) + 4 taps * 3 per element * 2*3*3*4
    x = torch.randn(2, 3, 2, 2, requires_grad=True)
    assert backward_count(F.interpolate(x, size=(3, 4), mode="bilinear"), [x])[0] == 98 + 864
    # H not resized: 0 for its rows, 14*4 for the columns, 12 * 2*3*2*4
    assert backward_count(F.interpolate(x, size=(2, 4), mode="bilinear"), [x])[0] == 56 + 576
    # one output pixel: the contiguous gradient is channels-last too, and the twin kernel forms
    # each tap's weight product once per pixel (4 taps * 1 multiply * N = 2 pixels) and then a
    # multiply and an add per channel (4 taps * 2 * 2*3 elements): 14*2 + 8 + 48
    assert backward_count(F.interpolate(x, size=(1, 1), mode="bilinear"), [x])[0] == 28 + 8 + 48
    # one channel: channels-last as well, and the same count as the contiguous kernel:
    # 14*(3 + 3) + 4 taps * (1 + 2) * 9 elements
    xc = torch.randn(1, 1, 2, 2, requires_grad=True)
    assert backward_count(F.interpolate(xc, size=(3, 3), mode="bilinear"), [xc])[0] == 84 + 108
    # channels-last input (its output and gradient too), C = 3: 84 + 4*1*9 + 4*2*27
    xl = torch.randn(1, 3, 2, 2).to(memory_format=torch.channels_last).requires_grad_()
    y = F.interpolate(xl, size=(3, 3), mode="bilinear")
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert backward_count(y, [xl])[0] == 84 + 36 + 216
    # trilinear (1, 2, 2, 2, 2) -> (2, 3, 3): D not resized, 14*3 + 14*3; 8 taps * (3 + 1) * 36
    x3 = torch.randn(1, 2, 2, 2, 2, requires_grad=True)
    y = F.interpolate(x3, size=(2, 3, 3), mode="trilinear")
    assert backward_count(y, [x3]) == (84 + 1152, {"upsample_trilinear3d_backward": 1236})
    # align_corners: 10*3 + 10*3 + 1152
    y = F.interpolate(x3, size=(2, 3, 3), mode="trilinear", align_corners=True)
    assert backward_count(y, [x3])[0] == 60 + 1152


def test_bicubic_upsampling_backward_by_hand():
    # per output position along each axis 97 (source index 3, guarded index and fraction 5, the
    # four weights 25, per tap of the 4x4 window the index i - 1 + k and its bound 4*16 = 64), 95
    # with align_corners; per output element 16 taps of 2 multiplies and an add, 48
    x = torch.randn(1, 2, 2, 2, requires_grad=True)
    y = F.interpolate(x, size=(3, 3), mode="bicubic")
    assert backward_count(y, [x]) == (97 * 6 + 48 * 18, {"upsample_bicubic2d_backward": 1446})
    y = F.interpolate(x, size=(3, 3), mode="bicubic", align_corners=True)
    assert backward_count(y, [x])[0] == 95 * 6 + 48 * 18  # 1434
    # one side kept: the full path still runs (97*(2 + 3) + 48 * 2*2*3)
    y = F.interpolate(x, size=(2, 3), mode="bicubic")
    assert backward_count(y, [x])[0] == 485 + 576
    # both sides kept: the kernel copies the gradient, nothing computed
    y = F.interpolate(x, size=(2, 2), mode="bicubic")
    assert backward_count(y, [x])[0] == 0


def test_logical_operators_of_decompositions_count_one_per_element():
    # hardtanh_backward's decomposition: where((x <= lo) | (x >= hi), 0, g): le, ge, |, where
    x = torch.randn(2, 5, requires_grad=True)
    assert backward_count(F.hardtanh(x), [x])[0] == 4 * 10
    a, b = torch.rand(3) > 0.5, torch.rand(3) > 0.5
    assert counted(lambda: (a & b, a | b, a ^ b))[0] == 9


def test_embedding_bag_backward_by_hand():
    indices = torch.tensor([[0, 1, 1], [2, 3, 9]])  # 2 bags of 3, E = 4
    for mode, expected in [
        ("sum", 6 * 2 * 4),  # 6 indices, axpy each: 4 multiplies + 4 adds
        ("mean", 6 * (2 * 4 + 1)),  # and a divide by the bag size per index
        ("max", 2 * 4),  # index_add of each bag's row: 4 adds per bag
    ]:
        bag = nn.EmbeddingBag(10, 4, mode=mode)
        assert backward_count(bag(indices), [bag.weight])[0] == expected, mode
    bag = nn.EmbeddingBag(10, 4, mode="sum", padding_idx=1)  # two entries skipped
    assert backward_count(bag(indices), [bag.weight])[0] == 4 * 8
    bag = nn.EmbeddingBag(10, 4, mode="sum", scale_grad_by_freq=True)  # and / count per index
    assert backward_count(bag(indices), [bag.weight])[0] == 6 * 9
    # per_sample_weights: 5 indices; the weight's gradient (axpy, 8 each) and the weights'
    # gradient, a 4-term dot product per index (7 each)
    bag = nn.EmbeddingBag(10, 4, mode="sum")
    psw = torch.rand(5, requires_grad=True)
    y = bag(torch.tensor([0, 1, 1, 2, 3]), torch.tensor([0, 2]), per_sample_weights=psw)
    _, by_op = backward_count(y, [bag.weight, psw])
    assert by_op == {
        "_embedding_bag_backward": 40,
        "_embedding_bag_per_sample_weights_backward": 35,
    }


# --------------------------------------------------------------------------------------- LSTM


def lstm_backward(
    mkldnn, layers=1, bidirectional=False, bias=True, batch_first=False, use=3, size=4
):
    torch.manual_seed(0)
    lstm = nn.LSTM(size, 5, layers, bias=bias, batch_first=batch_first, bidirectional=bidirectional)
    dirs = 2 if bidirectional else 1
    x = torch.randn(3, 2, size, requires_grad=True)
    h0 = torch.randn(layers * dirs, 2 if not batch_first else 3, 5, requires_grad=True)
    c0 = torch.randn_like(h0, requires_grad=True)
    with torch.backends.mkldnn.flags(enabled=mkldnn):
        out, (h, c) = lstm(x, (h0, c0))
    loss = out.sum() + (h.sum() if use > 1 else 0) + (c.sum() if use > 2 else 0)
    with ExactCounter() as counter:
        loss.backward()
    return counter.total, dict(counter.by_op)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"use": 1},
        {"use": 2},
        {"bias": False},
        {"batch_first": True},
        # without h_n's (or c_n's) gradient the count is not symmetric in steps and batch:
        # the kernel gets the input time-major even when the module is batch_first
        {"batch_first": True, "use": 1},
        {"batch_first": True, "use": 2},
    ],
    ids=str,
)
def test_mkldnn_lstm_backward_equals_the_reference_path(kwargs):
    # with every gradient requested (input, h0, c0, weights), the fused kernel's backward is
    # counted as the counter counts the backward of torch's reference path op by op
    fused, by_op = lstm_backward(True, **kwargs)
    reference, _ = lstm_backward(False, **kwargs)
    assert set(by_op) == {"mkldnn_rnn_layer_backward"}
    assert fused == reference


def test_mkldnn_lstm_stacked_bidirectional_is_one_reference_layer_per_call():
    # 2 layers x 2 directions: four kernel calls, two on the 4-feature input and two on the
    # first layer's 10-feature output; each counts what a one-layer reference LSTM of that
    # input size counts (the reverse direction does the same arithmetic).  The graph around the
    # kernels differs between the paths (the fused one selects h0[layer], whose gradients
    # autograd then adds up; the reference unbinds it), so only the kernels are compared
    _, by_op = lstm_backward(True, layers=2, bidirectional=True)
    one_layer = {size: lstm_backward(False, size=size)[0] for size in (4, 10)}
    assert by_op["mkldnn_rnn_layer_backward"] == 2 * one_layer[4] + 2 * one_layer[10]


def test_lstm_backward_formula_by_hand():
    # T = B = I = H = 1, G = 4: 21 elementwise; adds: h_T gets grad_output + grad_hy (1), c_T
    # the tanh path + grad_cy (1); products: grad_x 1*1*7, grad_W_ih 4*1*1, grad_h 1*1*7,
    # grad_W_hh 4*1*1 = 22; the bias sums have one term each: 0.  45 in all
    assert lstm_layer_backward_exact(1, 1, 1, 1, True, True, True, True) == 21 + 2 + 22
    # T = 2: h_1 gets grad_output + step 2's, h_2 grad_output + grad_hy (2 adds); c likewise
    # (2); W_hh and b_hh are used twice (4 + 4 adds); b_ih sums 2 rows (4 adds); products
    # grad_x 2*1*7, grad_W_ih 4*1*3, per step grad_h 7 and grad_W_hh 4: 14 + 12 + 22 = 48.
    # 2 * 21 + 12 + 4 + 48 = 106, what the counter gives the reference path (test above)
    assert lstm_layer_backward_exact(2, 1, 1, 1, True, True, True, True) == 42 + 12 + 4 + 48


# -------------------------------------------------------------------------------------- models


def transposed_grad_input(size, kernel, stride, padding, c_in, c_out, n):
    """grad_input count of a square ordinary convolution (groups 1) by per-axis enumeration:
    products whose target x position lies in the input, and the positions reached."""
    out = (size + 2 * padding - kernel) // stride + 1
    pairs = [(o, j) for o in range(out) for j in range(kernel)]
    kept = sum(1 for o, j in pairs if 0 <= o * stride - padding + j < size)
    reached = len({o * stride - padding + j for o, j in pairs} & set(range(size)))
    return 2 * n * c_out * c_in * kept**2 - n * c_in * reached**2


def run_backward(model, x, train, input_grad):
    model.train(train)
    model.zero_grad(set_to_none=True)  # else each run adds its gradients into the last run's
    if input_grad:
        x = x.clone().requires_grad_()
    out = model(x)
    out = out.logits if hasattr(out, "logits") else out
    loss = out.float().sum()
    with ExactCounter() as counter:
        loss.backward()
    return counter.total, counter.by_op


@pytest.mark.parametrize(
    ("name", "stem", "modes"),
    [
        (
            "resnet18",
            (7, 2, 3, 3, 64),
            [(False, False), (False, True), (True, False), (True, True)],
        ),
        ("mobilenet_v2", (3, 2, 1, 3, 32), [(False, False), (False, True), (True, True)]),
    ],
)
def test_cnn_backward_counts_and_skips_the_stems_grad_input(name, stem, modes):
    import torchvision  # installed by .ci/run: nothing is skipped

    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None)
    x = torch.randn(2, 3, 32, 32)
    totals = {}
    for train, input_grad in modes:
        total, by_op = run_backward(model, x, train, input_grad)
        assert total > 0 and by_op["convolution_backward"] > 0
        totals[train, input_grad] = total
    # an input not requiring grad: the stem convolution's output_mask[0] is False, and the
    # only difference is its grad_input (a transposed convolution of its grad_output)
    kernel, stride, padding, c_in, c_out = stem
    stem_grad_input = transposed_grad_input(32, kernel, stride, padding, c_in, c_out, 2)
    assert totals[False, True] - totals[False, False] == stem_grad_input
    if (True, False) in totals:
        assert totals[True, True] - totals[True, False] == stem_grad_input


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_transformer_backward_counts(name, small_causal_lm):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    torch.manual_seed(0)
    model = small_causal_lm(name)
    ids = torch.randint(0, 50, (2, 7))
    with sdpa_kernel(SDPBackend.MATH):
        for train in (False, True):
            total, _ = run_backward(model, ids, train, input_grad=False)
            # the LM head's weight gradient alone: 50 x 32 entries, each a 14-term dot product
            assert total > 50 * 32 * (2 * 14 - 1)
