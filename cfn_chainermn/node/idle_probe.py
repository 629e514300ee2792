"""What keeps a node busy (node/idle.py counts the rest): the master looks at itself and reads
every live worker's busy marker (node/idle_marker.py), which each worker publishes from
`node_activity` over its own /proc.

- Jobs of ours (the master only): jobs/sh/list.sh over the shared jobs folder, the same script
  `job list` runs, behind jobs/sh/idle.sh, which enters the folder; a queued or running job is
  busy (the queue's states: jobs/sh/queue.sh). Both run as the cluster user, never as root (the
  folder and all in it are the user's to plant links and FIFOs in), in a process group of their
  own killed whole (SIGKILL) after LIST_TIMEOUT_S: a FIFO, or a hard NFS (EFS) mount that stopped
  answering, blocks that listing, never the refresh. A hard mount's waits yield to SIGKILL since
  Linux 2.6.25 (nfs(5), "intr / nointr": ignored after 2.6.25; TASK_KILLABLE). A listing that
  fails, times out, or finds a link or a folder it cannot list cannot tell: busy. A missing
  folder (one the shared folder does not list: an I/O error that hides a listed one cannot tell)
  is "no jobs" (it was removed: submit.sh makes it again), unless the shared folder is an EFS
  mount that /proc/self/mounts no longer lists: then it cannot tell either.
- MPI launchers (mpiexec, mpirun, orterun, prterun, prte) and the per-node daemons they start
  over ssh (Open MPI 4's orted, Open MPI 5's PRRTE prted (prted(1)), MPICH Hydra's
  hydra_pmi_proxy), ours or started by hand.
- GPU holders: `nvidia-smi --query-compute-apps=pid,process_name --format=csv,noheader` lists the
  processes with a compute context (nvidia-smi(1), "--query-compute-apps"); a machine without
  nvidia-smi has no GPU to hold, and a failing one cannot tell: busy.
- Logins: every authenticated ssh connection of any user, by the title sshd gives its
  unprivileged per-connection process (openssh-portable session.c): "sshd: USER" from
  do_authenticated() as soon as the user is in, so a tunnel alone (`ssh -N -L`, a notebook's port
  forward) counts, then "sshd: USER@pts/N" or "sshd: USER@notty" (session_proctitle()) once a
  session channel opens (`job logs -f`, a client waiting on its job); "sshd-session: ..." since
  OpenSSH 9.8 split it. Not "sshd: USER [priv]" nor "sshd: USER [net]": the monitor and the
  network child take those titles while the user is still authenticating (monitor.c
  mm_answer_pwnamallow(), auth2.c input_userauth_request()), so a stranger guessing passwords
  would hold the cluster; nor the listener's "sshd: /usr/sbin/sshd -D [listener] ...".

A /proc that cannot be listed cannot tell either: busy. Every word is cleaned (`clean`: a
process or folder name is the user's to choose) before `stack status` or a log shows it, the
workers' words too. Pure functions over a /proc folder and a command runner, so a test gives both.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pwd
import re
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cfn_chainermn.jobs import scripts
from cfn_chainermn.jobs.folder import JOBS
from cfn_chainermn.node.idle import Activity

if TYPE_CHECKING:
    from cfn_chainermn.node.context import Context

Runner = Callable[[Sequence[str]], tuple[int, bytes]]
LAUNCHERS = frozenset({"mpiexec", "mpirun", "orterun", "prterun", "prte",
                       "orted", "prted", "hydra_pmi_proxy"})  # the daemons too: a rank's node runs one
BUSY_JOB_STATES = frozenset({"queued", "running"})
JOB_STATES = BUSY_JOB_STATES | {"exited", "cancelled", "lost"}  # list.sh's; anything else: cannot tell
# "sshd: USER" or "sshd: USER@TTYS", ended there: "[priv]", "[net]" and the listener's title go on
_SESSION = re.compile(rb"^sshd(?:-session)?: ([^\s\0@\[]+)(?:@([^\s\0]+))?(?:\0|$)")
GPU_QUERY = ["nvidia-smi", "--query-compute-apps=pid,process_name", "--format=csv,noheader"]
GPU_TIMEOUT_S, LIST_TIMEOUT_S, KILL_GRACE_S = 60.0, 20.0, 5.0  # a refresh comes every 30 s
TIMED_OUT = 124  # what timeout(1) exits with
LIST_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}  # nothing of root's environment
MOUNTS = "/proc/self/mounts"
MAX_WORDS, MAX_WORD = 8, 80
# idle.sh's exit codes
MISSING, LINKED, UNLISTABLE = 3, 4, 5


def clean(words: Iterable[object]) -> tuple[str, ...]:
    """At most MAX_WORDS printable words of at most MAX_WORD characters, the rest counted: a
    process, user or folder name is the user's to choose, so no terminal escape or control
    character reaches `stack status` or a log. No word vanishes (one with nothing printable is
    "?"), so cleaning never turns busy into idle."""
    out = ["".join(c for c in str(w) if c.isprintable())[:MAX_WORD] or "?" for w in words]
    return tuple(out[:MAX_WORDS]) + ((f"(+{len(out) - MAX_WORDS} more)",) if len(out) > MAX_WORDS else ())


@dataclass(frozen=True)
class Account:
    """Who a command runs as: set in the forked child before exec (Popen's user, group and
    extra_groups: setgroups, setregid, setreuid; no Python runs there)."""

    uid: int
    gid: int
    groups: tuple[int, ...] = ()


def run(argv: Sequence[str], timeout: float = GPU_TIMEOUT_S, as_user: Account | None = None,
        env: Mapping[str, str] | None = None) -> tuple[int, bytes]:
    """A command's exit code and output. It runs in a session (process group) of its own that is
    killed whole at `timeout` (TIMED_OUT then: no orphan of it is left blocked); a missing program
    is 127, as a shell says. One that cannot die yet is not waited for past KILL_GRACE_S."""
    try:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, cwd="/", env=env, start_new_session=True,
                                user=None if as_user is None else as_user.uid,
                                group=None if as_user is None else as_user.gid,
                                extra_groups=None if as_user is None else list(as_user.groups))
    except OSError as exc:
        return 127, str(exc).encode()
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the group is the child's pid while any member lives
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=KILL_GRACE_S)
        return TIMED_OUT, b""
    return proc.returncode, out


def account(user: str) -> Account | None:
    """The cluster user's ids when this process is root (None: run as this process, which can
    read nothing root could); KeyError when there is no such user."""
    if os.geteuid() != 0 or not user:
        return None
    entry = pwd.getpwnam(user)
    if entry.pw_uid == 0:
        return None
    return Account(entry.pw_uid, entry.pw_gid, tuple(os.getgrouplist(user, entry.pw_gid)))


def mounted(mount_point: str, table: str = MOUNTS) -> bool:
    """Whether the kernel's mount table lists `mount_point` now. Read from the table, not by a
    stat of the mount point, which a hung hard NFS mount would block; unreadable: False."""
    def unescape(field: str) -> str:  # the table writes space, tab, newline, backslash as \ooo
        return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)

    try:
        with open(table, encoding="utf-8", errors="replace") as f:
            return any(len(parts) > 1 and unescape(parts[1]) == mount_point for parts in (x.split() for x in f))
    except OSError:
        return False


@dataclass(frozen=True)
class JobsFolder:
    """The master's jobs folder, who may look into it, and the mount it must be on."""

    path: str  # <mount point>/jobs as this machine sees it
    user: str = ""  # the listing runs as this user when the agent is root ("": as the agent)
    mount: str = ""  # the EFS mount point the folder lives on ("": the shared folder is a plain folder)
    timeout: float = LIST_TIMEOUT_S
    mounts: str = MOUNTS

    @classmethod
    def of(cls, ctx: Context) -> JobsFolder:
        s = ctx.settings
        shared = str(ctx.platform.path(s.mount_point))
        return cls(os.path.join(shared, JOBS), s.user, shared if s.efs_id else "")  # a local node has no EFS


def _cannot(folder: JobsFolder, why: str) -> tuple[str, ...]:
    return (f"jobs folder {folder.path} {why}: cannot tell whether a job waits",)


def jobs(folder: JobsFolder, runner: Runner | None = None) -> tuple[str, ...]:
    """Queued and running jobs of the jobs folder, as "job ID (state)"; what cannot be told is busy."""
    if runner is None:
        try:
            as_user = account(folder.user)
        except KeyError:
            return _cannot(folder, f"not listed: user {folder.user} does not exist")
        runner = functools.partial(run, timeout=folder.timeout, as_user=as_user, env=LIST_ENV)
    command = f"{scripts.inline('idle.sh', folder.path)}\nset -- .\n{scripts.script('list.sh')}"
    rc, out = runner(["sh", "-c", command])
    if rc == MISSING:  # removed, or the mount it lived on is gone (a folder under the bare mount point)
        return _cannot(folder, "missing (is the shared folder mounted?)") \
            if folder.mount and not mounted(folder.mount, folder.mounts) else ()
    if rc in (LINKED, UNLISTABLE):
        return _cannot(folder, "is a symbolic link (not followed)" if rc == LINKED else
                       f"cannot be listed as {folder.user or 'the agent'}")
    if rc == TIMED_OUT:
        return (f"job list timed out after {folder.timeout:g} s (a hung shared folder?): "
                "cannot tell whether a job waits",)
    if rc != 0:
        return (f"job list failed (exit {rc})",)  # cannot tell: busy, so nothing is deleted on a guess
    found = []
    for record in out.split(b"\0")[:-1]:  # each record ends with a NUL
        fields = record.decode("utf-8", "replace").split("\t")
        if len(fields) < 2 or fields[1] not in JOB_STATES:  # a folder name with a tab: its state unknown
            found.append(f"job record unreadable ({fields[0]})")
        elif fields[1] in BUSY_JOB_STATES:
            found.append(f"job {fields[0]} ({fields[1]})")
    return clean(found)


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
    """Each user's ssh connections, once per "USER@TTYS" (a tunnel alone: "USER (ssh, no session)")."""
    found: dict[str, None] = {}  # in order, each once
    for _, cmdline in _cmdlines(proc):
        match = _SESSION.match(cmdline)
        if match:
            user = match.group(1).decode("utf-8", "replace")
            ttys = match.group(2)
            found[f"{user}@{ttys.decode('utf-8', 'replace')}" if ttys else f"{user} (ssh, no session)"] = None
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
        found, sessions_ = clean(launchers(proc)), clean(sessions(proc))
    except OSError as exc:  # no process list: nothing can be said, so nothing is deleted on a guess
        found, sessions_ = (f"cannot list processes in {proc} ({exc.strerror})",), ()
    return Activity(processes=found + clean(gpu_holders(runner, which)), sessions=sessions_)


def probe(folder: JobsFolder, proc: Path, runner: Runner = run, which: Callable[[str], str | None] = shutil.which,
          nodes: Mapping[str, Sequence[str]] | None = None) -> Activity:
    """Everything that keeps the cluster busy now: the master's own jobs and processes, and what
    each live worker's busy marker says (`nodes`: instance id -> its words, cleaned as it was read)."""
    own = node_activity(proc, runner, which)
    return Activity(jobs=jobs(folder), processes=own.processes, sessions=own.sessions,
                    nodes=tuple(f"{iid}: {word}" for iid, words in sorted((nodes or {}).items()) for word in words))
