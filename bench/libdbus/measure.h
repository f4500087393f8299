/* Measurement helpers shared by the libdbus and sd-bus benchmark clients
 * (bench/libdbus/dbus-client.c, bench/sdbus/sdbus-client.c). */
#ifndef BENCH_MEASURE_H
#define BENCH_MEASURE_H
#define _GNU_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BENCH_IFACE "org.busbar.Bench"
#define BENCH_PATH "/org/busbar/Bench"

static inline double now_us(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* This process's CPU time (user + system, all threads), in ns. */
static inline unsigned long long self_cpu_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

/* Sum of every thread's on-CPU time of process `pid` (schedstat), in ns:
 * exact, unlike utime+stime, which is sampled at clock ticks. */
static inline double proc_sched_ns(long pid) {
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
                        total += (double)ns;
                fclose(f);
        }
        closedir(d);
        return total;
}

/* A field of /proc/PID/status in kB (VmHWM, VmRSS), or -1. */
static inline long proc_status_kb(long pid, const char *field) {
        char path[64], line[256];
        snprintf(path, sizeof(path), "/proc/%ld/status", pid);
        FILE *f = fopen(path, "r");
        if (!f)
                return -1;
        long v = -1;
        size_t fl = strlen(field);
        while (fgets(line, sizeof(line), f)) {
                if (!strncmp(line, field, fl) && line[fl] == ':') {
                        v = strtol(line + fl + 1, NULL, 10);
                        break;
                }
        }
        fclose(f);
        return v;
}

/* The sum of the daemon's processes' CPU (a comma list of pids). */
static inline double pids_sched_ns(const char *pids) {
        double t = 0;
        if (!pids || !*pids)
                return 0;
        const char *p = pids;
        while (*p) {
                char *end;
                long pid = strtol(p, &end, 10);
                if (end == p)
                        break;
                double v = proc_sched_ns(pid);
                if (v > 0)
                        t += v;
                p = *end == ',' ? end + 1 : end;
        }
        return t;
}

/* Peak RSS (VmHWM, kB) summed over the pids. */
static inline long pids_hwm_kb(const char *pids) {
        long t = 0;
        if (!pids || !*pids)
                return 0;
        const char *p = pids;
        while (*p) {
                char *end;
                long pid = strtol(p, &end, 10);
                if (end == p)
                        break;
                long v = proc_status_kb(pid, "VmHWM");
                if (v > 0)
                        t += v;
                p = *end == ',' ? end + 1 : end;
        }
        return t;
}

/* Options of the "load" subcommand (both libraries). */
struct load_opts {
        const char *address;
        const char *workload; /* call | oneway | signal */
        long n;               /* operations: calls, one-way messages, signals */
        long inflight;        /* calls in flight (call) */
        long size;            /* body: an `ay` of this many bytes */
        const char *pids;     /* daemon pids to measure (comma list), or NULL */
        int p2p;              /* no bus: talk to the server directly */
        int echo;             /* call Echo (the reply carries the body back) instead of Put */
        char **peers;         /* bus names (or, p2p: ignored) of the server / subscribers */
        int npeers;
        const char *label;
};

static inline int parse_load_opts(int argc, char **argv, struct load_opts *o) {
        memset(o, 0, sizeof(*o));
        o->inflight = 1;
        o->size = 13;
        o->label = "";
        o->peers = calloc((size_t)argc, sizeof(char *));
        for (int i = 2; i < argc; i++) {
                const char *a = argv[i];
                const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name) (!strcmp(a, name) && v && (i++, 1))
                if (OPT("--address"))
                        o->address = v;
                else if (OPT("--workload"))
                        o->workload = v;
                else if (OPT("--n"))
                        o->n = strtol(v, NULL, 10);
                else if (OPT("--inflight"))
                        o->inflight = strtol(v, NULL, 10);
                else if (OPT("--size"))
                        o->size = strtol(v, NULL, 10);
                else if (OPT("--pids"))
                        o->pids = v;
                else if (OPT("--peer"))
                        o->peers[o->npeers++] = (char *)v;
                else if (OPT("--label"))
                        o->label = v;
                else if (!strcmp(a, "--p2p"))
                        o->p2p = 1;
                else if (!strcmp(a, "--echo"))
                        o->echo = 1;
                else {
                        fprintf(stderr, "unknown or incomplete option %s\n", a);
                        return -1;
                }
#undef OPT
        }
        if (!o->address || !o->workload || o->n <= 0 || o->inflight <= 0 || o->size < 0 ||
            o->npeers == 0) {
                fprintf(stderr, "load needs --address, --workload, --n and --peer\n");
                return -1;
        }
        return 0;
}

/* Prints the RESULT line. peer_cpu_ns / received are summed over the peers. */
static inline void print_result(const char *lib, const struct load_opts *o, double wall_us,
                                double self_ns, double peer_ns, double daemon_ns, long routed,
                                long ops, long hwm_kb) {
        double total_ns = self_ns + peer_ns + daemon_ns;
        printf("RESULT\tlib=%s\tlabel=%s\tworkload=%s\tsize=%ld\tinflight=%ld\tn=%ld\tp2p=%d\t"
               "echo=%d\trouted=%ld\twall_us=%.0f\tclient_cpu_us=%.0f\tpeer_cpu_us=%.0f\t"
               "daemon_cpu_us=%.0f\tdaemon_us_per_msg=%.4f\tops_per_cpu_s=%.1f\t"
               "ops_per_wall_s=%.1f\thwm_kb=%ld\n",
               lib, o->label, o->workload, o->size, o->inflight, o->n, o->p2p, o->echo, routed, wall_us,
               self_ns / 1e3, peer_ns / 1e3, daemon_ns / 1e3,
               routed ? daemon_ns / 1e3 / (double)routed : 0, ops / (total_ns / 1e9),
               ops / (wall_us / 1e6), hwm_kb);
        fflush(stdout);
}
#endif
