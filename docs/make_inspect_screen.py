"""Make docs/inspect-tab.svg and docs/inspect-tab.txt: the Inspect tab at 80x24, on a small model trained here.

    python docs/make_inspect_screen.py                 # trains the tiny preset for 300 steps first (a minute or two)
    python docs/make_inspect_screen.py --steps 600 --layer 1 --head 2

It trains `--preset tiny` on the bundled story into a temporary directory, opens that checkpoint in the app
(as `minigpt-tui --checkpoint` does), shows the Inspect tab on the sample prompt with the chosen layer and
head, and saves the screen as an SVG and as plain text.
"""

import argparse
import asyncio
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))  # this checkout's code, whatever the current directory

from textual.widgets import Input  # noqa: E402

from core.config import TrainConfig, preset  # noqa: E402
from core.run import TrainingRun  # noqa: E402
from minigpt_tui.app import MiniGPTApp  # noqa: E402
from minigpt_tui.opened_checkpoint import OpenedCheckpoint  # noqa: E402
from minigpt_tui.sources import OpenedRun  # noqa: E402
from minigpt_tui.widgets.inspect_pane import InspectPane  # noqa: E402


async def capture(checkpoint: Path, layer: int, head: int | None, text: str | None) -> tuple[str, str]:
    opened = OpenedCheckpoint.load(checkpoint, "cpu")
    app = MiniGPTApp(OpenedRun(opened, checkpoint.parent, "tiny"))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("tab", "x")
        pane = app.query_one(InspectPane)
        if text:
            pane.query_one("#inspect-text", Input).value = text
        pane.select(text=text or pane.selection.text, layer=layer, head=head)
        while pane.shown is None or pane.shown.selection != pane.selection:
            await pilot.pause(0.05)
        await pilot.pause(0.2)
        svg = app.export_screenshot(title="minigpt-tui: the Inspect tab")
        lines = [strip.text.rstrip() for strip in app.screen._compositor.render_strips()]
    return svg, "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps first (default: %(default)s)")
    parser.add_argument("--layer", type=int, default=1)
    parser.add_argument("--head", default="0", help="a head number, or 'mean'")
    parser.add_argument("--text", help="the text to inspect (default: the sample prompt)")
    args = parser.parse_args()
    head = None if args.head == "mean" else int(args.head)
    with tempfile.TemporaryDirectory(prefix="inspect-screen-") as out:
        cfg = replace(TrainConfig(), device="cpu", out_dir=out, max_steps=args.steps, eval_freq=args.steps, lr=1e-3)
        result = TrainingRun(preset("tiny"), cfg, lambda event: None).run()
        print(f"trained: {result}", file=sys.stderr)
        svg, text = asyncio.run(capture(Path(out) / "last.pt", args.layer, head, args.text))
    (DOCS / "inspect-tab.svg").write_text(svg)
    (DOCS / "inspect-tab.txt").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
