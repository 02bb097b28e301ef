"""Prompt templates as files: `<name>.md`, a `version:` header, then the text with {{field}} slots.

`{{field}}` rather than str.format, because customer text and JSON are full of `{}`.
Rendering fails on a missing or an unknown field, so a template and its caller cannot drift apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

PROMPTS_DIR = Path(__file__).parent
_SLOT = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")
_HEADER = re.compile(r"\A---\n(.*?)\n---\n", re.S)


class PromptError(ValueError):
    pass


@dataclass(frozen=True)
class Prompt:
    name: str
    version: str
    template: str

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(_SLOT.findall(self.template))

    @property
    def ref(self) -> str:
        """What is stored with every result: which prompt, which version."""
        return f"{self.name}@{self.version}"

    def render(self, **values: str) -> str:
        missing = self.fields - values.keys()
        unknown = values.keys() - self.fields
        if missing or unknown:
            raise PromptError(
                f"prompt {self.name}: missing {sorted(missing)}, unknown {sorted(unknown)}"
            )
        # One pass, so a value that happens to contain {{x}} is never expanded again.
        return _SLOT.sub(lambda m: values[m[1]], self.template)


def quote_data(text: str) -> str:
    """Text from outside (customer, knowledge base) for a prompt, unable to close the tags it sits in."""
    return text.replace("<", "‹").replace(">", "›")


def load(name: str, directory: Path = PROMPTS_DIR) -> Prompt:
    path = directory / f"{name}.md"
    if not path.is_file():
        raise PromptError(f"no prompt file {path}")
    text = path.read_text(encoding="utf-8")
    header = _HEADER.match(text)
    if header is None:
        raise PromptError(f"{path}: starts with a --- header holding `version: ...`")
    meta = dict(
        (key.strip(), value.strip())
        for key, _, value in (line.partition(":") for line in header[1].splitlines())
        if key.strip()
    )
    if not meta.get("version"):
        raise PromptError(f"{path}: the header has no version")
    return Prompt(name=name, version=meta["version"], template=text[header.end():])
