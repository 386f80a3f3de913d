"""Driving the app with Textual's Pilot and reading what it shows."""

import time

from core.events import BlockStats, LayerStats, ParamStats
from core.layer_stats import kind_of
from core.model import GPTModel


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


def layer_records(model: GPTModel, steps: list[int]) -> list[dict]:
    """Made-up layer statistics of `model` at `steps`: the view's pictures must not hang on the CPU's rounding."""
    records = []
    for n, step in enumerate(steps, 1):
        params = tuple(
            ParamStats(
                name=name,
                layer=name.split(".")[1] if name.startswith("blocks") else name.split(".")[0],
                kind=kind_of(name),
                numel=p.numel(),
                trainable=True,
                weight_rms=0.05 * (i % 5 + 1),
                grad_rms=1e-3 * (i % 3 + 1) / n,
                grad_data=1e-3 * (i % 3 + 1) / n / (0.05 * (i % 5 + 1)),
                update_data=10 ** (-1.5 - 0.25 * n - 0.1 * (i % 4)),
            )
            for i, (name, p) in enumerate(model.named_parameters())
        )
        blocks = tuple(
            BlockStats(
                layer=b,
                resid_attn_rms=1.0 + 0.1 * n + b,
                resid_mlp_rms=1.1 + 0.1 * n + b,
                act_mean=0.1,
                act_std=0.3 - 0.01 * n,
                act_near_zero=0.05 * n,
                head_entropy=tuple(2.5 - 0.3 * n * h / 3 - b * 0.2 for h in range(4)),
            )
            for b in range(2)
        )
        event = LayerStats(
            epoch=1 + (step - 1) // 10,
            step=(step - 1) % 10 + 1,
            global_step=step,
            params=params,
            blocks=blocks,
            logits_rms=1.0 + n,
            logits_max=5.0 + n,
            context_length=16,
        )
        records.append(event.record())
    return records


async def palette_command(pilot, query: str) -> None:
    """Open the command palette, type `query`, wait for what it finds (it searches in the background), and run
    the first command found."""
    await pilot.press("ctrl+p", *query)
    found = lambda: pilot.app.screen.query("CommandList") and pilot.app.screen.query_one("CommandList").option_count  # noqa: E731
    await wait_for(pilot, found, f"the palette to find {query!r}")
    await pilot.press("enter")
    await pilot.pause()
