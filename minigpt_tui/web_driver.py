"""Textual's web driver (what textual-serve runs the app with), made to quit when its server goes away.

textual-serve starts one app process per browser connection and talks to it through the process's stdin and
stdout. Textual's WebDriver stops reading when stdin ends but leaves the app running, and a write to the
closed stdout raises in the middle of drawing: a server that is gone leaves its apps behind, alive with no one
to see them. Here the server is gone when stdin ends, stdout breaks, or the process gets another parent (the
server died and init adopted it), whichever is seen first; then the app hangs up as in a closed terminal
(`MiniGPTApp.leave`: it quits, and the process leaves soon even if Textual's shutdown stalls), and draws nothing
more meanwhile. `minigpt-tui serve` also arms the kernel's parent-death signal in each app it starts.
"""

import os
import signal
import threading

from textual.drivers.web_driver import WebDriver

PARENT_CHECK_S = 0.5


class ServedDriver(WebDriver):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._parent = os.getppid()
        self._server_gone = threading.Event()
        self._write = self._write_to_server

    def _write_to_server(self, data: bytes) -> None:
        if self._server_gone.is_set():
            return
        try:
            os.write(self.fileno, data)
        except OSError:  # BrokenPipeError: the server is gone
            self.server_gone()

    def start_application_mode(self) -> None:
        super().start_application_mode()
        threading.Thread(target=self._watch_parent, name="served-parent", daemon=True).start()

    def _watch_parent(self) -> None:
        while not self.exit_event.wait(PARENT_CHECK_S):
            if os.getppid() != self._parent:
                self.server_gone()
                return

    def run_input_thread(self) -> None:
        super().run_input_thread()
        if not self.exit_event.is_set():  # the input ended while the app runs: the server is gone
            self.server_gone()

    def server_gone(self) -> None:
        """Hang up, once, from any thread: the signal's handler runs on the app's loop (see `MiniGPTApp.leave`)."""
        if not self._server_gone.is_set():
            self._server_gone.set()
            os.kill(os.getpid(), signal.SIGHUP)
