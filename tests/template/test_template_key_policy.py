"""The cluster's private key is readable by the stack's node roles only (issue 12 item 5).

Any principal with s3:GetObject on "*" (ReadOnlyAccess, say) could read cluster-key/id_ed25519
and log in to the cluster. The key bucket's policy denies every read of that one object to all
but the master and worker roles, and nothing the CLI reads (the master's public host key beside
it, node records, logs). moto does not evaluate bucket policies, so the policy is checked here as
data, through a small evaluator of its Deny statements (an explicit Deny beats any Allow).
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

import pytest
from template_support import VARIANTS, variant_config

from cfn_chainermn.names import CLUSTER_PRIVATE_KEY, KEY_PREFIX, LOGS_PREFIX, MASTER_HOST_KEY, NODES_PREFIX
from cfn_chainermn.node.ssh import PRIVATE, PUBLIC
from cfn_chainermn.template import MAX_S3_BYTES, render, template_dict

BUCKET = "arn:aws:s3:::demo-keybucket-1a2b3c"
ROLES = {"MasterRole": "arn:aws:iam::123456789012:role/demo-MasterRole-AAAA",
         "WorkerRole": "arn:aws:iam::123456789012:role/demo-WorkerRole-BBBB"}
OUTSIDER = "arn:aws:iam::123456789012:role/ReadOnlyAuditor"
ROOT_USER = "arn:aws:iam::123456789012:root"
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


def test_the_secret_object_is_the_one_the_agent_writes() -> None:
    assert CLUSTER_PRIVATE_KEY == PRIVATE == "cluster-key/id_ed25519"
    assert PUBLIC != CLUSTER_PRIVATE_KEY and MASTER_HOST_KEY != CLUSTER_PRIVATE_KEY


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


def test_the_deny_covers_only_the_secret(default_dict: dict[str, Any]) -> None:
    # what the CLI reads (the master's host key it pins, node records, logs) stays readable to it
    for key in (MASTER_HOST_KEY, PUBLIC, f"{NODES_PREFIX}i-0123/host_ed25519.pub", f"{NODES_PREFIX}i-0123/ready",
                f"{LOGS_PREFIX}i-0123/agent.log", f"{KEY_PREFIX}id_ed25519.old"):
        for action in OBJECT_READS:
            assert denied(default_dict, OUTSIDER, action, key) == [], (key, action)
    # `stack delete` empties the bucket, old versions included: deletes and listing are not reads
    for action in ("s3:DeleteObject", "s3:DeleteObjectVersion", "s3:ListBucket", "s3:ListBucketVersions",
                   "s3:PutObject"):
        assert denied(default_dict, OUTSIDER, action, CLUSTER_PRIVATE_KEY) == [], action


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
