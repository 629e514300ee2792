"""A stand-in `ssh` on PATH for `cluster check`'s scripts (cluster/sh/check.sh): it records its
argv and runs the remote command on this machine, as sshd and the node's login shell would, with
its stdin (probe.sh's text) passed on.

Each node is a folder under `hosts/` named by its address: first on PATH while its command runs
(a node's own `fi_info`), and with two optional hooks: `before`, sourced first (`exec sleep 600`:
a node that never answers; a wait for the other nodes: proof that all ssh run at once), and
`filter`, a sed script over the node's output (the GPUs a p4d would report).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

SSH = r"""#!/bin/sh
printf '%s\0' "$@" > "$(mktemp "$FAKE_SSH_ROOT/calls/argv.XXXXXX")"
while [ $# -gt 0 ] && [ "$1" != -- ]; do shift; done
shift
node=$FAKE_SSH_ROOT/hosts/$1
shift
[ -f "$node/before" ] && . "$node/before"
if [ -f "$node/filter" ]; then
  PATH="$node:$PATH" sh -c "$*" | sed -f "$node/filter"
else
  PATH="$node:$PATH" exec sh -c "$*"
fi
"""


@dataclass(frozen=True)
class FakeSsh:
    root: Path

    def host(self, address: str) -> Path:
        """The folder of the node at `address` (made on first use)."""
        folder = self.root / "hosts" / address
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def tool(self, address: str, name: str, body: str) -> None:
        """An executable `name` on the node's PATH, running `body` with /bin/sh."""
        path = self.host(address) / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)

    def calls(self) -> list[list[str]]:
        """Every ssh argv so far, sorted (they run at once, so in no set order)."""
        return sorted(p.read_bytes().decode().split("\0")[:-1] for p in (self.root / "calls").iterdir())


def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSsh:
    """The stand-in first on PATH, ahead of /usr/bin and /bin only."""
    root = tmp_path / "fake-ssh"
    for folder in ("bin", "calls", "hosts"):
        (root / folder).mkdir(parents=True)
    (root / "bin" / "ssh").write_text(SSH)
    (root / "bin" / "ssh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{root / 'bin'}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_SSH_ROOT", str(root))
    return FakeSsh(root)
