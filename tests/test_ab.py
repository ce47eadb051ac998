"""``bench ab``: the ABBA schedule, the controller against scripted fake workers (crash, hang, a case on
one side only, too old, wrong protocol), worktree and process cleanup, and one end-to-end run of two
real git worktrees of this repository."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bench.commands import ab as ab_command
from bench.commands.compare import OutputOptions
from bench.judge.verdicts import compare_runs
from bench.measure import ab
from bench.record.options import FailSpec, RunOptions
from bench.record.results import load_results

FAKE = Path(__file__).parent / "fake_side"
REPO = Path(__file__).resolve().parent.parent


def test_abba_alternates_who_goes_first() -> None:
    order = ab.abba(6)
    assert order == [("base", "head"), ("head", "base")] * 3
    firsts = [o[0] for o in ab.abba(30)]
    assert firsts.count("base") == firsts.count("head") == 15


def test_each_side_gets_its_own_failures() -> None:
    options = RunOptions(fail=(FailSpec("x", "crash", "head"), FailSpec("y")))
    assert options.for_side("base").fail == (FailSpec("y"),)
    assert options.for_side("head").fail == (FailSpec("x", "crash"), FailSpec("y"))
    # what a worker of archbench 0.2-0.3 reads: case -> kind
    assert options.for_side("head").to_wire()["inject"] == {"x": "crash", "y": "error"}
    assert RunOptions.from_wire(options.for_side("head").to_wire()) == options.for_side("head")


def fake_side(tmp: Path, name: str, **config: Any) -> Path:
    root = tmp / name
    shutil.copytree(FAKE, root, ignore=shutil.ignore_patterns("__pycache__"))
    config.setdefault("cases", ["alpha", "beta"])
    config.setdefault("pids", str(tmp / "pids.txt"))
    (root / "fake.json").write_text(json.dumps(config))
    return root


def run_ab(tmp: Path, base: str | Path, head: str | Path, *, repo: Path | None = None, rounds: int = 16,
           timeout: float = 60.0, workers: int = 1) -> tuple[int, Path]:
    out = tmp / "out"
    settings = ab.AbSettings(
        sides={"base": str(base), "head": str(head)},
        options=RunOptions(kind="step", rounds=rounds),
        output=out, case_timeout=timeout, turn_gap_s=0.0, workers=workers,
    )
    return ab_command.run(settings, output=OutputOptions(json=out / "verdicts.json"), repo=repo or tmp), out


def statuses(out: Path) -> dict[str, str]:
    verdicts = json.loads((out / "verdicts.json").read_text())
    return {b["name"]: b["status"] for b in verdicts["benchmarks"]}


def assert_no_worker_left(tmp: Path) -> None:
    for line in (tmp / "pids.txt").read_text().split():
        with pytest.raises(ProcessLookupError):
            os.kill(int(line), 0)


def test_a_slower_case_is_caught_and_the_files_are_paired(tmp_path: Path) -> None:
    base = fake_side(tmp_path, "base")
    head = fake_side(tmp_path, "head", slow={"beta": 1.3})
    code, out = run_ab(tmp_path, base, head)
    assert code == 1
    assert statuses(out) == {"test_step[alpha]": "unchanged", "test_step[beta]": "regressed"}
    b, h = load_results(out / "base.json"), load_results(out / "head.json")
    pb, ph = b.envelope["machine_info"]["archbench"]["pairing"], h.envelope["machine_info"]["archbench"]["pairing"]
    assert pb["id"] == ph["id"] and (pb["side"], ph["side"]) == ("base", "head") and pb["order"] == "ABBA"
    assert b.benchmarks["test_step[beta]"].record.pairing == {"id": pb["id"], "side": "base", "order": "ABBA", "workers": 1}
    assert len(b.benchmarks["test_step[beta]"].record.samples_forward_s or []) == 16
    # bench compare of the written files later gives the same verdicts
    again = compare_runs(b, h)
    assert {x.name: x.status.value for x in again.benchmarks} == statuses(out)
    assert again.paired is not None and again.paired.family == 8
    # every finished case was appended to the partial files as it completed
    partial = [json.loads(line)["name"] for line in (out / "head.partial.jsonl").read_text().splitlines()]
    assert partial == ["test_step[alpha]", "test_step[beta]"]
    assert_no_worker_left(tmp_path)


def test_a_a_is_clean(tmp_path: Path) -> None:
    side = fake_side(tmp_path, "same")
    code, out = run_ab(tmp_path, side, side)
    assert code == 0
    assert set(statuses(out).values()) == {"unchanged"}


def test_a_crashing_worker_fails_its_case_and_the_run_goes_on(tmp_path: Path) -> None:
    base = fake_side(tmp_path, "base", cases=["alpha", "beta", "gamma"])
    head = fake_side(tmp_path, "head", cases=["alpha", "beta", "gamma"], crash=["beta"])
    code, out = run_ab(tmp_path, base, head)
    assert code == 1  # newly failing
    assert statuses(out) == {"test_step[alpha]": "unchanged", "test_step[beta]": "failed",
                             "test_step[gamma]": "unchanged"}
    failed = load_results(out / "head.json").benchmarks["test_step[beta]"].record
    assert failed.status == "error" and "worker crashed (exit code 3)" in (failed.error or "")
    # the failed case is kept where pytest-benchmark's readers do not look
    raw = json.loads((out / "head.json").read_text())
    assert [b["name"] for b in raw["benchmarks"]] == ["test_step[alpha]", "test_step[gamma]"]
    assert len((tmp_path / "pids.txt").read_text().split()) == 3  # base, head, and a fresh head for gamma
    assert_no_worker_left(tmp_path)


def test_a_hanging_worker_times_out_and_is_killed(tmp_path: Path) -> None:
    base = fake_side(tmp_path, "base")
    head = fake_side(tmp_path, "head", hang=["alpha"])
    started = time.monotonic()
    code, out = run_ab(tmp_path, base, head, timeout=3.0)
    assert time.monotonic() - started < 30
    assert code == 1
    assert statuses(out)["test_step[alpha]"] == "failed"
    assert statuses(out)["test_step[beta]"] == "unchanged"
    error = load_results(out / "head.json").benchmarks["test_step[alpha]"].record.error or ""
    assert "timeout" in error and "--case-timeout" in error
    assert_no_worker_left(tmp_path)


def test_a_case_on_one_side_only(tmp_path: Path) -> None:
    base = fake_side(tmp_path, "base", cases=["alpha", "old"])
    head = fake_side(tmp_path, "head", cases=["alpha", "new"])
    code, out = run_ab(tmp_path, base, head)
    assert code == 0
    assert statuses(out) == {"test_step[alpha]": "unchanged", "test_step[old]": "missing", "test_step[new]": "new"}


def test_a_failing_case_is_recorded_with_its_status(tmp_path: Path) -> None:
    base = fake_side(tmp_path, "base")
    head = fake_side(tmp_path, "head", fail=["alpha"])
    code, out = run_ab(tmp_path, base, head)
    assert code == 1
    record = load_results(out / "head.json").benchmarks["test_step[alpha]"].record
    assert (record.status, record.error) == ("oom", "MemoryError: fake")


def test_a_side_too_old_or_speaking_another_protocol_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = fake_side(tmp_path, "old")
    (old / "bench" / "worker.py").unlink()
    code, _ = run_ab(tmp_path, old, fake_side(tmp_path, "head"))
    assert code == 2
    assert "too old for bench ab" in capsys.readouterr().err
    other = fake_side(tmp_path, "other", protocol=99)
    code, _ = run_ab(tmp_path, fake_side(tmp_path, "base"), other)
    assert code == 2
    assert "speaks bench ab protocol 99" in capsys.readouterr().err
    assert_no_worker_left(tmp_path)


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def fake_repo(tmp: Path) -> Path:
    """A git repository whose HEAD~1 is a fake side and HEAD the same side with case beta slower."""
    repo = fake_side(tmp, "repo")
    _git(repo, "init", "-q")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base")
    config = json.loads((repo / "fake.json").read_text())
    (repo / "fake.json").write_text(json.dumps({**config, "slow": {"beta": 1.3}}))
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "head")
    return repo


def test_revisions_run_in_temporary_worktrees_that_are_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = fake_repo(tmp_path)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    code, out = run_ab(tmp_path, "HEAD~1", "HEAD", repo=repo)
    assert code == 1
    assert statuses(out)["test_step[beta]"] == "regressed"
    pairing = load_results(out / "head.json").envelope["machine_info"]["archbench"]["pairing"]
    assert pairing["commit"] == _git(repo, "rev-parse", "HEAD").strip()
    assert _git(repo, "worktree", "list").count("\n") == 1
    assert list(scratch.iterdir()) == []


def test_a_revision_that_does_not_exist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = fake_repo(tmp_path)
    code, _ = run_ab(tmp_path, "no-such-branch", "HEAD", repo=repo)
    assert code == 2
    assert "'no-such-branch': no such directory or git revision" in capsys.readouterr().err
    assert _git(repo, "worktree", "list").count("\n") == 1


def test_ctrl_c_keeps_finished_cases_and_leaves_nothing_behind(tmp_path: Path) -> None:
    repo = fake_repo(tmp_path)
    config = json.loads((repo / "fake.json").read_text())
    (repo / "fake.json").write_text(json.dumps({**config, "hang": ["beta"]}))
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "hang")
    out = tmp_path / "out"
    # The controller runs in the fake repository (revisions are looked up in the current directory) but
    # must import the real bench, not the fake one that the current directory would put first.
    main = (f"import sys; sys.path.insert(0, {str(REPO)!r}); from bench.commands import main; "
            "sys.exit(main(sys.argv[1:]))")
    proc = subprocess.Popen(
        [sys.executable, "-c", main, "ab", "HEAD~1", "HEAD", "--bench-kind", "step", "--bench-rounds", "4",
         "-o", str(out)], cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    partial = out / "head.partial.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (partial.exists() and partial.read_text().strip()):
        time.sleep(0.2)
    time.sleep(1.0)  # now inside beta, which hangs on head
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    head = load_results(out / "head.json")
    assert head.benchmarks["test_step[alpha]"].ok
    assert head.benchmarks["test_step[beta]"].record.status == "interrupted"
    assert _git(repo, "worktree", "list").count("\n") == 1
    assert_no_worker_left(tmp_path)


@pytest.mark.slow
def test_end_to_end_two_worktrees_of_this_repository(tmp_path: Path) -> None:
    """Two real workers (torch, the real harness) on git worktrees of this repository's HEAD."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    out = tmp_path / "out"
    worktrees = _git(REPO, "worktree", "list")
    settings = ab.AbSettings(
        sides={"base": "HEAD", "head": "HEAD"},
        options=RunOptions(kind="both", rounds=6, cases=("dogbreed_cnn",), threads=1),
        output=out,
    )
    code = ab_command.run(settings, output=OutputOptions(json=out / "verdicts.json"), repo=REPO)
    # 6 pairs can never be significant after Holm over 5 metrics (2**-6 × 5 > 0.05): A/A must pass, with
    # moves past the threshold called inconclusive, never regressed
    assert code == 0
    assert set(statuses(out)) == {"test_step[dogbreed_cnn]", "test_train[dogbreed_cnn]"}
    assert set(statuses(out).values()) <= {"unchanged", "inconclusive"}
    base, head = load_results(out / "base.json"), load_results(out / "head.json")
    step_b, step_h = base.benchmarks["test_step[dogbreed_cnn]"], head.benchmarks["test_step[dogbreed_cnn]"]
    assert step_b.record.params_total == step_h.record.params_total == 585_383
    assert len(step_b.record.samples_backward_s or []) == 6
    assert step_b.stats is not None and step_b.stats.rounds == 6
    train_b, train_h = base.benchmarks["test_train[dogbreed_cnn]"], head.benchmarks["test_train[dogbreed_cnn]"]
    assert train_b.record.accuracy_test == train_h.record.accuracy_test  # same code, same seed
    for side in (base, head):
        assert side.env.profile == "smoke" and side.envelope["machine_info"]["archbench"]["threads"] == 1
    verdicts = json.loads((out / "verdicts.json").read_text())
    notes = [m["note"] for b in verdicts["benchmarks"] for m in b["metrics"] if m["key"] == "time_forward_s"]
    assert all("n=6" in n for n in notes) and notes
    assert _git(REPO, "worktree", "list") == worktrees


@pytest.mark.slow
def test_seeds_reach_both_sides(tmp_path: Path) -> None:
    """``--bench-seeds`` was silently missing from bench ab; every pytest bench/ option now reaches the
    workers, and each side trains every case under every seed."""
    from bench.commands import main

    out = tmp_path / "out"
    code = main(["ab", str(REPO), str(REPO), "--bench-kind", "train", "--bench-seeds", "2", "--bench-epochs", "1",
                 "--bench-case", "dogbreed_dsc", "--bench-threads", "1", "--workers", "1", "-o", str(out),
                 "--json", str(out / "verdicts.json")])
    assert code == 0
    accuracies = []
    for side in ("base", "head"):
        record = load_results(out / f"{side}.json").benchmarks["test_train[dogbreed_dsc]"].record
        assert record.seeds == [0, 1] and record.per_seed is not None and len(record.per_seed) == 2
        assert record.samples_epoch_s is not None and len(record.samples_epoch_s) == 2  # one epoch per seed
        accuracies.append([s["accuracy_test"] for s in record.per_seed])
    assert accuracies[0] == accuracies[1]  # same code, same seeds: bit for bit on the CPU
    verdicts = json.loads((out / "verdicts.json").read_text())["benchmarks"][0]["metrics"]
    assert {m["key"]: m["verdict"] for m in verdicts}["accuracy_test"] == "unchanged"


def test_several_workers_per_side_share_the_rounds_and_must_agree(tmp_path: Path) -> None:
    base = fake_side(tmp_path, "base")
    head = fake_side(tmp_path, "head", slow={"beta": 1.3})
    code, out = run_ab(tmp_path, base, head, rounds=18, workers=3)
    assert code == 1
    assert statuses(out) == {"test_step[alpha]": "unchanged", "test_step[beta]": "regressed"}
    record = load_results(out / "head.json").benchmarks["test_step[beta]"].record
    assert record.pairing is not None and record.pairing["workers"] == 3
    assert len(record.samples_forward_s or []) == 18  # every worker's rounds, in round order
    assert len((tmp_path / "pids.txt").read_text().split()) == 6
    notes = [m["note"] for b in json.loads((out / "verdicts.json").read_text())["benchmarks"] for m in b["metrics"]
             if b["name"] == "test_step[beta]" and m["key"] == "time_forward_s"]
    # The fake sleeps, so each worker pair's ratio is 1.3 give or take the scheduler: one figure per worker.
    pairs = re.search(r"worker pairs ([^;]*)$", notes[0])
    assert pairs is not None, notes[0]
    shifts = [float(p.rstrip("%")) for p in pairs.group(1).split(", ")]
    assert len(shifts) == 3 and all(25 <= s <= 35 for s in shifts), notes[0]
    assert_no_worker_left(tmp_path)
