"""Training without the UI: the seed notebook's log printed from a run's events, and the run driven from the main
thread, stopping cleanly on Ctrl+C, SIGTERM and SIGHUP.

    Epoch 1/10, Step 5, Train loss: 8.4836, Val loss: 8.5877
"""

import contextlib
import os
import signal
import sys
import time

from core.control import TrainingControl
from core.events import (
    EarlierRunSetAside,
    EpochSampled,
    Evaluated,
    Failed,
    FilesSkipped,
    HealthNotice,
    Notice,
    RunStarted,
    StepDone,
    Tokenizing,
)
from core.resume import plural


class LogPrinter:
    """Prints a run's events as the seed notebook's log; the progress of tokenizing a large corpus goes to
    `progress` (redrawn in place on a terminal). With `log_every`, a line of step figures every that many steps
    (core/throughput.py), their MFU if `flops_per_token` is given."""

    def __init__(
        self,
        preset_name: str,
        out=sys.stdout,
        progress=sys.stderr,
        log_every: int | None = None,
        flops_per_token: int | None = None,
        dtype: str = "auto",
    ):
        self.preset_name, self.out, self.progress = preset_name, out, progress
        self.log_every, self.flops_per_token, self.dtype = log_every, flops_per_token, dtype
        self.epochs = 0
        self.peak_flops: float | None = None  # of all the run's devices together, measured when it starts
        self._tokenizing_since: float | None = None

    def __call__(self, event) -> None:
        if isinstance(event, RunStarted):
            self.epochs = event.epochs
            shape = f"{event.shape}; " if self.preset_name == "custom" else ""
            self._print(
                f"Training {self.preset_name} ({shape}{_parameters(event)}) on {_devices(event)}: "
                f"{_length(event)}{f', resuming after step {event.start_step}' if event.start_step else ''}"
            )
            if self.log_every and self.flops_per_token:
                self.peak_flops = _peak_flops(event, self.dtype)
        elif isinstance(event, StepDone):
            if self.log_every and event.global_step % self.log_every == 0 and event.step_s > 0:
                mfu = None
                if self.peak_flops and self.flops_per_token:
                    mfu = event.step_tokens * self.flops_per_token / event.step_s / self.peak_flops
                self._print(step_line(event.global_step, event.loss, event.step_s, event.step_tokens, mfu))
        elif isinstance(event, FilesSkipped):
            self._print(
                f"Skipped {plural(event.count, 'file')} of {event.of:,} that are not UTF-8 text "
                f"(--skip-unreadable); they are listed in {event.listed_in}"
            )
        elif isinstance(event, Evaluated):
            self._print(
                f"Epoch {event.epoch}/{self.epochs}, Step {event.step}, "
                f"Train loss: {event.train_loss:.4f}, Val loss: {event.val_loss:.4f}"
            )
        elif isinstance(event, EpochSampled):
            self._print(event.text.replace("\n", " "))
        elif isinstance(event, HealthNotice):
            self._print(f"Warning: {event.message}")
        elif isinstance(event, Notice):
            say(f"minigpt-tui: note: {event.message}", self.progress)
        elif isinstance(event, Tokenizing):
            self._show_tokenizing(event)
        elif isinstance(event, EarlierRunSetAside):
            self._print(f"Moved the earlier run's {', '.join(event.files)} into {event.moved_to}")

    def _show_tokenizing(self, event: Tokenizing) -> None:
        if event.done_bytes < event.total_bytes:
            self._tokenizing_since = self._tokenizing_since or time.perf_counter()
            if _is_terminal(self.progress):
                seconds = time.perf_counter() - self._tokenizing_since
                speed = f", {event.done_bytes / 1e6 / seconds:.1f} MB/s" if seconds > 0 else ""
                say(
                    f"\rTokenizing {event.source}: {event.done_bytes / event.total_bytes:4.0%} of "
                    f"{event.total_bytes / 1e6:,.0f} MB, {event.tokens:,} tokens{speed}",
                    self.progress,
                    end="",
                )
            return
        if self._tokenizing_since is not None and _is_terminal(self.progress):
            say("", self.progress)  # end the progress line
        self._print(f"{event.source}: {event.tokens:,} tokens, cached in {event.cache_path}")

    def _print(self, line: str) -> None:
        say(line, self.out)


def _parameters(event: RunStarted) -> str:
    trainable = event.trainable_params
    if trainable is None or trainable == event.num_params:
        return f"{event.num_params:,} parameters"
    return f"{trainable:,} of {event.num_params:,} parameters trained"


def _peak_flops(event: RunStarted, dtype: str) -> float:
    """The matrix-product peak of all the run's devices together (core/throughput.py)."""
    import torch  # here: the command line's --help must not wait for torch

    from core.precision import compute_dtype
    from core.throughput import matmul_peak

    device = torch.device(event.device)
    return matmul_peak(device, compute_dtype(dtype, device)) * event.world_size


def step_line(global_step: int, loss: float, step_s: float, tokens: int, mfu: float | None) -> str:
    """The per-step line of --log-every, as nanoGPT prints it: `step 100: loss 2.3100, time 45ms, ...`."""
    line = f"step {global_step}: loss {loss:.4f}, time {step_s * 1000:.0f}ms, {tokens / step_s:,.0f} train tok/s"
    return line if mfu is None else f"{line}, mfu {mfu:.1%}"


def _devices(event: RunStarted) -> str:
    if event.world_size == 1:
        return event.device
    return f"{event.device.split(':')[0]} × {event.world_size} processes (DDP)"  # e.g. cuda:0 is the first one's


def _length(event: RunStarted) -> str:
    epochs = f"{plural(event.epochs, 'epoch')} of {plural(event.steps_per_epoch, 'step')}"
    return epochs if event.max_steps is None else f"{plural(event.max_steps, 'step')} ({epochs})"


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def say(line: str, out, end: str = "\n") -> None:
    """Print a line; if the terminal has gone (an SSH connection dropped, a closed pipe), drop it and go on.

    Training must outlive its terminal: the run's files keep the record, and its checkpoint must still be saved.
    """
    try:
        try:
            print(line, file=out, end=end, flush=True)
        except UnicodeEncodeError:  # a stream tolerant_output could not change: show what it can
            encoding = getattr(out, "encoding", None) or "ascii"
            print(line.encode(encoding, "replace").decode(encoding), file=out, end=end, flush=True)
    except OSError:  # EIO from a hung-up terminal, BrokenPipeError from a closed pipe
        # Point the stream at /dev/null, so that neither later lines nor the flush at exit fail again.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, out.fileno())
            os.close(devnull)


def tolerant_output() -> None:
    """Let stdout and stderr print any text: characters the terminal's encoding lacks (an "é" under LC_ALL=C or
    PYTHONIOENCODING=ascii) come out as replacement characters instead of stopping the program. Files are
    written as UTF-8 whatever the terminal."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="replace")  # type: ignore[union-attr]


STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def run_headless(preset_name: str, model_cfg, train_cfg) -> int:
    """Train with the log on stdout; returns the exit status.

    SIGINT (Ctrl+C), SIGTERM (kill, a scheduler's stop) and SIGHUP (the terminal or SSH connection went away)
    stop training after the current step and save the checkpoint; the exit status is then 128 + the signal.
    Under torchrun every process gets the signal (torchrun passes it on); they stop at the same step, and only
    the first one (rank 0) prints, except errors, which each process reports.
    """
    from core.run import TrainingRun  # torch: not for the command line's --help, which calls tolerant_output
    from core.throughput import flops_per_token

    tolerant_output()
    control = TrainingControl()
    caught = []
    model_name = f"pretrained {train_cfg.init}" if train_cfg.init else preset_name
    printer = LogPrinter(
        model_name, log_every=train_cfg.log_every, flops_per_token=flops_per_token(model_cfg), dtype=train_cfg.dtype
    )
    run = TrainingRun(model_cfg, train_cfg, printer, control)
    main = run.dist.is_main

    def stop_after_step(signum, frame):
        caught.append(signum)
        control.stop()  # first: printing may fail when the terminal is gone
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl+C aborts at once
        if main:
            say("\nStopping after the current step and saving (press Ctrl+C again to abort)...", sys.stderr)

    previous = {sig: signal.signal(sig, stop_after_step) for sig in STOP_SIGNALS}
    try:
        result = run.run()  # a second Ctrl+C ends it at once, as a Failed result that says what was not saved
    except KeyboardInterrupt:  # one that came after the run had reported its end: all is written
        return 128 + signal.SIGINT
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    stopped_status = 128 + (caught[0] if caught else signal.SIGINT)
    if isinstance(result, Failed):
        process = "" if main else f" (process {run.dist.rank})"
        say(f"minigpt-tui{process}: error: {result.message}", sys.stderr)
        return stopped_status if caught else 1
    if not main:
        return 0 if result.completed else stopped_status
    saved = ", ".join(result.outputs.values())
    if not result.completed:
        say(
            f"Stopped at epoch {result.epoch}, step {result.step} (global step {result.global_step}); saved {saved}",
            sys.stderr,
        )
        return stopped_status
    minutes, seconds = divmod(round(result.elapsed_s), 60)
    done = f"{plural(result.epoch, 'epoch')} ({plural(result.global_step, 'step')})"
    if result.step:  # --max-steps ended it mid-epoch
        done = f"{plural(result.global_step, 'step')} (epoch {result.epoch}, step {result.step})"
    say(f"Finished {done} in {minutes}m{seconds:02d}s; saved {saved}", sys.stdout)
    return 0
