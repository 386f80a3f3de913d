"""Make the README's pictures from a short real run: the app at 100×30 while it trains (the dashboard, the chat
answering, the help screen, the Inspect tab) as SVG, the Inspect tab also as plain text, and the run's loss plot;
then a sweep of three learning rates, shorter, overlaid in the runs view (runs.svg).

    python docs/screenshots.py                     # a 12-epoch tiny run on the bundled story, into docs/
    python docs/screenshots.py --out /tmp/pictures --epochs 2 --data my.txt --context-length 16

The pictures are taken from half-way through the run, once the model has learnt some words, while it still trains.
"""

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))  # this checkout's code, whatever the current directory

from core.config import TrainConfig, preset  # noqa: E402
from core.control import TrainingControl  # noqa: E402
from core.sweep import Sweep, train_sweep  # noqa: E402
from minigpt_tui.app import MiniGPTApp  # noqa: E402
from minigpt_tui.runs_app import RunsApp  # noqa: E402
from minigpt_tui.sources import LiveRun  # noqa: E402
from minigpt_tui.widgets import ChatPane, PromptInput, SamplesLog  # noqa: E402
from minigpt_tui.widgets.inspect_pane import InspectPane  # noqa: E402

SIZE = (100, 30)
PROMPT = "Every effort moves you"
PICTURES = ("dashboard.svg", "chat.svg", "help.svg", "inspect-tab.svg", "inspect-tab.txt", "loss_plot.png", "runs.svg")


async def wait_for(pilot, condition, what: str, timeout: float = 3600.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        await pilot.pause(0.1)
    await pilot.pause()  # and let the screen catch up


def screen_text(app: MiniGPTApp) -> str:
    """The screen as plain text, one line per row (for the README, which shows the Inspect tab as text)."""
    rows = app.screen._compositor.render_strips()  # Textual has no public text export of a screen
    return "\n".join(row.text.rstrip() for row in rows) + "\n"


async def take_pictures(app: MiniGPTApp, out: Path, samples_before: int) -> None:
    async with app.run_test(size=SIZE) as pilot:
        # The dashboard once half the epochs have their sample, while the run goes on.
        def trained_enough() -> bool:
            return app.query_one(SamplesLog).count >= samples_before or app.result is not None

        await wait_for(pilot, trained_enough, f"the sample of epoch {samples_before}")
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

        await pilot.press("x")
        pane = app.query_one(InspectPane)
        pane.select(layer=1, head=0)

        def inspected() -> bool:
            return pane.shown is not None and pane.shown.selection == pane.selection

        await wait_for(pilot, inspected, "the Inspect tab")
        await pilot.pause(0.2)
        app.save_screenshot("inspect-tab.svg", out)
        (out / "inspect-tab.txt").write_text(screen_text(app), encoding="utf-8")

        app.source.stop()  # the run saves its files, the loss plot among them
        await wait_for(pilot, lambda: app.result is not None, "the run to stop and save")


def sweep_learning_rates(args: argparse.Namespace, run_dir: Path) -> Path:
    """Train the tiny model at a quarter, once and twice the --lr, a third of the epochs each, into run_dir/sweep."""
    lrs = [f"{args.lr * factor:g}" for factor in (0.25, 1, 2)]
    flags = ["--preset", "tiny", "--epochs", str(max(1, args.epochs // 3)), "--device", "cpu", "--eval-freq", "10"]
    flags += ["--data", args.data] if args.data else []
    flags += ["--context-length", str(args.context_length)] if args.context_length else []
    sweep, _ = Sweep.from_argv([*flags, "--lr", *lrs, "--out", str(run_dir / "sweep")])
    sweep.save()
    train_sweep(sweep, False, TrainingControl())
    return sweep.out_dir


async def take_runs_picture(root: Path, out: Path) -> None:
    """The runs view on the sweep, its three runs selected (opened from the sweep's parent: no temp path shown)."""
    app = RunsApp([root])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("space", "down", "space", "down", "space")
        await pilot.pause(0.2)
        app.save_screenshot("runs.svg", out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DOCS, help="default: docs/")
    parser.add_argument("--epochs", type=int, default=12, help="of the tiny model (default: %(default)s)")
    parser.add_argument(
        "--lr", type=float, default=2e-3, help="high, so a short run learns words (default: %(default)s)"
    )
    parser.add_argument("--data", help="the corpus (default: the bundled story)")
    parser.add_argument("--context-length", type=int, help="default: the tiny preset's")
    args = parser.parse_args()
    overrides = {"context_length": args.context_length} if args.context_length else {}
    args.out = args.out.resolve()  # the runs picture is taken from another directory
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as run_dir:
        train_cfg = TrainConfig(
            epochs=args.epochs, lr=args.lr, data=args.data, out_dir=run_dir, device="cpu", eval_freq=10
        )
        app = MiniGPTApp(LiveRun(preset("tiny", **overrides), train_cfg, "tiny"))
        asyncio.run(take_pictures(app, args.out, samples_before=max(1, args.epochs // 2)))
        shutil.copy(Path(run_dir) / "loss_plot.png", args.out / "loss_plot.png")
        sweep_dir = sweep_learning_rates(args, Path(run_dir))
        os.chdir(sweep_dir.parent)
        asyncio.run(take_runs_picture(Path(sweep_dir.name), args.out.resolve()))
    print(f"Wrote {', '.join(str(args.out / name) for name in PICTURES)}")


if __name__ == "__main__":
    main()
