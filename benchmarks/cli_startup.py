"""`edgeml --help` wall time (the lazy CLI) against a bare `python -c pass` in the same run.

    python benchmarks/cli_startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    python, cli = [], []
    for _ in range(args.runs):  # interleaved
        python.append(timed([sys.executable, "-c", "pass"]))
        cli.append(timed([sys.executable, "-m", "edgeml", "--help"]))
    row = {"python_s": statistics.median(python), "edgeml_help_s": statistics.median(cli)}
    row["overhead_s"] = row["edgeml_help_s"] - row["python_s"]
    print(f"python -c pass: {row['python_s'] * 1000:.0f} ms   edgeml --help: {row['edgeml_help_s'] * 1000:.0f} ms   "
          f"(edgeml's own share {row['overhead_s'] * 1000:.0f} ms; target: well under 1 s)")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cli_startup.json").write_text(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
