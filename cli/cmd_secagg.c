/*
 * cmd_secagg.c - the secagg commands of the CLI (table cli_cmds_secagg):
 * `secagg simulate` runs a whole secure-aggregation session in one process
 * (every client and the server exchanging the real wire messages), and
 * `mpc sum` computes joint per-group totals among three or more local
 * processes by secret sharing.
 */
#include "cli.h"

#include <privguide/rng.h>
#include <privguide/secagg.h>

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- secagg simulate ---- */

/* Reads n lines of d unsigned 32-bit integers. Errors name file:line:col. */
static pvg_status read_inputs(const char *path, uint32_t n, uint32_t d, uint32_t **out,
                              pvg_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1, "cannot open: %s",
                                strerror(errno));
    uint32_t *x = malloc(sizeof(uint32_t) * (size_t)n * d);
    char *line = NULL;
    size_t cap = 0;
    long ln = 0;
    uint32_t row = 0;
    pvg_status st = x ? PVG_OK : pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    while (st == PVG_OK && getline(&line, &cap, f) >= 0) {
        ln++;
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\n' || *p == '\r' || *p == '\0') {
            st = pvg_error_set_at(err, PVG_ERR_INVALID, path, ln, 1, -1,
                                  "empty line: expected %u integers", d);
            break;
        }
        if (row >= n) {
            st = pvg_error_set_at(err, PVG_ERR_INVALID, path, ln, 1, -1,
                                  "more than --clients %u lines", n);
            break;
        }
        for (uint32_t j = 0; j < d; j++) {
            while (*p == ' ' || *p == '\t')
                p++;
            long col = (long)(p - line) + 1;
            if (*p < '0' || *p > '9') {
                st = pvg_error_set_at(err, PVG_ERR_INVALID, path, ln, col, -1,
                                      "value %u: expected an unsigned integer (line has %u of %u)",
                                      j + 1, j, d);
                break;
            }
            errno = 0;
            char *end;
            unsigned long long v = strtoull(p, &end, 10);
            if (errno || v > UINT32_MAX ||
                (*end != ' ' && *end != '\t' && *end != '\n' && *end != '\r' && *end != '\0')) {
                st = pvg_error_set_at(err, PVG_ERR_INVALID, path, ln, col, -1,
                                      "value %u: expected an integer in [0, 2^32)", j + 1);
                break;
            }
            x[(size_t)row * d + j] = (uint32_t)v;
            p = end;
        }
        if (st != PVG_OK) break;
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
            p++;
        if (*p)
            st = pvg_error_set_at(err, PVG_ERR_INVALID, path, ln, (long)(p - line) + 1, -1,
                                  "more than --dim %u values", d);
        row++;
    }
    if (st == PVG_OK && row != n)
        st = pvg_error_set_at(err, PVG_ERR_INVALID, path, ln + 1, 0, -1,
                              "%u lines, expected --clients %u", row, n);
    free(line);
    fclose(f);
    if (st != PVG_OK) {
        free(x);
        return st;
    }
    *out = x;
    return PVG_OK;
}

static int run_simulate(cli_ctx *c)
{
    if (!cli_has(c, "clients")) cli_usage_error(c, "missing required flag --clients");
    if (!cli_has(c, "dim")) cli_usage_error(c, "missing required flag --dim");
    long long n = cli_int_range(c, "clients", 0, 3, PVG_SECAGG_MAX_CLIENTS);
    long long d = cli_int_range(c, "dim", 0, 1, PVG_SECAGG_MAX_DIM);
    double drop = cli_double(c, "dropout", 0.0);
    if (!(drop >= 0 && drop < 1)) cli_usage_error(c, "--dropout: expected a fraction in [0, 1)");
    /* default k: the complete graph for small n, else about 2 log2 n (even) */
    long long kdef = n - 1;
    if (n > 64) {
        kdef = 2 * (long long)ceil(log2((double)n));
        if (kdef & 1) kdef++;
    }
    long long k = cli_int_range(c, "neighbours", kdef, 2, n - 1);
    if (k != n - 1 && (k & 1))
        cli_usage_error(c, "--neighbours: expected n-1 (=%lld) or an even number", n - 1);
    long long t = cli_int_range(c, "threshold", (k + 1) / 2 + 1, 2, k + 1);
    if (t <= (k + 1) / 2)
        cli_warn("warning: threshold %lld is not a majority of the %lld share holders; a lying "
                 "server could then collect both secrets of a client (see docs/secagg.md)",
                 t, k + 1);
    long long bits = cli_int(c, "bits", 32);
    if (bits != 32 && bits != 64) cli_usage_error(c, "--bits: expected 32 or 64");
    long long threads = cli_int_range(c, "threads", 2, 1, 64);
    const char *inputs_path = cli_str(c, "inputs");
    const char *out_path = cli_str(c, "out");
    if ((inputs_path || out_path) && bits != 32)
        cli_usage_error(c, "--inputs and --out work with --bits 32 (values mod 2^32)");
    pvg_error err;
    pvg_error_clear(&err);
    uint32_t *inputs = NULL;
    if (inputs_path) {
        pvg_status st = read_inputs(inputs_path, (uint32_t)n, (uint32_t)d, &inputs, &err);
        if (st != PVG_OK) return cli_fail("inputs", st, &err);
    }
    /* --seed: the deterministic test generator (reproducible runs);
     * otherwise the secure generator */
    pvg_rng *rng =
        cli_has(c, "seed")
            ? pvg_rng_new_INSECURE_deterministic_for_tests((uint64_t)cli_int(c, "seed", 0))
            : pvg_rng_new_secure();
    if (!rng) {
        free(inputs);
        return cli_fail("random generator", PVG_ERR_INTERNAL, NULL);
    }
    pvg_secagg_sim_options o = {.params = {.n = (uint32_t)n,
                                           .k = (uint32_t)k,
                                           .t = (uint32_t)t,
                                           .d = (uint32_t)d,
                                           .bits = (unsigned)bits},
                                .dropout = drop,
                                .inputs = inputs,
                                .rng = rng,
                                .server_threads = (unsigned)threads,
                                .allow_insecure_rng = cli_has(c, "seed")};
    pvg_secagg_sim_result r;
    pvg_status st = pvg_secagg_simulate(&o, &r, &err);
    pvg_rng_free(rng);
    free(inputs);
    if (st != PVG_OK) return cli_fail("secagg simulate", st, &err);
    if (out_path) {
        FILE *f = fopen(out_path, "w");
        if (!f) {
            pvg_secagg_sim_result_clear(&r);
            pvg_error_set(&err, PVG_ERR_IO, "%s: %s", out_path, strerror(errno));
            return cli_fail("out", PVG_ERR_IO, &err);
        }
        for (long long j = 0; j < d; j++)
            fprintf(f, "%s%llu", j ? " " : "", (unsigned long long)r.sum[j]);
        fputc('\n', f);
        if (fclose(f) != 0) {
            pvg_secagg_sim_result_clear(&r);
            pvg_error_set(&err, PVG_ERR_IO, "%s: write failed", out_path);
            return cli_fail("out", PVG_ERR_IO, &err);
        }
    }
    if (cli_bool(c, "json")) {
        json_t *j = json_object();
        json_object_set_new(j, "exact", json_boolean(r.exact));
        json_t *sv = json_array();
        for (size_t i = 0; i < r.n_survivors; i++)
            json_array_append_new(sv, json_integer(r.survivors[i]));
        json_object_set_new(j, "survivors", sv);
        json_object_set_new(j, "server_seconds", json_real(r.server_seconds));
        json_object_set_new(j, "client_seconds_p50", json_real(r.client_seconds_p50));
        json_object_set_new(j, "client_seconds_max", json_real(r.client_seconds_max));
        json_object_set_new(j, "bytes_up_per_client", json_real(r.bytes_up_per_client));
        json_object_set_new(j, "bytes_down_per_client", json_real(r.bytes_down_per_client));
        json_object_set_new(j, "plain_vector_bytes", json_real(r.plain_vector_bytes));
        json_t *dr = json_array();
        for (int i = 0; i < 4; i++)
            json_array_append_new(dr, json_integer((json_int_t)r.dropped_in_round[i]));
        json_object_set_new(j, "dropped_in_round", dr);
        json_object_set_new(j, "clients", json_integer(n));
        json_object_set_new(j, "neighbours", json_integer(k));
        json_object_set_new(j, "threshold", json_integer(t));
        json_object_set_new(j, "dim", json_integer(d));
        json_object_set_new(j, "bits", json_integer(bits));
        char *s = json_dumps(j, JSON_COMPACT);
        puts(s ? s : "{}");
        free(s);
        json_decref(j);
    } else {
        printf("%s: %zu of %lld clients in the sum (dropped before rounds 0-3: %zu %zu %zu %zu)\n",
               r.exact ? "exact" : "MISMATCH", r.n_survivors, n, r.dropped_in_round[0],
               r.dropped_in_round[1], r.dropped_in_round[2], r.dropped_in_round[3]);
        printf("server %.3f s, client p50 %.4f s, max %.4f s\n", r.server_seconds,
               r.client_seconds_p50, r.client_seconds_max);
        printf("per client: %.0f bytes up (plain vector %.0f, ratio %.3f), %.0f bytes down\n",
               r.bytes_up_per_client, r.plain_vector_bytes,
               r.bytes_up_per_client / r.plain_vector_bytes, r.bytes_down_per_client);
    }
    int exact = r.exact;
    pvg_secagg_sim_result_clear(&r);
    if (!exact) {
        cli_warn("secagg simulate: the aggregate differs from the plain sum of the survivors");
        return CLI_EXIT_FAIL;
    }
    return CLI_EXIT_OK;
}

static const cli_flag simulate_flags[] = {
    {"clients", CLI_INT, "N", "number of clients (3..65535), required"},
    {"dim", CLI_INT, "D", "vector length, required"},
    {"dropout", CLI_DOUBLE, "F", "fraction of clients that drop out at random rounds (default 0)"},
    {"neighbours", CLI_INT, "K",
     "neighbours per client: N-1 = original protocol, or even K "
     "(SecAgg+); default N-1 up to 64 clients, else ~2 log2 N"},
    {"threshold", CLI_INT, "T",
     "shares needed to recover a client's secrets "
     "(default (K+1)/2+1, a majority of the K+1 holders)"},
    {"seed", CLI_INT, "S", "reproducible run with the deterministic TEST generator"},
    {"inputs", CLI_STR, "FILE", "N lines of D unsigned integers (default: random inputs)"},
    {"out", CLI_STR, "FILE", "write the aggregate as one line of D integers (mod 2^32)"},
    {"bits", CLI_INT, "B", "modulus 2^32 or 2^64 (default 32)"},
    {"threads", CLI_INT, "N", "server threads for unmasking (default 2)"},
    {"json", CLI_BOOL, NULL, "print the result as JSON"},
    {0},
};

/* ---- mpc sum ---- */

static void print_fixed(FILE *f, int64_t v, unsigned dec)
{
    uint64_t a = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    uint64_t p = 1;
    for (unsigned i = 0; i < dec; i++)
        p *= 10;
    if (dec)
        fprintf(f, "%s%llu.%0*llu", v < 0 ? "-" : "", (unsigned long long)(a / p), (int)dec,
                (unsigned long long)(a % p));
    else
        fprintf(f, "%s%llu", v < 0 ? "-" : "", (unsigned long long)a);
}

static void print_csv_field(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static int run_mpc_sum(cli_ctx *c)
{
    if (!cli_has(c, "parties")) cli_usage_error(c, "missing required flag --parties");
    long long parties = cli_int_range(c, "parties", 0, 3, 64);
    if (!cli_has(c, "party"))
        cli_usage_error(c, "missing required flag --party (0..%lld)", parties - 1);
    long long me = cli_int_range(c, "party", -1, 0, parties - 1);
    const char *input = cli_str_req(c, "input");
    long long port = cli_int_range(c, "port", 47200, 1024, 65535 - parties);
    const char *scheme = cli_str(c, "scheme");
    pvg_mpc_scheme sch = PVG_MPC_ADDITIVE;
    if (scheme && strcmp(scheme, "shamir") == 0)
        sch = PVG_MPC_SHAMIR;
    else if (scheme && strcmp(scheme, "additive") != 0)
        cli_usage_error(c, "--scheme: expected 'additive' or 'shamir', got '%s'", scheme);
    long long thr = cli_int_range(c, "threshold", 0, 0, parties);
    if (cli_has(c, "threshold") && sch != PVG_MPC_SHAMIR)
        cli_usage_error(c, "--threshold applies to --scheme shamir");
    if (cli_has(c, "threshold") && thr < 2)
        cli_usage_error(c, "--threshold: expected 2..%lld", parties);
    double timeout = cli_double(c, "timeout", 30.0);
    if (!(timeout > 0 && timeout <= 3600))
        cli_usage_error(c, "--timeout: expected seconds in (0, 3600]");
    long long dec = cli_int_range(c, "decimals", 0, 0, 9);

    pvg_error err;
    pvg_error_clear(&err);
    pvg_mpc_table *mine = NULL, *tot = NULL, *groups = NULL;
    const char *groups_path = cli_str(c, "groups");
    pvg_status st;
    if (groups_path) {
        st = pvg_mpc_table_read_groups(groups_path, &groups, &err);
        if (st != PVG_OK) return cli_fail("groups", st, &err);
    }
    st = pvg_mpc_table_read_csv(input, (unsigned)dec, groups, &mine, &err);
    if (st != PVG_OK) {
        pvg_mpc_table_free(groups);
        return cli_fail("input", st, &err);
    }
    pvg_rng *rng = pvg_rng_new_secure();
    if (!rng) {
        pvg_mpc_table_free(mine);
        pvg_mpc_table_free(groups);
        return cli_fail("random generator", PVG_ERR_INTERNAL, NULL);
    }
    pvg_mpc_options o = {.parties = (unsigned)parties,
                         .me = (unsigned)me,
                         .port = (unsigned)port,
                         .scheme = sch,
                         .threshold = (unsigned)thr,
                         .timeout_ms = (unsigned)(timeout * 1000),
                         .rng = rng,
                         .groups = groups};
    st = pvg_mpc_sum(&o, mine, &tot, &err);
    pvg_rng_free(rng);
    pvg_mpc_table_free(mine);
    pvg_mpc_table_free(groups);
    if (st != PVG_OK) return cli_fail("mpc sum", st, &err);
    size_t m = pvg_mpc_table_count(tot);
    if (cli_bool(c, "json")) {
        printf("{\"parties\":%lld,\"scheme\":\"%s\",\"totals\":[", parties,
               sch == PVG_MPC_SHAMIR ? "shamir" : "additive");
        for (size_t i = 0; i < m; i++) {
            printf("%s{\"group\":", i ? "," : "");
            cli_json_string(stdout, pvg_mpc_table_label(tot, i));
            printf(",\"total\":");
            print_fixed(stdout, pvg_mpc_table_value(tot, i), (unsigned)dec);
            printf("}");
        }
        printf("]}\n");
    } else {
        printf("group,total\n");
        for (size_t i = 0; i < m; i++) {
            print_csv_field(stdout, pvg_mpc_table_label(tot, i));
            putchar(',');
            print_fixed(stdout, pvg_mpc_table_value(tot, i), (unsigned)dec);
            putchar('\n');
        }
    }
    pvg_mpc_table_free(tot);
    return CLI_EXIT_OK;
}

static const cli_flag mpc_flags[] = {
    {"parties", CLI_INT, "P", "number of parties (3..64), required"},
    {"party", CLI_INT, "I", "this party's index 0..P-1, required"},
    {"input", CLI_STR, "FILE", "this party's private CSV of group,value rows, required"},
    {"port", CLI_INT, "PORT", "party I listens on 127.0.0.1:PORT+I (default 47200)"},
    {"scheme", CLI_STR, "S", "additive (Z_2^64, default) or shamir (GF(2^61-1))"},
    {"threshold", CLI_INT, "T", "Shamir threshold (default P/2+1)"},
    {"decimals", CLI_INT, "N", "fraction digits allowed in values (default 0)"},
    {"groups", CLI_STR, "FILE",
     "group list agreed in advance, one per line: no party's labels "
     "are revealed (default: labels are exchanged)"},
    {"timeout", CLI_DOUBLE, "SECS", "give up after this many seconds (default 30)"},
    {"json", CLI_BOOL, NULL, "print the totals as JSON"},
    {0},
};

const cli_command cli_cmds_secagg[] = {
    {"secagg simulate", NULL, 0, 0, "run a secure-aggregation session with every party in-process",
     "Clients and server exchange the real wire messages of the protocol (Bonawitz et al. 2017,\n"
     "with the sparse SecAgg+ neighbourhood of Bell et al. 2020). round(F*N) random clients drop\n"
     "out, in every round. Prints whether the aggregate equals the plain sum of the inputs of\n"
     "the clients it contains, timings and bytes per client. Exit 1 when the session aborts\n"
     "(too few survivors: nothing is revealed) or the sum is not exact.",
     simulate_flags, run_simulate},
    {"mpc sum", NULL, 0, 0, "joint per-group totals among 3+ local parties by secret sharing",
     "Start one process per party (same --parties, --port, --scheme, --decimals). Each reads\n"
     "its private CSV (group,value), secret-shares its per-group totals to the others over\n"
     "127.0.0.1 and prints only the joint totals. Without --groups the parties exchange their\n"
     "group labels (not values) to agree on the layout; with --groups FILE (the same list for\n"
     "every party) nothing about a party's groups is revealed. Semi-honest parties.",
     mpc_flags, run_mpc_sum},
    {0},
};
