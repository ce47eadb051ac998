"""Charts (bench.render.charts) and `bench report`'s page (bench.render.report, bench.render.html_report): figures built
from records, one page."""

from __future__ import annotations

import io
import math
import re
import statistics
from pathlib import Path

import plotly.graph_objects as go
import pytest
from results_factory import (
    failed_record,
    find,
    scale_samples,
    standard_run,
    step_record,
    train_record,
    write_results,
)
from rich.console import Console

from bench.commands import report as report_cmd
from bench.record.metrics import METRICS
from bench.record.results import Results, load_results
from bench.render import charts, html_report, report
from bench.render.charts import labels as geometry


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


def _visible(fig: go.Figure, kind: str = "points") -> list[go.Scatter]:
    """The shown traces of the accuracy chart: its points (markers) or its fronts (lines)."""
    mode = "markers" if kind == "points" else "lines"
    return [t for t in fig.data if t.visible and t.mode == mode]


def _button(fig: go.Figure, cost: str) -> dict:
    return next(b for b in fig.layout.updatemenus[0].buttons if b.label == charts.COSTS[cost].label)


def _labels(annotations: list) -> list:
    return [a for a in annotations if getattr(a, "name", None) == "label" or (isinstance(a, dict) and a.get("name") == "label")]


def _get(a: object, key: str) -> object:
    return a[key] if isinstance(a, dict) else getattr(a, key)


def test_accuracy_vs_cost_one_log_panel_per_report_and_a_button_per_cost(results: Results) -> None:
    fig = charts.accuracy_vs_cost([("run", results)], cost="params")
    assert fig is not None
    points = _visible(fig)
    # one panel per report, in the registry's report order: resnet50_dcn (000) before dogbreed (001)
    assert [list(t.meta["cases"]) for t in points] == [
        ["resnet50_dcn_0000", "resnet50_dcn_0001"], ["dogbreed_cnn", "dogbreed_dsc", "dogbreed_deformable"]]
    assert points[1].x[0] == pytest.approx(0.585383) and points[1].y[0] == pytest.approx(59.0)  # params in M, acc in %
    assert {t.xaxis for t in points} == {"x", "x2"}
    assert all(fig.layout[name].type == "log" for name in ("xaxis", "xaxis2"))
    # no energy in these records, so no energy button; the rest each set every panel's axis title
    buttons = fig.layout.updatemenus[0].buttons
    assert [b.label for b in buttons] == [charts.COSTS[c].label for c in ("macs", "params", "step_time", "memory")]
    assert fig.layout.updatemenus[0].active == 1
    memory = _button(fig, "memory").args[1]
    assert memory["xaxis.title.text"] == memory["xaxis2.title.text"] == "peak training-step memory (MiB, log scale)"
    assert fig.layout.xaxis.title.text == fig.layout.xaxis2.title.text == "params (M, log scale)"
    # a button shows exactly its own traces
    shown = [t for t, v in zip(fig.data, _button(fig, "macs").args[0]["visible"]) if v]
    assert {t.name for t in shown} == {"run", "run Pareto front"} and len(shown) == 4
    r50 = next(t for t in shown if t.mode == "markers" and "resnet50_dcn_0000" in t.meta["cases"])
    assert r50.x[0] == pytest.approx(4.089)  # MACs in G


def test_the_log_axis_range_covers_every_point_of_the_cost(results: Results) -> None:
    fig = charts.accuracy_vs_cost([("run", results)], cost="macs")
    lo, hi = fig.layout.xaxis.range
    xs = [x for t in _visible(fig) for x in t.x]
    assert 10**lo < min(xs) and max(xs) < 10**hi
    assert fig.layout.xaxis2.range == fig.layout.xaxis.range  # one cost axis for every report
    # MACs 0.16–4.2 G: ticks from 0.2 to 5, every one written out
    assert list(fig.layout.xaxis.ticktext) == ["0.2", "0.5", "1", "2", "5"]


def test_log_ticks_are_written_out() -> None:
    values, text = charts.log_ticks(math.log10(0.04), math.log10(17.6))
    assert text == ["0.05", "0.1", "0.2", "0.5", "1", "2", "5", "10"]
    assert values == pytest.approx([0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10])


def test_energy_is_a_cost_only_where_measured(tmp_path: Path) -> None:
    records = standard_run()
    find(records, "dogbreed_cnn").energy_step_j = 1.5
    res = load_results(write_results(tmp_path / "e.json", records))
    fig = charts.accuracy_vs_cost([("run", res)], cost="energy")
    assert fig is not None and fig.layout.updatemenus[0].buttons[-1].label == charts.COSTS["energy"].label
    (points,) = _visible(fig)  # one case has energy: one panel drawn
    assert list(points.meta["cases"]) == ["dogbreed_cnn"] and list(points.x) == [1.5]
    assert fig.layout.xaxis.title.text == "energy/step (J, log scale)"


def test_every_point_is_labelled_by_its_case_without_the_suite_prefix(results: Results) -> None:
    fig = charts.accuracy_vs_cost([("run", results)])
    for cost in ("macs", "params", "step_time", "memory"):
        named = {part for a in _labels(_button(fig, cost).args[1]["annotations"])
                 for part in re.split(r", |<br>", _get(a, "text"))}
        assert named == {"0000", "0001", "cnn", "dsc", "deformable"}, cost
    label = _labels(fig.layout.annotations)[0]
    assert label.xref == "x" and label.x == pytest.approx(math.log10(4.089))  # log axis: log10 coordinates


def test_points_are_coloured_by_report_in_every_chart(results: Results) -> None:
    runs = [("run", results)]
    colors = charts.report_colors(runs)
    assert len(set(colors.values())) == 2
    fig = charts.accuracy_vs_cost(runs)
    for trace in _visible(fig) + _visible(fig, "fronts"):
        suite = "resnet50_dcn" if trace.xaxis == "x" else "dogbreed"
        assert (trace.marker.color if trace.mode == "markers" else trace.line.color) == colors[suite]
    for suite in colors:
        boxes = charts.time_boxplots(runs, suite).data + charts.accuracy_boxplots(runs, suite).data
        assert {t.marker.color for t in boxes if t.type == "box"} == {colors[suite]}
    titles = [a for a in fig.layout.annotations if (a.name or "").startswith("title ")]
    assert [(a.text, a.font.color) for a in titles] == [
        (f"<b>{charts.report_of('resnet50_dcn')}</b>", colors["resnet50_dcn"]),
        (f"<b>{charts.report_of('dogbreed')}</b>", colors["dogbreed"])]


def _box(label: geometry.Label, frame: geometry.Frame) -> tuple[float, float, float, float]:
    px, py = frame.px(label.x, label.y)
    w, h = geometry.label_size(label.text)
    return (px + label.dx - w / 2, py + label.dy - h / 2, px + label.dx + w / 2, py + label.dy + h / 2)


def test_labels_of_crowded_points_do_not_collide() -> None:
    frame = geometry.Frame(x0=-1.0, x1=1.0, y0=0.0, y1=100.0, width=500, height=300)
    # a row of long names 12 px apart (MobileNet v1 at four resolutions), and two points on one spot
    names = [f"mobilenet_v1_100_{r}" for r in (128, 160, 192, 224)]
    points = [(10 ** (-0.2 + 0.05 * i), 20.0, n) for i, n in enumerate(names)] + [(1.0, 70.0, "a"), (1.0, 70.0, "b")]
    labels = geometry.place_labels(points, frame)
    assert sorted(lab.text for lab in labels) == ["a, b", *names]
    boxes = [_box(lab, frame) for lab in labels]
    for i, a in enumerate(boxes):
        assert 0 <= a[0] and a[2] <= frame.width and 0 <= a[1] and a[3] <= frame.height, labels[i]
        for b in boxes[:i]:
            assert geometry.overlap(a, b) == 0, (a, b)
    # the labels clear the markers too
    markers = [frame.px(x, y) for x, y, _ in points]
    r = geometry.MARKER / 2
    assert all(geometry.overlap(box, (mx - r, my - r, mx + r, my + r)) == 0 for box in boxes for mx, my in markers)


def _frozen(records: list, suite: str) -> list:
    """The train records of ``suite`` as a frozen random backbone: only a head trained, no weights."""
    for r in records:
        if r.suite == suite and r.kind == "train":
            r.params_trainable = 10_000
    return records


def test_a_random_frozen_backbone_is_hollow_noted_and_off_the_front(tmp_path: Path) -> None:
    records = _frozen(standard_run(), "resnet50_dcn")
    cnn = find(records, "dogbreed_cnn", "train")
    cnn.params_trainable, cnn.weights = 10_000, "torchvision:Fake_Weights.V1"  # pretrained: not hollow
    res = load_results(write_results(tmp_path / "f.json", records))
    fig = charts.accuracy_vs_cost([("run", res)])
    r50, dog = _visible(fig)
    assert list(r50.marker.symbol) == ["circle-open"] * 2 and set(dog.marker.symbol) == {"circle"}
    fronts = _visible(fig, "fronts")
    assert [t.xaxis for t in fronts] == ["x2"]  # no front through heads on random features
    title = next(a.text for a in fig.layout.annotations if a.name == "title resnet50_dcn")
    assert "random frozen features" in title and "no Pareto front" in title
    assert "Hollow points" in charts.accuracy_caption([("run", res)])
    assert "Hollow points" not in charts.accuracy_caption([("run", load_results(write_results(tmp_path / "g.json", standard_run())))])


def _seeded(record, accuracies: list[float], statuses: list[str] | None = None) -> None:
    """Give a train record per-seed accuracies, their mean and spread, as --bench-seeds writes them."""
    statuses = statuses or ["ok"] * len(accuracies)
    record.seeds = list(range(len(accuracies)))
    record.per_seed = [{"seed": i, "status": s, "accuracy_test": a} for i, (a, s) in enumerate(zip(accuracies, statuses))]
    ok = [a for a, s in zip(accuracies, statuses) if s == "ok"]
    record.accuracy_test = statistics.mean(ok)
    record.accuracy_test_spread = statistics.stdev(ok)


def test_seeds_give_error_bars_and_real_boxes(tmp_path: Path) -> None:
    records = standard_run()
    _seeded(find(records, "dogbreed_cnn", "train"), [0.55, 0.60, 0.65, 0.10], ["ok", "ok", "ok", "diverged"])
    res = load_results(write_results(tmp_path / "s.json", records))
    fig = charts.accuracy_vs_cost([("run", res)])
    dog = _visible(fig)[1]
    assert dog.error_y.visible and list(dog.error_y.array) == pytest.approx([5.0, 0.0, 0.0])  # ±1 sd, in points
    assert "Error bars" in charts.accuracy_caption([("run", res)])
    boxes = charts.accuracy_boxplots([("run", res)], "dogbreed")
    (box,) = boxes.data
    cnn = [y for x, y in zip(box.x, box.y) if x == "dogbreed_cnn"]
    assert cnn == pytest.approx([55.0, 60.0, 65.0])  # the diverged seed is not a result
    assert charts.ONE_SEED_NOTE not in boxes.layout.title.text and "3 seeds" in boxes.layout.title.text
    one = charts.accuracy_boxplots([("run", res)], "resnet50_dcn")
    assert charts.ONE_SEED_NOTE in one.layout.title.text
    assert not _visible(charts.accuracy_vs_cost([("run", load_results(write_results(tmp_path / "t.json", standard_run())))]))[1].error_y.visible


def test_frozen_cases_are_hollow_in_the_accuracy_boxes(tmp_path: Path) -> None:
    res = load_results(write_results(tmp_path / "f.json", _frozen(standard_run(), "resnet50_dcn")))
    (box,) = charts.accuracy_boxplots([("run", res)], "resnet50_dcn").data
    assert box.marker.symbol == "circle-open" and "random frozen features" in box.name


@pytest.fixture
def moved(tmp_path: Path) -> tuple[Results, Results]:
    """Base and head where dogbreed_cnn got 10 points more accurate and twice as slow; nothing else moved."""
    head = standard_run()
    cnn = find(head, "dogbreed_cnn", "train")
    cnn.accuracy_test = 0.69
    scale_samples(find(head, "dogbreed_cnn"), 2.0, ("forward", "backward", "optimizer"))
    return (load_results(write_results(tmp_path / "base.json", standard_run())),
            load_results(write_results(tmp_path / "head.json", head)))


def test_comparison_draws_base_faint_head_solid_and_an_arrow_per_move(moved: tuple[Results, Results]) -> None:
    base, head = moved
    fig = charts.accuracy_vs_cost([("base", base), ("head", head)], cost="macs")
    points = _visible(fig)
    assert [t.name for t in points] == ["base", "head", "base", "head"]
    assert points[0].opacity < points[1].opacity == 1.0
    for cost in ("macs", "step_time"):
        arrows = [a for a in _button(fig, cost).args[1]["annotations"] if str(a.get("name", "")).startswith("move ")]
        assert [a["name"] for a in arrows] == ["move dogbreed_cnn"], cost  # the unchanged cases: no arrow
        (arrow,) = arrows
        assert arrow["xref"] == arrow["axref"] == "x2" and arrow["yref"] == arrow["ayref"] == "y2"
        assert (arrow["ay"], arrow["y"]) == pytest.approx((59.0, 69.0))
        cases = base.cases()["dogbreed_cnn"], head.cases()["dogbreed_cnn"]
        unit = charts.COSTS[cost]
        x_base, x_head = (math.log10(unit.value(c) * unit.scale) for c in cases)  # type: ignore[operator]
        assert (arrow["ax"], arrow["x"]) == pytest.approx((x_base, x_head))
    # the head's move under step time is a doubling: a log10(2) step along the axis
    step = next(a for a in _button(fig, "step_time").args[1]["annotations"] if a.get("name") == "move dogbreed_cnn")
    assert step["x"] - step["ax"] == pytest.approx(math.log10(2.0), rel=0.05)
    assert "arrow leads from each case" in charts.accuracy_caption([("base", base), ("head", head)])


def test_costs_step_time_and_memory(results: Results) -> None:
    case = results.cases()["dogbreed_cnn"]
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
    assert fig is not None and {t.name for t in fig.data} == {"dsc"}  # one run: no run label


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
    # accuracy-vs-cost + per report (2): epoch boxes, step boxes, accuracy boxes, curves
    assert len(figures) == 1 + 2 * 4


def test_page_puts_wide_tables_in_their_own_scroll_box(results: Results) -> None:
    page = charts.page("t", ["<table><tr><td>x</td></tr></table>", "<p>prose</p>"])
    assert "<div class='wide'><table>" in page and "<div class='wide'><p>" not in page
    assert re.search(r"\.wide \{[^}]*overflow-x: auto", page)


def test_page_notes_omitted_charts(tmp_path: Path) -> None:
    res = load_results(write_results(tmp_path / "s.json", [step_record("dogbreed_cnn")]))
    page = charts.page("t", charts.run_charts([("run", res)]))
    assert "Chart omitted: no case has both an accuracy and a cost" in page
    assert "Chart omitted: no training curves" in page


# -- bench report -----------------------------------------------------------------------------------


def test_report_writes_a_page_and_prints_tables(run_file: Path, tmp_path: Path) -> None:
    out = io.StringIO()
    page = tmp_path / "report.html"
    code = report_cmd.run(report_cmd.ReportOptions(run_file, page, cost="step_time"), Console(file=out, width=250))
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
    assert report_cmd.run(report_cmd.ReportOptions(bad, tmp_path / "x.html"), Console(file=out, width=200)) == 2
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
    assert "registry unavailable" in html_report.report(res)


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


# -- time and MACs per module (--bench-modules) -------------------------------------------------------

MODULE_CASE = "flowers_resnet18_deform_after_conv1"


def _module_runs(tmp_path: Path) -> list[charts.Run]:
    from results_factory import slow_module, with_modules

    runs: list[charts.Run] = []
    for label, seed in (("base", 0), ("head", 1)):
        records = standard_run(seed)
        record = with_modules(step_record(MODULE_CASE, "flowers", forward_s=0.06, noise_seed=seed), noise_seed=seed)
        if label == "head":
            slow_module(record, "conv1.1", 1.4, "backward")
        records.append(record)
        runs.append((label, load_results(write_results(tmp_path / f"{label}.json", records))))
    return runs


def test_module_breakdown_traces_are_the_modules_in_model_order_and_add_up(tmp_path: Path) -> None:
    from bench.judge.module_diff import REST, leaves

    runs = _module_runs(tmp_path)
    fig = charts.module_breakdown(runs, MODULE_CASE)
    assert fig is not None
    record = runs[0][1].cases()[MODULE_CASE].step
    assert record is not None and record.modules is not None
    names = [m["name"] for m in leaves(record.modules, 2)]
    legend = [t.name for t in fig.data if t.showlegend]
    assert [re.sub("</?b>", "", n) for n in legend] == [*names, REST]
    assert "<b>conv1.1</b>" in legend and "conv1.0" in legend  # only the deformable one in bold
    # three panels (forward, backward, MACs), each with one bar per run, base first
    panels: dict[str, list[go.Bar]] = {}
    for t in fig.data:
        panels.setdefault(t.xaxis, []).append(t)
        assert list(t.y) == ["base", "head"] and t.orientation == "h"
    assert len(panels) == 3
    time_scale, macs_scale = METRICS["time_forward_s"].scale, METRICS["macs_forward"].scale
    for (label, results), side in zip(runs, range(2)):
        rec = results.cases()[MODULE_CASE].step
        assert rec is not None
        totals = [sum(t.x[side] or 0 for t in panels[axis]) for axis in ("x", "x2", "x3")]
        # each bar is its phase's median (modules and the rest) and the case's MACs
        assert totals[0] == pytest.approx(rec.time_forward_s * time_scale)  # type: ignore[operator]
        assert totals[1] == pytest.approx(rec.time_backward_s * time_scale)  # type: ignore[operator]
        assert totals[2] == pytest.approx(rec.macs_forward * macs_scale)  # type: ignore[operator]
    # the slower head: its conv1.1 segment of the backward panel is 40 % longer
    conv = next(t for t in panels["x2"] if t.name == "<b>conv1.1</b>")
    assert conv.x[1] / conv.x[0] == pytest.approx(1.4, abs=0.06)
    # emphasised: dark and hatched; the others light and plain; every segment labelled with its name
    for t in fig.data:
        emphasised = t.name == "<b>conv1.1</b>"
        assert (t.marker.pattern.shape == "/") is emphasised
        assert list(t.text) == [t.name, t.name]
    assert fig.layout.barmode == "stack" and fig.layout.uniformtext.mode == "hide"


def test_module_charts_only_where_there_is_a_breakdown(tmp_path: Path) -> None:
    runs = _module_runs(tmp_path)
    assert charts.module_charts([(label, load_results(write_results(tmp_path / "plain.json", standard_run())))
                                 for label in ("run",)]) == []
    blocks = charts.module_charts(runs)
    assert len(charts.figures(blocks)) == 1 and "Time and MACs per module" in blocks[0]
    assert charts.module_charts(runs, cases=["dogbreed_cnn"]) == []  # a case without one draws nothing
    assert len(charts.figures(charts.module_charts(runs, limit=0))) == 0


def test_report_page_draws_module_charts_for_cases_with_a_breakdown(tmp_path: Path) -> None:
    runs = _module_runs(tmp_path)
    blocks = html_report.report_blocks(runs[0][1])
    titles = [f.layout.title.text for f in charts.figures(blocks)]
    assert any(MODULE_CASE in t and "per module" in t for t in titles)
    plain = html_report.report_blocks(load_results(write_results(tmp_path / "plain.json", standard_run())))
    assert not any("per module" in str(f.layout.title.text) for f in charts.figures(plain))


def test_compare_page_draws_module_charts_only_for_moved_cases(tmp_path: Path) -> None:
    from bench.judge.verdicts import compare_runs

    runs = _module_runs(tmp_path)
    page = html_report.comparison(compare_runs(runs[0][1], runs[1][1]))
    assert page.count("time and MACs per module") == 1 and "Where it moved (per module)" in page
    same = html_report.comparison(compare_runs(runs[0][1], runs[0][1]))
    assert "time and MACs per module" not in same and "Where it moved" not in same


def test_module_bars_add_up_to_the_models_own_entry_when_the_breakdown_has_one(tmp_path: Path) -> None:
    """The engine records the model itself as module "" with MACs at the run's input and times from the
    breakdown's rounds; the record's macs_forward is at the native input. The bars must add up to the
    former, or most of the MACs bar would be drawn as "not in any module"."""
    record = step_record(MODULE_CASE, "flowers")
    record.macs_forward = 2_434_993_152  # native 224 px
    leaf = {"samples_forward_s": [0.004], "samples_backward_s": [0.02], "time_forward_s": 0.004,
            "time_backward_s": 0.02, "params_total": 1, "params_trainable": 1, "mem_activation_bytes": 1}
    record.modules = [
        {**leaf, "name": "", "type": "ResNet", "depth": 0, "macs_forward": 218_876_928,
         "time_forward_s": 0.010, "time_backward_s": 0.05},
        {**leaf, "name": "conv1", "type": "Sequential", "depth": 1, "macs_forward": 100_000_000},
        {**leaf, "name": "fc", "type": "Linear", "depth": 1, "macs_forward": 18_876_928},
    ]
    record.modules_depth = 1
    results = load_results(write_results(tmp_path / "run.json", [record]))
    fig = charts.module_breakdown([("run", results)], MODULE_CASE)
    assert fig is not None
    totals: dict[str, float] = {}
    for t in fig.data:
        totals[t.xaxis] = totals.get(t.xaxis, 0.0) + (t.x[0] or 0)
    assert totals["x3"] == pytest.approx(218_876_928 * METRICS["macs_forward"].scale)
    assert totals["x"] == pytest.approx(0.010 * METRICS["time_forward_s"].scale)
