/*
 * metrics.c - GET /metrics: every metric of SPEC §5 in the Prometheus text
 * exposition format 0.0.4 (# HELP and # TYPE before each family, label
 * values escaped, counters ending in _total, one histogram).
 *
 * Thread: the main thread. Per-worker counters are summed here, at read
 * time, with relaxed loads: a scrape may miss a request that is ending
 * while it runs, never counts one twice, and counters never go down (the
 * per-worker words only grow; a reload carries server counters over).
 */
#include "core/admin_ops.h"

#include <stdio.h>
#include <stdlib.h>

#include "core/gen.h"
#include "core/stats.h"
#include "core/worker.h"

/* Starts the family NAME. */
static void family(struct sbuf *b, const char *name, const char *type, const char *help)
{
	sbuf_printf(b, "# HELP fulcrum_%s %s\n# TYPE fulcrum_%s %s\n", name, help, name, type);
}

/* One sample: fulcrum_NAME{K1="V1"[,K2="V2"[,K3="V3"]]} VALUE; labels with
 * a NULL key are left out. */
static void sample(struct sbuf *b, const char *name, const char *const *kv, size_t n_kv,
		   unsigned long long value)
{
	sbuf_printf(b, "fulcrum_%s", name);
	for (size_t i = 0; i + 1 < n_kv; i += 2) {
		sbuf_printf(b, "%s%s=", i ? "," : "{", kv[i]);
		sbuf_label(b, kv[i + 1]);
	}
	sbuf_printf(b, "%s %llu\n", n_kv ? "}" : "", value);
}

/* The listener counters; FIELD picks one of struct listener_stats. */
enum lfield { L_ACTIVE, L_TOTAL, L_REFUSED, L_IN, L_OUT };

/* SLOT: the listener's (cfg_listener.slot). */
static uint64_t listener_sum(const struct admin_host *host, uint32_t slot, enum lfield f)
{
	uint64_t sum = 0;

	for (int i = 0; i < host->n_workers && slot < MAX_LISTENERS; i++) {
		const struct listener_stats *st = &host->workers[i].stats[slot];
		const _Atomic uint64_t *p = f == L_ACTIVE    ? &st->active
					    : f == L_TOTAL   ? &st->total
					    : f == L_REFUSED ? &st->refused
					    : f == L_IN	     ? &st->bytes_in
							     : &st->bytes_out;
		sum += atomic_load_explicit(p, memory_order_relaxed);
	}
	return sum;
}

/* A listener /metrics lists: its name and counter slot. */
struct listener_ref {
	const char *name;
	uint32_t slot;
};

/* The listeners of CFG, then the names a reload took away (renamed or
 * removed) that still have connections open: those count under the name
 * that accepted them until they end, so the gauges add up to what is open.
 * Fills OUT (STATS_LISTENER_SLOTS entries) and returns how many. */
static size_t listed_listeners(const struct admin_host *host, const struct cfg *cfg,
			       struct listener_ref *out)
{
	bool listed[STATS_LISTENER_SLOTS] = {false};
	size_t n = 0;

	for (size_t i = 0; i < cfg->n_listeners; i++) {
		out[n++] = (struct listener_ref){cfg->listeners[i].name, cfg->listeners[i].slot};
		if (cfg->listeners[i].slot < STATS_LISTENER_SLOTS)
			listed[cfg->listeners[i].slot] = true;
	}
	const char *name;
	for (uint32_t slot = 0; (name = stats_listener_name(slot)) != NULL; slot++)
		if (!listed[slot] && listener_sum(host, slot, L_ACTIVE) > 0)
			out[n++] = (struct listener_ref){name, slot};
	return n;
}

static void listener_metrics(struct sbuf *b, const struct admin_host *host, const struct cfg *cfg)
{
	static const struct {
		const char *name, *type, *help;
		enum lfield f;
	} defs[] = {
		{"listener_connections_active", "gauge", "Client connections open now.", L_ACTIVE},
		{"listener_connections_total", "counter", "Client connections accepted.", L_TOTAL},
		{"listener_connections_refused_total", "counter",
		 "Client connections closed at once because of max_connections.", L_REFUSED},
		{"listener_bytes_received_total", "counter", "Bytes received from clients.", L_IN},
		{"listener_bytes_sent_total", "counter", "Bytes sent to clients.", L_OUT},
	};
	struct listener_ref refs[STATS_LISTENER_SLOTS];
	size_t n = listed_listeners(host, cfg, refs);

	for (size_t d = 0; d < sizeof(defs) / sizeof(defs[0]); d++) {
		family(b, defs[d].name, defs[d].type, defs[d].help);
		for (size_t i = 0; i < n; i++) {
			const char *kv[] = {"listener", refs[i].name};
			sample(b, defs[d].name, kv, 2, listener_sum(host, refs[i].slot, defs[d].f));
		}
	}
}

/* A server with its pool, for the per-server families. */
struct srv_ref {
	const char *pool;
	const struct lb_server *s;
};

/* The servers of G that /status lists (admin_is_listed); NULL (and *N = 0) when
 * there are none or no memory (then B is marked oom). */
static struct srv_ref *servers_of(const struct gen *g, size_t *n, struct sbuf *b)
{
	size_t total = 0;

	*n = 0;
	for (size_t i = 0; i < g->cfg->n_pools; i++)
		total += g->pools[i]->n_servers;
	struct srv_ref *refs = calloc(total ? total : 1, sizeof(*refs));
	if (!refs) {
		b->oom = true;
		return NULL;
	}
	for (size_t i = 0; i < g->cfg->n_pools; i++)
		for (size_t k = 0; k < g->pools[i]->n_servers; k++)
			if (admin_is_listed(g, g->pools[i], g->pools[i]->servers[k]))
				refs[(*n)++] = (struct srv_ref){g->pools[i]->name,
								g->pools[i]->servers[k]};
	return refs;
}

/* Per-server families; requests_total also has, per pool, the answers that
 * had no server (T: the pools' totals, in the order of G's pools), with an
 * empty server label as the log's POOL/-. */
static void server_metrics(struct sbuf *b, const struct gen *g, const struct pool_totals *t)
{
	static const char *const classes[] = {NULL, "1xx", "2xx", "3xx", "4xx", "5xx"};
	size_t n;
	struct srv_ref *refs = servers_of(g, &n, b);

	family(b, "requests_total", "counter",
	       "HTTP answers by status class: per server, and per pool (server \"\") those "
	       "without one (no server up or free, cache hits).");
	for (size_t i = 0; i < n; i++)
		for (size_t c = 1; c < LB_STATUS_CLASSES; c++) {
			const char *kv[] = {"pool",	     refs[i].pool, "server",
					    refs[i].s->name, "code",	   classes[c]};
			sample(b, "requests_total", kv, 6, atomic_load(&refs[i].s->responses[c]));
		}
	for (size_t i = 0; t && i < g->cfg->n_pools; i++)
		for (size_t c = 1; c < LB_STATUS_CLASSES; c++) {
			const char *kv[] = {"pool", g->pools[i]->name, "server", "",
					    "code", classes[c]};
			sample(b, "requests_total", kv, 6, t[i].unserved[c]);
		}
	family(b, "server_up", "gauge", "1 while the server takes new connections (state up).");
	for (size_t i = 0; i < n; i++) {
		const char *kv[] = {"pool", refs[i].pool, "server", refs[i].s->name};
		sample(b, "server_up", kv, 4, atomic_load(&refs[i].s->state) == SRV_UP);
	}
	family(b, "server_connections_active", "gauge",
	       "Connections (tcp) or requests (http) with the server now.");
	for (size_t i = 0; i < n; i++) {
		const char *kv[] = {"pool", refs[i].pool, "server", refs[i].s->name};
		int active = atomic_load(refs[i].s->active);
		sample(b, "server_connections_active", kv, 4, active > 0 ? (unsigned)active : 0);
	}
	family(b, "health_checks_total", "counter", "Active health checks, by result.");
	for (size_t i = 0; i < n; i++) {
		const char *ok[] = {"pool",	     refs[i].pool, "server",
				    refs[i].s->name, "result",	   "ok"};
		const char *fail[] = {"pool",	       refs[i].pool, "server",
				      refs[i].s->name, "result",     "fail"};
		sample(b, "health_checks_total", ok, 6, atomic_load(&refs[i].s->checks_ok));
		sample(b, "health_checks_total", fail, 6, atomic_load(&refs[i].s->checks_fail));
	}
	free(refs);
}

static void histogram(struct sbuf *b, const char *pool, const struct pool_totals *t)
{
	uint64_t cum = 0;

	for (size_t i = 0; i < STATS_BUCKETS; i++) {
		char le[16];
		cum += t->buckets[i];
		if (i + 1 < STATS_BUCKETS)
			snprintf(le, sizeof(le), "%g", stats_bucket_ms[i] / 1000.0);
		else
			snprintf(le, sizeof(le), "+Inf");
		sbuf_puts(b, "fulcrum_request_duration_seconds_bucket{pool=");
		sbuf_label(b, pool);
		sbuf_printf(b, ",le=\"%s\"} %llu\n", le, (unsigned long long)cum);
	}
	sbuf_puts(b, "fulcrum_request_duration_seconds_sum{pool=");
	sbuf_label(b, pool);
	sbuf_printf(b, "} %.6f\n", (double)t->sum_us / 1e6);
	sbuf_puts(b, "fulcrum_request_duration_seconds_count{pool=");
	sbuf_label(b, pool);
	sbuf_printf(b, "} %llu\n", (unsigned long long)t->count);
}

/* The pools' totals over every worker, in the order of G's pools; NULL
 * (B marked out of memory) when there is no memory for them. */
static struct pool_totals *pool_totals_of(struct sbuf *b, const struct admin_host *host,
					  const struct gen *g)
{
	size_t n = g->cfg->n_pools;
	struct pool_totals *t = calloc(n ? n : 1, sizeof(*t));

	if (!t) {
		b->oom = true;
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		stats_sum_pool(host->workers, host->n_workers, g->pools[i]->stats_slot, &t[i]);
	return t;
}

static void pool_metrics(struct sbuf *b, const struct gen *g, const struct pool_totals *t)
{
	size_t n = g->cfg->n_pools;

	if (!t)
		return;
	family(b, "retries_total", "counter",
	       "Servers tried after the first for a request (http) or connection (tcp).");
	for (size_t i = 0; i < n; i++) {
		const char *kv[] = {"pool", g->pools[i]->name};
		sample(b, "retries_total", kv, 2, t[i].retries);
	}
	family(b, "request_duration_seconds", "histogram",
	       "Time from the first byte of an HTTP request to the end of its response.");
	for (size_t i = 0; i < n; i++)
		histogram(b, g->pools[i]->name, &t[i]);
}

void admin_metrics(struct admin_reply *r, const struct admin_host *host)
{
	const struct gen *g = atomic_load_explicit(&gen_current, memory_order_acquire);
	const char *ok[] = {"result", "ok"}, *error[] = {"result", "error"};
	struct sbuf *b = &r->body;

	r->status = 200;
	r->content_type = "text/plain; version=0.0.4; charset=utf-8";
	struct pool_totals *totals = pool_totals_of(b, host, g);

	listener_metrics(b, host, g->cfg);
	server_metrics(b, g, totals);
	pool_metrics(b, g, totals);
	free(totals);
	family(b, "workers", "gauge", "Worker threads.");
	sample(b, "workers", NULL, 0, (unsigned long long)host->n_workers);
	family(b, "config_generation", "gauge", "Number of the running configuration.");
	sample(b, "config_generation", NULL, 0, g->number);
	family(b, "config_reloads_total", "counter", "Configuration reloads, by result.");
	sample(b, "config_reloads_total", ok, 2, stats_reloads(true));
	sample(b, "config_reloads_total", error, 2, stats_reloads(false));
	family(b, "access_log_lines_lost_total", "counter",
	       "Access-log lines a failed write (a full disk, a closed pipe) lost.");
	sample(b, "access_log_lines_lost_total", NULL, 0, log_access_lost());
}
