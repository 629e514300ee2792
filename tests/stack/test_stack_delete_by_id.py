"""`stack delete STACK_ID`: the stack with that id and no other (stack/stack_ids.py). A live stack is
deleted as by name; a deleted one (DescribeStacks answers for a deleted stack by its id alone) has
only the role it left removed, whatever stack has its name now. The id's region is the one asked.
A malformed id is one line, exit 2, before any AWS call. Over Stubber."""

from __future__ import annotations

from typing import Any

import pytest
from stack_helpers import NAME, OWN, STACK_ID, queue_delete, queue_role_removal, role_entry, stack

from cfn_chainermn.cli.services import Services
from cfn_chainermn.errors import ConfigError
from cfn_chainermn.stack.stack_ids import StackRef, stack_ref

ROLE = "demo-ShutdownRole-AbCdEf"
WEST_ID = STACK_ID.replace("us-east-1", "us-west-2")


def _regions_asked(services: Services) -> list[str | None]:
    """The region of every AWS connection the command makes (the stubbed one answers all the same)."""
    asked: list[str | None] = []
    connect = services.connect

    def record(profile: str | None, region: str | None, endpoint_url: str | None) -> Any:
        asked.append(region)
        return connect(profile, region, endpoint_url)

    services.connect = record
    return asked


def test_a_live_stack_given_by_its_id_is_deleted_in_the_ids_region(
        stubbed: Any, services: Services, run_cli: Any) -> None:
    asked = _regions_asked(services)
    queue_delete(stubbed, [], by=WEST_ID)
    result = run_cli("stack", "delete", WEST_ID, "--yes")
    assert result.code == 0, result.err
    assert f"deleting stack {NAME}" in result.err.splitlines() and set(asked) == {"us-west-2"}


def test_a_live_stack_by_id_is_still_refused_when_this_tool_did_not_create_it(stubbed: Any, run_cli: Any) -> None:
    stubbed("cloudformation").add_response("describe_stacks", {"Stacks": [stack("CREATE_COMPLETE")]},
                                           {"StackName": STACK_ID})
    result = run_cli("stack", "delete", STACK_ID, "--yes")
    assert result.code == 3 and f"stack {NAME} has no cfn-chainermn:version tag" in result.err


def test_a_deleted_stack_that_left_no_role_says_so_and_succeeds(stubbed: Any, run_cli: Any) -> None:
    """Another stack's role of a like name is asked for its tag, which names another id: left alone."""
    cfn, iam = stubbed("cloudformation"), stubbed("iam")
    cfn.add_response("describe_stacks", {"Stacks": [stack("DELETE_COMPLETE", Tags=OWN)]}, {"StackName": STACK_ID})
    iam.add_response("list_roles", {"Roles": [role_entry(ROLE)]})
    iam.add_response("list_role_tags", {"Tags": [{"Key": "cfn-chainermn:stack-id", "Value": WEST_ID}]},
                     {"RoleName": ROLE})
    result = run_cli("stack", "delete", STACK_ID, "--yes")
    assert (result.code, result.err) == (0, f"stack {NAME} ({STACK_ID}) is already deleted; it left no role to "
                                            "remove\n")


def test_only_the_role_of_the_stack_with_that_id_goes(stubbed: Any, run_cli: Any) -> None:
    """Two deleted stacks named demo, each with the role it left: by the first one's id, only its role
    is described and deleted; the other is asked for its tag alone (no DescribeStacks, no delete). The
    search skips a stack it cannot describe, so the stacks described are recorded, not left to the queue."""
    other_id = STACK_ID.replace("0f1e2d3c-aaaa", "9a8b7c6d-ffff")
    cfn, iam = stubbed("cloudformation"), stubbed("iam")
    described: list[str] = []
    stubbed.client("cloudformation").meta.events.register("provide-client-params.cloudformation.DescribeStacks",
                                                           lambda params, **_: described.append(params["StackName"]))
    cfn.add_response("describe_stacks", {"Stacks": [stack("DELETE_COMPLETE", Tags=OWN)]}, {"StackName": STACK_ID})
    iam.add_response("list_roles", {"Roles": [role_entry("demo-ShutdownRole-Other"), role_entry(ROLE)]})
    iam.add_response("list_role_tags", {"Tags": [{"Key": "cfn-chainermn:stack-id", "Value": other_id}]},
                     {"RoleName": "demo-ShutdownRole-Other"})
    queue_role_removal(iam, cfn, ROLE, stack("DELETE_COMPLETE"))
    result = run_cli("stack", "delete", STACK_ID, "--yes")
    assert result.code == 0, result.err
    assert result.err.splitlines() == [f"stack {NAME} is already deleted; its idle shutdown left the role {ROLE}",
                                       f"deleted the idle shutdown's role {ROLE}"]
    assert described == [STACK_ID, STACK_ID]


def test_roles_that_cannot_be_looked_for_fail_a_delete_by_id(stubbed: Any, run_cli: Any) -> None:
    """By name the stack is gone either way and this is a warning; by id the search is the whole
    command, so its failure is the command's (an AWS error, exit 1), not 'left no role'."""
    stubbed("cloudformation").add_response("describe_stacks", {"Stacks": [stack("DELETE_COMPLETE", Tags=OWN)]},
                                           {"StackName": STACK_ID})
    stubbed("iam").add_client_error("list_roles", "AccessDenied", "not authorized to perform: iam:ListRoles", 403)
    result = run_cli("stack", "delete", STACK_ID, "--yes")
    assert result.code == 1
    assert result.err.startswith("error: ListRoles failed: AccessDenied") and "no role" not in result.err


def test_an_id_cloudformation_does_not_know_is_not_found_without_a_role_search(stubbed: Any, run_cli: Any) -> None:
    stubbed("cloudformation").add_client_error("describe_stacks", "ValidationError",
                                               f"Stack with id {STACK_ID} does not exist",
                                               expected_params={"StackName": STACK_ID})
    stubbed("iam")  # activated with nothing queued: a role search fails the test
    result = run_cli("stack", "delete", STACK_ID, "--yes")
    assert (result.code, result.err) == (3, f"error: stack {STACK_ID} not found; `cfn-chainermn stack list` shows "
                                            "yours\n")


@pytest.mark.parametrize("bad", [
    f"arn:aws:cloudformation:us-east-1:123456789012:stack/{NAME}",  # no id
    f"arn:aws:cloudformation:us-east-1:1234:stack/{NAME}/0f1e2d3c",  # short account
    "arn:aws:cloudformation:us-east-1:123456789012:stack/9lives/0f1e2d3c",  # no stack's name
    f"arn:aws:cloudformation:us-east-1:123456789012:stackset/{NAME}:0f1e2d3c",
    "arn:aws:s3:::demo-keybucket-abc", f"{STACK_ID} ", f"{STACK_ID}/more"])
def test_a_malformed_stack_id_exits_2_before_any_aws_call(no_aws: None, run_cli: Any, bad: str) -> None:
    result = run_cli("stack", "delete", bad, "--yes")
    assert (result.code, result.out) == (2, "")
    assert result.err.count("\n") == 1 and "Traceback" not in result.err
    assert (f"{bad!r} is not a CloudFormation stack id; give it whole, arn:aws:cloudformation:REGION:ACCOUNT:stack/"
            "NAME/ID, as `stack delete --no-wait` printed it, or the stack's name") in result.err


def test_a_region_other_than_the_ids_exits_2_before_any_aws_call(no_aws: None, run_cli: Any) -> None:
    result = run_cli("stack", "delete", STACK_ID, "--region", "eu-west-1", "--yes")
    assert (result.code, result.err) == (2, f"error: --region: eu-west-1 is not the region of stack id {STACK_ID}; "
                                            "leave --region (and --config's region) out, or give us-east-1\n")


@pytest.mark.parametrize(("value", "ref"), [
    (NAME, StackRef(NAME)),
    (STACK_ID, StackRef(NAME, STACK_ID, "us-east-1")),
    ("arn:aws-us-gov:cloudformation:us-gov-west-1:123456789012:stack/a-b/0f1e2d3c-aaaa",
     StackRef("a-b", "arn:aws-us-gov:cloudformation:us-gov-west-1:123456789012:stack/a-b/0f1e2d3c-aaaa",
              "us-gov-west-1")),
    ("arn:aws-cn:cloudformation:cn-north-1:123456789012:stack/x/1", StackRef(
        "x", "arn:aws-cn:cloudformation:cn-north-1:123456789012:stack/x/1", "cn-north-1")),
    ("arn:aws:cloudformation:us-east-1:123456789012:stack/x", None)])
def test_stack_ref_reads_a_name_or_an_id_of_any_partition(value: str, ref: StackRef | None) -> None:
    assert stack_ref(value) == ref


def test_the_ids_region_is_the_one_asked_and_a_name_keeps_the_given_one() -> None:
    by_id = StackRef(NAME, STACK_ID, "us-east-1")
    assert (by_id.region_with(None), by_id.region_with("us-east-1")) == ("us-east-1", "us-east-1")
    assert (StackRef(NAME).region_with("eu-west-1"), StackRef(NAME).region_with(None)) == ("eu-west-1", None)
    with pytest.raises(ConfigError, match="not the region of stack id"):
        by_id.region_with("eu-west-1")
