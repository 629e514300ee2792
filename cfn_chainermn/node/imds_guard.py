"""The instance metadata service for root only: jobs (the cluster user) never get the node's role.

Without this, any job could fetch the instance role's credentials from IMDS and overwrite
cluster-key/ (from the master) or delete every nodes/*/ready (issue 12, item 4). One netfilter
rule per address family, first in OUTPUT, rejects packets to the metadata address from any
socket not owned by uid 0; the agent (root) keeps its access, including boto3's credentials.

The same idea as AWS ParallelCluster (aws/aws-parallelcluster-cookbook,
cookbooks/aws-parallelcluster-config/files/default/imds/imds-access.sh: OUTPUT jumps to a
PARALLELCLUSTER_IMDS chain for 169.254.169.254 and fd00:ec2::254, ACCEPT per allowed user
`-m owner --uid-owner`, then REJECT). Only root is allowed here, so one rule says it all and
needs no chain. Each rule is probed with `-C` before it is inserted, so boot, refresh and the
boot-time unit may run it any number of times without stacking duplicates. Netfilter rules do
not survive a reboot: `cfn-chainermn-imds-guard.service` applies them again at every boot,
before sshd starts, and every refresh (30 s) checks them again.

Run as `python -m cfn_chainermn.node.imds_guard` (what that unit does): exit 1 with the reason
when the IPv4 rule cannot be in place.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cfn_chainermn.errors import AgentError
from cfn_chainermn.node.system import STD_PATH, System, write_atomic

IMDS_V4 = "169.254.169.254/32"
IMDS_V6 = "fd00:ec2::254/128"
UNIT = "cfn-chainermn-imds-guard"
ADDED, PRESENT = "guarded now", "already guarded"  # in apply's detail: whether a rule was inserted
MISSING = ("iptables not found on this image ({}): the node would let every job use the instance role "
           "through the metadata service; install iptables (Debian/Ubuntu: apt-get install iptables) "
           "in the AMI")


def rule(address: str) -> list[str]:
    """The rule (without chain or position): to `address`, from any socket not root's, refused at once."""
    return ["-d", address, "-m", "owner", "!", "--uid-owner", "0", "-j", "REJECT"]


def commands(tool: str, address: str) -> tuple[list[str], list[str]]:
    """(probe, insert): `-C` answers 0 when the rule is there; `-I OUTPUT 1` puts it first."""
    return ([tool, "-w", "-C", "OUTPUT", *rule(address)],
            [tool, "-w", "-I", "OUTPUT", "1", *rule(address)])


def find(system: System, name: str) -> str | None:
    """The tool's absolute node path in a stock PATH, or None (read under a test root too)."""
    for folder in STD_PATH:
        path = system.path(f"{folder}/{name}")
        if path.is_file():
            return f"{folder}/{name}"
    return None


def ensure(system: System, tool: str, address: str) -> bool:
    """The rule is in OUTPUT; True when it had to be inserted. Raises AgentError when it cannot."""
    probe, insert = commands(tool, address)
    if system.probe(probe, insert):
        return False
    system.run(insert)
    return True


def apply(system: System) -> str:
    """Both rules in place (IPv6 where the image has ip6tables); a one-line detail.

    A missing iptables fails (the caller's boot step, the unit): a node whose jobs hold the
    role is the hole this closes, so it must not become ready quietly. IPv6 is best effort:
    the template leaves the IPv6 endpoint off (no HttpProtocolIpv6), and a kernel without IPv6
    cannot reach it either; what happened is said in the detail."""
    iptables = find(system, "iptables")
    if iptables is None:
        raise AgentError(MISSING.format(", ".join(STD_PATH)))
    added = ensure(system, iptables, IMDS_V4)
    parts = [f"{IMDS_V4.split('/')[0]} {ADDED if added else PRESENT}"]
    ip6tables = find(system, "ip6tables")
    if ip6tables is None:
        parts.append(f"{IMDS_V6.split('/')[0]} not guarded (no ip6tables)")
    else:
        try:
            added6 = ensure(system, ip6tables, IMDS_V6)
            parts.append(f"{IMDS_V6.split('/')[0]} {ADDED if added6 else PRESENT}")
        except AgentError as exc:
            parts.append(f"{IMDS_V6.split('/')[0]} not guarded ({exc})")
    return "metadata service for root only: " + ", ".join(parts)


def unit_text() -> str:
    """A oneshot unit applying the rules at every boot, before sshd lets anyone in."""
    return ("[Unit]\nDescription=cfn-chainermn: instance metadata service for root only\n"
            "DefaultDependencies=no\nAfter=local-fs.target\nBefore=network-pre.target ssh.service sshd.service\n"
            "Wants=network-pre.target\n\n"
            "[Service]\nType=oneshot\nRemainAfterExit=yes\n"
            f"ExecStart={sys.executable} -m cfn_chainermn.node.imds_guard\n\n"
            "[Install]\nWantedBy=multi-user.target\n")


def install_unit(system: System) -> bool:
    """Write and enable the boot-time unit once; True when it changed."""
    path = system.path(f"/etc/systemd/system/{UNIT}.service")
    if not write_atomic(path, unit_text(), 0o644):
        return False
    system.run(["systemctl", "daemon-reload"])
    system.run(["systemctl", "enable", f"{UNIT}.service"])
    return True


def main(root: str | Path = "/") -> int:
    try:
        print(apply(System(root)))
    except AgentError as exc:
        print(f"cfn-chainermn imds guard: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
