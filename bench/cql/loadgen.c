/*
 * CQL load generator for benchmarks: one thread, epoll, N connections with S streams in flight on
 * each. Every connection sends STARTUP (and, for v5, switches to segment framing after READY),
 * then QUERY requests; each reply that comes back frees its stream for the next request, until a
 * fixed number of requests (-n) or a duration (-d) is reached. It prints requests per second and
 * its own CPU time, so a benchmark can show the generator is not the bottleneck.
 *
 * Usage: loadgen [-h 127.0.0.1] [-p 9042] [-v 4|5] [-c connections] [-s streams] [-n requests | -d seconds]
 *                [-q "SELECT k, v FROM bench.kv WHERE k = 'k'" | -Q query-file] [-C consistency]
 * Output (one line, key=value): requests= seconds= rps= errors= user_s= sys_s= cpu_us_per_req=
 * Exit status 1 if any reply was not a RESULT (the first error's message goes to stderr).
 */
#define _GNU_SOURCE
#include "cqlwire.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef enum { AWAIT_READY, RUNNING } conn_state_t;

typedef struct {
    int fd;
    conn_state_t state;
    int segmented;
    int in_flight;
    int want_out;      /* EPOLLOUT registered */
    buf_t in, frames, reqs, wire;
} conn_t;

static int version = 4, streams = 64;
static long long target = 200000, issued, completed, errors;
static double duration;       /* > 0: run for this many seconds instead of -n */
static int stop_issuing;
static buf_t request;          /* one QUERY frame; its stream id is patched per request */

static double now(void) {
    struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void build_request(const char *query, uint16_t consistency) {
    size_t at = frame_begin(&request, (uint8_t)version, 0, CQL_OP_QUERY);
    buf_long_string(&request, query);
    buf_u16(&request, consistency);
    if (version >= 5) buf_u32(&request, 0); else buf_u8(&request, 0);  /* query flags */
    frame_end(&request, at);
}

static int may_issue(void) { return !stop_issuing && (duration > 0 || issued < target); }

static void queue_request(conn_t *c, uint16_t stream) {
    size_t at = c->reqs.len;
    buf_put(&c->reqs, buf_head(&request), buf_unread(&request));
    c->reqs.p[at + 2] = (uint8_t)(stream >> 8); c->reqs.p[at + 3] = (uint8_t)stream;
    issued++; c->in_flight++;
}

static int flush(int ep, conn_t *c) {
    if (buf_unread(&c->reqs)) {
        if (c->segmented) segments_wrap(&c->wire, buf_head(&c->reqs), buf_unread(&c->reqs));
        else buf_put(&c->wire, buf_head(&c->reqs), buf_unread(&c->reqs));
        c->reqs.off = c->reqs.len = 0;
    }
    while (buf_unread(&c->wire)) {
        ssize_t n = write(c->fd, buf_head(&c->wire), buf_unread(&c->wire));
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) break;
            perror("loadgen: write"); exit(1);
        }
        buf_consume(&c->wire, (size_t)n);
    }
    int want_out = buf_unread(&c->wire) > 0;
    if (want_out != c->want_out) {
        struct epoll_event e = { .events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c };
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
        c->want_out = want_out;
    }
    return 0;
}

static void report_error(const uint8_t *f) {
    if (errors++ > 0) return;
    const uint8_t *b = f + CQL_HEADER_BYTES;
    if (f[4] == CQL_OP_ERROR && rd_u32(f + 5) >= 6) {
        uint16_t n = rd_u16(b + 4);
        fprintf(stderr, "loadgen: ERROR 0x%04x: %.*s\n", rd_u32(b), (int)n, (const char *)b + 6);
    } else fprintf(stderr, "loadgen: unexpected reply opcode 0x%02x\n", f[4]);
}

/* Handles the complete reply frames in src. Returns the number of connections that became ready. */
static int on_frames(conn_t *c, buf_t *src) {
    int ready = 0;
    while (buf_unread(src) >= CQL_HEADER_BYTES) {
        const uint8_t *f = buf_head(src);
        uint32_t blen = rd_u32(f + 5);
        if (buf_unread(src) < CQL_HEADER_BYTES + blen) break;
        if (c->state == AWAIT_READY) {
            if (f[4] != CQL_OP_READY) { report_error(f); fprintf(stderr, "loadgen: STARTUP refused\n"); exit(1); }
            c->state = RUNNING;
            if (version >= 5) c->segmented = 1;
            ready++;
        } else {
            if (f[4] != CQL_OP_RESULT) report_error(f);
            completed++; c->in_flight--;
            if (may_issue()) queue_request(c, rd_u16(f + 2));
        }
        buf_consume(src, CQL_HEADER_BYTES + blen);
        if (ready && c->segmented && src == &c->in) {
            /* Anything after READY is segment bytes. */
            char err[128];
            if (segments_unwrap(&c->in, &c->frames, err, sizeof err) < 0) { fprintf(stderr, "loadgen: %s\n", err); exit(1); }
            on_frames(c, &c->frames);
            break;
        }
    }
    return ready;
}

static int on_readable(conn_t *c) {
    buf_reserve(&c->in, 64 * 1024);
    ssize_t n = read(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len);
    if (n == 0) { fprintf(stderr, "loadgen: the server closed a connection\n"); exit(1); }
    if (n < 0) { if (errno == EAGAIN || errno == EINTR) return 0; perror("loadgen: read"); exit(1); }
    c->in.len += (size_t)n;
    if (!c->segmented) return on_frames(c, &c->in);
    char err[128];
    if (segments_unwrap(&c->in, &c->frames, err, sizeof err) < 0) { fprintf(stderr, "loadgen: %s\n", err); exit(1); }
    return on_frames(c, &c->frames);
}

static double cpu_seconds(double *user, double *sys) {
    struct rusage u; getrusage(RUSAGE_SELF, &u);
    *user = u.ru_utime.tv_sec + u.ru_utime.tv_usec / 1e6;
    *sys = u.ru_stime.tv_sec + u.ru_stime.tv_usec / 1e6;
    return *user + *sys;
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *query = "SELECT k, v FROM bench.kv WHERE k = 'k'";
    int port = 9042, nconn = 4, opt, consistency = 1;
    while ((opt = getopt(argc, argv, "h:p:v:c:s:n:d:q:Q:C:")) != -1) {
        switch (opt) {
        case 'h': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'v': version = atoi(optarg); break;
        case 'c': nconn = atoi(optarg); break;
        case 's': streams = atoi(optarg); break;
        case 'n': target = atoll(optarg); break;
        case 'd': duration = atof(optarg); break;
        case 'q': query = optarg; break;
        case 'Q': {  /* the query from a file: for statements longer than an argument may be */
            FILE *f = fopen(optarg, "rb");
            if (!f) { perror(optarg); return 2; }
            buf_t q = { 0 };
            char chunk[65536]; size_t n;
            while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) buf_put(&q, chunk, n);
            fclose(f);
            buf_u8(&q, 0);
            query = (const char *)q.p;
            break;
        }
        case 'C': consistency = atoi(optarg); break;
        default:
            fprintf(stderr, "usage: %s [-h host] [-p port] [-v 4|5] [-c conns] [-s streams] [-n requests | -d seconds] [-q query | -Q file] [-C consistency]\n", argv[0]);
            return 2;
        }
    }
    if ((version != 4 && version != 5) || nconn < 1 || streams < 1 || streams > 32768) {
        fprintf(stderr, "loadgen: -v 4|5, -c >= 1, 1 <= -s <= 32768\n"); return 2;
    }
    crc32_init();
    build_request(query, (uint16_t)consistency);
    signal(SIGPIPE, SIG_IGN);

    int ep = epoll_create1(0), one = 1;
    conn_t *conns = calloc((size_t)nconn, sizeof *conns);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) { fprintf(stderr, "bad address %s\n", host); return 2; }
    for (int i = 0; i < nconn; i++) {
        conn_t *c = &conns[i];
        c->fd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0) { perror("loadgen: connect"); return 1; }
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
        /* STARTUP {CQL_VERSION: 3.0.0}, unsegmented. */
        size_t at = frame_begin(&c->reqs, (uint8_t)version, 0, CQL_OP_STARTUP);
        buf_u16(&c->reqs, 1); buf_string(&c->reqs, "CQL_VERSION"); buf_string(&c->reqs, "3.0.0");
        frame_end(&c->reqs, at);
        struct epoll_event e = { .events = EPOLLIN, .data.ptr = c };
        epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e);
        flush(ep, c);
    }
    struct epoll_event evs[256];
    int ready = 0;
    while (ready < nconn) {
        int n = epoll_wait(ep, evs, 256, 5000);
        if (n == 0) { fprintf(stderr, "loadgen: no READY within 5 s\n"); return 1; }
        for (int i = 0; i < n; i++) ready += on_readable(evs[i].data.ptr);
    }
    /* Timed part: from the first request to the last reply. */
    double u0, s0, u1, s1;
    cpu_seconds(&u0, &s0);
    double t0 = now();
    for (int i = 0; i < nconn; i++) {
        for (int s = 0; s < streams && may_issue(); s++) queue_request(&conns[i], (uint16_t)s);
        flush(ep, &conns[i]);
    }
    long long in_flight = issued - completed;
    while (in_flight > 0) {
        int n = epoll_wait(ep, evs, 256, 10000);
        if (n == 0) { fprintf(stderr, "loadgen: no reply within 10 s (%lld in flight)\n", in_flight); return 1; }
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
            flush(ep, c);
        }
        if (duration > 0 && !stop_issuing && now() - t0 >= duration) stop_issuing = 1;
        in_flight = issued - completed;
    }
    double t = now() - t0;
    cpu_seconds(&u1, &s1);
    double cpu = (u1 - u0) + (s1 - s0);
    printf("requests=%lld seconds=%.3f rps=%.0f errors=%lld user_s=%.3f sys_s=%.3f cpu_us_per_req=%.2f "
           "version=%d connections=%d streams=%d\n",
           completed, t, completed / t, errors, u1 - u0, s1 - s0, cpu * 1e6 / (double)completed,
           version, nconn, streams);
    return errors ? 1 : 0;
}
