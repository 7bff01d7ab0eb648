"""Hypothesis strategies for layer configurations, valid by construction.

Each strategy draws a :class:`LayerCase`: the torch class name, its constructor keyword
arguments and the shape(s) of its input(s).  Nothing is filtered: kernels are drawn first, then
an input large enough for them; groups come from divisors.  No torch import here: a test turns a
case into a module with :meth:`LayerCase.build`.

>>> from layercost_sym.testing.strategies import conv2d_cases
>>> case = conv2d_cases(max_channels=4).example()   # doctest: +SKIP
>>> case.name, sorted(case.kwargs)                  # doctest: +SKIP
('Conv2d', ['bias', 'dilation', 'groups', 'in_channels', ...])
"""

from __future__ import annotations

from hypothesis import strategies as st

from ._cases_activation import (
    activation_cases,
    bilinear_cases,
    flatten_cases,
    glu_cases,
    identity_cases,
    prelu_cases,
    softmax2d_cases,
    softmax_cases,
    unflatten_cases,
)
from ._cases_attention import (
    mha_cases,
    sdpa_cases,
    transformer_decoder_layer_cases,
    transformer_encoder_layer_cases,
)
from ._cases_conv import (
    conv1d_cases,
    conv2d_cases,
    conv3d_cases,
    conv_transpose1d_cases,
    conv_transpose2d_cases,
    conv_transpose3d_cases,
)
from ._cases_dropout import (
    channel_dropout_cases,
    dropout_cases,
)
from ._cases_embedding import (
    embedding_bag_cases,
    embedding_cases,
)
from ._cases_norm import (
    batchnorm1d_cases,
    batchnorm3d_cases,
    cross_map_lrn2d_cases,
    group_norm_cases,
    instance_norm_cases,
    layer_norm_cases,
    local_response_norm_cases,
    rms_norm_cases,
    sync_batchnorm_cases,
)
from ._cases_pooling import (
    adaptive_pool_cases,
    avg_pool_cases,
    fractional_max_pool_cases,
    lp_pool_cases,
    max_pool_cases,
    max_unpool_cases,
)
from ._cases_recurrent import (
    gru_cases,
    gru_cell_cases,
    lstm_cases,
    lstm_cell_cases,
    rnn_cases,
    rnn_cell_cases,
)
from ._cases_resampling import (
    channel_shuffle_cases,
    fold_cases,
    padding_cases,
    pixel_shuffle_cases,
    pixel_unshuffle_cases,
    unfold_cases,
    upsample_cases,
    upsampling_bilinear2d_cases,
    upsampling_nearest2d_cases,
)
from .case import LayerCase

__all__ = [
    "LayerCase",
    "activation_cases",
    "adaptive_pool_cases",
    "avg_pool_cases",
    "batchnorm1d_cases",
    "batchnorm2d_cases",
    "batchnorm3d_cases",
    "bilinear_cases",
    "channel_dropout_cases",
    "channel_shuffle_cases",
    "conv1d_cases",
    "conv2d_cases",
    "conv3d_cases",
    "conv_transpose1d_cases",
    "conv_transpose2d_cases",
    "conv_transpose3d_cases",
    "cross_map_lrn2d_cases",
    "dropout_cases",
    "embedding_bag_cases",
    "embedding_cases",
    "flatten_cases",
    "fold_cases",
    "fractional_max_pool_cases",
    "glu_cases",
    "group_norm_cases",
    "gru_cases",
    "gru_cell_cases",
    "identity_cases",
    "instance_norm_cases",
    "layer_norm_cases",
    "leaky_relu_cases",
    "linear_cases",
    "local_response_norm_cases",
    "lp_pool_cases",
    "lstm_cases",
    "lstm_cell_cases",
    "max_pool_cases",
    "max_unpool_cases",
    "mha_cases",
    "padding_cases",
    "pixel_shuffle_cases",
    "pixel_unshuffle_cases",
    "prelu_cases",
    "rms_norm_cases",
    "rnn_cases",
    "rnn_cell_cases",
    "sdpa_cases",
    "softmax2d_cases",
    "softmax_cases",
    "sync_batchnorm_cases",
    "transformer_decoder_layer_cases",
    "transformer_encoder_layer_cases",
    "unflatten_cases",
    "unfold_cases",
    "upsample_cases",
    "upsampling_bilinear2d_cases",
    "upsampling_nearest2d_cases",
]


@st.composite
def batchnorm2d_cases(
    draw,
    *,
    max_batch: int = 3,
    max_channels: int = 6,
    max_size: int = 6,
    training: bool | None = None,
) -> LayerCase:
    """``torch.nn.BatchNorm2d`` with affine, track_running_stats, momentum (incl. None), in
    training or inference mode (drawn unless ``training`` is given)."""
    train = draw(st.booleans()) if training is None else training
    track = draw(st.booleans())
    n, h, w = (draw(st.integers(1, m)) for m in (max_batch, max_size, max_size))
    if (train or not track) and n * h * w < 2:  # batch statistics need two values per channel
        n += 1
    c = draw(st.integers(1, max_channels))
    kwargs = dict(
        num_features=c,
        affine=draw(st.booleans()),
        track_running_stats=track,
        momentum=draw(st.sampled_from([0.1, 0.5, None])),
    )
    return LayerCase("BatchNorm2d", kwargs, ((n, c, h, w),), training=train)


@st.composite
def leaky_relu_cases(draw, *, max_rank: int = 4, max_size: int = 5) -> LayerCase:
    """``torch.nn.LeakyReLU`` on an input of any rank (0 to ``max_rank``)."""
    shape = tuple(draw(st.lists(st.integers(1, max_size), min_size=0, max_size=max_rank)))
    slope = draw(st.sampled_from([0.01, 0.2, 1.5]))
    return LayerCase("LeakyReLU", {"negative_slope": slope}, (shape,), training=draw(st.booleans()))


@st.composite
def linear_cases(
    draw, *, max_leading: int = 3, max_size: int = 5, max_features: int = 12
) -> LayerCase:
    """``torch.nn.Linear`` with or without bias, on inputs with 0 to ``max_leading`` leading
    dimensions."""
    c_in, c_out = draw(st.integers(1, max_features)), draw(st.integers(1, max_features))
    leading = tuple(draw(st.lists(st.integers(1, max_size), min_size=0, max_size=max_leading)))
    kwargs = dict(in_features=c_in, out_features=c_out, bias=draw(st.booleans()))
    return LayerCase("Linear", kwargs, ((*leading, c_in),), training=draw(st.booleans()))
