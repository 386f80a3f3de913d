"""Small text helpers the panels share: how model text, durations and big numbers are shown."""

import re

from textual.content import Content

# Control characters (but newline and tab) could move the cursor or ring the bell: show their Unicode pictures.
_CONTROL_PICTURES = {code: 0x2400 + code for code in range(32) if chr(code) not in "\n\t"} | {0x7F: 0x2421}


_WHITESPACE_MARKS = str.maketrans({"\n": "⏎", " ": "·", "\t": "→"})
_WHITESPACE_RUN = re.compile(r"[ \t\n]+")


def printable(text: str) -> str:
    return text.translate(_CONTROL_PICTURES)


def visible(text: str | Content) -> Content:
    """Model output as shown: control characters as symbols, and whitespace that would not show (output that is
    nothing but line breaks and spaces, whitespace at its end, runs of 3 or more line breaks) as dim ⏎ · →.
    An untrained model often writes 50 line breaks: without the marks its reply would look like nothing.
    Content (a reply tinted token by token, already `printable`) keeps its styles, on the marks too."""
    content = text if isinstance(text, Content) else Content(printable(text))
    plain = content.plain
    parts: list[Content] = []
    shown = 0
    for run in _WHITESPACE_RUN.finditer(plain):
        at_end = run.end() == len(plain)
        if at_end or run.group().count("\n") >= 3:
            marks = Content(run.group().translate(_WHITESPACE_MARKS), content[run.start() : run.end()].spans)
            parts += [content[shown : run.start()], marks.stylize("dim")]
            parts += [] if at_end else [Content("\n")]
            shown = run.end()
    parts.append(content[shown:])
    return Content.assemble(*parts)


def clock(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    h, m = divmod(minutes, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def compact(n: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:,.0f}"
