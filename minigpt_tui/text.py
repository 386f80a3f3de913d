"""Small text helpers the panels share: how model text, durations and big numbers are shown."""

# Control characters (but newline and tab) could move the cursor or ring the bell: show their Unicode pictures.
_CONTROL_PICTURES = {code: 0x2400 + code for code in range(32) if chr(code) not in "\n\t"} | {0x7F: 0x2421}


def printable(text: str) -> str:
    return text.translate(_CONTROL_PICTURES)


def clock(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    h, m = divmod(minutes, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def compact(n: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:,.0f}"
