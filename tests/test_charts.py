"""Charts (bench.charts) and `bench report` (bench.report): figures built from records, one page."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from results_factory import failed_record, find, standard_run, step_record, train_record, write_results
from rich.console import Console

from bench import charts, report
from bench.results import Results, load_results


@pytest.fixture
def run_file(tmp_path: Path) -> Path:
    return write_results(tmp_path / "run.json", standard_run())


@pytest.fixture
def results(run_file: Path) -> Results:
    return load_results(run_file)


# -- Pareto front -----------------------------------------------------------------------------------


def test_pareto_front_keeps_only_undominated_points() -> None:
    points = [(1.0, 50.0), (2.0, 60.0), (3.0, 55.0), (4.0, 70.0), (2.5, 60.0), (0.5, 40.0)]
    assert charts.pareto_front(points) == [5, 0, 1, 3]


def test_pareto_front_ties() -> None:
    assert charts.pareto_front([(1.0, 50.0), (1.0, 60.0), (1.0, 60.0)]) == [1]
    assert charts.pareto_front([]) == []


# -- accuracy against cost --------------------------------------------------------------------------


def test_accuracy_vs_cost_has_every_cost_and_shows_one(results: Results) -> None:
    fig = charts.accuracy_vs_cost([("run", results)], cost="params")
    assert fig is not None
    # per cost: the points and the front
    assert len(fig.data) == 2 * len(charts.COSTS)
    visible = [t for t in fig.data if t.visible]
    assert [t.name for t in visible] == ["run", "run Pareto front"]
    points = visible[0]
    assert len(points.x) == 5 and points.x[0] == pytest.approx(0.585383)  # params in M
    assert points.y[0] == pytest.approx(59.0)  # accuracy in %
    buttons = fig.layout.updatemenus[0].buttons
    assert [b.label for b in buttons] == [c.label for c in charts.COSTS.values()]
    assert fig.layout.xaxis.title.text == "params (M)"


def test_pareto_front_trace_is_the_undominated_cases(results: Results) -> None:
    fig = charts.accuracy_vs_cost([("run", results)], cost="macs")
    front = next(t for t in fig.data if t.visible and "Pareto" in t.name)  # type: ignore[union-attr]
    # dsc: cheapest; cnn: more accurate; r50 0000 and 0001 climb further; deformable is dominated by cnn.
    assert list(front.text) == ["dogbreed_dsc", "dogbreed_cnn", "resnet50_dcn_0000", "resnet50_dcn_0001"]


def test_accuracy_vs_cost_two_runs_and_no_data(tmp_path: Path, results: Results) -> None:
    fig = charts.accuracy_vs_cost([("base", results), ("head", results)])
    assert fig is not None and sum(1 for t in fig.data if t.visible) == 4
    only_steps = load_results(write_results(tmp_path / "s.json", [step_record("dogbreed_cnn")]))
    assert charts.accuracy_vs_cost([("x", only_steps)]) is None
    with pytest.raises(KeyError):
        charts.accuracy_vs_cost([("x", results)], cost="bogus")


def test_costs_step_time_and_memory(results: Results) -> None:
    case = charts.cases_of(results)["dogbreed_cnn"]
    step = find(standard_run(), "dogbreed_cnn")
    expected = step.time_forward_s + step.time_backward_s + step.time_optimizer_s  # type: ignore[operator]
    assert charts.COSTS["step_time"].value(case) == pytest.approx(expected)
    assert charts.COSTS["memory"].value(case) == step.mem_backward_bytes
    assert charts.COSTS["step_time"].unit == "ms" and charts.COSTS["memory"].unit == "MiB"


# -- boxplots and curves ----------------------------------------------------------------------------


def test_time_boxplots_per_report_with_accuracy_line(results: Results) -> None:
    fig = charts.time_boxplots([("run", results)], "resnet50_dcn", "epoch")
    assert fig is not None
    boxes = [t for t in fig.data if t.type == "box"]
    lines = [t for t in fig.data if t.type == "scatter"]
    assert len(boxes) == 1 and len(boxes[0].y) == 2 * 3  # two cases × three epochs
    assert set(boxes[0].x) == {"resnet50_dcn_0000", "resnet50_dcn_0001"}
    assert len(lines) == 1 and lines[0].yaxis == "y2" and list(lines[0].y) == pytest.approx([85.0, 86.0])
    assert "report 000" in fig.layout.title.text or "resnet50_dcn" in fig.layout.title.text


def test_step_boxplot_adds_phases_per_round(results: Results) -> None:
    fig = charts.time_boxplots([("run", results)], "dogbreed", "step")
    assert fig is not None
    box = next(t for t in fig.data if t.type == "box")
    step = find(standard_run(), "dogbreed_cnn")
    first = (step.samples_forward_s[0] + step.samples_backward_s[0] + step.samples_optimizer_s[0]) * 1e3  # type: ignore[index]
    assert box.y[0] == pytest.approx(first)


def test_boxplots_group_two_runs(results: Results) -> None:
    fig = charts.time_boxplots([("base", results), ("head", results)], "dogbreed")
    assert fig is not None and fig.layout.boxmode == "group"
    assert [t.name for t in fig.data if t.type == "box"] == ["base epoch time", "head epoch time"]


def test_training_curves(results: Results) -> None:
    fig = charts.training_curves([("run", results)], "dogbreed")
    assert fig is not None
    assert len(fig.data) == 3 * 2  # three cases, loss and accuracy each
    assert list(fig.data[0].x) == [1, 2, 3]


def test_failed_cases_are_left_out_of_charts(tmp_path: Path) -> None:
    records = [failed_record("dogbreed_cnn", kind="train", status="diverged"), train_record("dogbreed_dsc")]
    res = load_results(write_results(tmp_path / "f.json", records))
    fig = charts.training_curves([("run", res)], "dogbreed")
    assert fig is not None and {t.name for t in fig.data} == {"dogbreed_dsc (run)"}


# -- the page ---------------------------------------------------------------------------------------


def test_page_embeds_plotly_once_and_needs_no_network(results: Results) -> None:
    blocks = charts.run_charts([("run", results)])
    figures = charts.figures(blocks)
    page = charts.page("t", blocks)
    assert page.count("plotly.js v") == 1, "plotly.js embedded exactly once"
    assert not re.search(r"<script[^>]+src=", page), "no external scripts"
    assert "cdn.plot.ly/plotly" not in page.replace("https://cdn.plot.ly/un/", "")
    ids = re.findall(r'<div id="(chart-\d+)" class="plotly-graph-div"', page)
    assert ids == [f"chart-{i}" for i in range(len(figures))]
    # accuracy-vs-cost + per report (2): epoch boxes, step boxes, curves
    assert len(figures) == 1 + 2 * 3


def test_page_notes_omitted_charts(tmp_path: Path) -> None:
    res = load_results(write_results(tmp_path / "s.json", [step_record("dogbreed_cnn")]))
    page = charts.page("t", charts.run_charts([("run", res)]))
    assert "Chart omitted: no case has both an accuracy and a cost" in page
    assert "Chart omitted: no training curves" in page


# -- bench report -----------------------------------------------------------------------------------


def test_report_writes_a_page_and_prints_tables(run_file: Path, tmp_path: Path) -> None:
    out = io.StringIO()
    page = tmp_path / "report.html"
    code = report.run(report.ReportOptions(run_file, page, cost="step_time"), Console(file=out, width=250))
    assert code == 0
    text = out.getvalue()
    assert "test_step[dogbreed_cnn]" in text and "forward (ms)" in text and "test acc (%)" in text
    html = page.read_text()
    assert html.count("plotly.js v") == 1
    assert "The reports&#x27; numbers beside the measured ones" in html or "numbers beside the measured" in html


def test_report_unusable_input_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"machine_info": {}, "bench')
    out = io.StringIO()
    assert report.run(report.ReportOptions(bad, tmp_path / "x.html"), Console(file=out, width=200)) == 2
    assert "bad.json" in out.getvalue() and "truncated" in out.getvalue()
    assert not (tmp_path / "x.html").exists()


def test_report_numbers_table_degrades_for_unknown_cases(tmp_path: Path) -> None:
    res = load_results(write_results(tmp_path / "u.json", [step_record("no_such_case", "nosuite")]))
    rows = report.reported_rows(res)
    assert len(rows) == 1
    row = rows[0]
    assert row.params_measured == "0.585383" and row.params_reported == "—"
    assert row.note  # says why: unknown case, or the registry is unavailable


def test_report_numbers_table_when_registry_is_broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import suites

    def broken() -> None:
        raise ImportError("suites.flowers is being rewritten")

    monkeypatch.setattr(suites, "registry", broken)
    res = load_results(write_results(tmp_path / "r.json", standard_run()))
    rows = report.reported_rows(res)
    assert all("registry unavailable" in r.note and "being rewritten" in r.note for r in rows)
    assert rows[0].params_measured == "0.585383"
    # and the page still renders
    assert "registry unavailable" in report.to_html(res)


def test_report_numbers_table_with_the_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a registry that knows the case, the report's numbers sit beside the measured ones."""
    import suites
    from suites.registry import Reported

    class FakeCase:
        suite = "dogbreed"
        reported = Reported(source="table 2", params=585_383, accuracy={"DogBreeds7": 0.5923})

    def get_case(name: str) -> FakeCase:
        if name != "dogbreed_cnn":
            raise KeyError(name)
        return FakeCase()

    monkeypatch.setattr(suites, "registry", lambda: {"dogbreed_cnn": FakeCase()})
    monkeypatch.setattr(suites, "get_case", get_case)
    res = load_results(write_results(tmp_path / "r.json", standard_run()))
    rows = {r.case: r for r in report.reported_rows(res)}
    cnn = rows["dogbreed_cnn"]
    assert cnn.params_reported == "0.585383" and cnn.params_delta == "+0.00%"
    assert cnn.accuracy_reported == "DogBreeds7 59.23" and cnn.accuracy_measured == "synthetic 59.00"
    assert rows["resnet50_dcn_0000"].note == "not a case of the registry"
