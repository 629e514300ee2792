"""ami_packer: Packer's machine-readable stream and manifest, replayed from recorded builds."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cfn_chainermn.ami import packer as ami_packer
from cfn_chainermn.errors import AmiError

DATA = Path(__file__).parent / "data"
CIDR = "203.0.113.7/32"


def test_packer_env() -> None:
    given = {"PATH": "/bin", "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_SESSION_TOKEN": "t"}
    assert ami_packer.packer_env(None, given) == given
    assert ami_packer.packer_env("myaws", given) == {"PATH": "/bin", "AWS_PROFILE": "myaws"}


def test_parse_machine_readable_and_manifest() -> None:
    seen = ami_packer.MachineReadable()
    shown = [ami_packer.parse_machine_line(line, seen)
             for line in (DATA / "packer-build-machine-readable.txt").read_text().splitlines()]
    assert "    amazon-ebs.chainermn: Copying to: us-west-2" in shown
    assert seen.artifacts["amazon-ebs.chainermn/0"]["id"] == (
        "us-east-1:ami-0123456789abcdef0,us-west-2:ami-0fedcba9876543210")
    assert seen.errors == []
    assert ami_packer.read_manifest(DATA / "packer-manifest.json") == {
        "us-east-1": "ami-0123456789abcdef0", "us-west-2": "ami-0fedcba9876543210"}
    with pytest.raises(AmiError, match="unexpected artifact id"):
        ami_packer.parse_artifact_id("us-east-1:not-an-ami")


def _replay(transcript: str, manifest: Path | None, rc: int) -> Callable[..., Any]:
    """Run a recorded `packer build -machine-readable` session in the build directory."""

    def runner(cmd: list[str], cwd: Path, **kwargs: Any) -> Any:
        assert cmd[1:4] == ["build", "-machine-readable", "-color=false"] and cmd[-1] == "."
        assert "region=us-east-1" in cmd and any(a.startswith("agent_wheel_sha256=") for a in cmd)
        assert cmd[cmd.index("ssh_cidr=203.0.113.7/32") - 1] == "-var"
        copy = f"cp {manifest} packer-manifest.json; " if manifest else ""
        return subprocess.Popen(["sh", "-c", f"{copy}cat {DATA / transcript}; exit {rc}"],
                                cwd=cwd, **kwargs)

    return runner


def test_packer_build_reports_ami_per_region(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ami_packer, "_tool", lambda name, hint: name)
    wheel = tmp_path / "cfn_chainermn-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"wheel")
    echoed: list[str] = []
    amis = ami_packer.packer_build(tmp_path, "us-east-1", wheel, {}, echoed.append,
                                   runner=_replay("packer-build-machine-readable.txt",
                                                  DATA / "packer-manifest.json", 0), ssh_cidr=CIDR)
    assert amis == {"us-east-1": "ami-0123456789abcdef0", "us-west-2": "ami-0fedcba9876543210"}
    assert any("Creating AMI" in line for line in echoed)


def test_packer_build_failure_names_the_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ami_packer, "_tool", lambda name, hint: name)
    wheel = tmp_path / "w.whl"
    wheel.write_bytes(b"")
    with pytest.raises(AmiError, match=r"packer build failed: FATAL: sha256 mismatch for /tmp/tmp.x/openmpi"):
        ami_packer.packer_build(tmp_path, "us-east-1", wheel, {}, lambda s: None,
                                runner=_replay("packer-build-failed.txt", None, 1), ssh_cidr=CIDR)


def test_packer_build_stream_and_manifest_must_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ami_packer, "_tool", lambda name, hint: name)
    other = tmp_path / "other-manifest.json"
    data = json.loads((DATA / "packer-manifest.json").read_text())
    data["builds"][-1]["artifact_id"] = "us-east-1:ami-0bbbbbbbbbbbbbbbb"
    other.write_text(json.dumps(data))
    wheel = tmp_path / "w.whl"
    wheel.write_bytes(b"")
    with pytest.raises(AmiError, match="disagree"):
        ami_packer.packer_build(tmp_path, "us-east-1", wheel, {}, lambda s: None,
                                runner=_replay("packer-build-machine-readable.txt", other, 0), ssh_cidr=CIDR)
