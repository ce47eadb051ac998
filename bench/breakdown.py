"""``bench profile CASE``: one case's per-module breakdown as a table (docs/modules.md).

Builds the case as ``pytest bench/`` does (the profile's batch and input, the run's device and threads),
warms up, then alternates an ordinary training step timed phase by phase with a round of the
breakdown's own (bench/modules.py), and prints, per module, forward and backward time, their share of the phase, MACs,
parameters and activation memory, with what the leaf modules cover of each phase and what the
instrumentation cost. ``--json`` prints the same as the record's fields.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from bench.options import add_argparse_option
from bench.present import EXIT_UNUSABLE, Column, TableSpec, make_console


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value * 1e3:,.3f}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}"


def table_spec(result: Mapping[str, Any]) -> TableSpec[dict[str, Any]]:
    """The breakdown table of one case: ``result`` holds the record's ``modules*`` fields and the case's
    name, batch, input, device and rounds."""
    rows: Sequence[dict[str, Any]] = result["modules"]
    columns: list[Column[dict[str, Any]]] = [
        Column("module", lambda m: "  " * int(m["depth"]) + (m["name"] or "(model)"), no_wrap=True, code=True,
               style=lambda m: "" if m.get("leaf") else "bold"),
        Column("type", lambda m: str(m["type"]), no_wrap=True, priority=3),
        Column("leaf", lambda m: "•" if m.get("leaf") else "", "center", priority=2),
        Column("fwd (ms)", lambda m: _ms(m.get("time_forward_s")), "right", priority=9),
        Column("bwd (ms)", lambda m: _ms(m.get("time_backward_s")), "right", priority=9),
        Column("fwd share (%)", lambda m: _pct(m.get("share_forward")), "right", priority=8),
        Column("bwd share (%)", lambda m: _pct(m.get("share_backward")), "right", priority=8),
        Column("MACs (M)", lambda m: f"{m['macs_forward'] / 1e6:,.3f}", "right", priority=7),
        Column("params", lambda m: f"{m['params_total']:,}", "right", priority=6),
        Column("trainable", lambda m: f"{m['params_trainable']:,}", "right", priority=4),
        Column("activation (MiB)", lambda m: f"{m['mem_activation_bytes'] / 2**20:,.3f}", "right", priority=5),
    ]
    title = (f"{result['case']}: per-module breakdown, depth {result['modules_depth']} "
             f"(batch {result['batch_size']}, input {result['input_size']} px, {result['device']}, "
             f"{result['rounds']} rounds; medians; MACs per image)")
    return TableSpec(title, columns, rows, footer=footer(result))


def footer(result: Mapping[str, Any]) -> str:
    coverage = result.get("modules_coverage") or {}
    per_round = result.get("modules_coverage_per_round") or {}
    overhead = result.get("modules_overhead") or {}
    phases = result.get("modules_phase_samples_s") or {}
    parts = []
    for phase in ("forward", "backward"):
        samples = phases.get(phase) or []
        median = statistics.median(samples) if samples else None
        cov = coverage.get(phase)
        text = f"{phase} {_pct(per_round.get(phase))} % of {_ms(median)} ms"
        if cov is not None:
            text += f" (ratio of the medians: {_pct(cov)} %)"
        parts.append(text)
    lines = ["coverage (the leaf modules' sum over the whole phase, within each round, median over rounds): "
             + "; ".join(parts) + ". The rest: the loss, code between modules, autograd's scheduling."]
    if overhead:
        lines.append("instrumentation overhead (breakdown rounds' phase over the ordinary rounds'): "
                     + "; ".join(f"{p} ×{overhead[p]:.2f}" for p in ("forward", "backward") if p in overhead))
    return "\n".join(lines)


def measure(case_name: str, *, depth: int, rounds: int, device_name: str | None, profile_name: str | None,
            batch_size: int | None, threads: int | None, seed: int = 0) -> dict[str, Any]:
    """Build, warm up, time ``rounds`` ordinary phased steps, then ``rounds`` breakdown rounds."""
    from bench.devices import make_device
    from bench.harness import StepBenchmark
    from bench.profiles import default_profile_name, get_profile
    from suites.registry import get_case

    case = get_case(case_name)
    device = make_device(device_name, threads=threads)
    profile = get_profile(profile_name or default_profile_name(device.kind == "cuda")).override(batch_size=batch_size)
    input_size = profile.input_size(case.input_size)
    with device.settings():
        run = StepBenchmark(case, device, profile.batch_size, input_size, seed=seed)
        try:
            run.warmup(profile.warmup_rounds, profile.warmup_min_s)
            run.modules_prepare(depth)
            run.measure_modules_static()
            # an ordinary phased step and a breakdown round in turn, so that the overhead compares
            # rounds that saw the same machine
            for _ in range(rounds):
                run.train_step()
                run.modules_round()
            fields = run.record_fields()
        finally:
            run.close()
    keep = ("time_forward_s", "time_backward_s", "modules", "modules_depth", "modules_coverage",
            "modules_coverage_per_round", "modules_phase_samples_s", "modules_overhead")
    return {"case": case.name, "batch_size": profile.batch_size, "input_size": input_size, "device": device.kind,
            "profile": profile.name, "rounds": rounds, **{k: fields.get(k) for k in keep}}


def run(args: argparse.Namespace) -> int:
    from suites.registry import get_case

    try:
        get_case(args.case)
    except KeyError as exc:
        print(f"bench profile: {exc.args[0]}", file=sys.stderr)
        return EXIT_UNUSABLE
    if args.depth < 1 or args.rounds < 1:
        print("bench profile: --depth and --rounds must be at least 1", file=sys.stderr)
        return EXIT_UNUSABLE
    result = measure(args.case, depth=args.depth, rounds=args.rounds, device_name=args.bench_device,
                     profile_name=args.bench_profile, batch_size=args.bench_batch_size, threads=args.bench_threads,
                     seed=args.bench_seed)
    if args.json:
        print(json.dumps(result, indent=2, allow_nan=True))
    else:
        make_console().print(table_spec(result).to_rich())
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("profile", help="one case's forward/backward time, MACs, params and activation memory per module",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("case", help="the case's name (see bench list)")
    p.add_argument("--depth", type=int, default=2, metavar="N",
                   help="1: the model's top-level children; 2 (default): also their blocks")
    p.add_argument("--rounds", type=int, default=5, metavar="N",
                   help="breakdown rounds, each after an ordinary phased step (default 5)")
    add_argparse_option(p, "bench_device", "--device")
    add_argparse_option(p, "bench_profile", "--profile")
    add_argparse_option(p, "bench_batch_size", "--batch-size")
    add_argparse_option(p, "bench_threads", "--threads")
    add_argparse_option(p, "bench_seed", "--seed")
    p.add_argument("--json", action="store_true", help="print the breakdown as JSON (the record's fields)")
    p.set_defaults(func=run)
