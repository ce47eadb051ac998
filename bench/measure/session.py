"""One measurement session: what ``pytest bench/``, a ``bench ab`` worker and ``bench profile`` all run.

A :class:`Session` is opened once per run from the run's :class:`~bench.record.options.RunOptions`
(:meth:`Session.open` checks every option against this machine first, :func:`check`). It holds the
device, the profile, the modes and the initial weights, caches what several records of a case share
(static cost, data splits), makes each record, forces the failures ``--bench-fail`` asks for, and appends
every finished record to the partial JSON-lines file.

A case is measured in stages, in this order, whoever drives them:

``step`` (:class:`StepRun`)
    1. static cost: params and MACs at the native input (once per case and session);
    2. prepare: build at the profile's input, warm up training steps and inference passes;
    3. rounds: each a phased step, a whole step and an inference pass (:class:`StepRound`);
    4. modules, with ``--bench-modules``: the per-module breakdown in rounds of its own; a breakdown that
       fails keeps everything else and makes the status ``error``;
    5. finish: telemetry after the rounds, a memory round, MACs at the run's input, an energy window.
``train`` (:class:`TrainRun`)
    data splits (cached), then every seed's trainer, each epoch a round, then the accuracies.

:meth:`Session.measure_step` and :meth:`Session.measure_train` run the stages in that order (``pytest
bench/``, which hands each round's whole step to pytest-benchmark's timer, and ``bench profile``, which
alternates its breakdown rounds with the ordinary ones). A ``bench ab`` worker runs the same stages one
request at a time, since the controller spreads the rounds over several processes and alternates them
with the other side's (:mod:`bench.measure.worker`).

``--bench-fail`` kinds force, in a case: ``error``, ``oom``, ``interrupt`` on its first timed round (or
epoch); ``modules`` in the breakdown stage only; ``crash`` (the process exits) and ``hang`` (it never
answers) when the case is built.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bench.measure.cases import select
from bench.measure.devices import Device, DeviceError, make_device
from bench.measure.weights import WeightsLoader
from bench.record.derive import step_fields
from bench.record.modes import FLAGS, Modes, ModeUnavailable
from bench.record.options import OptionError, RunOptions
from bench.record.profiles import Profile, default_profile_name, get_profile
from bench.record.schema import PHASES, Kind, Record
from bench.record.write import append_line
from suites.registry import Case


class InjectedFailure(RuntimeError):
    """A failure asked for with ``--bench-fail`` (testing the harness itself)."""


# ------------------------------------------------------------------------------------------------------
# before any case: every option against this machine
# ------------------------------------------------------------------------------------------------------


def check(options: RunOptions, *, device: Device | None = None, sides: bool = False, one_side: bool = False) -> Device:
    """Check what only this machine can tell, before any case is built, and return the device. Raises
    :class:`~bench.record.options.OptionError` naming the option, the value and what would do: a
    device that is not here, a mode it cannot run, a selection that matches no case, weights or a
    dataset that are not where they are expected, a ``--bench-fail`` side outside ``bench ab``
    (``sides``: the options come from ``bench ab``). ``one_side``: this is one side of ``bench ab``,
    where a selection may match nothing (a case or suite the other side alone has)."""
    if not sides:
        for spec in options.fail:
            if spec.side is not None:
                raise OptionError("--bench-fail", f"{str(spec)!r}: a side (base/, head/) is for bench ab only")
    if device is None:
        try:
            device = make_device(options.device, threads=options.threads, malloc=options.malloc)
        except DeviceError as exc:
            raise OptionError("--bench-device", f"{options.device!r}: {exc}") from None
    try:
        device.check_modes(options.modes)
    except ModeUnavailable as exc:
        flag = next((f for f in FLAGS.values() if str(exc).startswith(f)), "--bench-precision")
        raise OptionError(flag, str(exc)) from None
    cases = selected_cases(options, empty_ok=one_side)
    if "train" in options.kinds:
        _check_weights(options, cases)
        _check_data(options)
    return device


def selected_cases(options: RunOptions, *, empty_ok: bool = False) -> list[Case]:
    """The cases ``--bench-case`` and ``--bench-suite`` select (all without either); OptionError for an
    unknown suite or a selection that matches nothing, unless ``empty_ok``."""
    try:
        cases = select(options.cases, options.suites)
    except KeyError as exc:
        if empty_ok:
            return []
        raise OptionError("--bench-suite", str(exc.args[0])) from None
    except ValueError as exc:  # a configuration a suite cannot build (resnet50_dcn_9999)
        raise OptionError("--bench-case", str(exc)) from None
    if not cases and not empty_ok:
        raise OptionError("--bench-case", f"{list(options.cases)} --bench-suite {list(options.suites)}: no case "
                          "matches; `bench list` shows the cases")
    return cases


def _check_weights(options: RunOptions, cases: Sequence[Case]) -> None:
    from bench.measure.weights import WeightsError, missing_files, parse_choice

    try:
        choice = parse_choice(options.weights, options.allow_download)
    except WeightsError as exc:
        raise OptionError("--bench-weights", str(exc)) from None
    problem = missing_files(choice, cases if choice.kind == "pretrained" else [])
    if problem is not None:
        raise OptionError("--bench-weights", problem)


def _check_data(options: RunOptions) -> None:
    from bench.measure.data import DatasetNotFound, require

    try:
        require(options.data, Path(options.data_root) if options.data_root else None)
    except DatasetNotFound as exc:
        raise OptionError("--data-root" if options.data_root else "--bench-data", str(exc)) from None
    except ValueError as exc:
        raise OptionError("--bench-data", f"{options.data!r}: {exc}") from None


# ------------------------------------------------------------------------------------------------------
# the session
# ------------------------------------------------------------------------------------------------------


def benchmark_name(kind: str, case: str) -> str:
    """The benchmark's name in a results file, as pytest names ``bench/test_cases.py``'s tests."""
    return f"test_{kind}[{case}]"


def benchmark_fullname(kind: str, case: str) -> str:
    return f"bench/test_cases.py::{benchmark_name(kind, case)}"


def partial_line(kind: str, case: str, extra_info: Mapping[str, Any]) -> str:
    """One line of a partial JSON-lines file: the benchmark's names and its record (``extra_info``)."""
    return json.dumps({"name": benchmark_name(kind, case), "fullname": benchmark_fullname(kind, case),
                       "extra_info": extra_info}, allow_nan=True)


@dataclass
class Session:
    """The state of one run (see the module docstring): built by :meth:`open`, never from a dict."""

    options: RunOptions
    device: Device
    profile: Profile
    #: ``--bench-weights``: what each training case starts from (bench/measure/weights.py).
    weights: WeightsLoader
    #: One selection per session: a side of ``bench ab`` may select nothing.
    one_side: bool = False
    _static: dict[str, Any] = field(default_factory=dict)
    _splits: dict[tuple[Any, ...], Any] = field(default_factory=dict)

    @classmethod
    def open(cls, options: RunOptions, *, device: Device | None = None, one_side: bool = False) -> Session:
        """Check ``options`` (:func:`check`) and set the session up; nothing is built or measured yet.
        ``one_side``: a side of ``bench ab`` (its selection may be empty)."""
        from bench.measure.weights import parse_choice

        device = check(options, device=device, one_side=one_side)
        name = options.profile or default_profile_name(device.kind == "cuda")
        profile = get_profile(name).override(
            batch_size=options.batch_size, rounds=options.rounds, warmup_rounds=options.warmup,
            warmup_min_s=options.warmup_time, train_epochs=options.epochs,
        )
        weights = WeightsLoader(parse_choice(options.weights, options.allow_download))
        return cls(options, device, profile, weights, one_side)

    @property
    def modes(self) -> Modes:
        return self.options.modes

    def cases(self) -> list[Case]:
        return selected_cases(self.options, empty_ok=self.one_side)

    def machine_info(self) -> dict[str, Any]:
        """``machine_info.archbench``: the device, profile, seed, library versions, data and modes."""
        from bench.measure.provenance import archbench_info

        info = archbench_info(self.device, self.profile, self.options.seed, self.options.data)
        info.update(self.modes.fields())  # what every record of the run asked for (docs/modes.md)
        return info

    # -- what every record of a case starts with ---------------------------------------------------------
    def new_record(self, case: Case, kind: Kind) -> Record:
        """A record that already names its case, the run's profile, device and modes (so that a case that
        fails before it measures still says them)."""
        record = Record(case=case.name, suite=case.suite, kind=kind, profile=self.profile.name,
                        device=self.device.kind, in_channels=case.in_channels, threads=self.device.threads)
        record.update(self.modes.fields())
        return record

    def add_static(self, case: Case, record: Record) -> None:
        """Params and MACs at the case's native input (batch 1), counted once per case and session."""
        if case.name not in self._static:
            from bench.measure.flops import static_cost

            self._static[case.name] = static_cost(case.build(), case.input_size, case.in_channels)
        cost = self._static[case.name]
        record.params_total, record.params_trainable = cost.params_total, cost.params_trainable
        record.macs_forward, record.unsupported_ops = cost.macs_forward, dict(cost.unsupported_ops)

    def splits(self, case: Case) -> Any:
        """The training data at the case's training size, built once per size and channels."""
        from bench.measure import data

        options = self.options
        key = (options.data, options.data_root, self.profile.train_input_size(case.input_size), case.in_channels)
        if key not in self._splits:
            self._splits[key] = data.load(
                options.data, root=Path(options.data_root) if options.data_root else None, image_size=key[2],
                channels=key[3], samples=self.profile.train_samples, seed=options.seed,
            )
        return self._splits[key]

    def inject(self, case: Case, stage: str) -> None:
        """Force the failure ``--bench-fail`` asks for in ``case`` if it belongs to ``stage``
        (``prepare``, ``round`` or ``modules``; the module docstring says which kind fires where)."""
        kind = self.options.failure(case.name)
        if kind is None:
            return
        if stage == "prepare" and kind == "crash":
            os._exit(3)
        if stage == "prepare" and kind == "hang":
            while True:
                time.sleep(3600)
        if stage == "modules" and kind == "modules":
            raise InjectedFailure(f"injected failure in {case.name}'s breakdown (--bench-fail)")
        if stage == "round" and kind == "interrupt":
            raise KeyboardInterrupt(f"injected interrupt in {case.name} (--bench-fail)")
        if stage == "round" and kind == "oom":
            raise MemoryError(f"injected out-of-memory in {case.name} (--bench-fail)")
        if stage == "round" and kind == "error":
            raise InjectedFailure(f"injected failure in {case.name} (--bench-fail)")

    def status_of(self, exc: BaseException) -> tuple[str, str]:
        """(status, error) a record gets for a failure: ``oom`` for the device's out-of-memory errors."""
        return ("oom" if self.device.is_oom(exc) else "error"), f"{type(exc).__name__}: {exc}"

    # -- measuring ---------------------------------------------------------------------------------------
    def step(self, case: Case, *, static: bool = True) -> StepRun:
        """The step stages of ``case``, built (``static``: its static cost counted first)."""
        return StepRun(self, case, static=static)

    def train(self, case: Case) -> TrainRun:
        return TrainRun(self, case)

    @contextlib.contextmanager
    def recording(self, record: Record, store: Callable[[Record], None]) -> Iterator[Record]:
        """Measure into ``record`` under the device's settings; whatever happens, hand it to ``store``
        (and the partial file) with its status: ``oom`` or ``error`` for an exception, which ends here;
        ``interrupted`` for Ctrl-C, which goes on up."""
        try:
            with self.device.settings():
                yield record
        except KeyboardInterrupt:
            record.status, record.error = "interrupted", "KeyboardInterrupt"
            self._store(record, store)
            raise
        except Exception as exc:  # noqa: BLE001 - the case's failure is its status; the run goes on
            record.status, record.error = self.status_of(exc)  # type: ignore[assignment]
        self._store(record, store)

    def _store(self, record: Record, store: Callable[[Record], None]) -> None:
        store(record)
        if self.options.partial is not None:
            append_line(self.options.partial, partial_line(record.kind, record.case, record.to_extra_info()))

    def measure_step(self, case: Case, store: Callable[[Record], None] = lambda r: None,
                     timer: RoundTimer | None = None, *, interleave_modules: bool = False) -> Record:
        """Every step stage of ``case`` in order (module docstring). ``timer`` times each round's whole
        step itself (pytest-benchmark's). ``interleave_modules``: each breakdown round right after an
        ordinary round instead of after all of them (``bench profile``: the overhead then compares rounds
        that saw the same machine)."""
        record = self.new_record(case, "step")
        with self.recording(record, store):
            run = StepRun(self, case, record=record)
            try:
                run.prepare()
                modules = self.options.modules
                if modules and interleave_modules:
                    run.keep_modules(run.modules_static)
                    for _ in range(self.profile.rounds):
                        run.round()
                        run.keep_modules(run.modules_round)
                else:
                    run.rounds(self.profile.rounds, timer)
                    if modules:
                        run.keep_modules(run.modules_static)
                        for _ in range(self.options.modules_rounds or self.profile.rounds):
                            run.keep_modules(run.modules_round)
                run.finish()
            finally:
                run.close()
        return record

    def measure_train(self, case: Case, store: Callable[[Record], None] = lambda r: None,
                      timer: EpochTimer | None = None) -> Record:
        """Every train stage of ``case``; ``timer`` times each epoch itself (pytest-benchmark's)."""
        record = self.new_record(case, "train")
        with self.recording(record, store):
            run = TrainRun(self, case, record=record)
            try:
                run.epochs(timer)
                run.finish()
            finally:
                run.close()
        return record


class RoundTimer(Protocol):
    """Runs ``rounds`` rounds, timing ``timed`` itself, with ``setup`` before and ``teardown`` after each
    (pytest-benchmark's ``pedantic``)."""

    def __call__(self, timed: Callable[[], None], setup: Callable[[], None], teardown: Callable[[], None],
                 rounds: int) -> None: ...


class EpochTimer(Protocol):
    """Runs ``rounds`` epochs, timing ``timed`` itself, with the untimed ``setup`` before each."""

    def __call__(self, timed: Callable[[], object], setup: Callable[[], None], rounds: int) -> None: ...


# ------------------------------------------------------------------------------------------------------
# a step case
# ------------------------------------------------------------------------------------------------------


@dataclass
class StepRound:
    """One timed round: the phased step (each phase timed on its own), the whole step (timed without
    synchronising between its phases) and an inference pass. The phased step comes first in even rounds
    and after the whole one in odd ones, so that neither always runs straight after a pause. Split in
    three so that a driver can time the whole step with its own timer."""

    run: StepRun
    index: int

    def before(self) -> None:
        if self.index % 2 == 0:
            self.run.bench.train_step()

    def timed(self) -> None:
        self.run.session.inject(self.run.case, "round")
        self.run.bench.whole_step()

    def after(self) -> None:
        if self.index % 2 == 1:
            self.run.bench.train_step()
        self.run.bench.inference_round()

    def sample(self) -> dict[str, float]:
        """This round's times: the phases, inference and the whole step (``whole``)."""
        bench = self.run.bench
        return {"whole": bench.whole[-1], **{p: bench.samples[p][-1] for p in PHASES}}


class StepRun:
    """The step stages of one case (module docstring), each filling :attr:`record` as it ends, so that a
    later failure never loses what was measured."""

    def __init__(self, session: Session, case: Case, *, static: bool = True, record: Record | None = None) -> None:
        from bench.measure.harness import StepBenchmark

        self.session, self.case = session, case
        profile = session.profile
        self.record = record if record is not None else session.new_record(case, "step")
        self.record.batch_size = profile.batch_size
        self.record.input_size = profile.input_size(case.input_size)
        self.record.num_classes = case.num_classes
        self._static = static
        if static:
            session.add_static(case, self.record)
        session.inject(case, "prepare")
        self.bench = StepBenchmark(case, session.device, profile.batch_size, self.record.input_size,
                                   seed=session.options.seed, modes=session.modes)
        self._rounds = 0
        self._modules_failure: tuple[str, str] | None = None

    def _update(self) -> None:
        self.record.update(self.bench.record_fields())
        self.record.update(step_fields(self.record))

    def prepare(self) -> None:
        """Warm up training steps and inference passes (with compile: at least one of each, so that no
        timed round compiles), then read the device's telemetry."""
        profile = self.session.profile
        try:
            self.bench.warmup(profile.warmup_rounds, profile.warmup_min_s)
            self.bench.run_inference(0, profile.warmup_rounds)
            self.session.device.synchronize()
            self.bench.snapshot("before")
        finally:
            self._update()

    def next_round(self) -> StepRound:
        round_ = StepRound(self, self._rounds)
        self._rounds += 1
        return round_

    def round(self) -> dict[str, float]:
        """One whole round (:class:`StepRound`); returns its times."""
        r = self.next_round()
        r.before()
        r.timed()
        r.after()
        return r.sample()

    def rounds(self, count: int, timer: RoundTimer | None = None) -> None:
        """``count`` rounds, timed by ``timer`` when given (each round's whole step then goes through it)."""
        try:
            if timer is None:
                for _ in range(count):
                    self.round()
            else:
                current: list[StepRound] = []

                def setup() -> None:
                    current[:] = [self.next_round()]
                    current[0].before()

                timer(lambda: current[0].timed(), setup, lambda: current[0].after(), count)
        finally:
            self._update()

    # -- the breakdown (--bench-modules) -------------------------------------------------------------------
    def keep_modules(self, stage: Callable[[], object]) -> None:
        """Run a breakdown stage (:meth:`modules_static`, :meth:`modules_round`) unless one failed
        already; a failure is kept aside, and the case's status says it once every other stage has run:
        a failing breakdown never loses the step record."""
        if self._modules_failure is not None:
            return
        try:
            stage()
        except Exception as exc:  # noqa: BLE001 - kept as the case's status by finish()
            status, error = self.session.status_of(exc)
            self._modules_failure = (status, f"modules: {error}")

    def modules_static(self) -> dict[str, Any]:
        """Parameters, MACs at the run's input and activation memory per module (built on first use)."""
        self.session.inject(self.case, "modules")
        if self.bench.breakdown is None:
            self.bench.modules_prepare(self.session.options.modules_depth)
        return self.bench.measure_modules_static()

    def modules_round(self) -> dict[str, Any]:
        """One breakdown round, never one of the timed rounds."""
        self.session.inject(self.case, "modules")
        if self.bench.breakdown is None:
            self.bench.modules_prepare(self.session.options.modules_depth)
        sample = self.bench.modules_round()
        return {"forward": sample["forward"], "backward": sample["backward"], "modules": sample["modules"]}

    # -- the end -------------------------------------------------------------------------------------------
    def finish(self) -> Record:
        """Telemetry after the rounds, the memory round, MACs at the run's input and the energy window;
        then the record, its status ``error`` if the breakdown failed."""
        profile = self.session.profile
        if not self._static:
            self.session.add_static(self.case, self.record)
        self._update()  # the medians of every round, whoever ran them, before the breakdown's overhead
        self.record.update(self.bench.modules_fields({p: self.record.median(p) for p in ("forward", "backward")}))
        try:
            self.bench.snapshot("after")
            self.bench.measure_memory()
            self.bench.measure_efficiency()
            self.bench.measure_energy(profile.energy_min_s, profile.energy_min_rounds)
        finally:
            self._update()
        if self._modules_failure is not None:
            self.record.status, self.record.error = self._modules_failure  # type: ignore[assignment]
        return self.record

    def close(self) -> None:
        self.bench.close()
        self.session.device.release_cached_memory()


# ------------------------------------------------------------------------------------------------------
# a train case
# ------------------------------------------------------------------------------------------------------


class TrainRun:
    """Fixed-budget training of one case under each seed of the run, on the same data: every seed's
    epochs are rounds (``len(seeds) × epochs``)."""

    def __init__(self, session: Session, case: Case, *, record: Record | None = None) -> None:
        from bench.measure.harness import telemetry_fields
        from bench.measure.train import SeededTraining, Trainer

        self.session, self.case = session, case
        profile = session.profile
        self.record = record if record is not None else session.new_record(case, "train")
        self.record.weights = session.weights.identity(case)  # said even if loading them fails
        session.add_static(case, self.record)
        session.inject(case, "prepare")
        splits = session.splits(case)
        self.record.batch_size, self.record.input_size = profile.train_batch_size, splits.image_size
        self._telemetry_fields = telemetry_fields
        self.training = SeededTraining(
            lambda seed: Trainer(case, splits, profile, seed=seed, device=session.device, modes=session.modes,
                                 weights=session.weights),
            session.options.seed_list, profile.train_epochs,
        )
        self._before = session.device.telemetry()

    @property
    def rounds(self) -> int:
        return self.training.rounds

    def prepare(self) -> None:
        """Build the next seed's trainer if its first epoch is next (untimed)."""
        self.training.prepare()

    def epoch(self) -> float:
        """The next epoch; its seconds (training steps only)."""
        self.session.inject(self.case, "round")
        return self.training.run_epoch()

    def epochs(self, timer: EpochTimer | None = None) -> None:
        if timer is None:
            for _ in range(self.rounds):
                self.prepare()
                self.epoch()
        else:
            timer(self.epoch, self.prepare, self.rounds)

    def finish(self) -> Record:
        record = self.record
        record.update(self._telemetry_fields(self._before, self.session.device.telemetry()))
        record.update(self.training.result())
        record.set_samples("epoch", record.samples("epoch") or [])
        return record

    def close(self) -> None:
        self.training.close()
        self.session.device.release_cached_memory()
