"""How quickly the TUI answers a key while it trains, and what the UI costs training.

Runs `minigpt-tui` in a pseudo-terminal as a user would (TERM=xterm-256color, no COLORTERM), presses `l`
(log-scale toggle) every few tenths of a second while training runs, and times each press until the
terminal receives the redrawn chart ("· log" / "· linear" in its border). Then it lets the epoch
finish, quits, and runs the same training headless (`minigpt-tui train`) to compare tokens/s, read from
each run's last metrics.jsonl record (tokens seen / training time; both include the same evaluations).

    python bench/tui_latency.py                    # gpt2-124m, 1 epoch (9 steps): about 2-3 minutes on 2 cores
    python bench/tui_latency.py --preset tiny --epochs 20
"""

import argparse
import fcntl
import json
import os
import pty
import random
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

from common import load_average, write_results

REPO = Path(__file__).resolve().parents[1]  # run this checkout's code, whatever the current directory
MARKERS = {True: "· log".encode(), False: "· linear".encode()}  # the chart's border after each `l`


class Terminal:
    """A program on a pseudo-terminal; a thread collects everything it draws, with arrival times."""

    def __init__(self, argv: list[str], cols: int, rows: int):
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        env = {k: v for k, v in os.environ.items() if k != "COLORTERM"} | {"TERM": "xterm-256color"}
        self.proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=REPO, start_new_session=True, close_fds=True
        )
        os.close(slave)
        self.fd = master
        self.output = bytearray()
        self.arrivals: list[tuple[int, float]] = []  # (output length after a read, when it arrived)
        self.changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:  # the program has exited
                chunk = b""
            with self.changed:
                self.output += chunk
                self.arrivals.append((len(self.output), time.perf_counter()))
                self.changed.notify_all()
            if not chunk:
                return

    def press(self, key: bytes) -> tuple[int, float]:
        with self.changed:
            start = len(self.output)
        sent = time.perf_counter()
        os.write(self.fd, key)
        return start, sent

    def wait_for(self, marker: bytes, start: int = 0, timeout: float = 600) -> float:
        """When the first `marker` after output offset `start` arrived."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while (found := self.output.find(marker, start)) < 0:
                if self.proc.poll() is not None or not self.changed.wait(deadline - time.monotonic()):
                    raise TimeoutError(f"{marker!r} never appeared")
            end = found + len(marker)
            return next(t for length, t in self.arrivals if length >= end)


def training_speed(out_dir: Path) -> tuple[float, int]:
    """(tokens/s, global step) from the run's last evaluation."""
    last = json.loads((out_dir / "metrics.jsonl").read_text().splitlines()[-1])
    return last["tokens_seen"] / last["elapsed_s"], last["global_step"]


def measure_latency(args, out_dir: Path) -> list[float]:
    argv = [sys.executable, "-m", "minigpt_tui.cli", *args.train_flags, "--out", str(out_dir)]
    term = Terminal(argv, args.cols, args.rows)
    try:
        term.wait_for(b"running")  # the model is built and training
        time.sleep(1)
        log_scale, latencies = False, []
        for _ in range(args.presses):
            time.sleep(random.uniform(0.2, 0.5))  # unsynchronised with the training steps
            start, sent = term.press(b"l")
            log_scale = not log_scale
            latencies.append(term.wait_for(MARKERS[log_scale], start) - sent)
        term.wait_for(b"finished")
        term.press(b"q")
        term.proc.wait(timeout=60)
        return latencies
    finally:
        if term.proc.poll() is None:  # a step above failed: leave no training app behind
            term.proc.kill()
            term.proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="gpt2-124m")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--presses", type=int, default=40)
    parser.add_argument("--cols", type=int, default=100)
    parser.add_argument("--rows", type=int, default=30)
    args = parser.parse_args()
    args.train_flags = ["--preset", args.preset, "--epochs", str(args.epochs), "--device", args.device]

    load_before = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        tui_out, headless_out = Path(tmp) / "tui", Path(tmp) / "headless"
        latencies = sorted(measure_latency(args, tui_out))
        subprocess.run(
            [sys.executable, "-m", "minigpt_tui.cli", "train", *args.train_flags, "--out", str(headless_out)],
            check=True,
            stdout=subprocess.DEVNULL,
            cwd=REPO,
        )
        tui_speed, steps = training_speed(tui_out)
        headless_speed, _ = training_speed(headless_out)

    ms = [1000 * t for t in latencies]
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    cpus = len(os.sched_getaffinity(0))
    print(f"{args.preset} on {args.device}, {steps} steps, {cpus} CPUs, {args.cols}x{args.rows} terminal")
    # Other work on the machine skews both figures: the load average says how busy it was.
    print(f"load average (1 min) before: {load_before:.2f}, after: {load_average():.2f}")
    print(f"keypress-to-screen latency over {len(ms)} presses while training:")
    print(f"  p50 {statistics.median(ms):.1f} ms, p95 {p95:.1f} ms, max {ms[-1]:.1f} ms")
    print(f"training tokens/s: TUI {tui_speed:.1f}, headless {headless_speed:.1f} ({tui_speed / headless_speed:.1%})")
    result = {
        "preset": args.preset,
        "device": args.device,
        "steps": steps,
        "cpus": cpus,
        "terminal": f"{args.cols}x{args.rows}",
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "latency_ms": {"p50": statistics.median(ms), "p95": p95, "max": ms[-1], "all": ms},
        "tokens_per_s": {"tui": tui_speed, "headless": headless_speed, "ratio": tui_speed / headless_speed},
    }
    print(f"wrote {write_results(f'tui-latency-{args.preset}', result)}")


if __name__ == "__main__":
    main()
