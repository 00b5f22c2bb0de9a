"""report.html opened in headless Chromium: the dumped DOM holds every table with its headers, every
<img> is an embedded PNG that decodes, and a screenshot of the page is not blank.

Skipped where Debian's chromium (/usr/bin/chromium) is not installed.
"""

import base64
import json
import struct
import subprocess
import zlib
from functools import partial
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from asa_snn.train.trainer import train_recipe
from asa_snn.workflows.analyze import analyze_checkpoints
from asa_snn.workflows.demo import Settings, run_pipeline
from asa_snn.workflows.html_report import PNG_SIGNATURE
from tests.conftest import TINY

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian chromium not installed (/usr/bin/chromium): apt-get install chromium",
)


train_tiny = partial(train_recipe, progress=False)
analyze_tiny = partial(analyze_checkpoints, labels=("vanilla", "asa2"), max_samples=4, progress=False)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("html")
    (root / "tiny.toml").write_text(TINY)
    settings = Settings(epochs=1, finetune_epochs=0, n_calib=8, sim_samples=2)
    return run_pipeline(root / "report", train_tiny, analyze_tiny, str(root / "tiny.toml"), settings=settings)


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=90, check=True)


class _Dom(HTMLParser):
    """Collects table headers per table, and img src attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[str]] = []
        self.images: list[str] = []
        self._in_th = False

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "th":
            self._in_th = True
            self.tables[-1].append("")
        elif tag == "img":
            self.images.append(dict(attrs).get("src", ""))

    def handle_endtag(self, tag):
        if tag == "th":
            self._in_th = False

    def handle_data(self, data):
        if self._in_th:
            self.tables[-1][-1] += data


def png_pixels(png: bytes) -> np.ndarray:
    """Decode an 8-bit RGB / RGBA non-interlaced PNG into uint8 [H, W, C] (PNG spec sections 11.2.2, 9)."""
    assert png.startswith(PNG_SIGNATURE)
    offset, chunks = 8, {}
    while offset < len(png):
        (length,) = struct.unpack(">I", png[offset : offset + 4])
        kind = png[offset + 4 : offset + 8]
        chunks.setdefault(kind, []).append(png[offset + 8 : offset + 8 + length])
        offset += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"][0])
    assert depth == 8 and colour in (2, 6) and interlace == 0
    channels = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(chunks[b"IDAT"]))
    stride = width * channels
    rows, previous = [], [0] * stride
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], raw[start + 1 : start + 1 + stride]
        out = [0] * stride
        for i in range(stride):
            left = out[i - channels] if i >= channels else 0
            up = previous[i]
            upper_left = previous[i - channels] if i >= channels else 0
            if kind == 0:
                predictor = 0
            elif kind == 1:
                predictor = left
            elif kind == 2:
                predictor = up
            elif kind == 3:
                predictor = (left + up) // 2
            else:
                p = left + up - upper_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - upper_left)
                predictor = left if pa <= pb and pa <= pc else (up if pb <= pc else upper_left)
            out[i] = (line[i] + predictor) % 256
        rows.append(out)
        previous = out
    return np.asarray(rows, dtype=np.uint8).reshape(height, width, channels)


def test_png_decoder_reads_back_a_matplotlib_png(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(0.3, 0.2), dpi=100, facecolor=(1.0, 0.0, 0.0))
    fig.savefig(tmp_path / "red.png", facecolor=fig.get_facecolor())
    plt.close(fig)
    pixels = png_pixels((tmp_path / "red.png").read_bytes())
    assert pixels.shape[:2] == (20, 30)
    assert (pixels[..., 0] == 255).all() and (pixels[..., 1] == 0).all() and (pixels[..., 2] == 0).all()


def test_chromium_renders_every_table_with_its_headers(report, tmp_path):
    page = report.out_dir / "report.html"
    dom = chromium("--dump-dom", page.as_uri(), profile=tmp_path / "profile").stdout
    parser = _Dom()
    parser.feed(dom)
    document = json.loads((report.out_dir / "pipeline.json").read_text())
    # models, fidelity per target, exports, backends per target, mapping per target, budget, runtime
    expected = 1 + len(document["fidelity"]) + 1 + len(document["backends"]) + len(document["mapping"]) + 2
    assert len(parser.tables) == expected == 10
    headers = [tuple(t) for t in parser.tables]
    assert headers[0][:3] == ("model", "test accuracy", "test NASFR")
    assert ("stage", "accuracy", "NASFR") in headers
    assert sum(h[-1] == "agrees exactly" for h in headers) == 2
    assert ("scope", "metric", "worst", "mean", "limit", "margin", "verdict") in headers
    assert f"{document['models']['vanilla']['test_accuracy']:.4f}" in dom


def test_every_image_is_an_embedded_png_that_decodes(report, tmp_path):
    dom = chromium(
        "--dump-dom", (report.out_dir / "report.html").as_uri(), profile=tmp_path / "profile"
    ).stdout
    parser = _Dom()
    parser.feed(dom)
    figure_files = sorted((report.out_dir / "figures").glob("*.png"))
    assert len(parser.images) == len(figure_files) >= 5
    prefix = "data:image/png;base64,"
    for src in parser.images:
        assert src.startswith(prefix)
        png = base64.b64decode(src[len(prefix) :], validate=True)
        assert png[:8] == PNG_SIGNATURE and png[12:16] == b"IHDR"
        width, height = struct.unpack(">II", png[16:24])
        assert width > 50 and height > 50
    embedded = {base64.b64decode(src[len(prefix) :]) for src in parser.images}
    assert embedded == {path.read_bytes() for path in figure_files}


def test_screenshot_of_the_page_is_not_blank(report, tmp_path):
    shot = tmp_path / "page.png"
    chromium(
        f"--screenshot={shot}",
        "--window-size=600,400",
        (report.out_dir / "report.html").as_uri(),
        profile=tmp_path / "profile",
    )
    pixels = png_pixels(shot.read_bytes())
    assert pixels.shape[:2] == (400, 600)
    grey = pixels[..., :3].astype(float).mean(axis=2)
    assert grey.std() > 10, "screenshot is (nearly) uniform: the page did not render"
    assert (grey < 100).mean() > 0.002, "no dark (text) pixels in the screenshot"
