"""SQL text cut into statements, aware of strings, quoted names, dollar quotes and comments."""

from __future__ import annotations

import re

# A SQL lexeme that may hide a `;` or a comment marker: strings, quoted names, $tag$, comments.
_LEXEME = re.compile(
    r"'(?:[^']|'')*'?|\"(?:[^\"]|\"\")*\"?|\$(\w*)\$|--[^\n]*|/\*.*?(?:\*/|\Z)|;", re.S
)
_NOISY_COMMENT = re.compile(  # pg_dump's boilerplate, rules and empty comments
    r"^(--|/\*)[\W_]*$|PostgreSQL database dump|Dumped (from|by)|; Type: |TOC entry", re.I
)


def split_sql(text: str) -> list[tuple[str, str]]:
    """The statements in `text` without their `;`, blank lines or noisy comments; each with the
    comment that follows its `;` on the same line, if any."""
    done: list[tuple[str, str]] = []
    current = code = ""  # the statement so far, and the same without its comments
    pos = 0
    while (match := _LEXEME.search(text, pos)) is not None:
        lexeme, before = match.group(), text[pos : match.start()]
        current, code, pos = current + before, code + before, match.end()
        if match.group(1) is not None:  # $tag$ ... $tag$
            close = text.find(lexeme, pos)
            pos = len(text) if close < 0 else close + len(lexeme)
            lexeme = text[match.start() : pos]
        if lexeme == ";":
            done += [(current, "")] if code.strip() else []
            current = code = ""
        elif not lexeme.startswith(("--", "/*")):
            current, code = current + lexeme, code + lexeme
        elif current[current.rfind("\n") + 1 :].strip():  # a comment beside code
            current += lexeme
        elif done and not current.strip() and "\n" not in current and not done[-1][1]:
            done[-1] = (done[-1][0], lexeme)  # `...; -- note`
        elif not _NOISY_COMMENT.search(lexeme):
            current += lexeme
    done += [(current + text[pos:], "")] if (code + text[pos:]).strip() else []
    tidy = [("\n".join(ln.rstrip() for ln in s.splitlines() if ln.strip()), c) for s, c in done]
    return [(s.strip(), c) for s, c in tidy]


def statement_end(text: str) -> int | None:
    """Where the first statement of `text` ends: the index just past the `;` that closes it
    (outside strings, quoted names, dollar quotes and comments); None while it is open."""
    code, pos = "", 0
    while (match := _LEXEME.search(text, pos)) is not None:
        code, pos = code + text[pos : match.start()], match.end()
        lexeme = match.group()
        if match.group(1) is not None:  # $tag$ ... $tag$
            close = text.find(lexeme, pos)
            if close < 0:
                return None
            pos = close + len(lexeme)
        elif lexeme == ";":
            if code.strip():
                return pos
            code = ""  # an empty statement
        elif not lexeme.startswith(("--", "/*")):
            code += lexeme
    return None
