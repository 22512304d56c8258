"""The design pages hold what the repository refers to.

``docs/bad-inputs.md`` is the catalogue of hostile inputs and faults. Its row ids (a capital
letter and two digits) name tests (``test_P28_...``) and are cited in docstrings, comments
and pages; every such use must name a row, and every row must have a test named after it.
``docs/design.md`` is the design. Nothing in the repository may point at design notes kept
outside it.

Row ids are recognised only where they are used as row ids, so that hex digits, fragment
names or percentiles never count: in test names; after "row"/"rows"; in a list of ids that
is parenthesised, closes a parenthesis, heads a ``# ---`` comment, is bold in Markdown or
precedes a parenthesised explanation ("F02 (a source ...)"); and in links to
``bad-inputs.md#<id>``. Outside test names and "row(s)", only letters that start a section
of the catalogue count.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CATALOGUE = ROOT / "docs" / "bad-inputs.md"
#: Where row ids are used.
ID_USERS = ("src", "tests", "docs", "benchmarks", "examples", "README.md")
#: What must not refer to files outside the repository.
REPOSITORY = (*ID_USERS, "pyproject.toml", "mkdocs.yml", "dev", ".ci")
#: Directories never scanned: installed packages and tool caches.
SKIPPED = {"node_modules", "__pycache__", ".hypothesis", ".pytest_cache", ".mypy_cache"}

#: A catalogue row: ``| <a id="p28"></a>P28 | ...``.
ROW = re.compile(r'^\|\s*<a id="(?P<anchor>[a-z][0-9]{2})"></a>(?P<id>[A-Z][0-9]{2})\s*\|', re.M)
ROW_ID = re.compile(r"[A-Z][0-9]{2}(?![0-9A-Za-z])")
TEST_DEFINITION = re.compile(r"^\s*(?:async\s+)?def\s+test_(?P<id>[A-Z][0-9]{2})_", re.M)

#: References to the first design notes, which live outside the repository. The strings
#: are split so that this file does not match them itself.
OUTSIDE = re.compile(
    "|".join(
        (
            re.escape("../" + "shared"),
            re.escape("shared/" + "DESIGN"),
            r"\b" + "DESIGN" + r"(?:\.md\b|\s+section\b|\s*§)",
            r"\b" + "BAD" + "_INPUTS",
        )
    )
)


@dataclass(frozen=True)
class Use:
    """One place a row id is used."""

    id: str
    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.id}"


def rows() -> dict[str, str]:
    """Row id -> its anchor, for every row of the catalogue."""
    found: dict[str, str] = {}
    for match in ROW.finditer(CATALOGUE.read_text(encoding="utf-8")):
        assert match["id"] not in found, f"row {match['id']} appears twice"
        found[match["id"]] = match["anchor"]
    return found


def text_files(roots: tuple[str, ...]) -> Iterator[tuple[str, str]]:
    """(path relative to the repository, text) of every text file under ``roots``."""
    for name in roots:
        top = ROOT / name
        paths = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for path in paths:
            relative = path.relative_to(ROOT)
            if SKIPPED & set(relative.parts):
                continue
            data = path.read_bytes()
            if b"\0" in data[:8192]:
                continue  # binary: images, compiled files
            yield relative.as_posix(), data.decode("utf-8", errors="replace")


def reference_patterns(letters: str) -> list[re.Pattern[str]]:
    """The forms in which the repository uses row ids (see the module docstring)."""
    any_id = r"[A-Z][0-9]{2}(?![0-9A-Za-z])"
    section_id = rf"[{letters}][0-9]{{2}}(?![0-9A-Za-z])"
    separator = r"\s*(?:,|/|-|\u2013|\band\b|\bor\b|\bto\b)\s*"
    any_list = rf"{any_id}(?:{separator}{any_id})*"
    section_list = rf"{section_id}(?:{separator}{section_id})*"
    free = r"(?<![\w.])"  # not part of a longer word, nor a spread like ``...F19``
    return [
        re.compile(rf"(?<![A-Za-z0-9])test_(?P<ids>{any_id})_"),
        re.compile(rf"\b[Rr]ows?\s+(?P<ids>{any_list})"),
        re.compile(rf"\((?P<ids>{section_list})\s*[,;:)]"),
        re.compile(rf"{free}(?P<ids>{section_list})\)"),
        re.compile(rf"#\s*-{{3}}\s*(?P<ids>{section_list})"),
        re.compile(rf"\*\*(?P<ids>{section_list})\*\*"),
        re.compile(rf"{free}(?P<ids>{section_list}) \("),
        re.compile(r"bad-inputs\.md#(?P<anchor>[a-z][0-9]{2})\b"),
    ]


#: A link from the catalogue to one of its own rows: ``[F09](#f09)``.
SELF_LINK = re.compile(r"\]\(#(?P<anchor>[a-z][0-9]{2})\)")


def ids_of(match: re.Match[str]) -> list[str]:
    """The row ids one reference names: a list or range of ids, or a link's anchor."""
    groups = match.groupdict()
    if groups.get("anchor"):
        return [groups["anchor"].upper()]
    return ROW_ID.findall(groups["ids"])


def id_uses(letters: str) -> list[Use]:
    """Every use of a row id in the repository, in the recognised forms."""
    patterns = reference_patterns(letters)
    uses: list[Use] = []
    for path, text in text_files(ID_USERS):
        here = [*patterns, SELF_LINK] if ROOT / path == CATALOGUE else patterns
        for pattern in here:
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                uses.extend(Use(id, path, line) for id in ids_of(match))
    return uses


def test_catalogue_rows_are_well_formed() -> None:
    catalogue = rows()
    assert len(catalogue) >= 90, "the catalogue lost its rows, or its row format changed"
    for id, anchor in catalogue.items():
        assert anchor == id.lower(), f"row {id} has the anchor #{anchor}"


def test_every_row_id_used_in_the_repository_is_a_catalogue_row() -> None:
    catalogue = rows()
    letters = "".join(sorted({id[0] for id in catalogue}))
    uses = id_uses(letters)
    assert any(use.path.startswith("src/") for use in uses), "no use found: patterns broken?"
    missing = [str(use) for use in uses if use.id not in catalogue]
    assert not missing, "not rows of docs/bad-inputs.md:\n" + "\n".join(missing)


def test_the_reference_forms_recognise_ids_and_ignore_look_alikes() -> None:
    patterns = reference_patterns("FGHLPRW")

    def found(text: str) -> list[str]:
        matches = (match for pattern in patterns for match in pattern.finditer(text))
        return sorted({id for match in matches for id in ids_of(match)})

    assert found("async def test_P28_complete_runs_finally() -> None:") == ["P28"]
    assert found("(rows H21, G10) and row W04 with compression") == ["G10", "H21", "W04"]
    assert found("driven with messages only (rows P01-P33)") == ["P01", "P33"]
    assert found("exact (P34); order (P36). may still run: P02) or") == ["P02", "P34", "P36"]
    assert found("# --- H12, H20, W04, F08 ---") == ["F08", "H12", "H20", "W04"]
    assert found("F02 (a source), P38/P39 (keep-alive)") == ["F02", "P38", "P39"]
    assert found("**H21** (CORS) see bad-inputs.md#g10") == ["G10", "H21"]
    look_alikes = "{ me { ...F19 } } color #A55 X12 (Z99) p99 (P99 latency) H264 test_p28_x"
    assert found(look_alikes) == []


def test_every_catalogue_row_has_a_test_named_after_it() -> None:
    tested = {
        match["id"]
        for _path, text in text_files(("tests",))
        for match in TEST_DEFINITION.finditer(text)
    }
    untested = sorted(set(rows()) - tested)
    assert not untested, f"rows without a test_<id>_... test: {untested}"


def test_nothing_refers_to_design_notes_outside_the_repository() -> None:
    offending = [
        f"{path}:{text.count(chr(10), 0, match.start()) + 1}: {match[0]}"
        for path, text in text_files(REPOSITORY)
        for match in OUTSIDE.finditer(text)
    ]
    assert not offending, "refer to docs/design.md or docs/bad-inputs.md instead:\n" + "\n".join(
        offending
    )


def test_the_outside_reference_pattern_matches_what_it_should() -> None:
    for text in (
        "see " + "../" + "shared/" + "DESIGN" + ".md",
        "DESIGN" + " section 5",
        "BAD" + "_INPUTS rows P01-P33",
        "rows of " + "BAD" + "_INPUTS.md",
    ):
        assert OUTSIDE.search(text), text
    for text in ("docs/design.md", "docs/bad-inputs.md", "the design (section 5)", "DESIGNER"):
        assert not OUTSIDE.search(text), text
