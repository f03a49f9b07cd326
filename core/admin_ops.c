/*
 * admin_ops.c - the admin API's endpoints behind HTTP (see admin_ops.h):
 * /status, /reload, and the run-time server changes.
 *
 * Thread: the main thread, the only writer of generations. It reads
 * gen_current without a reference (nobody else replaces it) and the shared
 * servers with relaxed atomic loads.
 */
#include "core/admin_ops.h"

#include <errno.h>
#include <stdlib.h>
#include <netinet/in.h>
#include <string.h>

#include "core/gen.h"
#include "core/json.h"
#include "core/log.h"
#include "core/worker.h"
#include "health/health.h"

#define WEIGHT_MAX 256 /* as the configuration file allows */

/* Servers deleted through the API, per generation number (derived
 * generations share it; a reload starts a new, empty list). */
static struct {
	uint64_t number;
	const struct lb_server **list;
	size_t n, cap;
} removed;

static struct gen *current(void)
{
	return atomic_load_explicit(&gen_current, memory_order_acquire);
}

void admin_error(struct admin_reply *r, int status, const char *msg)
{
	r->status = status;
	r->content_type = "application/json";
	sbuf_puts(&r->body, "{\"error\": ");
	sbuf_json_str(&r->body, msg);
	sbuf_puts(&r->body, "}\n");
}

bool admin_is_removed(const struct gen *g, const struct lb_server *s)
{
	if (removed.number != g->number)
		return false;
	for (size_t i = 0; i < removed.n; i++)
		if (removed.list[i] == s)
			return true;
	return false;
}

bool admin_is_listed(const struct gen *g, const struct lb_pool *pool, const struct lb_server *s)
{
	if (!admin_is_removed(g, s))
		return true;
	if (atomic_load_explicit(s->active, memory_order_relaxed) == 0)
		return false;
	/* One entry per name: a live server of the name, else the newest
	 * deleted one still draining (servers are appended as added). */
	bool after = false;
	for (size_t i = 0; i < pool->n_servers; i++) {
		const struct lb_server *o = pool->servers[i];
		if (o == s) {
			after = true;
			continue;
		}
		if (strcmp(o->name, s->name) != 0)
			continue;
		if (!admin_is_removed(g, o) ||
		    (after && atomic_load_explicit(o->active, memory_order_relaxed) > 0))
			return false;
	}
	return true;
}

static int remember_removed(const struct gen *g, const struct lb_server *s)
{
	if (removed.number != g->number) {
		removed.number = g->number;
		removed.n = 0;
	}
	if (removed.n == removed.cap) {
		size_t cap = removed.cap ? removed.cap * 2 : 8;
		const struct lb_server **p = realloc(removed.list, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		removed.list = p;
		removed.cap = cap;
	}
	removed.list[removed.n++] = s;
	return 0;
}

static int find_pool(const struct gen *g, const char *name)
{
	for (size_t i = 0; i < g->cfg->n_pools; i++)
		if (strcmp(g->pools[i]->name, name) == 0)
			return (int)i;
	return -1;
}

static struct lb_server *find_server(const struct gen *g, const struct lb_pool *pool,
				     const char *name)
{
	for (size_t i = 0; i < pool->n_servers; i++) {
		struct lb_server *s = pool->servers[i];
		if (strcmp(s->name, name) == 0 && !admin_is_removed(g, s))
			return s;
	}
	return NULL;
}

/* ----------------------------------------------------------- reading -- */

static void server_json(struct sbuf *b, const struct lb_server *s)
{
	sbuf_puts(b, "{\"name\": ");
	sbuf_json_str(b, s->name);
	sbuf_puts(b, ", \"address\": ");
	sbuf_json_str(b, s->addr.text ? s->addr.text : "");
	sbuf_puts(b, ", \"state\": ");
	sbuf_json_str(b, lb_state_name(atomic_load_explicit(&s->state, memory_order_relaxed)));
	sbuf_printf(b, ", \"weight\": %d, \"connections_active\": %d, \"requests_total\": %llu}",
		    atomic_load_explicit(&s->weight, memory_order_relaxed),
		    atomic_load_explicit(s->active, memory_order_relaxed),
		    (unsigned long long)atomic_load_explicit(&s->connections_total,
							     memory_order_relaxed));
}

/* SLOT: the listener's (cfg_listener.slot). */
static uint64_t listener_active(const struct admin_host *host, uint32_t slot)
{
	uint64_t sum = 0;

	for (int i = 0; i < host->n_workers && slot < MAX_LISTENERS; i++)
		sum += atomic_load_explicit(&host->workers[i].stats[slot].active,
					    memory_order_relaxed);
	return sum;
}

static void listeners_json(struct sbuf *b, const struct admin_host *host, const struct cfg *cfg)
{
	sbuf_puts(b, "\"listeners\": [");
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		const struct cfg_listener *lc = &cfg->listeners[i];
		sbuf_puts(b, i ? ", {\"name\": " : "{\"name\": ");
		sbuf_json_str(b, lc->name);
		sbuf_puts(b, ", \"mode\": ");
		sbuf_json_str(b, cfg_mode_name(lc->mode));
		sbuf_puts(b, ", \"binds\": [");
		for (size_t k = 0; k < lc->n_binds; k++) {
			sbuf_puts(b, k ? ", " : "");
			sbuf_json_str(b, lc->binds[k].text);
		}
		sbuf_printf(b, "], \"connections_active\": %llu}",
			    (unsigned long long)listener_active(host, lc->slot));
	}
	sbuf_puts(b, "]");
}

void admin_status(struct admin_reply *r, const struct admin_host *host)
{
	const struct gen *g = current();
	struct sbuf *b = &r->body;

	r->status = 200;
	sbuf_printf(b, "{\"generation\": %llu, ", (unsigned long long)g->number);
	listeners_json(b, host, g->cfg);
	sbuf_puts(b, ", \"pools\": [");
	for (size_t i = 0; i < g->cfg->n_pools; i++) {
		const struct lb_pool *pool = g->pools[i];
		bool first = true;
		sbuf_puts(b, i ? ", {\"name\": " : "{\"name\": ");
		sbuf_json_str(b, pool->name);
		sbuf_puts(b, ", \"balance\": ");
		sbuf_json_str(b, cfg_balance_name(pool->balance));
		sbuf_puts(b, ", \"servers\": [");
		for (size_t k = 0; k < pool->n_servers; k++) {
			if (!admin_is_listed(g, pool, pool->servers[k]))
				continue;
			sbuf_puts(b, first ? "" : ", ");
			server_json(b, pool->servers[k]);
			first = false;
		}
		sbuf_puts(b, "]}");
	}
	sbuf_puts(b, "]}\n");
}

void admin_reload(struct admin_reply *r, const struct admin_host *host)
{
	struct cfg_errors errs = {0};
	long long number = host->reload(host->ctx, &errs);

	if (number >= 0) {
		r->status = 200;
		sbuf_printf(&r->body, "{\"generation\": %lld}\n", number);
	} else {
		r->status = 400;
		sbuf_puts(&r->body, "{\"errors\": [");
		for (size_t i = 0; i < errs.len; i++) {
			sbuf_puts(&r->body, i ? ", " : "");
			sbuf_json_str(&r->body, errs.msgs[i]);
		}
		sbuf_puts(&r->body, "]}\n");
	}
	cfg_errors_free(&errs);
}

/* ---------------------------------------------------------- changing -- */

/* State changes that may take a server in or out of rotation: the maglev
 * and ring tables of published pools are rebuilt by the health thread. */
static void state_changed(void)
{
	hc_rebuild_tables();
}

static void set_state(const struct admin_host *host, struct lb_server *s, const char *action)
{
	bool disable = strcmp(action, "disable") == 0;

	atomic_store(&s->admin_disabled, disable);
	if (strcmp(action, "drain") == 0) {
		atomic_store(&s->state, SRV_DRAIN);
		/* Its idle pooled connections will carry nothing more. */
		for (int i = 0; i < host->n_workers; i++)
			worker_request_sweep(&host->workers[i]);
	} else if (disable) {
		atomic_store(&s->state, SRV_DISABLED);
		for (int i = 0; i < host->n_workers; i++)
			worker_request_sweep(&host->workers[i]);
	} else {
		/* enable: back to the health thread's verdict (a down server
		 * goes back down), which it goes on applying from here. A
		 * disabled server back up ramps over slow_start, as one the
		 * checks bring back does (and as HAProxy's leaving maintenance
		 * does); a drained one never left and takes its weight at once. */
		int cur = atomic_load(&s->state);
		int want = atomic_load(&s->health_down) ? SRV_DOWN : SRV_UP;
		if (cur == SRV_DISABLED && want == SRV_UP)
			atomic_store(&s->up_since_ms, clock_ms());
		while ((cur == SRV_DRAIN || cur == SRV_DISABLED) &&
		       !atomic_compare_exchange_weak(&s->state, &cur, want))
			;
	}
	state_changed();
}

/* Reads {"weight": N} from BODY. 0 or -EINVAL with R set. */
static int parse_weight(struct admin_reply *r, const char *body, size_t len, int *weight)
{
	struct json_object o;
	const char *why;
	const struct json_member *m;

	if (json_parse_object(body, len, &o, &why) < 0) {
		admin_error(r, 400, why);
		return -EINVAL;
	}
	m = json_get(&o, "weight");
	if (!m || o.n != 1 || m->type != JSON_INT || m->num < 0 || m->num > WEIGHT_MAX) {
		admin_error(r, 400, "body must be {\"weight\": N} with N from 0 to 256");
		return -EINVAL;
	}
	*weight = (int)m->num;
	return 0;
}

void admin_server_op(struct admin_reply *r, const struct admin_host *host, const char *method,
		     const char *pool, const char *server, const char *action, const char *body,
		     size_t body_len)
{
	struct gen *g = current();
	int pi = find_pool(g, pool);
	struct lb_server *s = pi < 0 ? NULL : find_server(g, g->pools[pi], server);
	int weight;

	if (!s) {
		admin_error(r, 404, pi < 0 ? "no such pool" : "no such server");
		return;
	}
	if (action && strcmp(action, "weight") == 0) {
		if (parse_weight(r, body, body_len, &weight) < 0)
			return;
		atomic_store(&s->weight, weight);
		state_changed();
		log_info("admin: %s/%s weight %d", pool, server, weight);
	} else if (action) {
		set_state(host, s, action);
		log_info("admin: %s/%s %s", pool, server, action);
	} else if (strcmp(method, "DELETE") == 0) {
		if (remember_removed(g, s) < 0) {
			admin_error(r, 500, "out of memory");
			return;
		}
		atomic_store(&s->state, SRV_DRAIN);
		atomic_store(&s->removed, true);
		/* Its requests finish; its idle pooled connections go now. */
		for (int i = 0; i < host->n_workers; i++)
			worker_request_sweep(&host->workers[i]);
		state_changed();
		log_info("admin: %s/%s removed", pool, server);
	}
	r->status = 200;
	server_json(&r->body, s);
	sbuf_puts(&r->body, "\n");
}

/* ------------------------------------------------------------ adding -- */

static bool has_port(const struct cfg_addr *a)
{
	if (a->ss.ss_family == AF_UNIX)
		return true;
	/* sin_port and sin6_port sit at the same offset */
	return ((const struct sockaddr_in *)&a->ss)->sin_port != 0;
}

/* Checks the body of an add into CS (name and address owned by the caller
 * afterwards: cfg_addr_free). 0 or -EINVAL with R set. */
static int parse_new_server(struct admin_reply *r, const char *body, size_t len,
			    struct cfg_server *cs, char *name, size_t name_cap)
{
	struct json_object o;
	const char *why;
	const struct json_member *n, *a, *w;

	if (json_parse_object(body, len, &o, &why) < 0) {
		admin_error(r, 400, why);
		return -EINVAL;
	}
	n = json_get(&o, "name");
	a = json_get(&o, "address");
	w = json_get(&o, "weight");
	if (!n || !a || o.n != 2u + (w != NULL) || n->type != JSON_STRING ||
	    a->type != JSON_STRING || (w && w->type != JSON_INT)) {
		admin_error(r, 400,
			    "body must be {\"name\": S, \"address\": \"HOST:PORT\", "
			    "\"weight\": N} (weight optional)");
		return -EINVAL;
	}
	if (!cfg_is_name(n->str) || strlen(n->str) >= name_cap) {
		admin_error(r, 400, "bad server name (use letters, digits, _ . -)");
		return -EINVAL;
	}
	if (w && (w->num < 0 || w->num > WEIGHT_MAX)) {
		admin_error(r, 400, "weight must be from 0 to 256");
		return -EINVAL;
	}
	memset(cs, 0, sizeof(*cs));
	/* An address is printable: it goes into /status, logs and metrics. */
	bool printable = true;
	for (const unsigned char *c = (const unsigned char *)a->str; *c; c++)
		printable &= *c >= 0x20 && *c < 0x7f;
	if (!printable || cfg_parse_addr(a->str, &cs->addr) < 0 || !has_port(&cs->addr)) {
		cfg_addr_free(&cs->addr);
		admin_error(r, 400, "bad address (HOST:PORT, [v6]:PORT or unix:/path)");
		return -EINVAL;
	}
	strcpy(name, n->str);
	cs->name = name;
	cs->weight = w ? (int)w->num : 1;
	return 0;
}

/* Whether the shell of a pool may leave S out: deleted through the API,
 * and nothing holds it any more (a draining one stays listed). */
static bool is_gone(const struct gen *g, const struct lb_server *s)
{
	return admin_is_removed(g, s) && atomic_load_explicit(s->active, memory_order_relaxed) == 0;
}

/* Takes the servers of OLD that SHELL left out off the removed list, as
 * the generation with SHELL is published: no generation the API reads
 * will list them, and a pointer kept could match a new server at the
 * address one of them is freed from. */
static void forget_removed(const struct lb_pool *old, const struct lb_pool *shell)
{
	for (size_t i = 0; i < removed.n;) {
		bool in_old = false, in_shell = false;
		for (size_t k = 0; k < old->n_servers; k++)
			in_old |= old->servers[k] == removed.list[i];
		for (size_t k = 0; k < shell->n_servers; k++)
			in_shell |= shell->servers[k] == removed.list[i];
		if (in_old && !in_shell)
			removed.list[i] = removed.list[--removed.n];
		else
			i++;
	}
}

/* A pool like OLD with S added at the end, sharing OLD's server objects (a
 * reference on each) but for the deleted ones that are gone, so that a
 * pool under add/delete churn does not grow. */
static struct lb_pool *shell_with(const struct gen *g, const struct lb_pool *old,
				  struct lb_server *s)
{
	struct lb_pool *p = calloc(1, sizeof(*p));
	struct lb_table *none;

	if (!p)
		return NULL;
	atomic_init(&p->refs, 1);
	atomic_init(&p->table, NULL);
	p->cfg = old->cfg;
	p->balance = old->balance;
	p->stats_slot = old->stats_slot;
	p->name = strdup(old->name);
	p->servers = calloc(old->n_servers + 1, sizeof(*p->servers));
	if (!p->name || !p->servers)
		goto fail;
	for (size_t i = 0; i < old->n_servers; i++)
		if (!is_gone(g, old->servers[i]))
			p->servers[p->n_servers++] = lb_server_ref(old->servers[i]);
	s->index = (uint32_t)p->n_servers;
	p->servers[p->n_servers++] = lb_server_ref(s);
	if (lb_pool_rebuild(p, &none) < 0)
		goto fail;
	return p;
fail:
	lb_pool_free(p);
	return NULL;
}

void admin_server_add(struct admin_reply *r, const struct admin_host *host, const char *pool,
		      const char *body, size_t body_len)
{
	struct gen *g = current();
	int pi = find_pool(g, pool);
	struct cfg_server cs;
	char name[JSON_MAX_STR];

	if (pi < 0) {
		admin_error(r, 404, "no such pool");
		return;
	}
	if (parse_new_server(r, body, body_len, &cs, name, sizeof(name)) < 0)
		return;
	struct lb_pool *old = g->pools[pi];
	struct lb_server *s = NULL;
	struct lb_pool *shell = NULL;
	struct gen *ng = NULL;
	if (find_server(g, old, name)) {
		admin_error(r, 400, "a server of that name is in the pool");
		goto out;
	}
	s = lb_server_new(&cs, 0);
	if (s)
		s->max_fails = old->cfg->max_fails;
	shell = s ? shell_with(g, old, s) : NULL;
	ng = shell ? gen_derive(g, (size_t)pi, shell) : NULL;
	if (!ng) {
		admin_error(r, 500, "out of memory");
		lb_pool_put(shell);
		goto out;
	}
	forget_removed(old, shell); /* this thread alone reads the list */
	host->publish(host->ctx, ng);
	log_info("admin: %s/%s added (%s, weight %d)", pool, name, cs.addr.text, cs.weight);
	r->status = 201;
	server_json(&r->body, s);
	sbuf_puts(&r->body, "\n");
out:
	lb_server_unref(s);
	cfg_addr_free(&cs.addr);
}

/* ---------------------------------------------------------- reloading -- */

static const struct lb_server *same_server(const struct gen *from, const char *pool,
					   const char *name)
{
	int pi = find_pool(from, pool);
	const struct lb_server *any = NULL;

	if (pi < 0)
		return NULL;
	for (size_t i = 0; i < from->pools[pi]->n_servers; i++) {
		const struct lb_server *s = from->pools[pi]->servers[i];
		if (strcmp(s->name, name) != 0)
			continue;
		if (!admin_is_removed(from, s))
			return s;
		any = s;
	}
	return any;
}

static bool same_str(const char *a, const char *b)
{
	return a && b ? strcmp(a, b) == 0 : a == b;
}

/* Whether connections to a pool's servers are made the same way under A and
 * B: idle pooled connections are kept per server, so a server handed on
 * across a reload must not hand on connections made without the TLS (or
 * verification) the new file asks for. */
static bool connects_alike(const struct cfg_pool *a, const struct cfg_pool *b)
{
	return a->tls == b->tls && a->tls_verify == b->tls_verify &&
	       same_str(a->tls_ca, b->tls_ca) && same_str(a->tls_sni, b->tls_sni);
}

static void copy_counter(_Atomic uint64_t *to, const _Atomic uint64_t *from)
{
	atomic_store_explicit(to, atomic_load_explicit(from, memory_order_relaxed),
			      memory_order_relaxed);
}

/* The admin API's changes to O, made again on S, a server whose address or
 * options the file changed (see admin_carry_over).
 * Whether S's state changed. */
static bool carry_admin_changes(struct lb_server *s, const struct lb_server *o)
{
	if (o->cfg_disabled != s->cfg_disabled)
		return false; /* the file changed it: the file wins */

	int was = atomic_load_explicit(&o->state, memory_order_relaxed);
	/* Drained or disabled stays so; up or down (the health thread's to
	 * say) is in rotation, also when the API enabled a disabled server. */
	int want = was == SRV_DRAIN || was == SRV_DISABLED ? was : SRV_UP;

	atomic_store_explicit(&s->admin_disabled,
			      atomic_load_explicit(&o->admin_disabled, memory_order_relaxed),
			      memory_order_relaxed);
	if (atomic_load_explicit(&s->state, memory_order_relaxed) == want)
		return false;
	atomic_store_explicit(&s->state, want, memory_order_relaxed);
	return true;
}

void admin_carry_over(struct gen *to, const struct gen *from)
{
	for (size_t i = 0; i < to->cfg->n_pools; i++) {
		struct lb_pool *pool = to->pools[i];
		int fi = find_pool(from, pool->name);
		bool alike = fi >= 0 && connects_alike(pool->cfg, from->pools[fi]->cfg);
		bool states = false;

		for (size_t k = 0; k < pool->n_servers; k++) {
			struct lb_server *s = pool->servers[k];
			const struct lb_server *o = same_server(from, pool->name, s->name);
			if (!o)
				continue;
			if (alike && !admin_is_removed(from, o) && lb_server_same(s, o)) {
				/* Unchanged: the running server goes on into TO, so the
				 * connections FROM keeps see what happens to it from now
				 * on (drain, disable, health) and count in its gauges.
				 * Its weight is the file's again. */
				struct lb_server *same = (struct lb_server *)o;
				atomic_store_explicit(
					&same->weight,
					atomic_load_explicit(&s->weight, memory_order_relaxed),
					memory_order_relaxed);
				pool->servers[k] = lb_server_ref(same);
				lb_server_unref(s);
				states = true;
				continue;
			}
			if (admin_is_removed(from, o))
				continue; /* deleted through the API: starts from 0 */
			copy_counter(&s->connections_total, &o->connections_total);
			copy_counter(&s->checks_ok, &o->checks_ok);
			copy_counter(&s->checks_fail, &o->checks_fail);
			for (size_t c = 0; c < ARRAY_SIZE(s->responses); c++)
				copy_counter(&s->responses[c], &o->responses[c]);
			if (o->addr.text && s->addr.text &&
			    strcmp(o->addr.text, s->addr.text) == 0) {
				/* The same backend with other options: FROM's
				 * connections to it still count against its
				 * maxconn and in leastconn, and its run of
				 * passive failures goes on. */
				lb_server_share_load(s, (struct lb_server *)o);
				atomic_store_explicit(
					&s->fails,
					atomic_load_explicit(&o->fails, memory_order_relaxed),
					memory_order_relaxed);
				states |= carry_admin_changes(s, o);
			}
		}
		/* No worker sees TO yet: its table may be rebuilt and the old
		 * one freed here. */
		struct lb_table *old = NULL;
		if (states && lb_pool_rebuild(pool, &old) == 0)
			lb_table_free(old);
	}
}
