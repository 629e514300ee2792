"""Package pins and locks: a profile's python.packages, or a lock file in the package.

A lock (cfn_chainermn/data/<name>.json, JSON so that the node agent reads it with the standard
library) is a pin list two installers share: an `ami build` profile names it in
`python.packages_from`, and the node agent installs it at first boot on an image without it
(node/chainer_stack.py). It also declares the stack's prefix, CUDA link and login environment,
once.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cfn_chainermn.errors import ConfigError

SHA256 = re.compile(r"^[0-9a-f]{64}$")
LOCK_DIR = Path(__file__).resolve().parents[1] / "data"  # in the package: the node agent reads it too
MARKER_NAME = "cfn-chainermn-stack.json"  # in the prefix: which lock is installed there
STACK_LOCK = "chainer-stack-cuda12"  # the lock the node agent installs at first boot


@dataclass(frozen=True)
class Package:
    """One pinned PyPI distribution and the hashes pip may accept for it."""

    name: str
    version: str
    sha256: tuple[str, ...]
    stage: str = "main"  # "build": installed first, the others build against it
    gpu: bool = False  # dropped from the CPU variant (CuPy and its helpers)
    marker: str = ""
    patch: str = ""

    @property
    def requirement(self) -> str:
        """A pip requirements line in --require-hashes form."""
        marker = f" ; {self.marker}" if self.marker else ""
        hashes = "".join(f" --hash=sha256:{h}" for h in self.sha256)
        return f"{self.name}=={self.version}{marker}{hashes}"


def parse_packages(items: list[Any], where: str, problems: list[str]) -> list[Package]:
    out: list[Package] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not item.get("name") or not item.get("version"):
            problems.append(f"{where}: python.packages[{i}]: needs `name` and `version`")
            continue
        hashes = item.get("sha256") or []  # a list, or {file name: sha256} in a lock
        hashes = [hashes] if isinstance(hashes, str) else list(hashes.values() if isinstance(hashes, dict) else hashes)
        bad = [h for h in hashes if not SHA256.match(str(h))]
        if bad:
            problems.append(f"{where}: python.packages[{item['name']}].sha256: {bad[0]!r} is not a "
                            "sha256; copy the digest from PyPI (ami/tools/pypi_hashes.py prints them)")
        out.append(Package(name=str(item["name"]), version=str(item["version"]),
                           sha256=tuple(str(h) for h in hashes), stage=str(item.get("stage", "main")),
                           gpu=bool(item.get("gpu", False)), marker=str(item.get("marker") or ""),
                           patch=str(item.get("patch") or "")))
    return out



def read_lock(name: str, where: str, problems: list[str]) -> dict[str, Any]:
    """cfn_chainermn/data/<name>.json, a lock shared with the node agent: packages, prefix,
    cuda_link, cuda_select, env. Problems are appended; {} when unreadable."""
    path = LOCK_DIR / f"{name}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        problems.append(f"{where}: python.packages_from: cannot read {path}: {exc}".replace("\n", " "))
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("packages"), list) or not data["packages"]:
        problems.append(f"{where}: python.packages_from: {path} has no `packages:` list")
        return {}
    return data


def apply_lock(raw: dict[str, Any], where: str, problems: list[str]) -> dict[str, str]:
    """A profile built from a lock takes its prefix and CUDA link from it (declared once there);
    a profile that says otherwise is refused. The lock's login environment is returned."""
    python = raw.get("python")
    if not isinstance(python, dict) or not python.get("packages_from"):
        return {}
    lock = read_lock(str(python["packages_from"]), where, problems)
    cuda = raw.setdefault("cuda", {}) if isinstance(raw.get("cuda", {}), dict) else {}
    for section, key, lock_key in (("python", "venv", "prefix"), ("cuda", "path", "cuda_link"),
                                   ("cuda", "select", "cuda_select")):
        target = python if section == "python" else cuda
        if lock.get(lock_key) and target.setdefault(key, lock[lock_key]) != lock[lock_key]:
            problems.append(f"{where}: {section}.{key}: {target[key]!r} differs from {lock_key} "
                            f"{lock[lock_key]!r} in the lock; leave it out (the lock declares it)")
    return {str(k): str(v) for k, v in (lock.get("env") or {}).items()}


def load_lock(name: str) -> tuple[dict[str, Any], tuple[Package, ...]]:
    """A lock (cfn_chainermn/data/<name>.json) and its packages; ConfigError when it is broken."""
    problems: list[str] = []
    data = read_lock(name, f"lock {name}", problems)
    packages = parse_packages(data.get("packages") or [], f"lock {name}", problems)
    problems += [f"lock {name}: {p.name} has no sha256" for p in packages if not p.sha256]
    if problems:
        raise ConfigError(problems)
    return data, tuple(packages)


def sha256_file(path: Path) -> str:
    """A file's sha256, read in 1 MiB blocks (wheels run to 100+ MB)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def lock_digest(packages: tuple[Package, ...] | list[Package]) -> str:
    """What a stack marker records: the sha256 of the lock's requirement lines, in order."""
    return hashlib.sha256("".join(f"{p.requirement}\n" for p in packages).encode()).hexdigest()


