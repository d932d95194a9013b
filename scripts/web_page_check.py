#!/usr/bin/env python3
"""Drive the hub's web page in headless Chromium (tests/tests/web_page.rs).

Logs in through the login form, presents a card with the page's demo form,
waits until the page shows the outcome, saves a screenshot and prints one
JSON line: {"text": <the page's visible text>, "result": <the action's
answer as shown>, "url": <where the page ended up>}.

Chromium is driven over the DevTools protocol on --remote-debugging-pipe
(fd 3: commands in, fd 4: replies out, NUL-separated JSON): no network port,
no websocket library, only the Python standard library. The assertions are
in the Rust test; this script reports what a person would see.
"""
import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time


class Cdp:
    def __init__(self, chromium, user_data_dir):
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()

        def fds():
            # The pipes may themselves be fds 3 and 4 (and close on exec):
            # copy both away first, then into place, inheritable.
            a, b = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(a, 3)
            os.dup2(b, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)

        self.proc = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync",
             "--remote-debugging-pipe", f"--user-data-dir={user_data_dir}",
             "--window-size=1280,1000", "about:blank"],
            preexec_fn=fds, close_fds=False,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.buf = b""
        self.next_id = 0

    def _read_message(self):
        while b"\0" not in self.buf:
            chunk = os.read(self.from_chrome, 65536)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self.buf += chunk
        raw, self.buf = self.buf.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method, params=None, session=None):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.to_chrome, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read_message()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def close(self):
        try:
            self.call("Browser.close")
        except Exception:  # noqa: BLE001 (already gone)
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chromium", default="chromium")
    ap.add_argument("--url", required=True, help="http://host:port")
    ap.add_argument("--user", required=True)
    ap.add_argument("--password-env", default="HUB_WEB_PASSWORD",
                    help="environment variable holding the password")
    ap.add_argument("--reader", required=True)
    ap.add_argument("--card", required=True)
    ap.add_argument("--expect", required=True, help="wait until the page text has this")
    ap.add_argument("--screenshot", required=True)
    ap.add_argument("--timeout", type=float, default=30)
    args = ap.parse_args()
    password = os.environ.get(args.password_env, "")

    with tempfile.TemporaryDirectory(prefix="hub-chromium-") as profile:
        cdp = Cdp(args.chromium, profile)
        try:
            target = cdp.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            s = cdp.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            cdp.call("Emulation.setDeviceMetricsOverride",
                     {"width": 1280, "height": 1000, "deviceScaleFactor": 1, "mobile": False}, s)

            def js(expr):
                r = cdp.call("Runtime.evaluate", {"expression": expr, "returnByValue": True,
                                                  "awaitPromise": True}, s)
                return r.get("result", {}).get("value")

            def wait(expr):
                end = time.monotonic() + args.timeout
                while time.monotonic() < end:
                    if js(expr):
                        return True
                    time.sleep(0.2)
                return False

            cdp.call("Page.navigate", {"url": args.url + "/"}, s)
            # Not logged in: the page sends us to the login form.
            wait("location.pathname === '/login' && !!document.getElementById('password')")
            js(f"""(() => {{
                document.getElementById('user').value = {json.dumps(args.user)};
                document.getElementById('password').value = {json.dumps(password)};
                document.querySelector('form').submit(); return true; }})()""")
            # Logged in: the status page, live, with the demo form filled in.
            wait("location.pathname === '/' && !document.getElementById('demo').hidden"
                 f" && [...document.getElementById('present-reader').options]"
                 f".some(o => o.value === {json.dumps(args.reader)})")
            js(f"""(() => {{
                const f = document.getElementById('present');
                f.reader.value = {json.dumps(args.reader)};
                f.card.value = {json.dumps(args.card)};
                f.querySelector('button').click(); return true; }})()""")
            wait(f"document.body.innerText.includes({json.dumps(args.expect)})")
            time.sleep(0.3)  # let the last status render settle for the picture
            height = js("Math.max(document.documentElement.scrollHeight, 800)") or 1000
            cdp.call("Emulation.setDeviceMetricsOverride",
                     {"width": 1280, "height": int(height), "deviceScaleFactor": 1,
                      "mobile": False}, s)
            shot = cdp.call("Page.captureScreenshot", {"format": "png"}, s)["data"]
            with open(args.screenshot, "wb") as f:
                f.write(base64.b64decode(shot))
            print(json.dumps({
                "url": js("location.pathname"),
                "text": js("document.body.innerText"),
                "result": js("document.getElementById('result').textContent"),
            }))
        finally:
            cdp.close()


if __name__ == "__main__":
    sys.exit(main())
