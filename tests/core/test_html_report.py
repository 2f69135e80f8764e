"""The HTML report: one self-contained, escaped, deterministic page per compression run."""

from __future__ import annotations

import copy
import json
import re
from html.parser import HTMLParser
from typing import Any

import pytest
import torch

from weightless_core.config.settings import CompressionSettings
from weightless_core.errors import InvalidInputError
from weightless_core.io.data import load_dataset
from weightless_core.method.pipeline import compress
from weightless_core.method.training import train_epochs
from weightless_core.models.lenet import build_model
from weightless_core.reports.html_report import render_html, write_html
from weightless_core.reports.report import Report

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
HOSTILE = "<script>alert(1)</script>"


class Page(HTMLParser):
    """Checks that every element opened is closed in order; collects table rows and SVGs."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.doctype = ""
        self.svgs: list[dict[str, str | None]] = []
        self.titles_in_svg = 0
        self.rows: list[list[str]] = []
        self.text: list[str] = []
        self.feed(text)
        self.close()

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "svg":
            self.svgs.append(dict(attrs))
        if tag == "title" and "svg" in self.stack:
            self.titles_in_svg += 1
        if tag == "tr":
            self.rows.append([])
        if tag in ("td", "th") and self.rows:
            self.rows[-1].append("")
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self.rows and self.stack and self.stack[-1] in ("td", "th"):
            self.rows[-1][-1] += data

    def row(self, first_cell: str) -> list[str]:
        return next(r for r in self.rows if r and r[0] == first_cell)


@pytest.fixture(scope="module")
def typed() -> Report:
    data = load_dataset("digits")
    torch.manual_seed(0)
    model = build_model("lenet-300-100", input_shape=(1, 8, 8), num_classes=10)
    train_epochs(
        model, {}, data, epochs=3, lr=1e-3, batch_size=64,
        generator=torch.Generator().manual_seed(0), device=torch.device("cpu"),
    )  # fmt: skip
    settings = CompressionSettings(
        sparsity=0.8, t=9, prune_steps=1, prune_epochs=1, cluster_epochs=1, retrain_epochs=1
    )
    return compress(model, data, settings).report


@pytest.fixture(scope="module")
def report(typed) -> dict[str, Any]:
    return typed.to_dict()


@pytest.fixture(scope="module")
def page(report) -> str:
    return render_html(report)


def _assert_well_formed(text: str) -> Page:
    parsed = Page(text)
    assert parsed.doctype.lower() == "doctype html"
    assert parsed.errors == []
    assert parsed.stack == [], f"never closed: {parsed.stack}"
    return parsed


def test_page_is_well_formed_and_lists_every_encoded_layer(report, page):
    parsed = _assert_well_formed(page)
    encoded = [row for row in report["layers"] if row["encoded"]]
    assert len(encoded) == 3
    dc_bytes = {row["name"]: row["paper_bytes"] for row in report["baseline"]["layers"]}
    for layer in encoded:
        cells = parsed.row(layer["name"])
        assert f"{layer['false_positives']:,}" in cells
        assert f"{layer['paper_bytes']:,}" in cells and f"{dc_bytes[layer['name']]:,}" in cells
    assert "plain" in parsed.row("fc1.bias")
    text = "".join(parsed.text)
    assert f"{report['accuracy']['final']:.2f}%" in text
    assert f"{report['weights_paper_ratio']:,.1f}" in text  # as the papers count
    assert f"{report['baseline']['weights_paper_ratio']:,.1f}" in text  # Deep Compression
    assert "Against the strongest baselines, on the same weights" in text
    for stage in report["seconds"]:
        assert parsed.row(stage)  # time per stage


def test_two_accessible_svg_charts(page):
    parsed = Page(page)
    assert len(parsed.svgs) == 2
    labels = [svg.get("aria-label") or "" for svg in parsed.svgs]
    assert all(svg.get("role") == "img" and svg.get("viewbox") for svg in parsed.svgs)
    assert labels[0].startswith("Bytes per encoded layer") and "fc2.weight" in labels[0]
    assert labels[1].startswith("Validation accuracy") and "clustered" in labels[1]
    assert parsed.titles_in_svg >= 3 * 3 + 7  # a hover title per bar and per point
    assert 'class="bar dc"' in page and 'class="bar orig"' in page  # hatched vs outlined


def test_page_is_self_contained(page):
    low = page.lower()
    for needle in ("http://", "https://", "src=", "<link", "<script", "@import", "//cdn"):
        assert needle not in low, needle
    assert set(re.findall(r"url\(([^)]*)\)", page)) == {"#wl-hatch"}


def test_same_report_same_page(report, page):
    assert render_html(report) == page
    assert render_html(json.loads(json.dumps(report))) == page  # e.g. a stored job report


def test_strings_from_the_report_are_escaped(report):
    hostile = copy.deepcopy(report)
    for rep in (hostile, hostile["baseline"]):
        for row in rep["layers"]:
            if row["name"] == "fc1.weight":
                row["name"] = HOSTILE
    hostile["accuracy"] = {
        (f"after:{HOSTILE}" if k == "after:fc1.weight" else k): v
        for k, v in hostile["accuracy"].items()
    }
    hostile["device"] = '"><img src=x onerror=alert(1)>'
    hostile["notes"] = [f"samples were flattened {HOSTILE}", 7]  # a non-string is skipped
    hostile["settings"] = {**hostile["settings"], "structure": "</style><script>"}
    text = render_html(hostile, title=HOSTILE)
    assert "<script" not in text.lower() and "<img" not in text.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    parsed = _assert_well_formed(text)
    assert parsed.row(HOSTILE)  # the name reads back as text, in its own row
    assert text.count('<p class="note">Note: samples were flattened &lt;script&gt;') == 1


def test_minimal_old_report_renders(report):
    rows = [
        {k: v for k, v in row.items() if k not in ("paper_bytes", "ratio", "structure")}
        for row in report["layers"]
    ]
    old = {
        "layers": rows,
        "accuracy": {"dense": 97.0, "final": 96.5},
        "original_bytes": 202440,
        "file_bytes": 16840,
    }
    parsed = _assert_well_formed(render_html(old))
    text = "".join(parsed.text)
    assert "12.0\N{MULTIPLICATION SIGN}" in text  # whole-file ratio worked out from the two sizes
    assert "Against the strongest baselines, on the same weights" not in text
    assert len(parsed.svgs) == 2
    assert parsed.row("fc2.weight")[1:4] == ["100\N{MULTIPLICATION SIGN}300", "20.00", "4"]


def test_deep_compression_run_renders(report):
    dc = report["baseline"]  # what `--method deep-compression` reports: no baseline of its own
    parsed = _assert_well_formed(render_html(dc))
    assert len(parsed.svgs) == 2
    assert "Against the strongest baselines, on the same weights" not in "".join(parsed.text)
    assert 'class="bar wl"' not in render_html(dc)  # its bars are the hatched DC ones


@pytest.mark.parametrize(
    "junk",
    [
        {},
        {"layers": [], "accuracy": {}, "original_bytes": 0, "file_bytes": 0},
        {"layers": "nope", "accuracy": None, "original_bytes": "x", "settings": [1, 2]},
        {"layers": [None, {"name": None, "shape": 3, "encoded": True, "bytes": -1}]},
        {"baseline": {"layers": [{"name": "a"}]}, "seconds": {"x": "slow"}, "method": 7},
        {"accuracy": {"dense": 1e308, "final": -5.0}, "layers": [{"bytes": 1e308, "kept": 0.5}]},
    ],
)
def test_junk_fields_show_dashes(junk):
    text = "".join(_assert_well_formed(render_html(junk)).text)
    assert "Summary" in text and "Layers" in text


def test_not_a_dict_is_refused():
    with pytest.raises(InvalidInputError, match="report must be a dict"):
        render_html([])  # type: ignore[arg-type]


def test_a_report_and_its_stored_json_give_the_same_page(typed, tmp_path):
    stored = json.loads(json.dumps(typed.to_dict()))
    assert render_html(typed, title="t") == render_html(stored, title="t")
    write_html(tmp_path / "r.html", typed)
    assert (tmp_path / "r.html").read_text(encoding="utf-8") == render_html(stored)


def test_write_html_leaves_only_the_page(report, tmp_path):
    path = tmp_path / "report.html"
    write_html(path, report, title="run 7")
    assert path.read_text(encoding="utf-8") == render_html(report, title="run 7")
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_a_zero_byte_baseline_is_not_compared():
    page = render_html({"weights_paper_bytes": 100, "baseline": {"weights_paper_bytes": 0}})
    assert "cannot be compared" in page


def test_the_context_coder_is_compared_where_it_beats_deep_compression():
    base = {"weights_paper_bytes": 1200, "weights_context_bytes": 1000, "weights_bound_bytes": 1100}
    page = render_html({"weights_paper_bytes": 900, "weights_original_bytes": 90_000,
                        "kept_weights": 800, "baseline": base})  # fmt: skip
    assert "<th>context coder</th>" in page and "<td>1,000</td>" in page
    assert "This run is <b>1.11\u00d7</b> smaller than the context coder." in page
    assert "This run is <b>1.33\u00d7</b> smaller than Deep Compression." in page
    # no context coder smaller than Deep Compression: no verdict against it, a dash in its column
    base = {"weights_paper_bytes": 1200, "weights_bound_bytes": 1100}
    page = render_html({"weights_paper_bytes": 900, "baseline": base})
    assert "context coder." not in page


def test_the_strongest_coder_takes_each_layer_the_smaller_way():
    from weightless_core.reports.report import LayerReport, Report

    def row(name: str, paper: int, context: int | None) -> LayerReport:
        return LayerReport(name=name, shape=(10, 10), encoded=True, original_bytes=400,
                           bytes=paper + 30, kept=0.1, r=2, paper_bytes=paper,
                           context_bytes=context)  # fmt: skip

    plain = LayerReport(name="emb", shape=(4, 4), encoded=False, original_bytes=64, bytes=80,
                        kept=1.0)  # fmt: skip
    rep = Report(layers=[row("a", 50, 40), row("b", 30, 45), plain], accuracy={},
                 original_bytes=864, file_bytes=300)  # fmt: skip
    assert rep.weights_context_bytes == 40 + 30 + 80
    assert rep.to_dict()["weights_context_ratio"] == round(864 / 150, 3)
    none = Report(layers=[row("a", 50, None)], accuracy={}, original_bytes=400, file_bytes=90)
    assert none.weights_context_bytes is None and none.weights_context_ratio is None
