"""Safe text for Slack: escape untrusted text for mrkdwn and cut any text to Slack's size limits."""

from __future__ import annotations

# Slack's documented limits (docs.slack.dev block, view and element references), in characters unless noted.
HEADER_TEXT = 150  # header block plain_text
SECTION_TEXT = 3000  # section block text
SECTION_FIELD_TEXT = 2000  # each of a section's fields
SECTION_FIELDS = 10  # fields per section
BLOCKS_PER_MESSAGE = 50
BLOCKS_PER_VIEW = 100  # modals and Home tabs
BUTTON_VALUE = 2000
BUTTON_TEXT = 75
MODAL_TITLE = 24  # also submit and close
PRIVATE_METADATA = 3000
PLAIN_INPUT_MAX = 3000  # plain_text_input max_length, so also the longest initial_value
CONTEXT_ELEMENT_TEXT = 2000
CONTEXT_ELEMENTS = 10
OPTION_TEXT = 75  # option text and option-group label
OPTION_VALUE = 150
OPTIONS_PER_SELECT = 100  # options, option groups, and options across the groups
# Slack truncates a message's top-level text only past 40,000, but asks clients to stay under 4,000.
FALLBACK_TEXT = 4000

_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_ENTITIES = ("&amp;", "&lt;", "&gt;")
_LONGEST_ENTITY = max(len(entity) for entity in _ENTITIES)


def escape(text: str) -> str:
    """Make untrusted text inert in mrkdwn: `<!channel>`, `<@U1>` and `<url|label>` show as typed."""
    # Escaping the three control characters is enough: Slack makes mentions and links only from `<…>` sequences.
    # A bare "@channel" or "#general" is linked only by Slack's automatic parsing, which our text objects turn off
    # with verbatim=true and which callers must not turn back on (no link_names, no parse="full").
    return text.translate(_ESCAPES)


def truncate(text: str, limit: int, *, suffix: str = "…") -> str:
    """Cut `text` at a word boundary so that it, suffix included, fits in `limit` characters.

    Safe on escaped text: the cut never splits an `&amp;`-style entity.
    """
    if limit < 0:
        raise ValueError(f"limit must not be negative, got {limit}")
    if len(text) <= limit:
        return text
    room = limit - len(suffix)
    if room <= 0:
        return suffix[:limit]
    cut = room
    # A split entity would show as a stray "&am"; move the cut before its ampersand.
    amp = text.rfind("&", max(0, cut - _LONGEST_ENTITY + 1), cut)
    if amp != -1 and any(text.startswith(entity, amp) and amp + len(entity) > cut for entity in _ENTITIES):
        cut = amp
    if not text[cut].isspace():
        space = max(text.rfind(blank, 0, cut) for blank in " \n\t\r")
        # One enormous "word" (a pasted token, base64) would otherwise leave next to nothing: cut mid-word instead.
        if space > cut // 2:
            cut = space
    return text[:cut].rstrip() + suffix


def safe(text: str, limit: int, *, suffix: str = "…") -> str:
    """Escape untrusted text, then fit it in `limit`: the order that keeps the limit true of what Slack receives."""
    return truncate(escape(text), limit, suffix=suffix)


def one_line(text: str) -> str:
    """Collapse whitespace, for text shown where a line break would break the layout (titles, labels, links)."""
    return " ".join(text.split())
