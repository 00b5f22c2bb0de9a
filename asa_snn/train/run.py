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

SYNTHETIC_KIND = "synthetic"
"""The data kind whose recordings are generated on demand, so its split sizes can be chosen."""


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


def with_test_samples(config: TrainConfig, test_samples: int | None, option: str) -> TrainConfig:
    """``config`` with a synthetic test split of ``test_samples`` recordings (None: unchanged).

    Synthetic recording i of a split depends only on the data seed, the split and i, so the
    training and validation recordings stay the same and the first ``data.n_test_samples`` test
    recordings are the config's own.

    Raises:
        AsaSnnError: the data is recorded (its test split is fixed by the files and
            ``data.test_fraction``), or ``test_samples`` is out of bounds; ``option`` names the setting.
    """
    if test_samples is None:
        return config
    if config.data.kind != SYNTHETIC_KIND:
        raise AsaSnnError(
            f"{option} {test_samples}: the data is {config.data.kind!r} recordings, whose test split is "
            f"fixed by its files and data.test_fraction; only {SYNTHETIC_KIND!r} data is generated on demand"
        )
    raw = config.to_dict()
    raw["data"]["n_test_samples"] = test_samples
    return TrainConfig.from_dict(raw, config.source or option)


def load_run(
    checkpoint: str | Path, data_config: str | Path | None = None, test_samples: int | None = None
) -> Run:
    """The model, config and data of ``checkpoint``; ``data_config`` replaces the checkpoint's data,
    ``test_samples`` the size of a synthetic test split (:func:`with_test_samples`).

    The file is read once (a training run may replace it meanwhile): model, metadata and
    ``sha256`` come from the same bytes.

    Raises:
        AsaSnnError: an unreadable checkpoint, weights holding NaN or infinity (the tensor named),
            no data config, missing or unusable data, ``test_samples`` on recorded data.
    """
    raw = checkpoint_bytes(checkpoint)
    model, metadata = load_model(checkpoint, data=raw)
    check_finite(checkpoint, model.state_dict())
    config = with_test_samples(run_config(checkpoint, metadata, data_config), test_samples, "--test-samples")
    digest = hashlib.sha256(raw).hexdigest()
    return Run(Path(checkpoint), model, metadata, config, build_data(config), digest)
