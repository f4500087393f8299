#!/usr/bin/python3
"""names.py ADDRESS flags|signals: RequestName/ReleaseName semantics.

flags:   reply codes of RequestName/ReleaseName with DO_NOT_QUEUE,
         ALLOW_REPLACEMENT, REPLACE_EXISTING and queueing; ListQueuedOwners;
         errors for invalid names.
signals: NameOwnerChanged (seen by a third connection), NameAcquired and
         NameLost (seen by the owners) along the same sequence.
"""
import sys

import dbus
import dbus.bus as B

from common import check, connect, run_until

address, mode = sys.argv[1], sys.argv[2]
NAME = "org.busbar.Names"
a, b, c = connect(address), connect(address), connect(address)
ua, ub = a.get_unique_name(), b.get_unique_name()
dbus_proxy = c.get_object("org.freedesktop.DBus", "/org/freedesktop/DBus", introspect=False)

noc, acquired, lost = [], {ua: [], ub: []}, {ua: [], ub: []}
c.add_signal_receiver(lambda n, o, nw: noc.append((str(n), str(o), str(nw))),
                      signal_name="NameOwnerChanged",
                      dbus_interface="org.freedesktop.DBus", arg0=NAME)
for conn, u in ((a, ua), (b, ub)):
    conn.add_signal_receiver(lambda n, u=u: acquired[u].append(str(n)),
                             signal_name="NameAcquired",
                             dbus_interface="org.freedesktop.DBus")
    conn.add_signal_receiver(lambda n, u=u: lost[u].append(str(n)),
                             signal_name="NameLost",
                             dbus_interface="org.freedesktop.DBus")


def queue():
    return [str(x) for x in dbus_proxy.ListQueuedOwners(NAME, dbus_interface="org.freedesktop.DBus")]


def expect_signal(lst, item, what):
    check(run_until(lambda: item in lst, 5), what)


def expect_error(fn, err, what):
    try:
        fn()
    except dbus.exceptions.DBusException as e:
        check(e.get_dbus_name() == err, "%s -> %s (got %s)" % (what, err, e.get_dbus_name()))
        return
    check(False, "%s -> %s (got success)" % (what, err))


sig = mode == "signals"

r = a.request_name(NAME, B.NAME_FLAG_ALLOW_REPLACEMENT)
if not sig:
    check(r == B.REQUEST_NAME_REPLY_PRIMARY_OWNER, "A RequestName(ALLOW_REPLACEMENT) = PRIMARY_OWNER (%d)" % r)
else:
    expect_signal(noc, (NAME, "", ua), "NameOwnerChanged(%s, '', A)" % NAME)
    expect_signal(acquired[ua], NAME, "A got NameAcquired")

r = a.request_name(NAME, B.NAME_FLAG_ALLOW_REPLACEMENT)  # flags 0 would clear ALLOW_REPLACEMENT
if not sig:
    check(r == B.REQUEST_NAME_REPLY_ALREADY_OWNER, "A RequestName again = ALREADY_OWNER (%d)" % r)

r = b.request_name(NAME, B.NAME_FLAG_DO_NOT_QUEUE)
if not sig:
    check(r == B.REQUEST_NAME_REPLY_EXISTS, "B RequestName(DO_NOT_QUEUE) = EXISTS (%d)" % r)
    check(queue() == [ua], "ListQueuedOwners = [A] (%r)" % queue())

r = b.request_name(NAME, 0)
if not sig:
    check(r == B.REQUEST_NAME_REPLY_IN_QUEUE, "B RequestName(0) = IN_QUEUE (%d)" % r)
    check(queue() == [ua, ub], "ListQueuedOwners = [A, B] (%r)" % queue())
    check(str(c.get_name_owner(NAME)) == ua, "GetNameOwner = A")

r = b.request_name(NAME, B.NAME_FLAG_REPLACE_EXISTING)
if not sig:
    check(r == B.REQUEST_NAME_REPLY_PRIMARY_OWNER, "B RequestName(REPLACE_EXISTING) replaces A = PRIMARY_OWNER (%d)" % r)
    check(queue() == [ub, ua], "A (no DO_NOT_QUEUE) is queued behind B: %r" % queue())
else:
    expect_signal(noc, (NAME, ua, ub), "NameOwnerChanged(%s, A, B)" % NAME)
    expect_signal(lost[ua], NAME, "A got NameLost")
    expect_signal(acquired[ub], NAME, "B got NameAcquired")

r = b.release_name(NAME)
if not sig:
    check(r == B.RELEASE_NAME_REPLY_RELEASED, "B ReleaseName = RELEASED (%d)" % r)
    check(str(c.get_name_owner(NAME)) == ua, "ownership returns to queued A")
else:
    expect_signal(noc, (NAME, ub, ua), "NameOwnerChanged(%s, B, A)" % NAME)
    expect_signal(lost[ub], NAME, "B got NameLost")
    check(run_until(lambda: acquired[ua].count(NAME) == 2, 5), "A got NameAcquired again")

r = b.release_name(NAME)
if not sig:
    check(r == B.RELEASE_NAME_REPLY_NOT_OWNER, "B ReleaseName again = NOT_OWNER (%d)" % r)

r = a.release_name(NAME)
if not sig:
    check(r == B.RELEASE_NAME_REPLY_RELEASED, "A ReleaseName = RELEASED (%d)" % r)
    check(not c.name_has_owner(NAME), "NameHasOwner = false after release")
else:
    expect_signal(noc, (NAME, ua, ""), "NameOwnerChanged(%s, A, '')" % NAME)

r = a.release_name(NAME)
if not sig:
    check(r == B.RELEASE_NAME_REPLY_NON_EXISTENT, "ReleaseName of unowned name = NON_EXISTENT (%d)" % r)
    # A queued owner that disconnects leaves the queue.
    a.request_name(NAME, 0)
    b.request_name(NAME, 0)
    b.close()
    check(run_until(lambda: queue() == [ua], 5), "disconnected queued owner leaves the queue (%r)" % queue())
    inv = "org.freedesktop.DBus.Error.InvalidArgs"

    def raw_request(n):
        # bypass dbus-python's client-side name validation
        return a.call_blocking("org.freedesktop.DBus", "/org/freedesktop/DBus",
                               "org.freedesktop.DBus", "RequestName", "su", (n, 0))
    expect_error(lambda: raw_request(":1.9999"), inv, "RequestName(unique name)")
    expect_error(lambda: raw_request("org.freedesktop.DBus"), inv, "RequestName(org.freedesktop.DBus)")
    expect_error(lambda: raw_request("not..valid"), inv, "RequestName(invalid name)")
print("all good", flush=True)
