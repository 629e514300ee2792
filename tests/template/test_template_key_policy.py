"""The cluster's private key is readable by the stack's node roles only (issue 12 item 5), and
what the nodes trust is written by them only (issue 13's security leftovers).

Any principal with s3:GetObject on "*" (ReadOnlyAccess, say) could read cluster-key/id_ed25519
and log in to the cluster. The key bucket's policy denies every read of that one object to all
but the master and worker roles, and nothing the CLI reads (the master's public host key beside
it, node records, logs). Any principal with s3:PutObject on "*" could replace the cluster key,
the master's host key the CLI pins, the cluster view or the wheels every node installs: the policy
denies every object write to all but the node roles, and under cluster-key/ and chainer-stack/ to
all but the master's; deletes stay open (`stack delete` empties the bucket as the user). moto does
not evaluate bucket policies, so the policy is checked here as data, through a small evaluator of
its Deny statements (an explicit Deny beats any Allow), against every writer the code has.
"""

from __future__ import annotations

import ast
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest
from template_support import VARIANTS, variant_config

import cfn_chainermn
from cfn_chainermn.cluster.inventory import HOST_KEY_NAME, READY_NAME
from cfn_chainermn.names import (
    CHAINER_STACK_MANIFEST,
    CHAINER_STACK_PREFIX,
    CLUSTER_PRIVATE_KEY,
    CLUSTER_PUBLIC_KEY,
    CLUSTER_VIEW,
    IDLE_STATUS,
    KEY_PREFIX,
    LOGS_PREFIX,
    MASTER_HOST_KEY,
    NODES_PREFIX,
)
from cfn_chainermn.node import idle_marker
from cfn_chainermn.template import MAX_S3_BYTES, render, template_dict

BUCKET = "arn:aws:s3:::demo-keybucket-1a2b3c"
ROLES = {"MasterRole": "arn:aws:iam::123456789012:role/demo-MasterRole-AAAA",
         "WorkerRole": "arn:aws:iam::123456789012:role/demo-WorkerRole-BBBB"}
OUTSIDER = "arn:aws:iam::123456789012:role/ReadOnlyAuditor"
ROOT_USER = "arn:aws:iam::123456789012:root"
USER = "arn:aws:iam::123456789012:user/admin"  # who runs `stack create` and `stack delete`
PRINCIPALS = {"master": ROLES["MasterRole"], "worker": ROLES["WorkerRole"], "user": USER}
# Every S3 action that writes an object or what is attached to it (ACL, tags, retention, hold), and
# those another bucket's replication would write here with.
OBJECT_WRITES = ["s3:PutObject", "s3:PutObjectAcl", "s3:PutObjectVersionAcl", "s3:PutObjectTagging",
                 "s3:PutObjectVersionTagging", "s3:PutObjectRetention", "s3:PutObjectLegalHold",
                 "s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags"]
DELETES = ["s3:DeleteObject", "s3:DeleteObjectVersion"]
IID = "i-0123456789abcdef0"
# Only the master writes these (the rest of the bucket: any node).
MASTER_KEYS = [CLUSTER_PRIVATE_KEY, CLUSTER_PUBLIC_KEY, MASTER_HOST_KEY, CLUSTER_VIEW, IDLE_STATUS,
               CHAINER_STACK_MANIFEST, f"{CHAINER_STACK_PREFIX}wheels/chainer-7.8.1.tar.gz"]
NODE_KEYS = [f"{NODES_PREFIX}{IID}/{HOST_KEY_NAME}", f"{NODES_PREFIX}{IID}/{READY_NAME}", idle_marker.key(IID),
             f"{LOGS_PREFIX}{IID}/agent.log"]
# Every S3 action that reads an object's bytes or what describes them (S3 Select and a copy's
# source are authorized as s3:GetObject; a restore makes a readable copy of an archived one).
OBJECT_READS = ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectAttributes", "s3:GetObjectVersionAttributes",
                "s3:GetObjectAcl", "s3:GetObjectVersionAcl", "s3:GetObjectTorrent", "s3:GetObjectVersionTorrent",
                "s3:GetObjectVersionForReplication", "s3:RestoreObject"]


def _resolve(value: Any) -> Any:
    """The policy's intrinsic functions with this test's bucket and role ARNs."""
    if isinstance(value, dict) and "Fn::Sub" in value:
        return str(value["Fn::Sub"]).replace("${KeyBucket.Arn}", BUCKET)
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        name, attr = value["Fn::GetAtt"]
        assert attr == "Arn"
        return ROLES[name]
    if isinstance(value, dict):
        return {k: _resolve(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v) for v in value]
    return value


def _statements(t: dict[str, Any]) -> dict[str, dict[str, Any]]:
    doc = t["Resources"]["KeyBucketPolicy"]["Properties"]["PolicyDocument"]
    return {s["Sid"]: _resolve(s) for s in doc["Statement"]}


def _matches(patterns: str | list[str], value: str, *, case: bool = True) -> bool:
    """IAM's wildcard match: `*` matches anything, "/" included; actions are case-insensitive."""
    items = [patterns] if isinstance(patterns, str) else patterns
    return any(fnmatchcase(value, p) if case else fnmatchcase(value.lower(), p.lower()) for p in items)


def denied(t: dict[str, Any], principal: str, action: str, key: str, *, tls: bool = True) -> list[str]:
    """Sids of the Deny statements that refuse `principal` the `action` on object `key`."""
    out = []
    for sid, s in _statements(t).items():
        assert s["Effect"] == "Deny" and s["Principal"] == "*", sid  # the policy grants nothing
        if not (_matches(s["Action"], action, case=False) and _matches(s["Resource"], f"{BUCKET}/{key}")):
            continue
        ((op, cond),) = s["Condition"].items()
        ((name, values),) = cond.items()
        if op == "Bool" and name == "aws:SecureTransport":
            applies = values == str(tls).lower()
        elif op == "ArnNotEquals" and name == "aws:PrincipalArn":
            applies = not _matches(values, principal)
        else:
            raise AssertionError(f"{sid}: a condition this evaluator does not know: {op} {name}")
        if applies:
            out.append(sid)
    return out


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant(request: pytest.FixtureRequest) -> dict[str, Any]:
    return template_dict(variant_config(request.param))


def test_the_secret_object_is_the_key_alone() -> None:
    assert CLUSTER_PRIVATE_KEY == "cluster-key/id_ed25519"
    assert CLUSTER_PUBLIC_KEY != CLUSTER_PRIVATE_KEY and MASTER_HOST_KEY != CLUSTER_PRIVATE_KEY


def test_deny_names_exactly_the_private_key_and_excepts_exactly_the_node_roles(variant: dict[str, Any]) -> None:
    raw = {s["Sid"]: s for s in variant["Resources"]["KeyBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]}
    stmt = raw["OnlyNodeRolesReadTheClusterKey"]
    assert stmt["Effect"] == "Deny" and stmt["Principal"] == "*"
    assert stmt["Resource"] == [{"Fn::Sub": "${KeyBucket.Arn}/cluster-key/id_ed25519"}]
    assert stmt["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": [
        {"Fn::GetAtt": ["MasterRole", "Arn"]}, {"Fn::GetAtt": ["WorkerRole", "Arn"]}]}}
    assert "Condition" not in variant["Resources"]["KeyBucketPolicy"]  # in every variant, unconditionally
    # the excepted ARNs are the roles the nodes really run as
    res = variant["Resources"]
    assert {n for n, r in res.items() if r["Type"] == "AWS::IAM::Role"} == {*ROLES, "ShutdownRole"}
    # the other role is CloudFormation's (idle shutdown), which reads no object at all
    trust = res["ShutdownRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert [s["Principal"] for s in trust] == [{"Service": "cloudformation.amazonaws.com"}]
    assert res["MasterInstanceProfile"]["Properties"]["Roles"] == [{"Ref": "MasterRole"}]
    assert res["WorkerInstanceProfile"]["Properties"]["Roles"] == [{"Ref": "WorkerRole"}]


@pytest.mark.parametrize("action", OBJECT_READS)
def test_no_one_but_the_node_roles_reads_the_private_key(default_dict: dict[str, Any], action: str) -> None:
    for outsider in (OUTSIDER, ROOT_USER, "arn:aws:iam::123456789012:user/admin",
                     "arn:aws:iam::123456789012:role/demo-MasterRole-AAAA-other"):
        assert denied(default_dict, outsider, action, CLUSTER_PRIVATE_KEY) == ["OnlyNodeRolesReadTheClusterKey"]
    for role in ROLES.values():
        assert denied(default_dict, role, action, CLUSTER_PRIVATE_KEY) == []
        # ... over TLS only, as everything else
        assert denied(default_dict, role, action, CLUSTER_PRIVATE_KEY, tls=False) == ["DenyInsecureTransport"]


def test_the_read_deny_covers_only_the_secret(default_dict: dict[str, Any]) -> None:
    # what the CLI reads (the master's host key it pins, node records, logs) stays readable to it
    for key in (MASTER_HOST_KEY, CLUSTER_PUBLIC_KEY, f"{NODES_PREFIX}i-0123/host_ed25519.pub",
                f"{NODES_PREFIX}i-0123/ready", f"{LOGS_PREFIX}i-0123/agent.log", f"{KEY_PREFIX}id_ed25519.old"):
        for action in OBJECT_READS:
            assert denied(default_dict, OUTSIDER, action, key) == [], (key, action)
    # `stack delete` empties the bucket, old versions included: deletes and listing are not reads
    for action in (*DELETES, "s3:ListBucket", "s3:ListBucketVersions", "s3:PutObject"):
        assert "OnlyNodeRolesReadTheClusterKey" not in denied(default_dict, OUTSIDER, action, CLUSTER_PRIVATE_KEY)


def test_write_denies_name_every_object_and_the_masters_prefixes_in_every_variant(variant: dict[str, Any]) -> None:
    raw = {s["Sid"]: s for s in variant["Resources"]["KeyBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]}
    nodes = {"ArnNotEquals": {"aws:PrincipalArn": [{"Fn::GetAtt": ["MasterRole", "Arn"]},
                                                   {"Fn::GetAtt": ["WorkerRole", "Arn"]}]}}
    assert raw["OnlyNodeRolesWriteObjects"] == {
        "Sid": "OnlyNodeRolesWriteObjects", "Effect": "Deny", "Principal": "*",
        "Action": ["s3:PutObject*", "s3:Replicate*"], "Resource": [{"Fn::Sub": "${KeyBucket.Arn}/*"}],
        "Condition": nodes}
    assert raw["OnlyTheMasterWritesWhatNodesTrust"] == {
        "Sid": "OnlyTheMasterWritesWhatNodesTrust", "Effect": "Deny", "Principal": "*",
        "Action": ["s3:PutObject*", "s3:Replicate*"],
        "Resource": [{"Fn::Sub": "${KeyBucket.Arn}/cluster-key/*"}, {"Fn::Sub": "${KeyBucket.Arn}/chainer-stack/*"}],
        "Condition": {"ArnNotEquals": {"aws:PrincipalArn": [{"Fn::GetAtt": ["MasterRole", "Arn"]}]}}}
    # no statement denies a delete: `stack delete` empties the bucket with the user's credentials
    assert not any(_matches(s["Action"], action, case=False) for s in raw.values()
                   if s["Sid"] != "DenyInsecureTransport" for action in DELETES)


@pytest.mark.parametrize("action", OBJECT_WRITES)
def test_no_one_but_the_master_writes_what_nodes_trust_and_no_one_but_a_node_the_rest(
        default_dict: dict[str, Any], action: str) -> None:
    both = ["OnlyNodeRolesWriteObjects", "OnlyTheMasterWritesWhatNodesTrust"]
    for key in MASTER_KEYS:
        for outsider in (OUTSIDER, ROOT_USER, USER, "arn:aws:iam::123456789012:role/demo-MasterRole-AAAA-other"):
            assert denied(default_dict, outsider, action, key) == both, (outsider, key)
        assert denied(default_dict, ROLES["WorkerRole"], action, key) == ["OnlyTheMasterWritesWhatNodesTrust"], key
        assert denied(default_dict, ROLES["MasterRole"], action, key) == [], key
    for key in NODE_KEYS:
        assert denied(default_dict, OUTSIDER, action, key) == ["OnlyNodeRolesWriteObjects"], key
        assert denied(default_dict, USER, action, key) == ["OnlyNodeRolesWriteObjects"], key
        for role in ROLES.values():
            assert denied(default_dict, role, action, key) == [], (role, key)


def test_nodes_boot_after_the_policy(default_dict: dict[str, Any]) -> None:
    """The master writes the key only once the Deny guards it."""
    res = default_dict["Resources"]
    assert res["NodePrerequisites"]["Metadata"]["KeyBucketPolicy"] == {"Ref": "KeyBucketPolicy"}
    assert "Condition" not in res["KeyBucketPolicy"]
    for node in ("ClusterMaster", "WorkerGroup"):
        assert res[node]["DependsOn"] == ["NodePrerequisites"]


def test_access_log_skip_reason_does_not_claim_cloudtrail_sees_reads(default_dict: dict[str, Any]) -> None:
    (skip,) = default_dict["Resources"]["KeyBucket"]["Metadata"]["checkov"]["skip"]
    assert skip["id"] == "CKV_AWS_18"
    reason = skip["comment"]
    assert "CloudTrail covers" not in reason
    assert "data events" in reason and "not the default" in reason
    assert "denies reads of the private key to all but the node roles" in reason


def test_every_variant_fits_s3() -> None:
    for name in VARIANTS:
        assert len(render(variant_config(name), "compact").encode()) < MAX_S3_BYTES, name


PUT, DELETE = "s3:PutObject", "s3:DeleteObject"
M, MW, ANYONE_EMPTYING = ("master",), ("master", "worker"), ("user", "master")
# Every call in the package that writes or deletes an object of a bucket, by (module, function):
# who makes it, with which action, on which key. The primitives the node's writes go through and
# the staging bucket (not the key bucket) write nothing of their own here.
WRITERS: dict[tuple[str, str], list[tuple[tuple[str, ...], str, str]]] = {
    ("node/ssh.py", "master_key"): [(M, PUT, CLUSTER_PRIVATE_KEY), (M, PUT, CLUSTER_PUBLIC_KEY)],
    ("node/ssh.py", "setup"): [(MW, PUT, f"{NODES_PREFIX}{IID}/{HOST_KEY_NAME}"), (M, PUT, MASTER_HOST_KEY)],
    ("node/discovery.py", "AwsInventory._publish"): [(M, PUT, CLUSTER_VIEW)],
    ("node/idle_master.py", "tick_master"): [(M, PUT, IDLE_STATUS)],  # the key idle_tick._publish names
    ("node/chainer_stack.py", "_build_and_publish"): [(M, PUT, f"{CHAINER_STACK_PREFIX}wheels/chainer-7.8.1.tar.gz")],
    ("node/chainer_stack.py", "_put_manifest"): [(M, PUT, CHAINER_STACK_MANIFEST)],
    ("node/steps.py", "ready"): [(MW, PUT, f"{NODES_PREFIX}{IID}/{READY_NAME}")],
    ("node/steps.py", "retract_ready"): [(MW, DELETE, f"{NODES_PREFIX}{IID}/{READY_NAME}")],
    ("node/idle_marker.py", "keep"): [(MW, PUT, idle_marker.key(IID)), (MW, DELETE, idle_marker.key(IID))],
    ("node/agent.py", "_upload_log"): [(MW, PUT, f"{LOGS_PREFIX}{IID}/agent.log")],
    ("node/aws_backend.py", "S3Bucket.put"): [],
    ("node/aws_backend.py", "S3Bucket.delete"): [],
    # stack/cfn.py's emptying: `stack delete` with the user's credentials, idle shutdown as the master
    ("aws.py", "delete_objects"): [(ANYONE_EMPTYING, action, key) for key in [*MASTER_KEYS, *NODE_KEYS]
                                   for action in DELETES],
    ("stack/staging.py", "upload_file"): [],
}
S3_WRITES = {"put_object", "delete_object", "delete_objects", "copy_object", "create_multipart_upload", "upload_part",
             "upload_part_copy", "complete_multipart_upload", "put_object_acl", "put_object_tagging",
             "delete_object_tagging", "upload_file", "upload_fileobj"}


def _writer_calls() -> set[tuple[str, str]]:
    """(module, function) of every S3 write call and every put/delete on a Bucket in the package."""
    root = Path(cfn_chainermn.__file__).parent
    found: set[tuple[str, str]] = set()

    def visit(node: ast.AST, module: str, scope: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = scope
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                inner = f"{scope}.{child.name}" if scope else child.name
            if isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute) and (
                    child.func.attr in S3_WRITES
                    or (child.func.attr in ("put", "delete") and ast.unparse(child.func.value).endswith("bucket"))):
                found.add((module, scope))
            visit(child, module, inner)

    for path in sorted(root.rglob("*.py")):
        visit(ast.parse(path.read_text(encoding="utf-8")), path.relative_to(root).as_posix(), "")
    return found


def _role_allows(t: dict[str, Any], role: str, action: str, key: str) -> bool:
    """Whether `role`'s own policy (its conditional idle statements included) allows `action` on `key`."""
    policy = t["Resources"][f"{role.capitalize()}Role"]["Properties"]["Policies"][0]["PolicyDocument"]
    for s in policy["Statement"]:
        s = _resolve(s["Fn::If"][1] if "Fn::If" in s else s)
        if s["Effect"] == "Allow" and _matches(s["Action"], action, case=False) and _matches(
                s["Resource"], f"{BUCKET}/{key}"):
            return True
    return False


def test_the_writer_table_is_every_writer_the_code_has() -> None:
    """A new writer fails here until the table (and so the tests below) says who writes what."""
    assert _writer_calls() == set(WRITERS)


def test_every_writer_the_code_has_is_allowed_by_the_policy_and_its_role(default_dict: dict[str, Any]) -> None:
    for site, writes in WRITERS.items():
        for who, action, key in writes:
            for principal in who:
                assert denied(default_dict, PRINCIPALS[principal], action, key) == [], (site, principal, key)
                if principal != "user":  # the user's own IAM is theirs; the nodes' is the template's
                    assert _role_allows(default_dict, principal, action, key), (site, principal, action, key)
    # the check can fail: a worker's write of what only the master writes is refused by both
    assert denied(default_dict, ROLES["WorkerRole"], PUT, CLUSTER_VIEW) == ["OnlyTheMasterWritesWhatNodesTrust"]
    assert not _role_allows(default_dict, "worker", PUT, CLUSTER_VIEW)
