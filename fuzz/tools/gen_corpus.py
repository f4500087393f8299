#!/usr/bin/env python3
"""Regenerates fuzz/corpus/<target>/ seed files.

Hand-made D-Bus messages (marshalled here), plus the test data that the
dbus-daemon package installs (if present) and the repo's own config files:

  /usr/lib/dbus-1.0/installed-tests/dbus/data/{valid,invalid}-messages/*.message-raw
  /usr/lib/dbus-1.0/installed-tests/dbus/data/auth/*.auth-script
  /usr/lib/dbus-1.0/installed-tests/dbus/data/*config-files*/**
  /usr/lib/dbus-1.0/installed-tests/dbus/data/*service-files*/, systemd-activation/
  /usr/share/dbus-1/*.conf, policy/conf/*.conf

Usage: python3 fuzz/tools/gen_corpus.py   (from anywhere; idempotent)
"""

import os
import re
import struct
import sys
from pathlib import Path

FUZZ = Path(__file__).resolve().parent.parent
REPO = FUZZ.parent
CORPUS = FUZZ / "corpus"
DATA = Path("/usr/lib/dbus-1.0/installed-tests/dbus/data")


def put(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)


# --- a tiny marshaller -----------------------------------------------------

class W:
    def __init__(self, big=False):
        self.b = bytearray()
        self.e = ">" if big else "<"

    def pad(self, n):
        while len(self.b) % n:
            self.b.append(0)

    def y(self, v):
        self.b.append(v)

    def u(self, v):
        self.pad(4)
        self.b += struct.pack(self.e + "I", v)

    def i(self, v):
        self.pad(4)
        self.b += struct.pack(self.e + "i", v)

    def t(self, v):
        self.pad(8)
        self.b += struct.pack(self.e + "Q", v)

    def d(self, v):
        self.pad(8)
        self.b += struct.pack(self.e + "d", v)

    def q(self, v):
        self.pad(2)
        self.b += struct.pack(self.e + "H", v)

    def s(self, v):
        v = v.encode()
        self.u(len(v))
        self.b += v + b"\0"

    def g(self, v):
        v = v.encode()
        self.y(len(v))
        self.b += v + b"\0"

    def array(self, align, fill):
        self.u(0)
        at = len(self.b) - 4
        self.pad(align)
        start = len(self.b)
        fill(self)
        struct.pack_into(self.e + "I", self.b, at, len(self.b) - start)


def message(mtype, serial, fields, sig="", body=b"", big=False, flags=0):
    """fields: list of (code, sigchar, value)."""
    w = W(big)
    w.y(ord("B" if big else "l"))
    w.y(mtype)
    w.y(flags)
    w.y(1)
    w.u(len(body))
    w.u(serial)
    if sig:
        fields = fields + [(8, "g", sig)]

    def fill(w):
        for code, sc, val in fields:
            w.pad(8)
            w.y(code)
            w.g(sc)
            {"s": w.s, "o": w.s, "g": w.g, "u": w.u}[sc](val)

    w.array(8, fill)
    w.pad(8)
    return bytes(w.b) + body


def body(fn, big=False):
    w = W(big)
    fn(w)
    return bytes(w.b)


DBUS = [(1, "o", "/org/freedesktop/DBus"), (2, "s", "org.freedesktop.DBus")]

a_sv = lambda w: w.array(8, lambda w: (
    w.pad(8), w.s("Name"), w.g("s"), w.s("busbar"),
    w.pad(8), w.s("Count"), w.g("u"), w.u(42),
    w.pad(8), w.s("Nested"), w.g("a{sv}"), w.array(8, lambda w: (
        w.pad(8), w.s("x"), w.g("d"), w.d(1.5))),
    w.pad(8), w.s("Path"), w.g("o"), w.s("/a/b"),
))

hand_made = {
    "hello": message(1, 1, DBUS + [(3, "s", "Hello"), (6, "s", "org.freedesktop.DBus")]),
    "request_name": message(1, 2, DBUS + [(3, "s", "RequestName"), (6, "s", "org.freedesktop.DBus")],
                            "su", body(lambda w: (w.s("com.example.Foo"), w.u(4)))),
    "add_match": message(1, 3, DBUS + [(3, "s", "AddMatch"), (6, "s", "org.freedesktop.DBus")],
                         "s", body(lambda w: w.s("type='signal',interface='com.example.I'"))),
    "signal_a_sv": message(4, 7, [(1, "o", "/com/example/Obj"), (2, "s", "org.freedesktop.DBus.Properties"),
                                  (3, "s", "PropertiesChanged")],
                           "sa{sv}as", body(lambda w: (w.s("com.example.I"), a_sv(w),
                                                       w.array(4, lambda w: w.s("Gone"))))),
    "method_return_be": message(2, 9, [(5, "u", 3), (6, "s", ":1.7")], "s",
                                body(lambda w: w.s(":1.7"), big=True), big=True),
    "error": message(3, 10, [(4, "s", "org.freedesktop.DBus.Error.Failed"), (5, "u", 2),
                             (6, "s", ":1.2"), (7, "s", ":1.9")], "s",
                     body(lambda w: w.s("it failed"))),
    "fds": message(1, 11, [(1, "o", "/x"), (3, "s", "Take"), (6, "s", ":1.3"), (9, "u", 2)], "hahh",
                   body(lambda w: (w.u(0), w.array(4, lambda w: w.u(1)), w.u(1)))),
    "unknown_field": message(1, 12, [(1, "o", "/x"), (3, "s", "M"), (42, "g", "a{sv}")]),
    "no_reply_signal_be": message(4, 13, [(1, "o", "/"), (2, "s", "a.b"), (3, "s", "S")],
                                  "(yqt)v", body(lambda w: (w.pad(8), w.y(1), w.q(2), w.t(3),
                                                            w.g("ai"), w.array(4, lambda w: (w.i(-1), w.i(5)))),
                                                 big=True), big=True, flags=3),
}

for name, m in hand_made.items():
    put("header_parse", name, bytes([4]) + m)

# Installed libdbus test messages.
for kind in ("valid-messages", "invalid-messages"):
    for p in sorted((DATA / kind).glob("*.message-raw")):
        put("header_parse", f"{kind.split('-')[0]}-{p.stem}", bytes([4]) + p.read_bytes())

# --- body_validate / marshal_reader ----------------------------------------

bodies = {
    "a_sv": ("a{sv}", body(a_sv), False),
    "s_a_sv_as": ("sa{sv}as", body(lambda w: (w.s("i"), a_sv(w), w.array(4, lambda w: w.s("x")))), False),
    "su": ("su", body(lambda w: (w.s("com.example.Foo"), w.u(4))), False),
    "struct_be": ("(yqt)v", body(lambda w: (w.pad(8), w.y(1), w.q(2), w.t(3), w.g("ai"),
                                             w.array(4, lambda w: (w.i(-1), w.i(5)))), big=True), True),
    "fds": ("hahh", body(lambda w: (w.u(0), w.array(4, lambda w: w.u(1)), w.u(1))), False),
    "empty_struct_array": ("ya(tt)", body(lambda w: (w.y(1), w.array(8, lambda w: None))), False),
    "bool_obj_sig": ("bogd", body(lambda w: (w.u(1), w.s("/a/b_c"), w.g("a(ss)"), w.d(2.0))), False),
    "nested_variant": ("v", body(lambda w: (w.g("v"), w.g("v"), w.g("s"), w.s("deep"))), False),
    "dict_of_arrays": ("a{oa{sa{sv}}}", body(lambda w: w.array(8, lambda w: (
        w.pad(8), w.s("/o"), w.array(8, lambda w: (w.pad(8), w.s("iface"), a_sv(w)))))), False),
}
for name, (sig, b, big) in bodies.items():
    nfds = 4
    put("body_validate", name, bytes([(1 if big else 0) | (nfds << 1), len(sig)]) + sig.encode() + b)

# marshal_reader: [flags][n_ops][ops][buf]
def reader(name, ops, buf, big=False):
    put("marshal_reader", name, bytes([1 if big else 0, len(ops)]) + bytes(ops) + buf)

reader("a_sv", [19], bodies["a_sv"][1])
reader("a_sv_skip", [20], bodies["a_sv"][1])
reader("su", [10, 4], bodies["su"][1])
reader("struct_be", [15, 6] + list(b"(yqt)") + [13], bodies["struct_be"][1], big=True)
reader("bool_obj_sig", [1, 11, 12, 9], bodies["bool_obj_sig"][1])
reader("nested_variant", [13], bodies["nested_variant"][1])
reader("array_then_skip", [14, 2, 6, 6, 16, 2] + list(b"ai"), bodies["fds"][1])
reader("scalars", [0, 2, 3, 5, 7, 8, 17, 8, 18], bytes(range(32)))

# --- match_rule --------------------------------------------------------------

rules = [
    "type='signal'",
    "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',"
    "member='Foo',path='/bar/foo',destination=':452345.34'",
    "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',"
    "member='NameOwnerChanged',arg0='com.example.Foo'",
    "arg2='bar'",
    "arg0namespace='com.example.backend1'",
    "arg0path='/aa/bb/'",
    "arg1path='/aa/bb'",
    "path_namespace='/com/example/foo'",
    "path='/org/freedesktop/DBus'",
    "eavesdrop='true'",
    "type='method_call',eavesdrop=true",
    "type='method_return'",
    "type='error'",
    "arg3='it'\\''s'",
    "member=Foo,interface=com.example.I",
    " type='signal', member='x'",
    "arg63='x',arg0='y'",
    "arg0x1f='hex'",
    "",
]
for i, r in enumerate(rules):
    put("match_rule", f"spec-{i:02}", r)

# --- sasl: [config][split seed] ++ client bytes ------------------------------

UID_HEX = "30"  # "0": tests run as root here; other uids just get REJECTED
sends = set()
for p in sorted((DATA / "auth").glob("*.auth-script")):
    lines = []
    for line in p.read_text().splitlines():
        m = re.match(r"\s*SEND\s+'(.*)'\s*$", line) or re.match(r"\s*SEND\s+(\S.*)$", line)
        if m:
            s = m.group(1).replace("\\r\\n", "\r\n")
            s = s.replace("WRONG_USERID_HEX", "3132333435").replace("WRONG_USERNAME_HEX", "77726f6e67")
            s = s.replace("USERID_HEX", UID_HEX).replace("USERNAME_HEX", "726f6f74")
            lines.append(s)
            sends.add(s)
    if lines:
        stream = "\0" + "".join(l + "\r\n" for l in lines)
        put("sasl", f"script-{p.stem}", bytes([0x1f, 0]) + stream.encode())
        put("sasl", f"script-{p.stem}-chunked", bytes([0x0b, 0x5a]) + stream.encode())
for i, s in enumerate(sorted(sends)):
    put("sasl", f"line-{i:02}", bytes([0x1f, 0]) + b"\0" + s.encode() + b"\r\n")
put("sasl", "external-fd-begin", bytes([0x1f, 0x33]) +
    b"\0AUTH EXTERNAL 30\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\nl\x01\0\x01")
put("sasl", "external-empty-data", bytes([0x1f, 0]) + b"\0AUTH EXTERNAL\r\nDATA\r\nBEGIN\r\n")
put("sasl", "anonymous", bytes([0x1b, 0]) + b"\0AUTH ANONYMOUS 74657374\r\nBEGIN\r\n")
put("sasl", "cookie-data", bytes([0x1f, 0]) +
    b"\0AUTH DBUS_COOKIE_SHA1 30\r\nDATA 6162636465662031323334\r\nCANCEL\r\nERROR\r\nBEGIN\r\n")

# --- config ------------------------------------------------------------------

def add_conf(prefix, p):
    name = prefix + "-" + str(p).replace("/", "_").lstrip("_")
    put("config", name[-120:], p.read_bytes())

for d in sorted(DATA.glob("*config-files*")):
    for p in sorted(d.rglob("*")):
        if p.is_file():
            add_conf(d.name, p.relative_to(d)) if False else put(
                "config", (d.name + "-" + str(p.relative_to(d)).replace("/", "_"))[-120:], p.read_bytes())
for p in sorted(Path("/usr/share/dbus-1").glob("*.conf")):
    put("config", "usr-share-" + p.name, p.read_bytes())
for p in sorted((REPO / "policy" / "conf").glob("*.conf")):
    put("config", "busbar-" + p.name, p.read_bytes())

# --- service_file / exec_split ------------------------------------------------

execs = set()
for d in sorted(list(DATA.glob("*service-files*")) + [DATA / "systemd-activation"]):
    for p in sorted(d.glob("*.service")):
        t = p.read_bytes()
        put("service_file", d.name + "-" + p.name, t)
        for line in t.decode(errors="replace").splitlines():
            if line.startswith("Exec="):
                execs.add(line[5:])
put("service_file", "hand-minimal",
    "[D-BUS Service]\nName=org.example.Fuzz\nExec=/usr/bin/fuzz --arg 'quoted arg' \"dq\\\"x\"\nUser=root\n")
put("service_file", "hand-comments",
    "# comment\n\n[D-BUS Service]\nName=org.example.Fuzz\nExec=/bin/true\nSystemdService=fuzz.service\n"
    "AssumedAppArmorLabel=unconfined\n[Other Group]\nKey[de]=Wert\n")
execs |= {
    "/usr/bin/foo --bar baz",
    "/bin/sh -c 'echo \"hello world\"; exit 1'",
    "a\\ b \"c d\" 'e f' g\\\\h",
    "\"unterminated",
    "'x'\"y\"z # comment",
    "  leading   and trailing  ",
    "multi\\\nline",
}
for i, e in enumerate(sorted(execs)):
    put("exec_split", f"exec-{i:02}", e)

for t in sorted(os.listdir(CORPUS)):
    print(t, len(os.listdir(CORPUS / t)))
