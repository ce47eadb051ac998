"""A fake ``bench.worker``: speaks bench ab's protocol with scripted behaviour, without torch.

Behaviour comes from ``fake.json`` beside ``bench/`` (written by the tests):
``protocol`` (int), ``cases`` (names), ``slow`` ({case: factor}), ``crash`` / ``hang`` / ``fail`` (case
names), ``pids`` (a file every started worker appends its pid to).
"""

import json
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = json.loads((ROOT / "fake.json").read_text())
PHASES = ("forward", "backward", "optimizer", "inference")


def record(case, kind, samples):
    rec = {"case": case, "suite": "fake", "kind": kind, "profile": "smoke", "device": "cpu", "status": "ok",
           "batch_size": 2, "input_size": 32, "in_channels": 3, "num_classes": 8,
           "params_total": 1000, "params_trainable": 1000, "macs_forward": 5000, "seed": 0}
    for phase, values in samples.items():
        rec[f"samples_{phase}_s"] = values
    return rec


def stats(data):
    data = sorted(data)
    return {"min": data[0], "max": data[-1], "mean": sum(data) / len(data), "median": data[len(data) // 2],
            "stddev": 0.0, "rounds": len(data), "total": sum(data), "ops": 1.0, "data": data, "iterations": 1}


def main():
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    if CONFIG.get("pids"):
        with open(CONFIG["pids"], "a") as fh:
            fh.write(f"{os.getpid()}\n")
    # Every round's time is the "machine speed" of that second times the case's own factor: the speed
    # drifts a lot between rounds but equally for both sides of a pair (what pairing cancels).
    rng = random.Random(os.getpid())
    samples = {}
    for line in sys.stdin:
        req = json.loads(line)
        op, case = req.pop("op"), req.get("case")
        reply = {"ok": True}
        if op == "exit":
            break
        if op == "hello":
            reply.update(protocol=CONFIG.get("protocol", 1), version="fake", root=str(ROOT), worker=__file__)
        elif op == "setup":
            reply.update(machine_info={"node": "fake", "archbench": {"device": "cpu", "profile": "smoke",
                                                                      "threads": 1, "deterministic": True}},
                         commit_info={"id": "fake"})
        elif op == "cases":
            reply["cases"] = [{"name": c, "suite": "fake"} for c in CONFIG["cases"]]
        elif case in CONFIG.get("crash", []) and op.endswith("_round"):
            os._exit(3)
        elif case in CONFIG.get("hang", []) and op.endswith("_round"):
            time.sleep(3600)
        elif case in CONFIG.get("fail", []) and op.endswith("_prepare"):
            reply = {"ok": False, "status": "oom", "error": "MemoryError: fake"}
        elif op in ("step_prepare", "train_prepare"):
            samples[case] = {p: [] for p in PHASES} if op == "step_prepare" else {"epoch": []}
            reply["epochs"] = 2
        elif op in ("step_round", "train_epoch"):
            speed = 1.0 + 0.5 * ((time.monotonic() * 7) % 1.0)  # the machine, this instant
            factor = CONFIG.get("slow", {}).get(case, 1.0)
            for phase in samples[case]:
                samples[case][phase].append(0.01 * speed * factor * (1 + 0.01 * rng.random()))
            reply.update({phase: values[-1] for phase, values in samples[case].items()})
            reply["step"] = sum(reply.get(p, 0.0) for p in ("forward", "backward", "optimizer"))
        elif op in ("step_finish", "train_finish"):
            kind = "step" if op == "step_finish" else "train"
            got = samples.pop(case)
            first = next(iter(got.values()))
            reply.update(extra_info=record(case, kind, got), stats=stats(first))
        elif op == "drop":
            samples.pop(case, None)
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


if __name__ == "__main__":
    main()
