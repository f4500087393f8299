#!/usr/bin/python3
"""Differential policy test: run one matrix of clients against a bus daemon.

Usage (as root):
    harness.py run DAEMON CONFIG_TEMPLATE OUT.json
        start DAEMON (busbar or dbus-daemon) with CONFIG_TEMPLATE (@SOCKET@
        replaced), run every case and write {case: outcome} to OUT.json.
    harness.py diff A.json B.json
        print "CASES<TAB>n<TAB>m", then "MISMATCH<TAB>case<TAB>A<TAB>B" per
        case whose outcomes differ (case without its T<n> id).

Clients speak raw D-Bus (SASL EXTERNAL, fd passing) so that every header
field is under our control. Each uid gets its own forked worker process
(setgroups/setresgid/setresuid), holding three connections:
  R<uid> owns well-known names and matches all signals,
  S<uid> sends the probes,
  E<uid> eavesdrops (AddMatch eavesdrop=true).
All probes are sent in a batch; every message carries a tag ("T<n>") as its
first body argument so deliveries can be attributed, and errors from the bus
are attributed by reply serial. An outcome lists what the sender got back
(error name, "send"/"receive" and the matched-rule count of AccessDenied
texts, or a method return) and which connections received the message.
"""

import json
import os
import re
import select
import socket
import struct
import subprocess
import sys
import tempfile
import time

BUS = "org.freedesktop.DBus"
METHOD_CALL, METHOD_RETURN, ERROR, SIGNAL = 1, 2, 3, 4
TYPE_NAMES = {"call": METHOD_CALL, "return": METHOD_RETURN, "error": ERROR, "signal": SIGNAL}
NO_REPLY_EXPECTED, NO_AUTO_START = 1, 2

# client id -> (uid, gid, supplementary groups). The first three are as the
# user database says; "100g" is messagebus with nogroup as an extra
# supplementary group, which dbus-daemon sees through SO_PEERGROUPS.
USERS = {"0": (0, 0, [0]), "100": (100, 102, [102]), "65534": (65534, 65534, [65534]),
         "100g": (100, 102, [102, 65534])}

# --------------------------------------------------------------------------
# marshalling (little endian only)


def pad(buf, n):
    while len(buf) % n:
        buf.append(0)


def m_u32(buf, v):
    pad(buf, 4)
    buf += struct.pack("<I", v)


def m_str(buf, s):
    b = s.encode()
    m_u32(buf, len(b))
    buf += b + b"\0"


def m_sig(buf, s):
    b = s.encode()
    buf.append(len(b))
    buf += b + b"\0"


FIELD = {"path": (1, "o"), "iface": (2, "s"), "member": (3, "s"), "error": (4, "s"),
         "reply_serial": (5, "u"), "dest": (6, "s"), "signature": (8, "g"), "nfds": (9, "u")}


def marshal(mtype, flags, serial, fields, tag, nfds):
    body = bytearray()
    sig = ""
    if tag is not None:
        m_str(body, tag)
        sig = "s"
        for i in range(nfds):
            m_u32(body, i)
            sig += "h"
    fields = dict(fields)
    if sig:
        fields["signature"] = sig
    if nfds:
        fields["nfds"] = nfds
    hdr = bytearray(b"l")
    hdr += bytes([mtype, flags, 1])
    hdr += struct.pack("<II", len(body), serial)
    arr = bytearray()
    start = len(hdr) + 4
    for key, val in fields.items():
        if val is None:
            continue
        code, t = FIELD[key]
        # struct alignment relative to the whole message
        while (start + len(arr)) % 8:
            arr.append(0)
        arr.append(code)
        m_sig(arr, t)
        if t in "so":
            # alignment relative to the whole message
            while (start + len(arr)) % 4:
                arr.append(0)
            b = val.encode()
            arr += struct.pack("<I", len(b)) + b + b"\0"
        elif t == "g":
            m_sig(arr, val)
        else:
            while (start + len(arr)) % 4:
                arr.append(0)
            arr += struct.pack("<I", val)
    hdr += struct.pack("<I", len(arr)) + arr
    pad(hdr, 8)
    return bytes(hdr + body)


def parse(data):
    """Returns (message dict, length) or None when incomplete."""
    if len(data) < 16:
        return None
    body_len, serial, arr_len = struct.unpack_from("<III", data, 4)
    hdr_len = 16 + arr_len
    hdr_len += (-hdr_len) % 8
    total = hdr_len + body_len
    if len(data) < total:
        return None
    m = {"type": data[1], "serial": serial}
    i = 16
    end = 16 + arr_len
    names = {1: "path", 2: "iface", 3: "member", 4: "error", 5: "reply_serial", 6: "dest",
             7: "sender", 8: "signature", 9: "nfds"}
    while i < end:
        i += (-i) % 8
        code = data[i]
        slen = data[i + 1]
        t = data[i + 2:i + 2 + slen].decode()
        i += 3 + slen
        if t in ("s", "o"):
            i += (-i) % 4
            (n,) = struct.unpack_from("<I", data, i)
            val = data[i + 4:i + 4 + n].decode()
            i += 5 + n
        elif t == "g":
            n = data[i]
            val = data[i + 1:i + 1 + n].decode()
            i += 2 + n
        elif t == "u":
            i += (-i) % 4
            (val,) = struct.unpack_from("<I", data, i)
            i += 4
        else:
            raise ValueError("unexpected header field type " + t)
        m[names.get(code, str(code))] = val
    body = data[hdr_len:total]
    sig = m.get("signature", "")
    if sig.startswith("s"):
        (n,) = struct.unpack_from("<I", body, 0)
        m["arg0"] = body[4:4 + n].decode(errors="replace")
    elif sig.startswith("u"):
        (m["arg0"],) = struct.unpack_from("<I", body, 0)
    return m, total


# --------------------------------------------------------------------------
# a client connection


class Conn:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.buf = b""
        self.inbox = []
        self.serial = 0
        uid = str(os.geteuid()).encode().hex()
        self.sock.sendall(b"\0AUTH EXTERNAL " + uid.encode() + b"\r\n")
        self._line("OK")
        self.sock.sendall(b"NEGOTIATE_UNIX_FD\r\n")
        self._line("AGREE_UNIX_FD")
        self.sock.sendall(b"BEGIN\r\n")
        self.unique = self.call("Hello")["arg0"]

    def _line(self, expect):
        while b"\r\n" not in self.buf:
            d = self.sock.recv(4096)
            if not d:
                raise RuntimeError("disconnected during auth")
            self.buf += d
        line, self.buf = self.buf.split(b"\r\n", 1)
        if not line.startswith(expect.encode()):
            raise RuntimeError("auth: expected %s, got %r" % (expect, line))

    def send(self, mtype, fields, tag=None, nfds=0, flags=0):
        self.serial += 1
        data = marshal(mtype, flags, self.serial, fields, tag, nfds)
        if nfds:
            fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(nfds)]
            socket.send_fds(self.sock, [data], fds)
            for fd in fds:
                os.close(fd)
        else:
            self.sock.sendall(data)
        return self.serial

    def pump(self, timeout):
        r, _, _ = select.select([self.sock], [], [], timeout)
        if not r:
            return False
        data, fds, _, _ = socket.recv_fds(self.sock, 1 << 16, 64)
        for fd in fds:
            os.close(fd)
        if not data:
            raise RuntimeError("disconnected")
        self.buf += data
        while True:
            p = parse(self.buf)
            if p is None:
                break
            m, n = p
            self.buf = self.buf[n:]
            self.inbox.append(m)
        return True

    def wait_reply(self, serial, timeout=10.0):
        deadline = time.time() + timeout
        while True:
            for i, m in enumerate(self.inbox):
                if m.get("reply_serial") == serial and m.get("sender") == BUS:
                    return self.inbox.pop(i)
            if time.time() > deadline:
                raise RuntimeError("no reply to %d" % serial)
            self.pump(0.5)

    def call(self, member, args=(), iface=BUS, path="/org/freedesktop/DBus"):
        self.serial += 1
        body = bytearray()
        sig = ""
        for a in args:
            if isinstance(a, str):
                m_str(body, a)
                sig += "s"
            else:
                m_u32(body, a)
                sig += "u"
        fields = {"path": path, "iface": iface, "member": member, "dest": BUS}
        if sig:
            fields["signature"] = sig
        hdr = marshal(METHOD_CALL, 0, self.serial, fields, None, 0)
        # marshal() wrote a zero body length: patch it in
        hdr = hdr[:4] + struct.pack("<I", len(body)) + hdr[8:]
        self.sock.sendall(hdr + bytes(body))
        return self.wait_reply(self.serial)

    def drain(self):
        """Round trip to the bus, then hand over (and forget) the inbox."""
        self.call("GetId")
        while self.pump(0):
            pass
        out, self.inbox = self.inbox, []
        return out


# --------------------------------------------------------------------------
# worker process (one per uid)


def worker(who, rfd, wfd, sockpath):
    uid, gid, sup = USERS[who]
    os.setgroups(sup)
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    rd = os.fdopen(rfd, "r")
    wr = os.fdopen(wfd, "w")
    conns = {}
    for line in rd:
        cmd = json.loads(line)
        op = cmd["op"]
        try:
            if op == "connect":
                c = Conn(sockpath)
                conns[cmd["label"]] = c
                if cmd.get("match"):
                    r = c.call("AddMatch", [cmd["match"]])
                    if r["type"] == ERROR:
                        raise RuntimeError("AddMatch failed: %s %s" % (r.get("error"), r.get("arg0")))
                res = {"unique": c.unique}
            elif op == "addmatch":
                r = conns[cmd["label"]].call("AddMatch", [cmd["rule"]])
                res = {"result": "ok" if r["type"] == METHOD_RETURN else describe_error(r)}
            elif op == "removematch":
                conns[cmd["label"]].call("RemoveMatch", [cmd["rule"]])
                res = {}
            elif op == "request":
                r = conns[cmd["label"]].call("RequestName", [cmd["name"], cmd.get("flags", 0)])
                res = {"result": r["arg0"] if r["type"] == METHOD_RETURN else r.get("error")}
            elif op == "send":
                c = conns[cmd["label"]]
                serials = []
                for s in cmd["msgs"]:
                    serials.append(c.send(TYPE_NAMES[s["type"]], s["fields"], s.get("tag"),
                                          s.get("nfds", 0), s.get("flags", 0)))
                    if len(serials) % 32 == 0:
                        for cc in conns.values():
                            while cc.pump(0):
                                pass
                res = {"serials": serials}
            elif op == "sync":
                # A round trip on the sending connection: the bus handles a
                # connection's messages in order, so once this returns it
                # has routed everything sent before it.
                conns[cmd["label"]].call("GetId")
                res = {}
            elif op == "drain":
                res = {"inbox": conns[cmd["label"]].drain()}
            elif op == "pump":
                for cc in conns.values():
                    while cc.pump(0):
                        pass
                res = {}
            elif op == "exit":
                wr.write("{}\n")
                wr.flush()
                os._exit(0)
            else:
                raise RuntimeError("bad op " + op)
        except Exception as e:  # reported to the parent
            res = {"exception": "%s: %s" % (type(e).__name__, e)}
        wr.write(json.dumps(res) + "\n")
        wr.flush()
    os._exit(0)


class Worker:
    def __init__(self, who, sockpath):
        r1, w1 = os.pipe()
        r2, w2 = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(w1)
            os.close(r2)
            try:
                worker(who, r1, w2, sockpath)
            finally:
                os._exit(1)
        os.close(r1)
        os.close(w2)
        self.pid = pid
        self.wr = os.fdopen(w1, "w")
        self.rd = os.fdopen(r2, "r")

    def __call__(self, **cmd):
        self.wr.write(json.dumps(cmd) + "\n")
        self.wr.flush()
        line = self.rd.readline()
        if not line:
            raise RuntimeError("worker died")
        res = json.loads(line)
        if "exception" in res:
            raise RuntimeError("worker: " + res["exception"])
        return res

    def close(self):
        try:
            self(op="exit")
        except Exception:
            pass
        os.waitpid(self.pid, 0)


# --------------------------------------------------------------------------
# the case matrix

UIDS = ["0", "100", "65534"]  # the full matrix; "100g" only does GROUP_CASES

# names requested, in this order, by each receiver: (uid, name)
NAME_REQUESTS = [
    (0, "com.example.Svc"), (0, "com.example.Open"), (0, "com.example.Pub.Root"),
    (0, "com.example.Pub.Secret.Root"), (0, "com.example.Bus.Zero"),
    (100, "com.example.Svc"), (100, "com.example.Bus.One"), (100, "com.example.Bus.Reserved"),
    (100, "com.example.Bus"), (100, "com.example.Open"), (100, "com.example.Pub.MB"),
    (100, "com.example.Publisher"), (100, "com.example.Nobody.MB"),
    (65534, "com.example.Nobody.X"), (65534, "com.example.Nobody"), (65534, "com.example.Pub.Secret.N"),
    (65534, "com.example.Svc"), (65534, "com.example.Pub.Mandatory"), (65534, "com.example.Pub"),
    (65534, "com.example.Other"), (65534, "org.freedesktop.DBus"), (0, "com.example.Pub.Console"),
    ("100g", "com.example.Nobody.G"), ("100g", "com.example.Bus.G"),
]

DESTS = ["com.example.Svc", "com.example.Open", "com.example.Pub.Root", "com.example.Pub.Secret.Root",
         "com.example.Bus.One", "com.example.Bus", "com.example.Pub.MB", "com.example.Nobody.X",
         "com.example.Pub.Secret.N", "com.example.Pub", "R0", "R100", "R65534", "com.example.Missing"]

# supplementary groups: (sender, kind, fields, destination)
GROUP_CASES = [
    ("S100g", "call", {"path": "/com/example/Svc", "iface": "com.example.Svc.Public", "member": "Ping"},
     "com.example.Pub.Root"),
    ("S100g", "call", {"path": "/com/example/Svc", "iface": "com.example.Svc.Public", "member": "Ping"},
     "com.example.Pub.MB"),
    ("S0", "call", {"path": "/x", "iface": "com.example.NoRecv", "member": "X"}, "R100g"),
    ("S0", "call", {"path": "/x", "iface": "com.example.Other", "member": "X"}, "com.example.Bus.G"),
]

# unicast message shapes: (kind, fields, nfds)
P_SVC = "/com/example/Svc"
UNICAST = [
    ("call", {"path": P_SVC, "iface": "com.example.Svc.Public", "member": "Ping"}, 0),
    ("call", {"path": P_SVC, "iface": "com.example.Svc.Public", "member": "Get"}, 0),
    ("call", {"path": P_SVC, "iface": "com.example.Svc.Admin", "member": "Status"}, 0),
    ("call", {"path": P_SVC, "iface": "com.example.Svc.Admin", "member": "Shutdown"}, 0),
    ("call", {"path": P_SVC, "iface": "com.example.Svc.Admin", "member": "Reboot"}, 0),
    ("call", {"path": "/com/example/Svc/public", "member": "Ping"}, 0),
    ("call", {"path": "/com/example/Svc/public", "iface": "com.example.Other", "member": "Ping"}, 0),
    ("call", {"path": "/com/example/Svc/public", "member": "Forbidden"}, 0),
    ("call", {"path": "/com/example/Svc/public", "iface": "com.example.Svc.Public", "member": "Forbidden"}, 0),
    ("call", {"path": "/x", "iface": "com.example.NotConsole", "member": "X"}, 0),
    ("call", {"path": "/other", "member": "Ping"}, 0),
    ("call", {"path": "/com/example/mb", "iface": "com.example.Other", "member": "X"}, 0),
    ("call", {"path": "/x", "iface": "com.example.Forbidden", "member": "X"}, 0),
    ("call", {"path": "/x", "iface": "com.example.NoRecv", "member": "X"}, 0),
    ("call", {"path": "/x", "iface": "com.example.Spy", "member": "X"}, 0),
    ("call", {"path": "/x", "iface": "com.example.Private", "member": "X"}, 0),
    ("call", {"path": "/x", "iface": "com.example.Fd", "member": "Take"}, 0),
    ("call", {"path": "/x", "iface": "com.example.Fd", "member": "Take"}, 1),
    ("call", {"path": "/x", "iface": "com.example.Fd", "member": "Take"}, 2),
    ("call", {"path": "/x", "iface": "com.example.Fd", "member": "Take"}, 3),
    ("call", {"path": "/x", "iface": "com.example.Other", "member": "Take"}, 1),
    ("signal", {"path": "/com/example/sig", "iface": "com.example.Sig", "member": "Tick"}, 0),
    ("signal", {"path": "/com/example/sig", "iface": "com.example.Sig", "member": "Tock"}, 0),
    ("signal", {"path": "/com/example/sig", "iface": "com.example.Quiet", "member": "Hush"}, 0),
    ("signal", {"path": "/com/example/hidden", "iface": "com.example.Sig", "member": "Tick"}, 0),
    ("signal", {"path": "/com/example/sig", "iface": "com.example.Svc.Noisy", "member": "Beep"}, 0),
    ("signal", {"path": "/com/example/mandatory", "iface": "com.example.Sig", "member": "Tick"}, 0),
    ("signal", {"path": "/com/example/sig", "iface": "com.example.Fd", "member": "Pass"}, 2),
    # unrequested replies, and other messages carrying a reply serial
    ("return", {"reply_serial": 777}, 0),
    ("error", {"error": "com.example.Error.Any", "reply_serial": 778}, 0),
    ("error", {"error": "com.example.Error.Secret", "reply_serial": 779}, 0),
    ("error", {"error": "com.example.Error.Hidden", "reply_serial": 780}, 0),
    ("signal", {"path": "/com/example/sig", "iface": "com.example.Sig", "member": "Tick", "reply_serial": 781}, 0),
    ("call", {"path": "/x", "iface": "com.example.ReplyMe", "member": "Ask", "reply_serial": 782}, 0),
]

# broadcast signals, sent by S<uid> and by R<uid> (which owns names)
BROADCAST = [
    {"path": "/com/example/sig", "iface": "com.example.Sig", "member": "Tick"},
    {"path": "/com/example/sig", "iface": "com.example.Sig", "member": "Tock"},
    {"path": "/com/example/sig", "iface": "com.example.Quiet", "member": "Hush"},
    {"path": "/com/example/hidden", "iface": "com.example.Sig", "member": "Tick"},
    {"path": "/com/example/sig", "iface": "com.example.Svc.Noisy", "member": "Beep"},
    {"path": "/com/example/mandatory", "iface": "com.example.Sig", "member": "Tick"},
    {"path": "/com/example/sig", "iface": "com.example.NoRecv", "member": "Tick"},
    {"path": "/com/example/sig", "iface": "com.example.Private", "member": "Tick"},
    {"path": "/com/example/sig", "iface": "com.example.Sig", "member": "Tick", "reply_serial": 783},
    {"path": "/com/example/sig", "iface": "com.example.Sig", "member": "Tick", "nfds": 1},
    {"path": "/com/example/sig", "iface": "com.example.Fd", "member": "Pass", "nfds": 3},
]

# calls to the bus driver: (iface, member)
DRIVER = [
    (BUS, "GetId"), (BUS, "UpdateActivationEnvironment"), ("org.freedesktop.DBus.Introspectable", "Introspect"),
    ("org.freedesktop.DBus.Peer", "Ping"), ("org.freedesktop.DBus.Debug.Stats", "GetStats"),
    (None, "GetId"), (BUS, "ListNames"), (BUS, "ListActivatableNames"),
]

# replies from R<uid> to S<uid>: (type, error name)
REPLIES = [
    ("return", None), ("error", "com.example.Error.Generic"), ("error", "com.example.Error.Secret"),
    ("error", "com.example.Error.Hidden"), ("error", "com.example.Error.Any"),
]


def build_cases():
    cases = []  # dicts: id, desc, phase-1 sends, phase-2 reply plan

    def add(desc, **kw):
        cid = "T%d" % len(cases)
        cases.append(dict(id=cid, desc=desc, **kw))

    for su in UIDS:
        for dest in DESTS:
            for kind, fields, nfds in UNICAST:
                f = dict(fields)
                add("S%s %s %s%s -> %s" % (su, kind, " ".join("%s=%s" % kv for kv in sorted(f.items())),
                                           " fds=%d" % nfds if nfds else "", dest),
                    sender="S%s" % su, kind=kind, fields=f, dest=dest, nfds=nfds)
        for fields in BROADCAST:
            fields = dict(fields)
            nfds = fields.pop("nfds", 0)
            for who in ("S", "R"):
                add("%s%s broadcast %s%s" % (who, su, " ".join("%s=%s" % kv for kv in sorted(fields.items())),
                                             " fds=%d" % nfds if nfds else ""),
                    sender="%s%s" % (who, su), kind="signal", fields=dict(fields), dest=None, nfds=nfds)
        for iface, member in DRIVER:
            add("S%s driver %s.%s" % (su, iface, member), sender="S%s" % su, kind="call",
                fields={"path": "/org/freedesktop/DBus", "iface": iface, "member": member}, dest=BUS, nfds=0)
        for ru in UIDS:
            for rtype, ename in REPLIES:
                for requested in (True, False):
                    add("R%s %s %s %s to S%s" % (ru, "requested" if requested else "unrequested", rtype,
                                                 ename or "", su),
                        sender="S%s" % su, kind="call",
                        fields={"path": "/x", "iface": "com.example.ReplyMe", "member": "Ask"},
                        dest="R%s" % ru, nfds=0,
                        reply=dict(replier="R%s" % ru, type=rtype, error=ename, requested=requested))
    for sender, kind, fields, dest in GROUP_CASES:
        add("%s %s %s -> %s" % (sender, kind, " ".join("%s=%s" % kv for kv in sorted(fields.items())), dest),
            sender=sender, kind=kind, fields=dict(fields), dest=dest, nfds=0)
    return cases


DENIED_RE = re.compile(r"Rejected (send|receive) message, (\d+) matched rules")


def describe_error(m):
    name = m.get("error")
    text = m.get("arg0") or ""
    d = DENIED_RE.search(text) if isinstance(text, str) else None
    if d:
        return "%s(%s,%s)" % (name, d.group(1), d.group(2))
    return name


def run(daemon, template, out_path):
    tmp = tempfile.mkdtemp(prefix="policydiff-")
    os.chmod(tmp, 0o755)
    sockpath = os.path.join(tmp, "bus")
    conf = os.path.join(tmp, "bus.conf")
    with open(template) as f:
        text = f.read().replace("@SOCKET@", sockpath)
    with open(conf, "w") as f:
        f.write(text)
    proc = subprocess.Popen([daemon, "--config-file=" + conf, "--nofork", "--print-address=1",
                             "--nopidfile", "--nosyslog"],
                            stdout=subprocess.PIPE, stderr=open(os.path.join(tmp, "stderr"), "w"))
    addr = proc.stdout.readline().decode().strip()
    if not addr:
        proc.wait()
        sys.exit("daemon %s did not start: %s" % (daemon, open(os.path.join(tmp, "stderr")).read()))
    workers = {}
    try:
        outcome = run_cases(sockpath, workers)
    finally:
        for w in workers.values():
            w.close()
        proc.terminate()
        proc.wait()
    with open(out_path, "w") as f:
        json.dump(outcome, f, indent=1, sort_keys=True)


def run_cases(sockpath, workers):
    for u in USERS:
        workers[u] = Worker(u, sockpath)
    labels = {}
    unique = {}
    for u in USERS:
        w = workers[u]
        for role, match in (("R", "type='signal'"), ("S", None), ("E", None)):
            if u not in UIDS:
                if role == "E":
                    continue
                match = None  # kept out of the broadcast matrix
            label = "%s%s" % (role, u)
            labels[label] = w
            unique[label] = w(op="connect", label=label, match=match)["unique"]
    outcome = {}
    for u in UIDS:
        # Only privileged connections (root, the bus owner) may eavesdrop.
        w = workers[u]
        r = w(op="addmatch", label="E%s" % u, rule="eavesdrop=true")["result"]
        outcome["addmatch E%s eavesdrop=true" % u] = r
        if u != "0" and r == "ok":
            # keep the remaining cases about policy: undo it
            w(op="removematch", label="E%s" % u, rule="eavesdrop=true")
    for u, name in NAME_REQUESTS:
        u = str(u)
        outcome["own R%s %s" % (u, name)] = str(workers[u](op="request", label="R%s" % u, name=name)["result"])

    cases = build_cases()
    by_sender = {}
    for c in cases:
        dest = c["dest"]
        if dest in unique:
            dest = unique[dest]
        f = dict(c["fields"])
        if dest is not None:
            f["dest"] = dest
        tag = None if dest == BUS else c["id"]
        msg = {"type": c["kind"], "fields": f, "tag": tag, "nfds": c["nfds"], "flags": NO_AUTO_START}
        by_sender.setdefault(c["sender"], []).append((c, msg))
    serial_of = {}  # (label, serial) -> case id / reply id
    for label, items in by_sender.items():
        serials = labels[label](op="send", label=label, msgs=[m for _, m in items])["serials"]
        for (c, _), s in zip(items, serials):
            serial_of[(label, s)] = c["id"]
            serial_of[(unique[label], s)] = c["id"]
        for w in workers.values():
            w(op="pump")
    # A receiver's own round trip orders nothing against other connections
    # (a loaded bus may not have read a sender's socket yet), so every
    # sender makes one first.
    for label in by_sender:
        labels[label](op="sync", label=label)
    inbox = {label: labels[label](op="drain", label=label)["inbox"] for label in labels}

    # phase 2: replies
    seen_call = {}
    for label, msgs in inbox.items():
        for m in msgs:
            if m.get("type") == METHOD_CALL and isinstance(m.get("arg0"), str):
                seen_call.setdefault((label, m["arg0"]), m)
    plans = {}
    for c in cases:
        r = c.get("reply")
        if not r:
            continue
        call = seen_call.get((r["replier"], c["id"]))
        if call is None and r["requested"]:
            continue
        f = {"dest": unique[c["sender"]],
             "reply_serial": call["serial"] if r["requested"] else 4000000 + int(c["id"][1:])}
        if r["error"]:
            f["error"] = r["error"]
        plans.setdefault(r["replier"], []).append(
            (c["id"] + "r", {"type": r["type"], "fields": f, "tag": c["id"] + "r", "nfds": 0}))
    for label, items in plans.items():
        serials = labels[label](op="send", label=label, msgs=[m for _, m in items])["serials"]
        for (rid, _), s in zip(items, serials):
            serial_of[(label, s)] = rid
            serial_of[(unique[label], s)] = rid
    for label in plans:
        labels[label](op="sync", label=label)
    inbox2 = {label: labels[label](op="drain", label=label)["inbox"] for label in labels}

    # signals from the bus driver each connection was allowed to receive
    for label in labels:
        got = sorted({m.get("member") for m in inbox[label] + inbox2[label]
                      if m.get("sender") == BUS and m["type"] == SIGNAL})
        outcome["driver signals to %s" % label] = ",".join(got) or "-"

    result = {}
    for phase in (inbox, inbox2):
        for label, msgs in phase.items():
            for m in msgs:
                if m.get("sender") == BUS and "reply_serial" in m and (label, m["reply_serial"]) in serial_of:
                    key = serial_of[(label, m["reply_serial"])]
                    r = result.setdefault(key, {"back": [], "to": []})
                    r["back"].append("return" if m["type"] == METHOD_RETURN else describe_error(m))
                    continue
                key = serial_of.get((m.get("sender"), m["serial"]))
                if key is not None:
                    result.setdefault(key, {"back": [], "to": []})["to"].append(label)
    for c in cases:
        for key, what in ((c["id"], ""), (c["id"] + "r", " [reply]")):
            if what and not c.get("reply"):
                continue
            r = result.get(key, {"back": [], "to": []})
            back = ",".join(sorted(r["back"])) or "-"
            to = ",".join(sorted(r["to"])) or "-"
            outcome["%s %s%s" % (c["id"], c["desc"], what)] = "back=%s to=%s" % (back, to)
    return outcome


def diff(a_path, b_path):
    a = json.load(open(a_path))
    b = json.load(open(b_path))
    # one line per mismatch, tab-separated: case (without its T<n> id), A, B
    print("CASES\t%d\t%d" % (len(a), len(b)))
    for k in sorted(set(a) | set(b), key=lambda k: (len(k.split()[0]), k)):
        if a.get(k) != b.get(k):
            case = re.sub(r"^T\d+ ", "", k)
            print("MISMATCH\t%s\t%s\t%s" % (case, a.get(k), b.get(k)))


if __name__ == "__main__":
    if sys.argv[1] == "run":
        run(sys.argv[2], sys.argv[3], sys.argv[4])
    elif sys.argv[1] == "diff":
        diff(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
