"""The seam between the agent and the operating system.

On a node (root "/") it creates users, mounts file systems and enables systemd units with the
real commands. Under any other root directory (tests) every path is placed under that root and
each command is appended to ROOT/var/lib/cfn-chainermn/commands.log instead of being run, so
the rest of the agent executes unchanged and harmlessly. Under pytest (PYTEST_CURRENT_TEST set)
root "/" refuses to run anything: the tests run as root, and one that forgot its root could power
the machine off (a child a test starts in a namespace of its own passes an environment without it).
"""

from __future__ import annotations

import os
import pwd
import shlex
import subprocess
import tempfile
from pathlib import Path

from cfn_chainermn.errors import AgentError

FSTAB = "/etc/fstab"
JOURNAL = "/var/lib/cfn-chainermn/commands.log"
PYTEST = "PYTEST_CURRENT_TEST"  # set around every test (pytest docs: "PYTEST_CURRENT_TEST environment variable")
STD_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")  # a stock Linux PATH


class System:
    def __init__(self, root: str | Path = "/") -> None:
        self.root = Path(root).resolve()
        self.real = self.root == Path("/")

    def path(self, absolute: str | Path) -> Path:
        """Where an absolute node path lives under the root."""
        p = Path(absolute)
        return self.root / p.relative_to(p.anchor) if p.is_absolute() else self.root / p

    def run(self, argv: list[str], *, check: bool = True, timeout: float | None = None) -> int:
        """Run a command on a node; under a test root, record it and report success. A command that
        cannot start (OSError: missing, EPERM) or outlives `timeout` is an AgentError, as a failed one."""
        if not self.real:
            journal = self.path(JOURNAL)
            journal.parent.mkdir(parents=True, exist_ok=True)
            with journal.open("a", encoding="utf-8") as f:
                f.write(shlex.join(argv) + "\n")
            return 0
        if PYTEST in os.environ:  # these tests run as root: a test that forgot its root must not power off the box
            raise RuntimeError(f"System('/') refuses to run `{shlex.join(argv)}` under pytest: give it a test root")
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise AgentError(f"`{shlex.join(argv)}` failed: {exc}") from exc
        if check and proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
            raise AgentError(f"`{shlex.join(argv)}` exited {proc.returncode}: {tail[0]}")
        return proc.returncode

    def probe(self, argv: list[str], makes_true: list[str]) -> bool:
        """Whether a check command (`iptables -C ...`) succeeds. Under a test root it is recorded
        and answers yes once the command `makes_true` was recorded, so a re-run can be tested."""
        if self.real:
            return self.run(argv, check=False) == 0
        self.run(argv)
        return shlex.join(makes_true) in self.recorded()

    def recorded(self) -> list[str]:
        """The commands recorded under a test root (empty on a node)."""
        journal = self.path(JOURNAL)
        return journal.read_text(encoding="utf-8").splitlines() if journal.exists() else []

    def ensure_user(self, name: str, home: str) -> tuple[int, int]:
        """Create the cluster user once (no sudo, no password); its uid and gid."""
        if not self.real:
            if not any(x.startswith("useradd ") and x.endswith(f" {name}") for x in self.recorded()):
                self.run(["useradd", "-m", "-d", home, "-s", "/bin/bash", "-U", "-p", "*", name])
            self.path(home).mkdir(parents=True, exist_ok=True)
            return os.getuid(), os.getgid()
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            self.run(["useradd", "-m", "-d", home, "-s", "/bin/bash", "-U", "-p", "*", name])
            entry = pwd.getpwnam(name)
        return entry.pw_uid, entry.pw_gid

    def add_fstab(self, line: str) -> bool:
        """Put `line` in /etc/fstab once, replacing another entry for the same mount point."""
        fstab = self.path(FSTAB)
        mount_point = line.split()[1]
        old = fstab.read_text(encoding="utf-8").splitlines() if fstab.exists() else []
        if line in old:
            return False
        kept = [x for x in old if x.startswith("#") or len(x.split()) < 2 or x.split()[1] != mount_point]
        write_atomic(fstab, "".join(x + "\n" for x in [*kept, line]), 0o644)
        return True

    def is_mounted(self, mount_point: str) -> bool:
        if not self.real:
            return f"mount {mount_point}" in self.recorded()
        target = os.path.realpath(mount_point)
        with open("/proc/self/mounts", encoding="utf-8") as f:
            return any(len(parts) > 1 and parts[1] == target for parts in (x.split() for x in f))

    def mount(self, mount_point: str) -> None:
        """Mount an fstab entry; raises AgentError with mount's message when it fails."""
        self.run(["mount", mount_point])


def write_atomic(path: Path, text: str | bytes, mode: int) -> bool:
    """Replace `path` in one rename (readers never see a partial file); False when unchanged.

    For root's own paths only (settings, state, /etc): it resolves paths and follows links, so
    files in the cluster user's home go through homefiles.HomeFiles instead."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_bytes() == data and (path.stat().st_mode & 0o777) == mode:
        return False
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True
