"""Training stage: configs, the resumable (optionally multi-process) trainer and safetensors checkpoints.

Typical use::

    from asa_snn.train import load_config, train, load_model

    config = load_config("asa_snn/configs/synthetic_speck.toml", ["train.epochs=3"])
    result = train(config, "runs/speck")
    model, metadata = load_model("runs/speck/best.safetensors")
"""

from asa_snn.train.checkpoint import load_checkpoint, load_model, save_checkpoint
from asa_snn.train.config import DataConfig, OptimConfig, TrainConfig, TrainSection, load_config
from asa_snn.train.trainer import TrainResult, train

__all__ = [
    "DataConfig",
    "OptimConfig",
    "TrainConfig",
    "TrainResult",
    "TrainSection",
    "load_checkpoint",
    "load_config",
    "load_model",
    "save_checkpoint",
    "train",
]
