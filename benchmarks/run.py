"""Run every benchmarks/bench_*.py in turn (`make bench`).

Each benchmark is its own process, prints its result lines and writes out/bench/<name>.json;
this runner only sequences them and reports which ones could not run. Results are ratios
against baselines timed in the same run, so they compare across machines.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    failed: list[str] = []
    benches = sorted(HERE.glob("bench_*.py"))
    for bench in benches:
        print(f"== {bench.stem}", flush=True)
        start = time.perf_counter()
        rc = subprocess.run([sys.executable, str(bench)], cwd=HERE.parent, check=False).returncode
        print(f"== {bench.stem}: {'ok' if rc == 0 else f'exit {rc}'} in {time.perf_counter() - start:.1f} s\n",
              flush=True)
        if rc != 0:
            failed.append(bench.stem)
    if failed:
        print(f"benchmarks that did not run: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
