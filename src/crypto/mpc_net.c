/*
 * mpc_net.c - `mpc sum`: P >= 3 parties on 127.0.0.1 compute joint per-group
 * totals by secret sharing (additive over Z_2^64 or Shamir over
 * GF(2^61-1)), semi-honest model. Full TCP mesh: party i listens on
 * port + i, dials every lower party and accepts every higher one. Every
 * socket is non-blocking and every wait is a poll() bounded by the single
 * protocol deadline, so a missing or stuck party ends in a timeout error,
 * never a hang.
 *
 * Message: "PVMP" | version 1 | type | reserved u16 0 | sender u32 |
 * payload_len u32 | payload (little-endian).
 *   HELLO   parties u8 | scheme u8 | threshold u8 | decimals u8 |
 *           groups[32] (BLAKE2b of the agreed group list, zero when the
 *           labels are exchanged)
 *   LABELS  count u32 | count x (len u8 | bytes), strictly ascending
 *   SHARES  count u32 | count x u64   (one share per group)
 *   PARTIAL count u32 | count x u64   (the party's sum of shares)
 */
#include <privguide/secagg.h>
#include <privguide/shamir.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MP_HDR 16
#define MP_MAX_PAYLOAD (64u << 20)
#define MP_MAX_PARTIES 64
#define MP_HELLO_LEN 36
enum { MP_HELLO = 1, MP_LABELS = 2, MP_SHARES = 3, MP_PARTIAL = 4 };

static const char *mp_type_name(int t)
{
    static const char *n[] = {"?", "HELLO", "LABELS", "SHARES", "PARTIAL"};
    return t >= 1 && t <= 4 ? n[t] : "unknown";
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}
static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int remaining(long long deadline)
{
    long long r = deadline - now_ms();
    return r < 0 ? 0 : r > 1000000 ? 1000000 : (int)r;
}

typedef struct {
    int fd;
    uint8_t *out;
    size_t out_len, out_off;
    uint8_t hdr[MP_HDR];
    size_t hdr_got;
    uint8_t *in;
    size_t in_len, in_got;
    int in_done;
} peer;

static uint8_t *mp_msg(int type, uint32_t sender, size_t plen)
{
    uint8_t *m = calloc(1, MP_HDR + plen);
    if (!m) return NULL;
    memcpy(m, "PVMP", 4);
    m[4] = 1;
    m[5] = (uint8_t)type;
    put32(m + 8, sender);
    put32(m + 12, (uint32_t)plen);
    return m;
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL, 0);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static pvg_status check_header(const uint8_t *h, int want, uint32_t from, pvg_error *err)
{
    if (memcmp(h, "PVMP", 4) != 0)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "party %u: bad magic (not a privguide mpc peer?)", from);
    if (h[4] != 1)
        return pvg_error_set(err, PVG_ERR_UNSUPPORTED, "party %u: protocol version %u, expected 1",
                             from, h[4]);
    if (h[5] != want)
        return pvg_error_set(err, PVG_ERR_INVALID, "party %u: got %s, expected %s", from,
                             mp_type_name(h[5]), mp_type_name(want));
    if (h[6] || h[7])
        return pvg_error_set(err, PVG_ERR_INVALID, "party %u: reserved header bytes not zero",
                             from);
    if (get32(h + 8) != from)
        return pvg_error_set(err, PVG_ERR_INVALID, "party %u: message claims to come from party %u",
                             from, get32(h + 8));
    if (get32(h + 12) > MP_MAX_PAYLOAD)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "party %u: payload of %u bytes exceeds the limit", from,
                             get32(h + 12));
    return PVG_OK;
}

/* Sends every peer's pending output and receives one message of type
 * `want` from every peer, concurrently, until the deadline. */
static pvg_status exchange(peer *pe, unsigned P, unsigned me, int want, long long deadline,
                           pvg_error *err)
{
    for (unsigned j = 0; j < P; j++) {
        if (j == me) continue;
        pe[j].out_off = 0;
        pe[j].hdr_got = 0;
        free(pe[j].in);
        pe[j].in = NULL;
        pe[j].in_len = pe[j].in_got = 0;
        pe[j].in_done = 0;
    }
    struct pollfd pf[MP_MAX_PARTIES];
    unsigned idx[MP_MAX_PARTIES];
    for (;;) {
        unsigned np = 0;
        for (unsigned j = 0; j < P; j++) {
            if (j == me) continue;
            short ev = 0;
            if (pe[j].out_off < pe[j].out_len) ev |= POLLOUT;
            if (!pe[j].in_done) ev |= POLLIN;
            if (!ev) continue;
            pf[np] = (struct pollfd){.fd = pe[j].fd, .events = ev};
            idx[np++] = j;
        }
        if (np == 0) return PVG_OK;
        int to = remaining(deadline);
        int rc = to > 0 ? poll(pf, np, to) : 0;
        if (rc < 0 && errno == EINTR) continue;
        if (rc < 0) return pvg_error_set(err, PVG_ERR_IO, "poll: %s", strerror(errno));
        if (rc == 0) {
            unsigned j = idx[0];
            return pvg_error_set(err, PVG_ERR_IO, "timed out waiting for party %u (%s)", j,
                                 pe[j].in_done ? "sending" : mp_type_name(want));
        }
        for (unsigned q = 0; q < np; q++) {
            unsigned j = idx[q];
            peer *p = &pe[j];
            if ((pf[q].revents & POLLOUT) && p->out_off < p->out_len) {
                ssize_t w = send(p->fd, p->out + p->out_off, p->out_len - p->out_off, MSG_NOSIGNAL);
                if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                    return pvg_error_set(err, PVG_ERR_IO, "sending to party %u: %s", j,
                                         strerror(errno));
                if (w > 0) p->out_off += (size_t)w;
            }
            if ((pf[q].revents & (POLLIN | POLLHUP | POLLERR)) && !p->in_done) {
                uint8_t *dst;
                size_t want_n;
                if (p->hdr_got < MP_HDR) {
                    dst = p->hdr + p->hdr_got;
                    want_n = MP_HDR - p->hdr_got;
                } else {
                    dst = p->in + p->in_got;
                    want_n = p->in_len - p->in_got;
                }
                ssize_t r = recv(p->fd, dst, want_n, 0);
                if (r == 0)
                    return pvg_error_set(err, PVG_ERR_IO, "party %u closed the connection", j);
                if (r < 0) {
                    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
                    return pvg_error_set(err, PVG_ERR_IO, "receiving from party %u: %s", j,
                                         strerror(errno));
                }
                if (p->hdr_got < MP_HDR) {
                    p->hdr_got += (size_t)r;
                    if (p->hdr_got == MP_HDR) {
                        pvg_status st = check_header(p->hdr, want, j, err);
                        if (st != PVG_OK) return st;
                        p->in_len = get32(p->hdr + 12);
                        p->in = malloc(p->in_len ? p->in_len : 1);
                        if (!p->in) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
                        if (p->in_len == 0) p->in_done = 1;
                    }
                } else {
                    p->in_got += (size_t)r;
                    if (p->in_got == p->in_len) p->in_done = 1;
                }
            }
        }
    }
}

/* Blocking-with-deadline I/O of exactly n bytes on a non-blocking fd. */
static pvg_status io_full(int fd, void *buf, size_t n, int writing, long long deadline,
                          unsigned who, pvg_error *err)
{
    size_t done = 0;
    while (done < n) {
        struct pollfd pf = {.fd = fd, .events = writing ? POLLOUT : POLLIN};
        int to = remaining(deadline);
        int rc = to > 0 ? poll(&pf, 1, to) : 0;
        if (rc < 0 && errno == EINTR) continue;
        if (rc <= 0)
            return pvg_error_set(err, PVG_ERR_IO, "timed out waiting for party %u (HELLO)", who);
        ssize_t r = writing ? send(fd, (uint8_t *)buf + done, n - done, MSG_NOSIGNAL)
                            : recv(fd, (uint8_t *)buf + done, n - done, 0);
        if (r == 0 && !writing)
            return pvg_error_set(err, PVG_ERR_IO, "party %u closed the connection", who);
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
            return pvg_error_set(err, PVG_ERR_IO, "party %u: %s", who, strerror(errno));
        }
        done += (size_t)r;
    }
    return PVG_OK;
}

/* Digest of a group list: BLAKE2b-256 over (len u8 | label) in order. */
static void groups_digest(const pvg_mpc_table *g, uint8_t out[32])
{
    memset(out, 0, 32);
    if (!g) return;
    crypto_generichash_state h;
    crypto_generichash_init(&h, (const uint8_t *)"PVMP-groups", 11, 32);
    for (size_t i = 0; i < pvg_mpc_table_count(g); i++) {
        const char *l = pvg_mpc_table_label(g, i);
        uint8_t len = (uint8_t)strlen(l);
        crypto_generichash_update(&h, &len, 1);
        crypto_generichash_update(&h, (const uint8_t *)l, len);
    }
    crypto_generichash_final(&h, out, 32);
}

static void hello_payload(const pvg_mpc_options *o, unsigned t, unsigned decimals,
                          uint8_t p[MP_HELLO_LEN])
{
    p[0] = (uint8_t)o->parties;
    p[1] = (uint8_t)o->scheme;
    p[2] = (uint8_t)t;
    p[3] = (uint8_t)decimals;
    groups_digest(o->groups, p + 4);
}

/* Reads a HELLO on fd; from = expected sender or UINT32_MAX (any higher
 * party not yet connected, reported in *who). */
static pvg_status read_hello(int fd, const pvg_mpc_options *o, const uint8_t mine[MP_HELLO_LEN],
                             uint32_t from, const peer *pe, uint32_t *who, long long deadline,
                             pvg_error *err)
{
    uint8_t m[MP_HDR + MP_HELLO_LEN];
    pvg_status st = io_full(fd, m, MP_HDR, 0, deadline, from == UINT32_MAX ? 0 : from, err);
    if (st != PVG_OK) return st;
    uint32_t s = get32(m + 8);
    if (memcmp(m, "PVMP", 4) != 0)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "a connecting peer sent bad magic (not a privguide mpc peer?)");
    if (from == UINT32_MAX) {
        if (s <= o->me || s >= o->parties || pe[s].fd >= 0)
            return pvg_error_set(err, PVG_ERR_INVALID,
                                 "a connection claims to be party %u: unexpected or duplicate", s);
        from = s;
    }
    st = check_header(m, MP_HELLO, from, err);
    if (st != PVG_OK) return st;
    if (get32(m + 12) != MP_HELLO_LEN)
        return pvg_error_set(err, PVG_ERR_INVALID, "party %u: HELLO of %u bytes, expected %d", from,
                             get32(m + 12), MP_HELLO_LEN);
    st = io_full(fd, m + MP_HDR, MP_HELLO_LEN, 0, deadline, from, err);
    if (st != PVG_OK) return st;
    if (memcmp(m + MP_HDR, mine, 4) != 0)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "party %u runs with other settings (parties %u/%u, scheme %u/%u, "
                             "threshold %u/%u, decimals %u/%u)",
                             from, m[MP_HDR], mine[0], m[MP_HDR + 1], mine[1], m[MP_HDR + 2],
                             mine[2], m[MP_HDR + 3], mine[3]);
    if (memcmp(m + MP_HDR + 4, mine + 4, 32) != 0)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "party %u uses another group list (--groups must be the same file "
                             "for every party, or absent for all)",
                             from);
    *who = from;
    return PVG_OK;
}

static pvg_status send_hello(int fd, unsigned me, const uint8_t mine[MP_HELLO_LEN], unsigned to,
                             long long deadline, pvg_error *err)
{
    uint8_t m[MP_HDR + MP_HELLO_LEN] = {'P', 'V', 'M', 'P', 1, MP_HELLO, 0, 0};
    put32(m + 8, me);
    put32(m + 12, MP_HELLO_LEN);
    memcpy(m + MP_HDR, mine, MP_HELLO_LEN);
    return io_full(fd, m, sizeof m, 1, deadline, to, err);
}

static pvg_status connect_mesh(const pvg_mpc_options *o, unsigned t, unsigned decimals, peer *pe,
                               long long deadline, pvg_error *err)
{
    uint8_t mine[MP_HELLO_LEN];
    hello_payload(o, t, decimals, mine);
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    if (ls < 0) return pvg_error_set(err, PVG_ERR_IO, "socket: %s", strerror(errno));
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    a.sin_port = htons((uint16_t)(o->port + o->me));
    if (bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, MP_MAX_PARTIES) != 0 ||
        set_nonblock(ls) != 0) {
        pvg_status st = pvg_error_set(err, PVG_ERR_IO, "listening on 127.0.0.1:%u: %s",
                                      o->port + o->me, strerror(errno));
        close(ls);
        return st;
    }
    pvg_status st = PVG_OK;
    /* dial every lower party (retrying until it listens) */
    for (unsigned j = 0; j < o->me && st == PVG_OK; j++) {
        for (;;) {
            int fd = socket(AF_INET, SOCK_STREAM, 0);
            if (fd < 0 || set_nonblock(fd) != 0) {
                if (fd >= 0) close(fd);
                st = pvg_error_set(err, PVG_ERR_IO, "socket: %s", strerror(errno));
                break;
            }
            struct sockaddr_in b = a;
            b.sin_port = htons((uint16_t)(o->port + j));
            int rc = connect(fd, (struct sockaddr *)&b, sizeof b), soerr = 0;
            if (rc != 0 && errno == EINPROGRESS) {
                struct pollfd pf = {.fd = fd, .events = POLLOUT};
                int to = remaining(deadline);
                if (to > 0 && poll(&pf, 1, to) == 1) {
                    socklen_t sl = sizeof soerr;
                    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
                    rc = soerr ? -1 : 0;
                } else {
                    soerr = ETIMEDOUT;
                }
            } else if (rc != 0) {
                soerr = errno;
            }
            if (rc == 0) {
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                pe[j].fd = fd;
                uint32_t who;
                st = send_hello(fd, o->me, mine, j, deadline, err);
                if (st == PVG_OK) st = read_hello(fd, o, mine, j, pe, &who, deadline, err);
                break;
            }
            close(fd);
            if (remaining(deadline) == 0) {
                st = pvg_error_set(err, PVG_ERR_IO,
                                   "timed out connecting to party %u on 127.0.0.1:%u (%s)", j,
                                   o->port + j, strerror(soerr));
                break;
            }
            struct timespec ts = {0, 50 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    /* accept every higher party */
    for (unsigned got = 0; st == PVG_OK && got < o->parties - 1 - o->me;) {
        struct pollfd pf = {.fd = ls, .events = POLLIN};
        int to = remaining(deadline);
        int rc = to > 0 ? poll(&pf, 1, to) : 0;
        if (rc < 0 && errno == EINTR) continue;
        if (rc <= 0) {
            unsigned miss = o->me + 1;
            while (miss < o->parties && pe[miss].fd >= 0)
                miss++;
            st = pvg_error_set(err, PVG_ERR_IO, "timed out waiting for party %u to connect", miss);
            break;
        }
        int fd = accept(ls, NULL, NULL);
        if (fd < 0) continue;
        if (set_nonblock(fd) != 0) {
            close(fd);
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        uint32_t who = 0;
        st = read_hello(fd, o, mine, UINT32_MAX, pe, &who, deadline, err);
        if (st != PVG_OK) {
            close(fd);
            break;
        }
        pe[who].fd = fd;
        st = send_hello(fd, o->me, mine, who, deadline, err);
        got++;
    }
    close(ls);
    return st;
}

/* ---- the protocol ---- */

static pvg_status parse_labels(const uint8_t *p, size_t len, unsigned from, char ***labels,
                               size_t *count, pvg_error *err)
{
    if (len < 4) return pvg_error_set(err, PVG_ERR_INVALID, "party %u: LABELS truncated", from);
    uint32_t n = get32(p);
    if (n > len)
        return pvg_error_set(err, PVG_ERR_INVALID, "party %u: LABELS count %u too large", from, n);
    char **l = calloc(n ? n : 1, sizeof *l);
    if (!l) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    size_t off = 4;
    pvg_status st = PVG_OK;
    for (uint32_t i = 0; i < n; i++) {
        if (off >= len || p[off] == 0 || off + 1 + p[off] > len) {
            st = pvg_error_set(err, PVG_ERR_INVALID,
                               "party %u: LABELS entry %u malformed (byte %zu)", from, i, off);
            break;
        }
        size_t ll = p[off];
        if (memchr(p + off + 1, 0, ll)) {
            st = pvg_error_set(err, PVG_ERR_INVALID, "party %u: label %u contains NUL", from, i);
            break;
        }
        l[i] = malloc(ll + 1);
        if (!l[i]) {
            st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
            break;
        }
        memcpy(l[i], p + off + 1, ll);
        l[i][ll] = 0;
        if (i && strcmp(l[i - 1], l[i]) >= 0) {
            st = pvg_error_set(err, PVG_ERR_INVALID,
                               "party %u: labels not strictly ascending at %u", from, i);
            break;
        }
        off += 1 + ll;
    }
    if (st == PVG_OK && off != len)
        st = pvg_error_set(err, PVG_ERR_INVALID, "party %u: %zu trailing bytes after LABELS", from,
                           len - off);
    if (st != PVG_OK) {
        for (uint32_t i = 0; i < n; i++)
            free(l[i]);
        free(l);
        return st;
    }
    *labels = l;
    *count = n;
    return PVG_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static pvg_status vec_payload(const uint64_t *v, size_t m, uint8_t **out, size_t *len, int type,
                              unsigned me)
{
    *len = MP_HDR + 4 + 8 * m;
    uint8_t *b = mp_msg(type, me, 4 + 8 * m);
    if (!b) return PVG_ERR_NOMEM;
    put32(b + MP_HDR, (uint32_t)m);
    for (size_t i = 0; i < m; i++)
        put64(b + MP_HDR + 4 + 8 * i, v[i]);
    *out = b;
    return PVG_OK;
}

static pvg_status read_vec(const peer *p, unsigned from, size_t m, int shamir, uint64_t *v,
                           pvg_error *err)
{
    if (p->in_len != 4 + 8 * m || get32(p->in) != m)
        return pvg_error_set(err, PVG_ERR_INVALID, "party %u: expected %zu values in %zu bytes",
                             from, m, 4 + 8 * m);
    for (size_t i = 0; i < m; i++) {
        v[i] = get64(p->in + 4 + 8 * i);
        if (shamir && v[i] >= PVG_SHAMIR_PRIME)
            return pvg_error_set(err, PVG_ERR_INVALID, "party %u: value %zu outside the field",
                                 from, i);
    }
    return PVG_OK;
}

pvg_status pvg_mpc_sum(const pvg_mpc_options *o, const pvg_mpc_table *mine, pvg_mpc_table **out,
                       pvg_error *err)
{
    if (!o || !mine || !out || !o->rng)
        return pvg_error_set(err, PVG_ERR_INVALID, "mpc: missing argument");
    *out = NULL;
    if (pvg_init() != PVG_OK) return pvg_error_set(err, PVG_ERR_INTERNAL, "libsodium init failed");
    pvg_status rs = pvg_rng_require_secure(o->rng, o->allow_insecure_rng, "mpc shares", err);
    if (rs != PVG_OK) return rs;
    unsigned P = o->parties;
    if (P < 3 || P > MP_MAX_PARTIES || o->me >= P)
        return pvg_error_set(err, PVG_ERR_INVALID, "parties must be 3..%d and the index below it",
                             MP_MAX_PARTIES);
    if (o->port < 1024 || o->port + P > 65535)
        return pvg_error_set(err, PVG_ERR_INVALID, "port %u: expected 1024..%u", o->port,
                             65535 - P);
    if (o->scheme != PVG_MPC_ADDITIVE && o->scheme != PVG_MPC_SHAMIR)
        return pvg_error_set(err, PVG_ERR_INVALID, "unknown sharing scheme");
    unsigned t = o->scheme == PVG_MPC_SHAMIR ? (o->threshold ? o->threshold : P / 2 + 1) : P;
    if (t < 2 || t > P)
        return pvg_error_set(err, PVG_ERR_INVALID, "threshold %u: expected 2..%u", t, P);
    int shamir = o->scheme == PVG_MPC_SHAMIR;
    long long deadline = now_ms() + (o->timeout_ms ? o->timeout_ms : 30000);
    size_t nm = pvg_mpc_table_count(mine);
    if (shamir)
        for (size_t i = 0; i < nm; i++) {
            int64_t v = pvg_mpc_table_value(mine, i);
            if (v >= (int64_t)1 << 59 || v <= -((int64_t)1 << 59))
                return pvg_error_set(err, PVG_ERR_INVALID,
                                     "group '%s': |total| must stay below 2^59 units for Shamir "
                                     "sharing (use --scheme additive)",
                                     pvg_mpc_table_label(mine, i));
        }

    peer pe[MP_MAX_PARTIES];
    memset(pe, 0, sizeof pe);
    for (unsigned j = 0; j < P; j++)
        pe[j].fd = -1;
    char **uni = NULL, ***lists = calloc(P, sizeof *lists);
    size_t m = 0, *lcount = calloc(P, sizeof *lcount);
    uint64_t *vec = NULL, *shares = NULL, *partial = NULL, *parts = NULL, *tmp = NULL;
    pvg_mpc_table *res = NULL;
    pvg_status st = PVG_OK;
    if (!lists || !lcount) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
        goto done;
    }
    st = connect_mesh(o, t, pvg_mpc_table_decimals(mine), pe, deadline, err);
    if (st != PVG_OK) goto done;

    /* 1. the vector layout: the agreed group list, or the union of every
     * party's labels (exchanged) */
    if (o->groups) {
        size_t ng = pvg_mpc_table_count(o->groups);
        uni = calloc(ng ? ng : 1, sizeof *uni);
        if (!uni) {
            st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
            goto done;
        }
        for (size_t i = 0; i < ng; i++)
            uni[m++] = (char *)pvg_mpc_table_label(o->groups, i);
        for (size_t i = 0, k = 0; i < nm; i++) { /* mine must be a subset */
            const char *l = pvg_mpc_table_label(mine, i);
            while (k < m && strcmp(uni[k], l) < 0)
                k++;
            if (k == m || strcmp(uni[k], l) != 0) {
                st = pvg_error_set(err, PVG_ERR_INVALID,
                                   "group '%s' is not in the agreed group list", l);
                goto done;
            }
        }
    } else {
        size_t lb = 4;
        for (size_t i = 0; i < nm; i++)
            lb += 1 + strlen(pvg_mpc_table_label(mine, i));
        uint8_t *lm = mp_msg(MP_LABELS, o->me, lb);
        if (!lm) {
            st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
            goto done;
        }
        put32(lm + MP_HDR, (uint32_t)nm);
        for (size_t i = 0, off = MP_HDR + 4; i < nm; i++) {
            const char *l = pvg_mpc_table_label(mine, i);
            size_t ll = strlen(l);
            lm[off] = (uint8_t)ll;
            memcpy(lm + off + 1, l, ll);
            off += 1 + ll;
        }
        for (unsigned j = 0; j < P; j++)
            if (j != o->me) {
                pe[j].out = lm;
                pe[j].out_len = MP_HDR + lb;
            }
        st = exchange(pe, P, o->me, MP_LABELS, deadline, err);
        for (unsigned j = 0; j < P; j++)
            pe[j].out = NULL;
        free(lm);
        if (st != PVG_OK) goto done;
        size_t total = nm;
        for (unsigned j = 0; j < P && st == PVG_OK; j++) {
            if (j == o->me) continue;
            st = parse_labels(pe[j].in, pe[j].in_len, j, &lists[j], &lcount[j], err);
            total += lcount[j];
        }
        if (st != PVG_OK) goto done;
        uni = calloc(total ? total : 1, sizeof *uni);
        if (!uni) {
            st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
            goto done;
        }
        for (size_t i = 0; i < nm; i++)
            uni[m++] = (char *)pvg_mpc_table_label(mine, i);
        for (unsigned j = 0; j < P; j++)
            for (size_t i = 0; j != o->me && i < lcount[j]; i++)
                uni[m++] = lists[j][i];
        qsort(uni, m, sizeof *uni, cmp_str);
        size_t u = 0;
        for (size_t i = 0; i < m; i++)
            if (u == 0 || strcmp(uni[u - 1], uni[i]) != 0) uni[u++] = uni[i];
        m = u;
    }

    /* 2. shares of this party's vector over the union */
    size_t mm = m ? m : 1;
    vec = calloc(mm, sizeof *vec);
    shares = calloc(mm * P, sizeof *shares);
    partial = calloc(mm, sizeof *partial);
    parts = calloc(mm * P, sizeof *parts);
    tmp = calloc(mm, sizeof *tmp);
    if (!vec || !shares || !partial || !parts || !tmp) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0, k = 0; i < m; i++) {
        int64_t v = 0;
        if (k < nm && strcmp(uni[i], pvg_mpc_table_label(mine, k)) == 0)
            v = pvg_mpc_table_value(mine, k++);
        vec[i] = shamir ? (v >= 0 ? (uint64_t)v : PVG_SHAMIR_PRIME - (uint64_t)(-v)) : (uint64_t)v;
    }
    uint64_t xs[MP_MAX_PARTIES];
    for (unsigned j = 0; j < P; j++)
        xs[j] = j + 1;
    if (m) {
        st = shamir ? pvg_shamir_split(vec, m, t, P, xs, o->rng, shares, err)
                    : pvg_additive_split(vec, m, P, 64, o->rng, shares, err);
        if (st != PVG_OK) goto done;
    }
    for (unsigned j = 0; j < P && st == PVG_OK; j++)
        if (j != o->me)
            st = vec_payload(shares + (size_t)j * m, m, &pe[j].out, &pe[j].out_len, MP_SHARES,
                             o->me);
    if (st != PVG_OK) {
        st = pvg_error_set(err, st, "out of memory");
        goto done;
    }
    st = exchange(pe, P, o->me, MP_SHARES, deadline, err);
    if (st != PVG_OK) goto done;
    memcpy(partial, shares + (size_t)o->me * m, m * sizeof *partial);
    for (unsigned j = 0; j < P && st == PVG_OK; j++) {
        if (j == o->me) continue;
        st = read_vec(&pe[j], j, m, shamir, tmp, err);
        for (size_t i = 0; st == PVG_OK && i < m; i++)
            partial[i] = shamir ? pvg_shamir_add(partial[i], tmp[i]) : partial[i] + tmp[i];
    }
    if (st != PVG_OK) goto done;

    /* 3. partial sums to everyone */
    for (unsigned j = 0; j < P; j++) {
        if (j == o->me) continue;
        sodium_memzero(pe[j].out, pe[j].out_len);
        free(pe[j].out);
        pe[j].out = NULL;
    }
    uint8_t *pm = NULL;
    size_t pml = 0;
    if (vec_payload(partial, m, &pm, &pml, MP_PARTIAL, o->me) != PVG_OK) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (unsigned j = 0; j < P; j++)
        if (j != o->me) {
            pe[j].out = pm;
            pe[j].out_len = pml;
        }
    st = exchange(pe, P, o->me, MP_PARTIAL, deadline, err);
    for (unsigned j = 0; j < P; j++)
        pe[j].out = NULL;
    free(pm);
    if (st != PVG_OK) goto done;
    memcpy(parts + (size_t)o->me * m, partial, m * sizeof *partial);
    for (unsigned j = 0; j < P && st == PVG_OK; j++)
        if (j != o->me) st = read_vec(&pe[j], j, m, shamir, parts + (size_t)j * m, err);
    if (st != PVG_OK) goto done;

    /* 4. reconstruct: additive sums all; Shamir interpolates from the first
     * t partials and checks that every other partial lies on the same
     * polynomial */
    res = pvg_mpc_table_new(pvg_mpc_table_decimals(mine));
    if (!res) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (m) {
        if (shamir) {
            st = pvg_shamir_combine(xs, parts, t, m, tmp, err);
            for (unsigned j = t; j < P && st == PVG_OK; j++) {
                uint64_t *at = vec; /* reuse */
                st = pvg_shamir_interpolate_at(xs, parts, t, m, xs[j], at, err);
                if (st == PVG_OK && memcmp(at, parts + (size_t)j * m, m * sizeof *at) != 0)
                    st = pvg_error_set(err, PVG_ERR_CRYPTO,
                                       "party %u's partial sums are inconsistent with the others'",
                                       j);
            }
        } else {
            st = pvg_additive_combine(parts, P, m, 64, tmp, err);
        }
        if (st != PVG_OK) goto done;
    }
    for (size_t i = 0; i < m && st == PVG_OK; i++) {
        int64_t v = shamir ? (tmp[i] > PVG_SHAMIR_PRIME / 2 ? -(int64_t)(PVG_SHAMIR_PRIME - tmp[i])
                                                            : (int64_t)tmp[i])
                           : (int64_t)tmp[i];
        st = pvg_mpc_table_add(res, uni[i], v, err);
    }
    if (st == PVG_OK) {
        *out = res;
        res = NULL;
    }
done:
    for (unsigned j = 0; j < P; j++) {
        if (pe[j].fd >= 0) close(pe[j].fd);
        if (pe[j].out) {
            sodium_memzero(pe[j].out, pe[j].out_len);
            free(pe[j].out);
        }
        free(pe[j].in);
    }
    if (lists)
        for (unsigned j = 0; j < P; j++) {
            for (size_t i = 0; i < lcount[j]; i++)
                free(lists[j][i]);
            free(lists[j]);
        }
    free(lists);
    free(lcount);
    free(uni);
    if (vec) sodium_memzero(vec, (m ? m : 1) * sizeof *vec);
    if (shares) sodium_memzero(shares, (m ? m : 1) * P * sizeof *shares);
    free(vec);
    free(shares);
    free(partial);
    free(parts);
    free(tmp);
    pvg_mpc_table_free(res);
    return st;
}
