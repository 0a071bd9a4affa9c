"""Text cleaning before the red-flag net: HTML tags, runs of spaces, spoken punctuation, long-text chunks."""

from __future__ import annotations

import re
from functools import lru_cache

CHUNK_CHARS = 2000
_TAG_RE = re.compile(r"<[^<>]{0,300}>")
_SPACES_RE = re.compile(r"[ \t\u00a0]{2,}")


@lru_cache(maxsize=1)
def _spoken_punctuation() -> re.Pattern[str] | None:
    from mesocare.safety.assertion import load_assertion

    words = load_assertion()["spoken_punctuation"]
    if not words:
        return None
    return re.compile(r"\b(" + "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)) + r")\b",
                      re.IGNORECASE)


def clean_text(text: str) -> str:
    """Drop HTML tags, read dictated punctuation ("question mark" -> "?") and squeeze runs of spaces
    (spaCy would make a token of "  ", breaking phrases)."""
    out = _SPACES_RE.sub(" ", _TAG_RE.sub(" ", text or ""))
    spoken = _spoken_punctuation()
    if spoken is not None and spoken.search(out):
        from mesocare.safety.assertion import load_assertion

        marks = {k.lower(): v for k, v in load_assertion()["spoken_punctuation"].items()}
        out = spoken.sub(lambda m: marks[m.group(1).lower()], out)
    return out



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

