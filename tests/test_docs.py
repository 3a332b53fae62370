"""The README and docs/ stay walkable: short README that starts with the two commands, links and
paths that resolve inside the repository, and a study-file page that names every key."""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from search.cli import build_parser
from search.spec.study_file import StudyConfig

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
MAX_README_LINES = 250

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
INLINE_CODE = re.compile(r"(`+).+?\1", re.S)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)
# a repository path written in the text: a top-level folder of the repository, then a file or folder
REPO_PATH = re.compile(r"(?<![\w./-])((?:core|search|benchmarks|studies|tests|docs)/[\w./-]*)")
# paths in the text that are examples, not files of the repository
EXAMPLE_PATHS = {"studies/x.toml"}


def _prose(text: str) -> str:
    """The text without fenced code blocks and inline code: what a reader sees as links."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = INLINE_CODE.sub(lambda m: m.group(0).strip("`"), heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for match in HEADING.finditer(FENCE.sub("", page.read_text(encoding="utf-8"))):
        slug = _slug(match.group(2))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def _links(page: Path) -> list[str]:
    return LINK.findall(_prose(page.read_text(encoding="utf-8")))


def _rel(page: Path) -> str:
    return str(page.relative_to(ROOT))


def test_readme_is_short_and_starts_with_the_two_commands() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines (at most {MAX_README_LINES})"
    head = lines[:15]
    assert any(line.startswith("make run ") for line in head), "README must start with `make run`"
    assert any(line.startswith("make test ") for line in head), "README must start with `make test`"
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    run = re.search(r"^run:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert run and "collatz-hpo launch studies/quick.toml" in run.group(1), "make run launches quick.toml"
    assert re.search(r"^test:.*\n\t.*pytest", makefile, re.M), "make test runs pytest"


def test_readme_commands_table_names_every_subcommand() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")  # argparse keeps no public accessor
    text = README.read_text(encoding="utf-8")
    for name in sub.choices:
        assert re.search(rf"^\| `collatz-hpo {name}\b", text, re.M), f"README's table lacks `{name}`"


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_links_resolve_inside_the_repository(page: Path) -> None:
    problems = []
    for target in _links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http(s):, mailto: ... : not a repository file
            assert not target.lower().startswith("file:"), f"{_rel(page)}: file URL {target}"
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if path.startswith("/") or not dest.is_relative_to(ROOT):
            problems.append(f"{target}: leaves the repository")
        elif not dest.exists():
            problems.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            problems.append(f"{target}: no heading #{anchor} in {_rel(dest)}")
    assert not problems, f"{_rel(page)}: " + "; ".join(problems)


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_paths_named_in_the_text_exist(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert "../shared" not in text, f"{_rel(page)} points outside the repository"
    missing = set()
    for match in REPO_PATH.finditer(text):
        path = match.group(1).rstrip(".")
        if path in EXAMPLE_PATHS:
            continue
        if not (ROOT / path).exists():
            missing.add(path)
    assert not missing, f"{_rel(page)} names paths that do not exist: {sorted(missing)}"


def _model(annotation: object) -> type[BaseModel] | None:
    """The pydantic model behind a field's annotation (``X | None`` included), if any."""
    args = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    return next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), None)


def _expected_keys(model: type[BaseModel], section: str, rows: dict[str, str]) -> list[tuple[str, str]]:
    """(row, key) for every key of ``model``; a sub-table has its own row when the page gives it one."""
    pairs = []
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        sub = _model(field.annotation)
        if sub is not None and f"[{section}.{name}]" in rows:
            pairs += _expected_keys(sub, f"{section}.{name}", rows)
            continue
        pairs.append((section, name))
        if sub is not None:
            pairs += [(section, key) for _, key in _expected_keys(sub, section, rows)]
    return pairs


def test_study_file_page_names_every_key() -> None:
    text = (ROOT / "docs" / "study-files.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(\[[\w.]+\])` \| (.*)\|$", text, re.M))
    missing = []
    for section, field in StudyConfig.model_fields.items():
        if field.exclude:
            continue
        assert f"[{section}]" in rows, f"docs/study-files.md has no row for [{section}]"
        for row, key in _expected_keys(_model(field.annotation), section, rows):
            if f"`{key}`" not in rows[f"[{row}]"]:
                missing.append(f"[{row}] {key}")
    assert not missing, f"docs/study-files.md does not name: {missing}"
