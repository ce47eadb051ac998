"""Load and validate a results file: the JSON that ``pytest bench/ --benchmark-json=FILE`` writes.

Everything that can be wrong with an input file is found here, once, and reported as a
:class:`ResultsError` (exit code 2) whose message names the file, the benchmark and the field. The
comparator, the charts and ``bench merge`` only ever see validated :class:`Results`.

What makes a file usable: valid UTF-8 JSON (Python's parser accepts ``NaN``/``Infinity``, so non-finite
numbers are looked for explicitly), the pytest-benchmark envelope (``machine_info`` with archbench's
block, a non-empty ``benchmarks`` list), one archbench :class:`~bench.record.schema.Record` in every
benchmark's ``extra_info``, and no benchmark name twice.

Cases that did not measure cleanly (a status other than ``ok``; pytest-benchmark's stats are null or
meaningless for them) are written under the top-level key ``archbench_failed`` (:func:`attach_failed`),
not under ``benchmarks``: pytest-benchmark's own readers (``pytest-benchmark compare``) refuse a whole
file over one ``"stats": null``. Archbench's readers see both lists as one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import statistics
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.record.exits import EXIT_UNUSABLE
from bench.record.metrics import METRICS
from bench.record.schema import SAMPLED, Record, RecordError, quantity, random_frozen_backbone

#: Top-level key holding the benchmark objects of cases that failed (see :func:`attach_failed`).
FAILED_KEY = "archbench_failed"
#: A three-digit exponent: 1e999 parses as inf. (One literal per pattern: the regex engine then scans
#: for it at C speed; a character class first is ten times slower on a 40 MB file.)
_BIG_EXPONENTS = (re.compile(r"e\+?[0-9]{3}"), re.compile(r"E\+?[0-9]{3}"))


def _maybe_nonfinite(text: str) -> bool:
    """Whether ``text`` may hold a non-finite number (NaN, Infinity as Python writes them, or an
    exponent that overflows). A file without any is finite throughout and skips the slow walk."""
    return "NaN" in text or "Infinity" in text or any(p.search(text) for p in _BIG_EXPONENTS)

#: Stats fields pytest-benchmark writes that we read; all numeric when present.
_STATS_NUMERIC = ("min", "max", "mean", "stddev", "median", "iqr", "q1", "q3", "ops", "total")


class ResultsError(ValueError):
    """A results file is unusable. The message names the file, the benchmark and the reason."""

    exit_code = EXIT_UNUSABLE


@dataclass(frozen=True)
class Environment:
    """``machine_info.archbench`` of a results file: what a comparison needs to know about the run."""

    device: str
    profile: str
    device_name: str | None = None
    torch: str | None = None
    torchvision: str | None = None
    cuda: str | None = None
    cudnn: int | None = None
    threads: int | None = None
    deterministic: bool | None = None
    suite_version: str | None = None
    gpu: Mapping[str, Any] | None = None
    #: The CPU's model and instruction sets (from pytest-benchmark's ``machine_info.cpu``): two CPUs
    #: that both call themselves "AMD EPYC" can run different kernels (AVX-512 or not) and so train
    #: to different accuracies from the same seed.
    cpu: str | None = None
    #: The run's execution modes (docs/modes.md); a file written before modes existed measured the
    #: defaults.
    precision: str = "fp32"
    memory_format: str = "contiguous"
    compile: str = "none"

    @classmethod
    def from_machine_info(cls, machine_info: Mapping[str, Any], where: str) -> Environment:
        block = machine_info.get("archbench")
        if not isinstance(block, Mapping):
            raise ResultsError(
                f"{where}: machine_info has no 'archbench' block; this pytest-benchmark file was not "
                "written by archbench (run `pytest bench/ --benchmark-json=FILE`)"
            )
        for key in ("device", "profile"):
            if not isinstance(block.get(key), str) or not block[key]:
                raise ResultsError(f"{where}: field 'machine_info.archbench.{key}' is missing or not a string")
        gpu = block.get("gpu")
        modes = {}
        for key, default in (("precision", "fp32"), ("memory_format", "contiguous"), ("compile", "none")):
            value = block.get(key, default)
            if not isinstance(value, str) or not value:
                raise ResultsError(f"{where}: field 'machine_info.archbench.{key}' is {value!r}, expected a string")
            modes[key] = value
        return cls(
            device=block["device"],
            profile=block["profile"],
            device_name=block.get("device_name"),
            torch=block.get("torch"),
            torchvision=block.get("torchvision"),
            cuda=block.get("cuda"),
            cudnn=block.get("cudnn"),
            threads=block.get("threads"),
            deterministic=block.get("deterministic"),
            suite_version=block.get("suite_version"),
            gpu=gpu if isinstance(gpu, Mapping) else None,
            cpu=_cpu_identity(machine_info.get("cpu")),
            **modes,
        )


def _cpu_identity(cpu: Any) -> str | None:
    """"vendor family F model M, N flags (digest)" from py-cpuinfo's record, or ``None`` without one."""
    if not isinstance(cpu, Mapping):
        return None
    flags = cpu.get("flags")
    flags = sorted(str(f) for f in flags) if isinstance(flags, list) else []
    digest = hashlib.sha256(" ".join(flags).encode()).hexdigest()[:10]
    return (f"{cpu.get('vendor_id_raw', '?')} family {cpu.get('family', '?')} model {cpu.get('model', '?')}, "
            f"{len(flags)} flags ({digest})")


#: What a number was measured under besides device and profile: the execution modes and the numerics
#: read inside each measurement. Two runs that differ in any of them measured different things
#: (TF32 changes speed and accuracy alike), so ``bench compare`` calls them not comparable.
MODE_FIELDS: tuple[str, ...] = (
    "precision", "memory_format", "compile", "tf32_matmul", "tf32_cudnn", "float32_matmul_precision",
)


@dataclass(frozen=True)
class Stats:
    """The part of pytest-benchmark's ``stats`` we use. ``data`` holds the raw round times when saved."""

    rounds: int
    median: float | None
    mean: float | None
    min: float | None
    max: float | None
    data: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Benchmark:
    """One benchmark of a results file: its record, pytest-benchmark's stats (``None`` for a case that
    failed before it was timed) and the raw JSON object, kept verbatim for ``bench merge``."""

    name: str
    group: str | None
    record: Record
    stats: Stats | None
    raw: Mapping[str, Any] = field(repr=False)

    @property
    def ok(self) -> bool:
        return self.record.status == "ok"


@dataclass(frozen=True)
class CaseRecords:
    """A case's records of one run side by side: its step record (time, memory) and its train record
    (accuracy), either possibly missing. A row of ``pytest bench/``'s summary, a point of a chart."""

    case: str
    suite: str
    step: Record | None = None
    train: Record | None = None

    def value(self, key: str) -> float | int | None:
        """``key`` from the step record, else the train record (static costs live in both)."""
        for record in (self.step, self.train):
            value = getattr(record, key, None) if record is not None else None
            if value is not None:
                return value  # type: ignore[no-any-return]
        return None

    def flags(self) -> str:
        """What a reader must not miss: a record that did not measure cleanly, and a head trained on
        random frozen features (its accuracy says nothing about the architecture)."""
        out = [f"{r.kind}: {r.status}" for r in (self.step, self.train) if r is not None and r.status != "ok"]
        if self.train is not None and random_frozen_backbone(self.train):
            out.append("frozen backbone, random weights")
        return "; ".join(out)

    @property
    def failed(self) -> bool:
        return any(r is not None and r.status != "ok" for r in (self.step, self.train))


def group_cases(records: Iterable[Record], *, ok_only: bool = False) -> dict[str, CaseRecords]:
    """Records grouped by case, in the order the cases first appear; the first record of each kind
    counts (``ok_only``: the first that measured cleanly)."""
    cases: dict[str, CaseRecords] = {}
    for record in records:
        if ok_only and record.status != "ok":
            continue
        current = cases.get(record.case) or CaseRecords(record.case, record.suite)
        if record.kind == "step" and current.step is None:
            current = dataclasses.replace(current, step=record)
        elif record.kind == "train" and current.train is None:
            current = dataclasses.replace(current, train=record)
        cases[record.case] = current
    return cases


@dataclass(frozen=True)
class Results:
    """A validated results file: its envelope (everything but ``benchmarks``), environment, and
    benchmarks by name in file order."""

    path: str
    envelope: Mapping[str, Any] = field(repr=False)
    env: Environment
    benchmarks: Mapping[str, Benchmark]

    @property
    def devices(self) -> frozenset[str]:
        """Every device the file's records ran on (a merged file may hold more than one)."""
        return frozenset({self.env.device, *(b.record.device for b in self.benchmarks.values())})

    @property
    def profiles(self) -> frozenset[str]:
        return frozenset({self.env.profile, *(b.record.profile for b in self.benchmarks.values())})

    def settings(self, name: str) -> frozenset[str]:
        """Every value of the execution-mode or numerics field ``name`` (:data:`MODE_FIELDS`) in the file:
        the run's own (modes only) and each measured record's, as text. Fields a writer did not record
        add nothing, and neither do failed cases (they measured nothing; a record written for a worker
        that crashed may not know the run's modes)."""
        values = {getattr(self.env, name)} if hasattr(self.env, name) else set()
        values.update(getattr(b.record, name) for b in self.benchmarks.values() if b.ok)
        return frozenset(str(v) for v in values if v is not None)


    @property
    def commit(self) -> str | None:
        info = self.envelope.get("commit_info")
        if isinstance(info, Mapping):
            value = info.get("id")
            return str(value) if value is not None else None
        return None

    def __iter__(self) -> Iterator[Benchmark]:
        return iter(self.benchmarks.values())

    def cases(self) -> dict[str, CaseRecords]:
        """The records that measured cleanly, grouped by case in file order."""
        return group_cases((b.record for b in self), ok_only=True)


def load_results(path: str | Path) -> Results:
    """Read and validate ``path``; raise :class:`ResultsError` naming the file and the cause."""
    where = str(path)
    try:
        # Decoded while read: the bytes of a large file never sit in memory beside its text.
        with open(path, encoding="utf-8", newline="") as fh:
            text = fh.read()
    except IsADirectoryError:
        raise ResultsError(f"{where}: is a directory, not a results file") from None
    except FileNotFoundError:
        raise ResultsError(f"{where}: no such file") from None
    except UnicodeDecodeError:
        try:
            Path(path).read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ResultsError(f"{where}: not UTF-8 text (byte {exc.start}); not a JSON results file") from None
        raise  # decoding the whole file worked where the stream failed: not expected, so not hidden
    except OSError as exc:
        raise ResultsError(f"{where}: cannot read ({exc.strerror or exc})") from None
    if not text or text.isspace():
        raise ResultsError(f"{where}: file is empty")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        # The parser stopping at the end of the text (or inside a string that never closes) is what a
        # file cut off mid-write looks like.
        ended = exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string")
        hint = " (truncated?)" if ended else ""
        raise ResultsError(
            f"{where}: not valid JSON{hint}: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise ResultsError(f"{where}: JSON nested too deeply to be a results file") from None
    finite = not _maybe_nonfinite(text)
    del text
    return parse_results(data, where, known_finite=finite)


def parse_results(data: Any, where: str, *, known_finite: bool = False) -> Results:
    """Validate already-parsed JSON ``data`` read from ``where``. ``known_finite``: the caller has
    established that no number in ``data`` is NaN or infinite (skips that check)."""
    if not isinstance(data, Mapping):
        raise ResultsError(
            f"{where}: not a pytest-benchmark file (top level is a JSON {_json_type(data)}, expected an object)"
        )
    missing = [k for k in ("machine_info", "benchmarks") if k not in data]
    if missing:
        raise ResultsError(f"{where}: not a pytest-benchmark file (no {' or '.join(repr(k) for k in missing)} key)")
    machine_info = data["machine_info"]
    if not isinstance(machine_info, Mapping):
        raise ResultsError(f"{where}: not a pytest-benchmark file ('machine_info' is not an object)")
    benchmarks = data["benchmarks"]
    if not isinstance(benchmarks, list):
        raise ResultsError(f"{where}: not a pytest-benchmark file ('benchmarks' is not a list)")
    failed = data.get(FAILED_KEY, [])
    if not isinstance(failed, list):
        raise ResultsError(f"{where}: field {FAILED_KEY!r} is not a list")
    if not benchmarks and not failed:
        raise ResultsError(f"{where}: no benchmarks (the run measured nothing)")
    env = Environment.from_machine_info(machine_info, where)

    by_name: dict[str, Benchmark] = {}
    first_index: dict[str, str] = {}
    entries = [("benchmarks", i, item) for i, item in enumerate(benchmarks)]
    entries += [(FAILED_KEY, i, item) for i, item in enumerate(failed)]
    for key, index, item in entries:
        bench = _parse_benchmark(item, index, where, key=key, check_finite=not known_finite)
        label = f"{key}[{index}]" if key != "benchmarks" else str(index)
        if bench.name in by_name:
            raise ResultsError(
                f"{where}: benchmark {bench.name!r}: duplicate name (entries {first_index[bench.name]} and "
                f"{label}); a results file holds each benchmark once"
            )
        by_name[bench.name] = bench
        first_index[bench.name] = label
    envelope = {k: v for k, v in data.items() if k not in ("benchmarks", FAILED_KEY)}
    return Results(path=where, envelope=envelope, env=env, benchmarks=by_name)


def is_failed_entry(item: Mapping[str, Any]) -> bool:
    """Whether a benchmark object is of a case that did not measure cleanly: no stats, or a record
    whose status is not ``ok`` (stats pytest-benchmark kept for it do not measure the case)."""
    extra = item.get("extra_info")
    status = extra.get("status", "ok") if isinstance(extra, Mapping) else "ok"
    return item.get("stats") is None or status != "ok"


def attach_failed(output_json: dict[str, Any], entries: list[dict[str, Any]]) -> None:
    """Put the benchmark objects of failed cases where pytest-benchmark's readers do not look.

    ``entries`` (benchmark objects whose stats are null, e.g. cases pytest-benchmark dropped because
    they raised) go to ``output_json["archbench_failed"]``; so does any object already under
    ``benchmarks`` that :func:`is_failed_entry` (e.g. an interrupted case whose partial stats
    pytest-benchmark kept). ``benchmarks`` is left holding only cleanly measured cases, exactly as
    pytest-benchmark wrote them; the key is added only when something failed."""
    benchmarks = output_json.setdefault("benchmarks", [])
    moved = [b for b in benchmarks if is_failed_entry(b)]
    if moved:
        benchmarks[:] = [b for b in benchmarks if not is_failed_entry(b)]
    failed = moved + list(entries)
    if failed:
        output_json.setdefault(FAILED_KEY, []).extend(failed)


def _parse_benchmark(
    item: Any, index: int, where: str, *, key: str = "benchmarks", check_finite: bool = True
) -> Benchmark:
    if not isinstance(item, Mapping):
        raise ResultsError(f"{where}: {key}[{index}] is a JSON {_json_type(item)}, expected an object")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise ResultsError(f"{where}: {key}[{index}] has no 'name'")
    here = f"{where}: benchmark {name!r}"
    if "extra_info" not in item:
        raise ResultsError(f"{here}: no 'extra_info'; not an archbench benchmark")
    extra = item["extra_info"]
    status = extra.get("status", "ok") if isinstance(extra, Mapping) else "ok"
    if check_finite:
        _check_finite(extra, "extra_info", here, lenient=status != "ok")
    try:
        record = Record.from_extra_info(extra, where=here)
    except RecordError as exc:
        raise ResultsError(str(exc)) from None
    except TypeError as exc:  # a field of the wrong shape reached the dataclass
        raise ResultsError(f"{here}: malformed extra_info ({exc})") from None
    _check_record_types(record, here)
    _fill_medians(record)
    # The comparator reads the record's own samples; pytest-benchmark's stats are kept for display and
    # may be null or empty for a case that failed before it was timed.
    stats = _parse_stats(item.get("stats"), here, check_finite=check_finite)
    group = item.get("group")
    return Benchmark(name=name, group=group if isinstance(group, str) else None, record=record, stats=stats, raw=item)


def _check_record_types(record: Record, here: str) -> None:
    """Metric values must be numbers and samples lists of numbers: a string where a number belongs
    would otherwise surface as a crash deep inside the comparator."""
    for key, metric in METRICS.items():
        value = getattr(record, key, None)
        if value is not None and not _is_number(value):
            raise ResultsError(f"{here}: field 'extra_info.{key}' is {value!r}, expected a number")
        lo, hi = metric.bounds
        if value is not None and not lo <= value <= hi:
            raise ResultsError(f"{here}: field 'extra_info.{key}' is {value!r}, impossible for {_range_text(lo, hi)}")
    for name in SAMPLED:
        key = quantity(name).samples
        samples = getattr(record, key)
        if samples is not None and (not isinstance(samples, list) or not all(_is_number(v) for v in samples)):
            raise ResultsError(f"{here}: field 'extra_info.{key}' is not a list of numbers")
        if samples and min(samples) < 0:
            raise ResultsError(f"{here}: field 'extra_info.{key}' holds {min(samples)!r}, impossible for a duration")
    for key, lo in _AT_LEAST.items():
        value = getattr(record, key)
        if value is not None and value < lo:
            raise ResultsError(f"{here}: field 'extra_info.{key}' is {value!r}, expected at least {lo}")
    if record.curve is not None and (
        not isinstance(record.curve, list) or not all(isinstance(p, Mapping) for p in record.curve)
    ):
        raise ResultsError(f"{here}: field 'extra_info.curve' is not a list of per-epoch objects")


#: Record fields beyond the metrics that no measurement can take below a floor: the shape of what was
#: measured, and the spread of the seeds' accuracies.
_AT_LEAST: Mapping[str, float] = {
    "batch_size": 1, "input_size": 1, "in_channels": 1, "num_classes": 1, "threads": 1, "train_steps": 0, "epochs": 0,
    "accuracy_val_spread": 0.0, "accuracy_test_spread": 0.0, "accuracy_test_deformed_spread": 0.0,
}


def _range_text(lo: float, hi: float) -> str:
    return "a fraction (0 to 1)" if (lo, hi) == (0.0, 1.0) else "a count, duration, size or rate (at least 0)"


def _fill_medians(record: Record) -> None:
    """Derive ``time_<x>_s`` from ``samples_<x>_s`` where a writer stored only the samples: the
    median is defined by the samples (see :mod:`bench.record.schema`), and the comparator reads the median."""
    for name in SAMPLED:
        samples = record.samples(name)
        if samples and record.median(name) is None:
            setattr(record, quantity(name).time, statistics.median(samples))


def _parse_stats(stats: Any, here: str, *, check_finite: bool = True) -> Stats | None:
    if stats is None:
        return None
    if not isinstance(stats, Mapping):
        raise ResultsError(f"{here}: field 'stats' is a JSON {_json_type(stats)}, expected an object")
    if check_finite:
        _check_finite(stats, "stats", here, lenient=False)
    rounds = stats.get("rounds", 0)
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 0:
        raise ResultsError(f"{here}: field 'stats.rounds' is {rounds!r}, expected a count")
    values: dict[str, float | None] = {}
    for key in _STATS_NUMERIC:
        value = stats.get(key)
        if value is not None and not _is_number(value):
            raise ResultsError(f"{here}: field 'stats.{key}' is {value!r}, expected a number")
        if value is not None and value < 0:
            raise ResultsError(f"{here}: field 'stats.{key}' is {value!r}, impossible for a time (at least 0)")
        values[key] = value
    data = stats.get("data")
    if data is not None:
        if not isinstance(data, list) or not all(_is_number(v) for v in data):
            raise ResultsError(f"{here}: field 'stats.data' is not a list of numbers")
        if data and min(data) < 0:
            raise ResultsError(f"{here}: field 'stats.data' holds {min(data)!r}, impossible for a time (at least 0)")
        data = tuple(float(v) for v in data)
    return Stats(
        rounds=rounds,
        median=values["median"],
        mean=values["mean"],
        min=values["min"],
        max=values["max"],
        data=data,
    )


def _check_finite(value: Any, path: str, here: str, *, lenient: bool) -> None:
    """Refuse NaN and ±inf anywhere under ``value``. A failed case (``lenient``) may carry a non-finite
    loss: that is how divergence shows, and its metrics are never compared."""
    if isinstance(value, float):
        if not math.isfinite(value):
            if lenient and (path.startswith(("extra_info.loss_", "extra_info.curve"))):
                return
            raise ResultsError(f"{here}: field {path!r} is {value} (not a finite number)")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _check_finite(item, f"{path}.{key}", here, lenient=lenient)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_finite(item, f"{path}[{i}]", here, lenient=lenient)


def _is_number(value: Any) -> bool:
    # JSON gives exactly int or float; the type test is the fast path, isinstance the general one
    return type(value) in (int, float) or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


#: Record fields read inside each measurement whose difference is reported (but does not block):
#: training forces cuDNN determinism and timing does not, so a run holds both values of each.
_NOTED_SETTINGS = ("cudnn_deterministic", "cudnn_benchmark")


#: Environment fields whose difference is reported (but does not block).
_NOTED_ENV_FIELDS = (
    "device_name", "cpu", "torch", "torchvision", "cuda", "cudnn", "threads", "deterministic", "suite_version",
)


def environment_differences(base: Results, head: Results) -> tuple[list[str], list[str]]:
    """(blocking, noted) differences between two runs' environments, each naming both files.
    Blocking: the devices, profiles, execution modes or TF32 settings differ (the numbers measure
    different things). Noted: torch, the device's name, threads and the like (the numbers are
    comparable, with care), and a numerics field that one of the files does not record."""
    blocking: list[str] = []
    noted: list[str] = []
    for label, b_vals, h_vals in (
        ("device", base.devices, head.devices),
        ("profile", base.profiles, head.profiles),
    ):
        if b_vals != h_vals:
            blocking.append(f"{label}: {base.path} has {_set_text(b_vals)}, {head.path} has {_set_text(h_vals)}")
    unrecorded: dict[str, list[str]] = {}
    for name in (*MODE_FIELDS, *_NOTED_SETTINGS):
        b_set, h_set = base.settings(name), head.settings(name)
        if b_set and h_set and b_set != h_set:
            text = f"{name}: {base.path} has {_set_text(b_set)}, {head.path} has {_set_text(h_set)}"
            (blocking if name in MODE_FIELDS else noted).append(text)
        elif bool(b_set) != bool(h_set):
            # a file from before the field existed: what it ran under is unknown, not different
            unrecorded.setdefault(head.path if b_set else base.path, []).append(name)
    noted += [f"{path} does not record {', '.join(names)} (written before archbench read them)"
              for path, names in unrecorded.items()]
    noted += [
        f"{name}: {base.path} has {getattr(base.env, name)!r}, {head.path} has {getattr(head.env, name)!r}"
        for name in _NOTED_ENV_FIELDS
        if getattr(base.env, name) != getattr(head.env, name)
    ]
    b_gpu, h_gpu = base.env.gpu or {}, head.env.gpu or {}
    if b_gpu.get("driver") != h_gpu.get("driver"):
        noted.append(f"GPU driver: {base.path} has {b_gpu.get('driver')!r}, {head.path} has {h_gpu.get('driver')!r}")
    return blocking, noted


def _set_text(values: frozenset[str]) -> str:
    return " + ".join(sorted(values))
