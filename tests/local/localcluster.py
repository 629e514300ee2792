"""Helpers for tests on a real local cluster: the CLI as a user types it, /proc probes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "cfn_chainermn"]
NEEDS = ("/usr/sbin/sshd", "mpiexec", "ssh-keygen")


def missing_tools() -> list[str]:
    return [t for t in NEEDS if not (Path(t).exists() if t.startswith("/") else shutil.which(t))]


@dataclass
class LocalCluster:
    state_dir: Path

    @property
    def state(self) -> dict[str, object]:
        data: dict[str, object] = json.loads((self.state_dir / "cluster.json").read_text())
        return data

    @property
    def shared(self) -> Path:
        return self.state_dir / "shared"

    def args(self, *args: str) -> list[str]:
        return [*CLI, *args[:2], "--state-dir", str(self.state_dir), *args[2:]]

    def cli(self, *args: str, timeout: float = 120, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """`cfn-chainermn ARGS` with --state-dir placed after the two command words; stdin `input`
        (none: /dev/null, not whatever the test runner's stdin is)."""
        return subprocess.run(self.args(*args), capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                              input=input, stdin=subprocess.DEVNULL if input is None else None)

    def sshd_pid(self, node: str) -> int:
        return int((self.state_dir / "nodes" / node / "sshd.pid").read_text())

    def start_sshd(self, node: str) -> None:
        d = self.state_dir / "nodes" / node
        subprocess.run(["/usr/sbin/sshd", "-f", str(d / "sshd_config"), "-E", str(d / "sshd.log")], check=True)


def up(state_dir: Path, workers: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "local", "up", "--workers", str(workers), "--state-dir", str(state_dir)],
                          capture_output=True, text=True, timeout=180, cwd=ROOT)


def down(state_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "local", "down", "--state-dir", str(state_dir)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def make_state_dir(prefix: str) -> Path:
    """A folder the cluster user can reach (pytest's own tmp folders are mode 700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path / "cluster"


def pids_matching(pattern: str) -> list[int]:
    """Live (non-zombie) processes whose command line contains `pattern`."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if pattern in cmd and stat.rsplit(")", 1)[1].split()[0] != "Z":
            out.append(int(entry))
    return out


def rank_pids(job_id: str, script: str) -> list[int]:
    """The python ranks of a job (mpiexec and orted are not counted)."""
    out = []
    for pid in pids_matching(f"{job_id}/{script}"):
        try:
            first = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode()
        except OSError:
            continue
        if "python" in Path(first).name:
            out.append(pid)
    return out


def wait_until(predicate: object, timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(step)
    return bool(predicate())  # type: ignore[operator]


ROW = re.compile(r"^\s*(\d+)" + r"\s+([\d.e+-]+)" * 6 + r"\s*$")


def report_rows(text: str) -> list[tuple[float, ...]]:
    """examples/train_mnist.py's PrintReport rows: epoch, loss, val loss, accuracy, val accuracy,
    images/s, elapsed."""
    rows = []
    for line in text.splitlines():
        m = ROW.match(line.replace("\x1b[J", ""))
        if m:
            rows.append(tuple(float(g) for g in m.groups()))
    return rows
