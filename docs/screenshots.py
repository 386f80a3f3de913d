"""Make the README's pictures from a short real run: the app at 100×30 while it trains (the dashboard, the chat
answering, the help screen) as SVG, and the run's loss plot.

    python docs/screenshots.py                     # a 3-epoch tiny run on the bundled story, pictures into docs/
    python docs/screenshots.py --out /tmp/pictures --epochs 2 --data my.txt --context-length 16
"""

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path

from core.config import TrainConfig, preset
from minigpt_tui.app import MiniGPTApp
from minigpt_tui.sources import LiveRun
from minigpt_tui.widgets import ChatPane, PromptInput

SIZE = (100, 30)
PROMPT = "Every effort moves you"
PICTURES = ("dashboard.svg", "chat.svg", "help.svg", "loss_plot.png")


async def wait_for(pilot, condition, what: str, timeout: float = 3600.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        await pilot.pause(0.1)
    await pilot.pause()  # and let the screen catch up


async def take_pictures(app: MiniGPTApp, out: Path) -> None:
    async with app.run_test(size=SIZE) as pilot:
        # The dashboard once the chart has a few points and a sample is in, while the run still goes on.
        await wait_for(pilot, lambda: app.query(".sample-text") or app.result, "the first sample")
        app.save_screenshot("dashboard.svg", out)

        app.action_focus_prompt()
        app.query_one(PromptInput).insert_text_at_cursor(PROMPT)
        await pilot.press("enter")
        chat = app.query_one(ChatPane)
        await wait_for(pilot, lambda: chat.exchanges and not chat.exchanges[-1].in_progress, "the chat's reply")
        app.save_screenshot("chat.svg", out)

        await pilot.press("tab", "f1")
        await pilot.pause()
        app.save_screenshot("help.svg", out)
        await pilot.press("escape")

        app.source.stop()  # the run saves its files, the loss plot among them
        await wait_for(pilot, lambda: app.result is not None, "the run to stop and save")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent, help="default: docs/")
    parser.add_argument("--epochs", type=int, default=3, help="of the tiny model (default: %(default)s)")
    parser.add_argument(
        "--lr", type=float, default=2e-3, help="high, so a short run learns words (default: %(default)s)"
    )
    parser.add_argument("--data", help="the corpus (default: the bundled story)")
    parser.add_argument("--context-length", type=int, help="default: the tiny preset's")
    args = parser.parse_args()
    overrides = {"context_length": args.context_length} if args.context_length else {}
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as run_dir:
        train_cfg = TrainConfig(
            epochs=args.epochs, lr=args.lr, data=args.data, out_dir=run_dir, device="cpu", eval_freq=3
        )
        app = MiniGPTApp(LiveRun(preset("tiny", **overrides), train_cfg, "tiny"))
        asyncio.run(take_pictures(app, args.out))
        shutil.copy(Path(run_dir) / "loss_plot.png", args.out / "loss_plot.png")
    print(f"Wrote {', '.join(str(args.out / name) for name in PICTURES)}")


if __name__ == "__main__":
    main()
