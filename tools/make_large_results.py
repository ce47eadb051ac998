"""Write a large pair of results files for timing ``bench compare`` and ``bench merge`` at scale.

Every benchmark of the committed smoke pair (results/cpu-smoke-baseline.json and cpu-smoke-rerun.json,
64 benchmarks each) is repeated ``--copies`` times under new case names (``<case>__c<NNN>``), so
the verdicts per copy are those of the committed pair and the noise estimate is unchanged. The default,
160 copies, gives 10,240 benchmarks and about 38 MB per file::

    python tools/make_large_results.py /tmp/large            # writes /tmp/large/{base,head}.json
    /usr/bin/time -v bench compare /tmp/large/base.json /tmp/large/head.json > /dev/null
    /usr/bin/time -v bench merge /tmp/large/base.json /tmp/large/split.json -o /tmp/large/merged.json

``--split`` also writes ``split.json`` (head's benchmarks under other names, baseline's envelope) so
that ``bench merge`` has two disjoint inputs of the same size.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent.parent / "results"


def repeat(data: dict[str, Any], copies: int, tag: str = "c") -> dict[str, Any]:
    """``data`` with its benchmarks repeated ``copies`` times, each copy under its own case names."""
    out = {k: v for k, v in data.items() if k != "benchmarks"}
    benchmarks: list[dict[str, Any]] = []
    for i in range(copies):
        for bench in data["benchmarks"]:
            case = bench["extra_info"]["case"]
            new_case = f"{case}__{tag}{i:03d}"
            item = copy.deepcopy(bench)
            item["name"] = bench["name"].replace(f"[{case}]", f"[{new_case}]")
            item["fullname"] = bench["fullname"].replace(f"[{case}]", f"[{new_case}]")
            item["param"] = new_case
            item["params"] = {"case": new_case}
            item["extra_info"]["case"] = new_case
            benchmarks.append(item)
    out["benchmarks"] = benchmarks
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--copies", type=int, default=160)
    parser.add_argument("--base", type=Path, default=RESULTS / "cpu-smoke-baseline.json")
    parser.add_argument("--head", type=Path, default=RESULTS / "cpu-smoke-rerun.json")
    parser.add_argument("--split", action="store_true", help="also write split.json for bench merge")
    args = parser.parse_args()
    args.outdir.mkdir(parents=True, exist_ok=True)
    base = json.loads(args.base.read_text(encoding="utf-8"))
    head = json.loads(args.head.read_text(encoding="utf-8"))
    targets = [("base.json", base, "c"), ("head.json", head, "c")]
    if args.split:
        targets.append(("split.json", head, "s"))
    for name, data, tag in targets:
        path = args.outdir / name
        # indent=4 as pytest-benchmark writes it, so the size and parse time are a real run's
        path.write_text(json.dumps(repeat(data, args.copies, tag), indent=4) + "\n", encoding="utf-8")
        print(f"wrote {path}: {len(data['benchmarks']) * args.copies} benchmarks, {path.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
