"""Reading the terminal: Textual's parser, with an escape sequence inside a paste kept in the paste, in order.

Textual (8.2) reads an ESC inside a bracketed paste as the start of a key sequence: what follows the ESC
arrives as key presses *before* the paste, which holds only what came before the ESC. Pasting
`one\\x1b[31mtwo three` typed `^[31mtwo three` and then pasted `one` in front of it. Here an ESC inside a paste
reaches Textual as the symbol ␛, the way the prompt box shows every control character, so the paste arrives
whole and in order. Only the paste's end marker ends it (terminals send the pasted text as it is).
"""

import sys
from collections.abc import Iterable

from textual._xterm_parser import XTermParser
from textual.message import Message

PASTE_START, PASTE_END = "\x1b[200~", "\x1b[201~"


class PasteKeepingParser(XTermParser):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pasting = False
        self.held = ""  # the start of a paste's end marker that one read cut in two

    def feed(self, data: str) -> Iterable[Message]:
        return super().feed(self.escape_pasted(data) if data else data)  # "" is the end of input

    def escape_pasted(self, data: str) -> str:
        """`data` with every ESC inside a paste (but the end marker's) replaced by ␛."""
        data, self.held = self.held + data, ""
        parts = []
        while data:
            if not self.pasting:
                start = data.find(PASTE_START)
                if start < 0:
                    parts.append(data)
                    break
                start += len(PASTE_START)
                parts.append(data[:start])
                data, self.pasting = data[start:], True
            else:
                end = data.find(PASTE_END)
                if end < 0:
                    end = len(data) - _marker_start_at_end(data)
                    self.held = data[end:]
                    parts.append(data[:end].replace("\x1b", "␛"))
                    break
                parts += [data[:end].replace("\x1b", "␛"), PASTE_END]
                data, self.pasting = data[end + len(PASTE_END) :], False
        return "".join(parts)


def _marker_start_at_end(data: str) -> int:
    """How many of the last characters of `data` could begin PASTE_END."""
    return next((size for size in range(len(PASTE_END) - 1, 0, -1) if data.endswith(PASTE_END[:size])), 0)


def keep_escapes_in_pastes(driver_class: type) -> None:
    """Make the driver read the terminal with `PasteKeepingParser` (Textual's drivers make their parser with
    the name `XTermParser` of their own module)."""
    module = sys.modules[driver_class.__module__]
    if getattr(module, "XTermParser", None) is XTermParser:
        module.XTermParser = PasteKeepingParser  # type: ignore[attr-defined]
