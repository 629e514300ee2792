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

import base64
import binascii
from dataclasses import dataclass

KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa")


@dataclass(frozen=True)
class ConsoleKeys:
    keys: tuple[str, ...] = ()  # "ssh-ed25519 AAAA..." lines, preferred type first
    fingerprints: tuple[str, ...] = ()  # "SHA256:..." of every host key

    def __bool__(self) -> bool:
        return bool(self.keys or self.fingerprints)


def _block(text: str, name: str) -> list[list[str]]:
    """The lines between cloud-init's BEGIN/END markers, split into words.

    The markers may come after a syslog or "ec2:" prefix (`<14>Oct 28 17:47:00 ec2: -----BEGIN
    ...`), so they are looked for anywhere in a line. The last complete block wins: a console
    that shows two boots shows the current keys last.
    """
    begin, end = f"-----BEGIN SSH HOST KEY {name}-----", f"-----END SSH HOST KEY {name}-----"
    blocks: list[list[list[str]]] = []
    current: list[list[str]] | None = None
    for line in text.splitlines():
        if begin in line:
            current = []
        elif end in line and current is not None:
            blocks.append(current)
            current = None
        elif current is not None:
            current.append(line.split())
    return blocks[-1] if blocks else []


def parse(text: str) -> ConsoleKeys:
    """Host keys and fingerprints from console output; empty when cloud-init printed none (yet)."""
    found: dict[str, str] = {}
    for words in _block(text, "KEYS"):
        at = next((i for i, w in enumerate(words) if w in KEY_TYPES), None)
        if at is not None and at + 1 < len(words) and is_public_key(words[at], words[at + 1]):
            found[words[at]] = f"{words[at]} {words[at + 1]}"
    prints = [w for words in _block(text, "FINGERPRINTS") for w in words if w.startswith("SHA256:")]
    return ConsoleKeys(tuple(found[t] for t in KEY_TYPES if t in found), tuple(dict.fromkeys(prints)))


def is_public_key(key_type: str, b64: str) -> bool:
    """A whole key, not a line the console cut or mixed with kernel messages: base64 of an SSH
    key blob, i.e. length-prefixed fields that end exactly at the end, the first naming the type
    (two fields for ed25519, its key 32 bytes; three for ECDSA and RSA)."""
    try:
        blob = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        return False
    fields, at = [], 0
    while at < len(blob):
        size = int.from_bytes(blob[at:at + 4], "big")
        if at + 4 + size > len(blob):
            return False
        fields.append(blob[at + 4:at + 4 + size])
        at += 4 + size
    if not fields or fields[0] != key_type.encode():
        return False
    if key_type == "ssh-ed25519":
        return len(fields) == 2 and len(fields[1]) == 32
    return len(fields) == 3
