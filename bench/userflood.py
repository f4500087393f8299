#!/usr/bin/env python3
"""Clients for bench/userflood (issue 9, point 2), raw D-Bus over unix sockets.

  userflood.py flood ADDRESS SECONDS [RECEIVERS SENDERS]
      (run as the flooding user) RECEIVERS connections subscribe to
      org.example.Flood signals and never read; SENDERS connections blast
      4 KiB signals for SECONDS.
  userflood.py calls ADDRESS N INTERVAL_MS
      (run as the other user) a service and a caller; N paced calls;
      prints RESULT calls=N answered=.. p50_us=.. p99_us=.. max_us=..
"""
import os
import socket
import struct
import sys
import threading
import time


def pad(b, n):
    return b + b"\0" * (-len(b) % n)


def field(code, sig, value):
    out = struct.pack("<B", code) + struct.pack("<B", len(sig)) + sig.encode() + b"\0"
    out = pad(out, 4) if sig in "su" else out
    if sig in "so":
        v = value.encode()
        out += struct.pack("<I", len(v)) + v + b"\0"
    elif sig == "g":
        out += struct.pack("<B", len(value)) + value.encode() + b"\0"
    elif sig == "u":
        out += struct.pack("<I", value)
    return out


def message(mtype, serial, fields, body=b"", flags=0):
    # fields: list of (code, sig, value); each starts 8-aligned
    arr = b""
    for f in fields:
        arr = pad(arr, 8)
        arr += field(*f)
    head = struct.pack("<BBBBIII", ord("l"), mtype, flags, 1, len(body), serial, len(arr)) + arr
    return pad(head, 8) + body


class Conn:
    def __init__(self, address):
        path = address.split("path=", 1)[1].split(",", 1)[0]
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(path)
        self.s.sendall(b"\0AUTH EXTERNAL " + str(os.getuid()).encode().hex().encode() + b"\r\n")
        line = b""
        while not line.endswith(b"\r\n"):
            line += self.s.recv(1)
        assert line.startswith(b"OK"), line
        self.s.sendall(b"BEGIN\r\n")
        self.serial = 0
        self.buf = b""
        self.name = self.call_driver("Hello")

    def send(self, data):
        self.s.sendall(data)

    def next_serial(self):
        self.serial += 1
        return self.serial

    def read_msg(self):
        while True:
            if len(self.buf) >= 16:
                blen, _, flen = struct.unpack_from("<III", self.buf, 4)
                total = 16 + flen + (-flen % 8) + blen
                if len(self.buf) >= total:
                    m, self.buf = self.buf[:total], self.buf[total:]
                    return m
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError("bus closed the connection")
            self.buf += chunk

    @staticmethod
    def parse(m):
        mtype = m[1]
        _, serial, flen = struct.unpack_from("<III", m, 4)
        pos, end = 16, 16 + flen
        f = {}
        while pos < end:
            pos += -pos % 8
            code, slen = m[pos], m[pos + 1]
            sig = m[pos + 2:pos + 2 + slen].decode()
            pos += 3 + slen
            if sig in "so":
                pos += -pos % 4
                (n,) = struct.unpack_from("<I", m, pos)
                f[code] = m[pos + 4:pos + 4 + n].decode()
                pos += 5 + n
            elif sig == "g":
                n = m[pos]
                f[code] = m[pos + 1:pos + 1 + n].decode()
                pos += 2 + n
            elif sig == "u":
                pos += -pos % 4
                (f[code],) = struct.unpack_from("<I", m, pos)
                pos += 4
        body = m[16 + flen + (-flen % 8):]
        return mtype, serial, f, body

    def call(self, dest, path, iface, member, sig="", body=b""):
        serial = self.next_serial()
        fields = [(1, "o", path), (2, "s", iface), (3, "s", member), (6, "s", dest)]
        if sig:
            fields.append((8, "g", sig))
        self.send(message(1, serial, fields, body))
        return serial

    def wait_reply(self, serial):
        while True:
            mtype, _, f, body = self.parse(self.read_msg())
            if mtype in (2, 3) and f.get(5) == serial:
                return mtype, body

    def call_driver(self, member, sig="", body=b""):
        s = self.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", member, sig, body)
        mtype, rbody = self.wait_reply(s)
        assert mtype == 2, (member, rbody)
        if rbody[:4]:
            (n,) = struct.unpack_from("<I", rbody, 0)
            return rbody[4:4 + n].decode()
        return ""


def sarg(s):
    v = s.encode()
    return struct.pack("<I", len(v)) + v + b"\0"


def flood(address, secs, receivers=64, senders=64):
    keep = []
    for _ in range(receivers):
        c = Conn(address)
        c.call_driver("AddMatch", "s", sarg("type='signal',interface='org.example.Flood'"))
        keep.append(c)
    end = time.monotonic() + secs
    body = struct.pack("<I", 4096) + b"\x55" * 4096

    def blast():
        c = Conn(address)
        while time.monotonic() < end:
            c.serial += 1
            m = message(4, c.serial, [(1, "o", "/flood"), (2, "s", "org.example.Flood"),
                                      (3, "s", "Blast"), (8, "g", "ay")], body)
            try:
                c.send(m)
            except OSError:
                return

    ts = [threading.Thread(target=blast, daemon=True) for _ in range(senders)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(secs + 5)
    os._exit(0)


def calls(address, n, interval_ms):
    service = Conn(address)
    service.call_driver("RequestName", "su", pad(sarg("org.example.RootEcho"), 4) + struct.pack("<I", 0))

    def serve():
        while True:
            mtype, serial, f, _ = Conn.parse(service.read_msg())
            if mtype != 1:
                continue
            service.send(message(2, service.next_serial(), [(5, "u", serial), (6, "s", f.get(7, ""))]))
            if f.get(3) == "Stop":
                return

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    caller = Conn(address)
    rtts, answered = [], 0
    for _ in range(n):
        t0 = time.monotonic()
        s = caller.call("org.example.RootEcho", "/", "org.example.Echo", "Ping")
        mtype, _ = caller.wait_reply(s)
        rtts.append((time.monotonic() - t0) * 1e6)
        answered += mtype == 2
        time.sleep(interval_ms / 1000)
    caller.wait_reply(caller.call("org.example.RootEcho", "/", "org.example.Echo", "Stop"))
    rtts.sort()
    print("RESULT\tcalls=%d\tanswered=%d\tp50_us=%.0f\tp99_us=%.0f\tmax_us=%.0f" % (
        n, answered, rtts[n // 2], rtts[n * 99 // 100], rtts[-1]))


if __name__ == "__main__":
    if sys.argv[1] == "flood":
        extra = [int(x) for x in sys.argv[4:6]]
        flood(sys.argv[2], float(sys.argv[3]), *extra)
    elif sys.argv[1] == "calls":
        calls(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
