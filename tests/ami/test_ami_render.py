"""The rendered AMI recipe: golden files, what each step must contain, shellcheck, packer."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cfn_chainermn.ami import profiles as ami_profiles
from cfn_chainermn.ami.render import RECIPE_DIR, STEPS
from cfn_chainermn.cli import cli
from cfn_chainermn.cli.boundary import run_with_boundary

BUILDABLE = ami_profiles.buildable(RECIPE_DIR)

FILES = [f"scripts/{s}.sh" for s in STEPS] + ["chainermn.pkr.hcl", "ami-manifest.json"]


def code(text: str) -> str:
    """The text without its comment lines (comments may name what the code must not do)."""
    return "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))


@pytest.mark.parametrize("profile", BUILDABLE)
@pytest.mark.parametrize("name", FILES)
def test_golden(rendered: dict[str, Path], golden: Callable[[str, str], None], profile: str,
                name: str) -> None:
    golden(f"ami/{profile}/{name}", (rendered[profile] / name).read_text())


@pytest.mark.parametrize("profile,cuda", [("current", "/usr/local/cuda-11.0"),
                                          ("chainer-ami-0.1.0", "/usr/local/cuda-9.0")])
def test_openmpi_step_configures_cuda_and_checks_it(rendered: dict[str, Path], profile: str,
                                                    cuda: str) -> None:
    text = (rendered[profile] / "scripts/30-openmpi.sh").read_text()
    assert f"./configure --prefix=/usr/local/mpi --with-cuda={cuda} " in text
    prof = ami_profiles.load(RECIPE_DIR, profile)
    assert f"OMPI_SHA256={prof.openmpi['sha256']}\n" in text
    main = text[text.index("\nmain() {"):]
    # the tarball is verified before anything is built from it
    assert main.index('download_verified "$OMPI_URL" "$OMPI_SHA256"') < main.index('build "$work"')
    assert "ompi_info\" --parsable --all | grep -q 'mpi_built_with_cuda_support:value:true'" in text
    assert "plm_rsh_no_tree_spawn = 1" in text and "rtc = ^hwloc" in text
    assert "btl_tcp_if_include" not in text  # per cluster: the node agent writes it


@pytest.mark.parametrize("profile", BUILDABLE)
def test_no_dpkg_kill_and_proper_waits(rendered: dict[str, Path], profile: str) -> None:
    scripts = {p.name: p.read_text() for p in (rendered[profile] / "scripts").glob("*.sh")}
    for name, text in scripts.items():
        assert not re.search(r"\b(killall|pkill)\b|kill\s+.*dpkg|rm\s+(-\w+\s+)*/var/lib/dpkg/lock",
                             code(text)), name
        assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text, name
        assert 'die "sha256 mismatch for $file' in text, name
    boot = scripts["10-wait-for-boot.sh"]
    assert "cloud-init status --wait" in boot and "wait_for_dpkg_lock 1800" in boot
    assert "DPkg::Lock::Timeout=600" in boot


@pytest.mark.parametrize("profile", BUILDABLE)
def test_python_step_pins_everything_with_hashes(rendered: dict[str, Path], profile: str) -> None:
    text = (rendered[profile] / "scripts/40-python-stack.sh").read_text()
    reqs = re.findall(r"^([A-Za-z][\w.-]*)==\S+.*$", text, flags=re.M)
    prof = ami_profiles.load(RECIPE_DIR, profile)
    assert sorted(reqs) == sorted(p.name for p in prof.packages)
    for line in re.findall(r"^[A-Za-z][\w.-]*==.*$", text, flags=re.M):
        assert re.search(r"--hash=sha256:[0-9a-f]{64}", line), line
    assert text.count("--require-hashes") >= 2


def test_current_manifest_tags_and_agent(rendered: dict[str, Path]) -> None:
    hcl = (rendered["current"] / "chainermn.pkr.hcl").read_text()
    assert "required_plugins" not in code(hcl) and "source_ami_filter" in hcl
    assert not re.search(r'"ami-[0-9a-f]+"', hcl)  # the base AMI is found by filter, never pinned
    assert 'ami_groups      = var.ami_public ? ["all"] : []' in hcl
    assert '"cfn-chainermn:chainer" = "7.8.1"' in hcl
    assert '"cfn-chainermn:cupy" = "cupy-cuda110==7.8.0"' in hcl
    assert 'post-processor "manifest"' in hcl
    agent = (rendered["current"] / "scripts/50-agent.sh").read_text()
    assert 'verify_sha256 "$wheel" "$want"' in agent and "uv==0.5.31 --hash=sha256:" in agent
    system = (rendered["current"] / "scripts/60-system.sh").read_text()
    assert "MaxStartups 200:30:400" in system and "sshd -t" in system
    smoke = (rendered["current"] / "scripts/90-smoke-and-manifest.sh").read_text()
    assert "gpu_mnist" in smoke and '"pure_nccl"' in smoke and "/etc/cfn-chainermn/ami-manifest.json" in smoke


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (make install adds it)")
@pytest.mark.parametrize("profile", BUILDABLE)
def test_shellcheck_clean(rendered: dict[str, Path], profile: str) -> None:
    scripts = sorted(str(p) for p in (rendered[profile] / "scripts").glob("*.sh"))
    proc = subprocess.run(["shellcheck", "--format=gcc", *scripts], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(shutil.which("packer") is None or shutil.which("shellcheck") is None,
                    reason="packer/shellcheck not installed (make install adds them)")
def test_ami_validate_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_with_boundary(cli, ["ami", "validate"]) == 0
    out = capsys.readouterr().out
    for name in BUILDABLE:
        assert f"ok {name}: shellcheck clean (7 scripts), packer validate passed" in out
    assert run_with_boundary(cli, ["ami", "validate", "current"]) == 0  # PROFILE: that one only
    assert capsys.readouterr().out == "ok current: shellcheck clean (7 scripts), packer validate passed\n"


@pytest.mark.parametrize("profile", BUILDABLE)
def test_builder_ssh_is_not_open_to_the_world_and_boot_is_encrypted(rendered: dict[str, Path],
                                                                    profile: str) -> None:
    hcl = code((rendered[profile] / "chainermn.pkr.hcl").read_text())
    variable = re.search(r'^variable "ssh_cidr" \{\n(.*?)^\}', hcl, re.M | re.S)
    assert variable is not None and not re.search(r"^\s*default\s*=", variable.group(1), re.M)  # no fallback
    source = hcl[hcl.index('source "amazon-ebs"'):hcl.index("\nbuild {")]
    assert re.search(r"^  temporary_security_group_source_cidrs = \[var\.ssh_cidr\]$", source, re.M)
    assert "0.0.0.0/0" not in hcl
    # encrypted unless made public (AWS refuses to make an encrypted AMI public)
    assert re.search(r"^  encrypt_boot = ! var\.ami_public$", source, re.M)


@pytest.mark.skipif(shutil.which("packer") is None, reason="packer not installed (make install adds it)")
def test_packer_refuses_a_build_without_ssh_cidr(rendered: dict[str, Path], tmp_path: Path) -> None:
    wheel = tmp_path / "w.whl"
    wheel.write_bytes(b"")
    args = ["packer", "validate", "-var", "region=us-east-1", "-var", f"agent_wheel={wheel}",
            "-var", "agent_wheel_sha256=" + "0" * 64]
    proc = subprocess.run([*args, "."], cwd=rendered["current"], capture_output=True, text=True)
    assert proc.returncode != 0 and 'Unset variable "ssh_cidr"' in proc.stdout + proc.stderr
    proc = subprocess.run([*args, "-var", "ssh_cidr=203.0.113.7/32", "."], cwd=rendered["current"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _stub_bin(tmp_path: Path) -> Path:
    """Commands the OpenMPI step would run after the download; they must never be reached."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("apt-get", "dpkg-query", "fuser", "make", "tar"):
        (bin_dir / name).write_text(f"#!/bin/sh\necho {name} >>{tmp_path}/reached\nexit 1\n")
        (bin_dir / name).chmod(0o755)
    return bin_dir


def test_openmpi_step_fails_on_checksum_mismatch(tmp_path: Path, edit_profile: Callable[..., None],
                                                 recipe_copy: Path) -> None:
    tarball = tmp_path / "openmpi-4.1.6.tar.bz2"
    tarball.write_bytes(b"not the real tarball")
    wrong = hashlib.sha256(b"something else").hexdigest()

    def change(data: dict) -> None:
        data["openmpi"]["url"] = tarball.as_uri()
        data["openmpi"]["sha256"] = wrong

    edit_profile("current", change)
    out = tmp_path / "out"
    assert run_with_boundary(cli, ["ami", "render", "current", "-o", str(out)]) == 0
    script = out / "scripts/30-openmpi.sh"
    env = dict(os.environ, PATH=f"{_stub_bin(tmp_path)}:{os.environ['PATH']}", TMPDIR=str(tmp_path))
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode != 0
    assert f"sha256 mismatch for {tmp_path}/" in proc.stderr
    assert f"expected {wrong}, got {hashlib.sha256(tarball.read_bytes()).hexdigest()}" in proc.stderr
    assert not (tmp_path / "reached").exists()  # nothing after the failed check ran
    assert not list(tmp_path.glob("tmp.*/openmpi.tar.bz2*"))  # the bad download was removed


def test_download_verified_accepts_the_right_file(rendered: dict[str, Path], tmp_path: Path) -> None:
    src = tmp_path / "payload.bin"
    src.write_bytes(b"payload")
    good = hashlib.sha256(b"payload").hexdigest()
    script = rendered["current"] / "scripts/30-openmpi.sh"
    cmd = f'source "{script}"; download_verified "{src.as_uri()}" {good} "{tmp_path}/dest"'
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "dest").read_bytes() == b"payload"
    assert not (tmp_path / "dest.part").exists()


@pytest.mark.skipif(shutil.which("fuser") is None, reason="fuser (psmisc) is not installed")
def test_dpkg_lock_wait_waits_then_gives_up(rendered: dict[str, Path], tmp_path: Path) -> None:
    """A held lock is waited for (not broken); past the deadline the step fails and says so."""
    lock = tmp_path / "lock-frontend"
    lock.write_text("")
    script = rendered["current"] / "scripts/10-wait-for-boot.sh"
    holder = subprocess.Popen(["sh", "-c", f"exec 3<'{lock}'; echo held; exec sleep 30"], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"  # the lock is open now
        gave_up = subprocess.run(["bash", "-c", f'source "{script}"; wait_for_dpkg_lock 0 "{lock}"'],
                                 capture_output=True, text=True, timeout=30)
        assert gave_up.returncode == 1 and "the dpkg/apt lock is still held after 0s" in gave_up.stderr
        assert holder.poll() is None  # the holder was left alone
        waiter = subprocess.Popen(["bash", "-c", f'source "{script}"; wait_for_dpkg_lock 60 "{lock}"'],
                                  stderr=subprocess.PIPE, text=True)
        time.sleep(1)
        assert waiter.poll() is None  # still waiting while the lock is held
    finally:
        holder.kill()
        holder.wait()
    assert waiter.wait(timeout=30) == 0


LOCK_ENTRY = re.compile(r"^([A-Za-z][\w.-]*)==(\S+) \\\n(?:    --hash=sha256:[0-9a-f]{64}(?: \\)?\n)+"
                        r"    # via (.+)$", re.M)
TARGET = {"python_version": "3.11", "sys_platform": "linux", "platform_system": "Linux", "extra": ""}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _agent_lock(text: str) -> dict[str, tuple[str, set[str]]]:
    """{name: (pinned version, names its `# via` line says require it)}."""
    entries = {_norm(m[1]): (m[2], {_norm(v) for v in m[3].split(", ")}) for m in LOCK_ENTRY.finditer(text)}
    assert len(entries) == len(re.findall(r"^[A-Za-z][\w.-]*==", text, re.M)), "an entry lacks hashes or `# via`"
    return entries


def _lock_problems(lock: dict[str, tuple[str, set[str]]], declared: list[str]) -> list[str]:
    """The lock against pyproject's dependencies and its own `# via` graph (no installed versions)."""
    from packaging.requirements import Requirement

    problems = []
    direct = {_norm(r.name): r for r in map(Requirement, declared) if not r.marker or r.marker.evaluate(TARGET)}
    for name, req in direct.items():
        if name not in lock:
            problems.append(f"{req} is not pinned")
        elif not req.specifier.contains(lock[name][0], prereleases=True):
            problems.append(f"{name}=={lock[name][0]} does not satisfy {req}")
    via_root = {name for name, (_, via) in lock.items() if "cfn-chainermn" in via}
    if via_root != set(direct):
        problems.append(f"`# via cfn-chainermn` marks {sorted(via_root)}, pyproject declares {sorted(direct)}")
    problems += [f"{name}: `# via {parent}` is neither cfn-chainermn nor pinned" for name, (_, via) in lock.items()
                 for parent in via - {"cfn-chainermn"} if parent not in lock]
    reached, todo = set(), ["cfn-chainermn"]
    while todo:
        parent = todo.pop()
        for name, (_, via) in lock.items():
            if parent in via and name not in reached:
                reached.add(name)
                todo.append(name)
    problems += [f"{name} is pinned but nothing requires it" for name in sorted(set(lock) - reached)]
    return problems


def test_agent_lock_covers_the_package_dependencies() -> None:
    """ami/files/agent-requirements.txt pins exactly what pyproject.toml declares, and what that needs.

    The sources of truth are pinned: pyproject.toml and the lock's own `# via` lines; what
    happens to be installed in .venv (versions float) only cross-checks pins it has exactly.
    """
    from importlib import metadata

    import tomllib
    from packaging.requirements import Requirement

    lock = _agent_lock((RECIPE_DIR / "files/agent-requirements.txt").read_text())
    project = tomllib.loads((RECIPE_DIR.parent / "pyproject.toml").read_text())["project"]
    assert _lock_problems(lock, project["dependencies"]) == []
    # a pinned version's metadata never changes: where .venv has exactly the pin, its requirements
    # must be the entries that say `# via` it, each satisfied by its pin
    for name, (version, _) in lock.items():
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if dist.version != version:
            continue
        reqs = [r for r in map(Requirement, dist.requires or []) if not r.marker or r.marker.evaluate(TARGET)]
        assert {_norm(r.name) for r in reqs} == {n for n, (_, via) in lock.items() if name in via}, name
        for req in reqs:
            assert req.specifier.contains(lock[_norm(req.name)][0], prereleases=True), f"{name} needs {req}"


@pytest.mark.parametrize("edit,problem", [
    (lambda t: t.replace("    # via cfn-chainermn, cfn-flip\n", "    # via cfn-flip\n", 1),
     "`# via cfn-chainermn` marks"),
    (lambda t: t.replace("    # via botocore\n", "    # via nothing-pinned\n", 1),
     "is neither cfn-chainermn nor pinned"),
    (lambda t: t.replace("    # via paramiko\n", "    # via bcrypt\n", 1), "bcrypt is pinned but nothing requires it"),
    (lambda t: re.sub(r"^awacs==2\.6\.1", "awacs==2.3.0", t, flags=re.M), "awacs==2.3.0 does not satisfy awacs>=2.4"),
])
def test_agent_lock_check_catches(edit: Callable[[str], str], problem: str) -> None:
    """The check can fail: a wrong `# via`, an orphan pin, a pin outside pyproject's range."""
    import tomllib

    text = edit((RECIPE_DIR / "files/agent-requirements.txt").read_text())
    declared = tomllib.loads((RECIPE_DIR.parent / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(problem in p for p in _lock_problems(_agent_lock(text), declared))
