"""Textual's web driver (what textual-serve runs the app with), made to quit when its server goes away.

textual-serve starts one app process per browser connection and talks to it through the process's stdin and
stdout. Textual's WebDriver stops reading when stdin ends but leaves the app running, and a write to the
closed stdout raises in the middle of drawing: a server that is killed leaves its apps behind, alive with
no one to see them. Here the end of stdin (the server closed the connection, or died) and a broken stdout
both quit the app, as `q` does.
"""

import asyncio
import os

from textual import messages
from textual.drivers.web_driver import WebDriver


class ServedDriver(WebDriver):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server_gone = False
        self._write = self._write_to_server

    def _write_to_server(self, data: bytes) -> None:
        if self._server_gone:
            return
        try:
            os.write(self.fileno, data)
        except OSError:  # BrokenPipeError: the server is gone
            self._server_gone = True
            self._quit()

    def start_application_mode(self) -> None:
        self._loop = asyncio.get_running_loop()
        super().start_application_mode()

    def run_input_thread(self) -> None:
        super().run_input_thread()
        if not self.exit_event.is_set():  # the input ended while the app runs: the server is gone
            self._quit()

    def _quit(self) -> None:
        """Ask the app to quit, from any thread (the input thread, or the loop while it draws)."""
        if self._loop is not None and not self._loop.is_closed():
            asyncio.run_coroutine_threadsafe(self._app._post_message(messages.ExitApp()), self._loop)
