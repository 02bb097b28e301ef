"""The configured taxonomy: categories, their subcategories and per-category flags, from a YAML file."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

Priority = Literal["critical", "high", "medium", "low"]


class TaxonomyError(ValueError):
    pass


class Category(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    description: str
    default_priority: Priority = "medium"
    auto_send: bool = False
    subcategories: dict[str, str] = Field(default_factory=dict)


class Taxonomy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    version: int = 1
    categories: dict[str, Category]

    def model_post_init(self, _: object) -> None:
        seen: dict[str, str] = {}
        for category, spec in self.categories.items():
            for sub in spec.subcategories:
                if sub in seen or sub in self.categories:
                    raise TaxonomyError(f"label {sub!r} appears twice in taxonomy {self.name}")
                seen[sub] = category

    @property
    def parent_of(self) -> dict[str, str]:
        return {sub: cat for cat, spec in self.categories.items() for sub in spec.subcategories}

    def resolve(self, label: str) -> tuple[str, str | None] | None:
        """A label (a subcategory, or a category) as (category, subcategory); None if unknown."""
        if label in self.categories:
            return label, None
        parent = self.parent_of.get(label)
        return (parent, label) if parent else None

    def is_valid(self, category: str, subcategory: str | None) -> bool:
        spec = self.categories.get(category)
        return spec is not None and (subcategory is None or subcategory in spec.subcategories)

    def described(self, labels: Iterable[str]) -> list[tuple[str, str]]:
        """(description, label) for each of `labels` the taxonomy describes: a subcategory's own
        line, or a category's description for a category label."""
        out = []
        for label in sorted(set(labels)):
            resolved = self.resolve(label)
            if resolved is None:
                continue
            category, sub = resolved
            spec = self.categories[category]
            text = spec.subcategories[sub] if sub else spec.description
            if text.strip():
                out.append((text.strip(), label))
        return out

    @property
    def labels(self) -> list[str]:
        """The finest labels: every subcategory, and each category that has none."""
        return [
            label
            for cat, spec in self.categories.items()
            for label in (list(spec.subcategories) or [cat])
        ]


def load_taxonomy(path: Path) -> Taxonomy:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TaxonomyError(f"taxonomy file {path} does not exist (TAXONOMY_PATH)") from None
    except yaml.YAMLError as exc:
        raise TaxonomyError(f"{path}: not valid YAML: {exc}") from None
    try:
        return Taxonomy.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise TaxonomyError(f"{path}: {where}: {first['msg']}") from None
