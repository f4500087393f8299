"""Reads a pcap or pcapng file written by `busctl capture` and counts the D-Bus messages in
it whose MEMBER header field equals argv[2]. Checks that every record is
exactly one well-framed D-Bus message. Prints the count."""
import struct
import sys


def fields(msg):
    """Yields (code, value) for the string-typed header fields of msg."""
    end = "<" if msg[0:1] == b"l" else ">"
    (flen,) = struct.unpack(end + "I", msg[12:16])
    pos, stop = 16, 16 + flen
    while pos < stop:
        pos = (pos + 7) & ~7
        code, slen = msg[pos], msg[pos + 1]
        sig = msg[pos + 2 : pos + 2 + slen]
        pos += 3 + slen
        if sig in (b"s", b"o"):
            pos = (pos + 3) & ~3
            (n,) = struct.unpack(end + "I", msg[pos : pos + 4])
            yield code, msg[pos + 4 : pos + 4 + n].decode()
            pos += 5 + n
        elif sig == b"g":
            n = msg[pos]
            pos += 2 + n
        elif sig == b"u":
            pos = (pos + 3) & ~3
            pos += 4
        else:
            raise ValueError("unexpected header field type %r" % sig)


def packets(data):
    """Yields the packet data of a pcap or pcapng file (LINKTYPE_DBUS only)."""
    if data[:4] == b"\x0a\x0d\x0d\x0a":  # pcapng (what busctl writes)
        end = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
        pos = 0
        while pos + 12 <= len(data):
            btype, blen = struct.unpack(end + "II", data[pos : pos + 8])
            body = data[pos + 8 : pos + blen - 4]
            if btype == 1:  # interface description
                (linktype,) = struct.unpack(end + "H", body[:2])
                assert linktype == 231, "not LINKTYPE_DBUS: %d" % linktype
            elif btype == 6:  # enhanced packet
                _, _, _, incl, orig = struct.unpack(end + "IIIII", body[:20])
                assert incl == orig, "truncated packet"
                yield body[20 : 20 + incl]
            pos += blen
        return
    magic = struct.unpack("<I", data[:4])[0]
    end = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    linktype = struct.unpack(end + "I", data[20:24])[0]
    assert linktype == 231, "not LINKTYPE_DBUS: %d" % linktype
    pos = 24
    while pos < len(data):
        _, _, incl, orig = struct.unpack(end + "IIII", data[pos : pos + 16])
        assert incl == orig, "truncated packet"
        yield data[pos + 16 : pos + 16 + incl]
        pos += 16 + incl


def main():
    data = open(sys.argv[1], "rb").read()
    records, matching = 0, 0
    for msg in packets(data):
        records += 1
        e = "<" if msg[0:1] == b"l" else ">"
        body_len, _, flen = struct.unpack(e + "III", msg[4:16])
        total = ((16 + flen + 7) & ~7) + body_len
        assert total == len(msg), "record %d: %d bytes, message says %d" % (records, len(msg), total)
        if any(c == 3 and v == sys.argv[2] for c, v in fields(msg)):
            matching += 1
    print("records=%d matching=%d" % (records, matching))
    print(matching)


main()
