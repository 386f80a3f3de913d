"""minigpt-tui serve: the attach dashboard per browser connection, training only with --train, no orphans.

The server runs as a real process on a free loopback port; a connection is an aiohttp websocket client speaking
textual-serve's protocol, or a real browser (headless chromium through Selenium) where the machine has one.
"""

import asyncio
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.checkpoint import load_model
from minigpt_tui.cli import main

pytest.importorskip("textual_serve", reason="minigpt-tui serve needs the [web] extra (textual-serve)")
aiohttp = pytest.importorskip("aiohttp")

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads the process table from /proc")

TINY = ["--preset", "tiny", "--context-length", "16", "--eval-freq", "2", "--eval-batches", "1", "--device", "cpu"]
ANSI = re.compile(r"\x1b\[[0-9;?$]*[A-Za-z]")
WAIT_S = 120  # generous: the machine may be busy; nothing here measures time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_for(what: str, condition, timeout: float = WAIT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def processes() -> dict[int, tuple[int, str]]:
    """Every process: pid -> (parent pid, command line)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        found[int(entry.name)] = (ppid, cmdline)
    return found


def children(pid: int, marker: str) -> list[int]:
    return [child for child, (ppid, cmdline) in processes().items() if ppid == pid and marker in cmdline]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's wait is missing


def training_processes() -> list[int]:
    return [pid for pid, (_, cmdline) in processes().items() if "minigpt_tui.cli train" in cmdline]


def start_server(*args, cwd) -> tuple[subprocess.Popen, int]:
    port = free_port()
    code = "import sys; from minigpt_tui.cli import main; sys.exit(main())"
    server = subprocess.Popen(
        [sys.executable, "-c", code, "serve", *args, "--port", str(port)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return server, port


async def connect(port: int, until: str, timeout: float = WAIT_S):
    """Open a textual-serve connection, as the page does, and read the screen until `until` shows on it.
    Returns the session, the websocket (open) and the screen's text so far."""
    wait_for("the server", lambda: listening(port))
    session = aiohttp.ClientSession()
    try:
        ws = await session.ws_connect(f"http://127.0.0.1:{port}/ws?width=100&height=30")
        text = ""
        async with asyncio.timeout(timeout):
            while until not in ANSI.sub("", text):
                message = await ws.receive()
                if message.type == aiohttp.WSMsgType.BINARY:
                    text += message.data.decode("utf-8", errors="replace")
                elif message.type != aiohttp.WSMsgType.TEXT:
                    raise AssertionError(f"the connection ended before {until!r} showed: {ANSI.sub('', text)[-500:]}")
    except BaseException:
        await session.close()
        raise
    asyncio.get_running_loop().create_task(keep_reading(ws))  # as a browser does, answering the server's close
    return session, ws, ANSI.sub("", text)


async def keep_reading(ws) -> None:
    async for _ in ws:
        pass


def end(*procs: subprocess.Popen) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_needs_a_run_directory_or_train(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["serve"])
    assert exit_.value.code == 2
    assert "give the run directory to follow (RUN_DIR), or --train" in capsys.readouterr().err


def test_training_flags_without_train_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["serve", str(tmp_path), "--epochs", "3"])
    assert exit_.value.code == 2
    assert "serve without --train only follows a run, so --epochs does not apply; add --train" in (
        capsys.readouterr().err
    )


def test_training_flags_before_serve_count_as_given_to_it(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--epochs", "3", "serve", str(tmp_path)])
    assert exit_.value.code == 2
    assert "so --epochs does not apply; add --train" in capsys.readouterr().err


def test_a_missing_web_extra_is_one_line_and_starts_nothing(tmp_path, monkeypatch, capsys):
    real_find_spec = __import__("importlib.util").util.find_spec
    monkeypatch.setattr(
        "importlib.util.find_spec", lambda name, *a: None if name == "textual_serve" else real_find_spec(name, *a)
    )
    assert main(["serve", "--train", *TINY, "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert err == "minigpt-tui: error: serving the dashboard in a browser needs the textual-serve package: " + (
        "pip install 'minigpt-tui[web]'\n"
    )
    assert not (tmp_path / "run").exists()


def test_a_port_in_use_is_one_line_before_training_starts(tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--train", *TINY, "--out", str(tmp_path / "run"), "--port", str(port)]) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


async def test_ctrl_c_stops_the_run_after_its_step_saves_and_leaves_no_process(tmp_path, short_corpus):
    server, port = start_server("--train", *TINY, "--data", str(short_corpus), "--epochs", "1000", cwd=tmp_path)
    try:
        session, ws, screen = await connect(port, until="running")  # the app shows the run training
        assert "attached to results" in screen
        (trainer,) = children(server.pid, "minigpt_tui.cli train")
        (app,) = children(server.pid, "--attach")
        assert training_processes() == [trainer]  # the page load started an app, not a second training run
        server.send_signal(signal.SIGINT)  # Ctrl+C
        out, err = await asyncio.to_thread(server.communicate, timeout=WAIT_S)
        await session.close()
        assert server.returncode == 130, err
        assert "Stopping the training run after its current step and saving..." in err
        log = (tmp_path / "results" / "train.log").read_text()
        assert "Stopped at epoch" in log and "saved" in log
        _, ckpt = load_model(tmp_path / "results" / "last.pt")
        assert ckpt["progress"]["global_step"] >= 1
        assert json.loads((tmp_path / "results" / "status.json").read_text())["state"] == "stopped"
        wait_for("the served app and the training run to exit", lambda: not alive(app) and not alive(trainer))
    finally:
        end(server)


def test_a_run_that_fails_to_start_stops_the_server_with_its_error(tmp_path):
    server, port = start_server("--train", *TINY, "--data", "missing.txt", cwd=tmp_path)
    try:
        out, err = server.communicate(timeout=WAIT_S)
        assert server.returncode == 1
        assert "minigpt-tui: error: the training run ended (status 1): " in err and "missing.txt" in err
    finally:
        end(server)


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
async def test_the_served_app_exits_when_its_server_goes_away(how, tmp_path):
    server, port = start_server(str(tmp_path / "run"), cwd=tmp_path)
    try:
        session, ws, screen = await connect(port, until="waiting for")  # the run has not started: it waits
        (app,) = children(server.pid, "--attach")
        server.send_signal(getattr(signal, how))
        await asyncio.to_thread(server.wait, timeout=WAIT_S)
        wait_for("the served app to exit", lambda: not alive(app))  # not left behind, spinning or asleep
        await session.close()
    finally:
        end(server)


async def test_a_killed_server_stops_its_training_run_which_saves(tmp_path, short_corpus):
    server, port = start_server("--train", *TINY, "--data", str(short_corpus), "--epochs", "1000", cwd=tmp_path)
    try:
        session, ws, _ = await connect(port, until="running")
        (trainer,) = children(server.pid, "minigpt_tui.cli train")
        server.kill()  # no chance to stop anything itself: the kernel tells the run (Linux's parent-death signal)
        server.wait()
        wait_for("the orphaned training run to save and exit", lambda: not alive(trainer))
        assert "Stopped at epoch" in (tmp_path / "results" / "train.log").read_text()
        await session.close()
    finally:
        end(server)


def browser():
    """Headless chromium through Selenium, or a skip that says what is missing."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test needs selenium (the test extra)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if not chromium or not chromedriver:
        pytest.skip("no browser: install Debian's chromium and chromium-driver (apt-get install chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,640"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(chromedriver))
    # xterm.js draws on a canvas: keep what the page receives, to read the screen it draws.
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_SCREEN})
    return driver


RECORD_SCREEN = """
window.received = '';
const NativeWebSocket = window.WebSocket;
window.WebSocket = function (...args) {
  const ws = new NativeWebSocket(...args);
  ws.addEventListener('message', async (e) => {
    window.received += typeof e.data === 'string' ? '' : await new Blob([e.data]).text();
  });
  return ws;
};
window.WebSocket.prototype = NativeWebSocket.prototype;
"""


def test_a_browser_shows_the_dashboard_of_a_run_and_starts_no_training(tmp_path, short_corpus):
    driver = browser()
    run_dir = tmp_path / "run"
    train_cmd = [sys.executable, "-m", "minigpt_tui.cli", "train", *TINY, "--data", str(short_corpus)]
    trainer = subprocess.Popen(
        [*train_cmd, "--epochs", "1000", "--out", str(run_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    server, port = start_server(str(run_dir), cwd=tmp_path)
    try:
        wait_for("the run's first evaluation", lambda: (run_dir / "metrics.jsonl").is_file())
        wait_for("the server", lambda: listening(port))
        driver.get(f"http://127.0.0.1:{port}/")
        launch_page = driver.get_screenshot_as_png()

        def screen() -> str:
            return ANSI.sub("", driver.execute_script("return window.received"))

        text = wait_for("the app on the page", lambda: "running" in screen() and "attached to" in screen() and screen())
        assert "global step" in text  # the loss chart's axis
        assert "first-byte" in driver.execute_script("return document.body.className")  # the terminal is shown
        assert driver.get_screenshot_as_png() != launch_page
        assert training_processes() == [trainer.pid]  # opening the page trained nothing
        (app,) = children(server.pid, "--attach")
        driver.quit()  # the tab closes: its app goes
        wait_for("the app of the closed page to exit", lambda: not alive(app))
    finally:
        driver.quit()
        end(server, trainer)
