"""Small helpers for tests that train: the cheapest model and a run that can be stopped or 'killed' on cue."""

from core.config import preset
from core.control import TrainingControl
from core.events import CheckpointSaved, StepDone
from core.run import TrainingRun

TINY16 = preset("tiny", context_length=16)  # with the short_corpus fixture: 10 steps per epoch at batch 2


class Crash(Exception):
    """Stands for the process dying (SIGKILL, power cut): nothing after it runs, no handler, no final save."""


def train(cfg, stop_after_step=None, crash_after_saving=None, model_cfg=TINY16):
    """Run `cfg` and return (the TrainingRun, its events). It stops at the step boundary after global step
    `stop_after_step`, or dies right after the checkpoint of global step `crash_after_saving` is written."""
    control, events = TrainingControl(), []

    def on_event(event):
        events.append(event)
        if isinstance(event, StepDone) and event.global_step == stop_after_step:
            control.stop()
        if isinstance(event, CheckpointSaved) and event.global_step == crash_after_saving:
            raise Crash

    run = TrainingRun(model_cfg, cfg, on_event, control)
    try:
        run.run()
    except Crash:
        pass
    return run, events


def of(events, kind):
    return [e for e in events if isinstance(e, kind)]
