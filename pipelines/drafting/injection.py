"""Signs that a customer's message talks to the AI rather than to the support team: instructions,
fake tool output, Slack markup, hidden characters, forged mail headers. Pure.

The model is told that customer text is data, but a model that obeys it anyway could claim any
confidence it is asked to; the send policy reads these signs so that such a draft is never sent
without a person. A sign costs one review, so the patterns lean towards finding too many."""

from __future__ import annotations

import re
import unicodedata

# Zero-width and bidirectional controls: invisible to a reviewer, read by the model.
_HIDDEN = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\u00ad]")

_SIGNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("instructions to ignore or override", re.compile(
        r"\b(ignore|disregard|forget|override|bypass)\b[^.\n]{0,60}\b(instructions?|rules?|prompts?|guidelines|"
        r"polic(y|ies)|everything|all of the above|previous|prior)\b", re.I)),
    ("a role or system message", re.compile(
        r"\b(system|developer|assistant)\s*(prompt|message|override|note)\b|^\s*\[?(system|assistant|developer)\]?\s*:|"
        r"\byou are now\b|\bnew instructions\b|\bjailbreak\b|\bdo anything now\b|\bact as (the|an?)\b", re.I | re.M)),
    ("text shaped like our tool's answer", re.compile(
        r"record_answer|tool_use|\btool[ _]call\b|\"?\b(confidence|cited_article_ids|auto_send|risks|questions|"
        r"subcategory|priority|category)\"?\s*[:=]\s*[\[\"'0-9a-z]", re.I)),
    ("a request to approve, send, escalate or relabel", re.compile(
        r"\b(auto[- ]?send|auto[- ]?approve|approve (this|the|my)|mark (this|it|the case) as|"
        r"set (the |my )?(priority|confidence|category|status)|escalate (this |it )?to jira|create a jira|"
        r"skip (the )?review|no (human )?review|send (it|this) (now|immediately|without))\b", re.I)),
    ("a request for the knowledge base or internal text", re.compile(
        r"\b(knowledge[- ]base|all (of )?(the |your )?articles|every article|system prompt|your (instructions|prompt)|"
        r"internal (notes|docs|documents|articles))\b", re.I)),
    ("another recipient for the reply", re.compile(
        r"\b(reply|send|forward|copy|cc|bcc|email)\b[^.\n]{0,40}\b(to|at)\b[^.\n]{0,20}[\w.+-]+@[\w-]+(\.[\w-]+)+", re.I)),
    ("Slack markup", re.compile(r"<\s*[!@#]|<\s*(https?|mailto|slack):[^>]*\|", re.I)),
    ("mail headers in the body", re.compile(
        r"^\s*(from|to|cc|bcc|reply-to|return-path|sender|x-[\w-]+)\s*:\s*\S", re.I | re.M)),
)


def instruction_signs(text: str) -> list[str]:
    """What in `text` reads as addressed to the AI, one phrase per kind; [] for an ordinary message."""
    found = ["hidden or direction-changing characters"] if _HIDDEN.search(text) else []
    # Fullwidth letters and hidden characters must not slip a phrase past the patterns.
    plain = unicodedata.normalize("NFKC", _HIDDEN.sub("", text))
    found.extend(name for name, pattern in _SIGNS if pattern.search(plain))
    return found
