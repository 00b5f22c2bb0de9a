"""The training loop: Adam, one cosine decay, validation-based model selection, resumable.

Per epoch e (0-based): the training shard is visited in the order of a ``DistributedSampler``
seeded with ``train.seed`` (its permutation depends on (seed, e) alone), augmentation is reseeded
from (seed, e, rank), the optimiser steps on every batch and the learning-rate schedule once at
the end of the epoch. Validation loss, accuracy and NASFR are computed, a line is appended to
``log.jsonl``, ``last.safetensors`` is written and ``best.safetensors`` when validation accuracy
improved. After the last epoch the best model is evaluated on the test set (the multi-window
majority protocol when ``train.eval_windows > 1``) and ``result.json`` is written.

Resuming from ``last.safetensors`` restores model, optimiser, scheduler and the torch RNG state,
so a resumed run equals the uninterrupted one bit for bit.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.progress import Progress
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import CosineAnnealingLR
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from asa_snn.errors import AsaSnnError
from asa_snn.models.registry import build_model
from asa_snn.train.checkpoint import (
    check_state,
    load_checkpoint,
    optimizer_state,
    read_checkpoint,
    save_checkpoint,
)
from asa_snn.train.config import TrainConfig
from asa_snn.train.data import DataBundle, build_data, frame_pipeline
from asa_snn.train.distributed import Cluster, start_cluster, stop_cluster
from asa_snn.train.metrics import LOSS_FUNCTIONS, evaluate, evaluate_windows, to_time_major

LAST = "last.safetensors"
BEST = "best.safetensors"
LOG = "log.jsonl"
RESULT = "result.json"


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced.

    Attributes:
        out_dir: the output folder (log.jsonl, last/best.safetensors, result.json).
        epochs: epochs completed in total.
        best_epoch: 1-based epoch of the best validation accuracy.
        best_val_accuracy: in [0, 1].
        test_accuracy: of the best model, in [0, 1] (majority over windows when configured).
        test_window_accuracy: per-window test accuracy (equals test_accuracy for 1 window).
        test_nasfr: NASFR of the best model on the test set.
        test_samples: number of test recordings.
        history: the per-epoch log records.
    """

    out_dir: str
    epochs: int
    best_epoch: int
    best_val_accuracy: float
    test_accuracy: float
    test_window_accuracy: float
    test_nasfr: float
    test_samples: int
    history: list[dict[str, Any]] = field(default_factory=list)


def _loader(dataset: Any, batch_size: int, sampler: Any = None) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False, num_workers=0)


def _progress(enabled: bool) -> Progress | nullcontext:
    return Progress(transient=True) if enabled else nullcontext()


def _batches(loader: DataLoader, progress: Progress | None, label: str) -> Iterator[Any]:
    if progress is None:
        yield from loader
        return
    task = progress.add_task(label, total=len(loader))
    for batch in loader:
        yield batch
        progress.advance(task)
    progress.remove_task(task)


def _read_log(path: Path, before_epoch: int) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if r["epoch"] <= before_epoch]


@dataclass
class _Standing:
    """Where a run stands.

    Attributes:
        start_epoch: the 0-based epoch it (re)starts at.
        best_val: the best validation accuracy so far (-1 before any epoch).
        best_epoch: its 1-based epoch (0 before any epoch).
        history: the per-epoch log records so far.
    """

    start_epoch: int
    best_val: float
    best_epoch: int
    history: list[dict[str, Any]]


@dataclass(frozen=True)
class _Run:
    """What the epochs of one run share (built by :func:`_setup`).

    Attributes:
        config, out_dir, cluster: as given to :func:`train`.
        data: the training, validation and test sets.
        model: this process's network; ``trained`` is it, or its DistributedDataParallel wrapper.
        optimizer, scheduler: Adam and its cosine learning-rate schedule (one step per epoch).
        loss_fn: the configured loss.
        sampler: orders and shards the training set, per epoch.
        val_loader: batches of the validation set.
    """

    config: TrainConfig
    out_dir: Path
    cluster: Cluster
    data: DataBundle
    model: torch.nn.Module
    trained: torch.nn.Module
    optimizer: torch.optim.Adam
    scheduler: CosineAnnealingLR
    loss_fn: Any
    sampler: DistributedSampler
    val_loader: DataLoader


def _resume(
    out_dir: Path,
    config: TrainConfig,
    data: DataBundle,
    model: torch.nn.Module,
    optimizer: Any,
    scheduler: Any,
) -> _Standing:
    """Load ``last.safetensors`` into model, optimiser, scheduler and the torch RNG; return where the
    run stood then (its epoch, best validation accuracy and epoch, and the log up to that epoch)."""
    path = out_dir / LAST
    tensors, metadata = read_checkpoint(path)
    if metadata.get("model_spec") != config.model.to_dict():
        raise AsaSnnError(
            f"{path}: checkpoint was trained with model {metadata.get('model_spec')}, the config asks for "
            f"{config.model.to_dict()}; resume with the same config or use another out_dir"
        )
    if metadata.get("data_fingerprint") != data.fingerprint:
        raise AsaSnnError(
            f"{path}: checkpoint data fingerprint {metadata.get('data_fingerprint')} differs from this "
            f"config's data ({data.fingerprint}); resume with the same data and config"
        )
    state = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    check_state(path, model, state, config.model)
    model.load_state_dict(state)
    optimizer.load_state_dict(optimizer_state(tensors, metadata["param_groups"]))
    scheduler.load_state_dict(metadata["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    epoch = metadata["epoch"]
    history = _read_log(out_dir / LOG, epoch)
    return _Standing(epoch, metadata["best_val_accuracy"], metadata["best_epoch"], history)


def train(
    config: TrainConfig, out_dir: str | Path, resume: bool = False, progress: bool = True
) -> TrainResult:
    """Train ``config`` into ``out_dir`` (created) and test the best model; see the module docstring.

    Under torchrun every process calls this; rank 0 alone writes files.

    Args:
        config: the training config (:func:`~asa_snn.train.config.load_config`).
        out_dir: output folder: log.jsonl, last.safetensors, best.safetensors, result.json.
        resume: continue from ``out_dir/last.safetensors`` (the same config and data are required).
        progress: show a rich progress bar and one summary line per epoch.

    Raises:
        AsaSnnError: data or config problems; ``resume`` without a matching checkpoint.
    """
    out_dir = Path(out_dir)
    cluster = start_cluster()
    try:
        return _train(config, out_dir, resume, progress and cluster.is_main, cluster)
    finally:
        stop_cluster(cluster)


def _train(config: TrainConfig, out_dir: Path, resume: bool, progress: bool, cluster: Cluster) -> TrainResult:
    """Set up, run the remaining epochs (rank 0 saves each, all wait for it), then test the best model."""
    run, standing = _setup(config, out_dir, resume, cluster)
    with _progress(progress) as bar:
        for epoch in range(standing.start_epoch, config.train.epochs):
            record = _epoch(run, epoch, bar)
            standing.history.append(record)
            improved = record["val_accuracy"] > standing.best_val
            if improved:
                standing.best_val, standing.best_epoch = record["val_accuracy"], epoch + 1
            if cluster.is_main:
                _save_epoch(run, standing, record, improved, bar)
            cluster.barrier()
    return _finish(run, standing)


def _setup(config: TrainConfig, out_dir: Path, resume: bool, cluster: Cluster) -> tuple[_Run, _Standing]:
    """Seed torch, build data, model, optimiser, schedule and loss, resume when asked, and (rank 0)
    create ``out_dir`` and rewrite ``log.jsonl`` with the records kept.

    Returns:
        What the epochs share, and where the run stands (epoch 0 with no best, unless resumed).
    """
    settings = config.train
    torch.manual_seed(settings.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    data = build_data(config)
    model = build_model(config.model)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay
    )
    scheduler = CosineAnnealingLR(optimizer, T_max=settings.epochs, eta_min=config.optim.lr_min)
    loss_fn = LOSS_FUNCTIONS[settings.loss]()
    if cluster.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    fresh = _Standing(0, -1.0, 0, [])
    standing = _resume(out_dir, config, data, model, optimizer, scheduler) if resume else fresh
    if cluster.is_main:
        (out_dir / LOG).write_text("".join(json.dumps(r) + "\n" for r in standing.history))
    trained = DistributedDataParallel(model) if cluster.distributed else model
    sampler = DistributedSampler(
        data.train, num_replicas=cluster.world_size, rank=cluster.rank, shuffle=True, seed=settings.seed
    )
    val_loader = _loader(data.val, settings.batch_size)
    run = _Run(
        config, out_dir, cluster, data, model, trained, optimizer, scheduler, loss_fn, sampler, val_loader
    )
    return run, standing


def _train_epoch(run: _Run, epoch: int, bar: Progress | None) -> dict[str, Any]:
    """Epoch ``epoch`` (0-based) of training: one optimiser step per batch of this process's shard
    (augmentation reseeded from seed, epoch and rank), then one learning-rate step.

    Returns:
        ``train_loss`` and ``train_accuracy`` (over all processes), ``lr`` (the epoch's learning rate),
        ``train_shard_sizes`` (samples per process) and ``train_samples_seen`` (distinct samples).
    """
    settings, data = run.config.train, run.data
    run.sampler.set_epoch(epoch)
    augment_seed = (settings.seed * 1_000_003 + epoch) * 1_009 + run.cluster.rank
    data.train.transform = frame_pipeline(data.input_spec, run.config.data, augment_seed)
    lr = run.optimizer.param_groups[0]["lr"]
    loss_sum, correct, count = 0.0, 0, 0
    run.trained.train()
    loader = _loader(data.train, settings.batch_size, run.sampler)
    for frames, labels in _batches(loader, bar, f"epoch {epoch + 1}"):
        run.optimizer.zero_grad()
        scores = run.trained(to_time_major(frames))
        loss = run.loss_fn(scores, labels)
        loss.backward()
        run.optimizer.step()
        loss_sum += float(loss.detach()) * len(labels)
        correct += int((scores.detach().argmax(1) == labels).sum())
        count += len(labels)
    run.scheduler.step()
    loss_sum, correct, total = run.cluster.sum([loss_sum, correct, count])
    shards = run.cluster.gather(sorted(int(i) for i in run.sampler))
    return {
        "train_loss": loss_sum / max(total, 1),
        "train_accuracy": correct / max(total, 1),
        "lr": lr,
        "train_shard_sizes": [len(s) for s in shards],
        "train_samples_seen": len(set().union(*shards)),
    }


def _epoch(run: _Run, epoch: int, bar: Progress | None) -> dict[str, Any]:
    """Train epoch ``epoch`` (0-based) and validate; return its log record (``seconds``: wall time)."""
    started = time.perf_counter()
    train = _train_epoch(run, epoch, bar)
    val = evaluate(run.model, run.val_loader, run.loss_fn)
    return {
        "epoch": epoch + 1,
        "train_loss": train["train_loss"],
        "train_accuracy": train["train_accuracy"],
        "val_loss": val.loss,
        "val_accuracy": val.accuracy,
        "val_nasfr": val.nasfr,
        "lr": train["lr"],
        "seconds": time.perf_counter() - started,
        "train_shard_sizes": train["train_shard_sizes"],
        "train_samples_seen": train["train_samples_seen"],
    }


def _save_epoch(
    run: _Run, standing: _Standing, record: dict[str, Any], improved: bool, bar: Progress | None
) -> None:
    """Rank 0 after an epoch: write best (when ``improved``) and last checkpoints, append ``record``
    to the log and, with a progress bar, print the epoch's summary line."""
    epoch, config = record["epoch"], run.config
    meta = {
        "config": config.to_dict(),
        "data_fingerprint": run.data.fingerprint,
        "epoch": epoch,
        "metrics": record,
        "best_val_accuracy": standing.best_val,
        "best_epoch": standing.best_epoch,
        "scheduler": run.scheduler.state_dict(),
    }
    if improved:
        save_checkpoint(run.out_dir / BEST, run.model, config.model, meta)
    save_checkpoint(run.out_dir / LAST, run.model, config.model, meta, run.optimizer)
    with (run.out_dir / LOG).open("a") as log:
        log.write(json.dumps(record) + "\n")
    if bar is not None:
        bar.console.print(
            f"epoch {epoch}/{config.train.epochs}  loss {record['train_loss']:.4f}  "
            f"train {record['train_accuracy']:.3f}  val {record['val_accuracy']:.3f}  "
            f"NASFR {record['val_nasfr']:.4f}  {record['seconds']:.1f}s"
        )


def _test_best(run: _Run) -> tuple[float, float, float, int]:
    """Test the best checkpoint (every process reads rank 0's file).

    Returns:
        (accuracy, per-window accuracy, NASFR, test samples); with ``train.eval_windows > 1`` the
        accuracy is the majority over windows, else both accuracies are the plain test accuracy.
    """
    spec, state, _ = load_checkpoint(run.out_dir / BEST)
    model = build_model(spec)
    model.load_state_dict(state)
    windows = run.config.train.eval_windows
    if windows > 1:
        test = evaluate_windows(model, run.data.test, run.data.input_spec, windows)
        return test.accuracy, test.window_accuracy, test.nasfr, test.samples
    test = evaluate(model, _loader(run.data.test, run.config.train.batch_size), run.loss_fn)
    return test.accuracy, test.accuracy, test.nasfr, test.samples


def _finish(run: _Run, standing: _Standing) -> TrainResult:
    """After every process finished training: test the best model and write result.json on rank 0."""
    run.cluster.barrier()
    accuracy, window_accuracy, nasfr, samples = _test_best(run)
    result = TrainResult(
        out_dir=str(run.out_dir),
        epochs=len(standing.history),
        best_epoch=standing.best_epoch,
        best_val_accuracy=standing.best_val,
        test_accuracy=accuracy,
        test_window_accuracy=window_accuracy,
        test_nasfr=nasfr,
        test_samples=samples,
        history=standing.history,
    )
    if run.cluster.is_main:
        summary = {k: v for k, v in asdict(result).items() if k != "history"}
        windows = run.config.train.eval_windows
        (run.out_dir / RESULT).write_text(json.dumps({**summary, "test_windows": windows}, indent=2) + "\n")
    return result


def train_recipe(
    recipe: str | Path, overrides: list[str], out_dir: str | Path, progress: bool = True
) -> dict[str, Any]:
    """Train a config file or shipped recipe name with ``overrides``; the pipeline's training strategy.

    Returns:
        ``test_accuracy``, ``test_nasfr`` and ``checkpoint`` (the best checkpoint's path).
    """
    from asa_snn.train.config import load_config, resolve_config_path

    result = train(load_config(resolve_config_path(recipe), overrides), out_dir, progress=progress)
    return {
        "test_accuracy": result.test_accuracy,
        "test_nasfr": result.test_nasfr,
        "checkpoint": Path(result.out_dir) / "best.safetensors",
    }
