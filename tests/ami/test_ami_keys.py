"""The AMI's keys (issue 12 item 11): apt trusts only NVIDIA's pinned key, and the image keeps
no login key of the build (Packer's temporary key is removed by the last provisioner)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cfn_chainermn.ami.profiles import buildable
from cfn_chainermn.ami.render import RECIPE_DIR

needs_gpg = pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg not installed")


class Keys:
    """Throwaway OpenPGP keys in a private GNUPGHOME (short path: gpg-agent's socket lives there)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = dict(os.environ, GNUPGHOME=str(home))

    def gpg(self, *args: str) -> str:
        proc = subprocess.run(["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "", *args],
                              capture_output=True, text=True, env=self.env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def new(self, uid: str, *, subkey: bool = False) -> str:
        """Make a key; its primary fingerprint."""
        self.gpg("--quick-gen-key", uid, "ed25519", "sign", "never")
        listing = self.gpg("--with-colons", "--list-keys", uid)
        fpr = re.search(r"^fpr:+([0-9A-F]{40}):", listing, re.M)
        assert fpr is not None, listing
        if subkey:
            self.gpg("--quick-add-key", fpr.group(1), "cv25519", "encr", "never")
        return fpr.group(1)

    def export(self, path: Path, *fprs: str) -> Path:
        self.gpg("--armor", "--output", str(path), "--export", *fprs)
        return path


@pytest.fixture(scope="module")
def keys() -> Iterator[Keys]:
    home = Path(tempfile.mkdtemp(prefix="gpg-", dir="/tmp"))
    home.chmod(0o700)
    made = Keys(home)
    try:
        yield made
    finally:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=made.env, capture_output=True, check=False)
        shutil.rmtree(home, ignore_errors=True)


def check_repo_key(script: Path, key_file: Path, fpr: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the CUDA step's own check_repo_key on a file, as the build would."""
    cmd = f'source "{script}"; check_repo_key "{key_file}" {fpr}'
    return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env=env, timeout=60)


@needs_gpg
def test_repo_key_check_accepts_the_pinned_key_only(rendered: dict[str, Path], keys: Keys, tmp_path: Path) -> None:
    script = rendered["current"] / "scripts/20-cuda.sh"
    pinned = keys.new("Pinned Repo <pinned@example.invalid>", subkey=True)
    other = keys.new("Other Signer <other@example.invalid>")
    alone = keys.export(tmp_path / "pinned.pub", pinned)
    both = keys.export(tmp_path / "both.pub", pinned, other)

    proc = check_repo_key(script, alone, pinned, keys.env)
    assert proc.returncode == 0, proc.stderr  # its own subkey is part of it, not another key
    dearmored = tmp_path / "pinned.gpg"
    dearmored.write_bytes(subprocess.run(["gpg", "--dearmor"], input=alone.read_bytes(),
                                         capture_output=True, check=True).stdout)
    assert check_repo_key(script, dearmored, pinned, keys.env).returncode == 0

    proc = check_repo_key(script, both, pinned, keys.env)
    assert proc.returncode == 1
    assert f"holds the key(s) '{' '.join(sorted([pinned, other]))}', expected exactly {pinned}" in proc.stderr
    # the other key alone is refused too, and so is a file that holds no key
    assert check_repo_key(script, keys.export(tmp_path / "other.pub", other), pinned, keys.env).returncode == 1
    (tmp_path / "empty.pub").write_text("not a key\n")
    proc = check_repo_key(script, tmp_path / "empty.pub", pinned, keys.env)
    assert proc.returncode == 1 and "FATAL" in proc.stderr


def test_cuda_step_checks_the_download_and_the_keyring_apt_trusts(rendered: dict[str, Path]) -> None:
    text = (rendered["current"] / "scripts/20-cuda.sh").read_text()
    step = text[text.index("add_nvidia_repo() {"):]
    step = step[:step.index("\n}\n")]
    fpr = "EB693B3035CD5710E231E123A4B469963BF863CC"
    checks = [m.start() for m in re.finditer(rf'^  check_repo_key "\$key(\.gpg)?" {fpr}', step, re.M)]
    assert len(checks) == 2
    assert checks[0] < step.index("gpg --dearmor") < checks[1] < step.index("/usr/share/keyrings/")


@pytest.mark.parametrize("profile", buildable(RECIPE_DIR))
def test_packer_key_is_removed_by_the_last_provisioner(rendered: dict[str, Path], profile: str) -> None:
    hcl = (rendered[profile] / "chainermn.pkr.hcl").read_text()
    build = hcl[hcl.index("\nbuild {"):]
    provisioners = [m.start() for m in re.finditer(r'^  provisioner "', build, re.M)]
    last = build[provisioners[-1]:build.index("\n  }\n", provisioners[-1])]
    assert provisioners[-2] < build.index("90-smoke-and-manifest.sh") < provisioners[-1]
    for path in ("/root/.ssh/authorized_keys", "~ubuntu/.ssh/authorized_keys"):
        assert path in last
    assert "shred -u" in last and "set -e;" in last
    # nothing reconnects afterwards: no reboot, no other provisioner, only the local manifest
    assert "expect_disconnect" not in last and "pause_before" not in last
    assert re.findall(r'^  (\S+) "', build[provisioners[-1]:], re.M) == ["provisioner", "post-processor"]


def test_packer_key_cleanup_removes_both_files(rendered: dict[str, Path], tmp_path: Path) -> None:
    """The last provisioner's command, run against a stand-in root and home."""
    hcl = (rendered["current"] / "chainermn.pkr.hcl").read_text()
    line = re.findall(r'^      "(sudo sh -c .*authorized_keys.*)",$', hcl, re.M)
    assert len(line) == 1
    command = line[0].replace('\\"', '"').removeprefix("sudo ")
    for folder in ("root", "home/ubuntu"):
        (tmp_path / folder / ".ssh").mkdir(parents=True)
        (tmp_path / folder / ".ssh/authorized_keys").write_text("ssh-rsa AAAA packer_temp\n")
    command = command.replace("/root/", f"{tmp_path}/root/").replace("~ubuntu/", f"{tmp_path}/home/ubuntu/")
    proc = subprocess.run(["sh", "-c", command.removeprefix("sh -c ").strip("'")], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert not list(tmp_path.rglob("authorized_keys"))
    proc = subprocess.run(["sh", "-c", command.removeprefix("sh -c ").strip("'")], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr  # nothing left to remove is no failure
