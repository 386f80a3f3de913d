"""`minigpt-tui serve`: the `--attach` dashboard of a run directory in a browser, with textual-serve.

textual-serve starts the command it serves once per browser connection, so the command served is the attach
mode, which only reads the run's files: a page load never starts a training run. With `--train`, this
process also starts the run, headless, as a child whose log goes to RUN_DIR/train.log, and stopping the
server (Ctrl+C, SIGTERM, SIGHUP) stops the run after its current step and waits until it has saved.
"""

import asyncio
import importlib.util
import logging
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

INSTALL_EXTRA = "pip install 'minigpt-tui[web]'"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def textual_serve_missing() -> str | None:
    """The one-line error when textual-serve is not installed, else None."""
    if importlib.util.find_spec("textual_serve") is None:
        return f"serving the dashboard in a browser needs the textual-serve package: {INSTALL_EXTRA}"
    return None


def attach_command(run_dir: Path, device: str) -> str:
    """The command textual-serve runs for each browser connection: the app, attached to the run directory.

    `exec` makes the app the server's own child (not a shell's), so that it sees the server go away.
    """
    app = [sys.executable, "-m", "minigpt_tui.cli", "--attach", str(run_dir), "--device", device]
    return "exec " + shlex.join(app)


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
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )


def _die_with_parent() -> None:
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def last_line(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


def serve(run_dir: Path, host: str, port: int, device: str, training: subprocess.Popen | None) -> int:
    """Serve the dashboard until a signal stops the server (or the training run fails); returns the exit status."""
    from textual_serve.server import Server

    class DashboardServer(Server):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.caught: int | None = None  # the signal that stopped the server
            self.connections: set[asyncio.Task] = set()  # one per browser tab

        async def on_startup(self, app) -> None:
            logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # not a line per request
            loop = asyncio.get_running_loop()
            for sig in STOP_SIGNALS:  # textual-serve's own handlers do not tell which signal it was
                loop.add_signal_handler(sig, self.stop, sig)
            where = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
            print(f"Serving the dashboard of {run_dir} on {where} (one app per browser tab); Ctrl+C stops", end="")
            print(" the server and the training run, which saves first" if training else " the server", flush=True)
            if host not in LOOPBACK:
                print(f"Warning: --host {host}: whoever can reach this port can see the run and chat with it")
            if training:
                app["watch_training"] = asyncio.create_task(self.watch_training())

        def stop(self, sig: int) -> None:
            self.caught = sig
            self.request_exit()

        async def watch_training(self) -> None:
            assert training is not None
            status = await asyncio.to_thread(training.wait)
            log = run_dir / "train.log"
            if status == 0:
                print(f"The training run finished ({last_line(log)}); its dashboard is still served.", flush=True)
                return
            message = f"minigpt-tui: error: the training run ended (status {status}): {last_line(log)}"
            print(message, file=sys.stderr, flush=True)
            asyncio.get_running_loop().call_soon(self.request_exit)  # nothing left to serve

        async def handle_websocket(self, request):
            task = asyncio.current_task()
            assert task is not None
            self.connections.add(task)
            try:
                return await super().handle_websocket(request)
            finally:
                self.connections.discard(task)

        async def on_shutdown(self, app) -> None:
            # aiohttp would wait up to a minute for open pages to go; end their connections (and so their apps,
            # which textual-serve then tells to quit) now.
            for task in self.connections:
                task.cancel()
            await asyncio.gather(*self.connections, return_exceptions=True)

        async def handle_index(self, request):
            # The page's links and websocket go where the browser reached us: through an SSH tunnel, that is
            # localhost and the tunnel's own port, whatever --host and --port are here.
            self.public_url = f"{request.scheme}://{request.host}"
            return await super().handle_index(request)

    server = DashboardServer(attach_command(run_dir, device), host=host, port=port, title=f"minigpt-tui: {run_dir}")
    try:
        server.serve()
    finally:
        if training is not None:
            stop_training(training, run_dir)
    if training is not None and training.returncode not in (0, None) and server.caught is None:
        return 1
    return 128 + server.caught if server.caught else 0


def stop_training(training: subprocess.Popen, run_dir: Path) -> None:
    """Stop the run after its current step and wait until it has saved; a second Ctrl+C stops waiting."""
    if training.poll() is not None:
        return
    print("Stopping the training run after its current step and saving...", file=sys.stderr, flush=True)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    training.send_signal(signal.SIGTERM)
    try:
        training.wait()
    except KeyboardInterrupt:
        training.send_signal(signal.SIGINT)  # a second signal: it aborts at once, keeping its last checkpoint
        training.wait()
    print(last_line(run_dir / "train.log"), file=sys.stderr, flush=True)
