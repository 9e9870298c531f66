"""Text that people type, cleaned before it is stored, shown, exported or read by the model.

Questions, chat titles and system prompts may arrive from any client with bytes a person never typed: a lone
UTF-16 surrogate (valid in JSON, ``"\\ud800"``, but not encodable: the tokenizer and Redis would fail on it), NUL
and other C0/C1 control characters (terminal escapes such as ESC), and the bidirectional overrides and isolates
that make text display in another order than it is stored (the "Trojan Source" characters, CVE-2021-42574:
U+202A-U+202E, U+2066-U+2069). Newlines and tabs are kept; CRLF and lone CR become LF.
"""

from __future__ import annotations

import re

SURROGATE = re.compile(r"[\ud800-\udfff]")
# C0 controls but TAB (09) and LF (0a); DEL and the C1 controls; the bidi embeddings, overrides and isolates
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


class TextError(ValueError):
    """Text that cannot be used as it is; ``str(err)`` is one sentence naming what was wrong."""


def clean_text(text: str, what: str = "The text") -> str:
    """``text`` with line endings made LF and control and bidi-override characters removed.

    Args:
        text: what a person (or a client) sent.
        what: how to name it in the error, e.g. "The question".

    Returns:
        The cleaned text (possibly empty).

    Raises:
        TextError: it is not a string, or holds a lone surrogate (broken Unicode that cannot be stored).
    """
    if not isinstance(text, str):
        raise TextError(f"{what} must be text.")
    if SURROGATE.search(text):
        raise TextError(f"{what} holds a broken character (a lone UTF-16 surrogate); send valid Unicode text.")
    return CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def printable(text: object) -> str:
    """``text`` made safe to show or export, never raising: ``clean_text`` with a lone surrogate replaced by
    U+FFFD (for text stored before it was cleaned, or written by the model)."""
    return clean_text(SURROGATE.sub("\ufffd", str(text)))
