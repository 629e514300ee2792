"""Discovery's cost per refresh interval on simulated clusters of 2, 16, 64 and 256 nodes (issue 13).

Each cluster is booted on a moto server on 127.0.0.1 (instances, ready markers, host keys:
tests/node/fleet_sim.py), then every node runs `node refresh` (the agent's code, in this process)
for two intervals: the first reads every host key and publishes the view, the second is the steady
state. The API calls are counted by operation with botocore's before-send event, per interval.

Then a job starts on every worker at once (an MPI daemon in each worker's process list) and ends:
what idle shutdown's busy markers (node/idle_marker.py) cost in those intervals, over the steady
state (each worker writes its marker once when busy and deletes it once when idle; the master
reads each once), and that the interval after is the steady state again.

Goals: calls(256) / calls(16) <= 16 in the steady state (the old design, where every node
discovered the cluster itself, made N DescribeInstances, 2N ListObjectsV2 and N^2 GetObject: a
ratio of about 256; its per-node calls are measured on one node of the same cluster and times N);
the master's refresh at 256 nodes <= 2 s, shown beside the master's refresh at 2 nodes timed in
the same run (the ratio is what compares across machines).

Not a test: it prints numbers. Usage: .venv/bin/python benchmarks/bench_discovery.py
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "out" / "bench"
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "node")]  # this checkout's package, test helpers

from fleet_sim import BUCKET, STACK, Fleet, fleet  # noqa: E402  (a test helper, found through sys.path)
from moto_support import start_moto, stop_moto  # noqa: E402  (moto on the port it bound: its own CPU, as on AWS)

from cfn_chainermn.cluster import inventory  # noqa: E402

SIZES = (2, 16, 64, 256)
GOAL_RATIO, GOAL_MASTER_S = 16.0, 2.0
TIMED = 5  # steady-state master refreshes timed per size (median)


class Waits:
    """Seconds spent waiting for the emulator (request sent to response read: its own work, which
    on AWS is AWS's), so the master's time splits into the emulator's share and this process's."""

    def __init__(self, *clients: Any) -> None:
        self.total = 0.0
        self._sent = threading.local()  # a first refresh reads keys from several threads at once
        self._lock = threading.Lock()
        for client in clients:
            client.meta.events.register("before-send", self._start)
            client.meta.events.register("before-parse", self._stop)

    def _start(self, **_: Any) -> None:
        self._sent.at = time.perf_counter()

    def _stop(self, **_: Any) -> None:
        with self._lock:
            self.total += time.perf_counter() - self._sent.at


def legacy_node_calls(f: Fleet) -> dict[str, int]:
    """One node's refresh as it was before: EC2 and the listing, then the listing again and every key."""
    f.calls.take()
    inventory.list_nodes(f.ec2, f.s3, STACK, BUCKET)
    inventory.host_keys(f.s3, BUCKET)
    return f.calls.take()


def timed_refresh(f: Fleet, index: int, waits: Waits) -> tuple[float, float]:
    """(wall seconds, of which waiting for the emulator) of one node's refresh."""
    started, waited = time.perf_counter(), waits.total
    f.refresh(f.nodes[index])
    return time.perf_counter() - started, waits.total - waited


@dataclass
class Row:
    nodes: int
    first_interval: dict[str, int]  # calls by operation: every key read, the view published
    interval: dict[str, int]  # the steady state
    legacy_node: dict[str, int]  # one node's refresh as it was before
    master_cold_s: float
    master_s: float  # median of TIMED steady refreshes
    master_emulator_s: float  # of which waiting for the emulator
    worker_s: float
    # a job on every worker: the calls over the steady state in the interval it starts, the next,
    # the one after, the interval it ends and the next
    job_extra: list[dict[str, int]]

    @property
    def calls(self) -> int:
        return sum(self.interval.values())

    @property
    def legacy_calls(self) -> int:
        return self.nodes * sum(self.legacy_node.values())


def measure(url: str, size: int) -> Row:
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"), timeout=30).read()
    with tempfile.TemporaryDirectory(prefix="cfnmn-bench-") as tmp:
        f = fleet(url, Path(tmp), size)
        waits = Waits(f.ec2, f.s3)
        legacy = legacy_node_calls(f)
        f.calls.take()
        cold_master = timed_refresh(f, 0, waits)[0]
        for i in range(1, size):
            f.refresh(f.nodes[i])
        first = f.calls.take()
        steady = f.interval()
        master = sorted(timed_refresh(f, 0, waits) for _ in range(TIMED))[TIMED // 2]
        worker = statistics.median(timed_refresh(f, -1, waits)[0] for _ in range(TIMED))
        f.calls.take()
        job = job_on_every_worker(f, steady)
    return Row(size, first, steady, legacy, cold_master, master[0], master[1], worker, job)


def job_on_every_worker(f: Fleet, steady: dict[str, int]) -> list[dict[str, int]]:
    """Intervals while an MPI daemon starts and ends on every worker: the calls beyond `steady`."""
    def extra() -> dict[str, int]:
        got = f.interval()
        return {op: n - steady.get(op, 0) for op, n in got.items() if n != steady.get(op, 0)}

    daemons = [n.root / "proc" / "4242" for n in f.nodes[1:]]
    for d in daemons:
        d.mkdir()
        (d / "cmdline").write_bytes(b"/opt/amazon/openmpi/bin/orted\0")
    out = [extra(), extra(), extra()]
    for d in daemons:
        (d / "cmdline").unlink()
        d.rmdir()
    return [*out, extra(), extra()]


def show(calls: dict[str, int]) -> str:
    return ", ".join(f"{op} {n}" for op, n in sorted(calls.items()))


def main() -> int:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):  # the emulator's; nothing leaves 127.0.0.1
        os.environ[name] = "testing"
    proc, port = start_moto(Path(tempfile.mkdtemp(prefix="bench-moto-")) / "moto.log")
    url = f"http://127.0.0.1:{port}"
    try:
        rows = {}
        for size in SIZES:
            rows[size] = r = measure(url, size)
            print(f"{size:4d} nodes: {r.calls:4d} calls per interval ({show(r.interval)}); "
                  f"first interval: {show(r.first_interval)}", flush=True)
            print(f"            before: {r.legacy_calls:6d} calls ({size} x {show(r.legacy_node)}); master refresh "
                  f"{r.master_s:.3f} s ({r.master_emulator_s:.3f} s of it waiting for the emulator; first "
                  f"{r.master_cold_s:.3f} s), worker {r.worker_s:.3f} s", flush=True)
            job = " | ".join(show(x) or "none" for x in r.job_extra)
            print(f"            a job on every worker, over the steady state: {job} (starts, next, next, ends, next)",
                  flush=True)
    finally:
        stop_moto(proc)
    ratio, legacy_ratio = rows[256].calls / rows[16].calls, rows[256].legacy_calls / rows[16].legacy_calls
    master, base = rows[256].master_s, rows[2].master_s
    ours = master - rows[256].master_emulator_s
    print(f"\ncalls(256) / calls(16) = {ratio:.1f} (goal <= {GOAL_RATIO:g}: "
          f"{'met' if ratio <= GOAL_RATIO else 'NOT met'}; before: {legacy_ratio:.1f})")
    print(f"master refresh at 256 nodes {master:.3f} s = {master / base:.1f}x its refresh at 2 nodes ({base:.3f} s) "
          f"(goal <= {GOAL_MASTER_S:g} s: {'met' if master <= GOAL_MASTER_S else 'NOT met'}); "
          f"in this process, without the emulator's share: {ours:.3f} s")
    cold = rows[256].master_cold_s  # every host key read: keys fetched PARALLEL_READS at a time
    print(f"the master's first refresh at 256 nodes (every key new) {cold:.3f} s "
          f"(goal <= {GOAL_MASTER_S:g} s: {'met' if cold <= GOAL_MASTER_S else 'NOT met'})")
    OUT.mkdir(parents=True, exist_ok=True)
    report = {"name": "discovery", "rows": [asdict(r) | {"calls": r.calls, "legacy_calls": r.legacy_calls}
                                            for r in rows.values()],
              "ratio_256_16": round(ratio, 2), "legacy_ratio_256_16": round(legacy_ratio, 2),
              "master_256_s": round(master, 4), "master_2_s": round(base, 4), "master_256_own_s": round(ours, 4),
              "master_256_first_s": round(cold, 4),
              "python": platform.python_version(), "machine": platform.platform(), "cpus": os.cpu_count()}
    (OUT / "discovery.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {(OUT / 'discovery.json').relative_to(ROOT)}")
    return 0 if ratio <= GOAL_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
