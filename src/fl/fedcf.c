/*
 * fedcf.c - federated iALS: server model, broadcast, client update.
 * First commit: the interface compiles; the functions say "not implemented yet".
 */
#include <math.h>
#include <privguide/fl.h>

void pvg_fl_config_default(pvg_fl_config *cfg)
{
    *cfg = (pvg_fl_config){.factors = 32,
                           .reg = 0.1,
                           .alpha = 1.0,
                           .alpha0 = 0.1,
                           .clip = 1e3,
                           .optimizer = PVG_FL_FEDAVG,
                           .server_lr = 1.0,
                           .dp = PVG_FL_DP_NONE,
                           .bits = 32};
}

#define NYI(err) pvg_error_set(err, PVG_ERR_UNSUPPORTED, "%s: not implemented yet", __func__)

pvg_status pvg_fl_model_new(const pvg_fl_config *cfg, uint32_t n_items, pvg_rng *rng,
                            pvg_fl_model **out, pvg_error *err)
{
    (void)cfg, (void)n_items, (void)rng;
    *out = NULL;
    return NYI(err);
}
void pvg_fl_model_free(pvg_fl_model *m) { (void)m; }
pvg_status pvg_fl_model_broadcast(const pvg_fl_model *m, uint8_t **out, size_t *out_len,
                                  pvg_error *err)
{
    (void)m, (void)out, (void)out_len;
    return NYI(err);
}
size_t pvg_fl_update_dim(const pvg_fl_config *cfg, uint32_t n_items)
{
    return (size_t)n_items * (cfg->factors + 1) + (size_t)cfg->factors * (cfg->factors + 1) / 2;
}
pvg_status pvg_fl_client_update(const uint8_t *broadcast, size_t len, const uint32_t *items,
                                const float *weights, size_t n, pvg_rng *rng, uint32_t *vec,
                                size_t d, float *user_factor, pvg_error *err)
{
    (void)broadcast, (void)len, (void)items, (void)weights, (void)n, (void)rng, (void)vec, (void)d,
        (void)user_factor;
    return NYI(err);
}
pvg_status pvg_fl_model_apply(pvg_fl_model *m, const uint32_t *sum, size_t d, uint32_t survivors,
                              pvg_rng *rng, pvg_error *err)
{
    (void)m, (void)sum, (void)d, (void)survivors, (void)rng;
    return NYI(err);
}
pvg_status pvg_fl_client_recommend(const uint8_t *broadcast, size_t len, const uint32_t *items,
                                   const float *weights, size_t n, size_t k, uint32_t *out_items,
                                   float *out_scores, size_t *n_out, pvg_error *err)
{
    (void)broadcast, (void)len, (void)items, (void)weights, (void)n, (void)k, (void)out_items,
        (void)out_scores;
    *n_out = 0;
    return NYI(err);
}
pvg_status pvg_fl_epsilon(const pvg_fl_config *cfg, double q, uint32_t rounds, double delta,
                          double *epsilon, pvg_error *err)
{
    (void)cfg, (void)q, (void)rounds, (void)delta;
    *epsilon = INFINITY;
    return NYI(err);
}
pvg_status pvg_fl_model_item_factors(const pvg_fl_model *m, const float **v, uint32_t *n_items,
                                     uint32_t *k, pvg_error *err)
{
    (void)m, (void)v, (void)n_items, (void)k;
    return NYI(err);
}
uint32_t pvg_fl_model_round(const pvg_fl_model *m)
{
    (void)m;
    return 0;
}
