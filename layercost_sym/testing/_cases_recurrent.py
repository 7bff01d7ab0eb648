"""Hypothesis strategies for the recurrent layers: RNN, LSTM, GRU and their cells.

Every option torch offers is drawn: nonlinearity (RNN), bias, num_layers, bidirectional,
batch_first, proj_size (LSTM, from 1 to hidden_size - 1 by construction), dropout, and batched or
unbatched input; the module is in training or inference mode.  The initial state is left out
(zeros).  dropout is drawn from 0, a fraction and 1 (torch's three cases: nothing, a mask,
input * 0), in both modes and with any number of layers.

>>> from layercost_sym.testing._cases_recurrent import lstm_cases
>>> case = lstm_cases().example()       # doctest: +SKIP
>>> case.name                           # doctest: +SKIP
'LSTM'
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from .case import LayerCase

__all__ = [
    "gru_cases",
    "gru_cell_cases",
    "lstm_cases",
    "lstm_cell_cases",
    "rnn_cases",
    "rnn_cell_cases",
]


def _sequence_case(
    draw,
    name: str,
    extra: dict[str, Any],
    *,
    hidden: int,
    max_len: int,
    max_batch: int,
    max_input: int,
    max_layers: int,
    training: bool | None,
    unbatched: bool,
) -> LayerCase:
    train = draw(st.booleans()) if training is None else training
    layers = draw(st.integers(1, max_layers))
    dropout = draw(st.sampled_from([0.0, 0.25, 1.0]))  # applied between layers in training
    batch_first = draw(st.booleans())
    length, features = draw(st.integers(1, max_len)), draw(st.integers(1, max_input))
    if unbatched and draw(st.booleans()):
        shape: tuple[int, ...] = (length, features)  # unbatched: (L, I) whatever batch_first
    else:
        batch = draw(st.integers(1, max_batch))
        shape = (batch, length, features) if batch_first else (length, batch, features)
    kwargs = dict(
        input_size=features,
        hidden_size=hidden,
        num_layers=layers,
        bias=draw(st.booleans()),
        batch_first=batch_first,
        dropout=dropout,
        bidirectional=draw(st.booleans()),
        **extra,
    )
    return LayerCase(name, kwargs, (shape,), training=train)


@st.composite
def rnn_cases(
    draw,
    *,
    max_len: int = 4,
    max_batch: int = 3,
    max_input: int = 5,
    max_hidden: int = 6,
    max_layers: int = 2,
    training: bool | None = None,
    unbatched: bool = True,
) -> LayerCase:
    """``torch.nn.RNN`` with nonlinearity tanh or relu, bias, num_layers, bidirectional,
    batch_first, dropout, on (L, N, I), (N, L, I) or unbatched (L, I) input."""
    extra = {"nonlinearity": draw(st.sampled_from(["tanh", "relu"]))}
    return _sequence_case(
        draw,
        "RNN",
        extra,
        hidden=draw(st.integers(1, max_hidden)),
        max_len=max_len,
        max_batch=max_batch,
        max_input=max_input,
        max_layers=max_layers,
        training=training,
        unbatched=unbatched,
    )


@st.composite
def lstm_cases(
    draw,
    *,
    max_len: int = 4,
    max_batch: int = 3,
    max_input: int = 5,
    max_hidden: int = 6,
    max_layers: int = 2,
    training: bool | None = None,
    unbatched: bool = True,
    proj: bool | None = None,
) -> LayerCase:
    """``torch.nn.LSTM`` with proj_size (0, or 1 to hidden_size - 1; ``proj`` forces one or the
    other), bias, num_layers, bidirectional, batch_first, dropout, on (L, N, I), (N, L, I) or
    unbatched (L, I) input."""
    with_proj = draw(st.booleans()) if proj is None else proj
    hidden = draw(st.integers(2 if with_proj else 1, max(2, max_hidden)))
    extra = {"proj_size": draw(st.integers(1, hidden - 1)) if with_proj else 0}
    return _sequence_case(
        draw,
        "LSTM",
        extra,
        hidden=hidden,
        max_len=max_len,
        max_batch=max_batch,
        max_input=max_input,
        max_layers=max_layers,
        training=training,
        unbatched=unbatched,
    )


@st.composite
def gru_cases(
    draw,
    *,
    max_len: int = 4,
    max_batch: int = 3,
    max_input: int = 5,
    max_hidden: int = 6,
    max_layers: int = 2,
    training: bool | None = None,
    unbatched: bool = True,
) -> LayerCase:
    """``torch.nn.GRU`` with bias, num_layers, bidirectional, batch_first, dropout, on
    (L, N, I), (N, L, I) or unbatched (L, I) input."""
    return _sequence_case(
        draw,
        "GRU",
        {},
        hidden=draw(st.integers(1, max_hidden)),
        max_len=max_len,
        max_batch=max_batch,
        max_input=max_input,
        max_layers=max_layers,
        training=training,
        unbatched=unbatched,
    )


def _cell_case(
    draw,
    name: str,
    extra: dict[str, Any],
    *,
    max_batch: int,
    max_input: int,
    max_hidden: int,
    training: bool | None,
    unbatched: bool,
) -> LayerCase:
    features = draw(st.integers(1, max_input))
    shape: tuple[int, ...] = (features,)
    if not (unbatched and draw(st.booleans())):
        shape = (draw(st.integers(1, max_batch)), features)
    kwargs = dict(
        input_size=features,
        hidden_size=draw(st.integers(1, max_hidden)),
        bias=draw(st.booleans()),
        **extra,
    )
    train = draw(st.booleans()) if training is None else training
    return LayerCase(name, kwargs, (shape,), training=train)


@st.composite
def rnn_cell_cases(
    draw,
    *,
    max_batch: int = 4,
    max_input: int = 6,
    max_hidden: int = 6,
    training: bool | None = None,
    unbatched: bool = True,
) -> LayerCase:
    """``torch.nn.RNNCell`` with nonlinearity tanh or relu and bias, on (N, I) or (I,) input."""
    extra = {"nonlinearity": draw(st.sampled_from(["tanh", "relu"]))}
    return _cell_case(
        draw,
        "RNNCell",
        extra,
        max_batch=max_batch,
        max_input=max_input,
        max_hidden=max_hidden,
        training=training,
        unbatched=unbatched,
    )


@st.composite
def lstm_cell_cases(
    draw,
    *,
    max_batch: int = 4,
    max_input: int = 6,
    max_hidden: int = 6,
    training: bool | None = None,
    unbatched: bool = True,
) -> LayerCase:
    """``torch.nn.LSTMCell`` with bias, on (N, I) or (I,) input."""
    return _cell_case(
        draw,
        "LSTMCell",
        {},
        max_batch=max_batch,
        max_input=max_input,
        max_hidden=max_hidden,
        training=training,
        unbatched=unbatched,
    )


@st.composite
def gru_cell_cases(
    draw,
    *,
    max_batch: int = 4,
    max_input: int = 6,
    max_hidden: int = 6,
    training: bool | None = None,
    unbatched: bool = True,
) -> LayerCase:
    """``torch.nn.GRUCell`` with bias, on (N, I) or (I,) input."""
    return _cell_case(
        draw,
        "GRUCell",
        {},
        max_batch=max_batch,
        max_input=max_input,
        max_hidden=max_hidden,
        training=training,
        unbatched=unbatched,
    )
