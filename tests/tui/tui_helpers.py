"""Driving the app with Textual's Pilot and reading what it shows."""

import time


async def wait_for(pilot, condition, what: str, timeout: float = 60.0) -> None:
    """Let the app run until `condition()` holds; the timeout only keeps a broken build from hanging."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await pilot.pause(0.05)
    await pilot.pause()  # and let the screen catch up


def screen_text(app) -> str:
    """The screen as plain text, the way a user sees it (Textual has no public call for this)."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def record_notifications(app) -> list[str]:
    """The messages of the app's notifications from now on (they are still shown as usual)."""
    seen = []
    notify = app.notify

    def spy(message, **kwargs):
        seen.append(message)
        notify(message, **kwargs)

    app.notify = spy
    return seen


def title(app) -> str:
    """The run panel's title in full: on screen a long temp path would be cut off at the terminal's width."""
    return str(app.query_one("#run").border_title)


async def palette_command(pilot, query: str) -> None:
    """Open the command palette, type `query`, wait for what it finds (it searches in the background), and run
    the first command found."""
    await pilot.press("ctrl+p", *query)
    found = lambda: pilot.app.screen.query("CommandList") and pilot.app.screen.query_one("CommandList").option_count  # noqa: E731
    await wait_for(pilot, found, f"the palette to find {query!r}")
    await pilot.press("enter")
    await pilot.pause()
