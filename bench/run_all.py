"""The benchmarks behind the README's Performance table, one after the other, each in a fresh process.

    python bench/run_all.py               # training step, generation, TUI: about 8 minutes on 2 idle CPU cores
    python bench/run_all.py --full-run    # and the whole default run against the reference: ~22 minutes more

Each script prints its table and writes its figures as JSON under bench/results/. The reference
implementation must be installed first: pip install --no-deps llms-from-scratch==1.0.19
"""

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
SCRIPTS = ["training.py", "generation.py", "tui_latency.py"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full-run", action="store_true", help="also bench/full_run.py (~22 minutes)")
    args = parser.parse_args()
    failed = []
    for script in SCRIPTS + (["full_run.py"] if args.full_run else []):
        print(f"\n=== python bench/{script}", flush=True)
        if subprocess.run([sys.executable, str(HERE / script)]).returncode != 0:
            failed.append(script)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
