"""Character-level language models over UTF-8 bytes: uniform, Kneser-Ney n-gram, RNN/GRU/LSTM
and mixtures, behind one interface, with training, exact scoring, sampling and checkpoints.

Pure synchronous PyTorch and numpy: this package never imports asyncio, SQL or chat code.
"""

from lm.checkpoint import load as load_checkpoint
from lm.checkpoint import save
from lm.errors import CheckpointError, LmError
from lm.hub import component, load
from lm.mixing import fit_mix
from lm.models import LanguageModel
from lm.sampling import MIN_TEMPERATURE, SampleConfig, sample, sample_many
from lm.scoring import CharScore, Evaluation, Score, evaluate, score, score_many
from lm.train import MIN_TRAIN_CHARS, Progress, TrainConfig, TrainResult, train

__all__ = [
    "MIN_TEMPERATURE", "MIN_TRAIN_CHARS", "CharScore", "CheckpointError", "Evaluation",
    "LanguageModel", "LmError",
    "Progress", "SampleConfig", "Score", "TrainConfig", "TrainResult", "component", "evaluate",
    "fit_mix", "load", "load_checkpoint", "sample", "sample_many", "save", "score",
    "score_many", "train",
]
