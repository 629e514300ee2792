"""The cluster view: what the master discovered (live nodes, readiness, host keys) as one object.

The master publishes it under cluster-key/ (names.CLUSTER_VIEW), which only the master's role may
write (template/iam.py); every worker reads it with one conditional GET per refresh instead of
discovering the cluster itself (issue 13: N DescribeInstances and N^2 GETs per interval before).
Workers trust it for where it lives, and still check every field before any of it reaches a
hostfile or known_hosts: a view that is not exactly this shape is refused whole (the last good
files stay), so not even a bug on the master can smuggle a line into known_hosts.

Pure, so the master checks what it is about to publish with the very parser the workers use.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cfn_chainermn.cluster.hostfile import Node
from cfn_chainermn.errors import AgentError

VERSION = 1
LIVE_STATES = ("pending", "running")  # the instance states discovery keeps
ROLES = ("master", "worker")
MAX_BYTES = 4 << 20  # thousands of nodes at ~200 bytes each; a larger object is refused unread
_ID = re.compile(r"i-[0-9a-f]{8,17}")
_TYPE = re.compile(r"[a-z][a-z0-9-]*\.[a-z0-9-]+")
_HOST_KEY = re.compile(r"(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/]+={0,2}")
_FIELDS = {"instance_id", "private_ip", "role", "instance_type", "state", "ready"}


@dataclass(frozen=True)
class View:
    stack: str
    nodes: tuple[Node, ...]
    host_keys: Mapping[str, str]  # instance id -> "ssh-ed25519 AAAA..." (nodes that published one)


def valid_host_key(line: str) -> bool:
    """A known_hosts key: type and base64, nothing else (no marker, no second line, no option)."""
    return _HOST_KEY.fullmatch(line) is not None


def render(stack: str, nodes: Iterable[Node], host_keys: Mapping[str, str]) -> bytes:
    """The view's bytes: deterministic (sorted, no timestamp), so an unchanged cluster publishes
    the same bytes, keeps its ETag, and every worker's conditional GET answers 304."""
    entries = []
    for n in sorted(nodes, key=lambda n: n.instance_id):
        entry: dict[str, Any] = {"instance_id": n.instance_id, "private_ip": n.private_ip, "role": n.role,
                                 "instance_type": n.instance_type, "state": n.state, "ready": n.ready}
        key = host_keys.get(n.instance_id, "")
        if valid_host_key(key):
            entry["host_key"] = key
        entries.append(entry)
    doc = {"version": VERSION, "stack": stack, "nodes": entries}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def _node(entry: Any, i: int) -> tuple[Node, str]:
    """One entry checked field by field; AgentError naming the entry and the field."""
    if not isinstance(entry, dict) or not set(entry) >= _FIELDS or set(entry) - _FIELDS - {"host_key"}:
        raise AgentError(f"node {i}: not an object with exactly {', '.join(sorted(_FIELDS))} (and host_key)")
    iid, ip, key = entry["instance_id"], entry["private_ip"], entry.get("host_key", "")
    checks = [
        ("instance_id", isinstance(iid, str) and _ID.fullmatch(iid) is not None),
        ("private_ip", isinstance(ip, str) and (ip == "" or _ipv4(ip))),
        ("role", entry["role"] in ROLES),
        ("instance_type", isinstance(entry["instance_type"], str) and bool(_TYPE.fullmatch(entry["instance_type"]))),
        ("state", entry["state"] in LIVE_STATES),
        ("ready", isinstance(entry["ready"], bool)),
        ("host_key", isinstance(key, str) and (key == "" or valid_host_key(key))),
    ]
    bad = [name for name, ok in checks if not ok]
    if bad:
        raise AgentError(f"node {i}: bad {', '.join(bad)}")
    return Node(instance_id=iid, private_ip=ip, role=entry["role"], instance_type=entry["instance_type"],
                state=entry["state"], ready=entry["ready"]), key


def _ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def parse(data: bytes, stack: str) -> View:
    """The view in `data`, checked whole; AgentError saying why it was refused."""
    try:
        if len(data) > MAX_BYTES:
            raise AgentError(f"larger than {MAX_BYTES} bytes")
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise AgentError(f"not JSON ({exc})") from exc
        if not isinstance(doc, dict) or doc.get("version") != VERSION or not isinstance(doc.get("nodes"), list):
            raise AgentError(f"not a version {VERSION} view")
        if doc.get("stack") != stack:
            raise AgentError(f"made for stack {doc.get('stack')!r}, not {stack!r}")
        nodes, keys = [], {}
        for i, entry in enumerate(doc["nodes"]):
            node, key = _node(entry, i)
            nodes.append(node)
            if key:
                keys[node.instance_id] = key
        if len({n.instance_id for n in nodes}) != len(nodes):
            raise AgentError("an instance listed twice")
        if sum(n.role == "master" for n in nodes) > 1:
            raise AgentError("more than one master")
    except AgentError as exc:
        raise AgentError(f"cluster view refused: {exc}") from exc
    return View(stack, tuple(nodes), keys)
