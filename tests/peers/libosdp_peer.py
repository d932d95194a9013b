#!/usr/bin/env python3
"""libosdp interop peer for the hub's integration tests.

Runs real libosdp 3.2.9 devices (PyPI ``libosdp``) on a PTY that stands in for
the RS-485 bus. Python 3.11, stdlib + libosdp only. Driven by JSON lines on
stdin; reports JSON lines on stdout (one object per line, flushed). libosdp's
own log goes to stderr. See tests/peers/README.md for the long version and for
what we learned about libosdp's behaviour.

Usage
-----
    libosdp_peer.py --role pd --pd '{"addr":1,"scbk":"<32 hex>","secure":true}' [--pd ...]
    libosdp_peer.py --role cp --pd '{"addr":1,"scbk":"<32 hex>"}' [--pd ...]
    common options: --log-level {error,warning,info,debug} (default warning)

Lines on stdout are told apart by their keys: "bus" (first line), "pd" (PD
role reports), "event" (CP role reports), "ok" (a stdin request was carried
out) and "error" (a stdin line was refused; the harness keeps running).
Byte strings are always lowercase hex.

Role pd: libosdp PDs on one PTY bus (the hub's CP opens the printed path)
--------------------------------------------------------------------------
--pd spec (JSON object), one per PD:
    addr     int 0..126                       (required)
    scbk     32 hex chars | null               null: no key, libosdp then forces install mode
    install  bool (false)                     LibFlag.InstallMode: accept SCBK-D
    secure   bool (false)                     LibFlag.EnforceSecure (needs scbk)
    caps     {"inputs":4,"outputs":2,"leds":1,"buzzer":1,"text":1,
              "comm_security":true,"extra":[[fc,cl,n],...]}
             each count may also be [compliance, count]; 0 omits the capability
    pdid     {"vendor":0xA1B2C3,"model":1,"version":1,"serial":0x12345678,
              "firmware":0x010203}
    accept_keyset bool (true)                 false: KEYSET gets NAK
    nak      ["led","buzzer","output","text","comset","keyset","mfg","status"]
             commands the PD application refuses (libosdp replies NAK 0x09)
stdout:
    {"bus":"/dev/pts/N","pds":[<effective spec>,...]}                  first line
    {"pd":A,"command":{"cmd":"led",...libosdp fields...}}               every command
        led:    reader, led_number, temporary, control_code, on_color, off_color,
                on_count, off_count, [timer_count if temporary], [cancel_temporary]
        buzzer: reader, control_code, on_count, off_count, rep_count
        output: output_no, control_code, timer_count
        text:   reader, control_code, temp_time, offset_row, offset_col, data (str)
        keyset: type, data (hex), key (hex, same as data)
        comset / comset_done: address, baud_rate  (libosdp then answers at the new
                address; the harness still names the PD by its original addr)
        mfg:    vendor_code, data (hex)
        status: type ("input"|"output"|"local"|"remote")  (osdp_ISTAT/OSTAT/LSTAT/RSTAT)
    {"pd":A,"event":"online","active":bool}   PD hears traffic (libosdp: any byte within 8 s)
    {"pd":A,"event":"sc","active":bool}       PD's secure channel state
stdin:
    {"do":"card","addr":A,"bits":26,"hex":"...","reader":0,"format":"wiegand"|"raw"}
    {"do":"keys","addr":A,"keys":"1234#"}     '*'->0x7F '#'->0x0D; or "hex":"..." raw
    {"do":"input","addr":A,"inputs":[0,1,0,0]} | {"do":"input","addr":A,"no":N,"state":0|1}
    {"do":"output_status","addr":A,"outputs":[0,1]}
    {"do":"tamper","addr":A,"state":0|1}      sends osdp_LSTATR [tamper, power]
    {"do":"power","addr":A,"state":0|1}       1 = power failure; sends osdp_LSTATR
    {"do":"local","addr":A,"tamper":0|1,"power":0|1}
    {"do":"kill","addr":A}                    stop the PD; it no longer answers
    {"do":"start","addr":A, ...spec fields...} (re)start; "scbk" omitted = current key
                                              (which a KEYSET replaces), null = no key
    {"do":"garbage","hex":"..."}              raw bytes onto the bus toward the CP
    {"do":"ping"} | {"do":"quit"}
    Every accepted request is answered {"ok":"<do>",...}; a bad one {"error":"..."}.
    Events (card, keys, status) are queued in libosdp and go out as the reply to
    the next osdp_POLL addressed to that PD.

Role cp: a libosdp CP on a PTY (the hub's PD opens the printed path)
---------------------------------------------------------------------
--pd spec: {"addr":A,"scbk":"<32 hex>"|null,"secure":bool,"install":bool}
    scbk null: libosdp never tries a secure channel with that PD.
stdout:
    {"bus":"/dev/pts/N","pds":[A,...]}                                 first line
    {"event":"online","pd":A,"online":bool}
    {"event":"sc","pd":A,"active":bool,"scbkd":bool}
    {"event":"command","pd":A,"command":"led","ok":bool}    completion of a command
    {"event":"card","pd":A,"reader":0,"format":"wiegand","bits":26,"hex":"..."}
    {"event":"keypad","pd":A,"reader":0,"hex":"31322a7f0d","keys":"12**#"}
    {"event":"status","pd":A,"type":"input"|"output"|"local"|"remote","report":[..]}
        local adds "tamper" and "power"
    {"event":"mfgrep","pd":A,"vendor_code":N,"hex":"..."}
stdin (all take "addr"; unspecified fields get the defaults shown):
    {"do":"led","addr":A,"reader":0,"led_number":0,"temporary":false,"control_code":1,
     "on_color":"red","off_color":"black","on_count":10,"off_count":0,"timer_count":10}
     colors: black red green amber blue magenta cyan white, or 0..7
    {"do":"buzzer","addr":A,"reader":0,"control_code":2,"on_count":1,"off_count":1,"rep_count":1}
    {"do":"output","addr":A,"output_no":0,"control_code":2,"timer_count":0}
    {"do":"text","addr":A,"data":"HELLO","reader":0,"control_code":1,"temp_time":0,
     "offset_row":1,"offset_col":1}
    {"do":"keyset","addr":A,"scbk":"<32 hex>"}
    {"do":"status","addr":A,"type":"input"|"output"|"local"|"remote"}
    {"do":"comset","addr":A,"address":N,"baud_rate":9600}
    {"do":"info","addr":A}   -> {"ok":"info","addr":A,"online":..,"sc":..,"pdid":{..},"caps":{..}}
    {"do":"reset","addr":A}  disable+enable: restart at osdp_ID now (libosdp otherwise
                             waits 300 s after it declares a PD offline)
    {"do":"ping"} | {"do":"quit"}
    Commands are answered {"ok":"<do>","addr":A,"submitted":bool}; libosdp only
    queues commands for a PD that is online.

The harness exits (stopping all libosdp threads) on {"do":"quit"}, on EOF on
stdin, on SIGTERM/SIGINT/SIGHUP, and when stdout is closed.
"""
import argparse
import json
import os
import select
import signal
import sys
import termios
import threading
import time
import tty

try:
    import osdp
    from osdp import (Capability, CardFormat, Command, ControlPanel, Event,
                      EventNotification, LibFlag, LogLevel, PDCapabilities,
                      PDInfo, PdId, PeripheralDevice, StatusReportType)
except ImportError as exc:  # pragma: no cover - environment problem
    sys.stderr.write(f"libosdp_peer: cannot import libosdp ({exc}); "
                     "run scripts/test-env.sh and use .venv/bin/python\n")
    sys.exit(2)

# --------------------------------------------------------------------------
# output

_out_lock = threading.Lock()


def emit(obj):
    line = json.dumps(obj, default=_json_default, separators=(",", ":"))
    with _out_lock:
        try:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except (BrokenPipeError, OSError, ValueError):
            # Nobody listens any more: nothing left to do.
            os._exit(0)


def _json_default(o):
    if isinstance(o, (bytes, bytearray)):
        return bytes(o).hex()
    return str(o)


def log(msg):
    try:
        sys.stderr.write(f"libosdp_peer: {msg}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


_shutdown_lock = threading.Lock()
_stoppers = []  # callables run on shutdown


def shutdown(code=0):
    """Stop every libosdp thread and exit; never returns, never hangs."""
    if not _shutdown_lock.acquire(blocking=False):
        # another thread is already shutting down; wait for it to _exit
        time.sleep(10)
        os._exit(code)
    watchdog = threading.Timer(3.0, os._exit, (code,))
    watchdog.daemon = True
    watchdog.start()
    for stop in reversed(_stoppers):
        try:
            stop()
        except Exception as exc:  # noqa: BLE001 - best effort
            log(f"stop failed: {exc!r}")
    os._exit(code)  # the bindings' worker threads are not daemons


def install_signal_handlers():
    def handler(signum, _frame):
        threading.Thread(target=shutdown, args=(0,), daemon=True).start()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, handler)

# --------------------------------------------------------------------------
# constants and conversions

LOG_LEVELS = {"error": LogLevel.Error, "warning": LogLevel.Warning,
              "info": LogLevel.Info, "debug": LogLevel.Debug}

CMD_NAMES = {
    Command.Output: "output", Command.LED: "led", Command.Buzzer: "buzzer",
    Command.Text: "text", Command.Keyset: "keyset", Command.Comset: "comset",
    Command.ComsetDone: "comset_done", Command.Manufacturer: "mfg",
    Command.FileTransfer: "file_tx", Command.Status: "status",
}
STATUS_TYPES = {StatusReportType.Input: "input", StatusReportType.Output: "output",
                StatusReportType.Local: "local", StatusReportType.Remote: "remote"}
STATUS_BY_NAME = {v: k for k, v in STATUS_TYPES.items()}
COLORS = {"black": 0, "none": 0, "off": 0, "red": 1, "green": 2, "amber": 3,
          "blue": 4, "magenta": 5, "cyan": 6, "white": 7}
CARD_FORMATS = {"raw": CardFormat.Unspecified, "unspecified": CardFormat.Unspecified,
                "wiegand": CardFormat.Wiegand}
CARD_FORMAT_NAMES = {CardFormat.Unspecified: "raw", CardFormat.Wiegand: "wiegand",
                     CardFormat.ASCII: "ascii"}
# OSDP osdp_KEYPAD encoding: digits are ASCII, '*' is 0x7F and '#' is 0x0D.
KEY_TO_BYTE = {"*": 0x7F, "#": 0x0D}
BYTE_TO_KEY = {0x7F: "*", 0x0D: "#"}


def encode_keys(keys):
    out = bytearray()
    for ch in keys:
        if ch in KEY_TO_BYTE:
            out.append(KEY_TO_BYTE[ch])
        elif ch.isascii() and ch.isprintable():
            out.append(ord(ch))
        else:
            raise ValueError(f"cannot encode key {ch!r}")
    return bytes(out)


def decode_keys(data):
    return "".join(BYTE_TO_KEY.get(b, chr(b) if 0x20 <= b < 0x7F else "?")
                   for b in data)


def parse_key(value, what="scbk"):
    if value is None:
        return None
    key = bytes.fromhex(value)
    if len(key) != 16:
        raise ValueError(f"{what} must be 32 hex digits")
    return key


def color(value):
    if isinstance(value, str):
        if value.lower() not in COLORS:
            raise ValueError(f"unknown color {value!r}")
        return COLORS[value.lower()]
    return int(value)


def command_report(cmd):
    """libosdp command dict -> JSON-able dict with a "cmd" name."""
    out = {"cmd": CMD_NAMES.get(cmd.get("command"), str(cmd.get("command")))}
    for key, val in cmd.items():
        if key == "command":
            continue
        out[key] = val.hex() if isinstance(val, (bytes, bytearray)) else val
    if out["cmd"] == "keyset":
        out["key"] = out.get("data")
    if out["cmd"] == "status":
        out["type"] = STATUS_TYPES.get(cmd.get("type"), cmd.get("type"))
    return out

# --------------------------------------------------------------------------
# PTY helpers


def open_pty():
    """Return (master_fd, slave_fd, slave_path), both ends in raw mode.

    We keep the slave open ourselves (never reading it) so that the master
    does not see EIO while the hub has the port closed.
    """
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    return master, slave, os.ttyname(slave)


TRACE = False  # --trace: report every frame crossing the bus


class FrameScanner:
    """Finds OSDP frames in one direction of the byte stream and reports each
    as {"wire": side, "addr", "code", "scb", "len"}: enough for a test to
    check what crossed the bus in clear. Frames are not validated beyond
    their length field; it is a tap, not a decoder."""

    def __init__(self, side):
        self.side, self.buf = side, bytearray()

    def feed(self, data):
        self.buf += data
        while True:
            i = self.buf.find(0x53)
            if i < 0:
                self.buf.clear()
                return
            del self.buf[:i]
            if len(self.buf) < 6:
                return
            n = self.buf[2] | (self.buf[3] << 8)
            if n < 7 or n > 1440:
                del self.buf[:1]
                continue
            if len(self.buf) < n:
                return
            frame = bytes(self.buf[:n])
            del self.buf[:n]
            ctrl = frame[4]
            scb, at = None, 5
            if ctrl & 0x08:
                scb, at = frame[6], 5 + frame[5]
            if at < n:
                emit({"wire": self.side, "addr": frame[1] & 0x7F, "code": frame[at], "seq": ctrl & 3,
                      "scb": scb, "len": n})


def write_all(fd, data):
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [], 0.05)
            continue
        view = view[n:]

# --------------------------------------------------------------------------
# role pd

DEFAULT_CAPS = {"inputs": 4, "outputs": 2, "leds": 1, "buzzer": 1, "text": 1,
                "comm_security": True}
DEFAULT_PDID = {"vendor": 0xA1B2C3, "model": 1, "version": 1,
                "serial": 0x12345678, "firmware": 0x010203}
CAP_CODES = {"inputs": Capability.ContactStatusMonitoring,
             "outputs": Capability.OutputControl,
             "leds": Capability.LEDControl,
             "buzzer": Capability.AudibleControl,
             "text": Capability.TextOutput}
NAKABLE = {"led", "buzzer", "output", "text", "comset", "keyset", "mfg", "status"}


def _cap_pair(value):
    if isinstance(value, (list, tuple)):
        return int(value[0]), int(value[1])
    if isinstance(value, bool):
        return (1, 1) if value else (0, 0)
    return (1, int(value)) if int(value) else (0, 0)


def normalize_pd_spec(spec, base=None):
    """Merge spec over base (or defaults) and validate. Returns a new dict."""
    cfg = {"addr": None, "scbk": None, "install": False, "secure": False,
           "caps": dict(DEFAULT_CAPS), "pdid": dict(DEFAULT_PDID),
           "accept_keyset": True, "nak": []}
    if base:
        cfg.update({k: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v)
                    for k, v in base.items()})
    for key, val in spec.items():
        if key in ("do",):
            continue
        if key == "addr":
            cfg["addr"] = int(val)
        elif key in ("caps", "pdid"):
            cfg[key].update(val)
        elif key in cfg:
            cfg[key] = val
        else:
            raise ValueError(f"unknown PD field {key!r}")
    if cfg["addr"] is None or not 0 <= cfg["addr"] <= 126:
        raise ValueError("addr must be 0..126")
    parse_key(cfg["scbk"])
    if cfg["scbk"] is not None:
        cfg["scbk"] = cfg["scbk"].lower()
    if cfg["secure"] and cfg["scbk"] is None:
        raise ValueError("secure (EnforceSecure) needs an scbk")
    bad = set(cfg["nak"]) - NAKABLE
    if bad:
        raise ValueError(f"cannot NAK {sorted(bad)}; choose from {sorted(NAKABLE)}")
    for key in cfg["caps"]:
        if key not in CAP_CODES and key not in ("comm_security", "extra"):
            raise ValueError(f"unknown capability {key!r}")
    for key in cfg["pdid"]:
        if key not in DEFAULT_PDID:
            raise ValueError(f"unknown pdid field {key!r}")
    return cfg


class Drop(osdp.Channel):
    """One PD's tap on the shared bus (libosdp calls read/write/flush).

    A PTY hands each byte to one reader only, so the bus pump copies what the
    CP writes into every running PD's inbox; PD replies go straight back.
    """

    def __init__(self, bus):
        super().__init__()
        self.bus = bus
        self.inbox = bytearray()
        self.lock = threading.Lock()

    def feed(self, data):
        with self.lock:
            self.inbox += data
            if len(self.inbox) > 65536:  # nobody is reading: keep it bounded
                del self.inbox[:-4096]

    def read(self, max_bytes):
        with self.lock:
            data = bytes(self.inbox[:max_bytes])
            del self.inbox[:max_bytes]
        return data

    def write(self, buf):
        self.bus.write(bytes(buf))
        return len(buf)

    def flush(self):
        pass


class PdBus:
    def __init__(self):
        self.master, self.slave, self.path = open_pty()
        self.drops = []
        self.drops_lock = threading.Lock()
        self.write_lock = threading.Lock()
        self.tap_cp = FrameScanner("cp") if TRACE else None
        self.tap_pd = FrameScanner("pd") if TRACE else None
        threading.Thread(target=self._pump, name="bus-pump", daemon=True).start()

    def _pump(self):  # CP -> every PD
        while True:
            try:
                data = os.read(self.master, 4096)
            except OSError:
                time.sleep(0.01)
                continue
            if not data:
                time.sleep(0.01)
                continue
            if self.tap_cp:
                self.tap_cp.feed(data)
            with self.drops_lock:
                drops = list(self.drops)
            for drop in drops:
                drop.feed(data)

    def attach(self, drop):
        with self.drops_lock:
            self.drops.append(drop)

    def detach(self, drop):
        with self.drops_lock:
            if drop in self.drops:
                self.drops.remove(drop)

    def write(self, data):  # PD (or garbage) -> CP
        with self.write_lock:
            if self.tap_pd:
                self.tap_pd.feed(data)
            write_all(self.master, data)


class SimPd:
    """One libosdp PeripheralDevice plus the state the harness keeps for it."""

    def __init__(self, bus, cfg, log_level):
        self.bus = bus
        self.cfg = cfg
        self.log_level = log_level
        self.pd = None
        self.drop = None
        self.inputs = [0] * self.num_items("inputs")
        self.outputs = [0] * self.num_items("outputs")
        self.tamper = 0
        self.power = 0
        self.last_online = False  # report changes only
        self.last_sc = False
        self.state_lock = threading.Lock()

    @property
    def addr(self):
        return self.cfg["addr"]

    @property
    def running(self):
        return self.pd is not None

    def num_items(self, name):
        return _cap_pair(self.cfg["caps"].get(name, 0))[1]

    def capabilities(self):
        caps = []
        for name, code in CAP_CODES.items():
            cl, n = _cap_pair(self.cfg["caps"].get(name, 0))
            if n or cl:
                caps.append((code, cl, n))
        # libosdp 3.2.9 overwrites CommunicationSecurity with (1, 0) anyway.
        cs = self.cfg["caps"].get("comm_security", True)
        caps.append((Capability.CommunicationSecurity, 1 if cs else 0, 0))
        for fc, cl, n in self.cfg["caps"].get("extra", []):
            caps.append((int(fc), int(cl), int(n)))
        return PDCapabilities(caps)

    def start(self):
        cfg = self.cfg
        flags = []
        if cfg["install"]:
            flags.append(LibFlag.InstallMode)
        if cfg["secure"]:
            flags.append(LibFlag.EnforceSecure)
        p = cfg["pdid"]
        pdid = PdId(int(p["version"]), int(p["model"]), int(p["vendor"]),
                    int(p["serial"]), int(p["firmware"]))
        self.drop = Drop(self.bus)
        info = PDInfo(cfg["addr"], self.drop, scbk=parse_key(cfg["scbk"]),
                      flags=flags, id=pdid, name=f"PD-{cfg['addr']}")
        self.pd = PeripheralDevice(info, self.capabilities(), log_level=self.log_level,
                                   command_handler=self.on_command)
        self.inputs = [0] * self.num_items("inputs")
        self.outputs = [0] * self.num_items("outputs")
        self.bus.attach(self.drop)
        self.pd.start()

    def stop(self):
        if self.pd is None:
            return
        pd, drop = self.pd, self.drop
        self.pd = self.drop = None
        self.bus.detach(drop)
        pd.stop()
        self.report_state(force_offline=True)

    # called from the libosdp PD thread (inside refresh, PD lock held)
    def on_command(self, cmd):
        report = command_report(cmd)
        emit({"pd": self.addr, "command": report})
        name = report["cmd"]
        if name in self.cfg["nak"]:
            return (-1, None)
        if name == "keyset":
            if not self.cfg["accept_keyset"]:
                return (-1, None)
            # libosdp switches to the new key right after it sent the ACK.
            self.cfg["scbk"] = bytes(cmd["data"]).hex()
            self.cfg["install"] = False
        elif name == "output":
            n = int(cmd.get("output_no", 0))
            if 0 <= n < len(self.outputs):
                self.outputs[n] = 1 if int(cmd.get("control_code", 0)) in (2, 4, 5) else 0
        return (0, None)

    def submit(self, event):
        if self.pd is None:
            raise ValueError(f"PD {self.addr} is not running")
        if not self.pd.submit_event(event):
            raise ValueError("libosdp refused the event (queue full?)")

    def submit_local(self):
        self.submit({"event": Event.Status, "type": StatusReportType.Local,
                     "report": bytes([self.tamper & 0xFF, self.power & 0xFF])})

    def report_state(self, force_offline=False):
        with self.state_lock:
            pd = self.pd
            if force_offline or pd is None:
                online = sc = False
            else:
                online = bool(pd.is_online())
                sc = bool(pd.is_sc_active())
            if online != self.last_online:
                self.last_online = online
                emit({"pd": self.addr, "event": "online", "active": online})
            if sc != self.last_sc:
                self.last_sc = sc
                emit({"pd": self.addr, "event": "sc", "active": sc})


def run_pd_role(args, log_level):
    specs = [normalize_pd_spec(json.loads(s)) for s in (args.pd or ['{"addr":1}'])]
    addrs = [s["addr"] for s in specs]
    if len(set(addrs)) != len(addrs):
        raise SystemExit("duplicate PD address")
    bus = PdBus()
    pds = {}
    pds_lock = threading.Lock()
    for cfg in specs:
        sim = SimPd(bus, cfg, log_level)
        sim.start()
        pds[cfg["addr"]] = sim

    def stop_all():
        with pds_lock:
            sims = list(pds.values())
        for sim in sims:
            try:
                sim.pd and sim.pd.stop()
            except Exception:  # noqa: BLE001
                pass
    _stoppers.append(stop_all)
    emit({"bus": bus.path, "pds": [dict(s) for s in specs]})

    def monitor():
        while True:
            with pds_lock:
                sims = list(pds.values())
            for sim in sims:
                sim.report_state()
            time.sleep(0.02)
    threading.Thread(target=monitor, name="monitor", daemon=True).start()

    def get(m):
        addr = int(m["addr"])
        with pds_lock:
            if addr not in pds:
                raise ValueError(f"no PD with address {addr}")
            return pds[addr]

    def handle(m):
        do = m.get("do")
        if do == "ping":
            return {}
        if do == "garbage":
            bus.write(bytes.fromhex(m["hex"]))
            return {}
        if do == "start":
            addr = int(m["addr"])
            with pds_lock:
                sim = pds.get(addr)
            # validate first, so a bad request leaves a running PD alone
            cfg = normalize_pd_spec(m, base=sim.cfg if sim is not None else None)
            if sim is not None:
                sim.stop()
            new = SimPd(bus, cfg, log_level)
            if sim is not None:
                new.tamper, new.power = sim.tamper, sim.power
                new.last_online, new.last_sc = sim.last_online, sim.last_sc
            new.start()
            with pds_lock:
                pds[addr] = new
            return {"addr": addr, "scbk": cfg["scbk"]}
        sim = get(m)
        if do == "kill":
            sim.stop()
            return {"addr": sim.addr}
        if do == "card":
            bits = int(m["bits"])
            data = bytes.fromhex(m["hex"])
            if len(data) != (bits + 7) // 8:
                raise ValueError(f"{bits} bits need {(bits + 7) // 8} bytes (left-justified)")
            fmt = CARD_FORMATS[m.get("format", "wiegand")]
            sim.submit({"event": Event.CardRead, "reader_no": int(m.get("reader", 0)),
                        "format": fmt, "direction": 0, "length": bits, "data": data})
        elif do == "keys":
            data = bytes.fromhex(m["hex"]) if "hex" in m else encode_keys(m["keys"])
            sim.submit({"event": Event.KeyPress, "reader_no": int(m.get("reader", 0)),
                        "data": data})
        elif do == "input":
            if "inputs" in m:
                vals = [int(v) for v in m["inputs"]]
                if len(vals) != len(sim.inputs):
                    raise ValueError(f"PD {sim.addr} has {len(sim.inputs)} inputs "
                                     "(libosdp NAKs a report of another length)")
                sim.inputs = vals
            else:
                sim.inputs[int(m["no"])] = int(m["state"])
            sim.submit({"event": Event.Status, "type": StatusReportType.Input,
                        "report": bytes(sim.inputs)})
        elif do == "output_status":
            vals = [int(v) for v in m["outputs"]]
            if len(vals) != len(sim.outputs):
                raise ValueError(f"PD {sim.addr} has {len(sim.outputs)} outputs")
            sim.outputs = vals
            sim.submit({"event": Event.Status, "type": StatusReportType.Output,
                        "report": bytes(sim.outputs)})
        elif do == "tamper":
            sim.tamper = int(m["state"])
            sim.submit_local()
        elif do == "power":
            sim.power = int(m["state"])
            sim.submit_local()
        elif do == "local":
            sim.tamper = int(m.get("tamper", sim.tamper))
            sim.power = int(m.get("power", sim.power))
            sim.submit_local()
        else:
            raise ValueError(f"unknown request {do!r}")
        return {"addr": sim.addr}

    serve_stdin(handle)

# --------------------------------------------------------------------------
# role cp


class CpChannel(osdp.Channel):
    """The CP's end of the PTY. Shared by all PDs (one multi-drop bus)."""

    def __init__(self, master, slave):
        super().__init__()
        self.master = master
        self.slave = slave
        os.set_blocking(master, False)

    def read(self, max_bytes):
        try:
            return os.read(self.master, max_bytes)
        except (BlockingIOError, OSError):
            return b""

    def write(self, buf):
        # Bytes the PD has not read by the time the next command goes out are
        # stale (a device not listening misses bus traffic; it does not get a
        # backlog), so drop them instead of letting a late reader answer old
        # commands.
        try:
            termios.tcflush(self.slave, termios.TCIFLUSH)
        except termios.error:
            pass
        try:
            write_all(self.master, bytes(buf))
        except OSError:
            return 0
        return len(buf)

    def flush(self):
        # libosdp calls this before each send: drop stale reply bytes.
        while True:
            try:
                if not os.read(self.master, 4096):
                    return
            except (BlockingIOError, OSError):
                return


def run_cp_role(args, log_level):
    specs = []
    for s in (args.pd or ['{"addr":1}']):
        spec = json.loads(s)
        unknown = set(spec) - {"addr", "scbk", "secure", "install"}
        if unknown:
            raise SystemExit(f"unknown CP-side PD field(s) {sorted(unknown)}")
        spec.setdefault("scbk", None)
        parse_key(spec["scbk"])
        if spec.get("secure") and spec["scbk"] is None:
            raise SystemExit("secure (EnforceSecure) needs an scbk")
        specs.append(spec)
    addrs = [int(s["addr"]) for s in specs]
    if len(set(addrs)) != len(addrs):
        raise SystemExit("duplicate PD address")

    master, slave, path = open_pty()
    channel = CpChannel(master, slave)
    infos = []
    for spec in specs:
        flags = [LibFlag.EnableNotification]
        if spec.get("secure"):
            flags.append(LibFlag.EnforceSecure)
        if spec.get("install"):
            flags.append(LibFlag.InstallMode)
        infos.append(PDInfo(int(spec["addr"]), channel, scbk=parse_key(spec["scbk"]),
                            flags=flags, name=f"PD-{spec['addr']}"))

    # The event callback runs inside ControlPanel.refresh() with the CP lock
    # held: it must not call back into the ControlPanel. Its first argument is
    # the PD's index in the PDInfo list, not its address.
    def on_event(idx, ev):
        try:
            emit_cp_event(addrs[idx], ev)
        except Exception as exc:  # noqa: BLE001
            log(f"bad event {ev!r}: {exc!r}")
        return 0

    cp = ControlPanel(infos, log_level=log_level, event_handler=on_event)
    cp.start()
    _stoppers.append(lambda: cp.stop())
    emit({"bus": path, "pds": addrs})

    def handle(m):
        do = m.get("do")
        if do == "ping":
            return {}
        addr = int(m["addr"])
        if addr not in addrs:
            raise ValueError(f"no PD with address {addr}")
        if do == "info":
            online = cp.is_online(addr)
            res = {"addr": addr, "online": online, "sc": cp.is_sc_active(addr)}
            if online:
                # the bindings return these as signed C ints
                res["pdid"] = {k: v & 0xFFFFFFFF for k, v in vars(cp.get_pd_id(addr)).items()}
                res["caps"] = {name: list(cp.check_capability(addr, code))
                               for name, code in vars(Capability).items()
                               if not name.startswith("_") and code}
            return res
        if do == "reset":
            cp.disable_pd(addr)
            time.sleep(0.1)
            try:
                termios.tcflush(slave, termios.TCIFLUSH)
            except termios.error:
                pass
            cp.enable_pd(addr)
            return {"addr": addr}
        cmd = build_cp_command(do, m)
        return {"addr": addr, "submitted": bool(cp.submit_command(addr, cmd))}

    serve_stdin(handle)


def build_cp_command(do, m):
    if do == "led":
        cmd = {"command": Command.LED, "reader": int(m.get("reader", 0)),
               "led_number": int(m.get("led_number", 0)),
               "temporary": bool(m.get("temporary", False)),
               "control_code": int(m.get("control_code", 1)),
               "on_color": color(m.get("on_color", "red")),
               "off_color": color(m.get("off_color", "black")),
               "on_count": int(m.get("on_count", 10)),
               "off_count": int(m.get("off_count", 0))}
        if cmd["temporary"]:
            cmd["timer_count"] = int(m.get("timer_count", 10))
        return cmd
    if do == "buzzer":
        return {"command": Command.Buzzer, "reader": int(m.get("reader", 0)),
                "control_code": int(m.get("control_code", 2)),
                "on_count": int(m.get("on_count", 1)),
                "off_count": int(m.get("off_count", 1)),
                "rep_count": int(m.get("rep_count", 1))}
    if do == "output":
        return {"command": Command.Output, "output_no": int(m.get("output_no", 0)),
                "control_code": int(m.get("control_code", 2)),
                "timer_count": int(m.get("timer_count", 0))}
    if do == "text":
        data = str(m["data"])
        if len(data) > 32:
            raise ValueError("libosdp limits text to 32 characters")
        return {"command": Command.Text, "reader": int(m.get("reader", 0)),
                "control_code": int(m.get("control_code", 1)),
                "temp_time": int(m.get("temp_time", 0)),
                "offset_row": int(m.get("offset_row", 1)),
                "offset_col": int(m.get("offset_col", 1)), "data": data}
    if do == "keyset":
        return {"command": Command.Keyset, "type": 1,
                "data": parse_key(m["scbk"])}
    if do == "status":
        return {"command": Command.Status, "type": STATUS_BY_NAME[m.get("type", "local")]}
    if do == "comset":
        return {"command": Command.Comset, "address": int(m["address"]),
                "baud_rate": int(m.get("baud_rate", 9600))}
    raise ValueError(f"unknown request {do!r}")


def emit_cp_event(addr, ev):
    kind = ev.get("event")
    if kind == Event.Notification:
        ntype = ev.get("type")
        if ntype == EventNotification.SecureChannelStatus:
            emit({"event": "sc", "pd": addr, "active": bool(ev["arg0"]),
                  "scbkd": bool(ev["arg1"])})
        elif ntype == EventNotification.PeripheralDeviceStatus:
            emit({"event": "online", "pd": addr, "online": bool(ev["arg0"])})
        elif ntype == EventNotification.Command:
            emit({"event": "command", "pd": addr,
                  "command": CMD_NAMES.get(ev["arg0"], ev["arg0"]), "ok": bool(ev["arg1"])})
        else:
            emit({"event": "notification", "pd": addr, "type": ntype,
                  "arg0": ev.get("arg0"), "arg1": ev.get("arg1")})
    elif kind == Event.CardRead:
        out = {"event": "card", "pd": addr, "reader": ev["reader_no"],
               "format": CARD_FORMAT_NAMES.get(ev["format"], ev["format"]),
               "hex": bytes(ev["data"]).hex()}
        if "length" in ev:
            out["bits"] = ev["length"]
        emit(out)
    elif kind == Event.KeyPress:
        data = bytes(ev["data"])
        emit({"event": "keypad", "pd": addr, "reader": ev["reader_no"],
              "hex": data.hex(), "keys": decode_keys(data)})
    elif kind == Event.Status:
        report = list(bytes(ev["report"]))
        out = {"event": "status", "pd": addr,
               "type": STATUS_TYPES.get(ev["type"], ev["type"]), "report": report}
        if ev["type"] == StatusReportType.Local and len(report) >= 2:
            out["tamper"], out["power"] = report[0], report[1]
        elif ev["type"] == StatusReportType.Remote and report:
            out["power"] = report[0]
        emit(out)
    elif kind == Event.ManufacturerReply:
        emit({"event": "mfgrep", "pd": addr, "vendor_code": ev["vendor_code"],
              "hex": bytes(ev["data"]).hex()})
    else:
        emit({"event": "unknown", "pd": addr, "raw": {k: v for k, v in ev.items()}})

# --------------------------------------------------------------------------
# stdin loop


def serve_stdin(handle):
    """Read JSON requests until quit/EOF; answer each with ok or error."""
    while True:
        try:
            line = sys.stdin.readline()
        except (OSError, ValueError):
            line = ""
        if not line:  # EOF: the test went away
            shutdown(0)
        line = line.strip()
        if not line:
            continue
        try:
            m = json.loads(line)
            if not isinstance(m, dict) or "do" not in m:
                raise ValueError('expected an object with "do"')
            if m["do"] == "quit":
                emit({"ok": "quit"})
                shutdown(0)
            res = handle(m)
            emit({"ok": m["do"], **res})
        except Exception as exc:  # noqa: BLE001 - report, keep serving
            emit({"error": f"{type(exc).__name__}: {exc}", "input": line})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--role", choices=["pd", "cp"], required=True)
    ap.add_argument("--pd", action="append", metavar="JSON",
                    help="one PD (repeat for several); see the module docstring")
    ap.add_argument("--log-level", choices=sorted(LOG_LEVELS), default="warning")
    ap.add_argument("--trace", action="store_true",
                    help='PD role: report every frame on the bus as {"wire":"cp"|"pd",...}')
    args = ap.parse_args()
    global TRACE
    TRACE = args.trace
    install_signal_handlers()
    try:
        if args.role == "pd":
            run_pd_role(args, LOG_LEVELS[args.log_level])
        else:
            run_cp_role(args, LOG_LEVELS[args.log_level])
    except SystemExit as exc:
        log(str(exc.code))
        shutdown(2)
    except Exception as exc:  # noqa: BLE001
        log(f"fatal: {type(exc).__name__}: {exc}")
        shutdown(1)
    shutdown(0)


if __name__ == "__main__":
    main()
