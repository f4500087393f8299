/* A small benchmark client built on libdbus, the library most system
 * services use, so daemons are measured against the client code they meet
 * in practice (not only against bench/'s own raw Rust client).
 *
 *   dbus-client churn ADDRESS N [--pid PID]
 *       N times: dbus_connection_open_private (connect + SASL EXTERNAL),
 *       dbus_bus_register (Hello), close. With --pid, reads the daemon's
 *       utime+stime from /proc/PID/stat (and the exact figure from
 *       /proc/PID/task/<tid>/schedstat) before and after, and prints
 *       RESULT scenario=churn conns=N wall_us=.. cpu_ticks_us=.. sched_us=..
 *       per_conn_cpu_us=.. per_conn_sched_us=..
 *
 *   dbus-client calls ADDRESS N [--pid PID]
 *       one connection, N sequential GetId calls; RESULT with the round-trip
 *       p50/p99 (microseconds) and the daemon CPU per call.
 *
 *   dbus-client serve ADDRESS NAME [--p2p]
 *       the server of bench/clients: owns NAME (or, with --p2p, listens on
 *       ADDRESS as a DBusServer and takes one connection, no bus), answers
 *       org.busbar.Bench.Put(ay) with an empty return, Echo(ay) with the
 *       same bytes, counts Sink(ay)
 *       one-way messages and answers Stats() with (its CPU ns, messages
 *       received). Prints "ready" once it can be called.
 *
 *   dbus-client sub ADDRESS NAME
 *       a subscriber: owns NAME, matches org.busbar.Bench signals, counts
 *       Tick signals and answers Stats() like serve.
 *
 *   dbus-client load --address A --workload call|oneway|signal --n N
 *              [--inflight K] [--size BYTES] [--pids PID,..] [--p2p]
 *              --peer NAME [--peer NAME]...
 *              [--echo]
 *       the measured client: N calls of Put (--echo: Echo) with a
 *       BYTES-long `ay` body,
 *       K in flight; or N one-way Sink messages; or N Tick signals to the
 *       subscribers named by --peer. Each message goes out as libdbus sends
 *       it: one message per write, as soon as it is queued. Measures its own
 *       CPU, the peers' (through Stats), and the daemon's (schedstat of
 *       --pids) over the run and prints one RESULT line (see measure.h).
 *
 * Exit status 0 when every operation succeeded, 1 otherwise (the first
 * error is printed).
 */
#define _GNU_SOURCE
#include "measure.h"
#include <dbus/dbus.h>
#include <dirent.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* utime+stime of a process in microseconds (clock-tick resolution). */
static double proc_cpu_us(long pid) {
        char path[64], buf[4096];
        snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
        FILE *f = fopen(path, "r");
        if (!f)
                return -1;
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = 0;
        char *p = strrchr(buf, ')');
        if (!p)
                return -1;
        unsigned long utime = 0, stime = 0;
        /* fields after ")": state(3) ... utime(14) stime(15) */
        if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime,
                   &stime) != 2)
                return -1;
        return (double)(utime + stime) * 1e6 / (double)sysconf(_SC_CLK_TCK);
}

/* Sum of every thread's on-CPU time (schedstat, nanoseconds) in us. */
static double proc_sched_us(long pid) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/%ld/task", pid);
        DIR *d = opendir(path);
        if (!d)
                return -1;
        double total = 0;
        struct dirent *e;
        while ((e = readdir(d))) {
                if (e->d_name[0] == '.')
                        continue;
                char p2[300];
                snprintf(p2, sizeof(p2), "/proc/%ld/task/%s/schedstat", pid, e->d_name);
                FILE *f = fopen(p2, "r");
                if (!f)
                        continue;
                unsigned long long ns = 0;
                if (fscanf(f, "%llu", &ns) == 1)
                        total += ns / 1e3;
                fclose(f);
        }
        closedir(d);
        return total;
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

static DBusConnection *open_registered(const char *address, DBusError *err) {
        DBusConnection *c = dbus_connection_open_private(address, err);
        if (!c)
                return NULL;
        if (!dbus_bus_register(c, err)) {
                dbus_connection_close(c);
                dbus_connection_unref(c);
                return NULL;
        }
        return c;
}

static int churn(const char *address, long n, long pid) {
        DBusError err;
        dbus_error_init(&err);
        /* One warm-up connection outside the measurement. */
        DBusConnection *w = open_registered(address, &err);
        if (!w) {
                fprintf(stderr, "dbus-client: warm-up failed: %s\n", err.message);
                return 1;
        }
        dbus_connection_close(w);
        dbus_connection_unref(w);
        double cpu0 = pid ? proc_cpu_us(pid) : 0, sched0 = pid ? proc_sched_us(pid) : 0;
        double t0 = now_us();
        for (long i = 0; i < n; i++) {
                DBusConnection *c = open_registered(address, &err);
                if (!c) {
                        fprintf(stderr, "dbus-client: connection %ld failed: %s\n", i, err.message);
                        return 1;
                }
                dbus_connection_close(c);
                dbus_connection_unref(c);
        }
        double wall = now_us() - t0;
        /* Let the daemon finish processing the last disconnects. */
        usleep(200000);
        double cpu = pid ? proc_cpu_us(pid) - cpu0 : 0, sched = pid ? proc_sched_us(pid) - sched0 : 0;
        printf("RESULT\tscenario=churn\tconns=%ld\twall_us=%.0f\tcpu_ticks_us=%.0f\tsched_us=%.0f\t"
               "per_conn_cpu_us=%.2f\tper_conn_sched_us=%.2f\n",
               n, wall, cpu, sched, cpu / n, sched / n);
        return 0;
}

static int calls(const char *address, long n, long pid) {
        DBusError err;
        dbus_error_init(&err);
        DBusConnection *c = open_registered(address, &err);
        if (!c) {
                fprintf(stderr, "dbus-client: connect failed: %s\n", err.message);
                return 1;
        }
        double *rtt = calloc(n, sizeof(double));
        double cpu0 = pid ? proc_sched_us(pid) : 0;
        for (long i = 0; i < n; i++) {
                DBusMessage *m = dbus_message_new_method_call("org.freedesktop.DBus",
                                                              "/org/freedesktop/DBus",
                                                              "org.freedesktop.DBus", "GetId");
                double t = now_us();
                DBusMessage *r = dbus_connection_send_with_reply_and_block(c, m, 10000, &err);
                rtt[i] = now_us() - t;
                dbus_message_unref(m);
                if (!r) {
                        fprintf(stderr, "dbus-client: call %ld failed: %s\n", i, err.message);
                        return 1;
                }
                dbus_message_unref(r);
        }
        double cpu = pid ? proc_sched_us(pid) - cpu0 : 0;
        qsort(rtt, n, sizeof(double), cmp_double);
        printf("RESULT\tscenario=calls\tcalls=%ld\tp50_us=%.1f\tp99_us=%.1f\tper_call_sched_us=%.2f\n",
               n, rtt[n / 2], rtt[(n * 99) / 100], cpu / n);
        dbus_connection_close(c);
        dbus_connection_unref(c);
        free(rtt);
        return 0;
}


/* --- serve / sub / load (bench/clients) ------------------------------------------------ */

static unsigned long long received;

/* Handles one message for serve/sub; returns 0 when the connection is gone. */
static int handle(DBusConnection *c, DBusMessage *m) {
        if (dbus_message_is_signal(m, DBUS_INTERFACE_LOCAL, "Disconnected"))
                return 0;
        if (dbus_message_is_signal(m, BENCH_IFACE, "Tick")) {
                received++;
                return 1;
        }
        if (dbus_message_get_type(m) != DBUS_MESSAGE_TYPE_METHOD_CALL)
                return 1;
        if (dbus_message_is_method_call(m, BENCH_IFACE, "Sink")) {
                received++;
                return 1;
        }
        DBusMessage *r = NULL;
        if (dbus_message_is_method_call(m, BENCH_IFACE, "Put")) {
                received++;
                r = dbus_message_new_method_return(m);
        } else if (dbus_message_is_method_call(m, BENCH_IFACE, "Echo")) {
                received++;
                const unsigned char *p = NULL;
                int len = 0;
                DBusError err;
                dbus_error_init(&err);
                if (!dbus_message_get_args(m, &err, DBUS_TYPE_ARRAY, DBUS_TYPE_BYTE, &p, &len,
                                           DBUS_TYPE_INVALID)) {
                        r = dbus_message_new_error(m, DBUS_ERROR_INVALID_ARGS, err.message);
                        dbus_error_free(&err);
                } else {
                        r = dbus_message_new_method_return(m);
                        dbus_message_append_args(r, DBUS_TYPE_ARRAY, DBUS_TYPE_BYTE, &p, len,
                                                 DBUS_TYPE_INVALID);
                }
        } else if (dbus_message_is_method_call(m, BENCH_IFACE, "Stats")) {
                dbus_uint64_t cpu = self_cpu_ns(), n = received;
                r = dbus_message_new_method_return(m);
                dbus_message_append_args(r, DBUS_TYPE_UINT64, &cpu, DBUS_TYPE_UINT64, &n,
                                         DBUS_TYPE_INVALID);
        } else if (!dbus_message_get_no_reply(m)) {
                r = dbus_message_new_error(m, DBUS_ERROR_UNKNOWN_METHOD, "no such method");
        }
        if (r) {
                dbus_connection_send(c, r, NULL);
                dbus_message_unref(r);
        }
        return 1;
}

static int serve_loop(DBusConnection *c) {
        for (;;) {
                DBusMessage *m;
                while ((m = dbus_connection_pop_message(c))) {
                        int alive = handle(c, m);
                        dbus_message_unref(m);
                        if (!alive)
                                return 0;
                }
                if (!dbus_connection_read_write(c, -1))
                        return 0;
        }
}

static DBusWatch *server_watch;
static DBusConnection *accepted;
static dbus_bool_t add_watch(DBusWatch *w, void *d) {
        (void)d;
        if (dbus_watch_get_enabled(w) && (dbus_watch_get_flags(w) & DBUS_WATCH_READABLE))
                server_watch = w;
        return TRUE;
}
static void remove_watch(DBusWatch *w, void *d) {
        (void)d;
        if (server_watch == w)
                server_watch = NULL;
}
static void toggle_watch(DBusWatch *w, void *d) {
        if (dbus_watch_get_enabled(w))
                add_watch(w, d);
        else
                remove_watch(w, d);
}
static void new_connection(DBusServer *s, DBusConnection *c, void *d) {
        (void)s;
        (void)d;
        if (!accepted)
                accepted = dbus_connection_ref(c);
}

static int serve(const char *address, const char *name, int p2p, int sub) {
        DBusError err;
        dbus_error_init(&err);
        DBusConnection *c;
        if (p2p) {
                DBusServer *s = dbus_server_listen(address, &err);
                if (!s) {
                        fprintf(stderr, "dbus-client: listen failed: %s\n", err.message);
                        return 1;
                }
                dbus_server_set_new_connection_function(s, new_connection, NULL, NULL);
                dbus_server_set_watch_functions(s, add_watch, remove_watch, toggle_watch, NULL,
                                                NULL);
                printf("ready\n");
                fflush(stdout);
                while (!accepted) {
                        if (!server_watch)
                                return 1;
                        struct pollfd pfd = {dbus_watch_get_unix_fd(server_watch), POLLIN, 0};
                        if (poll(&pfd, 1, -1) > 0)
                                dbus_watch_handle(server_watch, DBUS_WATCH_READABLE);
                }
                c = accepted;
        } else {
                c = open_registered(address, &err);
                if (!c) {
                        fprintf(stderr, "dbus-client: connect failed: %s\n", err.message);
                        return 1;
                }
                if (sub) {
                        dbus_bus_add_match(c, "type='signal',interface='" BENCH_IFACE "'", &err);
                        if (dbus_error_is_set(&err)) {
                                fprintf(stderr, "dbus-client: AddMatch: %s\n", err.message);
                                return 1;
                        }
                }
                if (dbus_bus_request_name(c, name, DBUS_NAME_FLAG_DO_NOT_QUEUE, &err) !=
                    DBUS_REQUEST_NAME_REPLY_PRIMARY_OWNER) {
                        fprintf(stderr, "dbus-client: cannot own %s\n", name);
                        return 1;
                }
                printf("ready\n");
                fflush(stdout);
        }
        serve_loop(c);
        return 0;
}

static DBusMessage *bench_msg(const struct load_opts *o, const char *dest, const char *member,
                              const unsigned char *body) {
        DBusMessage *m = dbus_message_new_method_call(o->p2p ? NULL : dest, BENCH_PATH,
                                                      BENCH_IFACE, member);
        if (body)
                dbus_message_append_args(m, DBUS_TYPE_ARRAY, DBUS_TYPE_BYTE, &body,
                                         (int)o->size, DBUS_TYPE_INVALID);
        return m;
}

/* Stats() of one peer: its CPU ns and messages received. */
static int peer_stats(DBusConnection *c, const struct load_opts *o, const char *peer,
                      double *cpu_ns, double *count) {
        DBusError err;
        dbus_error_init(&err);
        DBusMessage *m = bench_msg(o, peer, "Stats", NULL);
        DBusMessage *r = dbus_connection_send_with_reply_and_block(c, m, 60000, &err);
        dbus_message_unref(m);
        dbus_uint64_t cpu = 0, n = 0;
        if (!r || !dbus_message_get_args(r, &err, DBUS_TYPE_UINT64, &cpu, DBUS_TYPE_UINT64, &n,
                                         DBUS_TYPE_INVALID)) {
                fprintf(stderr, "dbus-client: Stats of %s failed: %s\n", peer,
                        err.message ? err.message : "?");
                return -1;
        }
        dbus_message_unref(r);
        *cpu_ns += (double)cpu;
        *count += (double)n;
        return 0;
}

static int load(int argc, char **argv) {
        struct load_opts o;
        if (parse_load_opts(argc, argv, &o) < 0)
                return 2;
        DBusError err;
        dbus_error_init(&err);
        DBusConnection *c = o.p2p ? dbus_connection_open_private(o.address, &err)
                                  : open_registered(o.address, &err);
        if (!c) {
                fprintf(stderr, "dbus-client: connect failed: %s\n", err.message);
                return 1;
        }
        unsigned char *body = calloc(1, (size_t)o.size + 1);
        for (long i = 0; i < o.size; i++)
                body[i] = (unsigned char)i;
        int call = !strcmp(o.workload, "call"), oneway = !strcmp(o.workload, "oneway"),
            signal = !strcmp(o.workload, "signal");
        if (!call && !oneway && !signal) {
                fprintf(stderr, "dbus-client: unknown workload %s\n", o.workload);
                return 2;
        }
        /* Warm-up: a few operations outside the measurement. */
        double p_cpu0 = 0, p_n0 = 0, p_cpu1 = 0, p_n1 = 0;
        for (int i = 0; i < o.npeers; i++)
                if (peer_stats(c, &o, o.peers[i], &p_cpu0, &p_n0) < 0)
                        return 1;
        double d0 = pids_sched_ns(o.pids);
        unsigned long long s0 = self_cpu_ns();
        double t0 = now_us();
        long sent = 0, done = 0;
        if (call) {
                while (done < o.n) {
                        while (sent < o.n && sent - done < o.inflight) {
                                DBusMessage *m = bench_msg(&o, o.peers[0], o.echo ? "Echo" : "Put", body);
                                dbus_connection_send(c, m, NULL);
                                dbus_message_unref(m);
                                sent++;
                        }
                        if (!dbus_connection_read_write(c, -1)) {
                                fprintf(stderr, "dbus-client: disconnected\n");
                                return 1;
                        }
                        DBusMessage *m;
                        while ((m = dbus_connection_pop_message(c))) {
                                int t = dbus_message_get_type(m);
                                if (t == DBUS_MESSAGE_TYPE_METHOD_RETURN) {
                                        done++;
                                } else if (t == DBUS_MESSAGE_TYPE_ERROR) {
                                        fprintf(stderr, "dbus-client: error reply %s\n",
                                                dbus_message_get_error_name(m));
                                        return 1;
                                }
                                dbus_message_unref(m);
                        }
                }
        } else {
                for (; sent < o.n; sent++) {
                        DBusMessage *m;
                        if (signal) {
                                m = dbus_message_new_signal(BENCH_PATH, BENCH_IFACE, "Tick");
                                dbus_message_append_args(m, DBUS_TYPE_ARRAY, DBUS_TYPE_BYTE,
                                                         &body, (int)o.size, DBUS_TYPE_INVALID);
                        } else {
                                m = bench_msg(&o, o.peers[0], "Sink", body);
                                dbus_message_set_no_reply(m, TRUE);
                        }
                        dbus_connection_send(c, m, NULL);
                        dbus_message_unref(m);
                        /* A blocking client: wait while the socket is full. */
                        if (dbus_connection_has_messages_to_send(c))
                                dbus_connection_flush(c);
                        /* Drop whatever arrives (NameAcquired and the like). */
                        DBusMessage *in;
                        while ((in = dbus_connection_pop_message(c)))
                                dbus_message_unref(in);
                }
        }
        /* Stats travel behind the last message, so they count all of it. */
        for (int i = 0; i < o.npeers; i++)
                if (peer_stats(c, &o, o.peers[i], &p_cpu1, &p_n1) < 0)
                        return 1;
        double wall = now_us() - t0;
        unsigned long long s1 = self_cpu_ns();
        double d1 = pids_sched_ns(o.pids);
        long expect = o.n * (signal ? o.npeers : 1);
        if ((long)(p_n1 - p_n0) != expect) {
                fprintf(stderr, "dbus-client: peers received %.0f messages, expected %ld\n",
                        p_n1 - p_n0, expect);
                return 1;
        }
        long routed = call ? 2 * o.n : expect;
        long ops = signal ? expect : o.n;
        print_result("libdbus", &o, wall, (double)(s1 - s0), p_cpu1 - p_cpu0, d1 - d0, routed,
                     ops, pids_hwm_kb(o.pids));
        dbus_connection_close(c);
        dbus_connection_unref(c);
        free(body);
        return 0;
}

int main(int argc, char **argv) {
        if (argc >= 2 && !strcmp(argv[1], "load"))
                return load(argc, argv);
        if (argc >= 4 && (!strcmp(argv[1], "serve") || !strcmp(argv[1], "sub")))
                return serve(argv[2], argv[3], argc >= 5 && !strcmp(argv[4], "--p2p"),
                             !strcmp(argv[1], "sub"));
        if (argc < 4) {
                fprintf(stderr, "usage: dbus-client churn|calls ADDRESS N [--pid PID] | serve|sub ADDRESS NAME [--p2p] | load ...\n");
                return 2;
        }
        long n = strtol(argv[3], NULL, 10), pid = 0;
        if (argc >= 6 && !strcmp(argv[4], "--pid"))
                pid = strtol(argv[5], NULL, 10);
        if (n <= 0)
                return 2;
        if (!strcmp(argv[1], "churn"))
                return churn(argv[2], n, pid);
        if (!strcmp(argv[1], "calls"))
                return calls(argv[2], n, pid);
        fprintf(stderr, "dbus-client: unknown scenario %s\n", argv[1]);
        return 2;
}
