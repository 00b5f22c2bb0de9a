"""The training loop: Adam, one cosine decay, validation-based model selection, resumable.

Per epoch e (0-based): the training shard is visited in the order of a ``DistributedSampler``
seeded with ``train.seed`` (its permutation depends on (seed, e) alone), each sample is augmented
with a seed from (seed, e, sample) (:func:`~asa_snn.train.data.sample_seed`), the optimiser steps
on every batch and the learning-rate schedule once at the end of the epoch. A non-finite loss
stops the run at once (epoch and batch named) and leaves the last good checkpoint. Validation
loss, accuracy and NASFR are computed; ``best.safetensors`` is written when validation accuracy
improved, then ``last.safetensors`` (holding the epoch's log record and every earlier one: the
commit point), then ``log.jsonl`` is rewritten from those records. After the last epoch the best
model is evaluated on the test set (the multi-window majority protocol when
``train.eval_windows > 1``) and ``result.json`` is written.

The output folder follows README "Command line": it is new, empty or asa-snn's (marked with
``.asa-snn-output`` when claimed), one run at a time writes it (a lock file records the holder),
every file is replaced atomically (a symbolic link is replaced, never followed), and leftovers of
killed runs are removed. A fresh run empties the folder; ``--resume`` keeps it.

Resuming from ``last.safetensors`` restores model, optimiser, scheduler and the torch RNG state,
so a resumed run equals the uninterrupted one bit for bit, and rebuilds ``log.jsonl`` from the
checkpoint. Every setting must be the checkpoint's, except those in :data:`RESUMABLE_CHANGES`
(``train.epochs`` at least the epochs done); with more (or fewer) epochs the learning rate
continues from where the run stopped and decays by a new half cosine to ``optim.lr_min`` over the
remaining epochs (:func:`extended_schedule`), so it never rises.

Devices and scale: model, batches, losses and metrics live on ``train.device`` (checkpoints are
written from CPU copies and load anywhere); ``train.precision`` runs the forward pass under
autocast (bfloat16, or float16 with a gradient scaler on CUDA); batches come from
``train.workers`` DataLoader processes (persistent, pinned memory on CUDA), which change no result:
augmentation is seeded per sample and the loaders draw nothing from the torch RNG. Under torchrun
the same code runs NCCL on CUDA and gloo on the CPU (:mod:`asa_snn.train.distributed`), with
batch-norm statistics synchronized when ``train.sync_batchnorm`` is set; rank 0 alone writes files,
the progress bar and TensorBoard (``train.tensorboard``: ``OUT/tensorboard``).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import CosineAnnealingLR
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from asa_snn.errors import AsaSnnError
from asa_snn.files import (
    LOCK_FILE,
    OUTPUT_MARKER,
    claim_folder,
    clear_folder,
    folder_lock,
    remove_stale,
    write_bytes,
    write_json,
)
from asa_snn.models.registry import build_model
from asa_snn.train.checkpoint import (
    check_state,
    load_checkpoint,
    optimizer_state,
    read_checkpoint,
    save_checkpoint,
)
from asa_snn.train.config import TrainConfig
from asa_snn.train.data import DataBundle, EpochSampler, build_data, check_classes
from asa_snn.train.distributed import Cluster, process_device, start_cluster, stop_cluster
from asa_snn.train.foldability import FoldabilityPenalty
from asa_snn.train.metrics import (
    LOSS_FUNCTIONS,
    Evaluation,
    autocast,
    evaluate,
    evaluate_windows,
    to_time_major,
)

LAST = "last.safetensors"
BEST = "best.safetensors"
LOG = "log.jsonl"
RESULT = "result.json"
TENSORBOARD = "tensorboard"
TRAIN_FILES = (LOG, LAST, BEST, RESULT, TENSORBOARD)
"""The files (and the TensorBoard folder) a run writes into its folder (besides the marker and the
lock file)."""

RESUMABLE_CHANGES = (
    "train.epochs",
    "train.eval_windows",
    "train.device",
    "train.workers",
    "train.tensorboard",
    "data.cache_dir",
)
"""Settings ``--resume`` accepts changed (where a run continues, with how many loader processes,
logging to TensorBoard or not, where frames are cached); any other difference is refused."""

TENSORBOARD_MISSING = (
    "train.tensorboard = true needs the tensorboard package, which is not installed: "
    "pip install 'asa-snn[tensorboard]' (or set train.tensorboard = false)"
)


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


def default_workers(world_size: int = 1) -> int:
    """DataLoader workers per training process when ``train.workers`` is not set: this process's
    share of the usable cores less one for the training loop itself, at most 8 (0 on one core)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(0, min(8, cores // max(world_size, 1) - 1))


def _loader(
    dataset: Any,
    batch_size: int,
    sampler: Any = None,
    workers: int = 0,
    device: torch.device | None = None,
    persistent: bool = False,
) -> DataLoader:
    """Batches of ``dataset``: ``workers`` processes (kept across epochs when ``persistent``), pinned
    memory on CUDA; the loader's own generator, so no worker seed is drawn from the torch RNG."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=workers,
        persistent_workers=persistent and workers > 0,
        pin_memory=device is not None and device.type == "cuda",
        generator=torch.Generator().manual_seed(0),
    )


class SamplesPerSecond(ProgressColumn):
    """The task's speed in samples per second (what the bar advances by)."""

    def render(self, task: Task) -> Text:
        """``12.3 samples/s`` (empty before the first estimate)."""
        return Text(f"{task.speed:,.1f} samples/s" if task.speed else "", style="progress.data.speed")


def epoch_progress(console: Console | None = None) -> Progress:
    """The training progress bar: epoch, bar, samples done / total, samples per second and ETA.
    Drawn only on a terminal (``console.is_terminal``); lines printed through its console always
    appear."""
    console = console or Console()
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        SamplesPerSecond(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


def _batches(loader: DataLoader, progress: Progress | None, label: str, samples: int) -> Iterator[Any]:
    """The batches of ``loader``; ``progress`` advances by each batch's samples out of ``samples``."""
    if progress is None:
        yield from loader
        return
    task = progress.add_task(label, total=samples)
    for batch in loader:
        yield batch
        progress.advance(task, len(batch[1]))
    progress.remove_task(task)


def _read_log(path: Path, up_to_epoch: int) -> list[dict[str, Any]]:
    """The records of ``log.jsonl`` up to epoch ``up_to_epoch``, one per epoch (the last written wins).

    Tolerant: lines that are not whole JSON records (a line cut by a kill) are skipped, and a
    symbolic link is not followed (read as an empty log).
    """
    try:
        handle = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return []
    with os.fdopen(handle, "rb") as file:
        text = file.read().decode("utf-8", "replace")
    records: dict[int, dict[str, Any]] = {}
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        epoch = record.get("epoch") if isinstance(record, dict) else None
        if isinstance(epoch, int) and 1 <= epoch <= up_to_epoch:
            records[epoch] = record
    return [records[e] for e in sorted(records)]


def _history(out_dir: Path, metadata: dict[str, Any], epoch: int) -> list[dict[str, Any]]:
    """The log records of epochs 1..``epoch`` from the checkpoint's metadata (``history``); for a
    checkpoint written before it held them, from ``log.jsonl`` plus the checkpoint's own record."""
    stored = metadata.get("history")
    if isinstance(stored, list) and all(isinstance(r, dict) for r in stored):
        return [r for r in stored if isinstance(r.get("epoch"), int) and r["epoch"] <= epoch]
    records = _read_log(out_dir / LOG, epoch)
    last = metadata.get("metrics")
    if isinstance(last, dict) and last.get("epoch") == epoch and all(r["epoch"] != epoch for r in records):
        records.append(last)
    return records


def _write_log(out_dir: Path, history: list[dict[str, Any]]) -> None:
    """Rewrite ``log.jsonl`` with ``history``, one JSON line per epoch (atomically)."""
    write_bytes(out_dir / LOG, "".join(json.dumps(r) + "\n" for r in history))


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
        device: where model, batches, losses and metrics live.
        train_loader: batches of this process's training shard (keys from an :class:`EpochSampler`).
        scaler: the gradient scaler of ``16-mixed`` (disabled otherwise).
        writer: TensorBoard's SummaryWriter on rank 0 with ``train.tensorboard``, else None.
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
    device: torch.device
    train_loader: DataLoader
    scaler: torch.amp.GradScaler
    writer: Any = None


def _flat(document: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists and scalars are leaves)."""
    if not isinstance(document, dict):
        return {prefix: document} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in document.items():
        flat.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def settings_changes(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``key old -> new`` for every setting that differs between two configs (:meth:`TrainConfig.to_dict`),
    except :data:`RESUMABLE_CHANGES` and keys only one of them has (settings of another version)."""
    old, new = _flat(stored), _flat(current)
    return [
        f"{key} {json.dumps(old[key])} -> {json.dumps(new[key])}"
        for key in sorted(old.keys() & new.keys())
        if key not in RESUMABLE_CHANGES and old[key] != new[key]
    ]


def extended_schedule(
    optimizer: torch.optim.Optimizer, done: int, epochs: int, lr_min: float
) -> CosineAnnealingLR:
    """The learning-rate schedule of a run resumed after ``done`` epochs with a new total ``epochs``.

    The rate starts at the optimiser's current rate ``lr_k`` (where the old schedule stood) and
    decays by a half cosine to ``lr_min`` over the remaining ``epochs - done`` epochs:

        lr_e = lr_min + (lr_k - lr_min) * (1 + cos(pi * (e - done) / (epochs - done))) / 2

    for epoch e (0-based) >= done. It never rises; a run that finished its schedule continues at
    ``lr_min``. The scheduler's state (saved in each checkpoint) carries this schedule on.
    """
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"]
    return CosineAnnealingLR(optimizer, T_max=max(epochs - done, 1), eta_min=lr_min)


def _resume(
    out_dir: Path,
    config: TrainConfig,
    data: DataBundle,
    model: torch.nn.Module,
    optimizer: Any,
    scheduler: CosineAnnealingLR,
) -> tuple[_Standing, CosineAnnealingLR]:
    """Load ``last.safetensors`` into model, optimiser, scheduler and the torch RNG; return where the
    run stood then (its epoch, best validation accuracy and epoch, and the log up to that epoch)
    and the learning-rate schedule to go on with (:func:`extended_schedule` when ``train.epochs``
    changed).

    Raises:
        AsaSnnError: a setting differs from the checkpoint's (all of them listed, old -> new), other
            data, or fewer ``train.epochs`` than the checkpoint has done.
    """
    path = out_dir / LAST
    tensors, metadata = read_checkpoint(path)
    stored = metadata.get("config") if isinstance(metadata.get("config"), dict) else {}
    stored = {**stored, "model": metadata.get("model_spec")}
    changes = settings_changes(stored, config.to_dict())
    if changes:
        raise AsaSnnError(
            f"{path}: --resume with settings that differ from the checkpoint's: {'; '.join(changes)}; "
            f"resume with the checkpoint's settings (only {' and '.join(RESUMABLE_CHANGES)} may change) "
            "or train into another --out"
        )
    if metadata.get("data_fingerprint") != data.fingerprint:
        raise AsaSnnError(
            f"{path}: checkpoint data fingerprint {metadata.get('data_fingerprint')} differs from this "
            f"config's data ({data.fingerprint}); resume with the same data and config"
        )
    epoch = metadata["epoch"]
    if config.train.epochs < epoch:
        raise AsaSnnError(
            f"{path}: the checkpoint has {epoch} epochs done, train.epochs = {config.train.epochs}; "
            f"expected train.epochs >= {epoch}"
        )
    state = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    check_state(path, model, state, config.model)
    model.load_state_dict(state)
    optimizer.load_state_dict(optimizer_state(tensors, metadata["param_groups"]))
    scheduler.load_state_dict(metadata["scheduler"])
    planned = stored.get("train", {}).get("epochs") if isinstance(stored.get("train"), dict) else None
    if planned != config.train.epochs:
        scheduler = extended_schedule(optimizer, epoch, config.train.epochs, config.optim.lr_min)
    torch.set_rng_state(tensors["rng.torch"])
    history = _history(out_dir, metadata, epoch)
    return _Standing(epoch, metadata["best_val_accuracy"], metadata["best_epoch"], history), scheduler


def _adoptable(resume: bool) -> Callable[[Path], bool]:
    """For ``--resume``: accept a folder without the marker that holds only a run's files (a run
    of an asa-snn version that wrote no marker)."""

    def adopt(folder: Path) -> bool:
        names = {p.name for p in folder.iterdir() if not p.name.startswith(".")}
        last = folder / LAST
        return resume and names <= set(TRAIN_FILES) and last.is_file() and not last.is_symlink()

    return adopt


@contextmanager
def output_folder(out_dir: Path, resume: bool, cluster: Cluster) -> Iterator[None]:
    """Claim ``out_dir`` for this run (rank 0) and hold its lock while the block runs.

    New, empty or asa-snn's folders only (README "Command line"); ``resume`` needs
    ``last.safetensors`` and creates nothing without it. Leftovers of killed runs are removed
    once the lock is held. Every process raises when rank 0 could not claim the folder.

    Raises:
        AsaSnnError: a folder asa-snn did not write, another run holds the lock (its pid, host and
            start time named), ``resume`` without a checkpoint.
    """
    with ExitStack() as stack:
        problem = None
        if cluster.is_main:
            try:
                if resume and not (out_dir / LAST).is_file():
                    raise AsaSnnError(
                        f"checkpoint {out_dir / LAST} does not exist: nothing to resume in {out_dir} "
                        "(train without --resume to start a run)"
                    )
                claim_folder(out_dir, _adoptable(resume))
                stack.enter_context(folder_lock(out_dir))
                remove_stale(out_dir)
            except AsaSnnError as exc:
                problem = exc
        messages = [m for m in cluster.gather(None if problem is None else str(problem)) if m]
        if problem is not None:
            raise problem
        if messages:
            raise AsaSnnError(str(messages[0]))
        yield


def train(
    config: TrainConfig,
    out_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    allow_unused_classes: bool = False,
) -> TrainResult:
    """Train ``config`` into ``out_dir`` (created) and test the best model; see the module docstring.

    Under torchrun every process calls this; rank 0 alone writes files.

    Args:
        config: the training config (:func:`~asa_snn.train.config.load_config`).
        out_dir: output folder: log.jsonl, last.safetensors, best.safetensors, result.json (new,
            empty, or written by asa-snn).
        resume: continue from ``out_dir/last.safetensors`` (the same settings and data are required;
            ``train.epochs`` may change, see the module docstring).
        progress: show a rich progress bar and one summary line per epoch.
        allow_unused_classes: accept ``model.num_classes`` above the data's classes (outputs no
            sample trains); refused otherwise.

    Raises:
        AsaSnnError: data or config problems (``model.num_classes`` unlike the data's classes);
            ``out_dir`` not asa-snn's or written by another run; ``resume`` without a matching
            checkpoint or with changed settings; a non-finite loss or weight (epoch and batch named).
    """
    out_dir = Path(out_dir)
    device = process_device(config.train.device)
    check_scale_settings(config, device, "RANK" in os.environ and "WORLD_SIZE" in os.environ)
    cluster = start_cluster(device)
    try:
        with output_folder(out_dir, resume, cluster):
            return _train(
                config, out_dir, resume, progress and cluster.is_main, cluster, allow_unused_classes
            )
    finally:
        stop_cluster(cluster)


def check_scale_settings(config: TrainConfig, device: torch.device, distributed: bool) -> None:
    """Refuse settings ``device`` cannot honour, before any process group or data is set up.

    Raises:
        AsaSnnError: ``train.precision = "16-mixed"`` off CUDA; ``train.sync_batchnorm`` in a
            distributed run off CUDA (PyTorch synchronizes batch norm on GPUs only);
            ``train.tensorboard`` without the tensorboard package.
    """
    source, settings = config.source or "<config>", config.train
    if settings.precision == "16-mixed" and device.type != "cuda":
        raise AsaSnnError(
            f"{source}: train.precision = '16-mixed' needs a CUDA device (train.device resolves to "
            f"{device}); use train.precision = 'bf16' or '32' there"
        )
    if settings.sync_batchnorm and distributed and device.type != "cuda":
        raise AsaSnnError(
            f"{source}: train.sync_batchnorm = true needs CUDA devices (PyTorch's SyncBatchNorm runs on "
            f"GPUs; train.device resolves to {device}); set it false for CPU runs"
        )
    if settings.tensorboard:
        _summary_writer_class()


def _summary_writer_class() -> Any:
    """TensorBoard's SummaryWriter class, or an AsaSnnError naming the missing extra."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise AsaSnnError(TENSORBOARD_MISSING) from exc
    return SummaryWriter


def _train(
    config: TrainConfig,
    out_dir: Path,
    resume: bool,
    progress: bool,
    cluster: Cluster,
    allow_unused_classes: bool = False,
) -> TrainResult:
    """Set up, run the remaining epochs (rank 0 saves each, all wait for it), then test the best model."""
    run, standing = _setup(config, out_dir, resume, cluster, allow_unused_classes)
    try:
        with epoch_progress() if progress else nullcontext() as bar:
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
    finally:
        if run.writer is not None:
            run.writer.close()


def _setup(
    config: TrainConfig, out_dir: Path, resume: bool, cluster: Cluster, allow_unused_classes: bool = False
) -> tuple[_Run, _Standing]:
    """Seed torch, build data, model, optimiser, schedule and loss, resume when asked, and (rank 0)
    empty ``out_dir`` for a fresh run and rewrite ``log.jsonl`` with the records kept.

    Returns:
        What the epochs share, and where the run stands (epoch 0 with no best, unless resumed).
    """
    settings = config.train
    torch.manual_seed(settings.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    data = build_data(config)
    check_classes(config, data, allow_unused_classes)
    device = process_device(settings.device)
    model = build_model(config.model).to(device)
    if settings.sync_batchnorm and cluster.distributed:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay
    )
    scheduler = CosineAnnealingLR(optimizer, T_max=settings.epochs, eta_min=config.optim.lr_min)
    loss_fn = LOSS_FUNCTIONS[settings.loss]()
    standing = _Standing(0, -1.0, 0, [])
    if resume:
        standing, scheduler = _resume(out_dir, config, data, model, optimizer, scheduler)
    if cluster.is_main:
        if not resume:
            clear_folder(out_dir, keep=(OUTPUT_MARKER, LOCK_FILE))
        _write_log(out_dir, standing.history)
    trained = model
    if cluster.distributed:
        trained = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    sampler = DistributedSampler(
        data.train, num_replicas=cluster.world_size, rank=cluster.rank, shuffle=True, seed=settings.seed
    )
    data.train.augment_seed = settings.seed
    workers = default_workers(cluster.world_size) if settings.workers is None else settings.workers
    train_loader = _loader(data.train, settings.batch_size, EpochSampler(sampler), workers, device, True)
    val_loader = _loader(data.val, settings.batch_size, None, workers, device, True)
    scaler = torch.amp.GradScaler(device.type, enabled=settings.precision == "16-mixed")
    writer = None
    if settings.tensorboard and cluster.is_main:
        writer = _summary_writer_class()(str(out_dir / TENSORBOARD), purge_step=standing.start_epoch + 1)
    run = _Run(
        config,
        out_dir,
        cluster,
        data,
        model,
        trained,
        optimizer,
        scheduler,
        loss_fn,
        sampler,
        val_loader,
        device,
        train_loader,
        scaler,
        writer,
    )
    return run, standing


def _train_epoch(run: _Run, epoch: int, bar: Progress | None) -> dict[str, Any]:
    """Epoch ``epoch`` (0-based) of training: one optimiser step per batch of this process's shard
    (each sample augmented with a seed from seed, epoch and sample), then one learning-rate step.

    Returns:
        ``train_loss`` and ``train_accuracy`` (over all processes), ``lr`` (the epoch's learning rate),
        ``train_shard_sizes`` (samples per process) and ``train_samples_seen`` (distinct samples);
        with ``train.foldability`` also ``train_static_residual``, the batches' mean penalty R.
    """
    settings = run.config.train
    run.train_loader.sampler.set_epoch(epoch)
    lr = run.optimizer.param_groups[0]["lr"]
    loss_sum, correct, count, residual_sum = 0.0, 0, 0, 0.0
    run.trained.train()
    label = f"epoch {epoch + 1}/{settings.epochs}"
    penalty = FoldabilityPenalty(run.model) if settings.foldability > 0 else None
    with penalty or nullcontext():
        for batch, (frames, labels) in enumerate(_batches(run.train_loader, bar, label, len(run.sampler))):
            loss, scores, residual = _train_batch(run, frames, labels, penalty, (epoch, batch))
            loss_sum += loss * len(labels)
            residual_sum += residual * len(labels)
            correct += int((scores.argmax(1) == labels.to(scores.device)).sum())
            count += len(labels)
    run.scheduler.step()
    loss_sum, correct, total, residual_sum = run.cluster.sum([loss_sum, correct, count, residual_sum])
    shards = run.cluster.gather(sorted(int(i) for i in run.sampler))
    figures = {
        "train_loss": loss_sum / max(total, 1),
        "train_accuracy": correct / max(total, 1),
        "lr": lr,
        "train_shard_sizes": [len(s) for s in shards],
        "train_samples_seen": len(set().union(*shards)),
    }
    if penalty is not None:
        figures["train_static_residual"] = residual_sum / max(total, 1)
    return figures


def _train_batch(
    run: _Run, frames: Tensor, labels: Tensor, penalty: FoldabilityPenalty | None, at: tuple[int, int]
) -> tuple[float, Tensor, float]:
    """One optimiser step on a batch (frames [B, T, C, H, W], labels [B]); ``at`` = (epoch, batch).

    Returns the loss (with the foldability penalty, if any), the detached scores [B, classes] and
    the penalty R (0. without it)."""
    settings, device = run.config.train, run.device
    frames = frames.to(device, non_blocking=True)
    labels = labels.to(device, non_blocking=True)
    run.optimizer.zero_grad()
    with autocast(device, settings.precision):
        scores = run.trained(to_time_major(frames))
    loss = run.loss_fn(scores, labels)
    residual = 0.0
    if penalty is not None:
        weighted = penalty.take().to(loss.device)
        residual = float(weighted.detach())
        loss = loss + settings.foldability * weighted
    _check_loss(run, float(loss.detach()), *at)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    return float(loss.detach()), scores.detach(), residual


def _diverged(run: _Run, epoch: int, what: str) -> AsaSnnError:
    """The error for a run that produced a non-finite value in epoch ``epoch`` (0-based)."""
    kept = (
        f"{run.out_dir / LAST} keeps epoch {epoch}, the last good one"
        if epoch
        else "no checkpoint was written"
    )
    return AsaSnnError(f"training diverged: {what}; {kept}; lower optim.lr or check the data and config")


def _check_loss(run: _Run, loss: float, epoch: int, batch: int) -> None:
    """Stop every process when the loss of batch ``batch`` in epoch ``epoch`` (0-based) is NaN or
    infinite on any of them (before the step, so no weight is touched)."""
    bad = not math.isfinite(loss)
    if run.cluster.distributed:
        bad = run.cluster.sum([float(bad)])[0] > 0
    if bad:
        value = f"{loss}" if not math.isfinite(loss) else "non-finite on another process"
        raise _diverged(run, epoch, f"the loss is {value} in epoch {epoch + 1}, batch {batch + 1}")


def _check_weights(run: _Run, epoch: int) -> None:
    """Stop when a parameter or buffer became NaN or infinite during epoch ``epoch`` (0-based)."""
    for name, tensor in run.model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise _diverged(run, epoch, f"tensor {name!r} became non-finite in epoch {epoch + 1}")


def _epoch(run: _Run, epoch: int, bar: Progress | None) -> dict[str, Any]:
    """Train epoch ``epoch`` (0-based) and validate; return its log record (``seconds``: wall time)."""
    started = time.perf_counter()
    train = _train_epoch(run, epoch, bar)
    _check_weights(run, epoch)
    val = evaluate(run.model, run.val_loader, run.loss_fn, run.device, run.config.train.precision)
    _log_tensorboard(run.writer, epoch + 1, train, val)
    residual = {k: train[k] for k in ("train_static_residual",) if k in train}
    return {
        "epoch": epoch + 1,
        "train_loss": train["train_loss"],
        "train_accuracy": train["train_accuracy"],
        **residual,
        "val_loss": val.loss,
        "val_accuracy": val.accuracy,
        "val_nasfr": val.nasfr,
        "lr": train["lr"],
        "seconds": time.perf_counter() - started,
        "train_shard_sizes": train["train_shard_sizes"],
        "train_samples_seen": train["train_samples_seen"],
        "val_layer_rates": val.layer_rates,
    }


def _log_tensorboard(writer: Any, step: int, train: dict[str, Any], val: Evaluation) -> None:
    """Epoch ``step``'s (1-based) loss, accuracy, NASFR, per-layer firing rates and learning rate."""
    if writer is None:
        return
    scalars = {
        "loss/train": train["train_loss"],
        "loss/val": val.loss,
        "accuracy/train": train["train_accuracy"],
        "accuracy/val": val.accuracy,
        "nasfr/val": val.nasfr,
        "lr": train["lr"],
        **{f"firing_rate/{name or 'model'}": rate for name, rate in val.layer_rates.items()},
    }
    if "train_static_residual" in train:
        scalars["foldability/static_residual"] = train["train_static_residual"]
    for tag, value in scalars.items():
        writer.add_scalar(tag, value, step)
    writer.flush()


def _save_epoch(
    run: _Run, standing: _Standing, record: dict[str, Any], improved: bool, bar: Progress | None
) -> None:
    """Rank 0 after an epoch: write best (when ``improved``) and last checkpoints (both hold the
    log records so far: ``last.safetensors`` is the commit point), rewrite the log from them and,
    with a progress bar, print the epoch's summary line."""
    epoch, config = record["epoch"], run.config
    meta = {
        "config": config.to_dict(),
        "data_fingerprint": run.data.fingerprint,
        "epoch": epoch,
        "metrics": record,
        "history": standing.history,
        "best_val_accuracy": standing.best_val,
        "best_epoch": standing.best_epoch,
        "scheduler": run.scheduler.state_dict(),
    }
    if improved:
        save_checkpoint(run.out_dir / BEST, run.model, config.model, meta)
    save_checkpoint(run.out_dir / LAST, run.model, config.model, meta, run.optimizer)
    _write_log(run.out_dir, standing.history)
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
    model.to(run.device)
    settings = run.config.train
    if settings.eval_windows > 1:
        test = evaluate_windows(model, run.data.test, run.data.input_spec, settings.eval_windows, run.device)
        return test.accuracy, test.window_accuracy, test.nasfr, test.samples
    workers = run.val_loader.num_workers
    loader = _loader(run.data.test, settings.batch_size, None, workers, run.device)
    test = evaluate(model, loader, run.loss_fn, run.device, settings.precision)
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
        write_json({**summary, "test_windows": windows}, run.out_dir / RESULT)
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
