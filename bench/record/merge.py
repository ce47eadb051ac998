"""Joining results files of runs split across machines into one (``bench merge``).

CI may run one job per report; ``bench compare`` and ``bench report`` want one file. The merged file is
an ordinary pytest-benchmark file: the first input's envelope (``machine_info``, ``commit_info``,
``datetime``, ``version``), every input's benchmarks verbatim, and a ``merged_from`` list keeping each
input's file name, ``machine_info``, ``commit_info`` and ``datetime`` (merging merged files flattens it).

Refused: any unusable input (exit 2, naming the file), a benchmark name present in two inputs (exit 2,
naming both files), inputs that ``bench compare`` would call not comparable (different devices or
profiles, :func:`bench.record.results.environment_differences`; exit 3) unless ``--allow-incomparable``; the
other differences that rule notes (torch, device name, threads...) are warnings. Failed cases stay
under ``archbench_failed`` (:func:`bench.record.results.attach_failed`). The file is written one benchmark per
line: ten thousand benchmarks through the indenting encoder take seconds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.record.exits import EXIT_INCOMPARABLE, EXIT_UNUSABLE
from bench.record.results import FAILED_KEY, Results, attach_failed, environment_differences


class MergeError(ValueError):
    """The inputs cannot be merged; ``exit_code`` is 2 (bad input) or 3 (not comparable)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Merged:
    data: Mapping[str, Any]
    warnings: tuple[str, ...] = field(default=())


def merge_results(inputs: Sequence[Results], *, allow_incomparable: bool = False) -> Merged:
    """Join validated runs into one pytest-benchmark document (pure: returns the JSON object)."""
    if not inputs:
        raise MergeError("nothing to merge", EXIT_UNUSABLE)
    owner: dict[str, str] = {}
    for res in inputs:
        for name in res.benchmarks:
            if name in owner:
                raise MergeError(
                    f"{res.path}: benchmark {name!r} is also in {owner[name]}; each benchmark must come from "
                    "exactly one input",
                    EXIT_UNUSABLE,
                )
            owner[name] = res.path

    warnings: list[str] = []
    first = inputs[0]
    for other in inputs[1:]:
        blocking, noted = environment_differences(first, other)
        if blocking and not allow_incomparable:
            raise MergeError(
                f"inputs are not comparable ({'; '.join(blocking)}); pass --allow-incomparable to merge anyway",
                EXIT_INCOMPARABLE,
            )
        warnings += [f"merged inputs that are not comparable (--allow-incomparable): {b}" for b in blocking]
        warnings += [f"inputs differ in {n}" for n in noted]
    commits = {r.path: r.commit for r in inputs}
    if len(set(commits.values())) > 1:
        warnings.append("inputs come from different commits: " + ", ".join(f"{p}: {c}" for p, c in commits.items()))

    merged_from: list[Any] = []
    for res in inputs:
        previous = res.envelope.get("merged_from")
        if isinstance(previous, list) and previous:
            merged_from.extend(previous)  # already a merge: keep its sources, not the merge itself
        else:
            merged_from.append({
                "file": res.path,
                "machine_info": res.envelope.get("machine_info"),
                "commit_info": res.envelope.get("commit_info"),
                "datetime": res.envelope.get("datetime"),
            })
    data: dict[str, Any] = {k: v for k, v in first.envelope.items() if k != "merged_from"}
    data["benchmarks"] = [b.raw for res in inputs for b in res]
    attach_failed(data, [])  # failed cases of any input go where pytest-benchmark does not look
    data["merged_from"] = merged_from
    return Merged(data, tuple(warnings))


def json_chunks(data: Mapping[str, Any]) -> Iterator[str]:
    """``data`` as JSON text in pieces: the envelope indented, every benchmark object on one line."""
    lists = ("benchmarks", FAILED_KEY)
    envelope = {k: v for k, v in data.items() if k not in lists}
    head = json.dumps(envelope, indent=4)
    yield head[:-2]
    for key in lists:
        if key not in data:
            continue
        yield f',\n    "{key}": ['
        for i, bench in enumerate(data[key]):
            yield ("," if i else "") + "\n        " + json.dumps(bench)
        yield "\n    ]"
    yield "\n}\n"


