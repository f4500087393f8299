#!/usr/bin/python3
"""Test service: owns NAME, exports org.busbar.Test at /org/busbar/Test.

service.py --address ADDR --name NAME   (started by compat-tests/clients)
service.py --starter --name NAME        (activated: uses DBUS_STARTER_ADDRESS)
"""
import argparse
import os
import sys

import dbus
import dbus.service

from common import IFACE, PATH, GLib, connect, ready, write_pidfile

p = argparse.ArgumentParser()
p.add_argument("--address")
p.add_argument("--starter", action="store_true")
p.add_argument("--name", required=True)
p.add_argument("--lifetime", type=int, default=300)
args = p.parse_args()

loop = GLib.MainLoop()


class Service(dbus.service.Object):
    @dbus.service.method(IFACE, in_signature="s", out_signature="s")
    def Echo(self, s):
        return s

    @dbus.service.method(IFACE, in_signature="h", out_signature="s")
    def ReadFd(self, fd):
        with os.fdopen(fd.take(), "rb") as f:
            return f.read().decode()

    @dbus.service.method(IFACE, in_signature="", out_signature="a{ss}")
    def StarterEnv(self):
        return {k: os.environ.get(k, "")
                for k in ("DBUS_STARTER_ADDRESS", "DBUS_STARTER_BUS_TYPE")}

    @dbus.service.method(IFACE, in_signature="", out_signature="")
    def Quit(self):
        GLib.idle_add(loop.quit)


write_pidfile()
address = os.environ["DBUS_STARTER_ADDRESS"] if args.starter else args.address
if not address:
    sys.exit("service.py: no address (--address or --starter)")
bus = connect(address)
bus.call_on_disconnection(lambda conn: loop.quit())
Service(bus, PATH)
r = bus.request_name(args.name, dbus.bus.NAME_FLAG_DO_NOT_QUEUE)
if r != dbus.bus.REQUEST_NAME_REPLY_PRIMARY_OWNER:
    sys.exit("service.py: RequestName(%s) returned %d" % (args.name, r))
ready()
GLib.timeout_add_seconds(args.lifetime, loop.quit)  # never outlive the test run
loop.run()
