"""The headless command under real signals: SIGTERM and SIGHUP stop it cleanly, SIGKILL loses nothing saved."""

import json
import signal
import subprocess
import sys

import pytest
import torch
from helpers import run_metrics

from core.checkpoint import load_checkpoint

CLI = [sys.executable, "-c", "import sys; from minigpt_tui.cli import main; sys.exit(main())", "train"]
TINY = ["--preset", "tiny", "--context-length", "16", "--eval-batches", "2", "--device", "cpu", "--lr", "1e-3"]


def start(cwd, *args) -> subprocess.Popen:
    return subprocess.Popen([*CLI, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def read_until(proc, prefix: str) -> list[str]:
    lines = []
    while not (lines and lines[-1].startswith(prefix)):
        line = proc.stdout.readline()
        assert line, f"the run ended before printing {prefix!r}: {proc.stderr.read()}"
        lines.append(line)
    return lines


@pytest.mark.parametrize(
    ("sig", "terminal_gone"),
    [
        (signal.SIGTERM, False),
        (signal.SIGHUP, True),  # an SSH connection dropping: the hang-up comes with the terminal gone
    ],
)
def test_sigterm_and_sighup_stop_after_the_step_save_and_exit(tmp_path, short_corpus, sig, terminal_gone):
    proc = start(tmp_path, *TINY, "--epochs", "1000", "--data", str(short_corpus), "--out", "run")
    read_until(proc, "Epoch 1/1000, Step 5,")
    if terminal_gone:
        proc.stdout.close()
        proc.stderr.close()
    proc.send_signal(sig)
    assert proc.wait(timeout=120) == 128 + sig

    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    stopped_at = ckpt["progress"]["global_step"]
    assert stopped_at >= 5
    records = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["global_step"] for r in records] == [r["global_step"] for r in ckpt["history"]]
    if not terminal_gone:
        err = proc.stderr.read()
        assert "Traceback" not in err
        assert f"(global step {stopped_at}); saved " in err.splitlines()[-1]


def test_after_sigkill_the_last_checkpoint_resumes_to_the_uninterrupted_result(tmp_path, short_corpus):
    flags = [*TINY, "--epochs", "2", "--save-every", "3", "--data", str(short_corpus)]
    reference = start(tmp_path, *flags, "--out", "reference")
    reference_log, _ = reference.communicate(timeout=300)
    assert reference.returncode == 0

    killed = start(tmp_path, *flags, "--out", "run")
    read_until(killed, "Epoch 1/2, Step 10,")  # mid-epoch 1 of 10 steps; the last save was at step 9 (or 12)
    killed.kill()
    killed.wait(timeout=60)
    resumed_from = load_checkpoint(tmp_path / "run" / "last.pt")["progress"]["global_step"]
    # A save point: step 9's (or 12's), or an earlier one if that was still being written in the background.
    assert resumed_from in (3, 6, 9, 12)

    resumed = start(tmp_path, "--resume", "run/last.pt")  # its settings come from the checkpoint
    resumed_log, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert f"resuming after step {resumed_from}" in resumed_log.splitlines()[0]
    evaluations = [line for line in resumed_log.splitlines() if line.startswith("Epoch ")]
    assert (
        evaluations == [line for line in reference_log.splitlines() if line.startswith("Epoch ")][-len(evaluations) :]
    )

    expected, got = (load_checkpoint(tmp_path / d / "last.pt") for d in ("reference", "run"))
    assert all(torch.equal(expected["model"][name], got["model"][name]) for name in expected["model"])

    assert run_metrics(tmp_path / "run") == run_metrics(tmp_path / "reference")
