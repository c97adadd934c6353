"""A small headless-Chromium client over the Chrome DevTools protocol, for tests/test_docs.py.

It opens a page at a given window width, records every URL the page requests, waits for MathJax
to finish, and reads what a reader sees: the text, the math elements, each image's natural and
displayed width, the code blocks and table cells that are cut off at the right (wider than what
the page shows of them without scrolling), and how far the page itself scrolls sideways. Only
Debian's ``chromium`` and the ``websocket-client`` package are needed: no browser download.
"""

from __future__ import annotations

import base64
import itertools
import json
import pathlib
import shutil
import subprocess
import time

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1280,1000",  # each tab sets its own width (Chromium.open)
    "--remote-debugging-port=0",
]

HEIGHT = 1000  # the window's height, in CSS pixels

# What the page shows, read after MathJax has typeset it. An element is clipped when its content
# is wider than its box, or its box reaches past the right edge of an ancestor that hides or
# scrolls what overflows it (or of the window): the reader does not see all of it without
# scrolling. Only what is displayed, in the page's main text, is looked at.
READ_PAGE = """(async () => {
  for (let i = 0; i < 200 && !(CONDITION); i++) {
    await new Promise(resolve => setTimeout(resolve, 100));
  }
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const images = await Promise.all([...document.images].map(img => img.decode().then(
    () => img, () => img)));
  const shown = el => el.getClientRects().length > 0;
  const cutOff = el => {
    let right = el.getBoundingClientRect().right, over = el.scrollWidth - el.clientWidth;
    let edge = document.documentElement.clientWidth;
    for (let a = el.parentElement; a; a = a.parentElement) {
      if (getComputedStyle(a).overflowX !== "visible") {
        edge = Math.min(edge, a.getBoundingClientRect().left + a.clientLeft + a.clientWidth);
      }
    }
    return Math.max(over, right - edge);
  };
  const main = document.querySelector("article") || document.body;
  const clipped = [...main.querySelectorAll("pre, td, th")].filter(shown).map(el => ({
    tag: el.tagName.toLowerCase(),
    by: Math.round(cutOff(el)),
    text: el.innerText.split("\\n").sort((a, b) => b.length - a.length)[0].slice(0, 100),
  })).filter(c => c.by > 1);
  return JSON.stringify({
    text: document.body.innerText,
    math: document.querySelectorAll("mjx-container").length,
    images: images.map(img => ({
      src: img.currentSrc,
      width: img.naturalWidth,
      displayed: img.getBoundingClientRect().width,
    })),
    clipped: clipped,
    overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
  });
})()"""


def find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Chromium:
    """One headless Chromium process with a fresh profile in ``profile``."""

    def __init__(self, executable: str, profile: pathlib.Path, timeout: float = 60.0):
        self.timeout = timeout
        profile.mkdir(parents=True, exist_ok=True)
        self.log = open(profile.parent / "chromium.log", "wb")
        self.process = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"chromium did not start; see {self.log.name}")
            time.sleep(0.1)
        port, path = port_file.read_text().splitlines()[:2]
        # websocket-client (the docs extra) is imported here, so that collecting this module
        # (pytest --doctest-modules) works without it.
        import websocket

        self.socket = websocket.create_connection(f"ws://127.0.0.1:{port}{path}", timeout=timeout)
        self.ids = itertools.count(1)

    def close(self) -> None:
        if getattr(self, "socket", None) is not None:
            self.socket.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, method: str, session: str | None = None, events=None, **params) -> dict:
        """Sends one command and returns its result; events that arrive meanwhile go to events."""
        message_id = next(self.ids)
        message = {"id": message_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self.socket.send(json.dumps(message))
        while True:
            reply = json.loads(self.socket.recv())
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            if events is not None and "method" in reply:
                events.append(reply)

    def open(
        self,
        url: str,
        screenshot: pathlib.Path | None = None,
        wait_for: str = "true",
        width: int = 1280,
        full_page: bool = False,
    ) -> dict:
        """Loads url in a new tab ``width`` CSS pixels wide; returns what it requested and shows.

        ``wait_for`` is a JavaScript condition to wait for (up to 20 s) after the load event.
        The screenshot shows the window (1000 pixels high), or the whole page with ``full_page``.
        """
        events: list[dict] = []
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Network", "Page", "Runtime", "Log"):
            self.send(f"{domain}.enable", session, events)
        self.send(
            "Emulation.setDeviceMetricsOverride",
            session,
            events,
            width=width,
            height=HEIGHT,
            deviceScaleFactor=1,
            mobile=False,
        )
        self.send("Page.navigate", session, events, url=url)
        deadline = time.monotonic() + self.timeout
        while not any(e["method"] == "Page.loadEventFired" for e in events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not load in {self.timeout} s")
            reply = json.loads(self.socket.recv())
            if "method" in reply:
                events.append(reply)
        result = self.send(
            "Runtime.evaluate",
            session,
            events,
            expression=READ_PAGE.replace("CONDITION", wait_for),
            awaitPromise=True,
            returnByValue=True,
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{url}: {result['exceptionDetails']}")
        page = json.loads(result["result"]["value"])
        if screenshot is not None:
            options: dict = {"format": "png"}
            if full_page:
                size = self.send("Page.getLayoutMetrics", session, events)["cssContentSize"]
                clip = {"x": 0, "y": 0, "width": width, "height": size["height"], "scale": 1}
                options.update(clip=clip, captureBeyondViewport=True)
            png = self.send("Page.captureScreenshot", session, events, **options)["data"]
            screenshot.write_bytes(base64.b64decode(png))
        self.send("Target.closeTarget", targetId=target)
        page["requests"] = [
            e["params"]["request"]["url"]
            for e in events
            if e["method"] == "Network.requestWillBeSent"
        ]
        page["failed"] = [
            e["params"]["errorText"] for e in events if e["method"] == "Network.loadingFailed"
        ]
        page["errors"] = [
            e["params"]["exceptionDetails"].get("text", "")
            for e in events
            if e["method"] == "Runtime.exceptionThrown"
        ] + [
            e["params"]["entry"]["text"]
            for e in events
            if e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error"
        ]
        return page
