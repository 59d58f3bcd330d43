"""A small headless-Chromium harness for tests that check HTML pages (reports, the site).

It drives Debian's ``chromium`` (``apt-get install -y chromium``) over the DevTools protocol
with ``websocket-client``; no browser is ever downloaded. Use::

    from tests.chromium import open_page

    with open_page(path_or_url, tmp_path) as page:      # skips the test without chromium
        assert page.console_errors == []
        assert page.evaluate("document.querySelectorAll('table').length") >= 1
        page.screenshot(tmp_path / "page.png")

``page.console_errors`` collects console.error calls, uncaught exceptions and browser log
entries of level "error" (failed resource loads, CSP violations, ...), each as a string.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--mute-audio",
]


def find_chromium() -> str | None:
    """Path of a system Chromium (``$TALKBENCH_CHROMIUM`` first), or None."""
    env = os.environ.get("TALKBENCH_CHROMIUM")
    if env and Path(env).is_file():
        return env
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def require_chromium() -> str:
    """The Chromium path, or skip the calling test cleanly."""
    import pytest

    path = find_chromium()
    if path is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    try:
        import websocket  # noqa: F401
    except ImportError:
        pytest.skip("websocket-client is not installed (pip install websocket-client)")
    return path


class Page:
    """One browser tab over a DevTools websocket: navigate, evaluate JS, screenshot."""

    def __init__(self, ws_url: str, timeout: float = 30.0):
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=timeout, suppress_origin=True)
        self.timeout = timeout
        self._next_id = 0
        self.events: list[dict] = []
        self.console_errors: list[str] = []
        self.console_messages: list[str] = []
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")

    # -- protocol
    def _record(self, msg: dict) -> None:
        self.events.append(msg)
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.console_messages.append(f"{params.get('type')}: {text}")
            if params.get("type") in ("error", "assert"):
                self.console_errors.append(f"console.{params.get('type')}: {text}")
        elif method == "Runtime.exceptionThrown":
            d = params.get("exceptionDetails", {})
            desc = d.get("exception", {}).get("description") or d.get("text", "")
            self.console_errors.append(f"uncaught exception: {desc} (line {d.get('lineNumber')})")
        elif method == "Log.entryAdded":
            e = params.get("entry", {})
            self.console_messages.append(f"log {e.get('level')}: {e.get('text')}")
            if e.get("level") == "error":
                self.console_errors.append(f"log error ({e.get('source')}): {e.get('text')} {e.get('url', '')}".strip())

    def _read(self) -> dict:
        msg = json.loads(self.ws.recv())
        if "method" in msg:
            self._record(msg)
        return msg

    def send(self, method: str, **params: Any) -> dict:
        self._next_id += 1
        mid = self._next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            msg = self._read()
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"DevTools {method} failed: {msg['error']}")
                return msg.get("result", {})
        raise TimeoutError(f"DevTools {method}: no answer in {self.timeout} s")

    def wait_for(self, method: str, timeout: float | None = None) -> dict:
        """Wait for an event (returns at once if it already arrived)."""
        for msg in self.events:
            if msg.get("method") == method:
                return msg
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            msg = self._read()
            if msg.get("method") == method:
                return msg
        raise TimeoutError(f"no {method} event in {timeout or self.timeout} s")

    # -- conveniences
    def goto(self, url: str | Path, wait: float = 0.3) -> None:
        """Open a URL (a Path becomes file://) and wait for its load event, then ``wait`` s."""
        if isinstance(url, Path) or "://" not in str(url):
            url = Path(url).resolve().as_uri()
        self.events.clear()
        result = self.send("Page.navigate", url=str(url))
        if result.get("errorText"):
            raise RuntimeError(f"{url}: navigation failed ({result['errorText']})")
        self.wait_for("Page.loadEventFired")
        end = time.monotonic() + wait  # let late console messages arrive
        self.ws.settimeout(0.05)
        try:
            while time.monotonic() < end:
                try:
                    self._read()
                except Exception:  # websocket timeout: nothing pending
                    pass
        finally:
            self.ws.settimeout(self.timeout)

    def evaluate(self, expression: str) -> Any:
        """Value of a JS expression (promises awaited), returned by value."""
        r = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"JS error in {expression!r}: {r['exceptionDetails'].get('text')}")
        return r.get("result", {}).get("value")

    def screenshot(self, path: str | Path, full_page: bool = True) -> Path:
        """PNG screenshot (the whole page by default)."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
            m = self.send("Page.getLayoutMetrics")
            size = m.get("cssContentSize") or m.get("contentSize")
            params["clip"] = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        data = self.send("Page.captureScreenshot", **params)["data"]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass


class Browser:
    """A headless Chromium process with its own throw-away profile."""

    def __init__(self, executable: str | None = None, width: int = 1280, height: int = 900,
                 timeout: float = 30.0):
        self.executable = executable or find_chromium()
        if self.executable is None:
            raise RuntimeError("chromium is not installed (apt-get install -y chromium)")
        self.profile = tempfile.mkdtemp(prefix="talkbench-chromium-")
        self.timeout = timeout
        args = [self.executable, *FLAGS, f"--user-data-dir={self.profile}", f"--window-size={width},{height}",
                "--remote-debugging-port=0", "--remote-allow-origins=*", "about:blank"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.port = self._port()

    def _port(self) -> int:
        marker = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace")[-2000:] if self.proc.stderr else ""
                raise RuntimeError(f"chromium exited with {self.proc.returncode}: {err}")
            if marker.is_file():
                lines = marker.read_text().split()
                if lines:
                    return int(lines[0])
            time.sleep(0.05)
        self.close()
        raise TimeoutError(f"chromium did not open its DevTools port in {self.timeout} s")

    def page(self) -> Page:
        """The first tab (opened on about:blank at start)."""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=5) as r:
                targets = [t for t in json.load(r) if t.get("type") == "page"]
            if targets:
                return Page(targets[0]["webSocketDebuggerUrl"], timeout=self.timeout)
            time.sleep(0.1)
        raise TimeoutError("chromium has no page target")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextmanager
def open_page(url: str | Path | None = None, width: int = 1280, height: int = 900) -> Iterator[Page]:
    """A loaded page in a fresh headless Chromium; skips the test when Chromium is missing."""
    exe = require_chromium()
    with Browser(exe, width=width, height=height) as browser:
        page = browser.page()
        try:
            if url is not None:
                page.goto(url)
            yield page
        finally:
            page.close()
