"""The node agent that travels inside the template: a wheel of this package, built reproducibly.

A node must never install this project by name from a public index (whoever registers the name
would get root on every cluster), and the released template must work in the console with no
index holding this project. So the template carries the agent itself: a py3-none-any wheel of
the installed package (stored, not deflated, then xz-compressed and base64-encoded) in the
Metadata of a resource that does nothing else. A node reads it back with GetTemplate (the
bootstrap in template/bootstrap.py) and checks it against the sha256 its UserData names.

Byte-for-byte reproducible (sorted entries, fixed timestamps and modes), so the same code gives
the same template and a golden can pin it.
"""

from __future__ import annotations

import base64
import hashlib
import io
import lzma
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cfn_chainermn import __version__

# The bootstrap finds the wheel by this marker in the raw template text, YAML or JSON alike: base64
# has no spaces, so neither format folds the line.
MARKER = "cfn-chainermn-agent-xz-base64:"
LOCK_FILE = "node/agent-lock.txt"  # inside the package: the agent's dependencies, hash-pinned
_PACKAGE = Path(__file__).resolve().parents[1]
_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can say


@dataclass(frozen=True)
class AgentBundle:
    wheel: bytes

    @property
    def filename(self) -> str:
        return f"cfn_chainermn-{__version__}-py3-none-any.whl"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.wheel).hexdigest()

    def encoded(self) -> str:
        """What the template holds: the marker, then base64 of the xz-compressed wheel."""
        return _encode(self.wheel)


@lru_cache(maxsize=2)
def _encode(wheel: bytes) -> str:
    """Once per wheel: xz at its strongest takes about a second, and every render asks for it."""
    packed = lzma.compress(wheel, preset=9)  # "extreme" takes 60% longer for 0.04% more
    return MARKER + base64.b64encode(packed).decode("ascii")


def decode(encoded: str) -> bytes:
    """The wheel back from `encoded` (what the bootstrap does, for tests and `template` checks)."""
    if not encoded.startswith(MARKER):
        raise ValueError("not an agent bundle")
    return lzma.decompress(base64.b64decode(encoded[len(MARKER):], validate=True))


def _sources(root: Path) -> list[tuple[str, bytes]]:
    files = [p for p in root.rglob("*") if p.is_file() and p.suffix not in (".pyc", ".pyo")
             and "__pycache__" not in p.parts]
    return sorted((f"cfn_chainermn/{p.relative_to(root).as_posix()}", p.read_bytes()) for p in files)


def _metadata() -> str:
    requires = "".join(f"Requires-Dist: {line.split()[0]}\n" for line in lock_lines())
    return (f"Metadata-Version: 2.1\nName: cfn-chainermn\nVersion: {__version__}\n"
            f"Summary: cfn-chainermn node agent\nRequires-Python: >=3.10\n{requires}")


def lock_lines(root: Path = _PACKAGE) -> list[str]:
    """The pins of the agent's lock, one `name==version --hash=...` per entry."""
    text = (root / LOCK_FILE).read_text(encoding="utf-8").replace("\\\n", " ")
    return [" ".join(line.split()) for line in text.splitlines() if line.strip() and not line.startswith("#")]


def build(root: Path = _PACKAGE) -> AgentBundle:
    """A wheel of the package under `root`: every file but bytecode (data/, sh/, the lock)."""
    info = f"cfn_chainermn-{__version__}.dist-info"
    entries = [
        *_sources(root),
        (f"{info}/METADATA", _metadata().encode()),
        (f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: cfn-chainermn\nRoot-Is-Purelib: true\nTag: py3-none-any\n"),
        (f"{info}/entry_points.txt", b"[console_scripts]\ncfn-chainermn = cfn_chainermn.cli:main\n"),
    ]
    record = "".join(f"{name},sha256={_b64_digest(data)},{len(data)}\n" for name, data in entries)
    entries.append((f"{info}/RECORD", (record + f"{info}/RECORD,,\n").encode()))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in entries:
            zi = zipfile.ZipInfo(name, date_time=_DATE)
            zi.external_attr = (0o100755 if name.endswith(".sh") else 0o100644) << 16
            zf.writestr(zi, data)
    return AgentBundle(buf.getvalue())


def _b64_digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def wheel_problem(path: Path) -> str | None:
    """Why `path` is not a wheel of this package's version for any platform (None when it is).

    Read from the file name (PEP 427: name-version[-build]-python-abi-platform.whl), so a wrong
    wheel is refused before anything is sent to AWS.
    """
    want = f"cfn_chainermn-{__version__}-py3-none-any.whl"
    parts = path.name[:-len(".whl")].split("-") if path.name.endswith(".whl") else []
    if len(parts) not in (5, 6):
        return f"{path.name} is not a wheel file name; give {want}"
    dist, version, (python, abi, platform) = parts[0], parts[1], parts[-3:]
    if dist.lower().replace(".", "_") != "cfn_chainermn":
        return f"{path.name} is a wheel of {dist}, not cfn_chainermn; give {want}"
    if version != __version__:
        return (f"{path.name} is version {version} but this cfn-chainermn is {__version__}; the nodes must run "
                f"the version that creates the stack: give {want}")
    if "py3" not in python.split(".") or abi != "none" or platform != "any":
        return f"{path.name} is built for {python}-{abi}-{platform}, not py3-none-any; give {want}"
    return None


@lru_cache(maxsize=1)
def current() -> AgentBundle:
    """This package's bundle, built once per process (every template variant embeds the same one)."""
    return build()
