#!/usr/bin/python3
"""listen.py ADDRESS TOKEN: wait for signal org.busbar.Test.Ping(TOKEN)."""
import sys

from common import IFACE, connect, ready, run_until, write_pidfile

address, token = sys.argv[1], sys.argv[2]
write_pidfile()
bus = connect(address)
got = []
bus.add_signal_receiver(lambda *a: got.append([str(x) for x in a]),
                        signal_name="Ping", dbus_interface=IFACE)
# AddMatch is a blocking call: once ready is printed, the rule is active.
ready()
if run_until(lambda: any(token in a for a in got), 10):
    print("received Ping", got, flush=True)
    sys.exit(0)
print("no Ping(%s) received; got %r" % (token, got), flush=True)
sys.exit(1)
