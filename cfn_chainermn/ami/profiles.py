"""AMI version profiles (ami/profiles/*.yaml): load, check that the versions go together.

A profile pins every version the AMI installs and says why they fit. Loading collects every
problem at once (ConfigError, exit 2), each naming the field and the fix, so a bad profile never
reaches Packer. A null sha256 loads (the profile is documentation too) but cannot be rendered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cfn_chainermn.ami.lock import SHA256, Package, apply_lock, parse_packages, read_lock
from cfn_chainermn.errors import ConfigError

FINGERPRINT = re.compile(r"^[0-9A-F]{40}$")
CUPY = re.compile(r"^cupy-cuda(\d+)(x?)$")  # cupy-cuda110: CUDA 11.0 only; cupy-cuda12x: any 12.x
CUDA_SOURCES = ("base-ami", "nvidia-apt")
# Chainer 7.8.1 imports with a newer CuPy and only warns (chainer/_environment_check.py,
# _check_optional_dependencies; chainer issue #8621 quotes the v7.8.1 release notes: "allows
# importing Chainer with CuPy v10+"); CuPy 14 is built for numpy 2, which Chainer 7 cannot use.
CHAINER7_CUPY_MAJORS = (7, 13)


@dataclass(frozen=True)
class Profile:
    """A validated profile; nested sections stay plain mappings for the templates."""

    name: str
    description: str
    why: str
    path: Path
    base_ami: dict[str, Any]
    ssh_username: str
    builder_instance_type: str
    gpu_builder: bool
    cuda: dict[str, Any]
    nccl: dict[str, Any]
    openmpi: dict[str, Any]
    python: dict[str, Any]
    agent: dict[str, Any]
    packages: tuple[Package, ...] = field(default=())
    env: dict[str, str] = field(default_factory=dict)  # a lock's login environment (profile.d)

    def package(self, name: str) -> Package | None:
        return next((p for p in self.packages if p.name.lower() == name.lower()), None)

    def versions(self) -> dict[str, str]:
        """What the AMI contains, for tags and the manifest (tag values are strings)."""
        out = {"cuda": str(self.cuda["version"]), "openmpi": str(self.openmpi["version"]),
               "nccl": str(self.nccl.get("version", "")), "python": str(self.python["version"])}
        for key, dist in (("chainer", "chainer"), ("chainermn", "chainermn"),
                          ("chainercv", "chainercv"), ("chainerrl", "chainerrl"),
                          ("numpy", "numpy"), ("gym", "gym")):
            pkg = self.package(dist)
            if pkg is not None:
                out[key] = pkg.version
        cupy = next((p for p in self.packages if CUPY.match(p.name)), None)
        if cupy is not None:
            out["cupy"] = f"{cupy.name}=={cupy.version}"
        if "chainermn" not in out and "chainer" in out and _major(out["chainer"]) >= 5:
            out["chainermn"] = f"in chainer {out['chainer']}"
        return out


def profiles_dir(recipe_dir: Path) -> Path:
    return recipe_dir / "profiles"


def available(recipe_dir: Path) -> list[str]:
    return sorted(p.stem for p in profiles_dir(recipe_dir).glob("*.yaml"))


def buildable(recipe_dir: Path) -> list[str]:
    """Profiles that can be rendered (an `unsupported:` profile only explains why not)."""
    return [n for n in available(recipe_dir) if not read_raw(recipe_dir, n).get("unsupported")]


def read_raw(recipe_dir: Path, name: str) -> dict[str, Any]:
    """The profile's YAML mapping; an unknown name lists the known ones."""
    path = profiles_dir(recipe_dir) / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(available(recipe_dir)) or "none"
        raise ConfigError(f"unknown version profile {name!r}; choose one of: {known} "
                          "(`cfn-chainermn ami profiles` describes them)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a profile must be a YAML mapping")
    return data


def load(recipe_dir: Path, name: str) -> Profile:
    """Load and validate a profile; every problem is reported together."""
    raw = read_raw(recipe_dir, name)
    path = profiles_dir(recipe_dir) / f"{name}.yaml"
    if raw.get("unsupported"):
        reason = " ".join(str(raw["unsupported"]).split())
        raise ConfigError(f"profile {name}: {reason}")
    problems: list[str] = []
    where = f"profile {name}"
    env = apply_lock(raw, where, problems)

    def section(key: str, required: tuple[str, ...]) -> dict[str, Any]:
        value = raw.get(key)
        if not isinstance(value, dict):
            problems.append(f"{where}: {key}: missing; add a `{key}:` mapping with {', '.join(required)}")
            return {}
        for sub in required:
            if value.get(sub) in (None, "", []) and not (key == "openmpi" and sub == "sha256") \
                    and not (key == "openmpi" and value.get("source") == "base-ami" and sub == "url"):
                problems.append(f"{where}: {key}.{sub}: missing; set it in {path.name}")
        return value

    for key in ("description", "why", "ssh_username", "builder_instance_type"):
        if not str(raw.get(key) or "").strip():
            problems.append(f"{where}: {key}: missing; set it in {path.name}")
    base = section("base_ami", ("filter",)).get("filter") or {}
    if not (isinstance(base, dict) and base.get("name") and base.get("owners")):
        problems.append(f"{where}: base_ami.filter: needs `name` and `owners` (never a fixed AMI id)")
        base = {}
    cuda = section("cuda", ("version", "path", "source"))
    openmpi = section("openmpi", ("version", "url", "sha256", "prefix"))
    python = section("python", ("interpreters", "version"))
    items = python.get("packages") or []
    if python.get("packages_from"):
        items = read_lock(str(python["packages_from"]), where, problems).get("packages") or []
    elif not items:
        problems.append(f"{where}: python.packages: missing; list the pins or name a lock in packages_from")
    agent = section("agent", ("pip_version", "pip_sha256", "uv_version", "uv_sha256", "python", "prefix"))
    nccl: dict[str, Any] = raw["nccl"] if isinstance(raw.get("nccl"), dict) else {}
    packages = parse_packages(items, where, problems)
    problems += _compatibility(where, cuda, openmpi, agent, packages)
    if problems:
        raise ConfigError(problems)
    return Profile(
        name=name, description=str(raw["description"]).strip(), why=str(raw["why"]).strip(),
        path=path, base_ami={"name": base["name"], "owners": list(base["owners"])},
        ssh_username=str(raw["ssh_username"]), builder_instance_type=str(raw["builder_instance_type"]),
        gpu_builder=bool(raw.get("gpu_builder", False)), cuda=dict(cuda), nccl=dict(nccl),
        openmpi=dict(openmpi), python=dict(python), agent=dict(agent), packages=tuple(packages), env=env)


def _major(version: str) -> int:
    match = re.match(r"(\d+)", version)
    return int(match.group(1)) if match else 0


def _compatibility(where: str, cuda: dict[str, Any], openmpi: dict[str, Any],
                   agent: dict[str, Any], packages: list[Package]) -> list[str]:
    """Versions that cannot work together: each message says what to change."""
    problems: list[str] = []
    by_name = {p.name.lower(): p for p in packages}
    cuda_version = str(cuda.get("version", ""))
    if cuda and cuda.get("source") not in CUDA_SOURCES:
        problems.append(f"{where}: cuda.source: {cuda.get('source')!r}; use one of {', '.join(CUDA_SOURCES)}")
    if cuda.get("source") == "nvidia-apt":
        if not FINGERPRINT.match(str(cuda.get("gpg_fingerprint", ""))):
            problems.append(f"{where}: cuda.gpg_fingerprint: must be the 40-hex fingerprint of "
                            "NVIDIA's repository key")
        if not cuda.get("apt_repo") or not cuda.get("apt_key") or not cuda.get("packages"):
            problems.append(f"{where}: cuda: nvidia-apt needs apt_repo, apt_key and packages")
    if cuda.get("source") == "base-ami" and cuda.get("select") and not str(cuda["select"]).startswith("/"):
        problems.append(f"{where}: cuda.select: {cuda['select']!r}; give an absolute glob such as /usr/local/cuda-12.*")
    for pkg in packages:
        m = CUPY.match(pkg.name)
        if m and m.group(2) and m.group(1) != cuda_version.split(".")[0]:
            problems.append(f"{where}: python.packages[{pkg.name}]: built for CUDA {m.group(1)}.x but "
                            f"cuda.version is {cuda_version}; use cupy-cuda{cuda_version.split('.')[0]}x "
                            "or change cuda.version")
        elif m and not m.group(2) and m.group(1) != cuda_version.replace(".", ""):
            problems.append(f"{where}: python.packages[{pkg.name}]: built for CUDA "
                            f"{_cuda_of(m.group(1))} but cuda.version is {cuda_version}; use "
                            f"cupy-cuda{cuda_version.replace('.', '')} or change cuda.version")
    chainer = by_name.get("chainer")
    cupy = next((p for p in packages if CUPY.match(p.name)), None)
    if chainer and cupy:
        problems += _cupy_fits(where, chainer, cupy)
    if chainer and _major(chainer.version) >= 5 and "chainermn" in by_name:
        problems.append(f"{where}: python.packages[chainermn]: ChainerMN is part of chainer "
                        f"since v5; remove it (chainer is {chainer.version})")
    numpy = by_name.get("numpy")
    if chainer and numpy and _major(chainer.version) <= 7 and _major(numpy.version) >= 2:
        problems.append(f"{where}: python.packages[numpy]: {numpy.version} breaks chainer "
                        f"{chainer.version} (np.sctypes is gone in numpy 2); pin numpy<2")
    if openmpi.get("source") != "base-ami" and openmpi and tuple(_ints(str(openmpi.get("version", "0")))) < (1, 7):
        problems.append(f"{where}: openmpi.version: {openmpi.get('version')} has no CUDA support; "
                        "use 1.7 or newer")
    for key in ("pip_sha256", "uv_sha256"):
        problems += [f"{where}: agent.{key}: {h!r} is not a sha256" for h in agent.get(key) or []
                     if not SHA256.match(str(h))]
    return problems


def _cupy_fits(where: str, chainer: Package, cupy: Package) -> list[str]:
    """Chainer N pairs with CuPy N; Chainer >= 7.8.1 also runs (with a silenceable warning) on a
    CuPy up to 13, the last line built for numpy 1."""
    major, cupy_major = _major(chainer.version), _major(cupy.version)
    if major == cupy_major:
        return []
    if tuple(_ints(chainer.version)) >= (7, 8, 1) and CHAINER7_CUPY_MAJORS[0] <= cupy_major <= CHAINER7_CUPY_MAJORS[1]:
        return []
    fix = (f"pin {cupy.name} {CHAINER7_CUPY_MAJORS[1]}.x (CuPy {cupy_major} is built for numpy 2, which chainer "
           f"{chainer.version} cannot use)" if major == 7 and cupy_major > CHAINER7_CUPY_MAJORS[1]
           else f"Chainer N needs CuPy N (pin {cupy.name} {major}.x)")
    return [f"{where}: python.packages[{cupy.name}]: version {cupy.version} does not fit chainer "
            f"{chainer.version}; {fix}"]


def _ints(version: str) -> list[int]:
    return [int(x) for x in re.findall(r"\d+", version)[:3]]


def _cuda_of(digits: str) -> str:
    return f"{digits[:-1]}.{digits[-1]}"


def render_blockers(profile: Profile) -> list[str]:
    """Fields that must be filled before a build can be rendered (null checksums)."""
    problems = []
    if profile.openmpi.get("source") == "base-ami":
        pass  # the image's own MPI: nothing is downloaded
    elif not profile.openmpi.get("sha256"):
        problems.append(f"profile {profile.name}: openmpi.sha256 is null; fill it with the sha256 "
                        f"published for {profile.openmpi.get('url')} before rendering")
    elif not SHA256.match(str(profile.openmpi["sha256"])):
        problems.append(f"profile {profile.name}: openmpi.sha256: not a sha256")
    problems += [f"profile {profile.name}: python.packages[{p.name}].sha256 is empty; fill it from "
                 f"PyPI (ami/tools/pypi_hashes.py {p.name}=={p.version})"
                 for p in profile.packages if not p.sha256]
    return problems
