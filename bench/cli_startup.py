"""How long `minigpt-tui --help` and a bad flag take to answer, against importing torch, in the same run.

The command line parses its arguments before torch loads, so both should take a fraction of `import torch`.
    python bench/cli_startup.py --repeat 5
"""

import argparse
import statistics
import subprocess
import sys
import time

CASES = {
    "import torch (reference)": ["-c", "import torch"],
    "minigpt-tui --help": ["-m", "minigpt_tui.cli", "--help"],
    "minigpt-tui generate --help": ["-m", "minigpt_tui.cli", "generate", "--help"],
    "minigpt-tui --epochs x (exit 2)": ["-m", "minigpt_tui.cli", "--epochs", "x"],
}


def seconds(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, *args], capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each; the median is shown (default 5)")
    repeat = parser.parse_args().repeat
    medians = {name: statistics.median(seconds(args) for _ in range(repeat)) for name, args in CASES.items()}
    reference = medians["import torch (reference)"]
    for name, median in medians.items():
        print(f"{name:34} {median:6.2f} s  {median / reference:5.2f}x import torch")


if __name__ == "__main__":
    main()
