"""rnnbptt: recurrent networks trained by backpropagation through time."""

from . import data, distributed, losses, parallel, runs
from . import fit as fit_module
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
from .checkpoint import CheckpointError, load_checkpoint, peek_metadata, save_checkpoint
from .fit import FitResult, fit
from .gradcheck import GradientTable, compare_gradients, residual_bytes
from .models import BidirectionalParams, DenseParams, ModelParams, SequenceModel
from .train import TBPTT, make_eval_step, make_train_step
from .unroll import unroll

__all__ = [
    "LSTM",
    "TBPTT",
    "BidirectionalParams",
    "CheckpointError",
    "DenseParams",
    "Elman",
    "ElmanParams",
    "Feedforward",
    "FeedforwardParams",
    "FitResult",
    "GradientTable",
    "LSTMCarry",
    "LSTMParams",
    "ModelParams",
    "SequenceModel",
    "bptt",
    "compare_gradients",
    "data",
    "distributed",
    "fit",
    "fit_module",
    "load_checkpoint",
    "losses",
    "make_eval_step",
    "make_train_step",
    "parallel",
    "peek_metadata",
    "residual_bytes",
    "runs",
    "save_checkpoint",
    "unroll",
]
__version__ = "0.1.0"
