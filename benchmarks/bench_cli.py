"""CLI start-up and template render time, as ratios to `python -c pass` timed in the same run.

Goals (from the issue): `cfn-chainermn --help` under 0.15 s and `cfn-chainermn template` under
1 s. The commands are timed round-robin, so a busy moment on a shared machine hits all of
them alike, and the median of several repetitions is reported.

What start-up imports is counted too (modules loaded by `--help` and `job submit --help`, and
whether a heavy library is among them), so a refactor that drags boto3 or paramiko into the
start-up path shows here as a number, not only as a few milliseconds lost in noise.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPETITIONS = 7
ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "out" / "bench"
GOALS_S = {"help": 0.15, "template": 1.0}
HEAVY = ("boto3", "botocore", "paramiko", "troposphere", "jinja2", "yaml")
COUNT_IMPORTS = """
import sys
from cfn_chainermn.cli import cli
from cfn_chainermn.cli.boundary import run_with_boundary
try:
    run_with_boundary(cli, sys.argv[1:])
except SystemExit:
    pass
loaded = set(sys.modules)
print(len(loaded), ",".join(h for h in {heavy!r} if h in loaded), file=sys.stderr)
"""


def cli() -> list[str]:
    """The installed console script next to this interpreter, else `python -m cfn_chainermn`."""
    script = Path(sys.executable).with_name("cfn-chainermn")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cfn_chainermn"]


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def imported(args: list[str]) -> tuple[int, str]:
    """How many modules a command loads in all, and which heavy libraries among them."""
    out = subprocess.run([sys.executable, "-c", COUNT_IMPORTS.format(heavy=HEAVY), *args], check=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    count, _, heavy = out.stderr.strip().splitlines()[-1].partition(" ")
    return int(count), heavy


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        commands = {
            "baseline": [sys.executable, "-c", "pass"],
            "help": [*cli(), "--help"],
            "template": [*cli(), "template", "-o", os.path.join(tmp, "cluster.yaml")],
        }
        for argv in commands.values():  # warm the page cache and .pyc files
            timed(argv)
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(REPETITIONS):
            for name, argv in commands.items():
                samples[name].append(timed(argv))
    median = {name: statistics.median(values) for name, values in samples.items()}
    base = median["baseline"]
    results: dict[str, object] = {"baseline_s": round(base, 4)}
    print(f"{'baseline':9} {'python -c pass':28} {base:7.3f} s (median of {REPETITIONS})")
    for name, goal in GOALS_S.items():
        met = median[name] < goal
        ratio = median[name] / base
        label = " ".join(["cfn-chainermn", *commands[name][len(cli()):]][:2])
        print(f"{name:9} {label:28} {median[name]:7.3f} s = {ratio:5.1f}x baseline   "
              f"goal < {goal:g} s: {'met' if met else 'NOT met'}")
        results |= {f"{name}_s": round(median[name], 4), f"{name}_ratio": round(ratio, 2),
                    f"{name}_goal_s": goal, f"{name}_goal_met": met}
    for label, args in (("help", ["--help"]), ("job submit --help", ["job", "submit", "--help"])):
        count, heavy = imported(args)
        print(f"imports   cfn-chainermn {label:18} {count:4d} modules; heavy: {heavy or 'none'}")
        results |= {f"imports_{label.replace(' ', '_')}": count, f"heavy_{label.replace(' ', '_')}": heavy}
    OUT.mkdir(parents=True, exist_ok=True)
    report = {"name": "cli", "repetitions": REPETITIONS, "results": results,
              "samples_s": {k: [round(v, 4) for v in vs] for k, vs in samples.items()},
              "python": platform.python_version(), "machine": platform.platform(), "cpus": os.cpu_count()}
    (OUT / "cli.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {(OUT / 'cli.json').relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
