"""`stack delete` of a stack with idle shutdown: once the stack is gone, the ShutdownRole it retains
(template/idle.py: CloudFormation cannot delete the role it deletes with) goes too, by name from
the stack's output; a stack without the role makes no IAM call. After the master's own DeleteStack
the stack stays associated with that role, which a later delete reuses: `--role-arn` names another,
and a failure says which role CloudFormation used. Over Stubber."""

from __future__ import annotations

from typing import Any

import pytest
from stack_helpers import (
    NAME,
    OWN,
    STACK_ID,
    arrange_default_subnet,
    cluster_client,
    queue_delete,
    queue_role_removal,
    role_entry,
    stack,
)

ROLE = "demo-ShutdownRole-AbCdEf"
ROLE_ARN = f"arn:aws:iam::123456789012:role/{ROLE}"
# A stack created with the same name after the first was deleted: its own id.
NEW_STACK_ID = STACK_ID.replace("0f1e2d3c-aaaa", "9a8b7c6d-ffff")


def test_delete_removes_the_retained_shutdown_role_after_the_stack(stubbed: Any, run_cli: Any) -> None:
    queue_delete(stubbed, [{"OutputKey": "ShutdownRoleArn", "OutputValue": ROLE_ARN}])
    iam = stubbed("iam")
    iam.add_response("delete_role_policy", {}, {"RoleName": ROLE, "PolicyName": "cfn-chainermn-shutdown"})
    iam.add_response("delete_role", {}, {"RoleName": ROLE})
    result = run_cli("stack", "delete", NAME, "--yes")
    assert result.code == 0, result.err
    assert f"deleted the idle shutdown's role {ROLE}" in result.err


def test_a_role_that_cannot_be_deleted_is_a_warning_naming_it(stubbed: Any, run_cli: Any) -> None:
    queue_delete(stubbed, [{"OutputKey": "ShutdownRoleArn", "OutputValue": ROLE_ARN}])
    stubbed("iam").add_client_error("delete_role_policy", "AccessDenied", "not authorized", 403)
    result = run_cli("stack", "delete", NAME, "--yes")
    assert result.code == 0
    assert f"warning: could not delete the idle shutdown's role {ROLE}" in result.err


def test_a_stack_without_idle_shutdown_makes_no_iam_call(stubbed: Any, run_cli: Any) -> None:
    queue_delete(stubbed, [])
    stubbed("iam")  # activated with nothing queued: any call fails the test
    result = run_cli("stack", "delete", NAME, "--yes")
    assert result.code == 0 and "role" not in result.err


def test_an_already_deleted_role_is_said_so_and_the_delete_succeeds(stubbed: Any, run_cli: Any) -> None:
    queue_delete(stubbed, [{"OutputKey": "ShutdownRoleArn", "OutputValue": ROLE_ARN}])
    iam = stubbed("iam")
    iam.add_client_error("delete_role_policy", "NoSuchEntity", f"The role with name {ROLE} cannot be found.", 404)
    iam.add_client_error("delete_role", "NoSuchEntity", f"The role with name {ROLE} cannot be found.", 404)
    result = run_cli("stack", "delete", NAME, "--yes")
    assert result.code == 0, result.err
    assert result.err.splitlines()[-1] == f"the idle shutdown's role {ROLE} was already gone"


def test_delete_no_wait_says_the_role_stays_and_the_command_it_names_removes_it(stubbed: Any, run_cli: Any) -> None:
    """--no-wait returns before DELETE_COMPLETE, the first moment the retained role may go: one line
    names it and the command, by the stack's id. That command, run as printed once the stack is
    deleted and a new stack has its name (whose role has a name like the old one's), deletes the old
    role and touches nothing of the new stack: no DescribeStacks by name, no DeleteStack (none queued)."""
    queue_delete(stubbed, [{"OutputKey": "ShutdownRoleArn", "OutputValue": ROLE_ARN}], ends="")
    iam = stubbed("iam")  # nothing queued yet: an IAM call during the first delete fails the test
    first = run_cli("stack", "delete", NAME, "--no-wait", "--yes")
    assert first.code == 0, first.err
    assert first.err.splitlines()[-2:] == [
        f"follow it with: cfn-chainermn stack watch {NAME}",
        f"note: the idle shutdown's role {ROLE} stays after the stack (CloudFormation retains it); once the stack "
        f"is deleted, `cfn-chainermn stack delete {STACK_ID}` removes it (the stack's id: never a later stack of "
        "the same name)"]
    command = first.err.splitlines()[-1].split("`")[1].split()
    cfn = stubbed("cloudformation")
    cfn.add_response("describe_stacks", {"Stacks": [stack("DELETE_COMPLETE", Tags=OWN)]}, {"StackName": STACK_ID})
    iam.add_response("list_roles", {"Roles": [role_entry("demo-ShutdownRole-NewStack"), role_entry(ROLE)]})
    iam.add_response("list_role_tags", {"Tags": [{"Key": "cfn-chainermn:stack-id", "Value": NEW_STACK_ID}]},
                     {"RoleName": "demo-ShutdownRole-NewStack"})
    queue_role_removal(iam, cfn, ROLE, stack("DELETE_COMPLETE"))
    later = run_cli(*command[1:], "--yes")
    assert later.code == 0, later.err
    assert later.err.splitlines() == [f"stack {NAME} is already deleted; its idle shutdown left the role {ROLE}",
                                      f"deleted the idle shutdown's role {ROLE}"]


def test_delete_no_wait_of_a_stack_without_the_role_says_nothing_of_one(stubbed: Any, run_cli: Any) -> None:
    queue_delete(stubbed, [], ends="")
    result = run_cli("stack", "delete", NAME, "--no-wait", "--yes")
    assert result.code == 0, result.err
    assert result.err.splitlines()[-1] == f"follow it with: cfn-chainermn stack watch {NAME}"


def test_delete_help_says_where_the_role_goes_and_nothing_of_the_staging_bucket(no_aws: None, run_cli: Any) -> None:
    """Issue 12 took the agent wheel out of the staging bucket: delete touches that bucket no more (the
    Stubber tests above queue no call on it), so its help does not claim it; it says what becomes of
    the retained role instead."""
    result = run_cli("stack", "delete", "--help")
    text = " ".join(result.out.split())
    assert result.code == 0
    assert "staging" not in text and "wheel" not in text
    assert ("With --no-wait that is left to a later `stack delete STACK_ID`, the id it prints (so never a new stack "
            "of the same name); when the master already deleted its own stack, to `stack delete NAME`, which finds "
            "the role by name and tag.") in text


OTHER = "arn:aws:iam::123456789012:role/admins/cfn-delete"


def test_role_arn_is_passed_to_delete_stack(stubbed: Any, run_cli: Any) -> None:
    queue_delete(stubbed, [], role_arn=OTHER, associated=ROLE_ARN)
    result = run_cli("stack", "delete", NAME, "--role-arn", OTHER, "--yes")
    assert result.code == 0, result.err
    assert f"deleting stack {NAME} as {OTHER}" in result.err.splitlines()


@pytest.mark.parametrize(("flags", "used", "why"), [
    ([], ROLE_ARN, "the role last associated with the stack, which DeleteStack reuses"),
    (["--role-arn", OTHER], OTHER, "given with --role-arn")])
def test_a_failed_delete_names_the_role_cloudformation_used_and_the_fix(
        stubbed: Any, run_cli: Any, flags: list[str], used: str, why: str) -> None:
    queue_delete(stubbed, [], role_arn=flags[1] if flags else "", associated=ROLE_ARN, ends="DELETE_FAILED")
    result = run_cli("stack", "delete", NAME, *flags, "--yes")
    assert result.code == 3, result.err
    assert result.err.splitlines()[-1] == (
        f"error: CloudFormation deleted it as {used} ({why}); if that role may not delete what failed, or is gone, run "
        f"`cfn-chainermn stack delete {NAME} --role-arn ARN` with a role trusted by cloudformation.amazonaws.com "
        "that may")


def test_a_role_cloudformation_cannot_assume_is_one_error_with_the_next_step(stubbed: Any, run_cli: Any) -> None:
    """The associated ShutdownRole deleted by hand: DeleteStack without RoleARN is refused at once."""
    cfn = stubbed("cloudformation")
    cfn.add_response("describe_stacks", {"Stacks": [stack("DELETE_FAILED", Tags=OWN, RoleARN=ROLE_ARN)]},
                     {"StackName": NAME})
    cfn.add_response("list_stack_resources", {"StackResourceSummaries": []}, {"StackName": STACK_ID})
    cfn.add_response("describe_stack_events", {"StackEvents": []}, {"StackName": STACK_ID})
    cfn.add_client_error("delete_stack", "ValidationError", f"Role {ROLE_ARN} is invalid or cannot be assumed",
                         expected_params={"StackName": STACK_ID})
    result = run_cli("stack", "delete", NAME, "--yes")
    assert result.code == 3
    assert result.err.splitlines() == [
        f"error: stack {NAME} not deleted: DeleteStack failed: ValidationError: Role {ROLE_ARN} is invalid or "
        "cannot be assumed",
        f"error: CloudFormation deleted it as {ROLE_ARN} (the role last associated with the stack, which "
        f"DeleteStack reuses); if that role may not delete what failed, or is gone, run `cfn-chainermn stack delete "
        f"{NAME} --role-arn ARN` with a role trusted by cloudformation.amazonaws.com that may"]


@pytest.mark.parametrize("bad", ["admin", "arn:aws:iam::123456789012:user/alice", "arn:aws:iam::1234:role/x",
                                 "arn:aws:iam::123456789012:role/", f"{ROLE_ARN} "])
def test_a_role_arn_that_is_no_role_arn_exits_2_before_any_aws_call(no_aws: None, run_cli: Any, bad: str) -> None:
    result = run_cli("stack", "delete", NAME, "--role-arn", bad, "--yes")
    assert (result.code, result.out) == (2, "")
    assert result.err == (f"error: --role-arn: {bad!r} is not an IAM role ARN; give arn:aws:iam::ACCOUNT:role/NAME "
                          "(a role CloudFormation may assume that can delete the stack's resources)\n")


@pytest.mark.filterwarnings("ignore:Tried to parse .* not supported by moto:UserWarning")
def test_after_the_masters_deletion_stack_delete_finds_the_role_it_left_by_its_tag(
        emulator: Any, run_cli: Any) -> None:
    """The master's DeleteStack leaves the role and no output naming it: `stack delete NAME` finds it by
    name and its stack-id tag, and only a deleted stack of that name's (another stack's role stays).
    Afterwards the name finds nothing, while the stack's id still describes it, deleted. moto."""
    vpc, subnet = arrange_default_subnet(cluster_client("ec2"))
    cfn, iam = cluster_client("cloudformation"), cluster_client("iam")
    created = run_cli("stack", "create", "left", "--key-name", "demo-key", "--ssh-cidr", "203.0.113.7/32",
                      "--instance-type", "g5.xlarge", "--workers", "0", "--vpc-id", vpc, "--subnet-id", subnet,
                      "--efs", "none", "--idle-minutes", "30", "--yes")
    assert created.code == 0, created.err
    stack_id = cfn.describe_stacks(StackName="left")["Stacks"][0]["StackId"]
    iam.create_role(RoleName="left-other-ShutdownRole-XYZ", AssumeRolePolicyDocument="{}", Tags=[
        {"Key": "cfn-chainermn:stack-id", "Value": stack_id.replace("/left/", "/left-other/")}])
    roles = {r["RoleName"].split("-ShutdownRole-")[0]: r["RoleName"] for r in iam.list_roles()["Roles"]
             if "-ShutdownRole-" in r["RoleName"]}
    cfn.delete_stack(StackName=cfn.describe_stacks(StackName="left")["Stacks"][0]["StackId"])  # as the master does
    result = run_cli("stack", "delete", "left", "--yes")
    assert result.code == 0, result.err
    assert result.err.splitlines() == [
        f"stack left is already deleted; its idle shutdown left the role {roles['left']}",
        f"deleted the idle shutdown's role {roles['left']}"]
    assert {r["RoleName"] for r in iam.list_roles()["Roles"] if "-ShutdownRole-" in r["RoleName"]} == {
        roles["left-other"]}
    again = run_cli("stack", "delete", "left", "--yes")
    assert (again.code, again.err) == (3, "error: stack left not found; `cfn-chainermn stack list` shows yours\n")
    by_id = run_cli("stack", "delete", stack_id, "--yes")  # the name is gone; the id still describes the stack
    assert (by_id.code, by_id.err) == (0, f"stack left ({stack_id}) is already deleted; it left no role to remove\n")


def test_a_gone_stack_whose_roles_cannot_be_listed_is_still_not_found(stubbed: Any, run_cli: Any) -> None:
    stubbed("cloudformation").add_client_error("describe_stacks", "ValidationError", f"Stack with id {NAME} does not "
                                               "exist", expected_params={"StackName": NAME})
    stubbed("iam").add_client_error("list_roles", "AccessDenied", "not authorized to perform: iam:ListRoles", 403)
    result = run_cli("stack", "delete", NAME, "--yes")
    assert result.code == 3
    assert result.err.splitlines() == [
        "warning: could not look for a role idle shutdown left: ListRoles failed: AccessDenied: not authorized to "
        "perform: iam:ListRoles (the credentials in use lack this permission; check the IAM policy of the role or "
        "user)", f"error: stack {NAME} not found; `cfn-chainermn stack list` shows yours"]


def test_a_candidate_role_whose_stack_cannot_be_described_is_skipped_not_fatal(stubbed: Any, run_cli: Any) -> None:
    """IAM is global: a role tagged with another region's stack of the same name (or one deleted long ago)
    cannot be described here; the search goes on to the next candidate, which is this stack's."""
    other = STACK_ID.replace("us-east-1", "us-west-2")
    cfn, iam = stubbed("cloudformation"), stubbed("iam")
    cfn.add_client_error("describe_stacks", "ValidationError", f"Stack with id {NAME} does not exist",
                         expected_params={"StackName": NAME})
    iam.add_response("list_roles", {"Roles": [role_entry(name) for name in ("demo-ShutdownRole-West", ROLE)]})
    iam.add_response("list_role_tags", {"Tags": [{"Key": "cfn-chainermn:stack-id", "Value": other}]},
                     {"RoleName": "demo-ShutdownRole-West"})
    cfn.add_client_error("describe_stacks", "ValidationError", f"Stack with id {other} does not exist",
                         expected_params={"StackName": other})
    queue_role_removal(iam, cfn, ROLE, stack("DELETE_COMPLETE"))
    result = run_cli("stack", "delete", NAME, "--yes")
    assert result.code == 0, result.err
    assert result.err.splitlines() == [f"stack {NAME} is already deleted; its idle shutdown left the role {ROLE}",
                                       f"deleted the idle shutdown's role {ROLE}"]
