"""The master's SSH host key as cloud-init printed it to the EC2 console at first boot.

The second trust anchor for the CLI, after the key the master's agent publishes under
cluster-key/: the console output comes from the instance's serial console through the EC2
API, so no other node can forge it. cloud-init writes two blocks there::

    ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----
    ec2: 256 SHA256:9bq4...Yk root@ip-10-0-0-4 (ED25519)
    ec2: -----END SSH HOST KEY FINGERPRINTS-----
    -----BEGIN SSH HOST KEY KEYS-----
    ssh-ed25519 AAAAC3Nza... root@ip-10-0-0-4
    -----END SSH HOST KEY KEYS-----

The keys block pins a key outright; the fingerprints alone still let a connection check what
the server shows. Pure text handling: fetching the output is clusters.py's.
"""

from __future__ import annotations

from dataclasses import dataclass

KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa")


@dataclass(frozen=True)
class ConsoleKeys:
    keys: tuple[str, ...] = ()  # "ssh-ed25519 AAAA..." lines, preferred type first
    fingerprints: tuple[str, ...] = ()  # "SHA256:..." of every host key

    def __bool__(self) -> bool:
        return bool(self.keys or self.fingerprints)


def _block(text: str, name: str) -> list[list[str]]:
    """The lines between cloud-init's BEGIN/END markers, split into words, "ec2:" prefixes dropped.

    The last block wins: a console that shows two boots shows the current keys last.
    """
    begin, end = f"-----BEGIN SSH HOST KEY {name}-----", f"-----END SSH HOST KEY {name}-----"
    blocks: list[list[list[str]]] = []
    current: list[list[str]] | None = None
    for raw in text.splitlines():
        words = raw.split()
        if words[:1] == ["ec2:"]:
            words = words[1:]
        line = " ".join(words)
        if line == begin:
            current = []
        elif line == end and current is not None:
            blocks.append(current)
            current = None
        elif current is not None and words:
            current.append(words)
    return blocks[-1] if blocks else []


def parse(text: str) -> ConsoleKeys:
    """Host keys and fingerprints from console output; empty when cloud-init printed none (yet)."""
    found = {words[0]: f"{words[0]} {words[1]}" for words in _block(text, "KEYS")
             if len(words) >= 2 and words[0] in KEY_TYPES}
    prints = [w for words in _block(text, "FINGERPRINTS") for w in words if w.startswith("SHA256:")]
    return ConsoleKeys(tuple(found[t] for t in KEY_TYPES if t in found), tuple(dict.fromkeys(prints)))
