"""cli/idle_view.py: `stack status` shows why the master's action did not finish (the record's
`failed`, node/idle_tick.py), under the count, until the master publishes again."""

from __future__ import annotations

from cfn_chainermn.cli.idle_view import idle_text

T = 1_767_000_000.0
LIMIT = {"IdleMinutes": "30", "MaxHours": "off", "IdleAction": "delete"}


def test_an_action_that_did_not_finish_is_shown_with_its_reason_on_a_line_of_its_own() -> None:
    failed = ("stack demo DELETE_FAILED: KeyBucket (AWS::S3::Bucket) DELETE_FAILED: The bucket you tried to delete "
              "is not empty; `cfn-chainermn stack delete demo` deletes it from your machine; the next try at "
              "2025-12-29 10:20:00Z (in 2 min; the wait doubles at each failure, up to 60 min)")
    record = {"time": T, "action": "delete", "idle_since": T - 1800, "deadline": T, "reason": "idle for 30 minutes",
              "busy": [], "acting": True, "failed": failed}
    assert idle_text(LIMIT, record, T + 60).splitlines()[1:] == [
        "         idle for 31 min; deadline passed: idle for 30 minutes; the master is acting (delete)",
        f"         not done: {failed}"]
    assert "not done" not in idle_text(LIMIT, {**record, "failed": None}, T + 60)
