"""Golden outputs: the terminal (at 80, 120 and 150 columns), Markdown and HTML renderings of one small
comparison, byte for byte, and no number ever wrapped in ``bench report``/``bench compare`` of the
committed runs.

The comparison has a case name and file names full of Markdown/HTML metacharacters (``|``, ``<``, ``&``,
``*``, backticks). When a rendering changes on purpose, regenerate the files and review the diff::

    ARCHBENCH_REGEN_GOLDEN=1 pytest tests/test_golden.py
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pytest
from results_factory import failed_record, find, scale_samples, standard_run, step_record, write_results
from rich.console import Console

from bench.judge.verdicts import Comparison, compare_runs
from bench.record.results import load_results
from bench.render import charts, html_report, markdown, report, terminal
from bench.render.comparison import change_tables, summary_table
from bench.render.table import FittedTable, TableSpec

GOLDEN = Path(__file__).resolve().parent / "golden"
RESULTS = Path(__file__).resolve().parent.parent / "results"
REGEN = os.environ.get("ARCHBENCH_REGEN_GOLDEN") == "1"
WIDTHS = (80, 120, 150)
META_CASE = "odd|<b>&*`x`*"


def _console(width: int) -> Console:
    return Console(width=width, record=True, color_system=None, force_terminal=False, file=io.StringIO())


def _check(name: str, text: str) -> None:
    path = GOLDEN / name
    if REGEN:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} missing: run with ARCHBENCH_REGEN_GOLDEN=1 to create it"
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from its golden file (see module docstring)"


@pytest.fixture
def comparison(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Comparison:
    """Regressed, failed, new, missing, improved and unchanged benchmarks, read from files whose names
    (relative, so the output does not depend on tmp_path) carry metacharacters too."""
    monkeypatch.chdir(tmp_path)
    base = standard_run() + [step_record(META_CASE, forward_s=0.010), step_record("gone")]
    head = [r for r in standard_run(1) if not (r.case == "dogbreed_dsc" and r.kind == "step")]
    head += [failed_record("dogbreed_dsc", status="oom"), step_record(META_CASE, forward_s=0.010, noise_seed=1),
             step_record("brand_new")]
    find(head, "dogbreed_cnn").params_total += 10
    scale_samples(find(head, META_CASE), 1.5, ("forward", "backward", "optimizer", "inference"))
    find(head, "resnet50_dcn_0000").params_total -= 1
    a = write_results(Path("ba`se|<1>&*.json"), base)
    b = write_results(Path("head*_|&.json"), head)
    return compare_runs(load_results(a.name), load_results(b.name))


def test_the_comparison_has_every_kind_of_row(comparison: Comparison) -> None:
    statuses = {b.name: b.status.value for b in comparison.benchmarks}
    assert statuses[f"test_step[{META_CASE}]"] == "regressed"
    assert statuses["test_step[dogbreed_cnn]"] == "regressed" and statuses["test_step[dogbreed_dsc]"] == "failed"
    assert statuses["test_step[brand_new]"] == "new" and statuses["test_step[gone]"] == "missing"
    assert statuses["test_step[resnet50_dcn_0000]"] == "improved"


@pytest.mark.parametrize("width", WIDTHS)
def test_terminal_golden(comparison: Comparison, width: int) -> None:
    console = _console(width)
    console.print(terminal.comparison(comparison))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= width
    _check(f"compare-terminal-{width}.txt", text)


def test_markdown_golden(comparison: Comparison) -> None:
    text = markdown.comparison(comparison)
    # the metacharacters are inside code spans (pipes escaped, a longer fence around the backticks) ...
    assert "| ``test_step[odd\\|<b>&*`x`*]`` | regressed |" in text
    # ... or escaped, in prose such as the headline
    assert "test\\_step\\[odd\\|\\<b\\>\\&\\*\\`x\\`\\*\\]" in text.splitlines()[0]
    assert "base ``ba`se|<1>&*.json`` (cpu" in text  # the file name: a code span (no table: no escapes)
    _check("compare.md", text)


def test_html_golden(comparison: Comparison, monkeypatch: pytest.MonkeyPatch) -> None:
    # plotly's figures are plotly's (and embed its version); the page around them is ours
    monkeypatch.setattr(charts, "run_charts", lambda runs, cost="macs": [])
    text = html_report.comparison(comparison)
    assert "<b>" not in text and "odd|&lt;b&gt;&amp;*`x`*" in text
    _check("compare.html", text)


# -- no number wraps, at the widths people use ----------------------------------------------------

_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?%?")


def _shown_numbers(spec: TableSpec, width: int) -> list[str]:
    """Every number in a right-justified cell of the columns shown at ``width``."""
    fitted = FittedTable(spec)
    shown, _ = fitted.layout(width)
    cells = spec.cells()
    return [m for row in cells for i in shown if spec.columns[i].justify == "right"
            for m in _NUMBER.findall(row[i])]


def _assert_whole(text: str, numbers: list[str]) -> None:
    lines = text.splitlines()
    for number in numbers:
        assert any(number in line for line in lines), f"{number!r} is not on one line"


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", ["cpu-smoke-baseline.json", "cpu-smoke-rerun.json"])
def test_report_never_wraps_a_number(width: int, name: str) -> None:
    results = load_results(RESULTS / name)
    console = _console(width)
    console.print(terminal.report(results))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= width
    numbers = [n for spec in report.measured_tables(results) for n in _shown_numbers(spec, width)]
    assert any("23.528522" == n for n in numbers)  # params in M, every digit
    _assert_whole(text, numbers)
    if width < 150:
        assert "columns left out at" in text  # what did not fit is named, not squeezed


@pytest.mark.parametrize("width", WIDTHS)
def test_compare_never_wraps_a_number(width: int) -> None:
    c = compare_runs(load_results(RESULTS / "cpu-smoke-baseline.json"), load_results(RESULTS / "cpu-smoke-rerun.json"))
    console = _console(width)
    console.print(terminal.comparison(c))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= width
    specs = [summary_table(c, limit=15), *change_tables(c, limit=15)]
    numbers = [n for spec in specs for n in _shown_numbers(spec, width)]
    assert len(numbers) > 50
    _assert_whole(text, numbers)
