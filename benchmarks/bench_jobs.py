"""Benchmarks of the jobs path on local clusters; ratios against baselines timed in the same run.

1. Launch overhead: `cfn-chainermn job submit local -n 3 -N 1 hostname.sh` (upload, runner,
   streamed output, exit code) against a bare `ssh master mpiexec ... hostname` with the same
   mpiexec argv. Goal: <= 1.2x.
2. `cluster check` on clusters of 2, 8 and 16 nodes. Goal: 16 nodes <= 2x the time of 2.

Not a test: it prints numbers. Usage: .venv/bin/python benchmarks/bench_jobs.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLI = [str(Path(sys.executable).with_name("cfn-chainermn"))]
if not Path(CLI[0]).exists():
    CLI = [sys.executable, "-m", "cfn_chainermn"]


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(list(args), capture_output=True, text=True, cwd=ROOT)
    if check and res.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res


def timed(*args: str) -> float:
    started = time.perf_counter()
    sh(*args)
    return time.perf_counter() - started


def median_of(repeat: int, *args: str) -> float:
    return statistics.median(timed(*args) for _ in range(repeat))


class Cluster:
    def __init__(self, workers: int) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="cfnmn-bench-", dir="/tmp"))
        self.base.chmod(0o755)
        self.dir = self.base / "c"
        self.workers = workers

    def __enter__(self) -> Cluster:
        t = timed(*CLI, "local", "up", "--workers", str(self.workers), "--state-dir", str(self.dir))
        print(f"  local up, {self.workers + 1} nodes: {t:.2f}s", flush=True)
        return self

    def __exit__(self, *exc: object) -> None:
        sh(*CLI, "local", "down", "--state-dir", str(self.dir), check=False)
        shutil.rmtree(self.base, ignore_errors=True)

    def cmd(self, *words: str) -> list[str]:
        return [*CLI, *words[:2], "--state-dir", str(self.dir), *words[2:]]


def bare_ssh_argv(c: Cluster, script: Path) -> list[str]:
    """System ssh to the master running the same mpiexec argv that `job submit` runs."""
    from cfn_chainermn.cluster.remote import host_entry
    from cfn_chainermn.jobs import mpi

    state = json.loads((c.dir / "cluster.json").read_text())
    key = (c.dir / "bucket" / "nodes" / "master" / "host_ed25519.pub").read_text().split()[:2]
    known = c.base / "known_hosts"
    known.write_text(f"{host_entry(state['master_ip'], state['port'])} {' '.join(key)}\n")
    remote_script = Path(state["shared"]) / script.name
    shutil.copy(script, remote_script)
    net = mpi.Network(cidr=mpi.LOOPBACK_CIDR, instance_type=mpi.LOCAL_INSTANCE_TYPE, ssh_port=state["port"])
    argv = mpi.mpiexec_argv(mpi.Job(program=str(remote_script), np=3, per_node=1), net)
    return ["ssh", "-i", f"{state['home']}/.ssh/id_ed25519", "-p", str(state["port"]), "-o", "BatchMode=yes",
            "-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes",
            f"{state['user']}@{state['master_ip']}", shlex.join(argv)]


def launch_overhead(repeat: int) -> float:
    print("launch overhead: job submit vs bare ssh + mpiexec (3 nodes, hostname)", flush=True)
    script = ROOT / "tests" / "local" / "scripts" / "hostname.sh"
    with Cluster(2) as c:
        bare = bare_ssh_argv(c, script)
        timed(*bare)  # warm-up (page cache, sshd)
        submit = c.cmd("job", "submit", "local", "-n", "3", "-N", "1", str(script))
        timed(*submit)
        t_submit, t_bare = [], []
        for _ in range(repeat):  # interleaved, so drift in machine load hits both alike
            t_submit.append(timed(*submit))
            t_bare.append(timed(*bare))
    s, b = statistics.median(t_submit), statistics.median(t_bare)
    print(f"  job submit {s:.3f}s, bare ssh {b:.3f}s (medians of {repeat}); ratio {s / b:.2f}x (goal <= 1.2x)")
    # the fastest of each, for a feel of the noise: this machine is shared, the ratio moves by ~0.05
    print(f"  fastest: {min(t_submit):.3f}s vs {min(t_bare):.3f}s = {min(t_submit) / min(t_bare):.2f}x")
    return s / b


def check_scaling(repeat: int) -> float:
    print("cluster check: 2, 8 and 16 nodes", flush=True)
    times = {}
    for nodes in (2, 8, 16):
        with Cluster(nodes - 1) as c:
            args = c.cmd("cluster", "check", "local")
            timed(*args)
            times[nodes] = median_of(repeat, *args)
        print(f"  {nodes:2d} nodes: {times[nodes]:.3f}s", flush=True)
    ratio = times[16] / times[2]
    print(f"  16 nodes / 2 nodes = {ratio:.2f}x (goal <= 2x)")
    return ratio


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=11)
    args = p.parse_args()
    launch = launch_overhead(args.repeat)
    scaling = check_scaling(args.repeat)
    print(f"\nsummary: launch overhead {launch:.2f}x (goal 1.2x), check 16/2 nodes {scaling:.2f}x (goal 2x)")


if __name__ == "__main__":
    main()
