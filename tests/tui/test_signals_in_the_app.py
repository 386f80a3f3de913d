"""The app in a real terminal (a pty) under real signals: SIGTERM and SIGHUP make every mode quit and give the
terminal back (the alternate screen left, the cursor shown), instead of dying with the terminal left raw."""

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time

import pytest

APP = [sys.executable, "-c", "import sys; from minigpt_tui.cli import main; sys.exit(main())"]
LEAVE_ALTERNATE_SCREEN, SHOW_CURSOR = b"\x1b[?1049l", b"\x1b[?25h"


def start_in_a_terminal(*args: str) -> tuple[subprocess.Popen, int]:
    """The app on a new pty of 120x30; returns the process and the terminal's side of the pty to read."""
    terminal, app_side = pty.openpty()
    fcntl.ioctl(app_side, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    env = os.environ | {"TERM": "xterm-256color", "COLUMNS": "120", "LINES": "30"}
    proc = subprocess.Popen(
        [*APP, *args], stdin=app_side, stdout=app_side, stderr=app_side, env=env, start_new_session=True
    )
    os.close(app_side)
    return proc, terminal


def read_until(terminal: int, done, what: str, timeout: float = 120.0) -> bytes:
    """What the app writes to the terminal, until `done(output)` or the app closes its side; the timeout only keeps
    a broken build from hanging."""
    output = b""
    deadline = time.monotonic() + timeout
    while not done(output):
        assert time.monotonic() < deadline, f"gave up waiting for {what}; the app wrote {output[-500:]!r}"
        if select.select([terminal], [], [], 0.2)[0]:
            try:
                chunk = os.read(terminal, 65536)
            except OSError:  # EIO: every process holding the app's side has exited
                break
            if not chunk:
                break
            output += chunk
    return output


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
@pytest.mark.parametrize("mode", ["--attach", "--checkpoint"])
def test_a_signal_quits_the_app_and_gives_the_terminal_back(mode, sig, trained_checkpoint, tmp_path):
    if mode == "--attach":
        args, shown = [mode, str(tmp_path / "run")], b"waiting for the run to start"
    else:
        args, shown = [mode, str(trained_checkpoint), "--device", "cpu", "--out", str(tmp_path)], b"chat only"
    proc, terminal = start_in_a_terminal(*args)
    try:
        read_until(terminal, lambda output: shown in output, "the app to open")
        proc.send_signal(sig)
        after_signal = read_until(terminal, lambda output: False, "the app to exit")
        assert proc.wait(timeout=60) == 128 + sig
    finally:
        proc.kill()
        os.close(terminal)
    assert LEAVE_ALTERNATE_SCREEN in after_signal and SHOW_CURSOR in after_signal
    assert b"Traceback" not in after_signal
