"""A trained run as one object: a checkpoint's model, the config it was trained with, and its data.

:func:`load_run` is the one place that turns a checkpoint (and optionally another data config)
into everything the analysis, the fold and the demo need.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asa_snn.errors import AsaSnnError
from asa_snn.models.networks import SpikingNetwork
from asa_snn.train.checkpoint import check_finite, checkpoint_bytes, load_model
from asa_snn.train.config import TrainConfig, load_config, resolve_config_path
from asa_snn.train.data import DataBundle, build_data


@dataclass
class Run:
    """A checkpoint and its data.

    Attributes:
        checkpoint: the checkpoint file.
        model: the trained model, in eval mode.
        metadata: the checkpoint's metadata (epoch, config, data fingerprint, ...).
        config: the config whose data ``data`` was built from (the checkpoint's, or the one given).
        data: training, validation and test parts, and the input spec.
        sha256: hex digest of the checkpoint bytes the model was read from ("" when not known).
    """

    checkpoint: Path
    model: SpikingNetwork
    metadata: dict[str, Any]
    config: TrainConfig
    data: DataBundle
    sha256: str = ""

    @property
    def epochs(self) -> int:
        """Training epochs behind the checkpoint."""
        return int(self.metadata.get("epoch", 0))

    @property
    def duration_s(self) -> float | None:
        """Seconds of one inference (T x dt), None where frames are not time-sliced."""
        duration_us = self.data.input_spec.duration_us
        return None if duration_us is None else duration_us * 1e-6


def run_config(
    checkpoint: str | Path, metadata: dict[str, Any], data_config: str | Path | None
) -> TrainConfig:
    """The config that names the run's data: ``data_config`` (a file or shipped recipe), else the
    checkpoint's own.

    Raises:
        AsaSnnError: neither gives a data config.
    """
    if data_config is not None:
        return load_config(resolve_config_path(data_config))
    if not isinstance(metadata.get("config"), dict) or "data" not in metadata["config"]:
        raise AsaSnnError(
            f"checkpoint {checkpoint}: its metadata holds no data config (no 'config.data'); pass a "
            "training config (--data / --calib CONFIG) whose [data] section names the data"
        )
    return TrainConfig.from_dict(metadata["config"])


def load_run(checkpoint: str | Path, data_config: str | Path | None = None) -> Run:
    """The model, config and data of ``checkpoint``; ``data_config`` replaces the checkpoint's data.

    The file is read once (a training run may replace it meanwhile): model, metadata and
    ``sha256`` come from the same bytes.

    Raises:
        AsaSnnError: an unreadable checkpoint, weights holding NaN or infinity (the tensor named),
            no data config, missing or unusable data.
    """
    raw = checkpoint_bytes(checkpoint)
    model, metadata = load_model(checkpoint, data=raw)
    check_finite(checkpoint, model.state_dict())
    config = run_config(checkpoint, metadata, data_config)
    digest = hashlib.sha256(raw).hexdigest()
    return Run(Path(checkpoint), model, metadata, config, build_data(config), digest)
