"""`stack status` shows the idle count the master publishes (cluster-key/idle.json): idle since
when and the deadline, or what keeps the cluster busy; a stack without a limit costs no extra
call. Over Stubber, every call pinned."""

from __future__ import annotations

import json
from typing import Any

from stack_helpers import BUCKET, NAME, stack

from cfn_chainermn.cli.idle_view import idle_text

T = 1_767_000_000.0
LIMIT = {"IdleMinutes": "30", "MaxHours": "off", "IdleAction": "delete"}


def _queue(stubbed: Any, parameters: dict[str, str], record: dict[str, Any] | None) -> None:
    stubbed("cloudformation").add_response("describe_stacks", {"Stacks": [stack(
        "CREATE_COMPLETE", Outputs=[{"OutputKey": "KeyBucketName", "OutputValue": BUCKET}],
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()])]}, {"StackName": NAME})
    stubbed("ec2").add_response("describe_instances", {"Reservations": []}, None)
    stubbed("s3").add_response("list_objects_v2", {}, {"Bucket": BUCKET, "Prefix": "nodes/"})
    if record is None:
        stubbed("s3").add_client_error("get_object", "NoSuchKey", "The specified key does not exist.", 404,
                                       expected_params={"Bucket": BUCKET, "Key": "cluster-key/idle.json"})
    elif parameters.get("IdleMinutes", "off") != "off" or parameters.get("MaxHours", "off") != "off":
        body = _streaming(json.dumps(record).encode())
        stubbed("s3").add_response("get_object", {"Body": body}, {"Bucket": BUCKET, "Key": "cluster-key/idle.json"})


def _streaming(data: bytes) -> Any:
    import io

    from botocore.response import StreamingBody

    return StreamingBody(io.BytesIO(data), len(data))


def test_status_json_carries_the_masters_idle_count(stubbed: Any, run_cli: Any) -> None:
    record = {"time": T, "idle_minutes": 30, "max_hours": None, "action": "delete", "idle_since": T - 600,
              "deadline": T + 1200, "reason": "idle for 30 minutes", "busy": []}
    _queue(stubbed, LIMIT, record)
    result = run_cli("stack", "status", NAME, "--output", "json")
    assert result.code == 0 and result.err == ""
    assert json.loads(result.out)["idle"] == record


def test_status_text_says_not_published_yet_and_a_stack_without_limits_reads_nothing(
        stubbed: Any, run_cli: Any) -> None:
    _queue(stubbed, LIMIT, None)
    result = run_cli("stack", "status", NAME)
    assert "idle     delete after 30 idle min; the master has not published its count yet" in result.out
    _queue(stubbed, {"IdleMinutes": "off", "MaxHours": "off"}, {})  # no get_object queued: none may be made
    result = run_cli("stack", "status", NAME)
    assert result.code == 0 and "idle " not in result.out


def test_idle_text_idle_busy_stale_and_passed() -> None:
    record = {"time": T, "action": "delete", "idle_since": T - 600, "deadline": T + 1200,
              "reason": "idle for 30 minutes", "busy": []}
    assert idle_text(LIMIT, record, T + 60) == (
        "idle     delete after 30 idle min; as of 2025-12-29 09:20:00Z\n"
        "         idle for 11 min; deadline 2025-12-29 09:40:00Z (in 19 min: idle for 30 minutes)")
    busy = {**record, "idle_since": None, "deadline": T + 7200, "reason": "8 hours since the stack was created",
            "busy": ["job 20260102-a (running)", "chainer@pts/0"]}
    both = {**LIMIT, "MaxHours": "8"}
    assert idle_text(both, busy, T + 700).splitlines() == [
        "idle     delete after 30 idle min or at 8 h; as of 2025-12-29 09:20:00Z (stale: is the master running?)",
        "         busy: job 20260102-a (running), chainer@pts/0; deadline 2025-12-29 11:20:00Z "
        "(in 108 min: 8 hours since the stack was created)"]
    acting = {**record, "deadline": T, "acting": True}
    assert idle_text(LIMIT, acting, T + 5).endswith(
        "idle for 10 min; deadline passed: idle for 30 minutes; the master is acting (delete)")
    assert idle_text({"IdleMinutes": "off"}, record, T) == ""
