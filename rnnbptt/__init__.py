"""rnnbptt: recurrent networks trained by backpropagation through time."""

from .bptt import bptt
from .cells import (
    LSTM,
    Elman,
    ElmanParams,
    Feedforward,
    FeedforwardParams,
    LSTMCarry,
    LSTMParams,
)
from .gradcheck import GradientTable, compare_gradients
from .unroll import unroll

__all__ = [
    "LSTM",
    "Elman",
    "ElmanParams",
    "Feedforward",
    "FeedforwardParams",
    "GradientTable",
    "LSTMCarry",
    "LSTMParams",
    "bptt",
    "compare_gradients",
    "unroll",
]
__version__ = "0.1.0"
