"""Pruning staged agent wheels: only those no live stack names, never while a stack changes,
never a young one; each S3/CloudFormation call pinned by Stubber."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from botocore.stub import ANY
from stack_helpers import ACCOUNT, NAME, OWN, STACK_ID, STAGING, T0, event, stack

from cfn_chainermn.errors import AwsError
from cfn_chainermn.stack import wheel_gc

NOW = T0 + dt.timedelta(days=30)
OLD = NOW - dt.timedelta(hours=wheel_gc.KEEP_HOURS + 1)
YOUNG = NOW - dt.timedelta(hours=wheel_gc.KEEP_HOURS - 1)
IN_USE = "agent/1111111111111111/cfn_chainermn-0.1.0-py3-none-any.whl"
ORPHAN = "agent/2222222222222222/cfn_chainermn-0.1.0-py3-none-any.whl"
FRESH = "agent/3333333333333333/cfn_chainermn-0.1.0-py3-none-any.whl"


def _wheel_param(key: str) -> list[dict[str, str]]:
    return [{"ParameterKey": "WorkerCount", "ParameterValue": "2"},
            {"ParameterKey": wheel_gc.WHEEL_PARAMETER, "ParameterValue": f"{STAGING}/{key}"}]


def _obj(key: str, when: dt.datetime) -> dict[str, Any]:
    return {"Key": key, "LastModified": when, "Size": 12_345}


def _stacks(stubbed: Any, *stacks: dict[str, Any]) -> Any:
    cfn = stubbed("cloudformation")
    cfn.add_response("describe_stacks", {"Stacks": list(stacks)}, {})
    return cfn


def _listing(stubbed: Any, *objects: dict[str, Any]) -> Any:
    s3 = stubbed("s3")
    s3.add_response("list_objects_v2", {"Contents": list(objects), "IsTruncated": False},
                    {"Bucket": STAGING, "Prefix": "agent/", "ExpectedBucketOwner": ACCOUNT})
    return s3


def _expect_delete(s3: Any, *keys: str) -> None:
    """The one DeleteObjects call that must come: exactly these keys, in the account's bucket only."""
    s3.add_response("delete_objects", {"Deleted": [{"Key": k} for k in keys]}, {
        "Bucket": STAGING, "Delete": {"Objects": [{"Key": k} for k in keys], "Quiet": True},
        "ExpectedBucketOwner": ACCOUNT})


def _prune(stubbed: Any) -> wheel_gc.Pruned:
    return wheel_gc.prune_agent_wheels(stubbed.client("s3"), stubbed.client("cloudformation"), STAGING, ACCOUNT,
                                       now=NOW)


def test_only_old_wheels_that_no_stack_names_are_deleted(stubbed: Any) -> None:
    other = stack("UPDATE_COMPLETE", StackName="other", Parameters=_wheel_param(IN_USE))
    no_wheel = stack("CREATE_COMPLETE", StackName="indexed", Parameters=[
        {"ParameterKey": wheel_gc.WHEEL_PARAMETER, "ParameterValue": ""}])
    _stacks(stubbed, other, no_wheel)
    s3 = _listing(stubbed, _obj(IN_USE, OLD), _obj(ORPHAN, OLD), _obj(FRESH, YOUNG))
    _expect_delete(s3, ORPHAN)
    assert _prune(stubbed) == wheel_gc.Pruned(removed=1, kept=2)


def test_a_deleted_stack_no_longer_keeps_its_wheel(stubbed: Any) -> None:
    _stacks(stubbed, stack("DELETE_COMPLETE", Parameters=_wheel_param(IN_USE)))
    s3 = _listing(stubbed, _obj(IN_USE, OLD))
    _expect_delete(s3, IN_USE)
    assert _prune(stubbed) == wheel_gc.Pruned(removed=1, kept=0)


@pytest.mark.parametrize("status", ["UPDATE_IN_PROGRESS", "UPDATE_ROLLBACK_IN_PROGRESS", "CREATE_IN_PROGRESS"])
def test_nothing_is_touched_while_a_stack_changes(stubbed: Any, status: str) -> None:
    """An update may roll back to the wheel it replaced; a create may be about to name a new one."""
    _stacks(stubbed, stack("CREATE_COMPLETE", StackName="a", Parameters=_wheel_param(IN_USE)),
            stack(status, StackName="busy"))
    stubbed("s3")  # no S3 call may be made
    assert _prune(stubbed) == wheel_gc.Pruned(removed=0, kept=0, busy="busy")


def test_a_stack_waiting_for_review_does_not_block_pruning_for_ever(stubbed: Any) -> None:
    """REVIEW_IN_PROGRESS: created by a change set nobody executed; it has no nodes."""
    _stacks(stubbed, stack("REVIEW_IN_PROGRESS", StackName="never-run"))
    s3 = _listing(stubbed, _obj(ORPHAN, OLD))
    _expect_delete(s3, ORPHAN)
    assert _prune(stubbed) == wheel_gc.Pruned(removed=1, kept=0)


def test_every_page_of_stacks_and_objects_is_read(stubbed: Any) -> None:
    cfn = stubbed("cloudformation")
    cfn.add_response("describe_stacks", {"Stacks": [stack("CREATE_COMPLETE")], "NextToken": "t1"}, {})
    cfn.add_response("describe_stacks", {"Stacks": [stack("CREATE_COMPLETE", Parameters=_wheel_param(IN_USE))]},
                     {"NextToken": "t1"})
    s3 = stubbed("s3")
    s3.add_response("list_objects_v2", {"Contents": [_obj(ORPHAN, OLD)], "IsTruncated": True,
                                        "NextContinuationToken": "c1"},
                    {"Bucket": STAGING, "Prefix": "agent/", "ExpectedBucketOwner": ACCOUNT})
    s3.add_response("list_objects_v2", {"Contents": [_obj(IN_USE, OLD)], "IsTruncated": False},
                    {"Bucket": STAGING, "Prefix": "agent/", "ExpectedBucketOwner": ACCOUNT, "ContinuationToken": "c1"})
    _expect_delete(s3, ORPHAN)
    assert _prune(stubbed) == wheel_gc.Pruned(removed=1, kept=1)


def test_no_staging_bucket_means_nothing_to_prune(stubbed: Any) -> None:
    _stacks(stubbed)
    stubbed("s3").add_client_error("list_objects_v2", "NoSuchBucket", "The specified bucket does not exist")
    assert _prune(stubbed) == wheel_gc.Pruned(removed=0, kept=0)


def test_a_refused_delete_names_the_key_and_code(stubbed: Any) -> None:
    _stacks(stubbed)
    s3 = _listing(stubbed, _obj(ORPHAN, OLD))
    s3.add_response("delete_objects", {"Errors": [{"Key": ORPHAN, "Code": "AccessDenied", "Message": "Access Denied"}]},
                    {"Bucket": STAGING, "Delete": ANY, "ExpectedBucketOwner": ACCOUNT})
    with pytest.raises(AwsError, match=rf"^deleting {ORPHAN}: AccessDenied Access Denied$"):
        _prune(stubbed)


def test_stack_delete_reports_the_pruned_wheels_and_a_failed_prune_is_only_a_warning(
        stubbed: Any, run_cli: Any) -> None:
    for outcome in ("pruned", "denied"):
        cfn = stubbed("cloudformation")
        cfn.add_response("describe_stacks", {"Stacks": [stack("CREATE_COMPLETE", Tags=OWN)]}, {"StackName": NAME})
        cfn.add_response("list_stack_resources", {"StackResourceSummaries": []}, {"StackName": STACK_ID})
        cfn.add_response("describe_stack_events", {"StackEvents": [event(2, NAME, "CREATE_COMPLETE")]},
                         {"StackName": STACK_ID})
        cfn.add_response("delete_stack", {}, {"StackName": STACK_ID})
        cfn.add_response("describe_stacks", {"Stacks": [stack("DELETE_COMPLETE")]}, {"StackName": NAME})
        cfn.add_response("describe_stack_events", {"StackEvents": [
            event(4, NAME, "DELETE_COMPLETE"), event(3, NAME, "DELETE_IN_PROGRESS", "User Initiated"),
            event(2, NAME, "CREATE_COMPLETE")]}, {"StackName": STACK_ID})
        stubbed("sts").add_response("get_caller_identity", {"Account": ACCOUNT}, {})
        cfn.add_response("describe_stacks", {"Stacks": []}, {})
        s3 = stubbed("s3")
        if outcome == "pruned":
            s3.add_response("list_objects_v2", {"Contents": [_obj(ORPHAN, T0)], "IsTruncated": False},
                            {"Bucket": STAGING, "Prefix": "agent/", "ExpectedBucketOwner": ACCOUNT})
            s3.add_response("delete_objects", {}, {"Bucket": STAGING, "Delete": ANY, "ExpectedBucketOwner": ACCOUNT})
        else:
            s3.add_client_error("list_objects_v2", "AccessDenied", "Access Denied", 403)
        result = run_cli("stack", "delete", NAME, "--yes")
        assert result.code == 0, result.err
        lines = result.err.splitlines()
        assert lines[-2] == f"stack {NAME}: DELETE_COMPLETE"
        if outcome == "pruned":
            assert lines[-1] == (f"removed 1 staged agent wheel(s) that no stack uses from s3://{STAGING} "
                                 f"(0 kept: in use or staged within {wheel_gc.KEEP_HOURS} h)")
        else:
            assert lines[-1].startswith(f"warning: staged agent wheels not pruned: pruning agent wheels in s3://{STAGING}")
            assert "AccessDenied" in lines[-1]
