"""One side of ``bench ab``: a process that measures its own checkout's cases, one request at a time.

``bench ab`` starts one worker per side as ``python -m bench.measure.worker`` with the side's checkout first on
``sys.path``, so the worker imports that side's ``bench`` and ``suites``, never another copy. The
controller then sends requests, one JSON object a line on stdin, and reads one JSON reply a line on the
worker's original stdout (anything the models or libraries print goes to stderr instead). The two
workers never run at the same time: the controller waits for one reply before it sends the next request.

Requests (``op``) and what they do:

``hello``          protocol handshake: ``{"protocol": N}`` → this side's protocol, version and root
``setup``          the run's options (:meth:`RunOptions.to_wire <bench.record.options.RunOptions.to_wire>`),
                   checked as ``pytest bench/`` checks them, and the session opened → machine and commit
                   info
``cases``          the names of the selected cases
``step_prepare``   build the case, count its static cost, warm up (training step and inference)
``step_round``     one timed round (:class:`~bench.measure.session.StepRound`: a phased step, the whole
                   step and an inference pass) → the four phases' times and the whole step's (``whole``)
``modules_round``  with ``--bench-modules``: one breakdown round (bench/measure/modules.py), after the step
                   rounds → the whole forward and backward times and, per module name, [forward,
                   backward, calls] (the first call on a worker runs one untimed round before it)
``modules_static`` with ``--bench-modules``: parameters, MACs and activation memory per module
``step_finish``    the session's finish stage (memory, efficiency, energy), then the step record and
                   pytest-benchmark stats
``train_prepare``  build the trainer on the profile's dataset
``train_epoch``    one timed epoch
``train_finish``   the train record and stats
``drop``           forget a case's state

Each request runs a stage of :mod:`bench.measure.session`, the same code ``pytest bench/`` runs, in the
same order; only the scheduling is the controller's (rounds spread over several workers and alternated
with the other side's). A request that fails replies ``{"ok": false, "status": "error"|"oom"|"diverged",
"error": "...", "extra_info": {...}}`` (the record as far as it got) and the worker stays usable; only a
crash or a hang ends it, and the controller then starts a fresh one.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.measure.session import Session

#: Bumped when a request or reply changes shape; ``bench ab`` refuses a side that speaks another.
PROTOCOL = 1
#: The first archbench version with this worker (what ``bench ab`` tells a side too old to have one).
FIRST_VERSION = "0.2.0"


@dataclass
class Worker:
    """State of one side: its measurement session and the cases in flight."""

    session: Session | None = None
    settings: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    steps: dict[str, Any] = field(default_factory=dict)
    trainers: dict[str, Any] = field(default_factory=dict)

    # -- requests ---------------------------------------------------------------------------------------
    def hello(self, protocol: int) -> dict[str, Any]:
        import bench

        return {"protocol": PROTOCOL, "version": bench.__version__, "root": str(Path(bench.__file__).resolve().parent.parent),
                "worker": str(Path(__file__).resolve()), "python": sys.executable, "accepted": protocol == PROTOCOL}

    def setup(self, options: dict[str, Any]) -> dict[str, Any]:
        from pytest_benchmark.plugin import pytest_benchmark_generate_machine_info
        from pytest_benchmark.utils import get_commit_info

        from bench.measure.session import Session
        from bench.record.options import RunOptions

        # a bad option fails the setup, naming it, before any case (bench ab then exits 2)
        self.session = Session.open(RunOptions.from_wire(options), one_side=True)
        # Held for the worker's life: thread count and allocator settings apply to every case.
        self.settings.enter_context(self.session.device.settings())
        machine_info = pytest_benchmark_generate_machine_info()
        machine_info["archbench"] = self.session.machine_info()
        return {"machine_info": machine_info, "commit_info": get_commit_info()}

    def list_cases(self) -> dict[str, Any]:
        return {"cases": [{"name": c.name, "suite": c.suite} for c in self._session.cases()]}

    def step_prepare(self, case: str, static: bool = True) -> dict[str, Any]:
        """Build and warm up; ``static``: also count params and MACs (one worker per side does)."""
        run = self._session.step(self._case(case), static=static)
        self.steps[case] = run
        run.prepare()
        return {}

    def step_round(self, case: str) -> dict[str, Any]:
        return dict(self.steps[case].round())

    def modules_round(self, case: str) -> dict[str, Any]:
        """One breakdown round (``--bench-modules``), never one of the step rounds."""
        return dict(self.steps[case].modules_round())

    def modules_static(self, case: str) -> dict[str, Any]:
        return {"static": self.steps[case].modules_static()}

    def step_finish(self, case: str) -> dict[str, Any]:
        return _finished(self.steps.pop(case), timed="step")

    def train_prepare(self, case: str) -> dict[str, Any]:
        run = self._session.train(self._case(case))
        self.trainers[case] = run
        return {"epochs": run.rounds}

    def train_epoch(self, case: str) -> dict[str, Any]:
        run = self.trainers[case]
        run.prepare()
        return {"seconds": run.epoch()}

    def train_finish(self, case: str) -> dict[str, Any]:
        return _finished(self.trainers.pop(case), timed="epoch")

    def drop(self, case: str) -> dict[str, Any]:
        for held in (self.steps.pop(case, None), self.trainers.pop(case, None)):
            if held is not None:
                held.close()
        return {}

    # -- helpers -------------------------------------------------------------------------------------------
    @property
    def _session(self) -> Session:
        if self.session is None:
            raise RuntimeError("no session: the controller sends 'setup' first")
        return self.session

    def _case(self, name: str) -> Any:
        from suites.registry import get_case

        return get_case(name)

    def record_so_far(self, case: str | None) -> dict[str, Any] | None:
        """The record of ``case`` as far as it got (static cost, modes...), for a failure's reply."""
        held = self.steps.get(case or "") or self.trainers.get(case or "")
        return None if held is None else held.record.to_extra_info()


def _finished(run: Any, timed: str) -> dict[str, Any]:
    """A case's last stage (:meth:`StepRun.finish <bench.measure.session.StepRun.finish>` or the train
    run's) and its reply: the record, and pytest-benchmark's stats of what pytest bench/ times (``timed``)."""
    try:
        record = run.finish()
    finally:
        run.close()
    return {"extra_info": record.to_extra_info(), "stats": stats_of(record.samples(timed) or [])}


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
        if worker.session is not None:
            status, error = worker.session.status_of(exc)
        else:
            status, error = "error", f"{type(exc).__name__}: {exc}"
        case = request.get("case")
        reply = {"ok": False, "status": status, "error": error, "traceback": traceback.format_exc(limit=8)}
        so_far = worker.record_so_far(case)
        if so_far is not None:
            reply["extra_info"] = so_far
        if case is not None and not keep:
            worker.drop(case)
        return reply


def main() -> int:
    # Replies go to the stdout we were given; everything else that writes to stdout (a print in a
    # model, a library's banner) must not corrupt them, so fd 1 becomes stderr for the rest of the process.
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return serve(sys.stdin, replies)


if __name__ == "__main__":
    sys.exit(main())
