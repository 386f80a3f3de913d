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
