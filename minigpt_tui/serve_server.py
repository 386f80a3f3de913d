"""The web server of `minigpt-tui serve`: textual-serve's, with an app process per browser connection, a few at a
time, none outliving its server or connection.

textual-serve starts each app through a shell, in the server's process group (so Ctrl+C in the server's
terminal reaches the apps too, mid-start) and waits however long an app takes to quit. Here an app is started
directly, in a session of its own, with the kernel's parent-death signal armed (SIGTERM, on Linux, if the
server dies however it dies), and one that does not quit when asked is terminated, then killed.
"""

import asyncio
import contextlib
import json
import logging
import shlex
import subprocess
import sys
from pathlib import Path

from aiohttp import WSCloseCode, web
from textual_serve.app_service import AppService
from textual_serve.server import Server, to_int

from minigpt_tui.serve import LOOPBACK, STOP_SIGNALS, die_with_parent, last_line
from minigpt_tui.serve_access import Access

QUIT_GRACE_S = 10.0  # how long an app asked to quit may take (it may still be loading torch) before SIGTERM


class AppProcess(AppService):
    """One app process (textual-serve's AppService), started from `argv` without a shell, and sure to end."""

    def __init__(self, argv: list[str], **kwargs) -> None:
        super().__init__(shlex.join(argv), **kwargs)
        self.argv = argv
        self.quitting = False  # it has said it quits, or its output has ended: it holds no session any more

    async def _open_app_process(self, width: int = 80, height: int = 24) -> asyncio.subprocess.Process:
        self._process = process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self._build_environment(width=width, height=height),
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )
        assert process.stdin is not None
        self._stdin = process.stdin
        return process

    async def run(self) -> None:
        await super().run()
        self.quitting = True
        await self.remote_close()  # the app has gone (crashed, say): the page says so

    async def on_meta(self, data: bytes) -> None:
        if json.loads(data).get("type") == "exit":  # the app quits; then textual-serve closes the page's connection
            self.quitting = True  # so its session is free by the time the page offers to restart
        await super().on_meta(data)

    def end_now(self) -> None:
        """Terminate the app (SIGTERM: it leaves at once), without waiting for it to quit when asked."""
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.terminate()

    async def stop(self) -> None:
        """Ask the app to quit; terminate it if it does not, kill it if that does not either; wait for its end."""
        process = self._process
        if process is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(super().stop()), QUIT_GRACE_S)
        except TimeoutError:
            for end in (process.terminate, process.kill):
                with contextlib.suppress(ProcessLookupError):  # it has just exited
                    end()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.wait(), QUIT_GRACE_S)
                    break
        await process.wait()


class DashboardServer(Server):
    """textual-serve's server, admitting only the user's browser (`serve_access`), at most `max_sessions` apps at
    a time, each of which ends with its connection (`serve_apps`)."""

    def __init__(self, run_dir: Path, app_argv: list[str], access: Access, max_sessions: int, **kwargs) -> None:
        super().__init__(shlex.join(app_argv), title=f"minigpt-tui: {run_dir}", **kwargs)
        self.run_dir, self.app_argv, self.access, self.max_sessions = run_dir, app_argv, access, max_sessions
        self.training: subprocess.Popen | None = None
        self.caught: int | None = None  # the signal that stopped the server
        self.connections: set[asyncio.Task] = set()  # one per browser tab
        self.apps: set[AppProcess] = set()  # one per connection, until its end has been dealt with
        self.hurried = False  # a second signal came: stop waiting for the apps (and the run) to finish

    async def _make_app(self) -> web.Application:
        app = await super()._make_app()
        app.middlewares.append(self.access.middleware)
        return app

    def serve(self, debug: bool = False) -> None:
        """Serve until a signal stops the server (textual-serve's `serve`, which says where before it listens)."""
        self.initialize_logging()
        web.run_app(self._make_app(), host=self.host, port=self.port, handle_signals=False, print=self.announce)

    async def on_startup(self, app) -> None:
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # not a line per request (nor the token)
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:  # textual-serve's own handlers do not tell which signal it was
            loop.add_signal_handler(sig, self.stop, sig)
        if self.training:
            app["watch_training"] = asyncio.create_task(self.watch_training(self.training))

    def announce(self, _: str) -> None:
        """Once the server listens: where to open it, token included (the only place the token is written)."""
        print(f"Serving the dashboard of {self.run_dir} on {self.access.url(self.host, self.port)}", flush=True)
        print(f"(one app per browser tab, {self.max_sessions} at most); Ctrl+C stops", end="")
        print(" the server and the training run, which saves first" if self.training else " the server", flush=True)
        if self.host not in LOOPBACK:
            print(f"Warning: --host {self.host}: whoever can reach this port and has the token can see the run")

    def stop(self, sig: int) -> None:
        if self.caught is not None:  # a second Ctrl+C, while the apps are asked to quit
            self.hurried = True
            for app in self.apps:
                app.end_now()
            return
        self.caught = sig
        self.request_exit()

    async def watch_training(self, training: subprocess.Popen) -> None:
        status = await asyncio.to_thread(training.wait)
        log = self.run_dir / "train.log"
        if status == 0:
            print(f"The training run finished ({last_line(log)}); its dashboard is still served.", flush=True)
            return
        message = f"minigpt-tui: error: the training run ended (status {status}): {last_line(log)}"
        print(message, file=sys.stderr, flush=True)
        asyncio.get_running_loop().call_soon(self.request_exit)  # nothing left to serve

    async def handle_index(self, request):
        if self.full():
            return web.Response(status=503, text=self.why_full() + "\n")
        # The page's links and websocket go where the browser reached us: through an SSH tunnel, that is
        # localhost and the tunnel's own port, whatever --host and --port are here.
        self.public_url = f"{request.scheme}://{request.host}"
        return await super().handle_index(request)

    def full(self) -> bool:
        """Whether --max-sessions apps run (one that quits frees its session; `stop` sees that it ends)."""
        return sum(not app.quitting for app in self.apps) >= self.max_sessions

    def why_full(self) -> str:
        return (
            f"all {self.max_sessions} sessions of this dashboard are in use (--max-sessions {self.max_sessions}):"
            " close one of its tabs, then reload this page"
        )

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        websocket = web.WebSocketResponse(heartbeat=15)
        await websocket.prepare(request)
        if self.full():  # no app: the page shows why, then that its session ended
            await websocket.send_bytes(f"\r\nminigpt-tui serve: {self.why_full()}.\r\n".encode())
            await websocket.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"all sessions in use")
            return websocket
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        app = AppProcess(
            self.app_argv,
            write_bytes=websocket.send_bytes,
            write_str=websocket.send_str,
            close=websocket.close,
            download_manager=self.download_manager,
        )
        self.apps.add(app)
        try:
            await app.start(to_int(request.query.get("width", "80"), 80), to_int(request.query.get("height", "24"), 24))
            await self._process_messages(websocket, app)
        except (ValueError, AssertionError) as e:  # a message that is not textual-serve's protocol
            logging.getLogger("textual-serve").warning("closing a connection: %s", e)
        finally:
            await app.stop()
            await websocket.close()
            self.apps.discard(app)
            self.connections.discard(task)
        return websocket

    async def on_shutdown(self, app) -> None:
        # aiohttp would wait up to a minute for open pages to go; end their connections (and so their apps, each
        # of which is waited for: no process outlives the server) now. An app ended before it was ready did not
        # fail to start, as textual-serve would log.
        logging.getLogger("textual-serve").setLevel(logging.CRITICAL)
        for task in self.connections:
            task.cancel()
        await asyncio.gather(*self.connections, return_exceptions=True)
