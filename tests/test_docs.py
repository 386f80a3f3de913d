"""docs/screenshots.py, the README's pictures, still runs: on a tiny run, into a temporary directory."""

import subprocess
import sys
from html import unescape
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent.parent / "docs" / "screenshots.py"


def shown_text(svg: Path) -> str:
    """The words a Textual SVG screenshot shows (its text runs, spaces as no-break spaces)."""
    return unescape(svg.read_text(encoding="utf-8")).replace("\xa0", " ")


@pytest.mark.timeout(900)  # a training run and a reply, on a machine that may be busy
def test_the_screenshot_script_pictures_a_short_run(tmp_path, short_corpus):
    args = ["--out", str(tmp_path), "--epochs", "1", "--data", str(short_corpus), "--context-length", "16"]
    result = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=800)
    assert result.returncode == 0, result.stderr
    names = ("dashboard.svg", "chat.svg", "help.svg", "inspect-tab.svg")
    dashboard, chat, help_screen, inspect = (shown_text(tmp_path / name) for name in names)
    assert "tiny" in dashboard and "Loss" in dashboard and "epoch 1 · step 10" in dashboard  # the first sample
    assert "effort" in chat and "greedy" in chat  # the prompt, and the reply's status
    assert "Keys" in help_screen and "Pause or resume training" in help_screen
    assert "next after" in inspect and "logit lens" in inspect and "layer 1 · head 0" in inspect
    assert "logit lens" in (tmp_path / "inspect-tab.txt").read_text(encoding="utf-8")
    assert (tmp_path / "loss_plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    runs = shown_text(tmp_path / "runs.svg")
    assert "Runs under sweep" in runs and "Loss · 3 runs" in runs and "lr-0.002" in runs
