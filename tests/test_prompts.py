from __future__ import annotations

import pytest

from prompts import PromptError, load


def write(tmp_path, name, text):
    (tmp_path / f"{name}.md").write_text(text)


def test_a_prompt_renders_its_fields_once(tmp_path):
    write(tmp_path, "greet", "---\nversion: 3\npurpose: test\n---\nHello {{name}}, about {{ topic }}: {}\n")
    prompt = load("greet", tmp_path)
    assert prompt.ref == "greet@3"
    assert prompt.fields == {"name", "topic"}
    text = prompt.render(name="Ann {{topic}}", topic='{"json": true}')
    assert text == 'Hello Ann {{topic}}, about {"json": true}: {}\n'


def test_missing_and_unknown_fields_are_errors(tmp_path):
    write(tmp_path, "greet", "---\nversion: 1\n---\nHello {{name}}\n")
    prompt = load("greet", tmp_path)
    with pytest.raises(PromptError, match=r"missing \['name'\]"):
        prompt.render()
    with pytest.raises(PromptError, match=r"unknown \['extra'\]"):
        prompt.render(name="x", extra="y")


def test_a_prompt_needs_a_version(tmp_path):
    write(tmp_path, "bare", "Hello\n")
    write(tmp_path, "noversion", "---\npurpose: x\n---\nHello\n")
    with pytest.raises(PromptError, match="header"):
        load("bare", tmp_path)
    with pytest.raises(PromptError, match="no version"):
        load("noversion", tmp_path)
    with pytest.raises(PromptError, match="no prompt file"):
        load("absent", tmp_path)
