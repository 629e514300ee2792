"""What the Spot watch has done for one notice, kept across restarts of the watch.

systemd restarts the watch if it dies (Restart=always in its unit, aws_platform.py; nothing
else restarts it: the agent is installed once, at the instance's first boot); in the middle of a
notice a fresh watch would otherwise retract the node again, write every job's line again and
SIGTERM ranks that are already handling one. So each step is recorded as soon as it is done, in a root-only file beside
the agent's other state (spot.json: /var/lib/cfn-chainermn/ on a node, DIR/nodes/<id>/ on a local
cluster), keyed by the notice's time (spot.record_key: this boot's id where the metadata gave no
time): a later notice (a stopped instance started again and warned again) starts afresh. A run
that stops between a step and its record repeats that one step; a file that cannot be read
(damaged, or not a plain file) counts as none, since acting twice beats not acting. The ranks
signalled are kept by pid and start time, which name one process for one boot only: a record
of another boot (its boot id, /proc/sys/kernel/random/boot_id, differs) keeps no rank.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cfn_chainermn.node.system import write_atomic

_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
MAX_BYTES = 1 << 20  # a few hundred jobs and ranks are far below this


@dataclass
class Record:
    """The steps done for the notice EC2 timed `notice_time`."""

    notice_time: str
    boot: str = ""  # the boot the ranks were signalled in (spot_ranks.py: pid and start time name a process for it)
    retracted: bool = False  # the node's ready marker deleted
    gone: bool = False  # <jobs>/.queue/gone.<address> written for the queue
    told: list[str] = field(default_factory=list)  # jobs whose line (spot_jobs.write_note) is written
    termed: dict[str, float] = field(default_factory=dict)  # "pid:start" -> when (time.time) SIGTERM went
    settled: list[str] = field(default_factory=list)  # ranks SIGKILLed, or found ended: nothing more to send
    resumed: bool = False  # loaded from an earlier run's file (not saved)

    def started(self) -> bool:
        """Whether anything was done yet."""
        return self.retracted or self.gone or bool(self.told or self.termed)

    def words(self) -> str:
        """What was done, for the agent log of a watch that goes on from it."""
        parts = ["readiness retracted"] if self.retracted else []
        parts += ["queue told"] if self.gone else []
        parts += [f"{len(self.told)} job(s) told"] if self.told else []
        parts += [f"{len(self.termed)} rank(s) sent SIGTERM"] if self.termed else []
        return ", ".join(parts) or "nothing yet"

    def save(self, path: Path) -> None:
        data = {"notice_time": self.notice_time, "boot": self.boot, "retracted": self.retracted, "gone": self.gone,
                "told": sorted(self.told), "termed": self.termed, "settled": sorted(self.settled)}
        write_atomic(path, json.dumps(data, indent=1, sort_keys=True) + "\n", 0o600)

    @classmethod
    def load(cls, path: Path, notice_time: str, boot: str) -> Record:
        """The record of this notice, or a fresh one (none kept, another notice's, or unreadable);
        its ranks only if it was made in this boot."""
        data = _read(path)
        if not isinstance(data, dict) or data.get("notice_time") != notice_time:
            return cls(notice_time, boot)
        try:
            found = cls(notice_time, boot, retracted=_flag(data, "retracted"), gone=_flag(data, "gone"),
                        told=_names(data, "told"), settled=_names(data, "settled"),
                        termed={str(k): float(v) for k, v in dict(data.get("termed", {})).items()
                                if isinstance(v, (int, float)) and not isinstance(v, bool)},
                        resumed=True)
        except (TypeError, ValueError):
            return cls(notice_time, boot)
        if data.get("boot") != boot:  # those pids and start times name nothing of this boot
            found.termed, found.settled = {}, []
        return found


def _flag(data: dict[str, Any], name: str) -> bool:
    value = data.get(name, False)
    if not isinstance(value, bool):
        raise TypeError(name)
    return value


def _names(data: dict[str, Any], name: str) -> list[str]:
    value = data.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError(name)
    return list(value)


def _read(path: Path) -> object:
    """The file's JSON, None when missing, a link, not a plain file, too large or not JSON."""
    try:
        fd = os.open(path, _READ)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_BYTES:
            return None
        return json.loads(os.read(fd, MAX_BYTES + 1))
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)
