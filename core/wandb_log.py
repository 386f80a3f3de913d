"""Weights & Biases logging for a run (`--wandb PROJECT`): the scalars of metrics.jsonl against the global step (as
TensorBoard gets them), each epoch's sample as a row of a table, the configuration, and the final checkpoint's path
in the run's summary. `WANDB_MODE=offline` keeps it all in OUT/wandb, for `wandb sync` later.

The `wandb` package is an optional extra (`pip install 'minigpt-tui[wandb]'`). A missing package or a failed login
is said in one line (a `Notice`), and the run trains on without it.
"""

import netrc
import os
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlparse

from core.events import EpochSampled, Evaluated, Failed, Finished
from core.tensorboard import SCALARS

LOCAL_MODES = ("offline", "disabled", "dryrun")  # WANDB_MODE values that need no login


def logged_in() -> bool:
    """Whether W&B has a key to log in with, without asking: a prompt would block the run (and fight the app for
    the terminal). `wandb login` writes the key to ~/.netrc."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE") in LOCAL_MODES:
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc().authenticators(host or "") is not None
    except (OSError, netrc.NetrcParseError):
        return False


class WandbLogger:
    """Logs a run's events to a W&B run. A resumed run starts a new W&B run that first logs the history its
    checkpoint holds (`history`: metrics records; `samples`: EpochSampled events), so it shows the whole curve."""

    def __init__(self, run, history: Iterable[dict] = (), samples: Iterable[EpochSampled] = ()):
        self.run = run
        import wandb

        self.table_type = wandb.Table
        self.samples: list[list] = []
        for record in history:
            self.record(Evaluated(**record))
        for sample in samples:
            self.record(sample)

    def record(self, event) -> None:
        if isinstance(event, Evaluated):
            record = event.record()
            scalars = {tag: record[name] for name, tag in SCALARS.items() if record.get(name) is not None}
            self.run.log(scalars | {"tokens_seen": event.tokens_seen}, step=event.global_step)
        elif isinstance(event, EpochSampled):
            # A W&B table is logged whole: each sample logs the table of all samples so far, this one its last row.
            self.samples.append([event.epoch, event.global_step, event.text])
            table = self.table_type(columns=["epoch", "global_step", "text"], data=list(self.samples))
            self.run.log({"samples": table}, step=event.global_step)
        elif isinstance(event, Finished) and "checkpoint" in event.outputs:
            self.run.summary["checkpoint"] = event.outputs["checkpoint"]
        elif isinstance(event, Failed):
            self.run.summary["failed"] = event.message

    def close(self) -> None:
        self.run.finish()


def start_wandb(
    project: str, out_dir: Path, config: dict, history: Iterable[dict] = (), samples: Iterable[EpochSampled] = ()
) -> tuple[WandbLogger | None, str]:
    """(the logger, "") or (None, why W&B logging could not start) — the run goes on either way."""
    try:
        import wandb
    except ImportError:
        return None, "--wandb needs the wandb package (pip install 'minigpt-tui[wandb]'); training goes on without it"
    if not logged_in():
        return None, "--wandb: not logged in to W&B (run `wandb login`, or set WANDB_MODE=offline); training goes on"
    try:
        # silent, console off: W&B must not write to the terminal (the app draws on it) nor wrap stdout.
        settings = wandb.Settings(silent=True, console="off")
        run = wandb.init(project=project, name=out_dir.name, dir=str(out_dir), config=config, settings=settings)
    except Exception as e:  # a failed login, no network: W&B raises many kinds; the run matters more
        return None, f"--wandb: W&B did not start ({type(e).__name__}: {e}); training goes on without it"
    return WandbLogger(run, history, samples), ""
