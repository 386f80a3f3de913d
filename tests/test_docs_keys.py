"""docs/training-app.md's keys tables say what the app's help screen (F1) says: every key the help lists has a
row under the heading of its section, and every key a row names is one the help lists there.

The help screen is read from the running app, so a new binding (a widget's, or a new section of the help) fails
this test until the page has its row. A new section needs a heading of the same name in docs/training-app.md."""

import re
from dataclasses import replace
from pathlib import Path

from minigpt_tui.app import MiniGPTApp
from minigpt_tui.sources import LiveRun
from minigpt_tui.widgets import HelpScreen

PAGE = Path(__file__).parent.parent / "docs" / "training-app.md"
HEADINGS = {"": "Everywhere"}  # the help's untitled first section; the others' headings are their titles
SPELLED = {"⏎": "enter"}  # how the page writes the keys the help shows as a symbol


def help_keys(display: str) -> set[str]:
    """The keys of one help line, spelled as the page spells them: `^y` is `ctrl+y`, `←→` is `←` and `→`, `⏎` is
    `enter`."""
    keys = set()
    for part in display.split(", "):
        if part.startswith("^"):
            keys.add("ctrl+" + part[1:])
        elif len(part) > 1 and not any(c.isalnum() for c in part):
            keys.update(part)  # a pair shown together: ←→, ↑↓, []
        else:
            keys.add(SPELLED.get(part, part))
    return keys


def documented_rows(heading: str) -> list[set[str]]:
    """The keys each row names (the `code` spans of its first cell) in the first table under `### heading`."""
    text = PAGE.read_text(encoding="utf-8")
    match = re.search(rf"^#+ {re.escape(heading)}\n(.*?)(?=^#)", text + "\n#", re.MULTILINE | re.DOTALL)
    assert match, f"docs/training-app.md has no heading {heading!r} for the help's keys"
    rows = [line for line in match.group(1).splitlines() if line.startswith("| `")]
    assert rows, f"no keys table under {heading!r} in docs/training-app.md"
    return [set(re.findall(r"`([^`]+)`", row.split(" | ")[0])) for row in rows]


async def shown_help(tiny_cfg, quick_train_cfg) -> list[tuple[str, list[tuple[str, str]]]]:
    """The help screen's sections, as a run training here shows them (it offers every action)."""
    app = MiniGPTApp(LiveRun(tiny_cfg, replace(quick_train_cfg, epochs=1), "tiny"))
    app.source.control.pause()  # before its first step: this test needs no training
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        sections = app.screen.sections
        await pilot.press("escape", "q")
    return sections


async def test_the_keys_tables_match_the_help_screen(tiny_cfg, quick_train_cfg):
    sections = await shown_help(tiny_cfg, quick_train_cfg)
    assert len(sections) >= 3 and all(keys for _, keys in sections)
    for title, keys in sections:
        heading = HEADINGS.get(title, title)
        rows = documented_rows(heading)
        in_help = {key for display, _ in keys for key in help_keys(display)}
        on_page = set().union(*rows)
        assert in_help - on_page == set(), f"keys the help lists with no row under {heading!r}"
        assert on_page - in_help == set(), f"rows under {heading!r} naming keys the help does not list"
        assert all(rows), f"a row under {heading!r} names no key"
