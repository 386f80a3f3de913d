"""How long the samples pane takes to show N samples, and to answer `q` after that.

Opens a bare app holding only the samples pane (as `minigpt-tui --checkpoint` shows a checkpoint's samples),
adds N samples of the usual size (the sample prompt and about 50 tokens), and times it until the screen is
drawn; then presses `q` and times it until the app has exited. The per-sample figure should not grow with N.
Then one huge sample (`--huge-mb`, 50 MB in issue 17): time, and the process's peak RSS.

    python bench/samples_pane.py                      # 200, 1,000, 2,000 and 5,000 samples, then a 50 MB one
    python bench/samples_pane.py --counts 200 2000 --huge-mb 5
"""

import argparse
import asyncio
import resource
import time
from pathlib import Path

from textual.app import App, ComposeResult

import minigpt_tui
from core.events import EpochSampled
from minigpt_tui.widgets import SamplesLog

PROMPT = "Every effort moves you"
CONTINUATION = (
    ' to the end of the day," she said, with a smile that was not quite a smile. "I had always thought'
    " Jack Gisburn rather a cheap genius--though a good fellow enough--so it was no great surprise to me"
    " to hear that, in the height of his glory, he had dropped his painting."
)


class PaneApp(App):
    CSS_PATH = Path(minigpt_tui.__file__).parent / "app.tcss"
    BINDINGS = [("q", "quit")]

    def compose(self) -> ComposeResult:
        yield SamplesLog()


async def measure(samples: list[str]) -> tuple[float, float]:
    """(seconds to add the samples and draw them, seconds from pressing q to the app's exit)."""
    app = PaneApp()
    async with app.run_test(size=(100, 40)) as pilot:
        start = time.perf_counter()
        pane = app.query_one(SamplesLog)
        for epoch, text in enumerate(samples, 1):
            pane.add(EpochSampled(epoch=epoch, global_step=epoch * 9, text=text), PROMPT)
        await pilot.pause()
        app.screen._compositor.render_update(full=True)  # one whole frame, as the terminal would get it
        shown = time.perf_counter() - start
        start = time.perf_counter()
        await pilot.press("q")
    return shown, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", type=int, nargs="+", default=[200, 1000, 2000, 5000])
    parser.add_argument("--huge-mb", type=float, default=50, help="size of the one huge sample (0: skip)")
    args = parser.parse_args()

    print(f"{'samples':>8}  {'shown in':>9}  {'per sample':>10}  {'q answered in':>13}")
    for count in args.counts:
        shown, quit_after = asyncio.run(measure([PROMPT + CONTINUATION] * count))
        print(f"{count:>8,}  {shown:>8.2f}s  {shown / count * 1000:>8.2f}ms  {quit_after:>12.3f}s")
    if args.huge_mb:
        huge = PROMPT + (CONTINUATION * int(args.huge_mb * 1e6 / len(CONTINUATION)))
        shown, quit_after = asyncio.run(measure([huge]))
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"one {len(huge) / 1e6:.0f} MB sample: shown in {shown:.2f}s, q answered in {quit_after:.3f}s, "
            f"peak RSS {peak_mb:,.0f} MB"
        )


if __name__ == "__main__":
    main()
