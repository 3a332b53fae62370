"""collatz-hpo core: the Collatz ML library (pure torch + numpy; no optuna, no mlflow)."""

from core.callbacks import Callback, StopTraining
from core.checkpoint import CheckpointError, load_checkpoint, load_weights, resume_candidates, save_checkpoint
from core.collatz import LongSteps, long_step, long_steps, loop_lengths
from core.data import (
    BatchIterator,
    CollatzDataset,
    class_balance_weights,
    count_odd,
    make_splits,
    sample_odd,
    split_values,
)
from core.ema import WeightAverage
from core.encoding import BOS, EOS, PAD, DecodeError, MultiBaseEncoder, SequenceTooLongError
from core.metrics import (
    ERROR_KINDS,
    classify_error,
    compute_accuracy,
    compute_collatz_metrics,
    compute_exact_match,
    error_kind,
    exact_match_mask,
)
from core.model import CollatzTransformer, ModelConfig
from core.schedule import StepSchedule, WarmupDecay
from core.trainer import Trainer

__all__ = [
    "BOS",
    "EOS",
    "ERROR_KINDS",
    "PAD",
    "BatchIterator",
    "Callback",
    "CheckpointError",
    "CollatzDataset",
    "CollatzTransformer",
    "DecodeError",
    "LongSteps",
    "ModelConfig",
    "MultiBaseEncoder",
    "SequenceTooLongError",
    "StepSchedule",
    "StopTraining",
    "Trainer",
    "WarmupDecay",
    "WeightAverage",
    "class_balance_weights",
    "classify_error",
    "compute_accuracy",
    "compute_collatz_metrics",
    "compute_exact_match",
    "count_odd",
    "error_kind",
    "exact_match_mask",
    "load_checkpoint",
    "load_weights",
    "resume_candidates",
    "long_step",
    "long_steps",
    "loop_lengths",
    "make_splits",
    "sample_odd",
    "split_values",
    "save_checkpoint",
]
