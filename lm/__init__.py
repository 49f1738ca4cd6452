"""Character-level language models over UTF-8 bytes: uniform, Kneser-Ney n-gram, RNN/GRU/LSTM
and mixtures, behind one interface, with training, exact scoring, sampling and checkpoints.

Pure synchronous PyTorch and numpy: this package never imports asyncio, SQL or chat code.
Everything a caller needs is exported here; `docs/lm.md` is the reference.
"""

from lm.checkpoint import load as load_checkpoint
from lm.checkpoint import save
from lm.errors import CheckpointError, LmError
from lm.hub import component, load
from lm.memory import memory_bytes
from lm.mixing import fit_mix
from lm.models import LanguageModel
from lm.models.recurrent import NATIVE_MAX_BATCH as MAX_BATCH
from lm.runners import ready
from lm.sampling import MIN_TEMPERATURE, SampleConfig, sample, sample_many
from lm.scoring import CharScore, Evaluation, Score, evaluate, score, score_many
from lm.trainer import MIN_TRAIN_CHARS, Progress, TrainConfig, TrainResult, train

# MAX_BATCH: the most samples `sample_many` draws in one pass on the compiled GRU kernel (a
# larger batch runs on torch's batched path instead); callers batch requests up to it.


def parts(model: LanguageModel) -> tuple[LanguageModel, ...]:
    """The models a mixture is made of, in order; empty for any other model."""
    return model.components()


def recount(model: LanguageModel, messages: list[str]) -> LanguageModel:
    """`model` with every part that stores counted text (an n-gram) counted again on
    `messages`, each from its own start; other parts (learned weights, mixture weights) are
    shared, and n-gram parts of one config are counted once. A model that stores no counted
    text is returned as it is."""
    return model.recounted(list(messages), {})


__all__ = [
    "MAX_BATCH", "MIN_TEMPERATURE", "MIN_TRAIN_CHARS", "CharScore", "CheckpointError",
    "Evaluation", "LanguageModel", "LmError", "Progress", "SampleConfig", "Score",
    "TrainConfig", "TrainResult", "component", "evaluate", "fit_mix", "ready", "load",
    "load_checkpoint", "memory_bytes", "parts", "recount", "sample", "sample_many", "save",
    "score", "score_many", "train",
]
