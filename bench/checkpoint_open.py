"""Time to the first reply of `minigpt-tui --checkpoint PATH`: from the command's start (its modules imported) to
the first piece of the reply to a prompt, and the process's peak memory by then. The app runs headless.

python bench/checkpoint_open.py CHECKPOINT [--threads 1]

Make a gpt2-124m checkpoint first, e.g.
    minigpt-tui train --max-steps 1 --eval-freq 1 --eval-batches 1 --out /tmp/ckpt
Run it twice: the first run also reads the file from disk into the page cache.
"""

import argparse
import time

import torch

from minigpt_tui import cli
from minigpt_tui.app import MiniGPTApp
from minigpt_tui.widgets import ChatPane


def peak_rss_gib() -> float:
    with open("/proc/self/status") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return kib / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    times = {}
    started = time.perf_counter()

    async def ask(pilot) -> None:
        times["app open"] = time.perf_counter() - started
        await pilot.press(*"Every effort", "enter")
        chat = pilot.app.query_one(ChatPane)
        while not (chat.exchanges and chat.exchanges[0].reply):
            await pilot.pause(0.01)
        times["first reply"] = time.perf_counter() - started
        pilot.app.exit()

    run = MiniGPTApp.run
    MiniGPTApp.run = lambda app: run(app, headless=True, auto_pilot=ask)
    cli.main(["--checkpoint", args.checkpoint, "--device", "cpu"])
    print(
        f"minigpt-tui --checkpoint {args.checkpoint}: app open {times['app open']:.2f} s, "
        f"first reply {times['first reply']:.2f} s, peak RSS {peak_rss_gib():.2f} GiB ({args.threads} thread(s))"
    )


if __name__ == "__main__":
    main()
