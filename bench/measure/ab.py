"""Paired measurement (``bench ab BASE HEAD``): base and head measured turn by turn on one machine.

Two runs taken minutes apart on a shared machine differ by tens of percent per case (the machine's
speed in that second), so comparing them cannot catch a 10 % slowdown. Here one worker process per side
(:mod:`bench.measure.worker`, each importing only its own side's code) measures the same case in the same
minute: both sides build it and warm up, then take turns round by round in ABBA order (base first in
even rounds, head first in odd ones, so neither side always goes first), each round timed per phase as
``pytest bench/`` times it. Static cost, memory and fixed-budget accuracy are measured once per side
(training epochs alternate as well). Round ``i`` of base and round ``i`` of head form a pair, and
``bench compare`` judges every time metric on the pairs' log ratios (:mod:`bench.judge.paired`). With
``--bench-modules`` the per-module breakdown (:mod:`bench.measure.modules`) takes rounds of its own after the step
rounds, in the same alternation and on the same workers, so that its per-module samples pair by round too;
a breakdown that fails leaves the side's step record with status ``error``, and a side whose worker has no
breakdown is measured without one.

BASE and HEAD are each a directory holding a checkout of this project, or a git revision of the
repository in the current directory (checked out into a temporary worktree that is always removed).
Output: ``DIR/base.json`` and ``DIR/head.json`` in the format ``pytest bench/ --benchmark-json`` writes,
each finished case appended to ``DIR/{base,head}.partial.jsonl`` as it completes, and each worker's
stderr in ``DIR/{base,head}.log``; :mod:`bench.commands.ab` then judges them as ``bench compare`` does.

Each worker runs the measurement session's stages (:mod:`bench.measure.session`) one request at a time;
this controller only schedules them and gathers the rounds, and a step record's derived fields are
computed again from every worker's rounds as the session computes them (:func:`paired_step`). The wire
(:data:`~bench.measure.worker.PROTOCOL` 1) is unchanged since archbench 0.2, so an older revision still
runs as a side (its worker at ``bench/worker.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bench.measure.modules import assemble
from bench.measure.session import benchmark_fullname, benchmark_name, partial_line
from bench.measure.worker import FIRST_VERSION, PROTOCOL, stats_of
from bench.record.derive import step_fields
from bench.record.options import SIDES, RunOptions
from bench.record.profiles import get_profile
from bench.record.results import attach_failed
from bench.record.schema import PHASES, Record
from bench.record.write import append_line, check, write_text

#: A pause before each turn. Without it the side that goes second in a round ran up to 2.3× slower
#: (dogbreed_cnn backward, 2-vCPU VM): the first side's OpenMP threads keep spinning on both cores for
#: a few milliseconds after its round (libgomp's spin-wait), so the second side starts on busy cores.
#: With 20 ms the spin has ended and the per-pair log ratios' spread fell from 0.86–1.22 to 0.05–0.16.
TURN_GAP_S = 0.02
#: How long a worker may take to import torch and answer the handshake.
START_TIMEOUT_S = 300.0


class AbError(Exception):
    """``bench ab`` cannot go on; the message says why and what to do. Exit code 2."""


class WorkerGone(Exception):
    """The worker process ended or stopped answering; ``status`` is what the case is recorded as."""

    def __init__(self, message: str, status: str = "error") -> None:
        super().__init__(message)
        self.status = status


# ----------------------------------------------------------------------------------------------------
# sides: where each side's code is, and under which interpreter it runs
# ----------------------------------------------------------------------------------------------------


@dataclass
class Side:
    label: str  # "base" or "head"
    spec: str  # what the user gave
    root: Path  # the checkout the worker imports from
    python: str
    commit: str | None = None
    worktree: bool = False

    @property
    def description(self) -> str:
        what = f"{self.spec} ({self.commit[:12]})" if self.commit and self.commit != self.spec else self.spec
        return f"{self.label} = {what} at {self.root}" + (f" under {self.python}" if self.python != sys.executable else "")


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)


@contextlib.contextmanager
def resolved_sides(specs: Mapping[str, str], pythons: Mapping[str, str | None], repo: Path) -> Iterator[dict[str, Side]]:
    """Each side as a checkout: a directory as given, a revision as a temporary git worktree of
    ``repo``. Worktrees are removed on exit, whatever happened (also on Ctrl-C)."""
    tmp = Path(tempfile.mkdtemp(prefix="archbench-ab-"))
    sides: dict[str, Side] = {}
    try:
        for label in SIDES:
            spec = specs[label]
            python = pythons.get(label) or sys.executable
            if shutil.which(python) is None and not Path(python).is_file():
                raise AbError(f"--{label}-python {python!r}: no such interpreter")
            path = Path(spec)
            if path.is_dir():
                root = path.resolve()
                if not (root / "bench").is_dir() or not (root / "suites").is_dir():
                    raise AbError(f"{label} {spec!r}: a directory, but not an archbench checkout (no bench/ and suites/)")
                sides[label] = Side(label, spec, root, python)
                continue
            top = _git(repo, "rev-parse", "--show-toplevel")
            if top.returncode != 0:
                raise AbError(f"{label} {spec!r}: not a directory, and {repo} is not in a git repository to find it as a revision")
            commit = _git(repo, "rev-parse", "--verify", "--quiet", f"{spec}^{{commit}}")
            if commit.returncode != 0:
                raise AbError(f"{label} {spec!r}: no such directory or git revision in {top.stdout.strip()}")
            sha = commit.stdout.strip()
            where = tmp / label
            added = _git(Path(top.stdout.strip()), "worktree", "add", "--detach", "--quiet", str(where), sha)
            if added.returncode != 0:
                raise AbError(f"{label} {spec!r}: git worktree add failed: {added.stderr.strip()}")
            sides[label] = Side(label, spec, where, python, commit=sha, worktree=True)
        yield sides
    finally:
        for side in sides.values():
            if side.worktree:
                removed = _git(repo, "worktree", "remove", "--force", str(side.root))
                if removed.returncode != 0:
                    shutil.rmtree(side.root, ignore_errors=True)
        if any(s.worktree for s in sides.values()):
            _git(repo, "worktree", "prune")
        shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------
# one worker process
# ----------------------------------------------------------------------------------------------------


#: How a worker starts: ``python -m bench.measure.worker`` (``bench.worker`` in a checkout of archbench
#: 0.2-0.3, which kept it there), after removing the import hook of an editable install of archbench.
#: That hook answers for any ``bench.*`` module the side's own ``bench/`` lacks, so an old checkout would
#: silently run the installed copy's worker (or any newer module) instead of failing to import it.
_BOOTSTRAP = """
import importlib.util, runpy, sys
def _editable(finder):
    return str(getattr(finder, "__module__", "") or type(finder).__module__).startswith("__editable___archbench")
sys.meta_path[:] = [f for f in sys.meta_path if not _editable(f)]
def _found(name):
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False
worker = "bench.measure.worker" if _found("bench.measure.worker") else "bench.worker"
runpy.run_module(worker, run_name="__main__", alter_sys=True)
"""


def _same_layout() -> list[str]:
    """A prefix that starts the worker with address-space randomisation off (util-linux ``setarch
    -R``), so that both sides' processes lay out the same allocations at the same addresses. With it
    on, each process got its own persistent speed for memory-bound phases: in an A/A run of all 32 cases
    the Adam step of resnet50_dcn_0003 ran 87 % slower in one of the two identical processes for all 30
    rounds, resnet50_dcn_0000's forward pass 20 % (see README "Catching regressions")."""
    setarch = shutil.which("setarch")
    if sys.platform != "linux" or setarch is None or os.environ.get("ARCHBENCH_AB_ASLR") == "1":
        return []
    return [setarch, "-R"]


class WorkerProcess:
    """A running :mod:`bench.measure.worker` for one side: requests go in on stdin, replies come back one JSON
    line each, read by a thread so that a hang becomes a timeout instead of blocking forever."""

    def __init__(self, side: Side, log: IO[str]) -> None:
        self.side = side
        env = dict(os.environ)
        # The side's checkout first: its bench/ and suites/ shadow any installed copy.
        env["PYTHONPATH"] = os.pathsep.join([str(side.root), *filter(None, [env.get("PYTHONPATH")])])
        env["PYTHONUNBUFFERED"] = "1"
        self.process = subprocess.Popen(
            [*_same_layout(), side.python, "-c", _BOOTSTRAP], cwd=side.root, env=env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=log, text=True, encoding="utf-8",
            start_new_session=True,  # Ctrl-C reaches the controller, which then ends the workers itself
        )
        self._replies: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._replies.put(line)
        self._replies.put(None)

    def request(self, op: str, timeout: float, **fields: Any) -> dict[str, Any]:
        """Send one request and wait up to ``timeout`` seconds for its reply."""
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            raise WorkerGone(self._ended()) from None
        try:
            line = self._replies.get(timeout=max(0.0, timeout))
        except queue.Empty:
            self.kill()
            raise WorkerGone(f"timeout: no answer to {op!r} within {timeout:.0f} s (--case-timeout); worker killed") from None
        if line is None:
            raise WorkerGone(self._ended())
        return json.loads(line)

    def _ended(self) -> str:
        try:
            code = self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.process.returncode
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        return f"worker crashed ({how})"

    def kill(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(BrokenPipeError, OSError, WorkerGone):
                assert self.process.stdin is not None
                self.process.stdin.write(json.dumps({"op": "exit"}) + "\n")
                self.process.stdin.flush()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


# ----------------------------------------------------------------------------------------------------
# the schedule
# ----------------------------------------------------------------------------------------------------


def abba(rounds: int) -> list[tuple[str, str]]:
    """Who goes first in each round: base in even rounds, head in odd ones (AB BA AB BA …), so that
    neither side always runs first and a steady drift affects both alike."""
    return [("base", "head") if r % 2 == 0 else ("head", "base") for r in range(rounds)]


@dataclass
class AbSettings:
    """What ``bench ab`` was asked for, typed (built from argparse at the CLI edge)."""

    sides: Mapping[str, str]
    #: The run's options, as ``pytest bench/`` takes them; ``--bench-fail`` specs may name a side.
    options: RunOptions
    output: Path
    pythons: Mapping[str, str | None] = field(default_factory=dict)
    case_timeout: float = 1800.0
    #: Worker processes per side for the step rounds. Two identical processes on the 2-vCPU VMs ran
    #: memory-bound phases at persistently different speeds (an A/A run of all 32 cases with one worker
    #: per side: resnet50_dcn_0003's Adam step +87 %, 5 of 160 time metrics "regressed"); with several,
    #: a process's quirk shows as disagreement between worker pairs instead of as a verdict.
    workers: int = 3
    turn_gap_s: float = TURN_GAP_S

    def outputs(self) -> list[Path]:
        """Every file a run writes in :attr:`output` (checked before any worker starts)."""
        return [self.output / f"{side}{suffix}" for side in SIDES for suffix in (".json", ".partial.jsonl", ".log")]


class Run:
    """One ``bench ab``: the workers, the records measured so far, and where they are written."""

    def __init__(self, settings: AbSettings, sides: Mapping[str, Side], *, progress: IO[str] | None = None) -> None:
        self.settings = settings
        self.options = settings.options
        self.sides = sides
        self.out = settings.output
        self.out.mkdir(parents=True, exist_ok=True)
        self.pairing_id = uuid.uuid4().hex
        self.n_workers = max(1, settings.workers)
        self.workers: dict[str, list[WorkerProcess | None]] = {s: [None] * self.n_workers for s in SIDES}
        self.logs = {s: (self.out / f"{s}.log").open("a", encoding="utf-8") for s in SIDES}
        self.envelopes: dict[str, dict[str, Any]] = {}
        self.suites: dict[str, str] = {}
        self.entries: dict[str, list[dict[str, Any]]] = {s: [] for s in SIDES}
        self.partial = {s: self.out / f"{s}.partial.jsonl" for s in SIDES}
        for path in self.partial.values():
            write_text(path, "")  # one run per file: a stale tail would mix runs
        self.stderr = progress if progress is not None else sys.stderr
        self._live = self.stderr.isatty()

    # -- workers ---------------------------------------------------------------------------------------
    def options_for(self, side: str) -> dict[str, Any]:
        """What ``side``'s workers are set up with: the run's options and that side's failures."""
        return self.options.for_side(side).to_wire()

    def start(self, side: str, k: int = 0) -> WorkerProcess:
        """A fresh worker ``k`` for ``side``, handshaken and set up; :class:`AbError` when it cannot start."""
        s = self.sides[side]
        self.logs[side].write(f"--- worker start {time.strftime('%H:%M:%S')} ({s.description})\n")
        self.logs[side].flush()
        worker = WorkerProcess(s, self.logs[side])
        try:
            hello = worker.request("hello", START_TIMEOUT_S, protocol=PROTOCOL)
        except WorkerGone as exc:
            worker.kill()
            tail = self.log_tail(side)
            if "No module named 'bench.worker'" in tail or "No module named bench.worker" in tail:
                raise AbError(
                    f"{side} ({s.spec}) is too old for bench ab: it has no bench ab worker. bench ab works with "
                    f"archbench {FIRST_VERSION} and later (protocol {PROTOCOL})"
                ) from None
            raise AbError(f"{side} ({s.spec}) failed to start: {exc}. Last lines of {self.out / (side + '.log')}:\n{tail}") from None
        if hello.get("protocol") != PROTOCOL:
            worker.close()
            raise AbError(
                f"{side} ({s.spec}) speaks bench ab protocol {hello.get('protocol')}, this bench ab speaks {PROTOCOL}: "
                f"run bench ab from the newer checkout (protocol {PROTOCOL} is archbench {FIRST_VERSION} and later)"
            )
        for what in ("root", "worker"):
            path = s.root / str(hello.get(what, ""))  # relative to the worker's directory, the side's root
            if not path.resolve().is_relative_to(s.root.resolve()):
                worker.close()
                raise AbError(f"{side} ({s.spec}): the worker imported archbench from {path}, not from {s.root}")
        reply = worker.request("setup", START_TIMEOUT_S, options=self.options_for(side))
        if not reply.get("ok"):
            worker.close()
            raise AbError(f"{side} ({s.spec}): setup failed: {reply.get('error')}")
        if side not in self.envelopes:
            self.envelopes[side] = {"machine_info": reply["machine_info"], "commit_info": reply["commit_info"]}
        self.workers[side][k] = worker
        return worker

    def worker(self, side: str, k: int = 0) -> WorkerProcess:
        return self.workers[side][k] or self.start(side, k)

    def discard(self, side: str, k: int) -> None:
        worker = self.workers[side][k]
        if worker is not None:
            worker.kill()
            worker.close()
        self.workers[side][k] = None

    def log_tail(self, side: str, lines: int = 15) -> str:
        self.logs[side].flush()
        text = (self.out / f"{side}.log").read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def close(self, *, kill: bool = False) -> None:
        """End the workers: asked to exit, or killed (after an interrupt, a worker may be mid-request)."""
        for side in SIDES:
            for k, worker in enumerate(self.workers[side]):
                if worker is not None:
                    if kill:
                        worker.kill()
                    worker.close()
                    self.workers[side][k] = None
        for log in self.logs.values():
            log.close()

    # -- measuring -------------------------------------------------------------------------------------
    def case_lists(self) -> list[tuple[str, str, tuple[str, ...]]]:
        """(case, suite, sides that have it), base's order first."""
        names: dict[str, tuple[str, list[str]]] = {}
        for side in SIDES:
            reply = self.worker(side).request("cases", START_TIMEOUT_S)
            if not reply.get("ok"):
                raise AbError(f"{side} ({self.sides[side].spec}): {reply.get('error')}")
            for case in reply["cases"]:
                names.setdefault(case["name"], (case["suite"], []))[1].append(side)
        if not names:
            raise AbError("no case matches the selection on either side; see `bench list`")
        self.suites = {name: suite for name, (suite, _) in names.items()}
        return [(name, suite, tuple(sides)) for name, (suite, sides) in names.items()]

    def measure(self) -> None:
        """Every selected case, step then train as asked, each finished benchmark written at once."""
        cases = self.case_lists()
        kinds = self.options.kinds
        total = len(cases) * len(kinds)
        done = 0
        for k in kinds:
            for name, suite, present in cases:
                done += 1
                started = time.perf_counter()
                outcome = self.measure_case(name, k, present, f"[{done}/{total}]")
                self.say(f"[{done}/{total}] {k} {name}: {outcome} ({time.perf_counter() - started:.1f} s)", final=True)

    def measure_case(self, case: str, kind: str, present: Sequence[str], where: str) -> str:
        """Both sides' benchmark of one case, through the session's stages in the session's order
        (:mod:`bench.measure.session`), alternated between the sides; returns a short outcome per side
        for the progress line."""
        # Each side's own time on the case counts against the timeout: a side that hangs uses up its
        # budget, not the other side's.
        spent = dict.fromkeys(SIDES, 0.0)
        failures: dict[str, tuple[str, str]] = {}
        #: What a failing side had measured before it failed (its worker's record so far).
        so_far: dict[str, dict[str, Any]] = {}
        active = [s for s in SIDES if s in present]

        # --bench-modules: a breakdown that fails leaves the side's step record (status error, its
        # other fields kept); a side whose worker has no breakdown is measured without one.
        module_failures: dict[str, tuple[str, str]] = {}
        no_modules: set[str] = set()

        def ask(side: str, op: str, k: int = 0, soft: bool = False, **fields: Any) -> dict[str, Any] | None:
            started = time.monotonic()
            try:
                worker = self.worker(side, k)
                reply = worker.request(op, self.settings.case_timeout - spent[side], case=case, **fields)
            except AbError as exc:
                failures[side] = ("error", f"worker could not be restarted: {exc}")
                return None
            except WorkerGone as exc:
                tail = self.log_tail(side, 5)
                failures[side] = (exc.status, f"{exc}; last lines of {side}.log: {tail}")
                self.discard(side, k)  # a fresh worker for the next case
                return None
            finally:
                spent[side] += time.monotonic() - started
            if not reply.get("ok") and soft:
                if str(reply.get("error", "")).startswith("unknown request"):
                    no_modules.add(side)
                    self.logs[side].write(f"--- {case}: this side has no per-module breakdown ({reply.get('error')})\n")
                else:
                    module_failures[side] = (reply.get("status", "error"), f"modules: {reply.get('error')}")
                    self.logs[side].write(str(reply.get("traceback", "")))
                return None
            if not reply.get("ok"):
                failures[side] = (reply.get("status", "error"), str(reply.get("error")))
                if isinstance(reply.get("extra_info"), Mapping):
                    so_far[side] = dict(reply["extra_info"])
                self.logs[side].write(str(reply.get("traceback", "")))
                for j in range(workers):
                    self.worker(side, j).request("drop", 60.0, case=case)
                return None
            return reply

        def running() -> list[str]:
            return [s for s in active if s not in failures]

        prepare, turn, finish = (("step_prepare", "step_round", "step_finish") if kind == "step"
                                 else ("train_prepare", "train_epoch", "train_finish"))
        # Step rounds are spread over several processes per side (round r on worker r mod n): a
        # process can run a phase persistently faster or slower than an identical one (see
        # AbSettings.workers), and the comparator asks every pair of workers to agree.
        workers = self.n_workers if kind == "step" else 1
        #: Rounds per side: the paired rounds for a step, every seed's epochs for training (a side of
        #: another version may train under fewer seeds: its turns end sooner).
        turns = dict.fromkeys(SIDES, self.rounds if kind == "step" else 0)
        rounds: dict[str, list[dict[str, Any]]] = {s: [] for s in SIDES}
        module_rounds: dict[str, list[dict[str, Any]]] = {s: [] for s in SIDES}
        module_static: dict[str, dict[str, Any]] = {}
        replies: dict[str, dict[str, Any]] = {}
        try:
            for side in active:
                for k in range(workers):
                    if side in running():
                        self.say(f"{where} {kind} {case}: {side} building and warming up ({k + 1}/{workers})")
                        reply = ask(side, prepare, k, **({"static": k == 0} if kind == "step" else {}))
                        if reply is not None and kind == "train":
                            turns[side] = int(reply["epochs"])
            count = max(turns.values())
            for r, order in enumerate(abba(count)):
                for side in order:
                    if side in running() and r < turns[side]:
                        self.say(f"{where} {kind} {case}: round {r + 1}/{count}, {side}")
                        time.sleep(self.settings.turn_gap_s)
                        reply = ask(side, turn, r % workers)
                        if reply is not None:
                            rounds[side].append(reply)
            if kind == "step" and self.options.modules:
                # the breakdown's own rounds, after the step rounds, in the same alternation and on the
                # same workers, so that base's and head's per-module samples pair round by round
                def breaking_down() -> list[str]:
                    return [s for s in running() if s not in module_failures and s not in no_modules]

                count = self.options.modules_rounds or self.rounds
                for r, order in enumerate(abba(count)):
                    for side in order:
                        if side in breaking_down():
                            self.say(f"{where} {kind} {case}: modules round {r + 1}/{count}, {side}")
                            time.sleep(self.settings.turn_gap_s)
                            reply = ask(side, "modules_round", r % workers, soft=True)
                            if reply is not None:
                                module_rounds[side].append(reply)
                for side in breaking_down():
                    reply = ask(side, "modules_static", 0, soft=True)
                    if reply is not None:
                        module_static[side] = reply["static"]
            for side in running():
                for k in range(1, workers):
                    ask(side, "drop", k)
                reply = ask(side, finish)
                if reply is not None:
                    replies[side] = (paired_step(reply, rounds[side], module_static.get(side), module_rounds[side])
                                     if kind == "step" else dict(reply))
                    if side in module_failures:
                        failures[side] = module_failures[side]
        except KeyboardInterrupt:
            for side in active:
                self.store(side, case, kind, None, ("interrupted", "KeyboardInterrupt"), so_far.get(side))
            raise
        outcome = []
        for side in active:
            self.store(side, case, kind, replies.get(side), failures.get(side), so_far.get(side))
            outcome.append(f"{side} {failures[side][0] if side in failures else 'ok'}")
        return ", ".join(outcome) + ("" if len(active) == 2 else f" (only in {active[0]})")

    @property
    def rounds(self) -> int:
        """Paired rounds per step case: ``--bench-rounds``, else the profile's ``paired_rounds``."""
        if self.options.rounds:
            return self.options.rounds
        return get_profile(self.envelopes["base"]["machine_info"]["archbench"]["profile"]).paired_rounds

    def store(self, side: str, case: str, kind: str, reply: Mapping[str, Any] | None,
              failure: tuple[str, str] | None, so_far: Mapping[str, Any] | None = None) -> None:
        """Keep one side's benchmark of a case (measured or failed) and append it to the partial file.
        A failed case keeps what its worker had measured (``so_far``) where it said."""
        name = benchmark_name(kind, case)
        if reply is not None:
            extra = dict(reply["extra_info"])
            stats = reply.get("stats")
        else:
            extra = dict(so_far) if so_far else self._failed_record(side, case, kind)
            stats = None
        if failure is not None:
            extra["status"], extra["error"] = failure
        extra["pairing"] = {"id": self.pairing_id, "side": side, "order": "ABBA",
                            "workers": self.n_workers if kind == "step" else 1}
        entry = {
            "group": None, "name": name, "fullname": benchmark_fullname(kind, case),
            "params": {"case": case}, "param": case, "extra_info": extra,
            "options": {"timer": "perf_counter", "rounds": self.rounds if kind == "step" else None,
                        "iterations": 1, "harness": "bench ab"},
            "stats": stats,
        }
        self.entries[side].append(entry)
        append_line(self.partial[side], partial_line(kind, case, extra))

    def _failed_record(self, side: str, case: str, kind: str) -> dict[str, Any]:
        info = self.envelopes.get(side, {}).get("machine_info", {}).get("archbench", {})
        return {"case": case, "suite": self.suites.get(case, ""), "kind": kind,
                "profile": info.get("profile", ""), "device": info.get("device", ""), "status": "error"}

    def say(self, text: str, final: bool = False) -> None:
        """The progress line: rewritten in place on a terminal, one line per finished case otherwise."""
        if self._live:
            self.stderr.write("\r\033[K" + text + ("\n" if final else ""))
            self.stderr.flush()
        elif final:
            self.stderr.write(text + "\n")
            self.stderr.flush()

    # -- output ----------------------------------------------------------------------------------------
    def write(self) -> dict[str, Path]:
        """``base.json`` and ``head.json``: pytest-benchmark documents with the pairing in machine_info."""
        import pytest_benchmark

        paths = {}
        for side in SIDES:
            envelope = self.envelopes.get(side)
            if envelope is None:
                continue
            machine_info = json.loads(json.dumps(envelope["machine_info"]))
            machine_info["archbench"]["pairing"] = {
                "id": self.pairing_id, "side": side, "order": "ABBA", "rounds": self.rounds,
                "spec": self.sides[side].spec, "commit": self.sides[side].commit,
            }
            ok = [e for e in self._ordered(side) if e["stats"] is not None]
            failed = [e for e in self._ordered(side) if e["stats"] is None]
            doc: dict[str, Any] = {
                "machine_info": machine_info, "commit_info": envelope["commit_info"], "benchmarks": ok,
                "datetime": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "version": pytest_benchmark.__version__,
            }
            attach_failed(doc, failed)
            paths[side] = self.out / f"{side}.json"
            write_text(paths[side], json.dumps(doc, indent=2, allow_nan=True) + "\n")
        return paths

    def _ordered(self, side: str) -> list[dict[str, Any]]:
        # pytest's order: every test_step first, then every test_train
        return sorted(self.entries[side], key=lambda e: 0 if e["name"].startswith("test_step[") else 1)


def paired_step(reply: Mapping[str, Any], rounds: Sequence[Mapping[str, Any]], module_static: Mapping[str, Any] | None,
                module_rounds: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Worker 0's step record with the samples of every round of every worker, in round order (what the
    pairing aligns), and what derives from them computed again as the session computes it
    (:func:`bench.record.derive.step_fields`, :func:`bench.measure.modules.assemble`); pytest-benchmark's
    stats are the whole step's, as ``pytest bench/`` times it."""
    record = Record.from_extra_info(reply["extra_info"], where="bench ab worker")
    for phase in PHASES:
        record.set_samples(phase, [float(r[phase]) for r in rounds])
    # a side of archbench 0.2 did not time the whole step; its stats are its phased step's wall time
    whole = [float(r["whole"]) for r in rounds if "whole" in r]
    if len(whole) == len(rounds):
        record.set_samples("step", whole)
    record.update(step_fields(record))
    if module_static is not None and module_rounds:
        record.update(assemble(dict(module_static), [dict(r) for r in module_rounds],
                               {p: record.median(p) for p in ("forward", "backward")}))
    timed = record.samples("step") or [float(r["step"]) for r in rounds if "step" in r]
    return {**reply, "extra_info": record.to_extra_info(), "stats": stats_of(timed)}


def run(settings: AbSettings, repo: Path | None = None) -> dict[str, Path]:
    """Measure both sides and write their files; return them by side. Raises :class:`AbError` when a side
    cannot be used and :class:`~bench.record.write.OutputError` when an output cannot be written, both
    before anything is measured, and ``KeyboardInterrupt`` on Ctrl-C or SIGTERM, after writing what was
    measured (the case in flight as ``interrupted``)."""
    err = sys.stderr
    repo = repo or Path.cwd()
    check(*settings.outputs())

    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        with resolved_sides(settings.sides, settings.pythons, repo) as sides:
            for side in sides.values():
                err.write(f"bench ab: {side.description}\n")
            measured = Run(settings, sides)
            interrupted = False
            try:
                try:
                    measured.measure()
                finally:
                    paths = measured.write()
            except KeyboardInterrupt:
                interrupted = True
                err.write(f"\nbench ab: interrupted; finished cases kept in {measured.out}\n")
                raise
            finally:
                measured.close(kill=interrupted)
    finally:
        signal.signal(signal.SIGTERM, previous)
    err.write(f"bench ab: wrote {paths['base']} and {paths['head']}\n")
    return paths
