"""Sequential instances on PostgreSQL: durableflow (optionally also an earlier source
tree of it), DBOS and the bare asyncpg commit, alternating round by round in one run.

Run:  .venv/bin/python tests/benchmarks/bench_pg_sequential.py [--rounds N] [--before DIR]

Each round measures, each in a process and a database of its own (the workers and
options of ``bench_dbos.py``'s ``sequential`` scenario: 200 instances x 10 no-op steps,
each awaited before the next starts): durableflow on ``DIR``'s ``sdk`` and ``runtime``
when ``--before`` names a source tree (e.g. ``git archive <commit> | tar -x -C DIR``),
durableflow as installed, DBOS with its defaults and tuned (sync workflows), and the bare
asyncpg ``INSERT`` loop. On a shared machine only the figures of one round compare well.
Needs the ``bench`` extra (``make setup-bench``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from tests.benchmarks import bench_dbos as b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", type=Path, help="an earlier source tree of durableflow")
    args = parser.parse_args()
    counts = b.Counts(rounds=args.rounds)
    columns = ["bare commit, us"]
    columns += ["durableflow before, ms/step"] if args.before else []
    columns += ["durableflow, ms/step", "DBOS defaults, ms/step", "DBOS tuned, ms/step"]
    rows: list[list[float]] = []

    def per_step(figures: dict[str, Any]) -> float:
        return float(figures["seconds"]) / float(figures["steps"]) * 1e3

    def sequential(setup: b.Setup) -> float:
        style = "sync" if setup.system == "dbos" else "async"  # as bench_dbos.py runs them
        return per_step(b.measure(setup, "sequential", counts, n=200, steps=10, style=style))

    for _ in range(args.rounds):
        row = [b.measure_bare("asyncpg", counts.bare)["seconds_per_commit"] * 1e6]
        if args.before:
            tree = args.before.resolve()
            os.environ["PYTHONPATH"] = f"{tree / 'sdk'}{os.pathsep}{tree / 'runtime'}"
            try:
                row.append(sequential(b.DF_PG))
            finally:
                del os.environ["PYTHONPATH"]
        row += [sequential(b.DF_PG), sequential(b.DBOS_PG), sequential(b.DBOS_PG_TUNED)]
        rows.append(row)
    print("| round | " + " | ".join(columns) + " |")
    print("| --- |" + " ---: |" * len(columns))
    for n, row in enumerate(rows, 1):
        print(f"| {n} | " + " | ".join(f"{v:,.3g}" for v in row) + " |")
    medians = [statistics.median(column) for column in zip(*rows, strict=True)]
    print("| median | " + " | ".join(f"{v:,.3g}" for v in medians) + " |")


if __name__ == "__main__":
    main()
