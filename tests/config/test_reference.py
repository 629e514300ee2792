"""docs/configuration.md is the settings table's reference, generated: it cannot fall behind."""

from __future__ import annotations

from pathlib import Path

from cfn_chainermn.config import reference
from cfn_chainermn.config.settings import settings

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "configuration.md"


def test_the_committed_reference_is_the_generated_one() -> None:
    assert PAGE.read_text(encoding="utf-8") == reference.render(), (
        f"docs/configuration.md is stale: run `.venv/bin/{reference.COMMAND}` (or `make golden`) and commit it")


def test_every_setting_has_a_row_with_its_flag_and_parameter() -> None:
    page = reference.render()
    for e in settings():
        (row,) = [line for line in page.splitlines() if line.startswith(f"| `{e.path}` |")]
        if e.setting.flag is not None and not e.setting.doc_flag:
            assert f"`{e.setting.flag.decl.split('/')[0]}" in row, row
        if e.setting.param is not None:
            assert f"| `{e.setting.param.name}` |" in row, row


def test_the_example_shows_what_the_cli_says() -> None:
    page = reference.render()
    assert "$ cfn-chainermn template --efs fs-zz --vpc-cidr 10.0.0.0/33" in page
    assert "error: efs.file_system_id: 'fs-zz' is not a valid id; expected the form fs-0123456789abcdef0" in page
