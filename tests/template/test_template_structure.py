"""Targeted asserts on the template's data: the security and cluster properties that matter,
checked directly rather than trusted to a linter."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from cfn_chainermn.catalog.instance_types import INSTANCE_TYPES
from cfn_chainermn.config.model import DEFAULT_AMI_SSM_PARAMETER, ClusterConfig, build
from cfn_chainermn.config.params import template_parameters
from cfn_chainermn.names import (
    CHAINER_STACK_MANIFEST,
    CHAINER_STACK_PREFIX,
    CLUSTER_TAG,
    CLUSTER_VIEW,
    MASTER_HOST_KEY,
    MASTER_RESOURCE,
    ROLE_TAG,
    WORKER_GROUP_RESOURCE,
)
from cfn_chainermn.template import MAX_INLINE_BYTES, MAX_S3_BYTES, build_template, render
from cfn_chainermn.template.agent_bundle import current

R = "Resources"


def props(t: dict[str, Any], name: str) -> dict[str, Any]:
    p: dict[str, Any] = t[R][name]["Properties"]
    return p


def test_console_metadata_and_format(default_dict: dict[str, Any]) -> None:
    assert default_dict["AWSTemplateFormatVersion"] == "2010-09-09"
    assert default_dict["Description"].startswith("cfn-chainermn ")
    iface = default_dict["Metadata"]["AWS::CloudFormation::Interface"]
    grouped = [p for g in iface["ParameterGroups"] for p in g["Parameters"]]
    assert sorted(grouped) == sorted(default_dict["Parameters"]) == sorted(iface["ParameterLabels"])
    assert len(grouped) == len(set(grouped))
    assert grouped[:3] == ["KeyName", "SshCidr", "AllowSshFromAnywhere"]
    access = iface["ParameterGroups"][0]
    assert access == {"Label": {"default": "Access"}, "Parameters": ["KeyName", "SshCidr", "AllowSshFromAnywhere"]}
    assert iface["ParameterLabels"]["AllowSshFromAnywhere"] == {"default": "Allow SSH from anywhere"}


def test_parameters_match_params_module_and_defaults_follow_config() -> None:
    cfg = build({"workers": 7, "instance_type": "p3.16xlarge", "key_name": "k", "ssh_cidr": "198.51.100.0/24",
                 "efs": {"mode": "none"}})
    t = build_template(cfg).to_dict()
    params = t["Parameters"]
    assert set(params) == set(template_parameters(cfg))
    assert {k: p.get("Default") for k, p in params.items()} == template_parameters(cfg)
    assert params["WorkerCount"]["Type"] == "Number" and params["WorkerCount"]["MaxValue"] == 256
    assert params["MasterInstanceType"]["AllowedValues"] == list(INSTANCE_TYPES)
    assert params["ImageSsmParameter"]["Type"] == "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"
    assert params["KeyName"]["Type"] == "AWS::EC2::KeyPair::KeyName"
    assert params["AllowSshFromAnywhere"]["AllowedValues"] == ["false", "true"]
    assert params["AllowSshFromAnywhere"]["Default"] == "false"


def test_key_name_and_ssh_cidr_have_no_default_unless_configured(default_dict: dict[str, Any]) -> None:
    params = default_dict["Parameters"]
    assert "Default" not in params["KeyName"] and "Default" not in params["SshCidr"]
    assert params["ImageSsmParameter"]["Default"] == DEFAULT_AMI_SSM_PARAMETER
    assert params["VpcId"]["Default"] == "" and params["EfsMode"]["Default"] == "new"


def test_rules_cover_cross_parameter_constraints(default_dict: dict[str, Any]) -> None:
    assert set(default_dict["Rules"]) == {"ExistingSubnetNeedsVpc", "NewSubnetInExistingVpcNeedsRouteTable",
                                          "ExistingEfsNeedsIdAndSecurityGroup", "MaxIoNeedsBursting",
                                          "SshFromAnywhereNeedsOptIn", "EfaOnNeedsEfaTypes",
                                          "ClosedDriverGpusNeedAnImage"}
    for rule in default_dict["Rules"].values():
        assert rule["Assertions"][0]["AssertDescription"]
    ssh = default_dict["Rules"]["SshFromAnywhereNeedsOptIn"]
    assert ssh["RuleCondition"] == {"Fn::Equals": [{"Ref": "SshCidr"}, "0.0.0.0/0"]}
    assert ssh["Assertions"][0]["Assert"] == {"Fn::Equals": [{"Ref": "AllowSshFromAnywhere"}, "true"]}
    assert "set AllowSshFromAnywhere to true" in ssh["Assertions"][0]["AssertDescription"]


def test_allow_ssh_from_anywhere_defaults_follow_config() -> None:
    assert template_parameters(ClusterConfig())["AllowSshFromAnywhere"] == "false"
    cfg = build({"ssh_cidr": "0.0.0.0/0", "allow_ssh_from_anywhere": True})
    params = build_template(cfg).to_dict()["Parameters"]
    assert (params["SshCidr"]["Default"], params["AllowSshFromAnywhere"]["Default"]) == ("0.0.0.0/0", "true")


def test_imdsv2_only_and_encrypted_gp3_root_on_every_node(default_dict: dict[str, Any]) -> None:
    master = props(default_dict, MASTER_RESOURCE)
    worker = props(default_dict, "WorkerLaunchTemplate")["LaunchTemplateData"]
    for node in (master, worker):
        assert node["MetadataOptions"] == {"HttpEndpoint": "enabled", "HttpTokens": "required",
                                           "HttpPutResponseHopLimit": 1}
        ebs = node["BlockDeviceMappings"][0]["Ebs"]
        assert ebs["Encrypted"] is True and ebs["VolumeType"] == "gp3"
        assert ebs["VolumeSize"] == {"Ref": "RootVolumeSize"}
        assert node["ImageId"] == {"Fn::If": ["HasImageId", {"Ref": "ImageId"}, {"Ref": "ImageSsmParameter"}]}
    assert master["Tenancy"] == {"Ref": "Tenancy"} and worker["Placement"]["Tenancy"] == {"Ref": "Tenancy"}
    assert "InstanceMarketOptions" not in master and "InstanceMarketOptions" not in worker  # Spot: test_template_spot


def test_cluster_placement_group_holds_master_and_workers(default_dict: dict[str, Any]) -> None:
    assert props(default_dict, "PlacementGroup") == {"Strategy": "cluster"}
    assert props(default_dict, MASTER_RESOURCE)["PlacementGroupName"] == {"Ref": "PlacementGroup"}
    assert props(default_dict, WORKER_GROUP_RESOURCE)["PlacementGroup"] == {"Ref": "PlacementGroup"}


def test_worker_group_scales_by_worker_count_and_counts_signals(default_dict: dict[str, Any]) -> None:
    asg = default_dict[R][WORKER_GROUP_RESOURCE]
    p = asg["Properties"]
    assert (p["MinSize"], p["MaxSize"], p["DesiredCapacity"]) == ("0", {"Ref": "WorkerCount"}, {"Ref": "WorkerCount"})
    assert asg["CreationPolicy"]["ResourceSignal"]["Count"] == {"Ref": "WorkerCount"}
    assert default_dict[R][MASTER_RESOURCE]["CreationPolicy"]["ResourceSignal"]["Count"] == 1
    rolling = asg["UpdatePolicy"]["AutoScalingRollingUpdate"]
    assert rolling["WaitOnResourceSignals"] is True and "AutoScalingReplacingUpdate" not in asg["UpdatePolicy"]
    tags = {t["Key"]: t for t in p["Tags"]}
    assert tags[CLUSTER_TAG] == {"Key": CLUSTER_TAG, "Value": {"Ref": "AWS::StackName"}, "PropagateAtLaunch": True}
    assert tags[ROLE_TAG]["Value"] == "worker" and tags[ROLE_TAG]["PropagateAtLaunch"] is True
    master_tags = {t["Key"]: t["Value"] for t in props(default_dict, MASTER_RESOURCE)["Tags"]}
    assert master_tags[CLUSTER_TAG] == {"Ref": "AWS::StackName"} and master_tags[ROLE_TAG] == "master"


def test_security_group_rules_are_exact(default_dict: dict[str, Any]) -> None:
    ssh = props(default_dict, "MasterSshSecurityGroup")["SecurityGroupIngress"]
    assert ssh == [{"CidrIp": {"Ref": "SshCidr"}, "Description": "SSH from SshCidr", "FromPort": 22,
                    "IpProtocol": "tcp", "ToPort": 22}]
    # without EFA; with it, card 0 carries the same groups (tests/template/test_template_efa.py)
    no_value = {"Ref": "AWS::NoValue"}
    assert props(default_dict, MASTER_RESOURCE)["SecurityGroupIds"] == {"Fn::If": ["MasterEfa", no_value, [
        {"Ref": "ClusterSecurityGroup"}, {"Ref": "MasterSshSecurityGroup"}]]}
    worker = props(default_dict, "WorkerLaunchTemplate")["LaunchTemplateData"]
    assert worker["SecurityGroupIds"] == {"Fn::If": ["WorkerEfa", no_value, [{"Ref": "ClusterSecurityGroup"}]]}
    self_rule = props(default_dict, "ClusterSecurityGroupSelfIngress")
    assert self_rule["IpProtocol"] == "-1"
    assert self_rule["GroupId"] == self_rule["SourceSecurityGroupId"] == {"Ref": "ClusterSecurityGroup"}
    assert "SecurityGroupIngress" not in props(default_dict, "ClusterSecurityGroup")
    nfs = props(default_dict, "EfsSecurityGroup")["SecurityGroupIngress"]
    assert [(r["IpProtocol"], r["FromPort"], r["ToPort"], r["SourceSecurityGroupId"]) for r in nfs] == [
        ("tcp", 2049, 2049, {"Ref": "ClusterSecurityGroup"})]
    existing = default_dict[R]["ExistingEfsNfsIngress"]
    assert existing["Condition"] == "ExistingEfsIngress"
    assert existing["Properties"]["GroupId"] == {"Ref": "EfsSecurityGroupId"}
    assert (existing["Properties"]["FromPort"], existing["Properties"]["ToPort"]) == (2049, 2049)
    cidrs = [r.get("CidrIp") for res in default_dict[R].values()
             for r in res.get("Properties", {}).get("SecurityGroupIngress", [])]
    assert "0.0.0.0/0" not in cidrs


def test_key_bucket_is_private_encrypted_tls_only(default_dict: dict[str, Any]) -> None:
    b = props(default_dict, "KeyBucket")
    assert "BucketName" not in b  # CloudFormation names it: no stack name can break it
    sse = b["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert sse == {"SSEAlgorithm": "AES256"}
    assert b["PublicAccessBlockConfiguration"] == dict.fromkeys(
        ["BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"], True)
    assert b["VersioningConfiguration"] == {"Status": "Enabled"}
    rules = {r["Id"]: r for r in b["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-old-versions"]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 1}
    assert "ExpirationInDays" not in rules["expire-old-versions"]  # the current key lives with the cluster
    # a retracted marker's delete marker goes once the version under it has expired
    assert rules["expire-old-versions"]["ExpiredObjectDeleteMarker"] is True
    assert rules["expire-agent-logs"]["Prefix"] == "logs/"
    statements = {s["Sid"]: s for s in props(default_dict, "KeyBucketPolicy")["PolicyDocument"]["Statement"]}
    # the others, the private key's readers and who writes objects, are test_template_key_policy.py's
    assert set(statements) == {"DenyInsecureTransport", "OnlyNodeRolesReadTheClusterKey", "OnlyNodeRolesWriteObjects",
                               "OnlyTheMasterWritesWhatNodesTrust"}
    stmt = statements["DenyInsecureTransport"]
    assert stmt["Effect"] == "Deny" and stmt["Principal"] == "*" and stmt["Action"] == "s3:*"
    assert stmt["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def _statements(t: dict[str, Any], role: str) -> dict[str, dict[str, Any]]:
    (policy,) = props(t, role)["Policies"]
    out: dict[str, dict[str, Any]] = {}
    for s in policy["PolicyDocument"]["Statement"]:
        s = s["Fn::If"][1] if "Fn::If" in s else s
        out[s["Sid"]] = s
    return out


def test_iam_least_privilege(default_dict: dict[str, Any]) -> None:
    master, worker = _statements(default_dict, "MasterRole"), _statements(default_dict, "WorkerRole")
    assert master["WriteClusterKey"]["Action"] == ["s3:GetObject", "s3:PutObject"]
    assert worker["ReadClusterKey"]["Action"] == ["s3:GetObject"]
    assert "WriteClusterKey" not in worker
    master = {sid: s for sid, s in master.items() if not sid.startswith("Idle")}  # test_template_idle.py's
    for stmts in (master, worker):
        star = [s["Sid"] for s in stmts.values() if "*" in s["Resource"]]
        assert star == ["DiscoverClusterNodes"] and stmts["DiscoverClusterNodes"]["Action"] == ["ec2:DescribeInstances"]
        assert stmts["SignalThisStack"]["Resource"] == [{"Ref": "AWS::StackId"}]
        # a (re)booting node deletes its own nodes/<id>/ready: Put and Delete on the same nodes/* scope
        records = stmts["PublishNodeRecords"]
        assert records["Action"] == ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
        assert records["Resource"] == [{"Fn::Sub": "${KeyBucket.Arn}/nodes/*"}]
        assert [s["Sid"] for s in stmts.values() if "s3:DeleteObject" in s["Action"]] == ["PublishNodeRecords"]
        # the bootstrap reads the agent out of this stack's own template, nothing else of CloudFormation
        assert stmts["ReadThisStackTemplate"] == {"Sid": "ReadThisStackTemplate", "Effect": "Allow",
                                                  "Action": ["cloudformation:GetTemplate"],
                                                  "Resource": [{"Ref": "AWS::StackId"}]}
        cfn_actions = sorted(a for s in stmts.values() for a in s["Action"] if a.startswith("cloudformation:"))
        assert cfn_actions == ["cloudformation:GetTemplate", "cloudformation:SignalResource"]
        assert not any("Condition" in s for s in stmts.values())
        assert all(not a.endswith("*") for s in stmts.values() for a in s["Action"])
    # the only statements under a condition are idle shutdown's (test_template_idle.py pins them)
    conditional = [s["Fn::If"] for role in ("MasterRole", "WorkerRole")
                   for s in props(default_dict, role)["Policies"][0]["PolicyDocument"]["Statement"] if "Fn::If" in s]
    assert conditional and all(c[0].startswith("Idle") and c[2] == {"Ref": "AWS::NoValue"} for c in conditional)
    assert all("ManagedPolicyArns" not in props(default_dict, r) for r in ("MasterRole", "WorkerRole"))


def _may_write(t: dict[str, Any], role: str, key: str) -> list[str]:
    """Sids of `role`'s statements that allow writing object `key` of the key bucket.

    IAM's `*` in an ARN matches any characters, "/" included, as fnmatchcase's does.
    """
    arn = f"${{KeyBucket.Arn}}/{key}"
    sids = []
    for sid, s in _statements(t, role).items():
        if s["Effect"] != "Allow" or not any(a in ("*", "s3:*") or a.startswith(("s3:Put", "s3:Delete"))
                                             for a in s["Action"]):
            continue
        for r in s["Resource"]:
            pattern = r if isinstance(r, str) else r.get("Fn::Sub", "")
            if isinstance(pattern, str) and fnmatchcase(arn, pattern):
                sids.append(sid)
    return sids


def test_only_the_master_can_write_the_host_key_the_cli_pins(default_dict: dict[str, Any]) -> None:
    # the CLI pins the master's SSH host key from this object: a worker must not be able to replace it
    assert MASTER_HOST_KEY.startswith("cluster-key/")
    assert _may_write(default_dict, "WorkerRole", MASTER_HOST_KEY) == []
    assert _may_write(default_dict, "WorkerRole", "cluster-key/id_ed25519") == []
    # (and, with idle shutdown's delete, empty the bucket before the stack deletes itself)
    assert _may_write(default_dict, "MasterRole", MASTER_HOST_KEY) == ["WriteClusterKey", "IdleEmptyKeyBucket"]
    # nor the cluster view every worker's hostfile and known_hosts are made from (node/discovery.py)
    assert CLUSTER_VIEW.startswith("cluster-key/")
    assert _may_write(default_dict, "WorkerRole", CLUSTER_VIEW) == []
    assert _may_write(default_dict, "MasterRole", CLUSTER_VIEW) == ["WriteClusterKey", "IdleEmptyKeyBucket"]


def test_only_the_master_can_write_the_chainer_stack_workers_install(default_dict: dict[str, Any]) -> None:
    # workers install what the manifest names with --require-hashes: only the master may write it
    for key in (CHAINER_STACK_MANIFEST, f"{CHAINER_STACK_PREFIX}wheels/chainer-7.8.1-py3-none-any.whl"):
        assert _may_write(default_dict, "WorkerRole", key) == []
        assert _may_write(default_dict, "MasterRole", key) == ["WriteChainerStack", "IdleEmptyKeyBucket"]
    read = _statements(default_dict, "WorkerRole")["ReadChainerStack"]
    assert read["Action"] == ["s3:GetObject"] and read["Resource"] == [{"Fn::Sub": "${KeyBucket.Arn}/chainer-stack/*"}]
    # the check can fail: workers do write their own records under nodes/
    assert _may_write(default_dict, "WorkerRole", "nodes/i-0123456789abcdef0/ready") == ["PublishNodeRecords"]


def test_efs_is_encrypted_and_kept_on_replacement(default_dict: dict[str, Any]) -> None:
    fs = default_dict[R]["FileSystem"]
    assert fs["Condition"] == "CreateEfs" and fs["Properties"]["Encrypted"] is True
    assert (fs["DeletionPolicy"], fs["UpdateReplacePolicy"]) == ("Delete", "Retain")
    assert props(default_dict, "MountTarget")["SubnetId"] == {
        "Fn::If": ["CreateSubnet", {"Ref": "Subnet"}, {"Ref": "SubnetId"}]}


def test_outputs(default_dict: dict[str, Any]) -> None:
    out = default_dict["Outputs"]
    assert next(iter(out)) == "ClusterMasterPublicDNS"
    assert out["ClusterMasterPublicDNS"]["Value"] == {"Fn::GetAtt": [MASTER_RESOURCE, "PublicDnsName"]}
    assert out["SshCommand"]["Value"] == {"Fn::Sub": "ssh -i ${KeyName}.pem chainer@${ClusterMaster.PublicDnsName}"}
    assert out["EfsFileSystemId"]["Condition"] == "HasEfs"
    assert [k for k, v in out.items() if "Condition" in v] == ["EfsFileSystemId", "ShutdownRoleArn"]
    assert set(out) == {"ClusterMasterPublicDNS", "ClusterMasterPrivateIP", "ClusterMasterInstanceId",
                        "KeyBucketName", "EfsFileSystemId", "WorkerGroupName", "MountPoint", "SshCommand",
                        "ShutdownRoleArn"}


def test_no_depends_on_a_conditional_resource(default_dict: dict[str, Any]) -> None:
    res = default_dict[R]
    for name, r in res.items():
        deps = r.get("DependsOn", [])
        for dep in [deps] if isinstance(deps, str) else deps:
            assert "Condition" not in res[dep] or res[dep]["Condition"] == r.get("Condition"), (name, dep)


def test_fits_s3_and_renders_deterministically() -> None:
    """With the agent inside, no template fits inline (51,200 bytes): `stack create` stages it and the
    console stores an upload in S3, where 1 MB is the limit. Without the agent's wheel, the readable
    part stays small."""
    cfg = ClusterConfig()
    wheel = current().encoded()
    for fmt in ("compact", "yaml", "json"):
        text = render(cfg, fmt)
        assert MAX_INLINE_BYTES < len(text.encode()) < MAX_S3_BYTES // 2, fmt
        assert len(text.replace(wheel, "").encode()) < 140_000, fmt  # idle shutdown's service role: about 8 KB
        assert text == render(cfg, fmt)
    assert "!Base64" not in render(cfg, "yaml")  # short-form tags crash moto
