/*
 * A minimal, fast CQL responder for benchmarks (not a database, not a test backend): one thread,
 * epoll, native protocol v4 and v5 (v5 segment framing with CRC24/CRC32 after READY), any number of
 * connections and streams. It answers with canned replies:
 *   OPTIONS -> SUPPORTED; STARTUP, REGISTER -> READY; AUTH_RESPONSE -> AUTH_SUCCESS;
 *   QUERY "SELECT ..." -> RESULT Rows (one row, columns k varchar, v int; for system.local one row
 *   with cluster_name, data_center, rack..., for system.peers(_v2) none); "USE ks" -> Set_keyspace;
 *   any other QUERY and BATCH -> RESULT Void;
 *   PREPARE -> RESULT Prepared (the id says whether the statement was a SELECT);
 *   EXECUTE -> Rows for a SELECT's id, Void otherwise.
 * A frame of another version gets the PROTOCOL_ERROR drivers downgrade on, then the connection
 * closes; so does an unknown opcode or a compression request (it speaks uncompressed only).
 *
 * Usage: responder [-h 127.0.0.1] [-p 19042] [-P pidfile]
 */
#define _GNU_SOURCE
#include "cqlwire.h"
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_BODY (256u * 1024 * 1024)
#define READ_CHUNK (64 * 1024)
#define MAX_PENDING_WRITE (64u * 1024 * 1024)

typedef struct conn {
    int fd;
    int version;          /* 0 until the first frame */
    int segmented;        /* v5 after READY: both directions in segments */
    int closing;          /* close once the pending output is written */
    int want_out;         /* EPOLLOUT registered */
    buf_t in;             /* bytes read, not yet parsed */
    buf_t frames;         /* v5: segment payloads, not yet parsed as frames */
    buf_t replies;        /* reply frames of this read, not yet framed for the wire */
    buf_t wire;           /* bytes for the socket */
} conn_t;

static int ep;
static buf_t rows_body, supported_body;   /* canned bodies, built once */
static buf_t local_body, peers_body;      /* what a driver's control connection reads */
static unsigned long long served;

static void build_canned(void) {
    /* RESULT Rows: kind 2; metadata flags 0x0001 (global table spec), 2 columns; 1 row. */
    buf_t *b = &rows_body;
    buf_u32(b, 2);
    buf_u32(b, 0x0001); buf_u32(b, 2);
    buf_string(b, "bench"); buf_string(b, "kv");
    buf_string(b, "k"); buf_u16(b, 0x000D);   /* varchar */
    buf_string(b, "v"); buf_u16(b, 0x0009);   /* int */
    buf_u32(b, 1);
    buf_u32(b, 1); buf_put(b, "k", 1);
    buf_u32(b, 4); buf_u32(b, 42);

    /* system.local: one row with the columns drivers read (cluster_name is required by the
     * DataStax python driver); system.peers and peers_v2: no rows (a single node). */
    static const char *cols[][2] = { { "key", "local" }, { "cluster_name", "sluice-bench" },
        { "data_center", "dc1" }, { "rack", "rack1" }, { "release_version", "4.0.0" },
        { "partitioner", "org.apache.cassandra.dht.Murmur3Partitioner" }, { "cql_version", "3.4.5" } };
    const int ncols = sizeof cols / sizeof cols[0];
    for (int pass = 0; pass < 2; pass++) {
        b = pass ? &peers_body : &local_body;
        buf_u32(b, 2);
        buf_u32(b, 0x0001); buf_u32(b, (uint32_t)ncols);
        buf_string(b, "system"); buf_string(b, pass ? "peers" : "local");
        for (int i = 0; i < ncols; i++) { buf_string(b, cols[i][0]); buf_u16(b, 0x000D); }
        buf_u32(b, pass ? 0 : 1);
        for (int i = 0; !pass && i < ncols; i++) { buf_u32(b, (uint32_t)strlen(cols[i][1])); buf_put(b, cols[i][1], strlen(cols[i][1])); }
    }

    /* SUPPORTED: a [string multimap]. */
    b = &supported_body;
    buf_u16(b, 3);
    buf_string(b, "CQL_VERSION"); buf_u16(b, 1); buf_string(b, "3.4.5");
    buf_string(b, "COMPRESSION"); buf_u16(b, 0);
    buf_string(b, "PROTOCOL_VERSIONS"); buf_u16(b, 2); buf_string(b, "4/v4"); buf_string(b, "5/v5");
}

static uint8_t reply_version(const conn_t *c) { return (uint8_t)(0x80 | (c->version ? c->version : 4)); }

static void reply_error(conn_t *c, uint16_t stream, uint32_t code, const char *msg) {
    size_t at = frame_begin(&c->replies, reply_version(c), stream, CQL_OP_ERROR);
    buf_u32(&c->replies, code); buf_string(&c->replies, msg);
    frame_end(&c->replies, at);
}

static void reply_body(conn_t *c, uint16_t stream, uint8_t opcode, const buf_t *body) {
    size_t at = frame_begin(&c->replies, reply_version(c), stream, opcode);
    if (body) buf_put(&c->replies, buf_head(body), buf_unread(body));
    frame_end(&c->replies, at);
}

static void reply_void(conn_t *c, uint16_t stream) {
    size_t at = frame_begin(&c->replies, reply_version(c), stream, CQL_OP_RESULT);
    buf_u32(&c->replies, 1);
    frame_end(&c->replies, at);
}

/* Is the statement a SELECT (leading blanks skipped, any case)? */
static int is_select(const uint8_t *q, size_t n) {
    while (n && isspace(*q)) { q++; n--; }
    return n >= 6 && strncasecmp((const char *)q, "select", 6) == 0;
}

/* "USE ks" -> writes the keyspace (quotes dropped) and returns 1. */
static int use_keyspace(const uint8_t *q, size_t n, char *ks, size_t kslen) {
    while (n && isspace(*q)) { q++; n--; }
    if (n < 4 || strncasecmp((const char *)q, "use", 3) != 0 || !isspace(q[3])) return 0;
    q += 4; n -= 4;
    size_t k = 0;
    while (n && k + 1 < kslen && *q != ';' && !isspace(*q)) { if (*q != '"') ks[k++] = (char)*q; q++; n--; }
    ks[k] = 0;
    return k > 0;
}

/* Moves this round's reply frames to the wire buffer, in segments once v5 framing is on. */
static void frame_replies(conn_t *c) {
    if (!buf_unread(&c->replies)) return;
    if (c->segmented) segments_wrap(&c->wire, buf_head(&c->replies), buf_unread(&c->replies));
    else buf_put(&c->wire, buf_head(&c->replies), buf_unread(&c->replies));
    c->replies.off = c->replies.len = 0;
}

/* Does STARTUP's [string map] ask for compression? */
static int startup_wants_compression(const uint8_t *b, size_t n) {
    if (n < 2) return 0;
    size_t at = 2, pairs = rd_u16(b);
    for (size_t i = 0; i < pairs; i++) {
        if (at + 2 > n) return 0;
        size_t kl = rd_u16(b + at); at += 2;
        if (at + kl + 2 > n) return 0;
        int is_comp = kl == 11 && memcmp(b + at, "COMPRESSION", 11) == 0;
        at += kl;
        size_t vl = rd_u16(b + at); at += 2;
        if (is_comp && vl > 0) return 1;
        at += vl;
    }
    return 0;
}

/* Answers one request frame. Returns -1 to close the connection after the replies. */
static int handle_frame(conn_t *c, const uint8_t *f, size_t blen) {
    uint16_t stream = rd_u16(f + 2);
    uint8_t op = f[4];
    const uint8_t *body = f + CQL_HEADER_BYTES;
    served++;
    switch (op) {
    case CQL_OP_OPTIONS:
        reply_body(c, stream, CQL_OP_SUPPORTED, &supported_body);
        return 0;
    case CQL_OP_STARTUP:
        if (startup_wants_compression(body, blen)) {
            reply_error(c, stream, CQL_ERR_PROTOCOL, "this benchmark responder speaks uncompressed only");
            return -1;
        }
        reply_body(c, stream, CQL_OP_READY, NULL);
        if (c->version >= 5) { frame_replies(c); c->segmented = 1; }  /* READY itself goes unsegmented */
        return 0;
    case CQL_OP_REGISTER:
        reply_body(c, stream, CQL_OP_READY, NULL);
        return 0;
    case CQL_OP_AUTH_RESPONSE: {
        size_t at = frame_begin(&c->replies, reply_version(c), stream, CQL_OP_AUTH_SUCCESS);
        buf_u32(&c->replies, 0xffffffffu);  /* null token */
        frame_end(&c->replies, at);
        return 0;
    }
    case CQL_OP_QUERY: {
        if (blen < 4 || rd_u32(body) > blen - 4) goto malformed;
        size_t qn = rd_u32(body);
        char ks[256];
        if (is_select(body + 4, qn)) {
            const buf_t *rows = &rows_body;
            if (memmem(body + 4, qn, "system.local", 12)) rows = &local_body;
            else if (memmem(body + 4, qn, "system.peers", 12)) rows = &peers_body;
            reply_body(c, stream, CQL_OP_RESULT, rows);
        }
        else if (use_keyspace(body + 4, qn, ks, sizeof ks)) {
            size_t at = frame_begin(&c->replies, reply_version(c), stream, CQL_OP_RESULT);
            buf_u32(&c->replies, 3); buf_string(&c->replies, ks);
            frame_end(&c->replies, at);
        } else reply_void(c, stream);
        return 0;
    }
    case CQL_OP_PREPARE: {
        if (blen < 4 || rd_u32(body) > blen - 4) goto malformed;
        int sel = is_select(body + 4, rd_u32(body));
        /* The id: 16 bytes, 'S' or 'V' then a hash of the text, so equal texts get equal ids. */
        uint8_t id[16]; memset(id, 0, sizeof id);
        id[0] = sel ? 'S' : 'V';
        uint32_t h = segment_crc32(body + 4, rd_u32(body));
        memcpy(id + 1, &h, 4);
        size_t at = frame_begin(&c->replies, reply_version(c), stream, CQL_OP_RESULT);
        buf_u32(&c->replies, 4);
        buf_u16(&c->replies, sizeof id); buf_put(&c->replies, id, sizeof id);
        if (c->version >= 5) { buf_u16(&c->replies, sizeof id); buf_put(&c->replies, id, sizeof id); }
        buf_u32(&c->replies, 0); buf_u32(&c->replies, 0); buf_u32(&c->replies, 0); /* no bind markers */
        if (sel)  /* the result metadata: that of the canned rows (after the RESULT kind) */
            buf_put(&c->replies, buf_head(&rows_body) + 4, buf_unread(&rows_body) - 4 - 4 - 4 - 1 - 4 - 4);
        else { buf_u32(&c->replies, 0x0004); buf_u32(&c->replies, 0); }  /* No_metadata */
        frame_end(&c->replies, at);
        return 0;
    }
    case CQL_OP_EXECUTE: {
        if (blen < 2 || rd_u16(body) > blen - 2) goto malformed;
        if (rd_u16(body) > 0 && body[2] == 'S') reply_body(c, stream, CQL_OP_RESULT, &rows_body);
        else reply_void(c, stream);
        return 0;
    }
    case CQL_OP_BATCH:
        reply_void(c, stream);
        return 0;
    default: {
        char m[64]; snprintf(m, sizeof m, "unexpected opcode 0x%02x", op);
        reply_error(c, stream, CQL_ERR_PROTOCOL, m);
        return -1;
    }
    }
malformed:
    reply_error(c, stream, CQL_ERR_PROTOCOL, "malformed request body");
    return -1;
}

/* Answers the complete frames at the head of `src`. Returns -1 to close after the replies. */
static int handle_frames(conn_t *c, buf_t *src) {
    while (buf_unread(src) >= CQL_HEADER_BYTES && !c->closing) {
        const uint8_t *f = buf_head(src);
        int v = f[0] & 0x7f;
        if ((f[0] & 0x80) || (v != 4 && v != 5) || (c->version && v != c->version)) {
            char m[128];
            snprintf(m, sizeof m, "Invalid or unsupported protocol version (%d); supported versions are (4/v4, 5/v5)", v);
            reply_error(c, rd_u16(f + 2), CQL_ERR_PROTOCOL, m);
            return -1;
        }
        uint32_t blen = rd_u32(f + 5);
        if (blen > MAX_BODY) { reply_error(c, rd_u16(f + 2), CQL_ERR_PROTOCOL, "frame too large"); return -1; }
        if (buf_unread(src) < CQL_HEADER_BYTES + blen) break;
        c->version = v;
        int was_segmented = c->segmented;
        int r = handle_frame(c, f, blen);
        buf_consume(src, CQL_HEADER_BYTES + blen);
        if (r < 0) return -1;
        if (!was_segmented && c->segmented) {
            /* The peer sends segments from now on: what is left in `in` is segment bytes. */
            return 0;
        }
    }
    return 0;
}

static void conn_close(conn_t *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->in.p); free(c->frames.p); free(c->replies.p); free(c->wire.p);
    free(c);
}

static void set_events(conn_t *c) {
    int want_out = buf_unread(&c->wire) > 0;
    if (want_out == c->want_out) return;
    struct epoll_event e = { .events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c };
    if (buf_unread(&c->wire) > MAX_PENDING_WRITE) e.events &= ~EPOLLIN;
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
    c->want_out = want_out;
}

/* Writes what it can. Returns -1 when the connection is gone. */
static int flush(conn_t *c) {
    while (buf_unread(&c->wire)) {
        ssize_t n = write(c->fd, buf_head(&c->wire), buf_unread(&c->wire));
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            if (errno == EINTR) continue;
            return -1;
        }
        buf_consume(&c->wire, (size_t)n);
    }
    if (!buf_unread(&c->wire) && c->closing) return -1;
    set_events(c);
    return 0;
}

static void on_readable(conn_t *c) {
    buf_reserve(&c->in, READ_CHUNK);
    ssize_t n = read(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) { conn_close(c); return; }
    if (n < 0) return;
    c->in.len += (size_t)n;
    int r = 0;
    for (;;) {
        if (!c->segmented) {
            r = handle_frames(c, &c->in);
            if (r < 0 || !c->segmented) break;
            continue;  /* switched to segments mid-buffer */
        }
        char err[128];
        if (segments_unwrap(&c->in, &c->frames, err, sizeof err) < 0) {
            fprintf(stderr, "responder: %s; closing the connection\n", err);
            r = -1; break;
        }
        r = handle_frames(c, &c->frames);
        break;
    }
    frame_replies(c);
    if (r < 0) c->closing = 1;
    if (flush(c) < 0) conn_close(c);
}

static volatile sig_atomic_t stop;
static void on_signal(int s) { (void)s; stop = 1; }

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *pidfile = NULL;
    int port = 19042, opt;
    while ((opt = getopt(argc, argv, "h:p:P:")) != -1) {
        switch (opt) {
        case 'h': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'P': pidfile = optarg; break;
        default: fprintf(stderr, "usage: %s [-h host] [-p port] [-P pidfile]\n", argv[0]); return 2;
        }
    }
    crc32_init();
    build_canned();
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_signal); signal(SIGINT, on_signal);

    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) { fprintf(stderr, "bad address %s\n", host); return 2; }
    if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 1024) < 0) { perror("bind/listen"); return 1; }
    ep = epoll_create1(0);
    struct epoll_event le = { .events = EPOLLIN, .data.ptr = NULL };
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &le);
    if (pidfile) { FILE *f = fopen(pidfile, "w"); if (f) { fprintf(f, "%d\n", getpid()); fclose(f); } }
    fprintf(stderr, "responder: listening on %s:%d\n", host, port);

    struct epoll_event evs[256];
    while (!stop) {
        int n = epoll_wait(ep, evs, 256, 500);
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (!c) {
                for (;;) {
                    int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
                    if (fd < 0) break;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conn_t *nc = calloc(1, sizeof *nc);
                    nc->fd = fd;
                    struct epoll_event e = { .events = EPOLLIN, .data.ptr = nc };
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
                }
                continue;
            }
            if (evs[i].events & EPOLLOUT) { if (flush(c) < 0) { conn_close(c); continue; } }
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
        }
    }
    fprintf(stderr, "responder: %llu requests answered\n", served);
    return 0;
}
