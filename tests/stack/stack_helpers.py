"""Shapes of CloudFormation answers for Stubber tests, and small helpers."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
from botocore.response import StreamingBody
from http_reply import reply

REGION = "us-east-1"
ACCOUNT = "123456789012"
NAME = "demo"
STACK_ID = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{NAME}/0f1e2d3c-aaaa-bbbb-cccc-000000000001"
T0 = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
# The tag `stack create` puts on every stack; delete/update/scale refuse a stack without it.
OWN = [{"Key": "cfn-chainermn:version", "Value": "0.1.0"}]
# The cluster the Stubber tests of the stack commands talk about.
AMI = "ami-0123456789abcdef0"
MASTER = "i-0aaaaaaaaaaaaaaa1"
WORKER = "i-0bbbbbbbbbbbbbbb2"
BUCKET = "demo-keybucket-abc"
STAGING = f"cfn-chainermn-staging-{ACCOUNT}-us-east-1"
# An agent package pinned by hash, as --agent-source index needs it.
PINNED = f"cfn-chainermn==0.1.0 --hash=sha256:{'0a' * 32}"
FLAGS = ["--key-name", "k", "--ssh-cidr", "203.0.113.7/32", "--instance-type", "g5.xlarge", "--workers", "2",
         "--tag", "team=ml"]


def queue_template_upload(stubbed: Any, template: str, *, new_bucket: bool) -> str:
    """The staging calls of one `stack create`/`update`; returns the TemplateURL CloudFormation gets.

    Every template is staged (the agent inside it puts it over CreateStack's 51,200-byte inline
    limit), and every call on the bucket names this account as ExpectedBucketOwner: the bucket's
    name is predictable, so one made first by another account must get nothing.
    `new_bucket`: the account's first staging, which creates the bucket encrypted and private.
    """
    stubbed("sts").add_response("get_caller_identity", {"Account": ACCOUNT}, {})
    s3 = stubbed("s3")
    owned = {"Bucket": STAGING, "ExpectedBucketOwner": ACCOUNT}
    if not new_bucket:
        s3.add_response("head_bucket", {}, owned)
    else:
        s3.add_client_error("head_bucket", "404", "Not Found", 404, expected_params=owned)
        s3.add_response("create_bucket", {}, {"Bucket": STAGING})  # CreateBucket has no ExpectedBucketOwner
        s3.add_response("put_bucket_encryption", {}, {**owned, "ServerSideEncryptionConfiguration": {
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}})
        s3.add_response("put_public_access_block", {}, {**owned, "PublicAccessBlockConfiguration": {
            "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True}})
        s3.add_response("put_bucket_lifecycle_configuration", {}, {**owned, "LifecycleConfiguration": {
            "Rules": [{"ID": "templates-expire", "Status": "Enabled", "Filter": {"Prefix": "templates/"},
                       "Expiration": {"Days": 7}},
                      {"ID": "abort-incomplete-uploads", "Status": "Enabled", "Filter": {"Prefix": ""},
                       "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}]}})
    data = template.encode()
    key = f"templates/{hashlib.sha256(data).hexdigest()[:16]}/{NAME}.json"
    s3.add_response("put_object", {}, {**owned, "Key": key, "Body": data, "ServerSideEncryption": "AES256"})
    return f"https://{STAGING}.s3.{REGION}.amazonaws.com/{key}"


# Bound for the whole run and never listening: a connection to it is refused, and no other server
# can take the port meanwhile (a port picked free and closed could be anyone's by the time it is used).
_REFUSING = socket.socket()
_REFUSING.bind(("127.0.0.1", 0))


def refused_port() -> int:
    """A local port where nothing answers, for an endpoint no request may reach."""
    return int(_REFUSING.getsockname()[1])


@contextlib.contextmanager
def http_endpoint(answer: Callable[[bytes], tuple[int, str, bytes]]) -> Iterator[str]:
    """An endpoint on 127.0.0.1 whose every POST gets answer(request body) = (status, content type, body)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            status, content_type, payload = answer(self.rfile.read(int(self.headers["Content-Length"])))
            reply(self, status, payload, content_type)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()  # shutdown() waits a poll
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def body(text: str) -> StreamingBody:
    """An S3 GetObject body."""
    data = text.encode()
    return StreamingBody(io.BytesIO(data), len(data))


def stack(status: str, **extra: Any) -> dict[str, Any]:
    """A DescribeStacks entry as CloudFormation returns it."""
    return {"StackName": NAME, "StackId": STACK_ID, "CreationTime": T0, "StackStatus": status, **extra}


def role_entry(name: str) -> dict[str, Any]:
    """A ListRoles entry (the fields IAM always returns; no tags: ListRoles gives none)."""
    return {"RoleName": name, "Arn": f"arn:aws:iam::{ACCOUNT}:role/{name}", "Path": "/", "RoleId": "AROAEXAMPLE1234567",
            "CreateDate": "2026-01-01T00:00:00Z"}


def queue_role_removal(iam: Any, cfn: Any, role: str, deleted: dict[str, Any]) -> None:
    """The search's calls once ListRoles named `role`: its tag names the stack `deleted`, which
    CloudFormation describes by that id as it is (DELETE_COMPLETE); then its policy and it deleted."""
    iam.add_response("list_role_tags", {"Tags": [{"Key": "cfn-chainermn:stack-id", "Value": deleted["StackId"]}]},
                     {"RoleName": role})
    cfn.add_response("describe_stacks", {"Stacks": [deleted]}, {"StackName": deleted["StackId"]})
    iam.add_response("delete_role_policy", {}, {"RoleName": role, "PolicyName": "cfn-chainermn-shutdown"})
    iam.add_response("delete_role", {}, {"RoleName": role})


def event(n: int, logical: str, status: str, reason: str = "", *, rtype: str = "",
          physical: str = "") -> dict[str, Any]:
    """A stack event; n orders them in time (larger = newer)."""
    is_stack = logical == NAME
    return {
        "StackId": STACK_ID, "EventId": f"e-{n}", "StackName": NAME, "LogicalResourceId": logical,
        "PhysicalResourceId": STACK_ID if is_stack else physical,
        "ResourceType": "AWS::CloudFormation::Stack" if is_stack else (rtype or "AWS::EC2::Instance"),
        "Timestamp": T0 + dt.timedelta(seconds=n), "ResourceStatus": status,
        **({"ResourceStatusReason": reason} if reason else {}),
    }


def cluster_client(service: str) -> Any:
    """A plain client for arranging or inspecting emulator state (not the code under test)."""
    return boto3.session.Session(region_name=REGION).client(service)


def arrange_default_subnet(ec2: Any) -> tuple[str, str]:
    """A key pair (demo-key), and moto's default VPC with its us-east-1a subnet (moto cannot delete a
    stack's new VPC: its SubnetRouteTableAssociation makes DeleteStack fail)."""
    ec2.create_key_pair(KeyName="demo-key")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
    return vpc, next(s["SubnetId"] for s in subnets if s["AvailabilityZone"] == "us-east-1a")


def described_types(*names: str, cards: int | None = None) -> dict[str, Any]:
    """DescribeInstanceTypes' answer for table types (the fields preflight reads; shapes per the EC2 API
    reference); `cards` overrides the EFA interface count EC2 reports."""
    from cfn_chainermn.catalog.instance_types import lookup

    def info(name: str) -> dict[str, Any]:
        row = lookup(name)
        net: dict[str, Any] = {"NetworkPerformance": f"{row.network_gbps:g} Gigabit", "EfaSupported": row.efa}
        if row.efa:
            net["EfaInfo"] = {"MaximumEfaInterfaces": row.network_cards if cards is None else cards}
        return {"InstanceType": name, "VCpuInfo": {"DefaultVCpus": row.vcpus}, "NetworkInfo": net,
                "GpuInfo": {"Gpus": [{"Name": row.gpu_model, "Manufacturer": "NVIDIA", "Count": row.gpus}]}}

    return {"InstanceTypes": [info(n) for n in names]}


def queue_change_set(stubbed: Any, current: Any, wanted: Any, **described: Any) -> Any:
    """The calls of `stack update` up to its change set, for a g5.xlarge stack in us-east-1d (master and
    on-demand workers): the stack (`current`'s parameters, this tool's tag, `described`), preflight,
    the staging of `wanted`'s template and CreateChangeSet with `wanted`'s parameters. Returns the
    CloudFormation stubber, for what comes next."""
    from botocore.stub import ANY

    from cfn_chainermn.config.params import template_parameters
    from cfn_chainermn.stack.cfn import compact, stack_tags
    from cfn_chainermn.template import render

    cfn, ec2 = stubbed("cloudformation"), stubbed("ec2")
    cfn.add_response("describe_stacks", {"Stacks": [stack("CREATE_COMPLETE", Parameters=[
        {"ParameterKey": k, "ParameterValue": v} for k, v in template_parameters(current).items()],
        Tags=OWN, **described)]}, {"StackName": NAME})
    ec2.add_response("describe_key_pairs", {"KeyPairs": [{"KeyName": "k"}]}, {"KeyNames": ["k"]})
    ec2.add_response("describe_instance_type_offerings", {"InstanceTypeOfferings": [
        {"InstanceType": "g5.xlarge", "LocationType": "availability-zone", "Location": "us-east-1d"}]}, None)
    ec2.add_response("describe_instance_types", described_types("g5.xlarge"), {"InstanceTypes": ["g5.xlarge"]})
    stubbed("service-quotas").add_response("get_service_quota", {"Quota": {"Value": 256.0}}, None)
    ec2.add_response("describe_images", {"Images": [{"ImageId": AMI}]}, {"ImageIds": [AMI]})
    url = queue_template_upload(stubbed, compact(render(wanted, "json")), new_bucket=False)
    cfn.add_response("create_change_set", {"Id": "arn:cs"}, {
        "StackName": NAME, "ChangeSetName": ANY, "ChangeSetType": "UPDATE", "TemplateURL": url,
        "Capabilities": ["CAPABILITY_IAM"], "Tags": stack_tags({}),
        "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in template_parameters(wanted).items()]})
    return cfn


def queue_delete(stubbed: Any, outputs: list[dict[str, str]], *, role_arn: str = "", associated: str = "",
                 ends: str = "DELETE_COMPLETE", by: str = NAME) -> None:
    """One `stack delete`: DeleteStack (with RoleARN when `role_arn`) of a stack associated with role
    `associated` (DescribeStacks' RoleARN), ending `ends` ("" for --no-wait: nothing read after it),
    the stack asked for `by` its name (or its id)."""
    cfn, s3 = stubbed("cloudformation"), stubbed("s3")
    own = stack("DELETE_FAILED" if associated else "CREATE_COMPLETE", Tags=OWN, Outputs=outputs,
                **({"RoleARN": associated} if associated else {}))
    cfn.add_response("describe_stacks", {"Stacks": [own]}, {"StackName": by})
    cfn.add_response("list_stack_resources", {"StackResourceSummaries": [
        {"LogicalResourceId": "KeyBucket", "PhysicalResourceId": BUCKET, "ResourceType": "AWS::S3::Bucket",
         "LastUpdatedTimestamp": "2026-01-01T00:00:00Z", "ResourceStatus": "CREATE_COMPLETE"}]},
        {"StackName": STACK_ID})
    s3.add_response("list_object_versions", {}, {"Bucket": BUCKET})
    cfn.add_response("describe_stack_events", {"StackEvents": [event(2, NAME, "CREATE_COMPLETE")]},
                     {"StackName": STACK_ID})
    cfn.add_response("delete_stack", {}, {"StackName": STACK_ID, **({"RoleARN": role_arn} if role_arn else {})})
    if not ends:
        return
    if ends == "DELETE_COMPLETE":
        cfn.add_client_error("describe_stacks", "ValidationError", f"Stack with id {NAME} does not exist")
        cfn.add_response("describe_stack_events", {"StackEvents": [
            event(4, NAME, "DELETE_COMPLETE"), event(3, NAME, "DELETE_IN_PROGRESS", "User Initiated")]}, None)
        return
    cfn.add_response("describe_stacks", {"Stacks": [stack("DELETE_FAILED", Tags=OWN)]}, {"StackName": NAME})
    cfn.add_response("describe_stack_events", {"StackEvents": [
        event(5, NAME, "DELETE_FAILED", "The following resource(s) failed to delete: [FileSystem]."),
        event(4, "FileSystem", "DELETE_FAILED", "not authorized to perform: elasticfilesystem:DeleteFileSystem",
              rtype="AWS::EFS::FileSystem", physical="fs-0123"),
        event(3, NAME, "DELETE_IN_PROGRESS", "User Initiated")]}, None)
