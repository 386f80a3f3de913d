"""`minigpt-tui serve`: the `--attach` dashboard of a run directory in a browser, with textual-serve.

The server (serve_server.py) starts an app process per browser connection, for the user's browser only
(serve_access.py), so the command served is the attach mode, which only reads the run's files: a page load
never starts a training run. With `--train`, this
process also starts the run, headless, as a child whose log goes to RUN_DIR/train.log, and stopping the
server (Ctrl+C, SIGTERM, SIGHUP) stops the run after its current step and waits until it has saved.
"""

import ctypes
import importlib.util
import os
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

INSTALL_EXTRA = "pip install 'minigpt-tui[web]'"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
LOOPBACK = ("127.0.0.1", "localhost", "::1")
PR_SET_PDEATHSIG = 1


def textual_serve_missing() -> str | None:
    """The one-line error when textual-serve is not installed, else None."""
    if importlib.util.find_spec("textual_serve") is None:
        return f"serving the dashboard in a browser needs the textual-serve package: {INSTALL_EXTRA}"
    return None


def attach_argv(run_dir: Path, device: str) -> list[str]:
    """The command run for each browser connection: the app, attached to the run directory."""
    return [sys.executable, "-m", "minigpt_tui.cli", "--attach", str(run_dir), "--device", device]


def port_in_use(host: str, port: int) -> str | None:
    """Why (host, port) cannot be listened on, or None. Checked before a training run is started for it."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        return f"--host {host}: {e.strerror}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as e:
            return f"cannot listen on {host}:{port}: {e.strerror}; choose another --port"
    return None


def start_training(train_argv: list[str], run_dir: Path) -> subprocess.Popen:
    """`minigpt-tui train` with these flags, its output appended to RUN_DIR/train.log.

    In a session of its own, so that Ctrl+C in the server's terminal reaches the server only, which then stops
    the run exactly once; on Linux the kernel also sends it SIGTERM (stop after the step and save) if the
    server dies without a word.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "train.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-u", "-m", "minigpt_tui.cli", "train", *train_argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that has the kernel send the child SIGTERM when this process dies (Linux; elsewhere None)."""
    if sys.platform != "linux":
        return None
    prctl = ctypes.CDLL(None).prctl  # looked up here: between fork and exec the child only calls it
    parent = os.getpid()

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return arm


def last_line(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


def serve(
    run_dir: Path,
    host: str,
    port: int,
    device: str,
    training: subprocess.Popen | None,
    token: str | None,
    max_sessions: int,
) -> int:
    """Serve the dashboard until a signal stops the server (or the training run fails); returns the exit status."""
    from minigpt_tui.serve_access import Access
    from minigpt_tui.serve_server import DashboardServer

    access = Access(token or secrets.token_urlsafe(32), host)
    server = DashboardServer(run_dir, attach_argv(run_dir, device), access, max_sessions, host=host, port=port)
    server.training = training
    try:
        server.serve()
    finally:
        if training is not None:
            stop_training(training, run_dir, at_once=server.hurried)
    if training is not None and training.returncode not in (0, None) and server.caught is None:
        return 1
    return 128 + server.caught if server.caught else 0


def stop_training(training: subprocess.Popen, run_dir: Path, at_once: bool = False) -> None:
    """Stop the run after its current step and wait until it has saved; a second Ctrl+C (now, or `at_once`: already
    while the server closed) stops waiting."""
    if training.poll() is not None:
        return
    print("Stopping the training run after its current step and saving...", file=sys.stderr, flush=True)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    training.send_signal(signal.SIGTERM)
    try:
        if not at_once:
            training.wait()
    except KeyboardInterrupt:
        at_once = True
    if at_once:
        training.send_signal(signal.SIGINT)  # a second signal: it aborts at once, keeping its last checkpoint
        training.wait()
    print(last_line(run_dir / "train.log"), file=sys.stderr, flush=True)
