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

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import plotly.graph_objects as go
import pytest
from results_factory import find, scale_samples, standard_run, write_results

from bench import charts, compare, report
from bench.results import load_results

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


def _dump_dom(page: Path, tmp_path: Path) -> tuple[str, str]:
    assert CHROMIUM is not None
    profile = tmp_path / "chromium-profile"
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-extensions",
        "--disable-default-apps", f"--user-data-dir={profile}",
        # no network: every request goes to a dead proxy, and no host name resolves
        "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--enable-logging=stderr", "--v=0", "--window-size=1400,1000",
        "--virtual-time-budget=15000", "--dump-dom", page.resolve().as_uri(),
    ]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300, env={**os.environ, "HOME": str(tmp_path)})
    assert proc.returncode == 0, f"chromium exited {proc.returncode}: {proc.stderr[-2000:]}"
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
    code = compare.run(*runs, output=compare.OutputOptions(html=page))
    assert code == 1
    base, head = (load_results(p) for p in runs)
    figures = charts.figures(charts.run_charts([("base", base), ("head", head)]))
    assert len(figures) == 7
    _check_page(page, figures, tmp_path)


@needs_chromium
def test_report_page_draws_every_chart_offline(runs: tuple[Path, Path], tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    assert report.run(report.ReportOptions(runs[0], page, cost="memory")) == 0
    results = load_results(runs[0])
    figures = charts.figures(report.report_blocks(results, cost="memory"))
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
