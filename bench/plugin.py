"""The pytest plugin behind ``pytest bench/ --benchmark-json=out.json``: a driver of the measurement session.

It adds the ``--bench-*`` options (:mod:`bench.record.options`), and when ``bench/test_cases.py`` is
collected it reads them into one :class:`~bench.record.options.RunOptions`, checks every option and every
output path before any case is built (a bad option is pytest's usage error, exit 4, naming it; an output
that cannot be written exits 2), opens the :class:`~bench.measure.session.Session` and parametrises the
benchmarks over the selected cases. Each benchmark runs the session's stages, with pytest-benchmark's
timer on each round's whole step (:class:`ArchbenchSession`). Beyond what pytest-benchmark does on its
own:

* a benchmark whose function raised is dropped by pytest-benchmark; here every case is written to the
  JSON with its status (``oom``, ``error``, ``diverged``, ``interrupted``) and error, and the run goes on;
* the results file is written by archbench (:mod:`bench.record.write`), always: a run whose every case
  failed still leaves a file of its own with every failure in it, never an older file under its name;
* every record is also appended to a JSON-lines file the moment it is measured, so a run that is killed
  keeps what it had;
* ``machine_info`` gains an ``archbench`` block: torch/torchvision/CUDA/cuDNN versions, device and GPU,
  threads, profile, deterministic flags, the suite's version, and the execution modes (docs/modes.md);
* the run ends with one row per case and an HTML report beside the JSON.

Loaded through the ``pytest11`` entry point; it imports torch only once a benchmark file is collected, so
that other pytest runs stay fast.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from bench.record.exits import EXIT_UNUSABLE
from bench.record.options import OPTIONS, OptionError, RunOptions, add_pytest_options
from bench.record.write import OutputError, check, write_text

if TYPE_CHECKING:
    from bench.measure.session import Session
    from bench.record.schema import Record
    from suites.registry import Case


def pytest_addoption(parser: pytest.Parser) -> None:
    add_pytest_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "archbench_kind(kind): benchmark kind, step or train")


def run_options(config: pytest.Config) -> RunOptions:
    """The run's options from pytest's command line; ``--bench-partial`` defaults to
    ``<--benchmark-json>.partial.jsonl``."""
    options = RunOptions.from_values({dest: config.getoption(dest) for dest in OPTIONS})
    json_path = config.getoption("benchmark_json", None)
    if options.partial is None and json_path is not None:
        options = dataclasses.replace(options, partial=f"{json_path}.partial.jsonl")
    return options


class ArchbenchSession:
    """The pytest side of one run: the measurement :class:`~bench.measure.session.Session`, the
    results file it owns, and the records measured so far (for the JSON and the closing table)."""

    def __init__(self, config: pytest.Config, session: Session, json_path: Path | None) -> None:
        self.config = config
        self.session = session
        self.json_path = json_path
        self.records: dict[str, tuple[str, Record]] = {}  # nodeid -> (name, record)
        #: Whether this run wrote its results file (what the closing lines may point to).
        self.written = False

    @classmethod
    def open(cls, config: pytest.Config) -> ArchbenchSession:
        """Check the options and the outputs, open the session, and take the results file over from
        pytest-benchmark (which would leave an older file standing when every case failed)."""
        from bench.measure.session import Session

        options = run_options(config)
        json_path = config.getoption("benchmark_json", None)
        try:
            check(json_path, options.partial)
        except OutputError as exc:
            pytest.exit(f"archbench: {exc}", returncode=EXIT_UNUSABLE)
        try:
            session = Session.open(options)
        except OptionError as exc:
            raise pytest.UsageError(str(exc)) from None
        benchmarks = getattr(config, "_benchmarksession", None)
        if benchmarks is not None:
            benchmarks.json = None  # written by pytest_sessionfinish below, through bench.record.write
        return cls(config, session, Path(json_path) if json_path is not None else None)

    # -- the benchmarks -------------------------------------------------------------------------------
    def step(self, case: Case, benchmark: Any, request: pytest.FixtureRequest) -> None:
        def timer(timed: Callable[[], None], setup: Callable[[], None], teardown: Callable[[], None],
                  rounds: int) -> None:
            benchmark.pedantic(timed, setup=setup, teardown=teardown, rounds=rounds, iterations=1)

        self._run(lambda store: self.session.measure_step(case, store, timer), benchmark, request)

    def train(self, case: Case, benchmark: Any, request: pytest.FixtureRequest) -> None:
        def timer(timed: Callable[[], object], setup: Callable[[], None], rounds: int) -> None:
            # setup: each seed's model is built before its first timed epoch, not inside it
            benchmark.pedantic(timed, setup=setup, rounds=rounds, iterations=1)

        self._run(lambda store: self.session.measure_train(case, store, timer), benchmark, request)

    def _run(self, measure: Callable[[Callable[[Record], None]], Record], benchmark: Any,
             request: pytest.FixtureRequest) -> None:
        def store(record: Record) -> None:
            benchmark.extra_info.update(record.to_extra_info())
            self.records[request.node.nodeid] = (request.node.name, record)

        try:
            record = measure(store)
        except KeyboardInterrupt:
            # pytest-benchmark only flags Exceptions; its half-filled stats would crash its JSON writer.
            benchmark.has_error = True
            raise
        if record.status != "ok":
            pytest.fail(f"{record.case} ({record.kind}): status {record.status}: {record.error}", pytrace=False)

    # -- the results file ---------------------------------------------------------------------------------
    def write_results(self) -> None:
        """The JSON pytest-benchmark would write, with every failed case under ``archbench_failed``."""
        from pytest_benchmark.utils import safe_dumps

        config, benchmarks = self.config, getattr(self.config, "_benchmarksession", None)
        if self.json_path is None or benchmarks is None or not self.records:
            return
        machine_info = benchmarks.get_machine_info()
        commit_info = config.hook.pytest_benchmark_generate_commit_info(config=config)
        config.hook.pytest_benchmark_update_commit_info(config=config, commit_info=commit_info)
        output = config.hook.pytest_benchmark_generate_json(
            config=config, benchmarks=benchmarks.benchmarks, include_data=True, machine_info=machine_info,
            commit_info=commit_info,
        )
        config.hook.pytest_benchmark_update_json(config=config, benchmarks=benchmarks.benchmarks, output_json=output)
        write_text(self.json_path, safe_dumps(output, ensure_ascii=True, indent=4))
        self.written = True


_SESSION_KEY = pytest.StashKey[ArchbenchSession]()
#: Why the session could not open (a bad option or output), raised once collection has ended: raised
#: while a test function is being collected, pytest would call it a collection error of that file.
_REFUSED = pytest.StashKey[BaseException]()


def archbench_session(config: pytest.Config) -> ArchbenchSession | None:
    """The run's session, opened when the benchmarks are first collected; ``None`` when it was refused."""
    if _SESSION_KEY not in config.stash and _REFUSED not in config.stash:
        try:
            config.stash[_SESSION_KEY] = ArchbenchSession.open(config)
        except (pytest.UsageError, pytest.exit.Exception) as exc:
            config.stash[_REFUSED] = exc
    return config.stash.get(_SESSION_KEY, None)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # a benchmark asks for the session and a case; any other test with an argument called "case" is not one
    if "case" in metafunc.fixturenames and "archbench" in metafunc.fixturenames:
        session = archbench_session(metafunc.config)
        cases = session.session.cases() if session is not None else []
        metafunc.parametrize("case", cases, ids=[c.name for c in cases])


@pytest.fixture(scope="session")
def archbench(request: pytest.FixtureRequest) -> ArchbenchSession:
    session = archbench_session(request.config)
    assert session is not None, "refused sessions stop the run before any benchmark"
    return session


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    refused = config.stash.get(_REFUSED, None)
    if refused is not None:
        raise refused  # before any case: pytest's usage error (exit 4), or exit 2 for an output
    session = config.stash.get(_SESSION_KEY, None)
    if session is None or session.session.options.kind == "both":
        return
    kind = session.session.options.kind
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        marker = item.get_closest_marker("archbench_kind")
        (drop if marker is not None and marker.args[0] != kind else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    session = config.stash.get(_SESSION_KEY, None)
    if session is not None:
        machine_info["archbench"] = session.session.machine_info()


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_json(config: pytest.Config, benchmarks: Any, output_json: dict[str, Any]) -> None:
    """Put back the cases pytest-benchmark dropped because their function raised, where its own
    readers do not look (:func:`bench.record.results.attach_failed`); cases it kept whose record is not
    ok move there too."""
    from bench.record.results import attach_failed

    session = config.stash.get(_SESSION_KEY, None)
    if session is None:
        return
    present = {b.get("fullname") for b in output_json.get("benchmarks", [])}
    dropped = [
        {
            "group": None, "name": name, "fullname": nodeid,
            "params": {"case": record.case}, "param": record.case,
            "extra_info": record.to_extra_info(), "options": {}, "stats": None,
        }
        for nodeid, (name, record) in session.records.items()
        if nodeid not in present
    ]
    attach_failed(output_json, dropped)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    archbench = session.config.stash.get(_SESSION_KEY, None)
    if archbench is None:
        return
    try:
        archbench.write_results()
    except OutputError as exc:
        session.config.stash[_WRITE_ERROR] = str(exc)
        session.exitstatus = EXIT_UNUSABLE


_WRITE_ERROR = pytest.StashKey[str]()


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """archbench's own closing table, one row per case, and where the results are, with an HTML report
    written beside the JSON."""
    session = config.stash.get(_SESSION_KEY, None)
    if session is None or not session.records:
        return
    import io

    from rich.text import Text

    from bench.render.summary import summary_table
    from bench.render.table import make_console

    buffer = io.StringIO()
    console = make_console(buffer)
    console.print(summary_table(record for _, record in session.records.values()).to_rich())
    partial = session.session.options.partial
    if session.written and session.json_path is not None:
        console.print(Text(f"results: {session.json_path}"))
        console.print(Text(_write_html_report(session.json_path)))
    elif _WRITE_ERROR in config.stash:
        console.print(Text(f"results: not written: {config.stash[_WRITE_ERROR]}", style="bold red"))
        if partial is not None:
            console.print(Text(f"results so far: {partial}"))
    elif partial is not None:
        console.print(Text(f"results so far: {partial} (no JSON was asked for)"))
    terminalreporter.write_sep("=", "archbench summary")
    terminalreporter.write(buffer.getvalue())


def _write_html_report(json_path: Path) -> str:
    """Write ``<json>.html`` (bench report's page) beside the results; say where, or why not."""
    from bench.record.results import ResultsError, load_results
    from bench.render import html_report

    html_path = json_path.with_suffix(".html")
    try:
        write_text(html_path, html_report.report(load_results(json_path)))
    except (ResultsError, OutputError) as exc:  # the JSON is the result; a report that cannot be drawn must not hide it
        return f"report: not written ({exc})"
    return f"report: {html_path}"
