"""The Spot watch's side of the shared folder: the queue's gone entry and the running jobs' lines.

Everything here is on `<mount>/jobs/`, the cluster user's (opened without following links:
homefiles.py), and on EFS, which can fail like any file system (EIO, a stale handle) or refuse
a link the user planted. Each step raises on its own and the watch (spot.py) reports it and goes
on: no error here may keep a rank from its signal.

Which jobs run comes from the queue's book, not from the job folders: jobs/sh/queue.sh writes
`<jobs>/.queue/h.JOB` for each job it admits (its hostfile written first) and drops the entry
once the job has ended. So a poll reads the holders' folders only (exit_code first, then the
hostfile), however long the history of finished jobs is. A job started by a version without
the queue has no entry and is not told (docs/jobs.md counts such jobs out of the queue too).

The line for a job's log is not appended to the log from here: mpiexec on the master appends the
job's output to it from another NFS client, and two clients' appends race ("O_APPEND may lead to
corrupted files on NFS filesystems if more than one process appends data to a file at once ...
the client kernel has to simulate it, which can't be done without a race condition", open(2)).
So the watch writes the line whole into a file of its own in the job's folder, `spot.ADDRESS`
(one writer: this node; replaced in one rename, the cluster user's, 0600), before it signals the
ranks, and cmd.sh, the log's one writer, adds it to the log once mpiexec has returned.
"""

from __future__ import annotations

import os
import re

from cfn_chainermn.errors import AgentError
from cfn_chainermn.jobs.folder import JOBS
from cfn_chainermn.node.homefiles import HomeFiles

QUEUE = f"{JOBS}/.queue"  # jobs/sh/queue.sh's folder, under the mount point
HOLDER = "h."  # queue.sh's entry for a job that holds the nodes of its hostfile
NOTE = "spot."  # spot.ADDRESS in a job's folder: the line cmd.sh adds to its log
_ADDRESS = re.compile(r"[0-9A-Za-z][0-9A-Za-z.:_-]{0,252}")  # an IPv4/IPv6 address or a host name: a safe file name
_NODE = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,63}")  # an instance id, or a local node's id
_TIME = re.compile(r"[0-9A-Za-z:.+-]{1,40}")
UNKNOWN_TIME = "an unknown time"


def clean_time(text: str) -> str:
    """A time as EC2 gives it (`2026-12-02T21:00:00Z`), or UNKNOWN_TIME for anything else: the
    metadata's words go into a user's log and a file name's contents, never as they came."""
    return text if _TIME.fullmatch(text) else UNKNOWN_TIME


def log_line(node_id: str, ip: str, action: str, at: str, seen: str) -> str:
    """The one line a job's log gets: which node, when it was seen, what EC2 will do and when.
    `action` and `at` come cleaned (spot.parse_notice); the node's names are cleaned here."""
    node = node_id if _NODE.fullmatch(node_id) else "(unnamed)"
    addr = ip if _ADDRESS.fullmatch(ip) else "?"
    return (f"cfn-chainermn: {seen} Spot interruption notice on node {node} ({addr}): EC2 will "
            f"{action} it at {at}; stopping the job's ranks there so the job fails now instead of hanging\n")


def holds(hostfile: str, ip: str) -> bool:
    """Whether a job's hostfile (`ADDRESS slots=N` lines) names this node's address."""
    return any(line.split()[:1] == [ip] for line in hostfile.splitlines())


def gone_text(node_id: str, at: str) -> str:
    """The gone entry's one line: two fields, whatever the metadata and settings looked like."""
    node = node_id if _NODE.fullmatch(node_id) else "unknown"
    return f"{node} {at if _TIME.fullmatch(at) else 'unknown'}\n"


def tell_queue(files: HomeFiles, address: str, text: str) -> str:
    """Write <jobs>/.queue/gone.ADDRESS (files: the mount point, owned by the cluster user): .queue
    made 0700 if missing, the entry 0600, a link anywhere on the way refused. The jobs folder is
    the boot's to make (steps.shared_step): one made here while EFS is not mounted would be hidden.
    Keyed by address, as queue.sh reads hostfile lines: a replacement given the same address within
    the entry's 5 minutes waits that long for its first job."""
    if not _ADDRESS.fullmatch(address):
        raise AgentError(f"node address {address!r} cannot name a file in {QUEUE}: the queue is not told")
    with files.folder(JOBS, create=False) as fd:
        if fd is None:
            raise AgentError(f"no {JOBS} folder in {files.home} (the shared folder not mounted?)")
    rel = f"{QUEUE}/gone.{address}"
    files.write(rel, text, 0o600, folder_mode=0o700)
    return f"queue told ({rel}): no waiting job is placed on {address}"


def holders(files: HomeFiles) -> list[str]:
    """The jobs the queue lists as holding nodes (`.queue/h.JOB`), by name; none without a queue."""
    with files.folder(QUEUE, create=False) as fd:
        names = os.listdir(fd) if fd is not None else []
    jobs = (n[len(HOLDER):] for n in names if n.startswith(HOLDER))
    return sorted(j for j in jobs if j and not j.startswith(".") and "/" not in j)


def running_on(files: HomeFiles, job: str, ip: str) -> bool:
    """Whether holder `job` has not ended (no exit_code, read first) and its hostfile names `ip`."""
    if files.read(f"{JOBS}/{job}/exit_code") is not None:
        return False
    hostfile = files.read(f"{JOBS}/{job}/hostfile")
    return hostfile is not None and holds(hostfile.decode(errors="replace"), ip)


def write_note(files: HomeFiles, job: str, address: str, text: str) -> bool:
    """<jobs>/JOB/spot.ADDRESS holding `text`, for cmd.sh to add to the job's log (files: owned by
    the cluster user, who runs cmd.sh); False when the job's folder is gone (none is made). A
    link, a FIFO or a file with other names at that name is refused, as homefiles.py refuses
    them anywhere."""
    if not _ADDRESS.fullmatch(address):
        raise AgentError(f"node address {address!r} cannot name a file in {JOBS}/{job}: the job is not told")
    folder = f"{JOBS}/{job}"
    with files.folder(folder, create=False) as fd:
        if fd is None:
            return False
    files.write(f"{folder}/{NOTE}{address}", text, 0o600)
    return True
