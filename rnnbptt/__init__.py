"""rnnbptt: recurrent networks trained by backpropagation through time."""

from . import (
    data,
    distributed,
    fitting,
    interop,
    losses,
    online,
    optimizers,
    parallel,
    runs,
    settling,
)
from .bptt import bptt
from .cells import (
    GRU,
    LSTM,
    Elman,
    ElmanParams,
    Feedforward,
    FeedforwardParams,
    GRUParams,
    Hopfield,
    LSTMCarry,
    LSTMParams,
    TwoBiasParams,
)
from .checkpoint import CheckpointError, load_checkpoint, peek_metadata, save_checkpoint
from .compilation import Compilations, count_compilations
from .fit_config import FitConfig
from .fitting import FitResult, fit
from .gradcheck import GradientTable, compare_gradients, residual_bytes
from .models import BidirectionalParams, DenseParams, ModelParams, SequenceModel
from .online import online_gradient
from .online_step import OnlineState, OnlineStep, make_online_step
from .settling import SettleInfo, compare_settle, settle, settle_residual_bytes
from .tbptt import TBPTT
from .train import clear_cache, make_eval_step, make_train_step
from .unroll import unroll

__all__ = [
    "GRU",
    "LSTM",
    "TBPTT",
    "BidirectionalParams",
    "CheckpointError",
    "Compilations",
    "DenseParams",
    "Elman",
    "ElmanParams",
    "Feedforward",
    "FeedforwardParams",
    "FitConfig",
    "FitResult",
    "GRUParams",
    "GradientTable",
    "Hopfield",
    "LSTMCarry",
    "LSTMParams",
    "ModelParams",
    "OnlineState",
    "OnlineStep",
    "SequenceModel",
    "SettleInfo",
    "TwoBiasParams",
    "bptt",
    "clear_cache",
    "compare_gradients",
    "compare_settle",
    "count_compilations",
    "data",
    "distributed",
    "fit",
    "fitting",
    "interop",
    "load_checkpoint",
    "losses",
    "make_eval_step",
    "make_online_step",
    "make_train_step",
    "online",
    "online_gradient",
    "optimizers",
    "parallel",
    "peek_metadata",
    "residual_bytes",
    "runs",
    "save_checkpoint",
    "settle",
    "settle_residual_bytes",
    "settling",
    "unroll",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    # ``fit_module`` named the module of ``fit`` while both were called "fit"
    if name == "fit_module":
        import warnings

        warnings.warn(
            "rnnbptt.fit_module is rnnbptt.fitting (the module of rnnbptt.fit); "
            "the old name will be removed in rnnbptt 0.3",
            DeprecationWarning,
            stacklevel=2,
        )
        return fitting
    raise AttributeError(f"module 'rnnbptt' has no attribute {name!r}")
