"""The ``asa-snn`` command line.

Every command is a thin wrapper over a library function. Every failure becomes exactly one line
on stderr (``error: ...``) and a non-zero exit status (:func:`main`); an exception that is not a
known kind of user or environment error says ``internal error`` with its type.
``asa-snn --debug ...`` shows the traceback instead.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path
from typing import IO, Annotated

import typer
from rich.console import Console
from rich.table import Table

from asa_snn.errors import AsaSnnError

app = typer.Typer(
    name="asa-snn",
    help="Train spiking networks with Advanced Spatial Attention and deploy them to neuromorphic chips.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Inspect event recordings.", no_args_is_help=True)
app.add_typer(data_app, name="data")
deploy_app = typer.Typer(help="Deploy a folded graph to Speck (samna) or Loihi (Lava).", no_args_is_help=True)
app.add_typer(deploy_app, name="deploy")

console = Console()
DEVICE_HELP = "auto (CUDA when present), cpu, cuda, cuda:N or mps."
DATA_HELP = (
    "Event file, folder of event files (labelled by a labels.csv, or N-MNIST's labels.txt), training "
    "config or recipe name (its test split), or builtin:synthetic[:N] (N built-in recordings)."
)


class _Options:
    """Global options set by the top-level callback."""

    debug: bool = False


@app.callback()
def _global_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    _Options.debug = debug


@data_app.command("inspect")
def data_inspect(
    path: Annotated[Path, typer.Argument(help="Event recording (any supported format).")],
    format: Annotated[
        str | None,
        typer.Option(
            "--format", help="Force a format (nmnist, aedat4, ..., dat, evt2, evt3) instead of detecting it."
        ),
    ] = None,
    sensor_size: Annotated[
        str | None,
        typer.Option(
            "--sensor-size",
            help="W,H,P instead of the sensor size the file stores (a Prophesee file may have none).",
        ),
    ] = None,
    preview: Annotated[
        Path | None,
        typer.Option(
            "--preview", help="Also render a PNG preview to this file (nothing is written without it)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Print format, sensor size, event count, duration and rate of a recording.

    Writes nothing unless asked: --preview FILE renders a PNG preview there.
    """
    from asa_snn.data.formats import SUPPORTED_FORMATS, detect_format, read_events
    from asa_snn.data.preview import render_preview, summarize

    size = _int_tuple(sensor_size, "--sensor-size", 3) if sensor_size is not None else None
    detected = format or detect_format(path)
    stream = read_events(path, format=detected, sensor_size=size)
    summary = {
        "format": detected,
        "format_description": SUPPORTED_FORMATS.get(detected, ""),
        **summarize(stream),
    }
    preview_path = render_preview(stream, preview) if preview is not None else None
    summary["preview"] = str(preview_path) if preview_path is not None else None
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    table = Table(title=str(path), show_header=False)
    width, height, polarities = stream.sensor_size
    rows = [
        ("format", f"{detected} ({summary['format_description']})"),
        ("sensor size (W x H x P)", f"{width} x {height} x {polarities}"),
        ("events", f"{len(stream):,}"),
        ("duration", f"{stream.duration_us / 1000:.3f} ms"),
        ("rate", f"{stream.rate_hz / 1e3:.1f} kev/s"),
        ("events per polarity", ", ".join(f"{c:,}" for c in summary["polarity_counts"])),
    ]
    if preview_path is not None:
        rows.append(("preview", str(preview_path)))
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


def _int_tuple(text: str, field: str, length: int) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != length:
        raise AsaSnnError(f"{field} must be {length} comma-separated integers, got {text!r}")
    return values


@app.command("model-info")
def model_info(
    network: Annotated[str, typer.Argument(help="Network name (arch_a, arch_d, arch_b, sew_resnet18, ...).")],
    attention: Annotated[
        str, typer.Option("--attention", help="none, sa, tcsa, asa1, asa2, asa_reference.")
    ] = "none",
    timesteps: Annotated[int, typer.Option("--timesteps", help="Time steps T.")] = 16,
    input_shape: Annotated[str, typer.Option("--input", help="Input frame shape C,H,W.")] = "2,32,32",
    classes: Annotated[int, typer.Option("--classes", help="Number of classes K.")] = 10,
    neuron: Annotated[str | None, typer.Option("--neuron", help="Override the network's neuron.")] = None,
) -> None:
    """Print the layer table (output shapes, neurons, parameters, MACs) and the totals.

    MACs follow :data:`asa_snn.models.registry.MACS_CONVENTION` (per sample of T steps); on the
    paper's Table 3 setting the attention MACs are compared with the paper's.
    """
    from asa_snn.models.registry import (
        MACS_CONVENTION,
        ModelSpec,
        build_model,
        count_parameters,
        model_table,
        table3_check,
    )

    spec = ModelSpec(
        network, attention, timesteps, _int_tuple(input_shape, "--input", 3), classes, neuron=neuron
    )
    model = build_model(spec)
    rows = model_table(model, timesteps)
    table = Table(title=f"{network} + {attention}, T={timesteps}, input {input_shape}, {classes} classes")
    columns = ("layer", "type", "output (per step)", "neurons", "parameters", "T x FLOPs", "attention MACs")
    for column in columns:
        text = column in {"layer", "type"}
        table.add_column(column, justify="left" if text else "right", no_wrap=True, overflow="ignore")
    for row in rows:
        shape = "x".join(str(v) for v in row.output_shape)
        table.add_row(
            row.name,
            row.kind,
            shape,
            f"{row.neurons:,}" if row.neurons else "",
            f"{row.parameters:,}",
            f"{row.dense_ops:,}" if row.dense_ops else "",
            f"{row.attention_macs:,}" if row.attention_macs else "",
        )
    # never truncate a number: print on a console at least as wide as the table (piped output is 80)
    natural = console.measure(table, options=console.options.update(max_width=10_000)).maximum
    wide = Console(width=max(console.width, natural))
    wide.print(table)
    attention_macs = sum(row.attention_macs for row in rows)
    first = next((row for row in rows if row.dense_ops), None)
    lines = [
        f"total parameters: {count_parameters(model):,}",
        f"attention MACs per sample: {attention_macs:,}",
    ]
    if first is not None:
        lines.append(f"first layer MACs per sample (real-valued input, T x FLOPs): {first.dense_ops:,}")
    check = table3_check(spec, attention_macs)
    lines += [*([check] if check else []), f"convention: {MACS_CONVENTION}"]
    for line in lines:
        wide.print(line, soft_wrap=True)


@app.command("train", context_settings={"allow_extra_args": False})
def train_command(
    config: Annotated[str, typer.Argument(help="Config file (TOML/YAML) or a shipped recipe name.")],
    overrides: Annotated[
        list[str] | None, typer.Argument(help="Overrides as section.key=value, e.g. model.attention=asa2.")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Output folder (checkpoints, log.jsonl).")] = Path(
        "runs/train"
    ),
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/last.safetensors.")] = False,
    device: Annotated[str | None, typer.Option("--device", help=DEVICE_HELP + " Sets train.device.")] = None,
    precision: Annotated[
        str | None, typer.Option("--precision", help="32, bf16 or 16-mixed (CUDA). Sets train.precision.")
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="DataLoader processes. Sets train.workers.")
    ] = None,
    cache_dir: Annotated[
        Path | None, typer.Option("--cache-dir", help="Frame cache folder. Sets data.cache_dir.")
    ] = None,
) -> None:
    """Train a network from a config; checkpoints and a per-epoch log go to --out."""
    from asa_snn.train import load_config, train
    from asa_snn.train.config import resolve_config_path

    options = _scale_overrides(device, precision, workers, cache_dir)
    result = train(
        load_config(resolve_config_path(config), [*(overrides or []), *options]),
        out,
        resume=resume,
        progress=True,
    )
    console.print(
        f"best epoch {result.best_epoch}: validation accuracy {result.best_val_accuracy:.3f}; "
        f"test accuracy {result.test_accuracy:.3f}, test NASFR {result.test_nasfr:.4f} "
        f"({result.test_samples} samples); checkpoints in {result.out_dir}"
    )


def _scale_overrides(
    device: str | None, precision: str | None, workers: int | None, cache_dir: Path | None
) -> list[str]:
    """Config overrides for the options given (None: the config's value stays)."""
    values = {
        "train.device": device,
        "train.precision": precision,
        "train.workers": workers,
        "data.cache_dir": None if cache_dir is None else str(cache_dir.expanduser().resolve()),
    }
    return [f"{key}={json.dumps(value)}" for key, value in values.items() if value is not None]


@app.command("cache")
def cache_command(
    config: Annotated[str, typer.Argument(help="Config file (TOML/YAML) or a shipped recipe name.")],
    overrides: Annotated[
        list[str] | None, typer.Argument(help="Overrides as section.key=value, e.g. data.dt_us=20000.")
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option("--cache-dir", help="Frame cache folder (default: the config's data.cache_dir)."),
    ] = None,
    workers: Annotated[int, typer.Option("--workers", help="Processes computing frames.")] = 0,
) -> None:
    """Fill the on-disk frame cache of a config's data ahead of training (train with the same --cache-dir)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from asa_snn.train import load_config
    from asa_snn.train.config import resolve_config_path
    from asa_snn.train.data import build_data, fill_cache

    options = _scale_overrides(None, None, None, cache_dir)
    settings = load_config(resolve_config_path(config), [*(overrides or []), *options])
    data = build_data(settings)
    total = len(data.train) + len(data.val) + len(data.test)
    columns = (TextColumn("caching frames"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("cache", total=total)
        done = fill_cache(data, workers, lambda n: bar.advance(task, n))
    console.print(
        f"cached {done['train']} training, {done['val']} validation and {done['test']} test recordings "
        f"in {data.train.cache.folder}"
    )


@app.command("analyze")
def analyze_command(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint (.safetensors) of the model to analyse.")],
    data: Annotated[
        str,
        typer.Option("--data", help="'test' or 'val' part of the checkpoint's own data, or a config file."),
    ] = "test",
    compare: Annotated[
        Path | None, typer.Option("--compare", help="A second checkpoint (e.g. the ASA model) to compare.")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Report folder.")] = Path("runs/analysis"),
    max_samples: Annotated[int | None, typer.Option("--max-samples", help="Samples to measure.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 16,
    feature_steps: Annotated[
        str | None,
        typer.Option("--feature-steps", help="Steps of the spike-feature and MPD figures, e.g. 0,30,59."),
    ] = None,
    feature_layers: Annotated[
        str | None,
        typer.Option(
            "--feature-layers",
            help="Spiking layers of those figures, e.g. blocks.0.neuron,blocks.1.neuron (first spatial).",
        ),
    ] = None,
    mpd: Annotated[
        str,
        typer.Option(
            "--mpd", help="Histogram the 'membrane' potential U before reset or the input 'current' X."
        ),
    ] = "membrane",
    hist_range: Annotated[
        str | None,
        typer.Option("--hist-range", help="Histogram range LOW,HIGH in units of the threshold (-2,2)."),
    ] = None,
    hist_bins: Annotated[int, typer.Option("--hist-bins", help="Histogram bins.")] = 80,
    device: Annotated[str, typer.Option("--device", help=DEVICE_HELP)] = "auto",
) -> None:
    """Firing rates, ghost features, background spikes, MPD/PTD/QE, energy; writes a report folder."""
    from asa_snn.workflows.analyze import analyze_checkpoints, parse_names, parse_range, parse_steps

    analyze_checkpoints(
        checkpoint,
        compare,
        out,
        data,
        max_samples=max_samples,
        batch_size=batch_size,
        quantity=mpd,
        hist_spec=parse_range(hist_range or "-2,2", hist_bins),
        feature_steps=parse_steps(feature_steps),
        feature_layers=parse_names(feature_layers),
        device=device,
    )
    console.print(f"report written to {out / 'report.md'} (metrics.json, figures/)")


@app.command("fold")
def fold_command(
    checkpoint: Annotated[Path, typer.Argument(help="Training checkpoint (.safetensors).")],
    target: Annotated[str, typer.Option("--target", help="A chip (speck, loihi) or generic.")] = "speck",
    calib: Annotated[
        Path | None,
        typer.Option("--calib", help="Config naming the calibration data (default: the checkpoint's)."),
    ] = None,
    finetune: Annotated[
        int, typer.Option("--finetune", help="Fold-aware fine-tuning epochs (0: static fold).")
    ] = 10,
    n_calib: Annotated[int, typer.Option("--n-calib", help="Calibration samples.")] = 64,
    vanilla: Annotated[
        Path | None, typer.Option("--vanilla", help="A vanilla checkpoint to measure for comparison.")
    ] = None,
    approximate: Annotated[
        bool,
        typer.Option(
            "--approximate", help="Allow leaky LIF neurons to run as IAF on Speck (loses accuracy)."
        ),
    ] = False,
    out: Annotated[Path, typer.Option("--out", help="Output folder: graph + fidelity.md/json.")] = Path(
        "runs/fold"
    ),
    chip_dynamics: Annotated[
        bool,
        typer.Option(
            "--chip-dynamics/--float-dynamics",
            help="Fine-tune with the chip's own dynamics and integers, or float neurons + fake quantization.",
        ),
    ] = True,
    teacher_weight: Annotated[
        float, typer.Option("--teacher-weight", help="Weight of distilling the live model's output rates.")
    ] = 1.0,
    label_weight: Annotated[float, typer.Option("--label-weight", help="Weight of the label loss.")] = 1.0,
    layer_weight: Annotated[
        float, typer.Option("--layer-weight", help="Weight of distilling per-layer spike counts.")
    ] = 1.0,
    device: Annotated[
        str,
        typer.Option("--device", help="Where calibration, teacher and fine-tuning run: " + DEVICE_HELP),
    ] = "cpu",
    select_by: Annotated[
        str,
        typer.Option(
            "--select-by",
            help="Choose the fine-tuned epoch on the validation split by 'fidelity' (agreement with "
            "the live model, when distilling; default) or 'accuracy'.",
        ),
    ] = "fidelity",
    test_samples: Annotated[
        int | None,
        typer.Option(
            "--test-samples",
            help="Synthetic data only: report on a test split of this many recordings (the first are "
            "the config's own; training and validation data unchanged).",
        ),
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option("--lr", help="Fine-tuning's Adam rate (default: the training rate)."),
    ] = None,
) -> None:
    """Fold attention and batch norm, fine-tune, quantize for a chip; write the graph and fidelity report."""
    from asa_snn.workflows.fold import run_fold
    from asa_snn.workflows.fold_steps import TuneOptions

    options = TuneOptions(
        chip_dynamics, label_weight, teacher_weight, layer_weight, lr=lr, device=device, select_by=select_by
    )
    outcome = run_fold(
        checkpoint, target, out, calib, finetune, n_calib, approximate, vanilla, options, test_samples
    )
    typer.echo((outcome.out_dir / "fidelity.md").read_text())
    verdict = "met" if outcome.goal_met else "NOT met (see where the loss comes from above)"
    console.print(f"graph and fidelity report in {outcome.out_dir}; goal {verdict}")


@app.command("import")
def import_command(
    model: Annotated[Path, typer.Argument(help="NIR file (.nir) from sinabs, Norse, snnTorch, asa-snn, ...")],
    target: Annotated[str, typer.Option("--target", help="A chip (speck, loihi) or generic.")] = "speck",
    calib: Annotated[
        str | None,
        typer.Option(
            "--calib",
            help="Recordings to quantize and measure fidelity on (event file, folder, builtin:synthetic).",
        ),
    ] = None,
    n_calib: Annotated[int, typer.Option("--n-calib", help="Calibration recordings.")] = 64,
    dt_us: Annotated[
        int | None,
        typer.Option("--dt-us", help="Microseconds per step (default: the file's dt metadata, else 1000)."),
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option("--steps", help="Steps per inference (default: the file's n_steps, else 16)."),
    ] = None,
    sensor: Annotated[
        str | None, typer.Option("--sensor", help="Event sensor W,H,P (default: the input's W,H,C).")
    ] = None,
    approximate: Annotated[
        bool,
        typer.Option(
            "--approximate",
            help="Accept conversions that change the dynamics (leaky LIF as Speck IAF, ...); each is named.",
        ),
    ] = False,
    multi_spike: Annotated[
        bool,
        typer.Option("--multi-spike", help="IF neurons emit floor(v / threshold) spikes, as sinabs' IAF."),
    ] = False,
    out: Annotated[Path, typer.Option("--out", help="Output folder: graph (+ fidelity.md/json).")] = Path(
        "runs/import"
    ),
) -> None:
    """Turn a NIR graph into a folded graph for a chip; with --calib quantize it and report fidelity."""
    from asa_snn.workflows.import_nir import run_import

    sensor_size = _int_tuple(sensor, "--sensor", 3) if sensor else None
    outcome = run_import(
        model, target, out, calib, n_calib, dt_us, steps, sensor_size, approximate, multi_spike
    )
    if outcome.fidelity is not None:
        typer.echo((outcome.out_dir / "fidelity.md").read_text())
    else:
        for note in outcome.result.notes:
            console.print(f"note: {note}", soft_wrap=True)
    layers = ", ".join(f"{layer.name} ({layer.op})" for layer in outcome.graph.layers)
    kind = "quantized" if outcome.graph.quantized else "float"
    console.print(f"imported {len(outcome.graph.layers)} layers: {layers}", soft_wrap=True)
    console.print(f"{kind} graph for {target} written to {outcome.out_dir}", soft_wrap=True)
    if outcome.goal_met is False:
        console.print("fidelity goal NOT met (see fidelity.md)")
    elif not outcome.graph.quantized and target != "generic":
        console.print(f"float graph: pass --calib DATA to quantize it for {target} before deploying")


def _neurobench_table(summary: dict) -> Table:
    """NeuroBench's metrics of a simulation summary under their names, beside its NASFR."""
    bench = summary["neurobench"]

    def number(value: float | None, digits: str = ",.0f") -> str:
        return "n/a" if value is None else format(value, digits)

    table = Table(title="NeuroBench metrics (per inference; asa_snn/energy/neurobench.py)", show_header=False)
    table.add_column("metric", no_wrap=True)
    table.add_column("value", justify="right")
    table.add_row("NASFR (spikes / neurons / T)", number(summary["nasfr"], ".4f"))
    table.add_row("footprint (bytes)", number(bench["footprint"]))
    table.add_row("connection sparsity", number(bench["connection_sparsity"], ".4f"))
    table.add_row("activation sparsity", number(bench["activation_sparsity"], ".4f"))
    for key, value in bench["synaptic_operations"].items():
        table.add_row(f"synaptic operations {key}", number(value))
    table.add_row("membrane updates", number(bench["membrane_updates"]))
    return table


@app.command("simulate")
def simulate_command(
    graph_dir: Annotated[
        Path, typer.Argument(help="Folded graph folder (graph.json + tensors.safetensors).")
    ],
    backend: Annotated[
        str, typer.Option("--backend", help="speck, speck-events, sinabs, loihi, lava, norse or onnx.")
    ] = "speck",
    data: Annotated[
        str,
        typer.Option("--data", help=DATA_HELP),
    ] = "builtin:synthetic",
    max_samples: Annotated[int | None, typer.Option("--max-samples")] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="JSON file for the results (and <stem>_confusion.png beside it with labels)."
        ),
    ] = None,
) -> None:
    """Run a folded graph on a backend: per-layer spikes, synaptic operations and energy per preset;
    accuracy, per-class accuracy and the confusion matrix where the data has labels."""
    from asa_snn.convert.graph import load_graph
    from asa_snn.files import write_json
    from asa_snn.simulators.summary import per_class_text
    from asa_snn.workflows.simulate import simulate_summary, write_confusion_figure

    graph = load_graph(graph_dir)
    summary = simulate_summary(graph, data, backend, max_samples, progress=console.print)
    table = Table(title=f"{graph_dir} on {backend}: {summary['samples']} samples, T={summary['timesteps']}")
    for column in ("layer", "spikes / sample", "synaptic ops / sample"):
        table.add_column(column, justify="left" if column == "layer" else "right", no_wrap=column == "layer")
    synops = {layer["name"]: layer["synaptic_ops"] for layer in summary["layers"]}
    for name in dict.fromkeys([*summary["spikes_per_sample"], *synops]):
        spikes = summary["spikes_per_sample"].get(name)
        ops = synops.get(name)
        table.add_row(name, "" if spikes is None else f"{spikes:,.1f}", "" if ops is None else f"{ops:,.0f}")
    console.print(table)
    for preset, joules in summary["energy_j"].items():
        console.print(f"energy {preset}: {joules * 1e6:.3f} uJ per inference")
    console.print(_neurobench_table(summary))
    if summary["accuracy"] is not None:
        console.print(
            f"accuracy: {summary['accuracy']:.3f} over {summary['labelled']} labelled recordings "
            f"(labels: {summary['data']['labels']})",
            soft_wrap=True,
        )
        console.print(
            f"per class: {per_class_text(summary['per_class_accuracy'], summary['classes'])}", soft_wrap=True
        )
    for note in summary["notes"]:
        console.print(f"note: {note}")
    if out:
        write_json(summary, out)
        console.print(f"written to {out}", soft_wrap=True)
        figure = write_confusion_figure(summary, out.with_name(f"{out.stem}_confusion.png"))
        if figure is not None:
            console.print(f"confusion matrix drawn to {figure}", soft_wrap=True)


@app.command("check")
def check_command(
    graph_dir: Annotated[Path, typer.Argument(help="Folded graph folder.")],
    target: Annotated[str, typer.Option("--target", help="A chip: speck or loihi.")] = "speck",
) -> None:
    """Check a folded graph against a chip's limits; exit 1 with the violations when it does not fit."""
    from asa_snn.chips.registry import check_target, get_chip
    from asa_snn.convert.graph import load_graph

    graph = load_graph(graph_dir)
    check_target(graph.target, str(graph_dir))
    report = get_chip(target).check(graph)
    typer.echo(report.table())
    if report.violations:
        typer.echo(f"{len(report.violations)} violation(s): the graph does not fit {target}", err=True)
        raise typer.Exit(1)
    typer.echo(f"fits {target}")


@app.command("budget")
def budget_command(
    graph_dir: Annotated[Path, typer.Argument(help="Folded graph folder.")],
    budget: Annotated[Path, typer.Option("--budget", help="Budget file (TOML or YAML).")],
    data: Annotated[
        str,
        typer.Option("--data", help=DATA_HELP),
    ] = "builtin:synthetic",
    backend: Annotated[str, typer.Option("--backend", help="Simulator backend.")] = "speck",
    max_samples: Annotated[int | None, typer.Option("--max-samples")] = None,
    window_ms: Annotated[
        float | None,
        typer.Option(
            "--window-ms",
            help="Window of the peak per-core load on Speck, in ms (default: the budget's "
            "burst_window_ms, else 1).",
        ),
    ] = None,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Folder for budget.json and the figures (core_load.png on Speck, confusion.png with "
            "labels).",
        ),
    ] = Path("runs/budget"),
) -> None:
    """Check simulated spikes, synaptic ops, energy, latency and memory against a spike budget;
    on Speck the peak per-core load in sliding windows (event-driven, real timestamps) with checked
    fixes when it is exceeded; accuracy, per-class accuracy and the confusion matrix where the data
    has labels.

    Exits 1 when any limit is exceeded, so it can gate a CI job.
    """
    from asa_snn.convert.graph import load_graph
    from asa_snn.workflows.budget import evaluate_budget, load_budget, write_budget_report

    graph, limits = load_graph(graph_dir), load_budget(budget)
    report = evaluate_budget(graph, limits, data, backend, max_samples, window_ms)
    written = write_budget_report(report, out)
    typer.echo(report.table())
    figures = "figures" if len(written) > 2 else "figure"
    typer.echo(f"budget.json and {figures} written to {written['json'].parent}")
    if not report.ok:
        raise typer.Exit(1)


@deploy_app.command("speck")
def deploy_speck_command(
    graph_dir: Annotated[Path, typer.Argument(help="Folded, quantized graph folder (target speck).")],
    device: Annotated[
        str, typer.Option("--device", help="samna device, e.g. speck2fdevkit:0.")
    ] = "speck2fdevkit:0",
    events: Annotated[Path | None, typer.Option("--events", help="Event file to stream.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="No chip: configuration summary and simulated counts.")
    ] = False,
    out: Annotated[Path, typer.Option("--out", help="Folder for deploy_speck.json.")] = Path(
        "runs/deploy_speck"
    ),
) -> None:
    """Configure Speck through samna, stream events, compare per-layer counts with the built-in simulator."""
    from asa_snn.convert.graph import load_graph
    from asa_snn.deploy.boards import deploy_to_board

    graph = load_graph(graph_dir)
    report = deploy_to_board(graph, "speck", device=device, events=events, dry_run=dry_run, out_dir=out)
    typer.echo(report.summary())
    if not report.ok:
        raise typer.Exit(1)


@deploy_app.command("loihi")
def deploy_loihi_command(
    graph_dir: Annotated[Path, typer.Argument(help="Folded, quantized graph folder (target loihi).")],
    events: Annotated[Path | None, typer.Option("--events", help="Event file to run.")] = None,
    hardware: Annotated[bool, typer.Option("--hardware", help="Run on Loihi 2 (Intel's extension).")] = False,
    out: Annotated[Path, typer.Option("--out", help="Folder for network.net and deploy_loihi.json.")] = Path(
        "runs/deploy_loihi"
    ),
) -> None:
    """Export netx, run it in Lava (or the built-in Loihi simulator where Lava is missing), compare."""
    from asa_snn.convert.graph import load_graph
    from asa_snn.deploy.boards import deploy_to_board

    report = deploy_to_board(load_graph(graph_dir), "loihi", events=events, hardware=hardware, out_dir=out)
    typer.echo(report.summary())
    if not report.ok:
        typer.echo("Lava and the built-in simulator disagree", err=True)
        raise typer.Exit(1)


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option("--out", help="Report folder.")] = Path("runs/demo"),
    epochs: Annotated[int, typer.Option("--epochs", help="Training epochs per model.")] = 20,
    data: Annotated[
        Path | None, typer.Option("--data", help="Folder of your own recordings with labels.csv.")
    ] = None,
    config: Annotated[
        str, typer.Option("--config", help="Recipe file or shipped recipe name.")
    ] = "synthetic_speck",
    device: Annotated[
        str, typer.Option("--device", help=DEVICE_HELP + " (training, analysis, fold fine-tuning)")
    ] = "auto",
) -> None:
    """The whole job: train vanilla and ASA, analyse, fold for Speck and Loihi, export, simulate, report."""
    from functools import partial

    from asa_snn.devices import resolve_device
    from asa_snn.train.trainer import train_recipe
    from asa_snn.workflows.analyze import analyze_pair
    from asa_snn.workflows.demo import Settings, run_pipeline

    resolve_device(device, "demo --device")

    def train_on_device(recipe: str, overrides: list[str], out_dir: Path) -> dict:
        return train_recipe(recipe, [*overrides, f"train.device={json.dumps(device)}"], out_dir)

    result = run_pipeline(
        out,
        train_on_device,
        partial(analyze_pair, device=device),
        config=config,
        data=data,
        settings=Settings(epochs=epochs, device=device),
        progress=lambda step, total, message: console.rule(f"[{step}/{total}] {message}"),
    )
    table = Table(title="asa-snn demo")
    table.add_column("item")
    table.add_column("value", justify="right")
    for item, value in result.summary_rows():
        table.add_row(item, value)
    console.print(table)
    console.print(f"report: {result.out_dir / 'report.html'} (and report.md, pipeline.json)")


def use_huge_pages_for_tensors() -> bool:
    """Ask PyTorch to back CPU tensors of 2 MiB and more with transparent huge pages.

    PyTorch's CPU allocator reads ``THP_MEM_ALLOC_ENABLE`` once, at its first allocation, so this
    only acts before ``torch`` is imported, on Linux, and when the user has not set the variable
    (their value, 0 included, wins). Otherwise glibc maps every activation above 32 MiB afresh at
    each training step and the kernel faults it in 4 KiB pages; with 2 MiB pages a training step of
    arch A took 0.682 s instead of 0.714 s and 409 MiB instead of 514 MiB at its peak
    (``benchmarks/train_step.py`` with ``--allocator thp`` and ``default``, benchmarks/README.md).

    Returns True when the variable was set here.
    """
    if not sys.platform.startswith("linux") or "torch" in sys.modules:
        return False
    if "THP_MEM_ALLOC_ENABLE" in os.environ:
        return False
    os.environ["THP_MEM_ALLOC_ENABLE"] = "1"
    return True


_FILE_LOCALS = ("filename", "file_path", "filepath", "fname", "path")
"""Local variable names that hold the file a failing library call was reading or writing."""


_PATH_CHECK = re.compile(
    r"(?:file|dir|path) '(?P<path>.*)' (?P<problem>does not exist|is not readable)\.", re.S
)
"""The message of typer's own checks of a path parameter (``readable=True`` is its default)."""
_PATH_PROBLEMS = {
    "does not exist": "no such file or folder",
    "is not readable": "not readable (permission denied)",
}


MAX_ERROR_CHARS = 2000
"""An error line longer than this is cut (a message may quote a hostile value of megabytes)."""


def _one_line(text: str) -> str:
    """``text`` with its lines joined by spaces: a library message on the one line the CLI prints,
    cut to :data:`MAX_ERROR_CHARS`."""
    line = " ".join(part.strip() for part in str(text).splitlines() if part.strip())
    if len(line) > MAX_ERROR_CHARS:
        line = f"{line[: MAX_ERROR_CHARS - 40]}... [{len(line):,} characters in all]"
    return line


def _file_in_traceback(exc: BaseException) -> str | None:
    """The file the innermost Python frame of ``exc``'s traceback was working on, if it says.

    Native writers (safetensors, HDF5) often report "No space left on device" without the file;
    the Python frame that called them holds it as ``filename`` / ``path`` (safetensors'
    ``save_file``), or as an h5py object's ``.filename``.
    """
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        for name in _FILE_LOCALS:
            value = frame.f_locals.get(name)
            if isinstance(value, (str, os.PathLike)) and str(value):
                return os.fspath(value)
        holder = frame.f_locals.get("self")
        try:
            filename = getattr(getattr(holder, "file", holder), "filename", None)
        except Exception:  # an h5py object whose file is already closed or broken
            filename = None
        if isinstance(filename, str) and filename:
            return filename
    return None


def _with_file(message: str, exc: BaseException) -> str:
    """``message`` prefixed with the file from the traceback unless it already names it."""
    file = _file_in_traceback(exc)
    return message if file is None or file in message else f"{file}: {message}"


def _error_line(exc: BaseException) -> tuple[str, int]:
    """The one line (without ``error: ``) and the exit status for an exception a command raised.

    Errors a user can cause and act on (bad or unreadable input, a full disk, too little memory, a
    crashing native decoder) say what happened; any other exception is an internal error and says
    so, with its type, so that a bug is not mistaken for bad input.
    """
    from typer.exceptions import TyperException

    message = _one_line(str(exc))
    module = _where(exc).split(".")[0]  # the package whose code raised it
    if _WORKER_ERROR in str(exc):
        return _worker_error_line(str(exc)), 1
    if isinstance(exc, AsaSnnError):
        return message, 1
    if isinstance(exc, TyperException):  # click's usage errors: bad options, missing arguments
        path_problem = _PATH_CHECK.fullmatch(str(getattr(exc, "message", "")))
        if path_problem:  # typer checks that path parameters are readable: an input problem, not usage
            return f"{path_problem['path']}: {_PATH_PROBLEMS[path_problem['problem']]}", 1
        command = getattr(getattr(exc, "ctx", None), "command_path", "asa-snn")
        hint = f" (see '{command} --help')" if getattr(exc, "ctx", None) is not None else ""
        return f"{_one_line(exc.format_message())}{hint}", exc.exit_code
    if isinstance(exc, MemoryError):
        detail = message or f"an allocation in {_where(exc)} failed"
        return f"out of memory: {_with_file(detail, exc)}", 1
    if isinstance(exc, RuntimeError) and "can't allocate memory" in message:  # PyTorch's CPU allocator
        return f"out of memory: {_with_file(message, exc)}", 1
    if isinstance(exc, OSError):
        if exc.filename is not None or not message:
            return message or f"{type(exc).__name__} in {_where(exc)}", 1
        return _with_file(message, exc), 1
    if type(exc).__name__ == "SafetensorError":  # e.g. a full disk while writing a checkpoint
        return _with_file(f"safetensors: {message}", exc), 1
    if module == "h5py" and isinstance(exc, RuntimeError):  # e.g. a full disk while writing netx
        return _with_file(f"HDF5: {message}", exc), 1
    if type(exc).__name__ == "PanicException":  # pyo3: a native (Rust) decoder crashed
        return _with_file(f"a native decoder crashed ({_where(exc)}): {message}", exc), 1
    return f"internal error: {type(exc).__name__}: {message} (rerun with --debug for the traceback)", 1


_WORKER_ERROR = "in DataLoader worker process"
_SHARED_MEMORY_FAILURES = ("unable to resize file", "No space left on device", "File too large", "Bus error")


def _worker_error_line(text: str) -> str:
    """The one line for an exception PyTorch re-raised from a DataLoader worker: the original
    exception's last traceback line (``module.Type: message``), or, where the worker could not hand a
    batch over through shared memory, what to change."""
    original = text.strip().splitlines()[-1].strip()
    kind, _, detail = original.partition(": ")
    if any(failure in original for failure in _SHARED_MEMORY_FAILURES):
        return (
            f"DataLoader workers could not pass a batch through shared memory (/dev/shm): {detail}; "
            "free or enlarge /dev/shm (Docker: --shm-size) or set train.workers=0"
        )
    if kind.startswith("asa_snn.errors."):
        return detail
    return f"internal error in a DataLoader worker: {original} (rerun with --debug for the traceback)"


def _where(exc: BaseException) -> str:
    """``module.function`` of the innermost frame of ``exc``'s traceback."""
    tb = exc.__traceback__
    if tb is None:
        return "unknown place"
    while tb.tb_next is not None:
        tb = tb.tb_next
    frame = tb.tb_frame
    return f"{frame.f_globals.get('__name__', '?')}.{frame.f_code.co_name}"


def _format_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {_one_line(str(message))}\n"


def _writes_to_fd2(stream: object) -> bool:
    try:
        return stream.fileno() == 2  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return False


class _NativeStderr:
    """Holds what native code writes to file descriptor 2 while a command runs.

    Native libraries write there past Python: a Rust decoder prints its panic message (three
    lines) before the exception reaches Python; HDF5 prints diagnostics. Python's ``sys.stderr``
    is pointed at the real stderr meanwhile, so warnings and messages appear as they happen.
    After a successful command (or with ``--debug``) the held bytes are written out; after a
    failure they are dropped, since the one error line says what happened. Exceptions Python
    can only report (``Exception ignored in ...``: h5py closing a file on a full disk) are held
    the same way, one line each.
    """

    def __init__(self) -> None:
        self.real: int | None = None
        self.held: IO[bytes] | None = None
        self.python_stderr: object | None = None
        self.unraisable: list[str] = []
        self.hook = sys.unraisablehook

    def hold(self) -> None:
        sys.unraisablehook = self._unraisable
        try:
            sys.stderr.flush()
            self.real = os.dup(2)
        except (AttributeError, OSError, ValueError):  # no stderr at all: nothing to hold
            return
        self.held = tempfile.TemporaryFile()  # noqa: SIM115 - closed in release()
        os.dup2(self.held.fileno(), 2)
        if _writes_to_fd2(sys.stderr):
            self.python_stderr = sys.stderr
            sys.stderr = open(  # noqa: SIM115 - closed in release()
                os.dup(self.real), "w", encoding=sys.stderr.encoding, errors=sys.stderr.errors, buffering=1
            )

    def _unraisable(self, unraisable: sys.UnraisableHookArgs) -> None:
        exc = unraisable.exc_value
        what = f"{type(exc).__name__}: {exc}" if exc is not None else unraisable.exc_type.__name__
        self.unraisable.append(_one_line(f"{unraisable.err_msg or 'Exception ignored in'}: {what}"))

    def release(self, show: bool) -> None:
        sys.unraisablehook = self.hook
        data = b""
        if self.real is not None and self.held is not None:
            if self.python_stderr is not None:
                sys.stderr.flush()
                sys.stderr.close()
                sys.stderr = self.python_stderr
            os.dup2(self.real, 2)
            os.close(self.real)
            self.held.seek(0)
            data = self.held.read()
            self.held.close()
        if show:
            sys.stderr.flush()
            view = memoryview(data)
            while view:
                view = view[os.write(2, view) :]
            for line in self.unraisable:
                typer.echo(f"warning: {line}", err=True)


def _run(args: list[str]) -> tuple[int, str | None]:
    """Run the command line: (exit status, the error line or None). Raises only with ``--debug``."""
    from typer.exceptions import TyperException

    try:
        status = app(args=args, prog_name="asa-snn", standalone_mode=False)
    except SystemExit as exc:
        return (exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)), None
    except KeyboardInterrupt:
        return 130, "error: interrupted"
    except typer.Abort:  # click turns end of input at a prompt into Abort
        return 1, "error: aborted"
    except BaseException as exc:  # pyo3's PanicException derives from BaseException
        if type(exc).__name__ == "NoArgsIsHelpError":  # `asa-snn` or `asa-snn data` alone: the help
            typer.echo(exc.format_message())
            return exc.exit_code, None
        if _Options.debug and not isinstance(exc, TyperException):
            raise
        line, status = _error_line(exc)
        return status, f"error: {line}"
    if status == 130:  # typer turns Ctrl-C into Exit(130), which non-standalone mode returns
        return 130, "error: interrupted"
    return (status if isinstance(status, int) else 0), None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``asa-snn`` console script; returns the exit status.

    Every failure is exactly one line on stderr (``error: ...``): status 1 for errors in the input
    or the environment (:func:`_error_line`) and for internal errors (which say so), 2 for a
    command line click cannot parse, 130 after Ctrl-C. Warnings are one line each
    (``warning: ...``); what native libraries print is held (:class:`_NativeStderr`). With
    ``--debug`` first, errors raise with their traceback instead.
    """
    args = sys.argv[1:] if argv is None else argv
    use_huge_pages_for_tensors()
    _Options.debug = False
    formatwarning, warnings.formatwarning = warnings.formatwarning, _format_warning
    native = _NativeStderr()
    status, line = 1, None
    try:
        native.hold()
        status, line = _run(args)
    finally:
        native.release(show=status == 0 or _Options.debug)
        warnings.formatwarning = formatwarning
    if line is not None:
        typer.echo(line, err=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
