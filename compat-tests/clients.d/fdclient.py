#!/usr/bin/python3
"""fdclient.py ADDRESS DEST TOKEN: send a pipe fd carrying TOKEN to DEST.ReadFd."""
import os
import sys

import dbus

from common import IFACE, PATH, check, connect

address, dest, token = sys.argv[1:4]
bus = connect(address)
r, w = os.pipe()
os.write(w, token.encode())
os.close(w)
proxy = bus.get_object(dest, PATH, introspect=False)
reply = proxy.ReadFd(dbus.types.UnixFd(r), dbus_interface=IFACE, timeout=10)
os.close(r)
check(str(reply) == token, "service read %r from the passed fd (want %r)" % (str(reply), token))
