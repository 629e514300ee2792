"""CloudFormation calls for one cluster stack: create, change sets, delete, describe, outputs.

Everything here takes a client and returns data or raises the package's errors; the flows that
ask, wait and report live in operations.py (and watch.py, follow.py), printing in cli/. Updates
go through change sets so the user sees what will change before anything does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from cfn_chainermn import __version__
from cfn_chainermn.aws import aws_error, botocore_errors, delete_objects, error_code, mapped
from cfn_chainermn.errors import StackError

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_cloudformation.literals import CapabilityType, OnFailureType
    from mypy_boto3_cloudformation.type_defs import ParameterTypeDef, TagTypeDef
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef


# Tag on every stack this tool creates; `stack list` shows only stacks that carry it, and
# delete/update/scale refuse a stack without it (a mistyped name must not touch others' stacks).
TOOL_TAG = "cfn-chainermn:version"
# The template's key bucket: the one resource `stack delete` empties (cfn_chainermn/template/storage.py).
KEY_BUCKET_RESOURCE = "KeyBucket"
# CloudFormation's limit for an inline TemplateBody; larger templates go through S3.
TEMPLATE_BODY_LIMIT = 51_200
CAPABILITIES: list[CapabilityType] = ["CAPABILITY_IAM"]
ON_FAILURE: dict[str, OnFailureType] = {"rollback": "ROLLBACK", "delete": "DELETE", "keep": "DO_NOTHING"}


class StackNotFound(StackError):
    """The named stack does not exist (or was deleted)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"stack {name} not found; `cfn-chainermn stack list` shows yours")


def simplify(status: str) -> str:
    """CloudFormation's 23 statuses reduced to what a user acts on.

    ROLLBACK_COMPLETE is "failed" (the create failed; only delete is left) while
    UPDATE_ROLLBACK_COMPLETE is "rolled-back" (the update failed but the stack still works).
    """
    if status.endswith("_IN_PROGRESS"):
        return "in-progress"
    if status == "DELETE_COMPLETE":
        return "deleted"
    if status in ("UPDATE_ROLLBACK_COMPLETE", "IMPORT_ROLLBACK_COMPLETE"):
        return "rolled-back"
    if status.endswith("_COMPLETE") and "ROLLBACK" not in status:
        return "complete"
    return "failed"


def is_not_found(exc: BaseException) -> bool:
    """CloudFormation reports a missing stack as ValidationError "... does not exist"."""
    return error_code(exc) == "ValidationError" and "does not exist" in str(exc)


def describe(cfn: CloudFormationClient, name: str) -> dict[str, Any]:
    """The stack's description; StackNotFound when there is none."""
    from botocore.exceptions import ClientError

    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        if is_not_found(exc):
            raise StackNotFound(name) from None
        raise aws_error(exc, f"reading stack {name}") from exc
    if not stacks:
        raise StackNotFound(name)
    return cast("dict[str, Any]", stacks[0])


def require_tool_stack(stack: Mapping[str, Any], name: str, action: str) -> None:
    """Refuse to `action` a stack this tool did not create (it lacks TOOL_TAG)."""
    if TOOL_TAG not in tags_of(stack):
        raise StackError(f"stack {name} has no {TOOL_TAG} tag, so cfn-chainermn did not create it; refusing to "
                         f"{action} it (check the name; `cfn-chainermn stack list` shows yours)")


def describe_own(cfn: CloudFormationClient, name: str, action: str) -> dict[str, Any]:
    """The stack's description, when it is one of this tool's clusters (see require_tool_stack)."""
    stack = describe(cfn, name)
    require_tool_stack(stack, name, action)
    return stack


# States a stack cannot be updated from: only deleting it frees the name (CloudFormation refuses updates).
UNUPDATABLE = ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "CREATE_FAILED", "DELETE_FAILED", "UPDATE_ROLLBACK_FAILED")


def ensure_absent(cfn: CloudFormationClient, name: str) -> None:
    """Before `stack create` stages or checks anything: the name is free (a deleted stack's is).

    The refusal says what works from the stack's state: update a healthy stack, delete a failed
    one (CloudFormation refuses to update it), follow one that is busy.
    """
    try:
        stack = describe(cfn, name)
    except StackNotFound:
        return
    status = str(stack.get("StackStatus", "?"))
    if status in UNUPDATABLE:
        raise StackError(f"stack {name} already exists ({status}) and cannot be updated; `cfn-chainermn stack "
                         f"delete {name}` removes it, then create it again, or pick another name")
    if status.endswith("_IN_PROGRESS"):
        raise StackError(f"stack {name} already exists ({status}); `cfn-chainermn stack watch {name}` follows it "
                         "until it settles, or pick another name")
    raise StackError(f"stack {name} already exists ({status}); "
                     f"`cfn-chainermn stack update {name}` changes it, or pick another name")


def outputs_of(stack: Mapping[str, Any]) -> dict[str, str]:
    return {o["OutputKey"]: str(o.get("OutputValue", "")) for o in stack.get("Outputs", [])}


def parameters_of(stack: Mapping[str, Any]) -> dict[str, str]:
    return {p["ParameterKey"]: str(p.get("ParameterValue", "")) for p in stack.get("Parameters", [])}


def tags_of(stack: Mapping[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in stack.get("Tags", [])}


def outputs(cfn: CloudFormationClient, name: str) -> dict[str, str]:
    """The stack's outputs by name (the contract other areas use to find a cluster)."""
    with mapped(f"reading stack {name}"):
        return outputs_of(describe(cfn, name))


def list_stacks(cfn: CloudFormationClient) -> list[dict[str, Any]]:
    """This tool's live stacks (those tagged TOOL_TAG), oldest first."""
    found: list[dict[str, Any]] = []
    with mapped("listing stacks"):
        for page in cfn.get_paginator("describe_stacks").paginate():
            found.extend(cast("dict[str, Any]", s) for s in page["Stacks"] if TOOL_TAG in tags_of(s))
    return sorted(found, key=lambda s: s["CreationTime"])


def stack_tags(extra: Mapping[str, str]) -> list[TagTypeDef]:
    """The tool's marker tag plus the config's tags (CloudFormation copies them to resources)."""
    tags = {TOOL_TAG: __version__, **dict(extra)}
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


def compact(template_json: str) -> str:
    """The template with insignificant whitespace removed (it counts toward the inline limit)."""
    return json.dumps(json.loads(template_json), separators=(",", ":"), sort_keys=False)


def template_source(body: str, upload: Callable[[str], str]) -> dict[str, str]:
    """TemplateBody when it fits inline, else TemplateURL of the body uploaded by `upload`."""
    if len(body.encode("utf-8")) < TEMPLATE_BODY_LIMIT:
        return {"TemplateBody": body}
    return {"TemplateURL": upload(body)}


def _parameters(values: Mapping[str, str | None]) -> list[ParameterTypeDef]:
    """Parameter list; a value of None keeps the stack's previous value."""
    return [
        {"ParameterKey": k, "UsePreviousValue": True} if v is None else {"ParameterKey": k, "ParameterValue": v}
        for k, v in values.items()
    ]


def create(cfn: CloudFormationClient, name: str, source: Mapping[str, str], params: Mapping[str, str],
           tags: list[TagTypeDef], *, on_failure: str = "rollback") -> str:
    """Start creating the stack; returns its StackId (events and waiting are watch.py's)."""
    from botocore.exceptions import ClientError

    try:
        request: dict[str, Any] = {**source, "Parameters": _parameters(params), "Capabilities": CAPABILITIES,
                                   "OnFailure": ON_FAILURE[on_failure], "Tags": tags}
        response = cfn.create_stack(StackName=name, **request)
    except ClientError as exc:
        if error_code(exc) == "AlreadyExistsException":
            raise StackError(
                f"stack {name} already exists; `cfn-chainermn stack update {name}` changes it, "
                f"or pick another name") from None
        raise aws_error(exc, f"creating stack {name}") from exc
    return str(response["StackId"])


@dataclass
class ChangeSet:
    """A created change set and what it would do, one line per resource."""

    stack: str
    name: str
    arn: str = ""
    changes: list[str] = field(default_factory=list)


def _change_line(change: Mapping[str, Any]) -> str:
    rc = change.get("ResourceChange", {})
    replace = rc.get("Replacement", "")
    note = " (replaces it)" if replace == "True" else " (may replace it)" if replace == "Conditional" else ""
    return f"{rc.get('Action', '?'):<7} {rc.get('LogicalResourceId', '?')} {rc.get('ResourceType', '')}{note}"


def create_change_set(cfn: CloudFormationClient, name: str, source: Mapping[str, str] | None,
                      params: Mapping[str, str | None], tags: list[TagTypeDef] | None = None,
                      *, delay: int = 5) -> ChangeSet | None:
    """Create a change set and wait until it is ready; None (change set removed) when nothing changes.

    `source` None reuses the stack's current template (scaling changes only parameters).
    """
    from botocore.exceptions import WaiterError

    cs_name = f"cfn-chainermn-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    request: dict[str, Any] = dict(source) if source is not None else {"UsePreviousTemplate": True}
    request.update(Parameters=_parameters(params), Capabilities=CAPABILITIES)
    if tags is not None:
        request["Tags"] = tags
    with mapped(f"creating a change set for stack {name}"):
        arn = cfn.create_change_set(StackName=name, ChangeSetName=cs_name, ChangeSetType="UPDATE", **request)["Id"]
    change_set = ChangeSet(stack=name, name=cs_name, arn=str(arn))
    try:
        cfn.get_waiter("change_set_create_complete").wait(
            ChangeSetName=cs_name, StackName=name, WaiterConfig={"Delay": delay, "MaxAttempts": 120})
    except WaiterError as exc:
        reason = str((exc.last_response or {}).get("StatusReason", "")) or str(exc)
        if "didn't contain changes" in reason or "No updates are to be performed" in reason:
            discard(cfn, change_set)
            return None
        discard(cfn, change_set)
        raise StackError(f"change set for stack {name} failed: {reason}") from None
    with mapped(f"reading change set {cs_name}"):
        for page in cfn.get_paginator("describe_change_set").paginate(ChangeSetName=cs_name, StackName=name):
            change_set.changes.extend(_change_line(c) for c in page.get("Changes", []))
    return change_set


def execute_change_set(cfn: CloudFormationClient, change_set: ChangeSet) -> None:
    with mapped(f"executing change set {change_set.name}"):
        cfn.execute_change_set(ChangeSetName=change_set.name, StackName=change_set.stack)


def discard(cfn: CloudFormationClient, change_set: ChangeSet) -> None:
    with mapped(f"deleting change set {change_set.name}"):
        cfn.delete_change_set(ChangeSetName=change_set.name, StackName=change_set.stack)


def key_bucket_of(cfn: CloudFormationClient, stack_id: str) -> str | None:
    """Physical name of the stack's key bucket (logical id KEY_BUCKET_RESOURCE), None if it has none.

    Only this resource: any other bucket in the stack is not ours to empty.
    """
    with mapped(f"listing the resources of stack {stack_id}"):
        for page in cfn.get_paginator("list_stack_resources").paginate(StackName=stack_id):
            for r in page["StackResourceSummaries"]:
                if (r.get("LogicalResourceId") == KEY_BUCKET_RESOURCE and r.get("ResourceType") == "AWS::S3::Bucket"
                        and r.get("PhysicalResourceId") and r.get("ResourceStatus") != "DELETE_COMPLETE"):
                    return str(r["PhysicalResourceId"])
    return None


def empty_bucket(s3: S3Client, bucket: str) -> int:
    """Delete every object version and delete marker, so CloudFormation can delete the bucket."""
    return empty_if_there(s3, bucket) or 0


def empty_if_there(s3: S3Client, bucket: str) -> int | None:
    """empty_bucket's work: the versions removed, or None when the bucket is gone (NoSuchBucket). Any
    botocore failure, an answer or none (BotoCoreError: no connection, a timeout), is an AwsError
    through aws.py's one path, so callers catch the package's errors alone."""
    removed = 0
    try:
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            keys: list[ObjectIdentifierTypeDef] = [
                {"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]]
            refused = delete_objects(s3, bucket, keys)
            if refused:
                raise StackError(f"could not empty bucket {bucket}: {refused}")
            removed += len(keys)
    except botocore_errors() as exc:
        if error_code(exc) == "NoSuchBucket":
            return None
        raise aws_error(exc, f"emptying bucket {bucket}") from exc
    return removed

