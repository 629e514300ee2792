"""The README and docs/ stay short, linked and true to the tree.

The README is what a newcomer reads first: it must stay small (the rest lives in docs/) and
keep the two commands. Every relative link must land on a file and, with `#anchor`, on a
heading there (GitHub's anchors); every repository path the pages name in backticks must exist,
so a moved module or a deleted file shows up here instead of in a reader's shell.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_LIMIT = 16 * 1024

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1\s*$", re.MULTILINE | re.DOTALL)
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
CODE = re.compile(r"`([^`]+)`")
# Paths from the repository root, and package paths as the docs write them (`stack/cfn.py`).
TOP = ("ami", "benchmarks", "cfn_chainermn", "docs", "examples", "scripts", "templates", "tests")
PACKAGE = ("ami", "catalog", "cli", "cluster", "config", "jobs", "local", "node", "stack", "template")
REPO_PATH = re.compile(rf"^(?:{'|'.join(TOP)})/[\w./*-]*$")
PACKAGE_PATH = re.compile(rf"^(?:{'|'.join(PACKAGE)})/[\w/]*\.py$")
THREAT_MODEL = ROOT / "docs" / "threat-model.md"
TEST_REF = re.compile(r"\btests/[\w/]+\.py::\w+")


def prose(text: str) -> str:
    """The page without its fenced code blocks (examples, not links)."""
    return FENCE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading anchors on its text
    text = text.replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out: set[str] = set()
    for heading in HEADING.findall(prose(page.read_text(encoding="utf-8"))):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def test_the_readme_stays_a_first_read() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    size = len(text.encode())
    assert size <= README_LIMIT, f"README.md is {size} bytes, over {README_LIMIT}: move detail to docs/"
    lines = text.splitlines()
    assert any("make demo" in line for line in lines), "README.md lost its `make demo` line"
    assert any("make test" in line for line in lines), "README.md lost its `make test` line"


def test_the_slug_is_githubs() -> None:
    assert slug("Cluster stacks (`cfn-chainermn stack ...`)") == "cluster-stacks-cfn-chainermn-stack-"
    assert slug("The AMI: `cfn-chainermn ami`") == "the-ami-cfn-chainermn-ami"
    assert slug("Host keys and who can write what") == "host-keys-and-who-can-write-what"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_lands(page: Path) -> None:
    broken: list[str] = []
    for target in LINK.findall(prose(page.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue  # https:, mailto: ...: not ours to check offline
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor} in {dest.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: broken links:\n" + "\n".join(broken)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_path_named_exists(page: Path) -> None:
    missing: list[str] = []
    for token in CODE.findall(prose(page.read_text(encoding="utf-8"))):
        token = token.rstrip(".,:;")
        if REPO_PATH.match(token):
            found = any(ROOT.glob(token.rstrip("/"))) if "*" in token else (ROOT / token).exists()
        elif PACKAGE_PATH.match(token):
            found = (ROOT / "cfn_chainermn" / token).exists() or (ROOT / token).exists()
        else:
            continue
        if not found:
            missing.append(token)
    assert not missing, f"{page.relative_to(ROOT)} names paths that are not in the repository: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_table_row_has_its_headers_cells(page: Path) -> None:
    """A bare `|` inside a cell (`local up|down`) splits it on GitHub, even inside backticks: write `\\|`."""
    bad: list[str] = []
    width = 0
    for line in prose(page.read_text(encoding="utf-8")).splitlines():
        if not line.startswith("|"):
            width = 0
            continue
        cells = len(re.split(r"(?<!\\)\|", re.sub(r"^\||(?<!\\)\|$", "", line.strip())))
        if width == 0:
            width = cells
        elif cells != width:
            bad.append(f"{cells} cells, not {width}: {line[:100]}")
    assert not bad, f"{page.relative_to(ROOT)}: table rows that do not fit their header:\n" + "\n".join(bad)


def test_no_page_cites_research_notes_that_are_not_shipped() -> None:
    """The design research lives outside this repository; the docs must stand on their own."""
    cited = [p.name for p in PAGES if re.search(r"research/|feasibility-", p.read_text(encoding="utf-8"))]
    assert not cited, f"pages citing research notes that are not in the repository: {cited}"


def missing_tests(text: str) -> list[str]:
    """The `tests/FILE.py::NAME` references in `text` whose file defines no test function NAME."""
    defined: dict[str, set[str]] = {}
    missing: list[str] = []
    for ref in TEST_REF.findall(text):
        file, _, name = ref.partition("::")
        if file not in defined:
            path = ROOT / file
            tree = ast.parse(path.read_text(encoding="utf-8")) if path.is_file() else ast.Module(body=[])
            defined[file] = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
        if name not in defined[file]:
            missing.append(ref)
    return missing


def test_every_test_the_threat_model_names_exists() -> None:
    """Each promise points at the tests that hold it; a renamed or deleted test must not leave the
    page pointing at nothing."""
    text = THREAT_MODEL.read_text(encoding="utf-8")
    assert len(TEST_REF.findall(text)) >= 40, "the threat model names (almost) no tests: is TEST_REF still right?"
    missing = missing_tests(text)
    assert not missing, "docs/threat-model.md names tests that do not exist:\n" + "\n".join(missing)


def test_a_missing_test_is_named() -> None:
    text = ("`tests/test_docs.py::test_the_slug_is_githubs`, `tests/test_docs.py::test_gone`, "
            "`tests/nowhere.py::test_x`, `tests/test_docs.py::missing_tests`")
    assert missing_tests(text) == ["tests/test_docs.py::test_gone", "tests/nowhere.py::test_x"]
