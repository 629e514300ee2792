"""Finding and stopping a local cluster's processes through /proc, by pid, never by name.

A local cluster's processes are: its sshd listeners (found from their pid files and checked
against their own config path), everything below them (sessions, orteds, ranks), jobs that
detached from them (their working folder is in the state folder) and, when `local up`
created a user for the cluster, anything that user runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from cfn_chainermn.local.state import LocalState


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    uid: int
    cmdline: str
    cwd: str


def _read(pid: int) -> Proc | None:
    base = Path("/proc") / str(pid)
    try:
        stat = (base / "stat").read_text()
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        uid = next(int(line.split()[1]) for line in (base / "status").read_text().splitlines()
                   if line.startswith("Uid:"))
        cmdline = (base / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    try:
        cwd = os.readlink(base / "cwd")
    except OSError:
        cwd = ""
    return Proc(pid, ppid, uid, cmdline, cwd)


def processes() -> list[Proc]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            proc = _read(int(entry))
            if proc is not None:
                out.append(proc)
    return out


def _ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        proc = _read(pid)
        if proc is None:
            break
        pid = proc.ppid
    return pids


def sshd_pids(root: Path, state: LocalState) -> set[int]:
    """Listener pids from the nodes' pid files, only if that process runs our config."""
    pids = set()
    for node in state.nodes:
        d = root / "nodes" / node.id
        try:
            pid = int((d / "sshd.pid").read_text().strip())
        except (OSError, ValueError):
            continue
        proc = _read(pid)
        if proc is not None and str(d / "sshd_config") in proc.cmdline:
            pids.add(pid)
    return pids


def sshd_listening(d: Path, log_from: int = 0, timeout: float = 30.0) -> str | None:
    """None once node folder `d`'s sshd listens; else why not (its log since byte `log_from`).

    sshd forks into the background before it binds, and writes its pid file only once its
    sockets are bound (OpenSSH sshd.c main: daemon(), server_listen(), then the pid file), so its
    exit status says nothing of the port: a pid file naming a live process that runs this
    config does; "Cannot bind any address" in its -E log says it never will.
    """
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError, ValueError):
            proc = _read(int((d / "sshd.pid").read_text().strip()))
            if proc is not None and str(d / "sshd_config") in proc.cmdline:
                return None
        log = ""
        with contextlib.suppress(OSError), (d / "sshd.log").open("rb") as f:
            f.seek(log_from)
            log = f.read().decode(errors="replace").strip()
        if "Cannot bind any address" in log or time.monotonic() > deadline:
            return log[-800:] or f"no pid file within {timeout:g} s"
        time.sleep(0.05)


def alive_sshd(root: Path, state: LocalState) -> bool:
    return bool(sshd_pids(root, state))


def cluster_pids(root: Path, state: LocalState, uid: int | None) -> set[int]:
    table = processes()
    children: dict[int, list[int]] = {}
    for p in table:
        children.setdefault(p.ppid, []).append(p.pid)
    found = set(sshd_pids(root, state))
    stack = list(found)
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    prefix = str(root) + os.sep
    me = os.geteuid()
    for p in table:
        if (uid is not None and p.uid == uid) or (p.uid == me and (p.cwd + os.sep).startswith(prefix)):
            found.add(p.pid)
    return found - _ancestors()


def stop_cluster(root: Path, state: LocalState, uid: int | None, grace: float = 3.0) -> int:
    """TERM every process of the cluster, KILL what is left after `grace`; how many were stopped."""
    stopped: set[int] = set()
    for _ in range(3):
        pids = cluster_pids(root, state, uid)
        if not pids:
            break
        stopped |= pids
        _signal(pids, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_exists(p) for p in pids):
            time.sleep(0.05)
        _signal({p for p in pids if _exists(p)}, signal.SIGKILL)
    return len(stopped)


def _signal(pids: set[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _exists(pid: int) -> bool:
    proc = _read(pid)
    if proc is None:
        return False
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _is_sshd(proc: Proc) -> bool:
    """sshd retitles itself ("sshd: /usr/sbin/sshd -f ... [listener]"), so look at the first word."""
    first = proc.cmdline.split(" ", 1)[0]
    return first in ("sshd", "sshd:") or first.endswith("/sshd")


def any_sshd() -> bool:
    return any(_is_sshd(p) for p in processes())


def running_state_dirs(marker: str) -> list[Path]:
    """State folders of local clusters whose sshd runs now (their config carries `marker`)."""
    roots = set()
    for p in processes():
        words = p.cmdline.split()
        if not _is_sshd(p) or "-f" not in words:
            continue
        conf = Path(words[words.index("-f") + 1]) if words.index("-f") + 1 < len(words) else None
        try:
            if conf is not None and conf.read_text().startswith(marker):
                roots.add(conf.parents[2])
        except OSError:
            continue
    return sorted(roots)
