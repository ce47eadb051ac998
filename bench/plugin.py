"""The pytest plugin behind ``pytest bench/ --benchmark-json=out.json``.

It adds the ``--bench-*`` options, parametrises the benchmark files over the selected cases, records
each benchmark's :class:`bench.record.Record` in pytest-benchmark's ``extra_info``, and fixes what
pytest-benchmark does not do on its own:

* a benchmark whose function raised is dropped by pytest-benchmark; here every case is written to the
  JSON with its status (``oom``, ``error``, ``diverged``, ``interrupted``) and error, and the run goes on;
* every record is also appended to a JSON-lines file the moment it is measured, so a run that is killed
  keeps what it had;
* ``machine_info`` gains an ``archbench`` block: torch/torchvision/CUDA/cuDNN versions, device and GPU,
  threads, profile, deterministic flags, the suite's version, and the execution modes (docs/modes.md).

Loaded through the ``pytest11`` entry point; it imports torch lazily so that other pytest runs stay fast.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from bench.options import add_pytest_options

if TYPE_CHECKING:
    from bench.devices import Device
    from bench.modes import Modes
    from bench.profiles import Profile
    from bench.record import Record
    from bench.weights import WeightsLoader
    from suites.registry import Case


def pytest_addoption(parser: pytest.Parser) -> None:
    add_pytest_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "archbench_kind(kind): benchmark kind, step or train")
    if _opt(config, "bench_case") or _opt(config, "bench_suite"):
        selected_cases(config)  # a selection that matches nothing is a usage error before collection
    selected_modes(config)  # so is a mode the device cannot run
    check_weights(config)  # and weights that are not there: before any case is measured, not minutes in


def check_weights(config: pytest.Config) -> None:
    """Stop the run before collection when ``--bench-weights`` names files that are not there: every
    path the selected cases' training needs, and the command that fetches them (bench/weights.py).
    Timing-only runs (``--bench-kind step``) load no weights."""
    value = _opt(config, "bench_weights")
    if value in (None, "none") or _opt(config, "bench_kind") == "step":
        return
    from bench.weights import WeightsError, missing_files, parse_choice

    try:
        choice = parse_choice(value, bool(_opt(config, "bench_allow_download")))
    except WeightsError as exc:
        raise pytest.UsageError(str(exc)) from None
    problem = missing_files(choice, selected_cases(config) if choice.kind == "pretrained" else [])
    if problem is not None:
        raise pytest.UsageError(problem)


def selected_modes(config: pytest.Config) -> Modes:
    """The ``--bench-precision/-memory-format/-compile`` modes, checked against the device the run will
    use; a mode it cannot run (fp16 on the CPU) is a usage error naming the option. torch is imported
    only to find the device when a mode needs CUDA."""
    from bench.modes import ModeError, Modes, ModeUnavailable

    try:
        modes = Modes.from_options({d: _opt(config, d) for d in ("bench_precision", "bench_memory_format",
                                                               "bench_compile")})
    except ModeError as exc:
        raise pytest.UsageError(str(exc)) from None
    try:
        modes.check("cpu")
    except ModeUnavailable as exc:
        device = _opt(config, "bench_device")
        if device is None:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        if not str(device).startswith("cuda"):
            raise pytest.UsageError(str(exc)) from None
    return modes


def _opt(config: pytest.Config, dest: str) -> Any:
    return config.getoption(dest)


def selected_cases(config: pytest.Config) -> list[Case]:
    from bench.listing import select

    globs = list(_opt(config, "bench_case") or [])
    suites = list(_opt(config, "bench_suite") or [])
    try:
        cases = select(globs, suites)
    except (KeyError, ValueError) as exc:
        raise pytest.UsageError(str(exc.args[0])) from None
    if (globs or suites) and not cases:
        raise pytest.UsageError(f"no case matches --bench-case {globs} --bench-suite {suites}; see `bench list`")
    return cases


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" in metafunc.fixturenames:
        cases = selected_cases(metafunc.config)
        metafunc.parametrize("case", cases, ids=[c.name for c in cases])


@dataclass
class ArchbenchSession:
    """Per-run state: what is measured, where, how hard, and what has been recorded so far."""

    config: pytest.Config
    profile: Profile
    device: Device
    seed: int
    partial_path: Path | None
    inject: dict[str, str]
    modes: Modes
    #: ``--bench-weights``: what each training case starts from (bench/weights.py).
    weights: WeightsLoader
    records: dict[str, tuple[str, Record]] = field(default_factory=dict)  # nodeid -> (name, record)
    _static: dict[str, Any] = field(default_factory=dict)
    _splits: dict[tuple, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: pytest.Config) -> ArchbenchSession:
        import torch

        from bench.devices import make_device
        from bench.modes import ModeError
        from bench.profiles import default_profile_name, get_profile
        from bench.weights import WeightsLoader

        device = make_device(_opt(config, "bench_device"), threads=_opt(config, "bench_threads"),
                             malloc=_opt(config, "bench_malloc"))
        name = _opt(config, "bench_profile") or default_profile_name(device.kind == "cuda")
        profile = get_profile(name).override(
            batch_size=_opt(config, "bench_batch_size"),
            rounds=_opt(config, "bench_rounds"),
            warmup_rounds=_opt(config, "bench_warmup"),
            warmup_min_s=_opt(config, "bench_warmup_time"),
            train_epochs=_opt(config, "bench_epochs"),
        )
        modes = selected_modes(config)
        try:
            modes.check(device.kind)
        except ModeError as exc:  # --bench-device cuda on a machine without CUDA fails before this
            raise pytest.UsageError(str(exc)) from None
        partial = _opt(config, "bench_partial")
        if partial is None and config.getoption("benchmark_json", None):
            partial = f"{config.getoption('benchmark_json')}.partial.jsonl"
        inject: dict[str, str] = {}
        for spec in _opt(config, "bench_fail") or []:
            case, _, kind = spec.partition(":")
            inject[case] = kind or "error"
        weights = WeightsLoader.from_options({d: _opt(config, d) for d in ("bench_weights", "bench_allow_download")})
        session = cls(config, profile, device, _opt(config, "bench_seed"),
                      Path(partial) if partial else None, inject, modes, weights)
        if session.partial_path is not None:
            session.partial_path.parent.mkdir(parents=True, exist_ok=True)
            session.partial_path.write_text("")  # one run per file: a stale tail would mix runs
        del torch
        return session

    @property
    def modules_depth(self) -> int | None:
        """``--bench-modules``: the depth to break step cases down to; ``None`` when not asked for."""
        if not _opt(self.config, "bench_modules"):
            return None
        return int(_opt(self.config, "bench_modules_depth") or 2)

    @property
    def modules_rounds(self) -> int:
        """Breakdown rounds per case: ``--bench-modules-rounds``, else the profile's timed rounds."""
        return int(_opt(self.config, "bench_modules_rounds") or self.profile.rounds)

    @property
    def seeds(self) -> list[int]:
        """The seeds every case trains under (``--bench-seeds``; else ``--bench-seed`` alone)."""
        from bench.options import seed_list

        return seed_list(self.seed, _opt(self.config, "bench_seeds"))

    # -- provenance ------------------------------------------------------------------------------------
    def machine_info(self) -> dict[str, Any]:
        from bench.provenance import archbench_info

        info = archbench_info(self.device, self.profile, self.seed, _opt(self.config, "bench_data"))
        info.update(self.modes.fields())  # what every record of the run asked for (docs/modes.md)
        return info

    # -- cached per-case work --------------------------------------------------------------------------
    def static_cost(self, case: Case) -> Any:
        """Params and MACs at the case's native input (batch 1), computed once per case and run."""
        if case.name not in self._static:
            from bench.flops import static_cost

            model = case.build()
            self._static[case.name] = static_cost(model, case.input_size, case.in_channels)
        return self._static[case.name]

    def splits(self, image_size: int, channels: int) -> Any:
        from bench import data

        name = _opt(self.config, "bench_data")
        root = _opt(self.config, "data_root")
        key = (name, root, image_size, channels)
        if key not in self._splits:
            self._splits[key] = data.load(
                name, root=Path(root) if root else None, image_size=image_size, channels=channels,
                samples=self.profile.train_samples, seed=self.seed,
            )
        return self._splits[key]

    # -- recording -------------------------------------------------------------------------------------
    def new_record(self, case: Case, kind: str) -> Record:
        from bench.record import Record

        record = Record(case=case.name, suite=case.suite, kind=kind, profile=self.profile.name,  # type: ignore[arg-type]
                        device=self.device.kind, in_channels=case.in_channels, threads=self.device.threads)
        record.update(self.modes.fields())  # a case that fails before it measures still says its modes
        return record

    def maybe_inject(self, case: Case, where: str = "round") -> None:
        """Raise the failure ``--bench-fail`` asked for in this case (testing the harness itself);
        ``CASE:modules`` fails only the ``--bench-modules`` stage (``where="modules"``)."""
        kind = self.inject.get(case.name)
        if (kind == "modules") != (where == "modules"):
            return
        if kind == "interrupt":
            raise KeyboardInterrupt(f"injected interrupt in {case.name} (--bench-fail)")
        if kind == "oom":
            raise MemoryError(f"injected out-of-memory in {case.name} (--bench-fail)")
        if kind is not None:
            raise RuntimeError(f"injected failure in {case.name} (--bench-fail)")

    @contextlib.contextmanager
    def recording(self, request: pytest.FixtureRequest, case: Case, kind: str, benchmark: Any) -> Iterator[Record]:
        """Yield a record to fill; on exit store it in ``extra_info`` and the partial file whatever
        happened, then fail the test if the case did not measure cleanly."""
        record = self.new_record(case, kind)
        try:
            with self.device.settings():
                yield record
        except KeyboardInterrupt:
            record.status, record.error = "interrupted", "KeyboardInterrupt"
            # pytest-benchmark only flags Exceptions; its half-filled stats would crash its JSON writer.
            benchmark.has_error = True
            self._store(request, record, benchmark)
            raise
        except Exception as exc:  # noqa: BLE001 - recorded with its status, then reported as a failure below
            record.status = "oom" if self.device.is_oom(exc) else "error"
            record.error = f"{type(exc).__name__}: {exc}"
        self._store(request, record, benchmark)
        if record.status != "ok":
            pytest.fail(f"{case.name} ({kind}): status {record.status}: {record.error}", pytrace=False)

    def _store(self, request: pytest.FixtureRequest, record: Record, benchmark: Any) -> None:
        data = record.to_extra_info()
        benchmark.extra_info.update(data)
        self.records[request.node.nodeid] = (request.node.name, record)
        if self.partial_path is not None:
            with self.partial_path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps({"name": request.node.name, "fullname": request.node.nodeid,
                                     "extra_info": data}) + "\n")
                fh.flush()
                os.fsync(fh.fileno())


_SESSION_KEY = pytest.StashKey[ArchbenchSession]()


@pytest.fixture(scope="session")
def archbench(request: pytest.FixtureRequest) -> ArchbenchSession:
    config = request.config
    if _SESSION_KEY not in config.stash:
        config.stash[_SESSION_KEY] = ArchbenchSession.from_config(config)
    return config.stash[_SESSION_KEY]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kind = _opt(config, "bench_kind")
    if kind in (None, "both"):
        return
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
        machine_info["archbench"] = session.machine_info()


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_json(config: pytest.Config, benchmarks: Any, output_json: dict[str, Any]) -> None:
    """Put back the cases pytest-benchmark dropped because their function raised, where its own
    readers do not look (:func:`bench.results.attach_failed`); cases it kept whose record is not ok
    move there too."""
    from bench.results import attach_failed

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


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """After pytest-benchmark's table: archbench's own, one row per case, and where the results are,
    with an HTML report written beside the JSON."""
    session = config.stash.get(_SESSION_KEY, None)
    if session is None or not session.records:
        return
    import io

    from rich.text import Text

    from bench.present import make_console
    from bench.summary import summary_table

    buffer = io.StringIO()
    console = make_console(buffer)
    console.print(summary_table(record for _, record in session.records.values()).to_rich())
    json_path = config.getoption("benchmark_json", None)
    if json_path is not None and Path(json_path).is_file():
        console.print(Text(f"results: {json_path}"))
        console.print(Text(_write_html_report(Path(json_path))))
    elif session.partial_path is not None:
        console.print(Text(f"results so far: {session.partial_path} (no JSON was written)"))
    terminalreporter.write_sep("=", "archbench summary")
    terminalreporter.write(buffer.getvalue())


def _write_html_report(json_path: Path) -> str:
    """Write ``<json>.html`` (bench report's page) beside the results; say where, or why not."""
    from bench.present import write_text
    from bench.report import to_html
    from bench.results import ResultsError, load_results

    html_path = json_path.with_suffix(".html")
    try:
        write_text(html_path, to_html(load_results(json_path)))
    except ResultsError as exc:  # the JSON is the result; a report that cannot be drawn must not hide it
        return f"report: not written ({exc})"
    return f"report: {html_path}"
