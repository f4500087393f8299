/* One user filling the bus (issue 9, point 2), with real libdbus clients.
 *
 *   userflood ADDRESS --pid DAEMON_PID [--secs S] [--receivers R]
 *             [--senders N] [--interval-ms MS] [--uid UID] [--broadcast]
 *
 * Run as root. Forks, each in its own process and with its own connection:
 *   - a root service that owns org.busbar.RootEcho and answers every call;
 *   - R receivers that drop to UID (default 65534, nobody), AddMatch
 *     org.example.Flood signals and never read again;
 *   - N senders, as UID too, that send 4 KiB org.example.Flood signals for
 *     S seconds as fast as the bus accepts them, sender i to receiver
 *     i mod R (a unicast signal: its destination is the receiver's unique
 *     name), or with --broadcast to no destination (every receiver matches
 *     it, and the daemons share one copy among the receivers): dbus_connection_send
 *     writes what the socket takes, and once 64 KiB are queued in the
 *     client the sender waits in dbus_connection_read_write (poll for
 *     POLLOUT), which is how a libdbus program meets back-pressure.
 * After one second of flood, this process (root) calls the service every
 * MS milliseconds (default 10) until one second before the flood ends,
 * each call with dbus_connection_send_with_reply_and_block, and prints
 *
 *   RESULT calls=.. answered=.. p50_us=.. p99_us=.. max_us=.. peak_rss_mib=..
 *          sent_signals=.. alive=yes|no
 *
 * peak_rss_mib is the daemon's VmHWM, read after the flood (before any
 * client goes away). sent_signals counts the signals the senders handed
 * to the socket (the daemon may still drop copies for full receivers).
 */
#define _GNU_SOURCE
#include "measure.h"
#include <dbus/dbus.h>
#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define ROOT_NAME "org.busbar.RootEcho"
#define FLOOD_IFACE "org.example.Flood"
#define MAX_KIDS 1024

static pid_t kids[MAX_KIDS];
static int nkids;
/* The receivers' unique names. */
static char names[MAX_KIDS][256];
static int nnames;

static void die(const char *what, DBusError *e) {
        fprintf(stderr, "userflood[%d]: %s: %s\n", (int)getpid(), what,
                e && dbus_error_is_set(e) ? e->message : "failed");
        _exit(1);
}

static void drop_to(uid_t uid) {
        if (setgroups(0, NULL) < 0 || setgid(uid) < 0 || setuid(uid) < 0) {
                perror("userflood: setuid");
                _exit(1);
        }
}

static DBusConnection *connect_bus(const char *address) {
        DBusError e;
        dbus_error_init(&e);
        DBusConnection *c = dbus_connection_open_private(address, &e);
        if (!c)
                die("connect", &e);
        if (!dbus_bus_register(c, &e))
                die("Hello", &e);
        dbus_connection_set_exit_on_disconnect(c, FALSE);
        return c;
}

/* Reports readiness on fd `ready` (one byte) and closes it. */
static void say_ready(int ready, const char *name) {
        char b[256] = {0};
        snprintf(b, sizeof(b), "%s", name ? name : "");
        if (write(ready, b, sizeof(b)) != (ssize_t)sizeof(b))
                _exit(1);
        close(ready);
}

static DBusHandlerResult serve_filter(DBusConnection *c, DBusMessage *m, void *data) {
        (void)data;
        if (dbus_message_get_type(m) != DBUS_MESSAGE_TYPE_METHOD_CALL)
                return DBUS_HANDLER_RESULT_NOT_YET_HANDLED;
        DBusMessage *r = dbus_message_new_method_return(m);
        if (r) {
                dbus_connection_send(c, r, NULL);
                dbus_message_unref(r);
        }
        return DBUS_HANDLER_RESULT_HANDLED;
}

static void run_service(const char *address, int ready) {
        DBusConnection *c = connect_bus(address);
        DBusError e;
        dbus_error_init(&e);
        if (dbus_bus_request_name(c, ROOT_NAME, DBUS_NAME_FLAG_DO_NOT_QUEUE, &e) !=
            DBUS_REQUEST_NAME_REPLY_PRIMARY_OWNER)
                die("RequestName", &e);
        dbus_connection_add_filter(c, serve_filter, NULL, NULL);
        say_ready(ready, NULL);
        while (dbus_connection_read_write_dispatch(c, -1))
                ;
        _exit(0);
}

static void run_receiver(const char *address, uid_t uid, int ready) {
        drop_to(uid);
        DBusConnection *c = connect_bus(address);
        DBusError e;
        dbus_error_init(&e);
        dbus_bus_add_match(c, "type='signal',interface='" FLOOD_IFACE "'", &e);
        if (dbus_error_is_set(&e))
                die("AddMatch", &e);
        say_ready(ready, dbus_bus_get_unique_name(c));
        /* Never reads again. */
        for (;;)
                pause();
}

static void run_sender(const char *address, uid_t uid, double secs, const char *target,
                       int ready, int report) {
        drop_to(uid);
        DBusConnection *c = connect_bus(address);
        say_ready(ready, NULL);
        static unsigned char payload[4096];
        memset(payload, 0x55, sizeof(payload));
        const unsigned char *p = payload;
        double end = now_us() + secs * 1e6;
        unsigned long sent = 0;
        while (now_us() < end && dbus_connection_get_is_connected(c)) {
                DBusMessage *m = dbus_message_new_signal("/flood", FLOOD_IFACE, "Blast");
                if (m && target && !dbus_message_set_destination(m, target))
                        die("set destination", NULL);
                if (!m || !dbus_message_append_args(m, DBUS_TYPE_ARRAY, DBUS_TYPE_BYTE, &p,
                                                    (int)sizeof(payload), DBUS_TYPE_INVALID))
                        die("build signal", NULL);
                dbus_connection_send(c, m, NULL);
                dbus_message_unref(m);
                sent++;
                /* Back-pressure: wait for the socket while 64 KiB are queued here. */
                while (dbus_connection_get_outgoing_size(c) > 64 * 1024 && now_us() < end &&
                       dbus_connection_get_is_connected(c)) {
                        dbus_connection_read_write(c, 100);
                        DBusMessage *in;
                        while ((in = dbus_connection_pop_message(c)))
                                dbus_message_unref(in);
                }
                DBusMessage *in;
                while ((in = dbus_connection_pop_message(c)))
                        dbus_message_unref(in);
        }
        /* Signals still queued in the client were not accepted by the bus. */
        long queued = dbus_connection_get_outgoing_size(c) / 4200;
        unsigned long accepted = sent > (unsigned long)queued ? sent - (unsigned long)queued : 0;
        if (write(report, &accepted, sizeof(accepted)) != sizeof(accepted))
                _exit(1);
        /* Stay connected (like the receivers) until the parent ends the run. */
        for (;;)
                pause();
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

static void kill_kids(void) {
        for (int i = 0; i < nkids; i++)
                kill(kids[i], SIGKILL);
        for (int i = 0; i < nkids; i++)
                waitpid(kids[i], NULL, 0);
        nkids = 0;
}

/* Forks a child running `fn`; waits for its readiness byte. */
static void spawn(int kind, const char *address, uid_t uid, double secs, const char *target,
                  int report) {
        int p[2];
        if (pipe(p) < 0 || nkids >= MAX_KIDS) {
                perror("userflood: pipe");
                kill_kids();
                exit(1);
        }
        pid_t pid = fork();
        if (pid < 0) {
                perror("userflood: fork");
                kill_kids();
                exit(1);
        }
        if (pid == 0) {
                close(p[0]);
                /* Die with the run, even if it is killed. */
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (kind == 0)
                        run_service(address, p[1]);
                else if (kind == 1)
                        run_receiver(address, uid, p[1]);
                else
                        run_sender(address, uid, secs, target, p[1], report);
                _exit(0);
        }
        kids[nkids++] = pid;
        close(p[1]);
        char b[256];
        if (read(p[0], b, sizeof(b)) != (ssize_t)sizeof(b)) {
                fprintf(stderr, "userflood: a %s did not start\n",
                        kind == 0 ? "service" : kind == 1 ? "receiver" : "sender");
                kill_kids();
                exit(1);
        }
        close(p[0]);
        if (kind == 1) {
                b[255] = 0;
                memcpy(names[nnames++], b, sizeof(b));
        }
}

int main(int argc, char **argv) {
        if (argc < 2) {
                fprintf(stderr, "usage: userflood ADDRESS --pid PID [--secs S] [--receivers R] "
                                "[--senders N] [--interval-ms MS] [--uid UID]\n");
                return 2;
        }
        const char *address = argv[1];
        long daemon_pid = 0;
        double secs = 8;
        int receivers = 64, senders = 64, interval_ms = 10;
        uid_t uid = 65534;
        int broadcast = 0;
        for (int i = 2; i < argc; i += 2) {
                if (!strcmp(argv[i], "--broadcast")) {
                        broadcast = 1;
                        i--;
                } else if (i + 1 >= argc) {
                        fprintf(stderr, "userflood: %s needs a value\n", argv[i]);
                        return 2;
                } else if (!strcmp(argv[i], "--pid"))
                        daemon_pid = atol(argv[i + 1]);
                else if (!strcmp(argv[i], "--secs"))
                        secs = atof(argv[i + 1]);
                else if (!strcmp(argv[i], "--receivers"))
                        receivers = atoi(argv[i + 1]);
                else if (!strcmp(argv[i], "--senders"))
                        senders = atoi(argv[i + 1]);
                else if (!strcmp(argv[i], "--interval-ms"))
                        interval_ms = atoi(argv[i + 1]);
                else if (!strcmp(argv[i], "--uid"))
                        uid = (uid_t)atol(argv[i + 1]);
                else {
                        fprintf(stderr, "userflood: unknown option %s\n", argv[i]);
                        return 2;
                }
        }
        if (secs < 3 || receivers + senders + 1 > MAX_KIDS) {
                fprintf(stderr, "userflood: --secs at least 3, at most %d clients\n", MAX_KIDS);
                return 2;
        }
        signal(SIGPIPE, SIG_IGN);
        int report[2];
        if (pipe(report) < 0)
                return 1;
        spawn(0, address, 0, secs, NULL, report[1]);
        for (int i = 0; i < receivers; i++)
                spawn(1, address, uid, secs, NULL, report[1]);
        double flood_start = now_us();
        for (int i = 0; i < senders; i++)
                spawn(2, address, uid, secs,
                      broadcast || receivers == 0 ? NULL : names[i % receivers], report[1]);
        close(report[1]);

        DBusConnection *c = connect_bus(address);
        /* Let the flood build up, then call until a second before it ends. */
        while (now_us() < flood_start + 1e6)
                usleep(10000);
        double stop = flood_start + (secs - 1) * 1e6;
        int cap = (int)((secs * 1000) / (interval_ms > 0 ? interval_ms : 1)) + 16;
        double *rtt = calloc((size_t)cap, sizeof(double));
        int calls = 0, answered = 0;
        while (now_us() < stop && calls < cap) {
                DBusMessage *m =
                    dbus_message_new_method_call(ROOT_NAME, "/", "org.busbar.RootEcho", "Ping");
                DBusError e;
                dbus_error_init(&e);
                double t0 = now_us();
                DBusMessage *r = dbus_connection_send_with_reply_and_block(c, m, 30000, &e);
                double t = now_us() - t0;
                dbus_message_unref(m);
                rtt[calls++] = t;
                if (r) {
                        answered++;
                        dbus_message_unref(r);
                } else {
                        fprintf(stderr, "userflood: root call %d: %s\n", calls, e.message);
                        dbus_error_free(&e);
                }
                if (interval_ms > 0)
                        usleep((useconds_t)interval_ms * 1000);
        }
        /* The senders report when their flood time is up. */
        unsigned long sent = 0, one;
        for (int i = 0; i < senders; i++)
                if (read(report[0], &one, sizeof(one)) == sizeof(one))
                        sent += one;
        long hwm = daemon_pid ? proc_status_kb(daemon_pid, "VmHWM") : -1;
        int alive = daemon_pid && kill((pid_t)daemon_pid, 0) == 0;
        kill_kids();
        qsort(rtt, (size_t)calls, sizeof(double), cmp_double);
        printf("RESULT\tcalls=%d\tanswered=%d\tp50_us=%.0f\tp99_us=%.0f\tmax_us=%.0f\t"
               "peak_rss_mib=%ld\tsent_signals=%lu\talive=%s\n",
               calls, answered, calls ? rtt[calls / 2] : 0, calls ? rtt[calls * 99 / 100] : 0,
               calls ? rtt[calls - 1] : 0, hwm >= 0 ? hwm / 1024 : -1, sent,
               alive ? "yes" : "no");
        return answered == calls && calls > 0 ? 0 : 1;
}
