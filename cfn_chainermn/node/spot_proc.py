"""What the Spot watch reads in /proc/PID, parsed: pure functions over the files' bytes (proc(5)).

spot_ranks.py reads the files and decides; these say what a file holds. `stat` and `status` come
from the task's own fields, without the process's memory lock; `environ` needs that lock
(spot_environ.py says why that matters on a hung shared folder).
"""

from __future__ import annotations

RANK_VARS = (b"OMPI_COMM_WORLD_RANK=", b"PMIX_RANK=")
# OpenMPI's per-node daemons, which fork and exec the ranks: orted (Open MPI 4's ORTE) and prted
# (Open MPI 5's PRRTE), by the name the kernel keeps (task->comm: the executable's file name)
DAEMONS = (b"orted", b"prted")


def session_of(environ: bytes) -> tuple[str, int] | None:
    """(address, port) of this end of the ssh session a process's environment came from
    (SSH_CONNECTION's third and fourth fields), or None."""
    for e in environ.split(b"\0"):
        if e.startswith(b"SSH_CONNECTION="):
            parts = e.split(b"=", 1)[1].split()
            if len(parts) == 4 and parts[3].isdigit():
                return parts[2].decode(errors="replace"), int(parts[3])
    return None


def node_of(environ: bytes) -> tuple[str, int] | None:
    """(address, port) of the ssh session a process's environment came from, if it is a rank."""
    if not any(e.startswith(RANK_VARS) for e in environ.split(b"\0")):
        return None
    return session_of(environ)


def _fields(stat_text: bytes) -> list[bytes]:
    """/proc/PID/stat's fields from 3 on. The command name (field 2) may hold spaces and
    parentheses, so they are counted after its last ')'."""
    return stat_text.rpartition(b")")[2].split()


def ended(stat_text: bytes) -> bool:
    """Whether field 3 of /proc/PID/stat, the state, says the process has ended: a zombie (Z, its
    parent has not waited for it yet) or dead (X)."""
    fields = _fields(stat_text)
    return bool(fields) and fields[0] in (b"Z", b"X")


def start_time(stat_text: bytes) -> int | None:
    """Field 22 of /proc/PID/stat: clock ticks after boot."""
    fields = _fields(stat_text)
    return int(fields[19]) if len(fields) > 19 and fields[19].isdigit() else None


def parent_of(stat_text: bytes) -> int | None:
    """Field 4 of /proc/PID/stat, the parent's pid."""
    fields = _fields(stat_text)
    return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None


def uids_of(status_text: bytes) -> tuple[int, ...]:
    """The real, effective and saved uids (/proc/PID/status's `Uid:` line, proc(5)); () if none."""
    for line in status_text.splitlines():
        if line.startswith(b"Uid:"):
            ids = line.split()[1:4]
            return tuple(int(i) for i in ids) if len(ids) == 3 and all(i.isdigit() for i in ids) else ()
    return ()


def name_of(status_text: bytes) -> bytes:
    """The process's name (/proc/PID/status's `Name:` line: task->comm), b"" if none."""
    for line in status_text.splitlines():
        if line.startswith(b"Name:"):
            return line.split(b":", 1)[1].strip()
    return b""
