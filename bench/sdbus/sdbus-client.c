/* The benchmark client of bench/clients built on sd-bus (libsystemd), the
 * other client library system services use. Same subcommands, options and
 * RESULT line as bench/libdbus/dbus-client.c:
 *
 *   sdbus-client serve ADDRESS NAME [--p2p]   Echo/Sink/Stats server (with
 *                                              --p2p: ADDRESS is unix:path=P,
 *                                              it listens there, no bus)
 *   sdbus-client sub ADDRESS NAME              Tick subscriber
 *   sdbus-client load --address A --workload call|oneway|signal --n N
 *                [--inflight K] [--size BYTES] [--pids PID,..] [--p2p] [--echo] --peer NAME..
 *
 * sd-bus writes a message as soon as it is queued when nothing is queued
 * before it (one message per write), as libdbus does.
 */
#include "../libdbus/measure.h"
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-id128.h>
#include <unistd.h>

static uint64_t received;

static int on_message(sd_bus_message *m, void *userdata, sd_bus_error *ret) {
        (void)userdata;
        (void)ret;
        sd_bus *bus = sd_bus_message_get_bus(m);
        if (sd_bus_message_is_signal(m, BENCH_IFACE, "Tick")) {
                received++;
                return 1;
        }
        if (sd_bus_message_is_method_call(m, BENCH_IFACE, "Sink")) {
                received++;
                return 1;
        }
        if (sd_bus_message_is_method_call(m, BENCH_IFACE, "Put")) {
                received++;
                return sd_bus_reply_method_return(m, NULL);
        }
        if (sd_bus_message_is_method_call(m, BENCH_IFACE, "Echo")) {
                received++;
                const void *p = NULL;
                size_t len = 0;
                sd_bus_message *r = NULL;
                if (sd_bus_message_read_array(m, 'y', &p, &len) < 0)
                        return sd_bus_reply_method_errorf(m, SD_BUS_ERROR_INVALID_ARGS, "bad args");
                if (sd_bus_message_new_method_return(m, &r) < 0 ||
                    sd_bus_message_append_array(r, 'y', p, len) < 0 || sd_bus_send(bus, r, NULL) < 0)
                        fprintf(stderr, "sdbus-client: cannot reply\n");
                sd_bus_message_unref(r);
                return 1;
        }
        if (sd_bus_message_is_method_call(m, BENCH_IFACE, "Stats"))
                return sd_bus_reply_method_return(m, "tt", (uint64_t)self_cpu_ns(), received);
        return 0;
}

static int serve_loop(sd_bus *b) {
        for (;;) {
                int r = sd_bus_process(b, NULL);
                if (r < 0)
                        return 0;
                if (r > 0)
                        continue;
                if (sd_bus_wait(b, UINT64_MAX) < 0)
                        return 0;
        }
}

static const char *unix_path(const char *address) {
        const char *p = strstr(address, "unix:path=");
        if (!p)
                return NULL;
        static char path[108];
        snprintf(path, sizeof(path), "%s", p + 10);
        char *comma = strchr(path, ',');
        if (comma)
                *comma = 0;
        return path;
}

static int serve(const char *address, const char *name, int p2p, int sub) {
        sd_bus *b = NULL;
        int r = -EIO;
        if (sd_bus_new(&b) < 0)
                return 1;
        if (p2p) {
                const char *path = unix_path(address);
                if (!path)
                        return 2;
                int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                struct sockaddr_un sa = {.sun_family = AF_UNIX};
                snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
                unlink(path);
                if (bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(s, 4) < 0) {
                        perror("sdbus-client: listen");
                        return 1;
                }
                printf("ready\n");
                fflush(stdout);
                int fd = accept4(s, NULL, NULL, SOCK_CLOEXEC);
                sd_id128_t id;
                sd_id128_randomize(&id);
                if (fd < 0 || (r = sd_bus_set_fd(b, fd, fd)) < 0 || (r = sd_bus_set_server(b, 1, id)) < 0 ||
                    (r = sd_bus_add_filter(b, NULL, on_message, NULL)) < 0 || (r = sd_bus_start(b)) < 0) {
                        fprintf(stderr, "sdbus-client: p2p server: %s\n", strerror(-r));
                        return 1;
                }
        } else {
                if ((r = sd_bus_set_address(b, address)) < 0 || (r = sd_bus_set_bus_client(b, 1)) < 0 ||
                    (r = sd_bus_add_filter(b, NULL, on_message, NULL)) < 0 || (r = sd_bus_start(b)) < 0) {
                        fprintf(stderr, "sdbus-client: connect: %s\n", strerror(-r));
                        return 1;
                }
                if (sub && (r = sd_bus_add_match(b, NULL, "type='signal',interface='" BENCH_IFACE "'",
                                                 NULL, NULL)) < 0) {
                        fprintf(stderr, "sdbus-client: AddMatch: %s\n", strerror(-r));
                        return 1;
                }
                if ((r = sd_bus_request_name(b, name, 0)) < 0) {
                        fprintf(stderr, "sdbus-client: cannot own %s: %s\n", name, strerror(-r));
                        return 1;
                }
                printf("ready\n");
                fflush(stdout);
        }
        serve_loop(b);
        return 0;
}

static int new_msg(sd_bus *b, const struct load_opts *o, const char *dest, const char *member,
                   const void *body, sd_bus_message **m) {
        int r = sd_bus_message_new_method_call(b, m, o->p2p ? NULL : dest, BENCH_PATH, BENCH_IFACE,
                                               member);
        if (r >= 0 && body)
                r = sd_bus_message_append_array(*m, 'y', body, (size_t)o->size);
        return r;
}

static int peer_stats(sd_bus *b, const struct load_opts *o, const char *peer, double *cpu,
                      double *count) {
        sd_bus_message *m = NULL, *reply = NULL;
        sd_bus_error e = SD_BUS_ERROR_NULL;
        uint64_t c = 0, n = 0;
        int r = new_msg(b, o, peer, "Stats", NULL, &m);
        if (r >= 0)
                r = sd_bus_call(b, m, 60 * 1000000ull, &e, &reply);
        if (r >= 0)
                r = sd_bus_message_read(reply, "tt", &c, &n);
        sd_bus_message_unref(m);
        sd_bus_message_unref(reply);
        if (r < 0) {
                fprintf(stderr, "sdbus-client: Stats of %s: %s\n", peer, e.message ? e.message : strerror(-r));
                return -1;
        }
        *cpu += (double)c;
        *count += (double)n;
        return 0;
}

static long done, failed;

static int on_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret) {
        (void)userdata;
        (void)ret;
        if (sd_bus_message_is_method_error(m, NULL)) {
                if (!failed)
                        fprintf(stderr, "sdbus-client: error reply %s\n", sd_bus_message_get_error(m)->name);
                failed++;
        }
        done++;
        return 1;
}

static int load(int argc, char **argv) {
        struct load_opts o;
        if (parse_load_opts(argc, argv, &o) < 0)
                return 2;
        sd_bus *b = NULL;
        int r;
        if ((r = sd_bus_new(&b)) < 0 || (r = sd_bus_set_address(b, o.address)) < 0 ||
            (r = sd_bus_set_bus_client(b, !o.p2p)) < 0 || (r = sd_bus_start(b)) < 0) {
                fprintf(stderr, "sdbus-client: connect: %s\n", strerror(-r));
                return 1;
        }
        unsigned char *body = calloc(1, (size_t)o.size + 1);
        for (long i = 0; i < o.size; i++)
                body[i] = (unsigned char)i;
        int call = !strcmp(o.workload, "call"), oneway = !strcmp(o.workload, "oneway"),
            signal = !strcmp(o.workload, "signal");
        if (!call && !oneway && !signal)
                return 2;
        double p_cpu0 = 0, p_n0 = 0, p_cpu1 = 0, p_n1 = 0;
        for (int i = 0; i < o.npeers; i++)
                if (peer_stats(b, &o, o.peers[i], &p_cpu0, &p_n0) < 0)
                        return 1;
        double d0 = pids_sched_ns(o.pids);
        unsigned long long s0 = self_cpu_ns();
        double t0 = now_us();
        long sent = 0;
        if (call) {
                while (done < o.n) {
                        while (sent < o.n && sent - done < o.inflight) {
                                sd_bus_message *m = NULL;
                                if ((r = new_msg(b, &o, o.peers[0], o.echo ? "Echo" : "Put", body, &m)) < 0 ||
                                    (r = sd_bus_call_async(b, NULL, m, on_reply, NULL, 120 * 1000000ull)) < 0) {
                                        fprintf(stderr, "sdbus-client: send: %s\n", strerror(-r));
                                        return 1;
                                }
                                sd_bus_message_unref(m);
                                sent++;
                        }
                        r = sd_bus_process(b, NULL);
                        if (r < 0) {
                                fprintf(stderr, "sdbus-client: %s\n", strerror(-r));
                                return 1;
                        }
                        if (r == 0 && sd_bus_wait(b, UINT64_MAX) < 0)
                                return 1;
                }
                if (failed)
                        return 1;
        } else {
                for (; sent < o.n; sent++) {
                        sd_bus_message *m = NULL;
                        if (signal) {
                                r = sd_bus_message_new_signal(b, &m, BENCH_PATH, BENCH_IFACE, "Tick");
                                if (r >= 0)
                                        r = sd_bus_message_append_array(m, 'y', body, (size_t)o.size);
                        } else {
                                r = new_msg(b, &o, o.peers[0], "Sink", body, &m);
                                if (r >= 0)
                                        r = sd_bus_message_set_expect_reply(m, 0);
                        }
                        if (r >= 0)
                                r = sd_bus_send(b, m, NULL);
                        sd_bus_message_unref(m);
                        if (r < 0) {
                                fprintf(stderr, "sdbus-client: send: %s\n", strerror(-r));
                                return 1;
                        }
                        /* A blocking client: wait while the socket is full. */
                        if ((r = sd_bus_flush(b)) < 0)
                                return 1;
                        /* Drop whatever arrives (NameAcquired and the like). */
                        while (sd_bus_process(b, NULL) > 0)
                                ;
                }
        }
        for (int i = 0; i < o.npeers; i++)
                if (peer_stats(b, &o, o.peers[i], &p_cpu1, &p_n1) < 0)
                        return 1;
        double wall = now_us() - t0;
        unsigned long long s1 = self_cpu_ns();
        double d1 = pids_sched_ns(o.pids);
        long expect = o.n * (signal ? o.npeers : 1);
        if ((long)(p_n1 - p_n0) != expect) {
                fprintf(stderr, "sdbus-client: peers received %.0f messages, expected %ld\n", p_n1 - p_n0, expect);
                return 1;
        }
        long routed = call ? 2 * o.n : expect;
        long ops = signal ? expect : o.n;
        print_result("sd-bus", &o, wall, (double)(s1 - s0), p_cpu1 - p_cpu0, d1 - d0, routed, ops,
                     pids_hwm_kb(o.pids));
        sd_bus_flush_close_unref(b);
        free(body);
        return 0;
}

int main(int argc, char **argv) {
        if (argc >= 2 && !strcmp(argv[1], "load"))
                return load(argc, argv);
        if (argc >= 4 && (!strcmp(argv[1], "serve") || !strcmp(argv[1], "sub")))
                return serve(argv[2], argv[3], argc >= 5 && !strcmp(argv[4], "--p2p"),
                             !strcmp(argv[1], "sub"));
        fprintf(stderr, "usage: sdbus-client serve|sub ADDRESS NAME [--p2p] | load ...\n");
        return 2;
}
