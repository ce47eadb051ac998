"""Where a case's time moved (bench.judge.module_diff) and how bench compare / bench ab show it (issue 13).

The synthetic breakdown is a ResNet-18 with a deformable stem (results_factory.RESNET18_DEFORM_TREE);
the head's deformable convolution ("conv1.1") is made 40 % slower in the backward pass, round by round,
which moves the case's backward time by about 12 %: past both the unpaired and the paired thresholds.
"""

from __future__ import annotations

import copy
import io
import json
import math
import re
from pathlib import Path

import pytest
from results_factory import (
    CASES,
    find,
    paired,
    slow_module,
    standard_run,
    step_record,
    with_modules,
    write_results,
)
from rich.console import Console

from bench.commands import compare as compare_cmd
from bench.judge import module_diff as md
from bench.judge.paired import hodges_lehmann
from bench.judge.verdicts import Comparison, Status, compare_runs
from bench.record.results import load_results
from bench.record.schema import Record
from bench.render import comparison as compare
from bench.render import html_report, json_report, markdown, terminal

CASE = "flowers_resnet18_deform_after_conv1"
NAME = f"test_step[{CASE}]"
SLOWER = 1.4
#: Enough paired rounds for a signed-rank test over every time metric of the run to reach p < 0.05
#: after Holm (7 rounds cannot: the smallest one-sided p is 2**-7).
PAIRED_ROUNDS = 24


def _pair(*, rounds: int = 7, pair: bool = False, factor: float = SLOWER) -> tuple[list[Record], list[Record]]:
    """Base and head runs: the five standard cases plus CASE with a breakdown, conv1.1 slower in head."""
    def run(seed: int) -> list[Record]:
        records = [step_record(c, s, params=p, macs=m, forward_s=f, rounds=rounds, noise_seed=seed)
                   for c, s, p, m, f, _ in CASES]
        records.append(with_modules(step_record(CASE, "flowers", forward_s=0.060, rounds=rounds, noise_seed=seed),
                                    noise_seed=seed))
        return records

    base, head = run(0), run(1)
    slow_module(find(head, CASE), "conv1.1", factor, "backward")
    if pair:
        for b, h in zip(base, head):
            paired(b, h)
    return base, head


def _compare(tmp_path: Path, base: list[Record], head: list[Record]) -> Comparison:
    a = write_results(tmp_path / "base.json", base)
    b = write_results(tmp_path / "head.json", head)
    return compare_runs(load_results(a), load_results(b))


# -- the diff itself ----------------------------------------------------------------------------------


def test_leaves_are_the_disjoint_modules_of_the_cut() -> None:
    modules = with_modules(step_record(CASE)).modules
    assert modules is not None
    deep = [m["name"] for m in md.leaves(modules)]
    assert deep[:3] == ["conv1.0", "conv1.1", "bn1"] and "conv1" not in deep and "layer1" not in deep
    assert "layer1.0" in deep and "fc" in deep  # a depth-1 module with no child is a leaf too
    assert [m["name"] for m in md.leaves(modules, 1)] == [
        "conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc"]
    # the model itself (name "") is everyone's parent, never a leaf
    assert md.leaves([{"name": "", "depth": 0}, {"name": "fc", "depth": 1}]) == [{"name": "fc", "depth": 1}]


def test_a_slower_module_tops_the_unpaired_diff_with_the_largest_share() -> None:
    base, head = _pair()
    diff = md.module_diff(find(base, CASE), find(head, CASE))
    assert diff is not None and not diff.paired and diff.depth == 2
    backward = diff.phases["backward"]
    top = backward.moves[0]
    assert (top.name, top.type, top.kind) == ("conv1.1", "DeformConv2d", "both") and top.emphasised
    assert top.change == pytest.approx(SLOWER - 1, abs=0.05)
    assert top.delta_s == pytest.approx(top.head_s - top.base_s)  # type: ignore[operator]
    assert top.share is not None and top.share > 0.8
    assert all(abs(m.share or 0) < top.share / 10 for m in backward.moves[1:])
    # the shares of every leaf and of the rest add up to the whole move
    assert backward.rest is not None and backward.rest.name == md.REST
    assert sum(m.share or 0 for m in backward.moves) + (backward.rest.share or 0) == pytest.approx(1.0)
    b, h = find(base, CASE), find(head, CASE)
    assert backward.delta_s == pytest.approx(h.time_backward_s - b.time_backward_s)  # type: ignore[operator]
    # the forward pass did not move: no module stands out there
    assert abs(diff.phases["forward"].moves[0].change or 0) < 0.1
    assert [m.name for m in backward.top(3)] == [m.name for m in backward.moves[:3]]


def test_paired_moves_are_hodges_lehmann_estimates_over_rounds_of_one_index() -> None:
    base, head = _pair(rounds=PAIRED_ROUNDS, pair=True)
    b, h = find(base, CASE), find(head, CASE)
    diff = md.module_diff(b, h, paired=True)
    assert diff is not None and diff.paired
    top = diff.phases["backward"].moves[0]
    assert top.name == "conv1.1" and top.paired and top.interval is not None
    bm = next(m for m in b.modules or () if m["name"] == "conv1.1")
    hm = next(m for m in h.modules or () if m["name"] == "conv1.1")
    estimate, _, _ = hodges_lehmann([math.log(y / x) for x, y in
                                     zip(bm["samples_backward_s"], hm["samples_backward_s"])])
    assert top.change == pytest.approx(math.expm1(estimate))
    assert top.delta_s == pytest.approx(bm["time_backward_s"] * math.expm1(estimate))
    assert top.interval[0] < SLOWER - 1 < top.interval[1]
    assert top.share is not None and top.share > 0.8
    # the same records judged unpaired take the difference of medians instead
    unpaired = md.module_diff(b, h).phases["backward"].moves[0]  # type: ignore[union-attr]
    assert not unpaired.paired and unpaired.delta_s == pytest.approx(hm["time_backward_s"] - bm["time_backward_s"])


def test_rounds_that_cannot_be_paired_fall_back_to_medians() -> None:
    b, h = (with_modules(step_record(CASE, rounds=5, noise_seed=s), noise_seed=s) for s in (0, 1))
    for m in h.modules or ():
        m["samples_backward_s"] = m["samples_backward_s"][:3]  # a breakdown that lost rounds
        m["time_backward_s"] = sorted(m["samples_backward_s"])[1]
    diff = md.module_diff(b, h, paired=True)
    assert diff is not None
    assert not any(m.paired for m in diff.phases["backward"].moves)
    assert all(m.paired for m in diff.phases["forward"].moves)


def test_modules_on_one_side_are_added_or_removed_with_their_whole_time() -> None:
    b = with_modules(step_record(CASE))
    h = with_modules(step_record(CASE, noise_seed=1), noise_seed=1)
    assert b.modules is not None and h.modules is not None
    h.modules = [m for m in h.modules if m["name"] != "maxpool"]
    extra = copy.deepcopy(next(m for m in h.modules if m["name"] == "conv1.1"))
    extra.update(name="conv1.2", type="CBAM")
    h.modules.insert(3, extra)
    diff = md.module_diff(b, h)
    assert diff is not None
    moves = {m.name: m for m in diff.phases["forward"].moves}
    assert moves["maxpool"].kind == "removed" and moves["maxpool"].delta_s == pytest.approx(-moves["maxpool"].base_s)
    assert moves["conv1.2"].kind == "added" and moves["conv1.2"].delta_s == moves["conv1.2"].head_s
    assert moves["conv1.2"].emphasised  # CBAM: attention, findable by type
    assert diff.phases["forward"].moves[0].name == "conv1.2"  # a whole new module is the largest move


def test_the_diff_is_cut_at_the_depth_both_sides_measured() -> None:
    b = with_modules(step_record(CASE), depth=2)
    h = with_modules(step_record(CASE, noise_seed=1), depth=1, noise_seed=1)
    diff = md.module_diff(b, h)
    assert diff is not None and diff.depth == 1
    assert {m.name for m in diff.phases["backward"].moves} == {
        "conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc"}
    assert all(m.kind == "both" for m in diff.phases["backward"].moves)


def test_records_without_a_breakdown_have_no_diff() -> None:
    old, new = step_record(CASE), with_modules(step_record(CASE, noise_seed=1))
    assert old.modules is None
    assert md.module_diff(old, step_record(CASE, noise_seed=1)) is None
    assert md.module_diff(old, new) is None and md.module_diff(new, old) is None


@pytest.mark.parametrize("type_name, expected", [
    ("DeformConv2d", True), ("DCNv1", True), ("DCNv2", True), ("Conv1PlusDeform", True),
    ("MultiheadAttention", True), ("EncoderBlock", True), ("VariableInputConv", True), ("CBAM", True),
    ("ECA", True), ("AttentionGate", True), ("CompactDCNCBAM", True),
    ("Conv2d", False), ("BasicBlock", False), ("BatchNorm2d", False), ("Linear", False), ("Sequential", False),
])
def test_the_modules_the_reports_study_are_emphasised(type_name: str, expected: bool) -> None:
    assert md.emphasised(type_name) is expected


# -- bench compare: terminal, Markdown, JSON, HTML ----------------------------------------------------


def _terminal(c: Comparison, **kw: object) -> str:
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(terminal.comparison(c, **kw))  # type: ignore[arg-type]
    return out.getvalue()


def _where_rows(text: str) -> list[str]:
    """The module names of the first "where it moved" table of a terminal rendering, in order."""
    lines = text[text.index("Where it moved"):].splitlines()
    return [m.group(1) for line in lines if (m := re.match(r"│ (\S+|\(not in any module\)) +│", line))]


@pytest.mark.parametrize("pair", [False, True], ids=["unpaired", "paired"])
def test_the_slower_module_is_named_first_in_every_rendering(tmp_path: Path, pair: bool) -> None:
    base, head = _pair(rounds=PAIRED_ROUNDS if pair else 7, pair=pair)
    c = _compare(tmp_path, base, head)
    moved = {b.name: b for b in c.benchmarks}[NAME]
    assert moved.status is Status.REGRESSED and (c.paired is not None) is pair
    # terminal: under the verdicts, conv1.1 first, then four more, then the rest
    text = _terminal(c)
    assert text.index("Where it moved") > text.index("time_backward_s")
    rows = _where_rows(text)
    assert rows[0] == "conv1.1" and rows[-1] == md.REST and len(rows) == md.DEFAULT_TOP + 1
    how = "paired rounds: Hodges–Lehmann per module" if pair else "medians per module"
    flat = " ".join(text.split())  # a table's title wraps at the table's width
    assert f"where {NAME} moved, backward" in flat and how in flat
    assert ("95% CI" in text) is pair
    # only the phase whose verdict moved is shown
    assert f"where {NAME} moved, forward" not in flat
    # Markdown: a section whose first row is conv1.1
    text = markdown.comparison(c)
    section = text[text.index("### Where it moved"):]
    first = next(line for line in section.splitlines() if line.startswith("| `"))
    assert first.startswith("| `conv1.1` | DeformConv2d |")
    # JSON: every leaf, largest first, with its share
    entry = next(b for b in json_report.comparison(c)["benchmarks"] if b["name"] == NAME)
    backward = entry["modules"]["phases"]["backward"]
    assert entry["modules"]["paired"] is pair
    assert backward["modules"][0]["name"] == "conv1.1" and backward["modules"][0]["emphasised"]
    assert backward["modules"][0]["share"] == max(m["share"] for m in backward["modules"])
    assert len(backward["modules"]) == 15 and backward["rest"]["name"] == md.REST
    json.dumps(entry, allow_nan=False)  # what json_report.comparison_chunks writes
    # HTML: a table in the section, conv1.1 first and bold (st-bold)
    page = html_report.comparison(c)
    where = page[page.index("Where it moved (per module)</h2>"):]
    cells = re.findall(r"<tr><td class=\"left ([^\"]*)\"><code>([^<]+)</code>", where)
    assert cells[0] == ("st-bold", "conv1.1") and cells[1][0] == ""
    assert ".st-bold { font-weight: bold; }" in page[:page.index("</head>")]  # the page's one style sheet


def test_modules_top_bounds_the_rows_and_says_how_many_more(tmp_path: Path) -> None:
    c = _compare(tmp_path, *_pair())
    rows = _where_rows(_terminal(c, modules_top=2))
    assert rows == ["conv1.1", rows[1], md.REST]
    assert "13 more module(s) moved less" in _terminal(c, modules_top=2)
    everything = compare.module_tables(c, top=None)[0][0]
    assert len(everything.rows) == 15 + 1


def test_the_cli_takes_modules_top(tmp_path: Path) -> None:
    base, head = _pair()
    a, b = write_results(tmp_path / "base.json", base), write_results(tmp_path / "head.json", head)
    out = io.StringIO()
    output = compare_cmd.OutputOptions(markdown=tmp_path / "c.md", modules_top=1)
    assert compare_cmd.run(a, b, output=output, console=Console(file=out, width=200)) == 1
    assert _where_rows(out.getvalue()) == ["conv1.1", md.REST]
    assert (tmp_path / "c.md").read_text().count("| `layer") == 0
    from bench import commands as cli

    with pytest.raises(SystemExit):
        cli.main(["compare", str(a), str(b), "--modules-top", "0"])


def test_bench_ab_takes_modules_top_as_bench_compare_does() -> None:
    from bench.commands import build_parser
    from bench.commands.compare import judging_from

    parser = build_parser()
    _, output = judging_from(parser.parse_args(["ab", "main", "HEAD", "--modules-top", "3"]), parser)
    assert output.modules_top == 3
    _, default = judging_from(parser.parse_args(["ab", "main", "HEAD"]), parser)
    assert default.modules_top == md.DEFAULT_TOP


def test_unchanged_cases_get_no_table_but_keep_their_diff_in_json(tmp_path: Path) -> None:
    c = _compare(tmp_path, *_pair(factor=1.0))
    assert {b.name: b for b in c.benchmarks}[NAME].status is Status.UNCHANGED
    assert "Where it moved" not in _terminal(c) and "Where it moved" not in markdown.comparison(c)
    assert "Where it moved" not in html_report.comparison(c)
    entry = next(b for b in json_report.comparison(c)["benchmarks"] if b["name"] == NAME)
    assert entry["modules"]["phases"]["backward"]["modules"]


def test_runs_without_breakdowns_render_as_before(tmp_path: Path) -> None:
    head = standard_run(1)
    find(head, "dogbreed_cnn").set_samples("backward", [s * 1.5 for s in find(head, "dogbreed_cnn").samples_backward_s or []])
    c = _compare(tmp_path, standard_run(), head)
    assert {b.name: b for b in c.benchmarks}["test_step[dogbreed_cnn]"].status is Status.REGRESSED
    assert compare.moved_module_diffs(c) == []
    for text in (_terminal(c), markdown.comparison(c), html_report.comparison(c)):
        assert "Where it moved" not in text and "per module" not in text
    assert all("modules" not in b for b in json_report.comparison(c)["benchmarks"])
