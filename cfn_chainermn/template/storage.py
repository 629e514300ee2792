"""The key bucket (cluster SSH key, node records, agent logs) and the optional EFS.

The bucket has no BucketName: CloudFormation derives a valid lowercase name, so no stack name
(upper case, long) can break it, and names never collide across accounts. It holds a private
key, so it is encrypted, private, TLS-only and versioned, with old versions expired quickly, and
its policy lets no principal but the two node roles read that key: an account-wide s3:GetObject
(ReadOnlyAccess, say) would otherwise be a login to the cluster. Likewise no principal but the
node roles writes an object, and none but the master's writes cluster-key/ or chainer-stack/
(the key, the host key the CLI pins, the view every hostfile comes from, the wheels every node
installs): an account-wide s3:PutObject would otherwise plant what the nodes trust.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from troposphere import GetAtt, If, Ref, Sub, Template, ec2, efs, s3
from troposphere.s3 import BucketPolicy

from cfn_chainermn.names import CHAINER_STACK_PREFIX, CLUSTER_PRIVATE_KEY, KEY_PREFIX, LOGS_PREFIX
from cfn_chainermn.template.iam import role_id
from cfn_chainermn.template.network import Network, cluster_tags
from cfn_chainermn.template.parameters import Inputs

LOG_RETENTION_DAYS = 30
BUCKET_LOGGING_REASON = (
    "holds only this cluster's SSH key and node records; access logs would need a second bucket per "
    "cluster that outlives the stack. The policy denies reads of the private key to all but the node "
    "roles; CloudTrail records those reads only if a trail logs S3 data events (not the default)"
)
# Every read of the object's bytes or of what describes them, current and old versions: GetObject*
# also matches GetObjectVersion, -Attributes, -Acl, -Torrent, -Tagging, -VersionForReplication (and
# S3 Select and CopyObject's source are authorized as s3:GetObject); a restore makes a readable copy.
SECRET_READS = ["s3:GetObject*", "s3:RestoreObject"]
# Every write of an object's bytes or of what is attached to it: s3:PutObject authorizes PutObject,
# the destination of CopyObject and UploadPartCopy, and every step of a multipart upload (botocore's
# S3 service-2.json, "Permissions" of CopyObject and UploadPartCopy); PutObject* also matches
# -Acl, -VersionAcl, -Tagging, -VersionTagging, -Retention, -LegalHold. Replicate* (ReplicateObject,
# -Delete, -Tags) is how another bucket's replication rule would write here.
# Deletes are NOT denied: `stack delete` empties the bucket with the user's own credentials, which
# a template cannot name, and DeleteObjects always needs s3:DeleteObject ("If the s3:DeleteObject or
# s3:DeleteObjectVersion permissions are explicitly denied in your bucket policy, attempts to delete
# ... result in a 403", same file). A delete plants nothing (docs/threat-model.md says what it can do).
OBJECT_WRITES = ["s3:PutObject*", "s3:Replicate*"]
NODE_ROLES = ("master", "worker")
# What only the master writes: node/ssh.py, node/discovery.py, node/idle_master.py, node/chainer_stack.py.
MASTER_PREFIXES = (KEY_PREFIX, CHAINER_STACK_PREFIX)


@dataclass(frozen=True)
class Storage:
    bucket: s3.Bucket
    file_system: efs.FileSystem  # a new one (under CreateEfs)
    efs_id: Any  # the file system id when HasEfs (new or given)
    ready: list[tuple[str, Any]]


def _key_bucket(t: Template) -> s3.Bucket:
    bucket = t.add_resource(s3.Bucket(
        "KeyBucket",
        DeletionPolicy="Delete", UpdateReplacePolicy="Delete",  # `stack delete` empties it first
        BucketEncryption=s3.BucketEncryption(ServerSideEncryptionConfiguration=[
            # SSE-S3: no KMS key to pay for or to grant the node roles (a Bucket Key only matters for KMS).
            s3.ServerSideEncryptionRule(
                ServerSideEncryptionByDefault=s3.ServerSideEncryptionByDefault(SSEAlgorithm="AES256"))]),
        PublicAccessBlockConfiguration=s3.PublicAccessBlockConfiguration(
            BlockPublicAcls=True, BlockPublicPolicy=True, IgnorePublicAcls=True, RestrictPublicBuckets=True),
        OwnershipControls=s3.OwnershipControls(Rules=[
            s3.OwnershipControlsRule(ObjectOwnership="BucketOwnerEnforced")]),
        VersioningConfiguration=s3.VersioningConfiguration(Status="Enabled"),
        LifecycleConfiguration=s3.LifecycleConfiguration(Rules=[
            # Current objects (the cluster key, node records) live as long as the cluster; a
            # replaced or deleted key must not linger as an old version. A retracted record (a
            # ready or busy marker a node deletes) leaves a delete marker; once the version under
            # it has expired, this removes it ("the delete marker will be removed if there are no
            # noncurrent versions"; not allowed beside ExpirationInDays/Date or TagFilters: the
            # AWS::S3::Bucket Rule schema cfn-lint ships).
            s3.LifecycleRule(
                Id="expire-old-versions", Status="Enabled",
                NoncurrentVersionExpiration=s3.NoncurrentVersionExpiration(NoncurrentDays=1),
                ExpiredObjectDeleteMarker=True,
                AbortIncompleteMultipartUpload=s3.AbortIncompleteMultipartUpload(DaysAfterInitiation=1),
            ),
            s3.LifecycleRule(Id="expire-agent-logs", Status="Enabled", Prefix=LOGS_PREFIX,
                             ExpirationInDays=LOG_RETENTION_DAYS),
        ]),
        Tags=cluster_tags("keys"),
        Metadata={"checkov": {"skip": [{"id": "CKV_AWS_18", "comment": BUCKET_LOGGING_REASON}]}},
    ))
    return bucket


def _only(roles: tuple[str, ...]) -> dict[str, Any]:
    """The Deny's condition: every principal but sessions of `roles` (aws:PrincipalArn is the role's
    ARN for any session of it: IAM User Guide, "AWS global condition context keys")."""
    return {"ArnNotEquals": {"aws:PrincipalArn": [GetAtt(role_id(r), "Arn") for r in roles]}}


def _key_policy(t: Template, bucket: s3.Bucket) -> BucketPolicy:
    """TLS only, the private key readable by the node roles alone, objects written by them alone.

    The CLI never reads the private key (it pins MASTER_HOST_KEY, beside it and public), so the
    read Deny names that one object; the CLI writes no object at all. The creating principal is
    not excepted: it logs in with its own key pair, a template cannot name it without a parameter
    the console would ask for, and an administrator who must read or replace an object can change
    this policy (a recorded management event).
    """
    arn = f"${{{bucket.title}.Arn}}"
    return t.add_resource(BucketPolicy(
        "KeyBucketPolicy", Bucket=Ref(bucket),
        PolicyDocument={"Version": "2012-10-17", "Statement": [{
            "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
            "Resource": [Sub(arn), Sub(f"{arn}/*")],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }, {
            "Sid": "OnlyNodeRolesReadTheClusterKey", "Effect": "Deny", "Principal": "*", "Action": SECRET_READS,
            "Resource": [Sub(f"{arn}/{CLUSTER_PRIVATE_KEY}")], "Condition": _only(NODE_ROLES),
        }, {
            "Sid": "OnlyNodeRolesWriteObjects", "Effect": "Deny", "Principal": "*", "Action": OBJECT_WRITES,
            "Resource": [Sub(f"{arn}/*")], "Condition": _only(NODE_ROLES),
        }, {
            "Sid": "OnlyTheMasterWritesWhatNodesTrust", "Effect": "Deny", "Principal": "*", "Action": OBJECT_WRITES,
            "Resource": [Sub(f"{arn}/{prefix}*") for prefix in MASTER_PREFIXES], "Condition": _only(("master",)),
        }]},
    ))


def add_storage(t: Template, p: Inputs, net: Network) -> Storage:
    """The key bucket and its policy always; a new EFS (with its group and mount target) or NFS into a given one."""
    bucket, new = _key_bucket(t), p.cond.create_efs
    policy = _key_policy(t, bucket)
    efs_sg = t.add_resource(ec2.SecurityGroup(
        "EfsSecurityGroup", Condition=new, VpcId=net.vpc_id, Tags=cluster_tags("efs"),
        GroupDescription="cfn-chainermn EFS mount target: NFS from cluster members only",
        SecurityGroupIngress=[ec2.SecurityGroupRule(
            IpProtocol="tcp", FromPort=2049, ToPort=2049, SourceSecurityGroupId=Ref(net.cluster_sg),
            Description="NFS from cluster members")],
    ))
    fs = t.add_resource(efs.FileSystem(
        "FileSystem", Condition=new,
        # Delete with the stack (it is the cluster's scratch space: keep results elsewhere or use
        # EfsMode existing), but never lose data to an update that would replace it.
        DeletionPolicy="Delete", UpdateReplacePolicy="Retain",
        Encrypted=True, PerformanceMode=p.ref("EfsPerformanceMode"), ThroughputMode=p.ref("EfsThroughputMode"),
        FileSystemTags=cluster_tags("efs"),
    ))
    mount = t.add_resource(efs.MountTarget(
        "MountTarget", Condition=new, FileSystemId=Ref(fs), SubnetId=net.subnet_id,
        SecurityGroups=[Ref(efs_sg)]))
    t.add_resource(ec2.SecurityGroupIngress(
        "ExistingEfsNfsIngress", Condition=p.cond.existing_efs_ingress, GroupId=p.ref("EfsSecurityGroupId"),
        IpProtocol="tcp", FromPort=2049, ToPort=2049, SourceSecurityGroupId=Ref(net.cluster_sg),
        Description=Sub("NFS from cfn-chainermn cluster ${AWS::StackName}"),
    ))
    efs_id = If(new, Ref(fs), p.ref("EfsFileSystemId"))
    # Nodes boot after the policy: the master writes the private key only once the Deny guards it.
    return Storage(bucket, fs, efs_id, [(mount.title, If(new, Ref(mount), "")), (policy.title, Ref(policy))])
