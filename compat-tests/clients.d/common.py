"""Shared bits for the compat-tests/clients python helpers (python3-dbus)."""
import os
import sys

import dbus
import dbus.mainloop.glib
from gi.repository import GLib

IFACE = "org.busbar.Test"
PATH = "/org/busbar/Test"

dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)


def connect(address):
    """A private bus connection (does Hello) integrated with the GLib loop."""
    return dbus.bus.BusConnection(address)


def write_pidfile():
    piddir = os.environ.get("BUSBAR_COMPAT_PIDDIR")
    if piddir and os.path.isdir(piddir):
        with open(os.path.join(piddir, "py.%d" % os.getpid()), "w") as f:
            f.write("%d\n" % os.getpid())


def ready():
    print("ready", flush=True)


def run_until(predicate, timeout_s=10.0):
    """Iterate the GLib main context until predicate() or timeout; returns predicate()."""
    ctx = GLib.MainContext.default()
    deadline = GLib.get_monotonic_time() + int(timeout_s * 1e6)
    while not predicate() and GLib.get_monotonic_time() < deadline:
        ctx.iteration(False) or GLib.usleep(10000)
    return predicate()


def fail(msg):
    print("FAIL: %s" % msg, flush=True)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)
    print("  ok: %s" % msg, flush=True)
