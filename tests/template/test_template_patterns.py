"""The console's AllowedPatterns refuse what config validation refuses: CIDRs with octets over 255
or prefixes out of range, and mount points on or inside system folders.

CloudFormation matches a whole value against a Java regex (Pattern.matches); Python's fullmatch
means the same for these patterns (no construct here differs between the two)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cfn_chainermn.config.model import ClusterConfig, EfsConfig, NetworkConfig
from cfn_chainermn.config.validation import mount_point_problem, validate
from cfn_chainermn.template import template_dict

MOUNT_PATTERN = template_dict(ClusterConfig())["Parameters"]["MountPoint"]["AllowedPattern"]


def matches(default_dict: dict[str, Any], name: str, value: str) -> bool:
    param = default_dict["Parameters"][name]
    return bool(re.fullmatch(param["AllowedPattern"], value)) and len(value) <= param.get("MaxLength", len(value))


@pytest.mark.parametrize(("value", "ok"), [
    ("203.0.113.7/32", True), ("0.0.0.0/0", True), ("255.255.255.255/32", True), ("10.0.0.0/8", True),
    ("198.51.100.0/24", True), ("1.2.3.0/30", True),
    ("10.0.0.0/33", False), ("999.0.0.0/16", False), ("256.1.1.0/24", False), ("10.0.0.0/", False),
    ("10.0.0/24", False), ("10.0.0.0/099", False), ("010.0.0.0/8", False), ("10.0.0.0/8 ", False),
    ("", False), ("10.0.0.0", False),
])
def test_ssh_cidr_pattern_takes_real_ipv4_cidrs_only(default_dict: dict[str, Any], value: str, ok: bool) -> None:
    assert matches(default_dict, "SshCidr", value) is ok


@pytest.mark.parametrize("name", ["VpcCidr", "SubnetCidr"])
@pytest.mark.parametrize(("value", "ok"), [
    ("10.0.0.0/16", True), ("172.31.8.0/22", True), ("192.168.0.0/28", True),
    ("10.0.0.0/8", False), ("10.0.0.0/15", False), ("10.0.0.0/29", False), ("10.0.0.0/33", False),
    ("999.0.0.0/16", False), ("10.0.300.0/24", False),
])
def test_network_cidr_patterns_take_16_to_28(default_dict: dict[str, Any], name: str, value: str, ok: bool) -> None:
    assert matches(default_dict, name, value) is ok
    # and config validation agrees (a new VPC and subnet are checked; the subnet must lie inside the VPC)
    net = NetworkConfig(vpc_cidr=value, subnet_cidr=value)
    assert (validate(ClusterConfig(network=net)) == []) is ok


MOUNT_POINTS = [
    ("/efs", True), ("/mnt/efs", True), ("/shared/data", True), ("/data", True), ("/shared", True),
    ("/media/x", True), ("/srv/nfs", True), ("/mnt/efs/x", True), ("/.efs", True), ("/optx", True), ("/homes", True),
    ("/home/shared", False), ("/opt/data", False), ("/var/efs", False), ("/root/x", False),
    ("/var/lib/cfn-chainermn", False), ("/var/log/cfn-chainermn", False), ("/etc/cfn-chainermn", False),
    ("/opt/cfn-chainermn", False), ("/root/.ssh", False), ("/var/spool/cron", False), ("/var/lib", False),
    ("/..x", True), ("/libs", True), ("/a-b_c.d", True),
    ("/", False), ("/efs/../etc", False), ("/..", False), ("/efs/.", False), ("/x/./y", False),
    ("//efs", False), ("/efs//x", False), ("/efs/", False), ("efs", False), ("/a b", False), ("/efs$x", False),
    ("/bin", False), ("/boot", False), ("/dev", False), ("/etc", False), ("/home", False), ("/lib", False),
    ("/lib32", False), ("/lib64", False), ("/libx32", False), ("/media", False), ("/mnt", False), ("/opt", False),
    ("/proc", False), ("/root", False), ("/run", False), ("/sbin", False), ("/snap", False), ("/srv", False),
    ("/sys", False), ("/tmp", False), ("/usr", False), ("/var", False),
    ("/etc/efs", False), ("/usr/local/efs", False), ("/proc/x", False), ("/sys/x", False), ("/dev/efs", False),
    ("/boot/x", False), ("/bin/x", False), ("/sbin/x", False), ("/lib64/x", False), ("/run/efs", False),
    ("/tmp/efs", False), ("/var/tmp/efs", False), ("/var/tmp", False), ("/var/crash/x", False),
    ("/var/tmpx", False), ("/" + "a" * 100, True), ("/" + "a" * 101, False),
]


@pytest.mark.parametrize(("value", "ok"), MOUNT_POINTS, ids=[v[:20] for v, _ in MOUNT_POINTS])
def test_mount_point_pattern_and_config_validation_agree(default_dict: dict[str, Any], value: str, ok: bool) -> None:
    assert (mount_point_problem(value) is None) is ok
    assert matches(default_dict, "MountPoint", value) is ok


@given(st.lists(st.sampled_from(["", ".", "..", "efs", "etc", "usr", "mnt", "home", "x.y", "a b", "lib64", "var",
                                 "opt", "root", "srv"]),
                min_size=1, max_size=4).map(lambda parts: "/" + "/".join(parts)))
def test_mount_point_rule_is_one_rule(value: str) -> None:
    assert bool(re.fullmatch(MOUNT_PATTERN, value)) == (mount_point_problem(value) is None)
    problems = validate(ClusterConfig(efs=EfsConfig(mount_point=value)))
    assert [p for p in problems if p.startswith("efs.mount_point:")] == (
        [] if mount_point_problem(value) is None else [f"efs.mount_point: {mount_point_problem(value)}"])
