"""The documentation in the repository: links resolve, one glossary, nothing outside the clone."""

from __future__ import annotations

import re
import subprocess

import yaml

from lagesbild.settings import PROJECT_ROOT

# Markdown links to a relative path, e.g. [design](docs/design.md#layers).
LINK = re.compile(r"\]\((?!https?://|mailto:|#)([^)\s]+)\)")


def tracked(*patterns: str) -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", *patterns], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    return out.stdout.split()


def test_every_relative_link_in_the_markdown_resolves():
    broken = []
    for name in tracked("*.md"):
        path = PROJECT_ROOT / name
        for target in LINK.findall(path.read_text(encoding="utf-8")):
            file = target.split("#")[0]
            if file and not (path.parent / file).exists():
                broken.append(f"{name}: {target}")
    assert not broken, broken


def test_the_glossary_is_one_file_that_dbt_reads():
    project = yaml.safe_load((PROJECT_ROOT / "dbt_project/dbt_project.yml").read_text())
    assert "../docs" in project["docs-paths"]
    defining = [
        name
        for name in tracked("*.md")
        if "{% docs glossary %}" in (PROJECT_ROOT / name).read_text(encoding="utf-8")
    ]
    assert defining == ["docs/glossary.md"]
    # dbt reads every markdown file under docs/ with Jinja: braces elsewhere than the glossary
    # block's own tags would break `dbt parse`, or vanish from the docs page
    jinja = re.compile(r"\{\{|\{%|\{#")
    lines = [
        f"{name}:{number}"
        for name in tracked("docs/*.md")  # git matches the * across folders too
        for number, line in enumerate((PROJECT_ROOT / name).read_text("utf-8").splitlines(), 1)
        if jinja.search(line) and "docs glossary" not in line and "enddocs" not in line
    ]
    assert lines == [], "no Jinja braces in docs/ (dbt parses it): " + ", ".join(lines)


def test_no_file_refers_to_documents_outside_the_repository():
    outside = re.compile(r"\.\./shared|\b(DESIGN|sources|stack|style|domain)\.md\b")
    offenders = [
        name
        for name in tracked()
        if name != "uv.lock"
        and (PROJECT_ROOT / name).is_file()
        and outside.search((PROJECT_ROOT / name).read_text(encoding="utf-8", errors="replace"))
    ]
    assert offenders == [], offenders
