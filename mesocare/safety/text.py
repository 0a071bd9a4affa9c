"""Text cleaning before the red-flag net: HTML tags, runs of spaces, spoken punctuation, long-text chunks."""

from __future__ import annotations

import re

CHUNK_CHARS = 2000
_TAG_RE = re.compile(r"<[^<>]{0,300}>")
_SPACES_RE = re.compile(r"[ \t\u00a0]{2,}")


def clean_text(text: str) -> str:
    """Drop HTML tags and squeeze runs of spaces (spaCy would make a token of "  ", breaking phrases)."""
    return _SPACES_RE.sub(" ", _TAG_RE.sub(" ", text or ""))



def chunk_text(text: str, size: int = CHUNK_CHARS) -> list[tuple[int, str]]:
    """Split long text at whitespace into (offset, chunk) pieces of about `size` characters."""
    out: list[tuple[int, str]] = []
    pos = 0
    while pos < len(text):
        end = min(len(text), pos + size)
        if end < len(text):
            cut = text.rfind(" ", pos + size // 2, end)
            end = cut if cut > pos else end
        out.append((pos, text[pos:end]))
        pos = end
    return out

