"""The pipeline report as one self-contained ``report.html`` and a ``report.md`` with the same numbers.

Both files are rendered from the same list of :class:`Section` objects, whose table cells are
already formatted strings, so the HTML and the Markdown cannot disagree on a number. The HTML has
its CSS inline and every figure embedded as a ``data:image/png;base64,...`` URI, so the file opens
in a browser with no other file beside it. Only the standard library is used (``html.escape``,
``base64``).
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asa_snn.errors import AsaSnnError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
"""The 8 bytes every PNG file starts with (PNG specification, section 5.2)."""

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { border-bottom: 2px solid #446; padding-bottom: .2em; }
h2 { margin-top: 1.6em; color: #334; }
table { border-collapse: collapse; margin: .8em 0; font-size: 14px; }
th, td { border: 1px solid #bbb; padding: 4px 10px; text-align: right; }
th { background: #e8eaf2; }
td:first-child, th:first-child { text-align: left; }
tr:nth-child(even) td { background: #f7f7fa; }
.pass { color: #17702a; font-weight: bold; }
.fail { color: #b3161d; font-weight: bold; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 13px; color: #555; }
p.note { font-size: 13px; color: #555; }
"""


@dataclass
class Table:
    """A table of formatted cells: ``header`` [K] and ``rows`` [N][K] strings, with a caption."""

    caption: str
    header: list[str]
    rows: list[list[str]]

    def __post_init__(self) -> None:
        for index, row in enumerate(self.rows):
            if len(row) != len(self.header):
                raise AsaSnnError(
                    f"report table {self.caption!r}: row {index} has {len(row)} cells, "
                    f"the header has {len(self.header)}"
                )


@dataclass
class Figure:
    """A PNG figure (raw file bytes) with its caption; ``name`` is its file name in the report folder."""

    name: str
    caption: str
    png: bytes

    def __post_init__(self) -> None:
        if not self.png.startswith(PNG_SIGNATURE):
            raise AsaSnnError(
                f"report figure {self.name!r}: not a PNG (first bytes {self.png[:8]!r}, "
                f"expected {PNG_SIGNATURE!r})"
            )


@dataclass
class Section:
    """A report section: a title, paragraphs of plain text, tables and figures, in that order."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)


def png_data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for the PNG file bytes ``png`` (RFC 2397)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def verdict_class(cell: str) -> str:
    """CSS class for a cell: ``pass`` / ``fail`` for verdict words, else empty."""
    word = cell.strip().lower()
    if word in ("pass", "yes", "fits", "met"):
        return "pass"
    if word in ("fail", "no", "does not fit", "not met"):
        return "fail"
    return ""


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    body = []
    for row in table.rows:
        cells = []
        for cell in row:
            css = verdict_class(cell)
            attribute = f' class="{css}"' if css else ""
            cells.append(f"<td{attribute}>{html.escape(cell)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f"<table><caption>{html.escape(table.caption)}</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def _html_figure(figure: Figure) -> str:
    return (
        f'<figure><img alt="{html.escape(figure.caption)}" src="{png_data_uri(figure.png)}">'
        f"<figcaption>{html.escape(figure.caption)}</figcaption></figure>"
    )


def render_html(title: str, sections: list[Section]) -> str:
    """The whole report as one HTML5 document (inline CSS, figures as base64 PNG data URIs)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for section in sections:
        parts.append(f"<section><h2>{html.escape(section.title)}</h2>")
        parts += [f'<p class="note">{html.escape(text)}</p>' for text in section.paragraphs]
        parts += [_html_table(table) for table in section.tables]
        parts += [_html_figure(figure) for figure in section.figures]
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _md_cell(cell: str) -> str:
    return cell.replace("|", "\\|")


def render_markdown(title: str, sections: list[Section], figure_folder: str = "figures") -> str:
    """The same report as Markdown; figures are linked as ``figure_folder/<name>``."""
    lines = [f"# {title}", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for text in section.paragraphs:
            lines += [text, ""]
        for table in section.tables:
            lines += [f"**{table.caption}**", ""]
            lines.append("| " + " | ".join(_md_cell(h) for h in table.header) + " |")
            lines.append("|" + "---|" * len(table.header))
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
            lines.append("")
        for figure in section.figures:
            lines += [f"![{figure.caption}]({figure_folder}/{figure.name})", ""]
    return "\n".join(lines)


def fmt(value: float | None, digits: int = 4) -> str:
    """A number as the report prints it (``n/a`` for None); pipeline.json keeps full precision."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def _models_section(doc: dict[str, Any]) -> Section:
    models = doc["models"]
    presets = sorted({p for m in models.values() for p in m.get("energy_uj", {})})
    table = Table(
        "Accuracy, NASFR and energy per inference: vanilla vs ASA",
        ["model", "test accuracy", "test NASFR", "analysis NASFR", *[f"energy {p} (uJ)" for p in presets]],
        [
            [
                name,
                fmt(m["test_accuracy"]),
                fmt(m["test_nasfr"]),
                fmt(m.get("analysis_nasfr")),
                *[fmt(m.get("energy_uj", {}).get(p), 3) for p in presets],
            ]
            for name, m in models.items()
        ],
    )
    return Section("Models: vanilla vs ASA", [f"Recipe {doc['config']}; data: {doc['data']}."], [table])


def _analysis_section(figures: dict[str, bytes]) -> Section:
    shown = [
        Figure(name, f"Redundancy analysis: {name.removeprefix('analysis_')}", png)
        for name, png in figures.items()
        if name.startswith("analysis_")
    ]
    return Section("Redundancy analysis figures (vanilla vs ASA)", [], [], shown)


def _fidelity_section(doc: dict[str, Any], figures: dict[str, bytes]) -> Section:
    tables = [
        Table(
            f"{target}: float -> folded -> quantized (goal {'met' if fid['goal_met'] else 'not met'})",
            ["stage", "accuracy", "NASFR"],
            [[s["stage"], fmt(s["accuracy"]), fmt(s["nasfr"])] for s in fid["stages"]],
        )
        for target, fid in doc["fidelity"].items()
    ]
    exports = Table(
        "Exports",
        ["target", "format", "file"],
        [[t, name, what] for t, found in doc["exports"].items() for name, what in found.items()],
    )
    return Section("Fold fidelity and exports", [], [*tables, exports], _figures(figures, ["fidelity.png"]))


def _backend_section(doc: dict[str, Any], figures: dict[str, bytes]) -> Section:
    tables, notes = [], []
    for target, sims in doc["backends"].items():
        runs = {b: r for b, r in sims["runs"].items() if r["available"]}
        layers = list(runs[sims["reference"]]["spikes_per_sample"]) if sims["reference"] in runs else []
        rows = [
            [
                backend,
                str(run["samples"]),
                *[fmt(run["spikes_per_sample"].get(layer), 2) for layer in layers],
                "yes" if run["agrees"] else "no",
            ]
            for backend, run in runs.items()
        ]
        tables.append(
            Table(
                f"{target}: spikes per sample per layer; exact agreement with {sims['reference']}",
                ["backend", "samples", *layers, "agrees exactly"],
                rows,
            )
        )
        notes += [f"{target}/{b}: {r['reason']}" for b, r in sims["runs"].items() if not r["available"]]
    names = [f"backends_{t}.png" for t in doc["backends"]]
    return Section("Backend agreement", notes, tables, _figures(figures, names))


def _mapping_section(doc: dict[str, Any]) -> Section:
    tables, notes = [], []
    for target, mapping in doc["mapping"].items():
        rows = mapping["rows"]
        header = list(rows[0]) if rows else ["layer"]
        verdict = "fits" if mapping["ok"] else "does not fit"
        tables.append(
            Table(
                f"{target} chip mapping: {verdict}, {mapping['cores']} cores",
                header,
                [["-" if r[k] is None else str(r[k]) for k in header] for r in rows],
            )
        )
        notes += [f"{target} violation: {v}" for v in mapping["violations"]]
    return Section("Chip mapping", notes, tables)


def _budget_section(doc: dict[str, Any], figures: dict[str, bytes]) -> Section:
    budget = doc["budget"]
    table = Table(
        f"Spike budget {Path(budget['budget']).name}: {'PASS' if budget['ok'] else 'FAIL'}",
        ["scope", "metric", "worst", "mean", "limit", "margin", "verdict"],
        [
            [
                r["scope"],
                r["metric"],
                f"{r['worst']:.4g}",
                f"{r['mean']:.4g}",
                f"{r['limit']:.4g}",
                f"{r['margin']:+.4g}",
                "PASS" if r["ok"] else "FAIL",
            ]
            for r in budget["rows"]
        ],
    )
    notes = [f"{budget['backend']} backend, {budget['chip']} cores, {len(budget['recordings'])} recordings."]
    bursts = budget.get("bursts")
    if bursts:
        notes.append(
            f"Per-core load in sliding {bursts['window_ms']:g} ms windows (event-driven simulation with the "
            f"recordings' timestamps), highest peak: {bursts['worst']['where']}."
        )
    tables = [table]
    if budget.get("fixes"):
        tables.append(
            Table(
                "Checked fixes for the overloaded core (re-simulated on the same recordings)",
                [
                    "fix",
                    "change",
                    "layer peak (synops/s)",
                    "busiest core (synops/s)",
                    "accuracy",
                    "within limit",
                ],
                [
                    [
                        f["kind"],
                        f["change"],
                        f"{f['layer_peak_synops_per_s']:.4g}",
                        f"{f['network_peak_synops_per_s']:.4g}",
                        "-" if f["accuracy"] is None else f"{f['accuracy']:.3f}",
                        "yes" if f["within_limit"] else "no",
                    ]
                    for f in budget["fixes"]
                ],
            )
        )
    names = [name for name in ("budget_rates.png", "core_load.png") if name in figures]
    return Section("Budget verdict", notes, tables, _figures(figures, names))


def _runtime_section(doc: dict[str, Any]) -> Section:
    rows = [[stage, f"{seconds:.1f}"] for stage, seconds in doc["runtime_s"].items()]
    return Section(
        "Runtime",
        [],
        [Table("Wall-clock seconds per step (total: start to report writing)", ["step", "seconds"], rows)],
    )


def _figures(figures: dict[str, bytes], names: list[str]) -> list[Figure]:
    return [Figure(name, name.removesuffix(".png").replace("_", " "), figures[name]) for name in names]


def pipeline_sections(doc: dict[str, Any], figures: dict[str, bytes]) -> list[Section]:
    """The report's sections from the pipeline.json document and the PNG figures (name -> bytes)."""
    return [
        _models_section(doc),
        _fidelity_section(doc, figures),
        _backend_section(doc, figures),
        _mapping_section(doc),
        _budget_section(doc, figures),
        _runtime_section(doc),
        _analysis_section(figures),
    ]


REPORT_TITLE = "asa-snn pipeline report"


def write_report(folder: str | Path, doc: dict[str, Any], figures: dict[str, bytes]) -> dict[str, Path]:
    """Write ``report.html``, ``report.md``, ``pipeline.json`` and ``figures/<name>.png`` into ``folder``.

    The caller makes the folder appear atomically (the pipeline writes into a staging folder).

    Returns:
        {"html", "markdown", "json"}: the paths written.
    """
    folder = Path(folder)
    sections = pipeline_sections(doc, figures)
    (folder / "figures").mkdir(parents=True, exist_ok=True)
    for name, png in figures.items():
        (folder / "figures" / name).write_bytes(png)
    paths = {
        "html": folder / "report.html",
        "markdown": folder / "report.md",
        "json": folder / "pipeline.json",
    }
    paths["html"].write_text(render_html(REPORT_TITLE, sections), encoding="utf-8")
    paths["markdown"].write_text(render_markdown(REPORT_TITLE, sections), encoding="utf-8")
    paths["json"].write_text(json.dumps(doc, indent=2) + "\n")
    return paths


__all__ = [
    "CSS",
    "PNG_SIGNATURE",
    "Figure",
    "Section",
    "Table",
    "fmt",
    "pipeline_sections",
    "png_data_uri",
    "render_html",
    "render_markdown",
    "verdict_class",
    "write_report",
]
