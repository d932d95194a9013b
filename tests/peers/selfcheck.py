#!/usr/bin/env python3
"""Self-check of tests/peers/libosdp_peer.py, without the hub's Rust code.

Part 1 (PD role): starts the harness with two secure PDs and drives them from
an in-process libosdp ControlPanel whose Channel is the harness's PTY path
(os.open + termios raw), i.e. exactly what the hub's CP will see.
Part 2 (CP role): starts the harness as CP and connects an in-process libosdp
PeripheralDevice to its PTY, i.e. what the hub's PD will see.

    .venv/bin/python tests/peers/selfcheck.py [-v]

Ends with a line 'N passed, N failed'; exit status 0 only if all passed.
Every process it starts is stopped before it exits.
"""
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import tty

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
HARNESS = os.path.join(HERE, "libosdp_peer.py")


def _reexec_with_venv():
    """Run under the venv that has libosdp if the current python lacks it."""
    try:
        import osdp  # noqa: F401
        return
    except ImportError:
        pass
    py = os.environ.get("HUB_TEST_PYTHON") or os.path.join(ROOT, ".venv", "bin", "python")
    if os.path.realpath(py) != os.path.realpath(sys.executable) and os.path.exists(py):
        os.execv(py, [py] + sys.argv)
    sys.exit("selfcheck: libosdp not importable; run scripts/test-env.sh first")


_reexec_with_venv()

import osdp  # noqa: E402
from osdp import (Capability, Command, ControlPanel, Event, LibFlag,  # noqa: E402
                  LogLevel, PDCapabilities, PDInfo, PeripheralDevice,
                  StatusReportType, CardFormat)

VERBOSE = "-v" in sys.argv
# SELFCHECK_LOG=debug|info|warning also shows libosdp's logs (harness and in-process)
LOG_NAME = os.environ.get("SELFCHECK_LOG", "warning")
LOG_LEVEL = {"error": LogLevel.Error, "warning": LogLevel.Warning,
             "info": LogLevel.Info, "debug": LogLevel.Debug}[LOG_NAME]
K1 = "000102030405060708090a0b0c0d0e0f"
K2 = "101112131415161718191a1b1c1d1e1f"
K3 = "f0e1d2c3b4a5968778695a4b3c2d1e0f"


def say(msg):
    print(msg, flush=True)


class Peer:
    """The harness as a subprocess: JSON lines in, JSON lines out."""

    def __init__(self, *args):
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable, HARNESS, "--log-level", LOG_NAME, *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True, bufsize=1)
        self.lines = queue.Queue()
        self.seen = []
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self):
        for line in self.proc.stdout:
            try:
                obj = json.loads(line)
            except ValueError:
                obj = {"unparsable": line}
            if VERBOSE:
                say(f"    harness> {line.rstrip()}")
            self.lines.put(obj)
        self.lines.put(None)

    def send(self, obj):
        if VERBOSE:
            say(f"    harness< {json.dumps(obj)}")
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def wait_for(self, pred, timeout=5.0):
        """First line (seen before or arriving within timeout) matching pred."""
        for obj in self.seen:
            if pred(obj):
                self.seen.remove(obj)
                return obj
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return None
            try:
                obj = self.lines.get(timeout=left)
            except queue.Empty:
                return None
            if obj is None:
                return None
            if pred(obj):
                return obj
            self.seen.append(obj)

    def request(self, obj, timeout=5.0):
        self.send(obj)
        return self.wait_for(lambda o: o.get("ok") == obj["do"] or "error" in o, timeout)

    def stderr_tail(self, n=30):
        self.stderr.seek(0)
        return b"\n".join(self.stderr.read().splitlines()[-n:]).decode(errors="replace")

    def close(self, timeout=5.0):
        """Close stdin (harness must exit by itself); kill it if it does not."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None


class TtyChannel(osdp.Channel):
    """libosdp Channel over a tty path, the way an application opens a port."""

    def __init__(self, path):
        super().__init__()
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd)

    def read(self, max_bytes):
        try:
            return os.read(self.fd, max_bytes)
        except (BlockingIOError, OSError):
            return b""

    def write(self, buf):
        view, sent = memoryview(bytes(buf)), 0
        while sent < len(view):
            try:
                sent += os.write(self.fd, view[sent:])
            except BlockingIOError:
                time.sleep(0.001)
        return sent

    def flush(self):
        pass

    def close(self):
        os.close(self.fd)


class Results:
    def __init__(self):
        self.passed = self.failed = 0
        self.failures = []

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            say(f"ok   {name}{' - ' + detail if detail else ''}")
        else:
            self.failed += 1
            self.failures.append(name)
            say(f"FAIL {name}{' - ' + detail if detail else ''}")
        return ok


def wait_until(pred, timeout, step=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


class EventSink:
    def __init__(self):
        self.q = queue.Queue()
        self.seen = []

    def put(self, item):
        self.q.put(item)

    def drain(self):
        """Forget everything received so far."""
        self.seen.clear()
        while True:
            try:
                self.q.get_nowait()
            except queue.Empty:
                return

    def wait_for(self, pred, timeout=5.0):
        for item in self.seen:
            if pred(item):
                self.seen.remove(item)
                return item
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return None
            try:
                item = self.q.get(timeout=left)
            except queue.Empty:
                return None
            if pred(item):
                return item
            self.seen.append(item)


# ---------------------------------------------------------------------------

def check_pd_role(r):
    say("# harness in PD role, in-process libosdp CP")
    peer = Peer("--role", "pd",
                "--pd", json.dumps({"addr": 1, "scbk": K1, "secure": True}),
                "--pd", json.dumps({"addr": 2, "scbk": K2, "secure": True,
                                    "caps": {"inputs": 4, "outputs": 2, "leds": 2, "text": 1},
                                    "pdid": {"vendor": 0x0A0B0C, "serial": 0x01020304}}))
    cp = chan = None
    try:
        first = peer.wait_for(lambda o: True, 10)
        if not r.check("bus line first", bool(first) and "bus" in first
                       and [p["addr"] for p in first.get("pds", [])] == [1, 2], str(first)):
            return
        chan = TtyChannel(first["bus"])
        events = EventSink()
        addrs = [1, 2]
        cp = ControlPanel([PDInfo(1, chan, scbk=bytes.fromhex(K1),
                                  flags=[LibFlag.EnforceSecure, LibFlag.EnableNotification]),
                           PDInfo(2, chan, scbk=bytes.fromhex(K2),
                                  flags=[LibFlag.EnforceSecure, LibFlag.EnableNotification])],
                          log_level=LOG_LEVEL,
                          event_handler=lambda idx, ev: (events.put((addrs[idx], ev)), 0)[1])
        t0 = time.monotonic()
        cp.start()
        sc_at = {}  # seconds from CP start until SC active, per PD
        end = t0 + 15
        while len(sc_at) < len(addrs) and time.monotonic() < end:
            for a in addrs:
                if a not in sc_at and cp.is_sc_active(a):
                    sc_at[a] = time.monotonic() - t0
            time.sleep(0.01)
        ok = all(cp.is_sc_active(a) and cp.is_online(a) for a in addrs)
        r.check("both PDs online with secure channel", ok,
                ", ".join(f"PD {a}: SC after {sc_at.get(a, float('nan')):.2f}s" for a in addrs))
        if not ok:
            return
        r.check("harness reports PD-side SC active",
                all(peer.wait_for(lambda o, a=a: o.get("pd") == a and o.get("event") == "sc"
                                  and o.get("active"), 3) for a in addrs))
        pdid = vars(cp.get_pd_id(2))
        r.check("PDID from spec", pdid["vendor_code"] == 0x0A0B0C and pdid["serial_number"] == 0x01020304
                and pdid["firmware_version"] == 0x010203, str(pdid))
        r.check("capabilities from spec",
                cp.check_capability(2, Capability.LEDControl) == (1, 2)
                and cp.check_capability(2, Capability.ContactStatusMonitoring) == (1, 4)
                and cp.check_capability(2, Capability.OutputControl) == (1, 2))

        # PD -> CP: card
        t = time.monotonic()
        peer.request({"do": "card", "addr": 1, "bits": 26, "hex": "0123456c"})
        ev = events.wait_for(lambda e: e[0] == 1 and e[1]["event"] == Event.CardRead, 5)
        r.check("card from harness arrives at CP", bool(ev) and ev[1]["length"] == 26
                and bytes(ev[1]["data"]) == bytes.fromhex("0123456c")
                and ev[1]["format"] == CardFormat.Wiegand,
                f"{ev} after {time.monotonic() - t:.2f}s")

        # PD -> CP: keypad with * and #
        peer.request({"do": "keys", "addr": 2, "keys": "12*#"})
        ev = events.wait_for(lambda e: e[0] == 2 and e[1]["event"] == Event.KeyPress, 5)
        r.check("keypad '12*#' arrives as 31 32 7f 0d", bool(ev)
                and bytes(ev[1]["data"]) == bytes.fromhex("31327f0d"), str(ev))

        # PD -> CP: tamper (osdp_LSTATR) and inputs (osdp_ISTATR) as POLL replies
        peer.request({"do": "tamper", "addr": 1, "state": 1})
        ev = events.wait_for(lambda e: e[0] == 1 and e[1]["event"] == Event.Status, 5)
        r.check("tamper arrives as local status [1,0]", bool(ev)
                and ev[1]["type"] == StatusReportType.Local
                and bytes(ev[1]["report"]) == b"\x01\x00", str(ev))
        peer.request({"do": "input", "addr": 2, "no": 2, "state": 1})
        ev = events.wait_for(lambda e: e[0] == 2 and e[1]["event"] == Event.Status, 5)
        r.check("input arrives as input status [0,0,1,0]", bool(ev)
                and ev[1]["type"] == StatusReportType.Input
                and bytes(ev[1]["report"]) == b"\x00\x00\x01\x00", str(ev))

        # CP -> PD: LED
        led = {"command": Command.LED, "reader": 0, "led_number": 1, "control_code": 1,
               "on_color": 2, "off_color": 1, "on_count": 5, "off_count": 3, "temporary": False}
        cp.submit_command(2, led)
        line = peer.wait_for(lambda o: o.get("pd") == 2 and o.get("command", {}).get("cmd") == "led", 5)
        c = (line or {}).get("command", {})
        r.check("LED command reported with its fields", bool(line)
                and (c.get("led_number"), c.get("on_color"), c.get("off_color"),
                     c.get("on_count"), c.get("off_count"), c.get("control_code"),
                     c.get("temporary")) == (1, 2, 1, 5, 3, 1, False), str(line))
        ev = events.wait_for(lambda e: e[0] == 2 and e[1]["event"] == Event.Notification
                             and e[1]["type"] == 0 and e[1]["arg0"] == Command.LED, 3)
        r.check("LED ACKed (CP command notification ok)", bool(ev) and ev[1]["arg1"] == 1, str(ev))

        # CP -> PD: temporary LED, buzzer, output, text
        cp.submit_command(1, {"command": Command.LED, "reader": 0, "led_number": 0,
                              "control_code": 2, "on_color": 1, "off_color": 0, "on_count": 2,
                              "off_count": 2, "temporary": True, "timer_count": 30})
        line = peer.wait_for(lambda o: o.get("pd") == 1 and o.get("command", {}).get("cmd") == "led", 5)
        c = (line or {}).get("command", {})
        r.check("temporary LED reported with timer", c.get("temporary") is True
                and c.get("timer_count") == 30 and c.get("on_color") == 1, str(line))
        cp.submit_command(1, {"command": Command.Buzzer, "reader": 0, "control_code": 2,
                              "on_count": 3, "off_count": 1, "rep_count": 2})
        line = peer.wait_for(lambda o: o.get("pd") == 1 and o.get("command", {}).get("cmd") == "buzzer", 5)
        c = (line or {}).get("command", {})
        r.check("buzzer reported", (c.get("control_code"), c.get("on_count"), c.get("off_count"),
                                    c.get("rep_count")) == (2, 3, 1, 2), str(line))
        cp.submit_command(2, {"command": Command.Output, "output_no": 1, "control_code": 5,
                              "timer_count": 20})
        line = peer.wait_for(lambda o: o.get("pd") == 2 and o.get("command", {}).get("cmd") == "output", 5)
        c = (line or {}).get("command", {})
        r.check("output reported", (c.get("output_no"), c.get("control_code"),
                                    c.get("timer_count")) == (1, 5, 20), str(line))
        cp.submit_command(2, {"command": Command.Text, "reader": 0, "control_code": 1,
                              "temp_time": 0, "offset_row": 1, "offset_col": 1, "data": "WELCOME"})
        line = peer.wait_for(lambda o: o.get("pd") == 2 and o.get("command", {}).get("cmd") == "text", 5)
        r.check("text reported", (line or {}).get("command", {}).get("data") == "WELCOME", str(line))

        # noise toward the CP must not break the link
        peer.request({"do": "garbage", "hex": "0011223344ff00"})
        time.sleep(1.0)
        r.check("link survives garbage bytes", cp.is_online(1) and cp.is_sc_active(1)
                and cp.is_online(2) and cp.is_sc_active(2))

        # KEYSET: reported with the key; libosdp CP then restarts SC with it
        events.drain()
        cp.submit_command(2, {"command": Command.Keyset, "type": 1, "data": bytes.fromhex(K3)})
        line = peer.wait_for(lambda o: o.get("pd") == 2 and o.get("command", {}).get("cmd") == "keyset", 5)
        r.check("keyset reported with key hex", (line or {}).get("command", {}).get("key") == K3, str(line))
        def sc_note(active):
            return lambda e: (e[0] == 2 and e[1]["event"] == Event.Notification
                              and e[1]["type"] == 1 and bool(e[1]["arg0"]) == active)
        t = time.monotonic()
        dropped = events.wait_for(sc_note(False), 5)
        back = dropped and events.wait_for(sc_note(True), 5)
        r.check("CP drops SC after KEYSET ACK and re-establishes it with the new key",
                bool(back) and cp.is_sc_active(2), f"after {time.monotonic() - t:.2f}s")

        # kill: the PD stops answering; start: comes back with the KEYSET key
        res = peer.request({"do": "kill", "addr": 2})
        r.check("kill acknowledged", (res or {}).get("ok") == "kill", str(res))
        t = time.monotonic()
        went = wait_until(lambda: not cp.is_online(2), 15, 0.1)
        r.check("CP sees killed PD go offline", went, f"after {time.monotonic() - t:.1f}s")
        r.check("other PD unaffected", cp.is_online(1) and cp.is_sc_active(1))
        res = peer.request({"do": "start", "addr": 2})
        r.check("start reuses the key set by KEYSET", (res or {}).get("scbk") == K3, str(res))
        cp.disable_pd(2)  # libosdp would otherwise wait 300 s before retrying
        time.sleep(0.2)
        cp.enable_pd(2)
        r.check("restarted PD back online with SC", wait_until(lambda: cp.is_sc_active(2), 10))
    finally:
        if cp is not None:
            cp.stop()
        code = peer.close()
        r.check("harness exits on stdin EOF", code == 0, f"exit code {code}")
        if r.failed or LOG_NAME != "warning":
            say("---- harness stderr (tail) ----\n" + peer.stderr_tail(200))
        if chan is not None:
            chan.close()


def check_cp_role(r):
    say("# harness in CP role, in-process libosdp PD")
    peer = Peer("--role", "cp", "--pd", json.dumps({"addr": 5, "scbk": K1, "secure": True}))
    pd = chan = None
    try:
        first = peer.wait_for(lambda o: True, 10)
        if not r.check("bus line first", bool(first) and "bus" in first, str(first)):
            return
        chan = TtyChannel(first["bus"])
        commands = EventSink()
        caps = PDCapabilities([(Capability.LEDControl, 1, 1), (Capability.AudibleControl, 1, 1),
                               (Capability.OutputControl, 1, 1), (Capability.TextOutput, 1, 1),
                               (Capability.ContactStatusMonitoring, 1, 2)])
        pd = PeripheralDevice(PDInfo(5, chan, scbk=bytes.fromhex(K1), flags=[LibFlag.EnforceSecure]),
                              caps, log_level=LOG_LEVEL,
                              command_handler=lambda c: (commands.put(c), (0, None))[1])
        t0 = time.monotonic()
        pd.start()
        sc = peer.wait_for(lambda o: o.get("event") == "sc" and o.get("pd") == 5 and o.get("active"), 15)
        r.check("CP reports SC active", bool(sc), f"after {time.monotonic() - t0:.2f}s")
        r.check("CP reports online", bool(peer.wait_for(
            lambda o: o.get("event") == "online" and o.get("pd") == 5 and o.get("online"), 3)))
        res = peer.request({"do": "led", "addr": 5, "on_color": "green", "on_count": 7})
        c = commands.wait_for(lambda c: c["command"] == Command.LED, 5)
        r.check("led request reaches PD", (res or {}).get("submitted") is True and bool(c)
                and c["on_color"] == 2 and c["on_count"] == 7, f"{res} {c}")
        r.check("command completion reported", bool(peer.wait_for(
            lambda o: o.get("event") == "command" and o.get("command") == "led" and o.get("ok"), 3)))
        peer.request({"do": "text", "addr": 5, "data": "HI"})
        c = commands.wait_for(lambda c: c["command"] == Command.Text, 5)
        r.check("text request reaches PD", bool(c) and c["data"] == "HI", str(c))
        pd.submit_event({"event": Event.CardRead, "reader_no": 0, "format": CardFormat.Wiegand,
                         "direction": 0, "length": 26, "data": bytes.fromhex("0123456c")})
        ev = peer.wait_for(lambda o: o.get("event") == "card", 5)
        r.check("card event reported", bool(ev) and ev.get("bits") == 26 and ev.get("hex") == "0123456c"
                and ev.get("pd") == 5, str(ev))
        pd.submit_event({"event": Event.KeyPress, "reader_no": 0, "data": bytes.fromhex("397f0d")})
        ev = peer.wait_for(lambda o: o.get("event") == "keypad", 5)
        r.check("keypad event reported", bool(ev) and ev.get("keys") == "9*#", str(ev))
        pd.submit_event({"event": Event.Status, "type": StatusReportType.Local, "report": bytes([1, 1])})
        ev = peer.wait_for(lambda o: o.get("event") == "status", 5)
        r.check("local status reported", bool(ev) and ev.get("type") == "local"
                and ev.get("tamper") == 1 and ev.get("power") == 1, str(ev))
        res = peer.request({"do": "info", "addr": 5})
        r.check("info returns PDID and caps", bool(res) and res.get("sc") is True
                and res.get("caps", {}).get("LEDControl") == [1, 1]
                and res.get("pdid", {}).get("serial_number") == 0xDEADBEAF, str(res))

        # A PD that restarts mid-session answers with a fresh sequence number;
        # libosdp's CP then declares it offline (for 300 s); "reset" recovers.
        pd.stop()
        pd = PeripheralDevice(PDInfo(5, chan, scbk=bytes.fromhex(K1), flags=[LibFlag.EnforceSecure]),
                              caps, log_level=LOG_LEVEL,
                              command_handler=lambda c: (commands.put(c), (0, None))[1])
        pd.start()
        off = peer.wait_for(lambda o: o.get("event") == "online" and not o.get("online"), 12)
        r.check("CP reports offline after the PD restarted", bool(off))
        res = peer.request({"do": "reset", "addr": 5})
        t = time.monotonic()
        sc = peer.wait_for(lambda o: o.get("event") == "sc" and o.get("active"), 10)
        r.check("reset brings the PD back with SC", (res or {}).get("ok") == "reset" and bool(sc),
                f"after {time.monotonic() - t:.2f}s")
    finally:
        if pd is not None:
            pd.stop()
        code = peer.close()
        r.check("harness exits on stdin EOF", code == 0, f"exit code {code}")
        if r.failed or LOG_NAME != "warning":
            say("---- harness stderr (tail) ----\n" + peer.stderr_tail(200))
        if chan is not None:
            chan.close()


def check_install_and_nak(r):
    say("# harness in PD role: install mode, KEYSET, NAK")
    peer = Peer("--role", "pd", "--pd", json.dumps({"addr": 3, "scbk": None, "nak": ["text"]}))
    cp = chan = None
    try:
        first = peer.wait_for(lambda o: True, 10)
        if not r.check("bus line first", bool(first) and "bus" in first, str(first)):
            return
        chan = TtyChannel(first["bus"])
        events = EventSink()
        cp = ControlPanel([PDInfo(3, chan, scbk=bytes.fromhex(K2),
                                  flags=[LibFlag.EnableNotification])],
                          log_level=LOG_LEVEL,
                          event_handler=lambda idx, ev: (events.put((3, ev)), 0)[1])
        t0 = time.monotonic()
        cp.start()
        line = peer.wait_for(lambda o: o.get("command", {}).get("cmd") == "keyset", 10)
        r.check("keyless PD gets KEYSET with the CP's SCBK (after SC on SCBK-D)",
                (line or {}).get("command", {}).get("key") == K2, str(line))
        r.check("then SC with the new key", wait_until(lambda: cp.is_sc_active(3), 10),
                f"after {time.monotonic() - t0:.2f}s")
        cp.submit_command(3, {"command": Command.Text, "reader": 0, "control_code": 1,
                              "temp_time": 0, "offset_row": 1, "offset_col": 1, "data": "NO"})
        ev = events.wait_for(lambda e: e[1]["event"] == Event.Notification and e[1]["type"] == 0
                             and e[1]["arg0"] == Command.Text, 5)
        r.check("refused command is NAKed", bool(ev) and ev[1]["arg1"] == 0, str(ev))
        r.check("libosdp CP takes a PD offline on any NAK", wait_until(lambda: not cp.is_online(3), 3))
    finally:
        if cp is not None:
            cp.stop()
        code = peer.close()
        r.check("harness exits on stdin EOF", code == 0, f"exit code {code}")
        if r.failed or LOG_NAME != "warning":
            say("---- harness stderr (tail) ----\n" + peer.stderr_tail(200))
        if chan is not None:
            chan.close()


def main():
    r = Results()
    start = time.monotonic()
    try:
        check_pd_role(r)
        check_cp_role(r)
        check_install_and_nak(r)
    except Exception as exc:  # noqa: BLE001
        r.check("selfcheck ran to the end", False, f"{type(exc).__name__}: {exc}")
    say(f"# {time.monotonic() - start:.1f}s")
    if r.failures:
        say("failed: " + ", ".join(r.failures))
    say(f"{r.passed} passed, {r.failed} failed")
    sys.stdout.flush()
    os._exit(0 if r.failed == 0 and r.passed else 1)  # libosdp threads are not daemons


if __name__ == "__main__":
    main()
