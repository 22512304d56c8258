"""The documentation site: it builds strictly, and the code it shows runs.

Code blocks in docs/*.md are checked three ways:

* every ``python`` block must compile;
* a ``python`` block right after ``<!-- test: run -->`` is run as a script from the
  repository root (``PYTHONPATH`` set to it) and must exit 0; a ``text`` block right after
  ``<!-- test: stdout -->`` that follows it is its exact standard output. Blocks marked
  ``<!-- test: part -->`` since the page's previous runnable block are run first, in the
  same script (a long example split by prose);
* a ``python`` block right after ``<!-- test: pytest -->`` is saved as a test module in a
  scratch directory and run with pytest, and must pass.

``mkdocs build --strict`` runs when mkdocs is installed (the ``docs`` extra); without it the
build test is skipped with the reason, except under CI, where it fails.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from anyql import Limits
from tests.requirements import unavailable

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,})(?P<info>.*)$")
MARKER = re.compile(r"^<!-- test: (?P<kind>run|part|pytest|stdout) -->$")
#: A run or pytest block gets this long before it counts as hung.
BLOCK_TIMEOUT = 90


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: str
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    marker: str | None  # "run", "part", "pytest" or "stdout": the marker above the fence

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def page_blocks(path: Path) -> Iterator[Block]:
    """The fenced blocks of one Markdown page, with the test marker right above each."""
    lines = path.read_text(encoding="utf-8").splitlines()
    marker: str | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        opening = FENCE.match(line)
        if opening is None:
            found = MARKER.match(line.strip())
            if found is not None:
                marker = found["kind"]
            elif line.strip():
                marker = None
            index += 1
            continue
        fence, indent = opening["fence"], opening["indent"]
        language = opening["info"].strip().split(" ")[0].lstrip("{.")
        body: list[str] = []
        index += 1
        while index < len(lines) and lines[index].strip() != fence:
            body.append(lines[index][len(indent) :] if lines[index].startswith(indent) else "")
            index += 1
        code = textwrap.dedent("\n".join(body)) + "\n"
        yield Block(path.name, index - len(body), language, code, marker)
        marker = None
        index += 1


def all_blocks() -> list[Block]:
    return [block for page in sorted(DOCS.glob("*.md")) for block in page_blocks(page)]


BLOCKS = all_blocks()
PYTHON = [b for b in BLOCKS if b.language in ("python", "py") and "--8<--" not in b.code]
RUNNABLE = [b for b in PYTHON if b.marker == "run"]
PYTESTS = [b for b in PYTHON if b.marker == "pytest"]


def script(block: Block) -> str:
    """A runnable block's code, after the ``part`` blocks of its page that lead up to it."""
    parts: list[str] = []
    for other in PYTHON:
        if other is block:
            return "".join(parts) + block.code
        if other.page != block.page or other.marker == "run":
            parts = []
        elif other.marker == "part":
            parts.append(other.code)
    raise ValueError(f"{block.id} is not a python block")


def expected_stdout(block: Block) -> str | None:
    """The ``text`` block marked ``stdout`` that directly follows ``block``, if any."""
    following = BLOCKS[BLOCKS.index(block) + 1 :]
    if following and following[0].page == block.page and following[0].marker == "stdout":
        return following[0].code
    return None


def repo_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "NO_MKDOCS_2_WARNING": "1"}


# --- the site ------------------------------------------------------------------------


def test_mkdocs_build_is_strict_and_clean(tmp_path: Path) -> None:
    if importlib.util.find_spec("mkdocs") is None:
        unavailable('mkdocs is not installed: pip install -e ".[docs]"')
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        env=repo_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    assert (tmp_path / "index.html").is_file()
    reference = (tmp_path / "reference" / "index.html").read_text(encoding="utf-8")
    assert "A GraphQL server app" in reference  # mkdocstrings rendered the docstrings


def test_the_marked_blocks_are_found() -> None:
    pages = {(block.page, block.marker) for block in RUNNABLE + PYTESTS}
    assert {
        ("tutorial.md", "run"),
        ("tutorial.md", "pytest"),
        ("sans-io.md", "run"),
        ("subscriptions.md", "run"),
        ("testing.md", "pytest"),
    } <= pages
    for block in RUNNABLE:
        follower = expected_stdout(block)
        assert follower is None or follower.strip(), block.id


# --- the code ------------------------------------------------------------------------


@pytest.mark.parametrize("block", PYTHON, ids=lambda block: block.id)
def test_python_block_compiles(block: Block) -> None:
    compile(block.code, block.id, "exec")


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda block: block.id)
def test_runnable_block_runs(block: Block, tmp_path: Path) -> None:
    path = tmp_path / "block.py"
    path.write_text(script(block), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(path)],
        cwd=ROOT,
        env=repo_env(),
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    wanted = expected_stdout(block)
    if wanted is not None:
        assert done.stdout == wanted


@pytest.mark.parametrize("block", PYTESTS, ids=lambda block: block.id)
def test_pytest_block_passes(block: Block, tmp_path: Path) -> None:
    (tmp_path / "test_doc_block.py").write_text(block.code, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_doc_block.py"],
        cwd=tmp_path,
        env=repo_env(),
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    assert re.search(r"\b\d+ passed\b", done.stdout), done.stdout


# --- facts the prose states ----------------------------------------------------------


def limits_rows() -> dict[str, str]:
    """``name -> default cell`` of the table rows of limits.md that start with a field."""
    rows: dict[str, str] = {}
    for line in (DOCS / "limits.md").read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        found = re.fullmatch(r"`(\w+)`", cells[0]) if len(cells) >= 3 else None
        if found is not None:
            rows[found[1]] = cells[1]
    return rows


def test_limits_page_gives_every_limit_with_its_default() -> None:
    rows = limits_rows()
    for field in dataclasses.fields(Limits):
        assert field.name in rows, f"docs/limits.md has no row for Limits.{field.name}"
        assert f"`{field.default!r}`" in rows[field.name], (
            f"docs/limits.md: Limits.{field.name} defaults to {field.default!r}"
        )
    assert set(rows) <= {field.name for field in dataclasses.fields(Limits)}


def test_inlined_example_files_match_the_examples_exactly() -> None:
    """A block titled with a file's path shows that file as it is (so GitHub shows the
    code too, and the file stays the tested source of truth)."""
    shown = 0
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text(encoding="utf-8")
        for match in re.finditer(
            r'^```python title="(?P<path>[^"]+)"\n(?P<code>.*?)^```$', text, re.M | re.S
        ):
            source = ROOT / match["path"]
            assert source.is_file(), f"{page.name} shows {match['path']}, which does not exist"
            assert match["code"] == source.read_text(encoding="utf-8"), (
                f"{page.name} shows an outdated copy of {match['path']}"
            )
            shown += 1
    assert shown >= 1
    assert not any("--8<--" in page.read_text(encoding="utf-8") for page in DOCS.glob("*.md"))
