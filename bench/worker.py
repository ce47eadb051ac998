"""One side of ``bench ab``: a process that measures its own checkout's cases, one request at a time.

``bench ab`` starts one worker per side as ``python -m bench.worker`` with the side's checkout first on
``sys.path``, so the worker imports that side's ``bench`` and ``suites``, never another copy. The
controller then sends requests, one JSON object a line on stdin, and reads one JSON reply a line on the
worker's original stdout (anything the models or libraries print goes to stderr instead). The two
workers never run at the same time: the controller waits for one reply before it sends the next request.

Requests (``op``) and what they do:

``hello``          protocol handshake: ``{"protocol": N}`` → this side's protocol, version and root
``setup``          device, profile and selection (the ``--bench-*`` options by dest) → machine and
                   commit info
``cases``          the names of the selected cases
``step_prepare``   build the case, count its static cost, warm up (training step and inference)
``step_round``     one timed round: a training step (forward, backward, optimizer each timed), the same
                   step timed as a whole without synchronisation between its phases (in alternating
                   order), and one inference pass → the four times, the phased step's wall time
                   (``step``) and the whole step's device time (``whole``)
``modules_round``  with ``--bench-modules``: one breakdown round (bench/modules.py), after the step
                   rounds → the whole forward and backward times and, per module name, [forward,
                   backward, calls] (the first call on a worker runs one untimed round before it)
``modules_static`` with ``--bench-modules``: parameters, MACs and activation memory per module
``step_finish``    peak memory, then the step record and pytest-benchmark stats
``train_prepare``  build the trainer on the profile's dataset
``train_epoch``    one timed epoch
``train_finish``   the train record and stats
``drop``           forget a case's state

A request that fails replies ``{"ok": false, "status": "error"|"oom"|"diverged", "error": "..."}`` and
the worker stays usable; only a crash or a hang ends it, and the controller then starts a fresh one.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

#: Bumped when a request or reply changes shape; ``bench ab`` refuses a side that speaks another.
PROTOCOL = 1
#: The first archbench version with this worker (what ``bench ab`` tells a side too old to have one).
FIRST_VERSION = "0.2.0"


class Injected(RuntimeError):
    """A failure asked for with ``--bench-fail`` (testing the harness itself)."""


@dataclass
class Worker:
    """State of one side: its device, profile, options, and the case being measured."""

    options: dict[str, Any] = field(default_factory=dict)
    device: Any = None
    profile: Any = None
    modes: Any = None
    weights: Any = None
    settings: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    cases: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, Any] = field(default_factory=dict)
    step_times: dict[str, list[float]] = field(default_factory=dict)
    trainers: dict[str, Any] = field(default_factory=dict)
    static: dict[str, Any] = field(default_factory=dict)
    splits: dict[tuple[Any, ...], Any] = field(default_factory=dict)

    # -- requests ---------------------------------------------------------------------------------------
    def hello(self, protocol: int) -> dict[str, Any]:
        import bench

        return {"protocol": PROTOCOL, "version": bench.__version__, "root": str(Path(bench.__file__).resolve().parent.parent),
                "worker": str(Path(__file__).resolve()), "python": sys.executable, "accepted": protocol == PROTOCOL}

    def setup(self, options: dict[str, Any]) -> dict[str, Any]:
        from pytest_benchmark.plugin import pytest_benchmark_generate_machine_info
        from pytest_benchmark.utils import get_commit_info

        from bench.devices import make_device
        from bench.modes import Modes
        from bench.profiles import default_profile_name, get_profile
        from bench.provenance import archbench_info

        self.options = dict(options)
        self.modes = Modes.from_options(options)  # an unknown mode fails the setup, naming the option
        self.weights = self._weights()  # so do weights that are not there, before any case is measured
        self.device = make_device(options.get("bench_device"), threads=options.get("bench_threads"),
                                  malloc=options.get("bench_malloc") or "steady")
        self.modes.check(self.device.kind)  # so does one this device cannot run (fp16 on the CPU)
        name = options.get("bench_profile") or default_profile_name(self.device.kind == "cuda")
        self.profile = get_profile(name).override(
            batch_size=options.get("bench_batch_size"),
            rounds=options.get("bench_rounds"),
            warmup_rounds=options.get("bench_warmup"),
            warmup_min_s=options.get("bench_warmup_time"),
            train_epochs=options.get("bench_epochs"),
        )
        # Held for the worker's life: thread count and allocator settings apply to every case.
        self.settings.enter_context(self.device.settings())
        machine_info = pytest_benchmark_generate_machine_info()
        machine_info["archbench"] = archbench_info(self.device, self.profile, self.seed, self.data)
        machine_info["archbench"].update(self.modes.fields())
        return {"machine_info": machine_info, "commit_info": get_commit_info()}

    def list_cases(self) -> dict[str, Any]:
        from bench.listing import select

        cases = select(list(self.options.get("bench_case") or []), list(self.options.get("bench_suite") or []))
        self.cases = {c.name: c for c in cases}
        return {"cases": [{"name": c.name, "suite": c.suite} for c in cases]}

    def step_prepare(self, case: str, static: bool = True) -> dict[str, Any]:
        """Build and warm up; ``static``: also count params and MACs (one worker per side does)."""
        from bench.harness import StepBenchmark

        c = self._case(case)
        self._inject(case, "prepare")
        profile = self.profile
        if static:
            self._static(c)
        run = StepBenchmark(c, self.device, profile.batch_size, profile.input_size(c.input_size), seed=self.seed,
                            modes=self.modes)
        try:
            run.warmup(profile.warmup_rounds, profile.warmup_min_s)
            run.run_inference(0, profile.warmup_rounds)  # warm-up only (with compile: at least one)
            if self.options.get("bench_modules"):
                run.modules_prepare(int(self.options.get("bench_modules_depth") or 2))
            self.device.synchronize()
            run.snapshot("before")
        except BaseException:
            run.close()
            raise
        self.steps[case] = run
        self.step_times[case] = []
        return {}

    def step_round(self, case: str) -> dict[str, Any]:
        run = self.steps[case]
        self._inject(case, "round")

        def phased() -> float:
            start = time.perf_counter()
            run.train_step()
            return time.perf_counter() - start

        # the phased and the whole step in alternating order, as pytest bench/ takes them
        if len(self.step_times[case]) % 2 == 0:
            step = phased()
            run.whole_step()
        else:
            run.whole_step()
            step = phased()
        self.step_times[case].append(step)
        run.inference_round()
        return {"step": step, "whole": run.whole[-1],
                **{p: run.samples[p][-1] for p in ("forward", "backward", "optimizer", "inference")}}

    def modules_round(self, case: str) -> dict[str, Any]:
        """One breakdown round (``--bench-modules``), never one of the step rounds."""
        self._inject(case, "modules")
        sample = self.steps[case].modules_round()
        return {"forward": sample["forward"], "backward": sample["backward"], "modules": sample["modules"]}

    def modules_static(self, case: str) -> dict[str, Any]:
        return {"static": self.steps[case].measure_modules_static()}

    def step_finish(self, case: str) -> dict[str, Any]:
        c, run = self._case(case), self.steps.pop(case)
        try:
            run.snapshot("after")
            run.measure_memory()
            run.measure_efficiency()
            run.measure_energy(self.profile.energy_min_s, self.profile.energy_min_rounds)
        finally:
            run.close()
            self.device.release_cached_memory()
        record = self._record(c, "step")
        record.batch_size, record.input_size, record.num_classes = run.batch_size, run.input_size, c.num_classes
        self._fill_static(c, record)
        record.update(run.record_fields())
        self.step_times.pop(case, None)
        return {"extra_info": record.to_extra_info(), "stats": stats_of(run.whole)}

    def train_prepare(self, case: str) -> dict[str, Any]:
        from bench import data
        from bench.train import Trainer

        c = self._case(case)
        self._inject(case, "prepare")
        name, root = self.data, self.options.get("data_root")
        key = (name, root, self.profile.train_input_size(c.input_size), c.in_channels)
        if key not in self.splits:
            self.splits[key] = data.load(name, root=Path(root) if root else None, image_size=key[2], channels=key[3],
                                         samples=self.profile.train_samples, seed=self.seed)
        self.trainers[case] = Trainer(c, self.splits[key], self.profile, seed=self.seed,
                                      device=self.device.torch_device, modes=self.modes, weights=self.weights)
        return {"epochs": self.profile.train_epochs}

    def train_epoch(self, case: str) -> dict[str, Any]:
        self._inject(case, "round")
        return {"seconds": self.trainers[case].run_epoch()}

    def train_finish(self, case: str) -> dict[str, Any]:
        c, trainer = self._case(case), self.trainers.pop(case)
        trainer.close()
        splits = trainer.splits
        record = self._record(c, "train")
        record.batch_size, record.input_size = self.profile.train_batch_size, splits.image_size
        self._fill_static(c, record)
        record.update(trainer.result())
        record.set_samples("epoch", record.samples_epoch_s or [])
        return {"extra_info": record.to_extra_info(), "stats": stats_of(record.samples_epoch_s or [])}

    def drop(self, case: str) -> dict[str, Any]:
        for held in (self.steps.pop(case, None), self.trainers.pop(case, None)):
            if held is not None:
                held.close()
        self.step_times.pop(case, None)
        return {}

    # -- helpers -------------------------------------------------------------------------------------------
    @property
    def seed(self) -> int:
        return int(self.options.get("bench_seed") or 0)

    @property
    def data(self) -> str:
        return str(self.options.get("bench_data") or "embedded")

    def _weights(self) -> Any:
        """The ``--bench-weights`` loader, after checking that the selected cases' files are there."""
        from bench.listing import select
        from bench.weights import WeightsError, WeightsLoader, missing_files

        loader = WeightsLoader.from_options(self.options)
        if loader.choice.kind == "none" or self.options.get("bench_kind") == "step":
            return loader
        cases = (select(list(self.options.get("bench_case") or []), list(self.options.get("bench_suite") or []))
                 if loader.choice.kind == "pretrained" else [])
        problem = missing_files(loader.choice, cases)
        if problem is not None:
            raise WeightsError(problem)
        return loader

    def _case(self, name: str) -> Any:
        if name not in self.cases:
            from suites.registry import get_case

            self.cases[name] = get_case(name)
        return self.cases[name]

    def _static(self, case: Any) -> Any:
        if case.name not in self.static:
            from bench.flops import static_cost

            self.static[case.name] = static_cost(case.build(), case.input_size, case.in_channels)
        return self.static[case.name]

    def _fill_static(self, case: Any, record: Any) -> None:
        cost = self._static(case)
        record.params_total, record.params_trainable = cost.params_total, cost.params_trainable
        record.macs_forward, record.unsupported_ops = cost.macs_forward, dict(cost.unsupported_ops)

    def _record(self, case: Any, kind: str) -> Any:
        from bench.record import Record

        record = Record(case=case.name, suite=case.suite, kind=kind, profile=self.profile.name,  # type: ignore[arg-type]
                        device=self.device.kind, in_channels=case.in_channels, threads=self.device.threads)
        record.update(self.modes.fields())
        return record

    def _inject(self, case: str, where: str) -> None:
        """``--bench-fail`` for this side: ``error`` and ``oom`` raise on the first round, ``crash``
        ends the process and ``hang`` never answers (what a segfault or a deadlock looks like);
        ``modules`` fails the breakdown rounds only."""
        kind = (self.options.get("inject") or {}).get(case)
        if kind is None or (where != "round" and kind in ("error", "oom")) or (kind == "modules") != (where == "modules"):
            return
        if kind == "crash":
            os._exit(3)
        if kind == "hang":
            while True:
                time.sleep(3600)
        if kind == "oom":
            raise MemoryError(f"injected out-of-memory in {case} (--bench-fail)")
        raise Injected(f"injected failure in {case} (--bench-fail)")


def stats_of(data: list[float]) -> dict[str, Any] | None:
    """pytest-benchmark's ``stats`` object for raw round times, computed by pytest-benchmark itself."""
    from pytest_benchmark.stats import Stats

    if not data:
        return None
    stats = Stats()
    for value in data:
        stats.update(value)
    out = stats.as_dict()
    out["data"] = list(data)
    out["iterations"] = 1
    return out


def serve(requests: IO[str], replies: IO[str], worker: Worker | None = None) -> int:
    """Answer requests until ``exit`` or end of input."""
    worker = worker or Worker()
    handlers: dict[str, Callable[..., dict[str, Any]]] = {
        "hello": worker.hello, "setup": worker.setup, "cases": worker.list_cases,
        "step_prepare": worker.step_prepare, "step_round": worker.step_round, "step_finish": worker.step_finish,
        "modules_round": worker.modules_round, "modules_static": worker.modules_static,
        "train_prepare": worker.train_prepare, "train_epoch": worker.train_epoch,
        "train_finish": worker.train_finish, "drop": worker.drop,
    }
    try:
        for line in requests:
            request = json.loads(line)
            op = request.pop("op", None)
            if op == "exit":
                break
            handler = handlers.get(op or "")
            if handler is None:
                reply: dict[str, Any] = {"ok": False, "status": "error", "error": f"unknown request {op!r}"}
            else:
                reply = _answer(worker, handler, request, keep=op in KEEP_ON_FAILURE)
            replies.write(json.dumps(reply, allow_nan=True) + "\n")
            replies.flush()
    finally:
        worker.settings.close()
    return 0


#: Requests whose failure keeps the case's state: a breakdown that fails must not lose the step record,
#: which ``step_finish`` still makes (the case's status then says what failed).
KEEP_ON_FAILURE = frozenset({"modules_round", "modules_static"})


def _answer(worker: Worker, handler: Callable[..., dict[str, Any]], request: dict[str, Any],
            keep: bool = False) -> dict[str, Any]:
    try:
        return {"ok": True, **handler(**request)}
    except Exception as exc:  # noqa: BLE001 - one case's failure is that case's status; the worker goes on
        status = "oom" if worker.device is not None and worker.device.is_oom(exc) else "error"
        case = request.get("case")
        if case is not None and not keep:
            worker.drop(case)
        return {"ok": False, "status": status, "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(limit=8)}


def main() -> int:
    # Replies go to the stdout we were given; everything else that writes to stdout (a print in a
    # model, a library's banner) must not corrupt them, so fd 1 becomes stderr for the rest of the process.
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return serve(sys.stdin, replies)


if __name__ == "__main__":
    sys.exit(main())
