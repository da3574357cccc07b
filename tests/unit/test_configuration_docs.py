"""docs/configuration.md documents every setting of lagesbild/settings.py."""

from __future__ import annotations

import re
import typing

from pydantic import BaseModel

from lagesbild.settings import PROJECT_ROOT, Settings

DOC = PROJECT_ROOT / "docs" / "configuration.md"


def _nested_model(annotation) -> type[BaseModel] | None:
    for candidate in typing.get_args(annotation) or (annotation,):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def setting_names(model: type[BaseModel] = Settings, prefix: str = "") -> list[str]:
    """Dotted names of every leaf setting, e.g. `suppression.min_persons`."""
    names = []
    for name, field in model.model_fields.items():
        nested = _nested_model(field.annotation)
        if nested is None:
            names.append(prefix + name)
        else:
            names += setting_names(nested, f"{prefix}{name}.")
    return names


def documented_settings() -> set[str]:
    """`section.setting` for every table row of the page (no prefix under `## Top level`)."""
    documented, section = set(), ""
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if heading := re.match(r"^## (.+)$", line):
            section = "" if heading.group(1) == "Top level" else heading.group(1)
        elif row := re.match(r"^\| `([a-z0-9_]+)` \| `(LAGESBILD_[A-Z0-9_]+)` \|", line):
            name, variable = row.groups()
            dotted = f"{section}.{name}" if section else name
            assert variable == "LAGESBILD_" + dotted.upper().replace(".", "__"), line
            documented.add(dotted)
    return documented


def test_every_setting_is_documented_with_its_environment_variable():
    missing = sorted(set(setting_names()) - documented_settings())
    assert not missing, f"add these settings to docs/configuration.md: {missing}"


def test_no_setting_is_documented_that_does_not_exist():
    stale = sorted(documented_settings() - set(setting_names()))
    assert not stale, f"docs/configuration.md documents settings that are gone: {stale}"
