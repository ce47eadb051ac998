"""Where a case's time moved: the per-module breakdowns of two records (``--bench-modules``) set side by
side (pure: no printing, no files; docs/module-diff.md).

A record's :attr:`~bench.record.schema.Record.modules` nests modules (``layer1`` holds ``layer1.0``), and a
parent's time includes its children's, so moves are summed over one set of disjoint modules only: the
*leaves* of the tree cut at the depth both records measured (a module with no child in that cut, such
as ``bn1`` beside ``layer1.0``). Modules are matched by qualified name; one present on one side only is
``added`` or ``removed`` and moves by its whole time.

Per phase (forward, backward), a module's move is:

* unpaired (``bench compare`` of two runs): the median of head's rounds minus the median of base's;
* paired (``bench ab``: both records carry one pairing id, and round ``i`` of base and of head were
  measured in alternation): base's median times the Hodges–Lehmann estimate of the paired ratio over
  the rounds with the same index (:mod:`bench.judge.paired`), the estimator the case-level verdict uses, so a
  module's move is as robust as the case's.

Its *share* is that move over the case's move in the phase, where the case's move is the one the
verdict judged: head's phase median minus base's (unpaired), or base's median times the paired
Hodges–Lehmann change of the phase's rounds (paired). What the modules do not account for is the line
:data:`REST` ("(not in any module)"): the phase's move minus the sum of every leaf's move. It holds
work done in a parent's own ``forward`` outside its children (a residual addition, a functional ReLU),
the autograd engine's bookkeeping, and the difference between the timed rounds and the breakdown's
own rounds. Shares of all leaves and the rest add up to 100 %; a module moving against the case has a
negative share.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from bench.judge.paired import hodges_lehmann
from bench.record.schema import Record, quantity

#: The phases a breakdown times per module.
MODULE_PHASES: tuple[str, ...] = ("forward", "backward")
#: Modules listed per phase unless asked otherwise: enough to name the culprit and its neighbours,
#: few enough that several moved cases still fit a terminal.
DEFAULT_TOP = 5
#: The line for the part of a phase's move that no module accounts for.
REST = "(not in any module)"
#: Fewer paired rounds than this give no Hodges–Lehmann estimate worth the name (one pair has no
#: spread); such a module falls back to the difference of medians.
_MIN_PAIRS = 2

MoveKind = Literal["both", "added", "removed", "rest"]

#: Module types the reports are about (deformable convolutions, attention, dynamic convolution): the
#: readers look for these first, so renderers emphasise them. Matched against the class name.
_EMPHASIS = re.compile(
    r"deform|dcn|attention|attn|encoderblock|cbam|^eca$|variableinput|dynamic|squeeze|excitation", re.IGNORECASE
)


def emphasised(module_type: str) -> bool:
    """Whether a module of class ``module_type`` is one of the kinds the reports study (e.g.
    ``DeformConv2d``, ``DCNv1``, ``MultiheadAttention``, ``EncoderBlock``, ``CBAM``, ``VariableInputConv``)."""
    return bool(_EMPHASIS.search(module_type))


@dataclass(frozen=True)
class ModuleMove:
    """One module's move in one phase (seconds; ``change`` and ``interval`` relative, head over base)."""

    name: str
    type: str
    kind: MoveKind
    base_s: float | None
    head_s: float | None
    delta_s: float
    #: ``delta_s`` over the case's move in the phase; ``None`` when the case did not move at all.
    share: float | None = None
    change: float | None = None
    #: Paired only: the 95 % distribution-free interval of ``change``.
    interval: tuple[float, float] | None = None
    paired: bool = False

    @property
    def emphasised(self) -> bool:
        return emphasised(self.type)


@dataclass(frozen=True)
class PhaseDiff:
    """One phase of one case: every leaf's move, largest first, and the rest."""

    phase: str
    #: The case's phase medians (timed rounds) and its move as the verdict judged it.
    base_s: float | None
    head_s: float | None
    delta_s: float | None
    moves: tuple[ModuleMove, ...]
    rest: ModuleMove | None
    #: :attr:`Record.modules_coverage` of each side for this phase, where recorded.
    coverage: tuple[float | None, float | None] = (None, None)

    def top(self, n: int | None = DEFAULT_TOP) -> tuple[ModuleMove, ...]:
        """The ``n`` largest moves (all with ``None``)."""
        return self.moves if n is None else self.moves[: max(0, n)]


@dataclass(frozen=True)
class ModuleDiff:
    """Both phases of one case's breakdown diff."""

    depth: int
    paired: bool
    phases: Mapping[str, PhaseDiff]


def has_modules(record: Record | None) -> bool:
    """Whether a record carries a per-module breakdown (files from before it have ``modules=None``)."""
    return record is not None and record.status == "ok" and bool(record.modules)


def _depth_of(record: Record) -> int:
    if record.modules_depth is not None:
        return int(record.modules_depth)
    return max((int(m.get("depth", 0)) for m in record.modules or ()), default=0)


def leaves(modules: Sequence[Mapping[str, Any]], depth: int | None = None) -> list[Mapping[str, Any]]:
    """The modules of the tree cut at ``depth`` (all of them with ``None``) that have no child in the
    cut, in model order: disjoint, so their times may be added. The model itself (name ``""``) is the
    parent of all and never a leaf."""
    cut = [m for m in modules if m.get("name") and (depth is None or int(m.get("depth", 0)) <= depth)]
    names = [str(m["name"]) for m in cut]
    parents = {n.rsplit(".", i)[0] for n in names for i in range(1, n.count(".") + 1)}
    return [m for m, n in zip(cut, names) if n not in parents]


def _samples(module: Mapping[str, Any], phase: str) -> list[float]:
    values = module.get(quantity(phase).samples) or []
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def _median(module: Mapping[str, Any], phase: str) -> float | None:
    stored = module.get(quantity(phase).time)
    if stored is not None:
        return float(stored)
    samples = _samples(module, phase)
    return statistics.median(samples) if samples else None


def _paired_change(base: Sequence[float], head: Sequence[float]) -> tuple[float, float, float] | None:
    """(change, lower, upper) relative, from the Hodges–Lehmann estimate of the paired log ratios;
    ``None`` where the rounds cannot be paired (lengths differ, too few, a zero time)."""
    if len(base) != len(head) or len(base) < _MIN_PAIRS or min(*base, *head) <= 0:
        return None
    estimate, lower, upper = hodges_lehmann([math.log(h / b) for b, h in zip(base, head)])
    return math.expm1(estimate), math.expm1(lower), math.expm1(upper)


def _phase_move(base: Record, head: Record, phase: str, paired: bool) -> float | None:
    b, h = base.median(phase), head.median(phase)
    if b is None or h is None:
        return None
    if paired:
        change = _paired_change(base.samples(phase) or [], head.samples(phase) or [])
        if change is not None:
            return b * change[0]
    return h - b


def _module_move(name: str, bm: Mapping[str, Any] | None, hm: Mapping[str, Any] | None, phase: str,
                 paired: bool) -> ModuleMove | None:
    type_name = str((hm or bm or {}).get("type", ""))
    b = None if bm is None else _median(bm, phase)
    h = None if hm is None else _median(hm, phase)
    if bm is None and h is not None:
        return ModuleMove(name, type_name, "added", None, h, h)
    if hm is None and b is not None:
        return ModuleMove(name, type_name, "removed", b, None, -b)
    if b is None or h is None:
        return None  # a module the breakdown did not time in this phase (e.g. no backward)
    if paired:
        assert bm is not None and hm is not None
        estimate = _paired_change(_samples(bm, phase), _samples(hm, phase))
        if estimate is not None:
            change, lo, hi = estimate
            return ModuleMove(name, type_name, "both", b, h, b * change, change=change, interval=(lo, hi),
                              paired=True)
    return ModuleMove(name, type_name, "both", b, h, h - b, change=(h - b) / b if b else None)


def module_diff(base: Record, head: Record, *, paired: bool = False) -> ModuleDiff | None:
    """Every leaf's move per phase, ranked by the size of the move in seconds; ``None`` unless both
    records carry a breakdown. ``paired``: the records' rounds were measured in alternation (the caller
    knows: :func:`bench.judge.verdicts.paired_sides`)."""
    if not (has_modules(base) and has_modules(head)):
        return None
    depth = min(_depth_of(base), _depth_of(head))
    base_leaves = {str(m["name"]): m for m in leaves(base.modules or (), depth)}
    head_leaves = {str(m["name"]): m for m in leaves(head.modules or (), depth)}
    names = list(base_leaves) + [n for n in head_leaves if n not in base_leaves]
    phases: dict[str, PhaseDiff] = {}
    for phase in MODULE_PHASES:
        moves = [m for n in names
                 if (m := _module_move(n, base_leaves.get(n), head_leaves.get(n), phase, paired)) is not None]
        if not moves:
            continue
        total = _phase_move(base, head, phase, paired)
        rest = None
        if total is not None:
            rest_delta = total - sum(m.delta_s for m in moves)
            rest = ModuleMove(REST, "", "rest", None, None, rest_delta)
        shares = [_with_share(m, total) for m in moves]
        shares.sort(key=lambda m: -abs(m.delta_s))  # stable: equal moves stay in model order
        coverage = tuple((r.modules_coverage or {}).get(phase) for r in (base, head))
        phases[phase] = PhaseDiff(
            phase, base.median(phase), head.median(phase), total, tuple(shares),
            None if rest is None else _with_share(rest, total), (coverage[0], coverage[1]),
        )
    return ModuleDiff(depth, paired, phases) if phases else None


def _with_share(move: ModuleMove, total: float | None) -> ModuleMove:
    if not total:
        return move
    return ModuleMove(move.name, move.type, move.kind, move.base_s, move.head_s, move.delta_s,
                      move.delta_s / total, move.change, move.interval, move.paired)


def move_json(move: ModuleMove) -> dict[str, Any]:
    """One move as JSON (seconds, relative changes as fractions)."""
    return {
        "name": move.name, "type": move.type, "kind": move.kind, "base_s": move.base_s, "head_s": move.head_s,
        "delta_s": move.delta_s, "share": move.share, "change": move.change,
        "interval": None if move.interval is None else list(move.interval), "paired": move.paired,
        "emphasised": move.emphasised,
    }


def diff_json(diff: ModuleDiff) -> dict[str, Any]:
    """The whole diff as JSON: per phase every leaf's move, largest first, and the rest."""
    return {
        "depth": diff.depth,
        "paired": diff.paired,
        "phases": {
            phase: {
                "base_s": p.base_s, "head_s": p.head_s, "delta_s": p.delta_s,
                "coverage": {"base": p.coverage[0], "head": p.coverage[1]},
                "modules": [move_json(m) for m in p.moves],
                "rest": None if p.rest is None else move_json(p.rest),
            }
            for phase, p in diff.phases.items()
        },
    }


__all__ = [
    "DEFAULT_TOP", "MODULE_PHASES", "REST", "ModuleDiff", "ModuleMove", "PhaseDiff", "diff_json", "emphasised",
    "has_modules", "leaves", "module_diff", "move_json",
]
