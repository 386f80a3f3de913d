"""The footer: Textual's, showing only the keys that fit whole beside the palette's key (ctrl+p).

Textual's footer lets its keys run on under the palette's key, which is docked right: the last one shown was cut
mid-word, with a stray letter of the next after the palette's (`c Ch▏^p paletteP` at 100 columns).
"""

from rich.cells import cell_len
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

GAP = 1  # the compact footer's margin after each key
PALETTE_BORDER = 1  # the bar before the palette's key


def key_width(key: FooterKey) -> int:
    """The cells a compact footer key takes: "^y Copy reply", or the key alone."""
    return cell_len(key.key_display) + (1 + cell_len(key.description) if key.description else 0)


class KeyFooter(Footer):
    """(The app's bindings have no groups: Textual's footer yields one FooterKey for each.)"""

    def compose(self):
        keys = list(super().compose())
        palette = [key for key in keys if key.has_class("-command-palette")]
        room = self.size.width - sum(PALETTE_BORDER + key_width(key) for key in palette)
        shown = []
        for key in keys:
            if key in palette:
                continue
            room -= key_width(key) + GAP
            if room < 0:
                break
            shown.append(key)
        yield from shown + palette

    def on_resize(self) -> None:
        self.call_after_refresh(self.recompose)  # as many keys as the new width holds
