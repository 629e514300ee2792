"""checkov (its own virtualenv, offline) on every variant in ONE run, with a deliberately weakened
template in the same run to prove the checks can fail; every skip is in resource Metadata with
its reason, and every such skip is one checkov actually applied (no stale skips)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cfn_chainermn.config.model import ClusterConfig
from cfn_chainermn.template import render

ROOT = Path(__file__).resolve().parents[2]
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
NEGATIVE = "negative-weakened.json"

pytestmark = pytest.mark.checkov


def _weakened(data: dict[str, Any]) -> dict[str, Any]:
    bad = json.loads(json.dumps(data))
    lt = bad["Resources"]["WorkerLaunchTemplate"]["Properties"]["LaunchTemplateData"]
    lt["MetadataOptions"]["HttpTokens"] = "optional"  # IMDSv1 back on: CKV_AWS_79
    del bad["Resources"]["KeyBucket"]["Properties"]["PublicAccessBlockConfiguration"]  # CKV_AWS_53..56
    return bad


@pytest.fixture(scope="module")
def checkov_report(tmp_path_factory: pytest.TempPathFactory, variant_configs: dict[str, ClusterConfig],
                   default_dict: dict[str, Any]) -> dict[str, Any]:
    if not CHECKOV.exists():
        pytest.skip(f"{CHECKOV} is missing; `make install` creates the checkov virtualenv")
    folder = tmp_path_factory.mktemp("checkov")
    for name, cfg in variant_configs.items():
        (folder / f"{name}.json").write_text(render(cfg, "json"))
    (folder / "released.yaml").write_text((ROOT / "templates" / "chainermn-cluster.yaml").read_text())
    (folder / NEGATIVE).write_text(json.dumps(_weakened(default_dict)))
    proc = subprocess.run(
        [str(CHECKOV), "-d", str(folder), "--framework", "cloudformation", "--skip-download", "--compact",
         "-o", "json"], capture_output=True, text=True, timeout=180, check=False)
    assert proc.stdout.strip(), f"checkov printed nothing (rc={proc.returncode}): {proc.stderr[-2000:]}"
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def _by_file(checks: list[dict[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for c in checks:
        out.setdefault(Path(c["file_path"]).name, []).append(f"{c['check_id']} {c['resource']}")
    return out


def test_no_failed_checks_on_any_variant(checkov_report: dict[str, Any]) -> None:
    summary = checkov_report["summary"]
    assert summary["parsing_errors"] == 0
    failed = _by_file(checkov_report["results"]["failed_checks"])
    failed.pop(NEGATIVE, None)
    assert failed == {}
    passed = _by_file(checkov_report["results"]["passed_checks"])
    assert set(passed) == {"released.json", "released.yaml", "existing-vpc-new-subnet.json",
                           "existing-subnet.json", "new-network-custom.json", "efa-on-all-cards.json",
                           "efa-off.json", NEGATIVE}
    assert all(len(ids) >= 35 for ids in passed.values()), {k: len(v) for k, v in passed.items()}


def test_checks_can_fail(checkov_report: dict[str, Any]) -> None:
    failed = " ".join(_by_file(checkov_report["results"]["failed_checks"]).get(NEGATIVE, []))
    assert "CKV_AWS_79 AWS::EC2::LaunchTemplate.WorkerLaunchTemplate" in failed
    assert "CKV_AWS_53 AWS::S3::Bucket.KeyBucket" in failed


def test_every_skip_has_a_reason_and_is_used(checkov_report: dict[str, Any], default_dict: dict[str, Any]) -> None:
    declared = {
        (f"{res['Type']}.{name}", skip["id"]): skip["comment"]
        for name, res in default_dict["Resources"].items()
        for skip in res.get("Metadata", {}).get("checkov", {}).get("skip", [])
    }
    assert declared, "expected at least the documented S3 access-logging skip"
    assert all(len(reason) > 40 for reason in declared.values())
    applied = {(c["resource"], c["check_id"]) for c in checkov_report["results"]["skipped_checks"]
               if Path(c["file_path"]).name == "released.json"}
    assert applied == set(declared)
