"""minigpt-tui serve: the attach dashboard per browser connection, for the user's browser only (its address,
its token, a few sessions at a time), training only with --train, and no process left behind however it ends.

The server runs as a real process on a free loopback port, in a session of its own (as a command started in a
terminal: Ctrl+C there is SIGINT to its process group); a connection is an aiohttp websocket client speaking
textual-serve's protocol, or a real browser (headless chromium) where the machine has one. Whether an app
process was started, or is left, is read from the process table.
"""

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
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
TOKEN = "test-token"


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


def training_processes(where: Path) -> list[int]:
    """The training runs started in `where` or naming it (not those of anyone else on the machine)."""

    def here(pid: int, cmdline: str) -> bool:
        try:
            return str(where) in cmdline or Path(f"/proc/{pid}/cwd").resolve().is_relative_to(where.resolve())
        except OSError:
            return False

    return [pid for pid, (_, cmd) in processes().items() if "minigpt_tui.cli train" in cmd and here(pid, cmd)]


def start_server(*args, cwd, token: str | None = TOKEN) -> tuple[subprocess.Popen, int]:
    port = free_port()
    code = "import sys; from minigpt_tui.cli import main; sys.exit(main())"
    server = subprocess.Popen(
        [sys.executable, "-c", code, "serve", *args, "--port", str(port), *(["--token", token] if token else [])],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    return server, port


def ws_url(port: int, token: str | None = TOKEN) -> str:
    return f"http://127.0.0.1:{port}/ws?width=100&height=30" + (f"&token={token}" if token else "")


async def connect(port: int, until: str, timeout: float = WAIT_S):
    """Open a textual-serve connection, as the page does, and read the screen until `until` shows on it.
    Returns the session, the websocket (open) and the screen's text so far."""
    wait_for("the server", lambda: listening(port))
    session = aiohttp.ClientSession()
    try:
        ws = await session.ws_connect(ws_url(port), headers={"Origin": f"http://127.0.0.1:{port}"})
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
        assert training_processes(tmp_path) == [trainer]  # the page load started an app, not a second training run
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


async def open_app(port: int, server: subprocess.Popen, when: str):
    """A connection and its app process: `starting` (the process exists, its screen not yet drawn) or `shown`."""
    if when == "shown":
        session, ws, _ = await connect(port, until="waiting for")  # the run has not started: it waits
    else:
        wait_for("the server", lambda: listening(port))
        session = aiohttp.ClientSession()
        ws = await session.ws_connect(ws_url(port))
    (app,) = wait_for("the app process", lambda: children(server.pid, "--attach"))
    return session, ws, app


SERVER_ENDS = {
    "SIGKILL": lambda server: server.kill(),
    "SIGTERM": lambda server: server.terminate(),
    "Ctrl+C": lambda server: os.killpg(server.pid, signal.SIGINT),  # as the terminal sends it, to the whole group
}


@pytest.mark.parametrize(
    "how, when",
    [("SIGKILL", "shown"), ("SIGTERM", "shown"), ("Ctrl+C", "shown"), ("SIGKILL", "starting"), ("Ctrl+C", "starting")],
)
async def test_the_served_app_exits_when_its_server_goes_away(how, when, tmp_path):
    server, port = start_server(str(tmp_path / "run"), cwd=tmp_path)
    try:
        session, ws, app = await open_app(port, server, when)
        SERVER_ENDS[how](server)
        out, err = await asyncio.to_thread(server.communicate, timeout=WAIT_S)
        wait_for("the served app to exit", lambda: not alive(app))  # not left behind, spinning or asleep
        assert "Traceback" not in err and "Event loop is closed" not in err, err
        await session.close()
    finally:
        end(server)


async def test_the_served_app_exits_when_its_browser_crashes_mid_load(tmp_path):
    server, port = start_server(str(tmp_path / "run"), cwd=tmp_path)
    try:
        session, ws, app = await open_app(port, server, "starting")
        ws._response.connection.transport.abort()  # the connection drops, no goodbye: a crashed or killed browser
        wait_for("the app of the gone browser to exit", lambda: not alive(app))
        assert server.poll() is None  # the server serves on
        await session.close()
    finally:
        end(server)


async def test_sigterm_ends_a_served_app_and_its_page_restarts_at_once(tmp_path):
    server, port = start_server(str(tmp_path / "run"), "--max-sessions", "1", cwd=tmp_path)
    try:
        session, ws, app = await open_app(port, server, "shown")
        os.kill(app, signal.SIGTERM)
        async with asyncio.timeout(WAIT_S):
            while not ws.closed:  # the page's connection closes: its page says "Session ended", with Restart
                await asyncio.sleep(0.2)
        async with browser_session() as restart:  # Restart, at once: the ended app holds no session any more
            async with restart.get(f"http://127.0.0.1:{port}/?token={TOKEN}") as page:
                assert page.status == 200, await page.text()
        wait_for("the app to exit on SIGTERM", lambda: not alive(app))
        await session.close()
    finally:
        end(server)


def test_a_served_app_whose_parent_dies_exits_though_its_pipes_stay_open(tmp_path):
    """Neither the end of its input nor a broken output: only its parent pid changes (and no parent-death signal
    is armed). Such an app must notice, and exit."""
    env = {**os.environ, "TEXTUAL_DRIVER": "textual.drivers.web_driver:WebDriver"}
    app_cmd = [sys.executable, "-m", "minigpt_tui.cli", "--attach", str(tmp_path / "run")]
    stand_in = f"import subprocess; app = subprocess.Popen({app_cmd!r}); print(app.pid, flush=True); app.wait()"
    parent = subprocess.Popen(  # a stand-in server that holds no pipe of the app's: this test holds them
        [sys.executable, "-c", stand_in], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
    )
    try:
        app = int(parent.stdout.readline())
        screen = parent.stdout.read1(1 << 16)
        while b"__GANGLION__" not in screen:  # the app's driver has started
            screen += parent.stdout.read1(1 << 16)
        threading.Thread(target=parent.stdout.read, daemon=True).start()  # keep its output flowing
        parent.kill()
        parent.wait()
        wait_for("the orphaned app to exit", lambda: not alive(app))
    finally:
        end(parent)
        parent.stdin.close()


def test_a_headless_browser_that_takes_a_screenshot_and_exits_leaves_no_app(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or pytest.skip("no chromium here")
    server, port = start_server(str(tmp_path / "run"), cwd=tmp_path)
    try:
        wait_for("the server", lambda: listening(port))
        shot = subprocess.run(
            [
                chromium,
                "--headless=new",
                "--no-sandbox",
                f"--user-data-dir={tmp_path / 'profile'}",
                f"--screenshot={tmp_path / 'page.png'}",
                "--virtual-time-budget=15000",
                f"http://127.0.0.1:{port}/?token={TOKEN}",
            ],
            capture_output=True,
            timeout=WAIT_S,
        )
        assert (tmp_path / "page.png").is_file(), shot.stderr[-500:]
        wait_for("no app left by the browser that went", lambda: not children(server.pid, "--attach"))
        assert server.poll() is None
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


async def refused(port: int, url: str, headers: dict | None = None) -> tuple[int, str]:
    """The status and text of a WebSocket request that the server refuses before upgrading it."""
    wait_for("the server", lambda: listening(port))
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refusal:
            await session.ws_connect(url, headers=headers)
        async with session.get(url.replace("/ws?", "/?"), headers=headers, allow_redirects=False) as page:
            return refusal.value.status, f"{page.status} {await page.text()}"


def browser_session() -> aiohttp.ClientSession:
    """A client that keeps cookies as a browser does (aiohttp's own keeps none for IP addresses)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


FOREIGN = {
    "a foreign Origin": (TOKEN, {"Origin": "http://evil.example"}),
    "a foreign Host (DNS rebinding)": (TOKEN, {"Host": "evil.example", "Origin": "http://evil.example"}),
    "no token": (None, {}),
    "a wrong token": ("guessed", {}),
    "a wrong token in the cookie": (None, {"Cookie": "minigpt-tui-token-{port}=guessed"}),
}


async def test_other_pages_and_tokenless_clients_are_refused_and_start_no_app(tmp_path):
    server, port = start_server(str(tmp_path / "run"), cwd=tmp_path)
    try:
        for what, (token, headers) in FOREIGN.items():
            headers = {k: v.format(port=port) for k, v in headers.items()}
            status, page = await refused(port, ws_url(port, token), headers)
            assert (status, page[:4]) == (403, "403 "), what
            assert children(server.pid, "--attach") == [], f"{what} started an app"
        assert "no token; open the address `minigpt-tui serve` printed" in page or "wrong token" in page
        session, ws, _ = await connect(port, until="waiting for")  # the user's own page still gets its app
        assert len(children(server.pid, "--attach")) == 1
        await session.close()
    finally:
        end(server)
    out, err = server.communicate()
    assert "refused GET /ws: requests from other pages (Origin 'http://evil.example')" in err
    assert TOKEN not in err  # the token is printed once, in the address to open, and nowhere else
    assert out.count(TOKEN) == 1


async def test_the_printed_address_admits_a_browser_with_a_new_token_kept_in_a_cookie(tmp_path):
    server, port = start_server(str(tmp_path / "run"), cwd=tmp_path, token=None)
    try:
        first = await asyncio.to_thread(server.stdout.readline)
        url = re.search(r"http://\S+", first).group()
        token = url.split("?token=")[1]
        assert url == f"http://127.0.0.1:{port}/?token={token}" and len(token) >= 32
        async with browser_session() as browser:
            async with browser.get(url, allow_redirects=False) as landing:
                assert landing.status == 302 and landing.headers["Location"] == "/"  # the token leaves the URL
            async with browser.get(f"http://127.0.0.1:{port}/") as page:
                assert page.status == 200 and "/ws" in await page.text()  # the page, admitted by its cookie
            assert children(server.pid, "--attach") == []  # a page load alone starts no app
    finally:
        end(server)


async def test_a_connection_over_max_sessions_is_told_why_and_starts_no_app(tmp_path):
    server, port = start_server(str(tmp_path / "run"), "--max-sessions", "1", cwd=tmp_path)
    try:
        session, ws, _ = await connect(port, until="waiting for")
        (app,) = children(server.pid, "--attach")
        async with browser_session() as second:
            async with second.ws_connect(ws_url(port)) as over:
                message = await over.receive()
                assert b"all 1 sessions of this dashboard are in use (--max-sessions 1)" in message.data
                assert (await over.receive()).type == aiohttp.WSMsgType.CLOSE
                assert over.close_code == aiohttp.WSCloseCode.TRY_AGAIN_LATER
            async with second.get(f"http://127.0.0.1:{port}/?token={TOKEN}") as page:
                assert page.status == 503 and "close one of its tabs, then reload" in await page.text()
            assert children(server.pid, "--attach") == [app]
        await ws.close()  # the first tab closes: its app ends and frees its session
        wait_for("the first tab's app to exit", lambda: not alive(app))
        session2, ws2, _ = await connect(port, until="waiting for")
        await session2.close()
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
        driver.get(f"http://127.0.0.1:{port}/?token={TOKEN}")
        assert TOKEN not in driver.current_url  # kept in the browser session's cookie, out of the address bar
        launch_page = driver.get_screenshot_as_png()

        def screen() -> str:
            return ANSI.sub("", driver.execute_script("return window.received"))

        text = wait_for("the app on the page", lambda: "running" in screen() and "attached to" in screen() and screen())
        assert "global step" in text  # the loss chart's axis
        assert "first-byte" in driver.execute_script("return document.body.className")  # the terminal is shown
        assert driver.get_screenshot_as_png() != launch_page
        assert training_processes(tmp_path) == [trainer.pid]  # opening the page trained nothing
        (app,) = children(server.pid, "--attach")
        driver.quit()  # the tab closes: its app goes
        wait_for("the app of the closed page to exit", lambda: not alive(app))
    finally:
        driver.quit()
        end(server, trainer)
