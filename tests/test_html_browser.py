"""The HTML reports in a real headless browser: the page loads with no network and every chart has
drawn its data.

Chromium (Debian package ``chromium``) loads the page from a file with all network access routed to a
dead proxy and every host name unresolvable, runs it under a virtual-time budget, and dumps the DOM
after scripts ran. plotly.js marks a drawn graph div with the class ``js-plotly-plot`` and draws one
``g.trace`` per visible trace, one ``path.point`` per marker (scatter markers and box-plot sample
points) and one ``path.box`` per box; those counts are compared with the figures the page was built
from. Without Chromium the test is skipped, never passed.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import plotly.graph_objects as go
import pytest
from results_factory import find, scale_samples, standard_run, write_results

from bench.commands import compare as compare_cmd
from bench.commands import report as report_cmd
from bench.record.results import load_results
from bench.render import charts, html_report
from bench.render.charts import plots

pytestmark = pytest.mark.browser


def _chromium() -> str | None:
    candidate = os.environ.get("ARCHBENCH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    return candidate if Path(candidate).is_file() and os.access(candidate, os.X_OK) else None


CHROMIUM = _chromium()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium not installed (apt-get update && apt-get install -y chromium); the HTML report "
    "is not verified in a browser",
)


@dataclass
class Drawn:
    """What plotly drew inside one chart div."""

    classes: set[str]
    traces: int = 0
    points: int = 0
    boxes: int = 0
    svgs: int = 0


_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _ChartDom(HTMLParser):
    """Counts plotly's drawn elements per ``chart-N`` div of a dumped DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, str | None]] = []
        self.charts: dict[str, Drawn] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        chart = self._element(tag, attrs)
        if tag not in _VOID:
            self.stack.append((tag, chart))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._element(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                return

    @property
    def _chart(self) -> str | None:
        return self.stack[-1][1] if self.stack else None

    def _element(self, tag: str, attrs: list[tuple[str, str | None]]) -> str | None:
        """Count the element; return the chart it belongs to (its own id for a chart div)."""
        a = dict(attrs)
        classes = set((a.get("class") or "").split())
        chart = self._chart
        element_id = a.get("id") or ""
        if tag == "div" and element_id.startswith("chart-"):
            chart = element_id
            self.charts[chart] = Drawn(classes)
        if chart is None:
            return None
        drawn = self.charts[chart]
        drawn.traces += "trace" in classes
        drawn.points += tag == "path" and "point" in classes
        drawn.boxes += tag == "path" and "box" in classes
        drawn.svgs += tag == "svg" and "main-svg" in classes
        return chart

    def feed_dom(self, dom: str) -> dict[str, Drawn]:
        self.feed(dom)
        self.close()
        return self.charts


def _run_chromium(page: Path, tmp_path: Path, *args: str, window: tuple[int, int] = (1400, 1000)) -> subprocess.CompletedProcess:
    assert CHROMIUM is not None
    profile = tmp_path / "chromium-profile"
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-extensions",
        "--disable-default-apps", f"--user-data-dir={profile}",
        # no network: every request goes to a dead proxy, and no host name resolves
        "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--enable-logging=stderr", "--v=0", f"--window-size={window[0]},{window[1]}",
        "--virtual-time-budget=15000", *args, page.resolve().as_uri(),
    ]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300, env={**os.environ, "HOME": str(tmp_path)})
    assert proc.returncode == 0, f"chromium exited {proc.returncode}: {proc.stderr[-2000:]}"
    return proc


def _dump_dom(page: Path, tmp_path: Path, window: tuple[int, int] = (1400, 1000)) -> tuple[str, str]:
    proc = _run_chromium(page, tmp_path, "--dump-dom", window=window)
    return proc.stdout, proc.stderr


def _expected(fig: go.Figure) -> Drawn:
    """What plotly should draw for ``fig``: visible traces, markers (scatter points and box
    samples) and boxes (one per category of each box trace)."""
    want = Drawn(set())
    for trace in fig.data:
        if trace.visible is False:
            continue
        want.traces += 1
        if trace.type == "scatter" and "markers" in (trace.mode or ""):
            want.points += sum(1 for x, y in zip(trace.x, trace.y) if x is not None and y is not None)
        elif trace.type == "box":
            want.boxes += len(set(trace.x)) if trace.x is not None else 1
            if trace.boxpoints == "all":
                want.points += len(trace.y)
    return want


def _check_page(page: Path, figures: Sequence[go.Figure], tmp_path: Path) -> None:
    html = page.read_text()
    assert html.count("plotly.js v") == 1, "plotly.js is embedded exactly once"
    assert "<script src=" not in html.replace(" ", "") and 'src="http' not in html
    dom, log = _dump_dom(page, tmp_path)
    assert "Uncaught" not in log, log[-3000:]
    drawn = _ChartDom().feed_dom(dom)
    assert sorted(drawn, key=lambda k: int(k.split("-")[1])) == [f"chart-{i}" for i in range(len(figures))]
    for i, fig in enumerate(figures):
        got, want = drawn[f"chart-{i}"], _expected(fig)
        title = fig.layout.title.text
        assert "js-plotly-plot" in got.classes, f"chart-{i} ({title}) was not drawn"
        assert got.svgs >= 1, f"chart-{i} ({title}) has no SVG"
        assert want.traces > 0 and want.points > 0
        assert (got.traces, got.points, got.boxes) == (want.traces, want.points, want.boxes), (
            f"chart-{i} ({title}): drawn traces/points/boxes {(got.traces, got.points, got.boxes)}, "
            f"expected {(want.traces, want.points, want.boxes)}"
        )


@pytest.fixture
def runs(tmp_path: Path) -> tuple[Path, Path]:
    head = standard_run(1)
    scale_samples(find(head, "dogbreed_cnn"), 1.25)
    return write_results(tmp_path / "base.json", standard_run()), write_results(tmp_path / "head.json", head)


@needs_chromium
def test_compare_page_draws_every_chart_offline(runs: tuple[Path, Path], tmp_path: Path) -> None:
    page = tmp_path / "compare.html"
    code = compare_cmd.run(*runs, output=compare_cmd.OutputOptions(html=page))
    assert code == 1
    base, head = (load_results(p) for p in runs)
    figures = charts.figures(charts.run_charts([("base", base), ("head", head)]))
    assert len(figures) == 1 + 2 * 4  # accuracy; per report: epoch, step and accuracy boxes, curves
    _check_page(page, figures, tmp_path)


@needs_chromium
def test_report_page_draws_every_chart_offline(runs: tuple[Path, Path], tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    assert report_cmd.run(report_cmd.ReportOptions(runs[0], page, cost="memory")) == 0
    results = load_results(runs[0])
    figures = charts.figures(html_report.report_blocks(results, cost="memory"))
    _check_page(page, figures, tmp_path)
    assert "numbers beside the measured" in page.read_text()


def test_chart_dom_parser_counts_per_chart() -> None:
    """The DOM counting itself, on a hand-written dump (runs without Chromium)."""
    dom = (
        '<div id="chart-0" class="plotly-graph-div js-plotly-plot"><svg class="main-svg">'
        '<g class="trace scatter"><path class="point"></path><path class="point"></path></g>'
        '<g class="traces"><path class="scatterpts"></path></g></svg></div>'
        '<p>between <br> charts</p>'
        '<div id="chart-1" class="plotly-graph-div"><svg class="main-svg"><g class="trace boxes">'
        '<path class="box"></path><path class="point"></path></g></svg></div>'
    )
    drawn = _ChartDom().feed_dom(dom)
    assert (drawn["chart-0"].traces, drawn["chart-0"].points, drawn["chart-0"].boxes) == (1, 2, 0)
    assert "js-plotly-plot" in drawn["chart-0"].classes and "js-plotly-plot" not in drawn["chart-1"].classes
    assert (drawn["chart-1"].traces, drawn["chart-1"].points, drawn["chart-1"].boxes) == (1, 1, 1)


# -- as a reader sees it: 1280 px wide, labels apart, screenshots ---------------------------------------

READER_WIDTH = 1280
RESULTS = Path(__file__).resolve().parent.parent / "results"

#: Appended to a copy of a page: once plotly has drawn (and resized to the window), write what a reader
#: would notice into the DOM: how wide the document is, and where each chart's annotations (the point
#: labels, panel titles, arrows) ended up on screen; then, for the accuracy chart, the same after a
#: click on each cost button, with the x-axis titles that click left.
_MEASURE = """<script>
const wait = ms => new Promise(done => setTimeout(done, ms));
const texts = div => [...div.querySelectorAll('g.annotation')].map(g => {
  const t = g.querySelector('text.annotation-text');
  const r = (t || g).getBoundingClientRect();
  return {text: t ? t.textContent : '', left: r.left, right: r.right, top: r.top, bottom: r.bottom};
});
window.addEventListener('load', async () => {
  await wait(2000);
  const out = {scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth, charts: {}, costs: []};
  for (const div of document.querySelectorAll('div.js-plotly-plot')) {
    const box = div.getBoundingClientRect();
    out.charts[div.id] = {left: box.left, right: box.right, top: box.top + window.scrollY,
                          bottom: box.bottom + window.scrollY, texts: texts(div)};
  }
  const first = document.getElementById('chart-0');
  const buttons = first ? first.querySelectorAll('g.updatemenu-button') : [];
  for (let i = 0; i < buttons.length; i++) {
    first.querySelectorAll('g.updatemenu-button')[i].dispatchEvent(new MouseEvent('click', {bubbles: true}));
    await wait(500);
    out.costs.push({button: buttons[i].textContent, texts: texts(first),
                    xtitles: [...first.querySelectorAll('text[class^="x"][class$="title"]')].map(t => t.textContent),
                    scrollWidth: document.documentElement.scrollWidth});
  }
  const pre = document.createElement('pre');
  pre.id = 'measured'; pre.style.display = 'none'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def _measure(page: Path, tmp_path: Path) -> dict:
    measured = tmp_path / f"measured-{page.name}"
    measured.write_text(page.read_text().replace("</body>", _MEASURE + "</body>"))
    dom, log = _dump_dom(measured, tmp_path, window=(READER_WIDTH, 2000))
    assert "Uncaught" not in log, log[-3000:]
    found = re.search(r'<pre id="measured"[^>]*>(.*?)</pre>', dom, re.DOTALL)
    assert found, "the measuring script did not run"
    return json.loads(html.unescape(found.group(1)))


def _overlapping(texts: list[dict]) -> list[tuple[str, str]]:
    """Pairs of drawn annotation texts whose boxes overlap (a pixel of antialiasing allowed)."""
    shown = [t for t in texts if t["text"].strip()]
    pairs = []
    for i, a in enumerate(shown):
        for b in shown[:i]:
            if min(a["right"], b["right"]) - max(a["left"], b["left"]) > 1 and min(a["bottom"], b["bottom"]) - max(a["top"], b["top"]) > 1:
                pairs.append((a["text"], b["text"]))
    return pairs


def _check_readable(measured: dict, accuracy_chart: str = "chart-0") -> None:
    assert measured["innerWidth"] == READER_WIDTH
    assert measured["scrollWidth"] <= READER_WIDTH, f"the page scrolls sideways: {measured['scrollWidth']} px wide"
    chart = measured["charts"][accuracy_chart]
    assert chart["right"] <= READER_WIDTH
    labels = [t for t in chart["texts"] if t["text"].strip()]
    assert len(labels) >= 8, "point labels and panel titles are drawn"
    assert _overlapping(chart["texts"]) == []
    outside = [t["text"] for t in labels if t["left"] < chart["left"] - 1 or t["right"] > chart["right"] + 1]
    assert outside == [], "labels cut off at the chart's edge"
    # every cost, as a reader clicking through the buttons sees it
    assert [c["button"] for c in measured["costs"]] == [charts.COSTS[k].label for k in ("macs", "params", "step_time", "memory")]
    for cost in measured["costs"]:
        assert cost["scrollWidth"] <= READER_WIDTH
        assert _overlapping(cost["texts"]) == [], cost["button"]
        assert len(cost["xtitles"]) == 4 and all(t.startswith(cost["button"] + " (") for t in cost["xtitles"]), cost


@pytest.fixture
def committed() -> tuple[Path, Path]:
    """The committed CPU smoke runs: 32 cases in four reports, the crowding a reader meets."""
    return RESULTS / "cpu-smoke-baseline.json", RESULTS / "cpu-smoke-rerun.json"


@needs_chromium
def test_report_page_reads_at_1280_px(committed: tuple[Path, Path], tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    assert report_cmd.run(report_cmd.ReportOptions(committed[0], page)) == 0
    _check_readable(_measure(page, tmp_path))


@needs_chromium
def test_compare_page_reads_at_1280_px(committed: tuple[Path, Path], tmp_path: Path) -> None:
    page = tmp_path / "compare.html"
    compare_cmd.run(*committed, output=compare_cmd.OutputOptions(html=page, cost="step_time"))
    # step time: every case moved a little between the runs, so there are arrows among the labels
    _check_readable(_measure(page, tmp_path))


def _screenshot(page: Path, tmp_path: Path, height: int) -> Path:
    png = tmp_path / f"{page.stem}.png"
    _run_chromium(page, tmp_path, "--hide-scrollbars", f"--screenshot={png}", window=(READER_WIDTH, height))
    keep = os.environ.get("ARCHBENCH_SCREENSHOTS")
    if keep:  # for a person to look at
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(png, Path(keep) / png.name)
    return png


def _rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def _colour_counts(
    png: Path, colors: dict[str, str], rows: tuple[int, int], tolerance: int = 12
) -> tuple[dict[str, tuple[int, int]], float, tuple[int, int]]:
    """Per report, pixels within ``tolerance`` of its colour between ``rows`` (top, bottom), on the left
    and on the right half of the window; the fraction of those pixels that are not white; and the image size."""
    image = pytest.importorskip("PIL.Image").open(png).convert("RGB")
    width, height = image.size
    top, bottom = rows
    halves = [image.crop((0, top, width // 2, bottom)), image.crop((width // 2, top, width, bottom))]
    histograms = [half.getcolors(maxcolors=1 << 24) or [] for half in halves]

    def near(px: tuple[int, int, int], color: str) -> bool:
        return all(abs(a - b) <= tolerance for a, b in zip(px, _rgb(color)))

    counts = {s: (sum(n for n, px in histograms[0] if near(px, c)), sum(n for n, px in histograms[1] if near(px, c)))
              for s, c in colors.items()}
    white = sum(n for hist in histograms for n, px in hist if px == (255, 255, 255))
    return counts, 1 - white / (width * (bottom - top)), (width, height)


#: Enough pixels of a colour to be a drawn mark (a marker of 10 px is ~80), not a stray antialiased edge.
_MARK_PIXELS = 60


def _check_accuracy_screenshot(page: Path, tmp_path: Path, runs: Sequence[charts.Run]) -> None:
    """Screenshot the page down to the end of the accuracy chart, and check that chart as drawn: not
    blank, two panels to a row, every report in its colour (000 and 002 left, 001 and 003 right)."""
    chart = _measure(page, tmp_path)["charts"]["chart-0"]
    top, bottom = math.floor(chart["top"]), math.ceil(chart["bottom"])
    height = bottom + 20
    png = _screenshot(page, tmp_path, height)
    colors = charts.report_colors(runs)
    assert len(colors) == 4
    counts, ink, size = _colour_counts(png, colors, (top, bottom))
    assert size == (READER_WIDTH, height)
    assert ink > 0.3, "the chart is (nearly) blank"  # panels have a tinted background
    left, right = ("resnet50_dcn", "dynconv"), ("dogbreed", "flowers")
    assert all(counts[s][0] >= _MARK_PIXELS for s in left), counts
    assert all(counts[s][1] >= _MARK_PIXELS for s in right), counts


@needs_chromium
def test_report_screenshot_shows_every_report_in_its_colour(committed: tuple[Path, Path], tmp_path: Path) -> None:
    page = tmp_path / "report-1280.html"
    assert report_cmd.run(report_cmd.ReportOptions(committed[0], page)) == 0
    _check_accuracy_screenshot(page, tmp_path, [("run", load_results(committed[0]))])


@needs_chromium
def test_compare_screenshot_draws_base_and_head(committed: tuple[Path, Path], tmp_path: Path) -> None:
    page = tmp_path / "compare-1280.html"
    compare_cmd.run(*committed, output=compare_cmd.OutputOptions(html=page, cost="step_time"))
    _check_accuracy_screenshot(page, tmp_path, [("base", load_results(committed[0])), ("head", load_results(committed[1]))])


# -- time and MACs per module (--bench-modules): drawn, labelled, no sideways scroll ----------------------

#: Like _MEASURE, for bar charts: per chart its title, the bar traces drawn and every segment label
#: plotly drew (a label that does not fit is not drawn: the legend names it).
_MEASURE_BARS = """<script>
window.addEventListener('load', async () => {
  await new Promise(done => setTimeout(done, 2000));
  const out = {scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth, charts: {}};
  for (const div of document.querySelectorAll('div.js-plotly-plot')) {
    const box = div.getBoundingClientRect();
    const title = div.querySelector('text.gtitle');
    out.charts[div.id] = {
      title: title ? title.textContent : '', left: box.left, right: box.right,
      top: box.top + window.scrollY, bottom: box.bottom + window.scrollY,
      bars: div.querySelectorAll('g.trace.bars').length,
      legend: [...div.querySelectorAll('g.legend text.legendtext')].map(t => t.textContent),
      texts: [...div.querySelectorAll('text.bartext')].map(t => {
        const r = t.getBoundingClientRect();
        return {text: t.textContent, left: r.left, right: r.right, top: r.top, bottom: r.bottom,
                bold: /font-weight:\\s*bold/.test(t.innerHTML)};
      }).filter(t => t.right - t.left > 0),
    };
  }
  const pre = document.createElement('pre');
  pre.id = 'measured'; pre.style.display = 'none'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


@pytest.fixture
def module_runs(tmp_path: Path) -> tuple[Path, Path]:
    """Base and head with a breakdown of the deformable-stem ResNet-18; head's conv1.1 is 40 % slower."""
    from results_factory import slow_module, step_record, with_modules

    paths = []
    for label, seed in (("base", 0), ("head", 1)):
        records = standard_run(seed)
        record = with_modules(step_record(MODULE_CASE, "flowers", forward_s=0.06, noise_seed=seed), noise_seed=seed)
        if label == "head":
            slow_module(record, "conv1.1", 1.4, "backward")
        paths.append(write_results(tmp_path / f"{label}.json", [*records, record]))
    return paths[0], paths[1]


MODULE_CASE = "flowers_resnet18_deform_after_conv1"


@needs_chromium
def test_module_chart_draws_and_reads_at_1280_px(module_runs: tuple[Path, Path], tmp_path: Path) -> None:
    page = tmp_path / "compare-modules.html"
    assert compare_cmd.run(*module_runs, output=compare_cmd.OutputOptions(html=page)) == 1
    measured_page = tmp_path / "measured-modules.html"
    measured_page.write_text(page.read_text().replace("</body>", _MEASURE_BARS + "</body>"))
    dom, log = _dump_dom(measured_page, tmp_path, window=(READER_WIDTH, 2000))
    assert "Uncaught" not in log, log[-3000:]
    found = re.search(r'<pre id="measured"[^>]*>(.*?)</pre>', dom, re.DOTALL)
    assert found, "the measuring script did not run"
    measured = json.loads(html.unescape(found.group(1)))
    assert measured["innerWidth"] == READER_WIDTH
    assert measured["scrollWidth"] <= READER_WIDTH, f"the page scrolls sideways: {measured['scrollWidth']} px wide"
    chart = measured["charts"]["chart-0"]  # the section comes before the run's charts
    assert MODULE_CASE in chart["title"] and "per module" in chart["title"]
    base, head = (load_results(p) for p in module_runs)
    fig = charts.module_breakdown([("base", base), ("head", head)], MODULE_CASE)
    assert fig is not None
    assert chart["bars"] == len(fig.data), "every module's bars were drawn"
    assert chart["right"] <= READER_WIDTH
    # the legend names every module, in model order; the segments that fit carry their names
    assert chart["legend"] == [re.sub("</?b>", "", t.name) for t in fig.data if t.showlegend]
    texts = chart["texts"]
    assert sum(t["text"] == "conv1.1" for t in texts) == 6, "conv1.1 is named on each of its six segments"
    assert all(t["bold"] for t in texts if t["text"] == "conv1.1")
    assert len(texts) >= 30
    assert _overlapping(texts) == [], "segment labels overlap"
    assert all(chart["left"] - 1 <= t["left"] and t["right"] <= chart["right"] + 1 for t in texts)
    # as a reader sees it: the deformable module's dark blue is there, on both bars of every panel
    top, bottom = math.floor(chart["top"]), math.ceil(chart["bottom"])
    png = _screenshot(page, tmp_path, bottom + 20)
    counts, ink, _ = _colour_counts(png, {"deform": plots._EMPHASIS_COLORS[0]}, (top, bottom), tolerance=30)
    assert ink > 0.2, "the chart is (nearly) blank"
    assert counts["deform"][0] > 20 * _MARK_PIXELS, counts
