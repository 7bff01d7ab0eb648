"""Counting rules for the fused recurrent operators (``torch.nn.LSTM`` on CPU).

On CPU, ``nn.LSTM`` without a projection runs one ``aten.mkldnn_rnn_layer`` per layer and
direction: a fused oneDNN kernel that has no decomposition in ``torch._decomp`` (and that
``FlopCounterMode`` counts as 0).  Its count here is the arithmetic of torch's own reference
path for the same layer (``LSTMCell`` steps in ``aten/src/ATen/native/RNN.cpp``, which is what
torch runs with ``torch.backends.mkldnn`` disabled, and which the counter sees op by op)::

    gates = (h @ W_hh^T [+ b_hh]) + (x @ W_ih^T [+ b_ih])      # two (4H x k) products, one add
    i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of the chunks
    c' = f * c + i * g
    h' = o * tanh(c')

per time step and batch row: ``4H*(2I - 1 + b) + 4H*(2H - 1 + b)`` for the two products (each
dot product of k terms is 2k - 1, each bias add 1) and ``4H`` (gate add) ``+ 3H`` (sigmoid)
``+ H`` (tanh g) ``+ 3H`` (three products) ``+ H`` (add) ``+ H`` (tanh c') ``= 13H`` elementwise.
The zero initial state is multiplied like any other state, as the reference path does.
"""

from __future__ import annotations

from ...errors import UncountedOpError
from ..optable import register_op

__all__: list[str] = []

_LSTM_MODE = 2  # oneDNN's RNN mode enum as torch passes it: 0 relu, 1 tanh, 2 LSTM, 3 GRU


@register_op("mkldnn_rnn_layer")
def _mkldnn_rnn_layer(args: tuple, kwargs: dict, out) -> int:
    # mkldnn_rnn_layer(input, w_ih, w_hh, b_ih, b_hh, hx, cx, reverse, batch_sizes, mode,
    #                  hidden_size, num_layers, has_biases, bidirectional, batch_first, train)
    x, w_ih, w_hh = args[0], args[1], args[2]
    mode, hidden, has_biases = int(args[9]), int(args[10]), bool(args[12])
    if mode != _LSTM_MODE:
        raise UncountedOpError(f"mkldnn_rnn_layer in mode {mode}: only LSTM (mode 2) is counted")
    gates = w_ih.shape[0]  # 4 * hidden
    k_in, k_hid = w_ih.shape[1], w_hh.shape[1]
    rows = x.numel() // x.shape[-1]  # time steps x batch, whatever the layout
    b = int(has_biases)
    products = rows * gates * ((2 * k_in - 1 + b) + (2 * k_hid - 1 + b))
    return products + 13 * rows * hidden
