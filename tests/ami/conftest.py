"""Fixtures for the AMI recipe tests: rendered profiles and a private copy of ami/."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from cfn_chainermn.ami.profiles import buildable
from cfn_chainermn.ami.render import RECIPE_DIR, render_profile


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every buildable profile rendered once per session: profile name -> output dir."""
    root = tmp_path_factory.mktemp("ami-rendered")
    out = {}
    for name in buildable(RECIPE_DIR):
        render_profile(name, root / name)
        out[name] = root / name
    return out


@pytest.fixture
def recipe_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of ami/ the CLI uses (CFN_CHAINERMN_AMI_DIR), safe to break."""
    dest = tmp_path / "ami"
    shutil.copytree(RECIPE_DIR, dest)
    monkeypatch.setenv("CFN_CHAINERMN_AMI_DIR", str(dest))
    return dest


@pytest.fixture
def edit_profile(recipe_copy: Path) -> Callable[[str, Callable[[dict], None]], None]:
    """Change one profile of the copied recipe through a function on its YAML mapping."""

    def edit(name: str, change: Callable[[dict], None]) -> None:
        path = recipe_copy / "profiles" / f"{name}.yaml"
        data = yaml.safe_load(path.read_text())
        change(data)
        path.write_text(yaml.safe_dump(data, sort_keys=False))

    return edit
