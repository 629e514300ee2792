"""Host keys from EC2 console output, as cloud-init prints them."""

from __future__ import annotations

from cfn_chainermn.cluster.console_keys import ConsoleKeys, parse

ED = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ7w86mJ2pbTUtu3l2XyHZC4fDGD0E2ZqNYpVqlp2x0m"
EC = ("ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBPCgHxTZGrJ/31aL1B6frheTKymUbk1"
      "moNlsvxj0b38OoY2vnBBsxNLqH1prXgpW7+/5p22qXQUn+WLIjwwrXxQ=")
NEW = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILrO4OILMpHURGkSPZ5SVkYDYRJAYLdcqy6QeJkTJfaP"


def _boot(ed: str, fp: str) -> str:
    return f"""[   12.345678] cloud-init[812]: Cloud-init v. 23.4 running 'modules:final'
ec2: #############################################################
ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----
ec2: 256 SHA256:ecdsaFP root@ip-10-0-0-4 (ECDSA)
ec2: 256 {fp} root@ip-10-0-0-4 (ED25519)
ec2: -----END SSH HOST KEY FINGERPRINTS-----
ec2: #############################################################
-----BEGIN SSH HOST KEY KEYS-----
{EC} root@ip-10-0-0-4
{ed} root@ip-10-0-0-4
ssh-dss AAAAB3NzaC1kc3M root@ip-10-0-0-4
-----END SSH HOST KEY KEYS-----
[   13.000001] cloud-init[812]: Cloud-init v. 23.4 finished
"""


def test_keys_come_out_ed25519_first_without_comments() -> None:
    got = parse(_boot(ED, "SHA256:edFP"))
    assert got.keys == (ED, EC)  # the type the client prefers first; ssh-dss is never trusted
    assert got.fingerprints == ("SHA256:ecdsaFP", "SHA256:edFP")


def test_the_last_boot_wins() -> None:
    """A console that shows a re-imaged instance shows the keys it has now last."""
    got = parse(_boot(ED, "SHA256:old") + _boot(NEW, "SHA256:new"))
    assert got.keys[0] == NEW and "SHA256:new" in got.fingerprints and "SHA256:old" not in got.fingerprints


def test_nothing_printed_yet_is_empty_and_falsy() -> None:
    assert parse("") == ConsoleKeys() and not parse("[ 0.0] Linux version 6.1\n")
    # A block cut off by the console buffer (no END) is not trusted.
    assert not parse("-----BEGIN SSH HOST KEY KEYS-----\n" + ED + "\n")
    assert parse("ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----\nec2: 256 SHA256:x r (ED25519)\n"
                 "ec2: -----END SSH HOST KEY FINGERPRINTS-----\n") == ConsoleKeys((), ("SHA256:x",))


def test_syslog_prefixes_as_real_consoles_print_them() -> None:
    """Ubuntu's console: the fingerprint block comes through syslog, the keys through cloud-init."""
    text = f"""<14>Oct 28 17:47:00 ec2: #############################################################
<14>Oct 28 17:47:00 ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----
<14>Oct 28 17:47:00 ec2: 256 SHA256:edFP root@ip-10-0-0-4 (ED25519)
<14>Oct 28 17:47:00 ec2: -----END SSH HOST KEY FINGERPRINTS-----
<14>Oct 28 17:47:00 ec2: #############################################################
[   25.101010] cloud-init[1201]: -----BEGIN SSH HOST KEY KEYS-----
[   25.101011] cloud-init[1201]: {ED} root@ip-10-0-0-4
[   25.101012] cloud-init[1201]: -----END SSH HOST KEY KEYS-----
"""
    assert parse(text) == ConsoleKeys((ED,), ("SHA256:edFP",))


def test_a_key_the_console_cut_or_garbled_is_not_trusted() -> None:
    """Kernel messages interleave with cloud-init's lines: only a whole, well-formed key counts."""
    cut = ED[: len(ED) - 20]
    mixed = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5[   25.1] usb 1-1: new device"
    other_type = "ssh-ed25519 " + EC.split()[1]  # valid base64, but an ECDSA blob under the ed25519 name
    for bad in (cut, mixed, other_type):
        text = f"-----BEGIN SSH HOST KEY KEYS-----\n{bad} root@h\n-----END SSH HOST KEY KEYS-----\n"
        assert parse(text).keys == (), bad
