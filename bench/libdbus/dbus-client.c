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
 * Exit status 0 when every operation succeeded, 1 otherwise (the first
 * error is printed). More scenarios (issue 13) can be added as subcommands.
 */
#define _GNU_SOURCE
#include <dbus/dbus.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

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
                char p2[128];
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

int main(int argc, char **argv) {
        if (argc < 4) {
                fprintf(stderr, "usage: dbus-client churn|calls ADDRESS N [--pid PID]\n");
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
