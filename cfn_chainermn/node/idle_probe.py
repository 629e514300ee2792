"""What keeps a node busy (node/idle.py counts the rest): the master looks at itself and reads
every live worker's busy marker (node/idle_marker.py), which each worker publishes from
`node_activity` over its own /proc.

- Jobs of ours (the master only): jobs/sh/list.sh over the shared jobs folder, the same script
  `job list` runs; a queued or running job is busy (the queue's states: jobs/sh/queue.sh). The
  agent makes the folder at boot (steps.shared_step), so a missing or unreadable one means the
  shared folder is not what it should be (EFS not mounted, a stale handle): cannot tell, busy.
- MPI launchers (mpiexec, mpirun, orterun, prterun, prte) and the per-node daemons they start
  over ssh (Open MPI 4's orted, Open MPI 5's PRRTE prted (prted(1)), MPICH Hydra's
  hydra_pmi_proxy), ours or started by hand.
- GPU holders: `nvidia-smi --query-compute-apps=pid,process_name --format=csv,noheader` lists the
  processes with a compute context (nvidia-smi(1), "--query-compute-apps"); a machine without
  nvidia-smi has no GPU to hold, and a failing one cannot tell: busy.
- Logins: every ssh session, interactive or not (`job logs -f`, a client waiting on its job),
  by the title sshd gives a session's process, "sshd: USER@pts/N" or "sshd: USER@notty"
  (OpenSSH's sshd.c/session.c setproctitle; "sshd-session: ..." since OpenSSH 9.8 split it).

A /proc that cannot be listed cannot tell either: busy. Pure functions over a /proc folder and
a command runner, so a test gives both.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from cfn_chainermn.jobs import scripts
from cfn_chainermn.node.idle import Activity

Runner = Callable[[Sequence[str]], tuple[int, bytes]]
LAUNCHERS = frozenset({"mpiexec", "mpirun", "orterun", "prterun", "prte",
                       "orted", "prted", "hydra_pmi_proxy"})  # the daemons too: a rank's node runs one
BUSY_JOB_STATES = frozenset({"queued", "running"})
_SESSION = re.compile(rb"^sshd(?:-session)?: ([^\s\0@\[]+)@([^\s\0]+)")
GPU_QUERY = ["nvidia-smi", "--query-compute-apps=pid,process_name", "--format=csv,noheader"]


def run(argv: Sequence[str]) -> tuple[int, bytes]:
    """A command's exit code and output; a missing program is 127, as a shell says."""
    try:
        proc = subprocess.run(list(argv), capture_output=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, str(exc).encode()
    return proc.returncode, proc.stdout


def folder_problem(jobs_dir: str) -> str | None:
    """Why the jobs folder cannot be read as it is (None: it can). list.sh reads a missing folder
    as "no jobs", which here would be a guess: the agent made it at boot, so its absence means the
    shared folder is not the one jobs use. A link is not followed (the cluster user can plant one)."""
    try:
        st = os.lstat(jobs_dir)
        if stat.S_ISLNK(st.st_mode):
            return f"jobs folder {jobs_dir} is a symbolic link (not followed): cannot tell whether a job waits"
        if not stat.S_ISDIR(st.st_mode):
            return f"jobs folder {jobs_dir} is not a folder: cannot tell whether a job waits"
        with os.scandir(jobs_dir) as entries:
            next(entries, None)
    except FileNotFoundError:
        return f"jobs folder {jobs_dir} missing (is the shared folder mounted?): cannot tell whether a job waits"
    except OSError as exc:
        return f"jobs folder {jobs_dir} unreadable ({exc.strerror}): cannot tell whether a job waits"
    return None


def jobs(jobs_dir: str, runner: Runner = run) -> tuple[str, ...]:
    """Queued and running jobs of the jobs folder, as "job ID (state)"."""
    problem = folder_problem(jobs_dir)
    if problem:
        return (problem,)
    rc, out = runner(["sh", "-c", scripts.inline("list.sh", jobs_dir)])
    if rc != 0:
        return (f"job list failed (exit {rc})",)  # cannot tell: busy, so nothing is deleted on a guess
    found = []
    for record in out.split(b"\0"):
        fields = record.decode("utf-8", "replace").split("\t")
        if len(fields) >= 2 and fields[1] in BUSY_JOB_STATES:
            found.append(f"job {fields[0]} ({fields[1]})")
    return tuple(found)


def _cmdlines(proc: Path) -> list[tuple[str, bytes]]:
    """(pid, cmdline) of every process; OSError when `proc` itself cannot be listed."""
    out = []
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                out.append((entry.name, (entry / "cmdline").read_bytes()))
            except OSError:  # gone meanwhile, or not ours to read
                continue
    return sorted(out, key=lambda item: int(item[0]))


def launchers(proc: Path) -> tuple[str, ...]:
    found = []
    for pid, cmdline in _cmdlines(proc):
        name = Path(cmdline.split(b"\0", 1)[0].decode("utf-8", "replace")).name
        if name in LAUNCHERS or name.startswith(("mpiexec.", "mpirun.")):  # mpiexec.hydra, mpirun.openmpi
            found.append(f"{name} (pid {pid})")
    return tuple(found)


def sessions(proc: Path) -> tuple[str, ...]:
    found: dict[str, None] = {}  # in order, each once
    for _, cmdline in _cmdlines(proc):
        match = _SESSION.match(cmdline)
        if match:
            who = f"{match.group(1).decode('utf-8', 'replace')}@{match.group(2).decode('utf-8', 'replace')}"
            found[who] = None
    return tuple(found)


def gpu_holders(runner: Runner = run, which: Callable[[str], str | None] = shutil.which) -> tuple[str, ...]:
    if which(GPU_QUERY[0]) is None:
        return ()
    rc, out = runner(GPU_QUERY)
    if rc != 0:  # cannot tell (a wedged driver, a timeout): busy, so nothing is deleted on a guess
        return (f"GPU query failed (exit {rc})",)
    found = []
    for line in out.decode("utf-8", "replace").splitlines():
        pid, _, name = (part.strip() for part in line.partition(","))
        if pid:
            found.append(f"GPU: {Path(name).name or '?'} (pid {pid})")
    return tuple(found)


def node_activity(proc: Path, runner: Runner = run,
                  which: Callable[[str], str | None] = shutil.which) -> Activity:
    """What keeps this node busy, jobs aside: MPI launchers and daemons, GPU holders, sessions."""
    try:
        found, sessions_ = launchers(proc), sessions(proc)
    except OSError as exc:  # no process list: nothing can be said, so nothing is deleted on a guess
        found, sessions_ = (f"cannot list processes in {proc} ({exc.strerror})",), ()
    return Activity(processes=found + gpu_holders(runner, which), sessions=sessions_)


def probe(jobs_dir: str, proc: Path, runner: Runner = run, which: Callable[[str], str | None] = shutil.which,
          nodes: Mapping[str, Sequence[str]] | None = None) -> Activity:
    """Everything that keeps the cluster busy now: the master's own jobs and processes, and what
    each live worker's busy marker says (`nodes`: instance id -> its words)."""
    own = node_activity(proc, runner, which)
    return Activity(jobs=jobs(jobs_dir, runner), processes=own.processes, sessions=own.sessions,
                    nodes=tuple(f"{iid}: {word}" for iid, words in sorted((nodes or {}).items()) for word in words))
