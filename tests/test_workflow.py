""".github/workflows/gpu-bench.yml: the runner is checked before anything is measured, torch is pinned,
measurements on one GPU never overlap, and a fork's code reaches a self-hosted runner only on a
maintainer's label. GitHub's expressions in `if:` and `concurrency:` are evaluated here for the events
that matter, with a small translation to Python that covers the operators the workflow uses."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.measure import probe as doctor

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "gpu-bench.yml"
PINS = ROOT / doctor.PINNED_REQUIREMENTS
LABEL = "gpu-bench"
REPO = "archbench/archbench"


@pytest.fixture(scope="module")
def wf() -> dict[Any, Any]:
    data = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(data, dict)
    return data


def triggers(wf: dict[Any, Any]) -> dict[str, Any]:
    on = wf[True]  # YAML 1.1: the bare key `on` is the boolean True
    assert isinstance(on, dict)
    return on


def self_hosted_jobs(wf: dict[Any, Any]) -> dict[str, dict[str, Any]]:
    jobs = {name: job for name, job in wf["jobs"].items() if "self-hosted" in job["runs-on"]}
    assert jobs, "the workflow has no self-hosted job: this test would check nothing"
    return jobs


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job["steps"])


def index_of(job: dict[str, Any], predicate: Any, what: str) -> int:
    found = [i for i, step in enumerate(steps(job)) if predicate(step)]
    assert found, f"no step {what}"
    return found[0]


def runs(step: dict[str, Any]) -> str:
    return str(step.get("run", ""))


# ------------------------------------------------------------------ a small evaluator for the expressions


class Ctx:
    """A context object: a missing property is null, and so is any property of null, as in GitHub's
    expressions."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)

    def __getattr__(self, name: str) -> Any:
        return NULL


class Null(Ctx):
    def __bool__(self) -> bool:
        return False

    def __eq__(self, other: object) -> bool:
        return other is None or isinstance(other, Null)

    def __hash__(self) -> int:
        return 0


NULL = Null()


def evaluate(expression: str, **contexts: Any) -> Any:
    """A GitHub expression (``&&``, ``||``, ``==``, ``!=``, parentheses, ``'strings'``, ``always()``,
    ``format()``) evaluated in Python; like GitHub's, ``&&`` and ``||`` yield an operand."""
    text = expression.strip()
    if text.startswith("${{") and text.endswith("}}"):
        text = text[3:-2]
    assert not re.search(r"(?<![=!])!(?!=)", text), "negation is not translated"
    python = text.replace("&&", " and ").replace("||", " or ")
    names = {
        "always": lambda: True,
        "format": lambda fmt, *args: re.sub(r"\{(\d+)\}", lambda m: str(args[int(m.group(1))]), fmt),
        **contexts,
    }
    # eval of this repository's own workflow file, with no builtins: the expressions are ours.
    return eval(python, {"__builtins__": {}}, names)


def pr_event(action: str, *, fork: bool, label: str | None = None, number: int = 7) -> dict[str, Any]:
    head_repo = "someone/archbench" if fork else REPO
    event = Ctx(
        action=action,
        label=Ctx(name=label) if label else NULL,
        pull_request=Ctx(number=number, head=Ctx(repo=Ctx(full_name=head_repo))),
    )
    github = Ctx(event_name="pull_request", event=event, repository=REPO, ref=f"refs/pull/{number}/merge",
                 run_id=424242)
    return {"github": github, "needs": Ctx(ab=Ctx(result="success"))}


DISPATCH = {
    "github": Ctx(event_name="workflow_dispatch", event=Ctx(), repository=REPO, ref="refs/heads/main", run_id=1),
    "needs": Ctx(ab=Ctx(result="success")),
}

# (event, should a self-hosted job run?)
GATE_CASES = [
    pytest.param(pr_event("opened", fork=False), True, id="same-repo opened"),
    pytest.param(pr_event("synchronize", fork=False), True, id="same-repo push"),
    pytest.param(pr_event("reopened", fork=False), True, id="same-repo reopened"),
    pytest.param(pr_event("labeled", fork=False, label=LABEL), True, id="same-repo re-run by label"),
    pytest.param(pr_event("labeled", fork=False, label="docs"), False, id="same-repo other label"),
    pytest.param(pr_event("opened", fork=True), False, id="fork opened"),
    pytest.param(pr_event("synchronize", fork=True), False, id="fork push after approval"),
    pytest.param(pr_event("reopened", fork=True), False, id="fork reopened"),
    pytest.param(pr_event("labeled", fork=True, label=LABEL), True, id="fork approved by label"),
    pytest.param(pr_event("labeled", fork=True, label="docs"), False, id="fork other label"),
    pytest.param(DISPATCH, True, id="workflow_dispatch"),
]


# --------------------------------------------------------------------------------------------- triggers


def test_no_pull_request_target(wf: dict[Any, Any]) -> None:
    # It runs with this repository's token and secrets; checking out PR code there hands them to a fork.
    assert "pull_request_target" not in triggers(wf)
    for job in wf["jobs"].values():
        assert "pull_request_target" not in str(job.get("if", ""))


def test_pull_requests_trigger_on_the_label(wf: dict[Any, Any]) -> None:
    pr = triggers(wf)["pull_request"]
    assert set(pr["types"]) >= {"opened", "synchronize", "labeled"}
    assert ".github/gpu-requirements.txt" in pr["paths"], "changing the pins must measure again"


@pytest.mark.parametrize(("contexts", "expected"), GATE_CASES)
def test_every_self_hosted_job_is_gated(wf: dict[Any, Any], contexts: dict[str, Any], expected: bool) -> None:
    for name, job in self_hosted_jobs(wf).items():
        assert "if" in job, f"{name} runs on self-hosted without a condition"
        assert bool(evaluate(job["if"], **contexts)) is expected, name


def test_the_gate_keys_on_the_label_event_not_on_labels_present(wf: dict[Any, Any]) -> None:
    # `contains(...labels...)` would let every later push of a labelled fork run unreviewed.
    for name, job in self_hosted_jobs(wf).items():
        condition = job["if"]
        assert "github.event.label.name == 'gpu-bench'" in condition, name
        assert "head.repo.full_name == github.repository" in condition, name
        assert "labels" not in condition.replace("label.name", ""), name


# ------------------------------------------------------------------------------------------ concurrency


@pytest.mark.parametrize(("contexts", "group"), [
    (pr_event("synchronize", fork=False), "gpu-bench-pr-7"),
    (pr_event("labeled", fork=True, label=LABEL), "gpu-bench-pr-7"),
    (pr_event("synchronize", fork=True), "gpu-bench-pr-7"),  # a new head supersedes the approved one
    (pr_event("labeled", fork=False, label="docs"), "gpu-bench-ignored-424242"),
    (DISPATCH, "gpu-bench-pr-refs/heads/main"),
])
def test_workflow_group_is_per_pull_request_and_cancels_superseded_runs(
    wf: dict[Any, Any], contexts: dict[str, Any], group: str
) -> None:
    concurrency = wf["concurrency"]
    assert concurrency["cancel-in-progress"] is True
    assert evaluate(concurrency["group"], **contexts) == group


def test_measurements_are_grouped_per_runner_and_never_cancelled(wf: dict[Any, Any]) -> None:
    ab = wf["jobs"]["ab"]
    concurrency = ab["concurrency"]
    assert concurrency["group"] == "gpu-runner-${{ matrix.runner }}"
    assert concurrency["cancel-in-progress"] is False
    # The default queue keeps one pending job and cancels it when another arrives.
    assert concurrency["queue"] == "max"
    # The group's key is the runner the job is pinned to.
    assert "${{ matrix.runner }}" in ab["runs-on"]
    assert "runner." not in concurrency["group"], "the runner context is not available to concurrency"


def test_every_default_shard_names_a_runner(wf: dict[Any, Any]) -> None:
    include = wf["jobs"]["ab"]["strategy"]["matrix"]["include"]
    default = re.search(r"'(\[.*\])'", include)
    assert default, include
    shards = yaml.safe_load(default.group(1))
    assert [s["shard"] for s in shards] == ["resnet50_dcn", "dogbreed", "dynconv", "flowers"]
    assert all(s["runner"] for s in shards)


# ------------------------------------------------------------------------------- install, pins, doctor


def pins() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in PINS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{line!r} is not an exact pin"
            found[name.strip()] = version.strip()
    return found


def test_the_pin_file_pins_torch_and_torchvision() -> None:
    assert pins() == {"torch": "2.14.1", "torchvision": "0.29.1"}


def test_every_install_uses_the_pins(wf: dict[Any, Any]) -> None:
    for name, job in wf["jobs"].items():
        installs = [runs(s) for s in steps(job) if "pip install" in runs(s)]
        for text in installs:
            for line in text.splitlines():
                if "pip install" in line and "--upgrade pip" not in line:
                    assert f"-r {doctor.PINNED_REQUIREMENTS}" in line, f"{name}: {line.strip()}"


def test_doctor_runs_after_install_and_before_the_first_measurement(wf: dict[Any, Any]) -> None:
    for name, job in wf["jobs"].items():
        bench_steps = [i for i, s in enumerate(steps(job)) if re.search(r"bench ab\b", runs(s))]
        if not bench_steps:
            continue
        install = index_of(job, lambda s: f"-r {doctor.PINNED_REQUIREMENTS}" in runs(s), "installing the pins")
        cpu_check = index_of(job, lambda s: "torch.version.cuda is None" in runs(s), "refusing a CPU-only torch")
        check = index_of(job, lambda s: "bench doctor" in runs(s), "running bench doctor")
        doctor_step = steps(job)[check]
        assert "--require-cuda" in runs(doctor_step) and "--require-compiler" in runs(doctor_step)
        assert doctor_step.get("timeout-minutes", 99) <= 2, "fail in the first minutes, not after a hang"
        assert install < cpu_check < check < bench_steps[0], name
        # no other GPU check before it that could be mistaken for the gate
        assert not any("torch.cuda.is_available" in runs(s) for s in steps(job)[:check]), name


def test_cpu_only_torch_fails_loudly(wf: dict[Any, Any]) -> None:
    job = wf["jobs"]["ab"]
    step = steps(job)[index_of(job, lambda s: "torch.version.cuda is None" in runs(s), "refusing CPU torch")]
    assert "::error::" in runs(step) and "sys.exit(2)" in runs(step)


def test_checkouts_on_self_hosted_runners_keep_no_token(wf: dict[Any, Any]) -> None:
    for name, job in self_hosted_jobs(wf).items():
        for step in steps(job):
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                assert step.get("with", {}).get("persist-credentials") is False, name


# --------------------------------------------------------------------------- what the workflow still does


def test_measurement_merge_compare_and_exit_codes_are_kept(wf: dict[Any, Any]) -> None:
    ab, verdict = wf["jobs"]["ab"], wf["jobs"]["verdict"]
    measure = "\n".join(runs(s) for s in steps(ab))
    assert "bench ab \"$BASE\" HEAD" in measure
    assert "--bench-device cuda --bench-profile full --workers 2" in measure
    assert any(str(s.get("uses", "")).startswith("actions/upload-artifact@") for s in steps(ab))
    judge = "\n".join(runs(s) for s in steps(verdict))
    assert "bench merge shards/*/base.json" in judge and "bench merge shards/*/head.json" in judge
    assert len(re.findall(r"^\.venv/bin/bench compare ", judge, re.MULTILINE)) == 1, "judged once"
    for code in ("0)", "1)", "2)", "3)", "*)"):
        assert code in judge
    assert verdict["needs"] == "ab" and "always()" in verdict["if"]
