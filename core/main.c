/*
 * main.c - the process: start-up, signals, shutdown (the command line is
 * core/cli.c).
 *
 * The main thread loads the configuration, opens every listening socket
 * (one per bind per worker) and the admin listener, drops privileges, starts
 * the workers and then sleeps in its own epoll on a signalfd and the admin
 * API's sockets (core/admin.c). It is the only thread that builds and
 * publishes configuration generations: reloads (SIGHUP, POST /reload; the
 * next generation is built in core/reload.c) and the admin API's run-time
 * changes all go through publish().
 *
 * Exit status (SPEC §1): 0 clean stop, 1 configuration error, 2 any other
 * start-up failure, always with a one-line cause on stderr.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/un.h>
#include <unistd.h>

#include "balancer/lb.h"
#include "core/admin.h"
#include "core/admin_ops.h"
#include "core/binds.h"
#include "core/http/cache_http.h"
#include "core/cli.h"
#include "core/gen.h"
#include "core/listener.h"
#include "core/log.h"
#include "core/notify.h"
#include "core/privs.h"
#include "core/reload.h"
#include "core/stats.h"
#include "core/upgrade.h"
#include "core/worker.h"
#include "core/version.h"
#include "health/health.h"

struct process {
	struct options opt;
	struct gen *gen;
	struct retire_list retired; /* generations publish() replaced */
	struct worker *workers;
	int n_workers;
	int n_ready; /* workers set up by worker_init */
	int sigfd;
	int epfd;
	uint64_t generation;
	struct admin_host admin;
	bool stopping; /* stop_all ran: the listeners are closed */
};

/* -t lists every error; a start says the first in one line (SPEC §1), with
 * how many more there are. */
static struct cfg *load_config(const struct options *o)
{
	struct cfg_errors errs = {0};
	struct cfg *cfg = cfg_load(o->config, o->workers, &errs);
	if (o->check_only || errs.len < 2) {
		for (size_t i = 0; i < errs.len; i++)
			fprintf(stderr, "%s\n", errs.msgs[i]);
	} else {
		fprintf(stderr, "%s (and %zu more: fulcrum -t -c %s lists them)\n", errs.msgs[0],
			errs.len - 1, o->config);
	}
	cfg_errors_free(&errs);
	return cfg;
}

/* Raises the fd soft limit to the hard limit. Returns the new soft limit. */
static rlim_t raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return RLIM_INFINITY;
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	getrlimit(RLIMIT_NOFILE, &rl);
	return rl.rlim_cur;
}

/* Warns when max_connections (two fds each, client and server) cannot fit
 * in LIMIT. Only once started: a failed start says one line, its cause. */
static void warn_fd_limit(const struct cfg *cfg, rlim_t limit)
{
	uint64_t need = cfg->global.max_connections * 2 + 64;

	if (limit != RLIM_INFINITY && need > limit)
		log_warn("max_connections = %llu needs about %llu file descriptors, but the limit "
			 "is %llu; connections past it will fail to be accepted",
			 (unsigned long long)cfg->global.max_connections, (unsigned long long)need,
			 (unsigned long long)limit);
}

static int setup_signals(struct process *p)
{
	sigset_t set;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGQUIT); /* nginx's graceful stop: the same as SIGTERM */
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	/* Blocked before any thread starts, so only the signalfd sees them. */
	if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0)
		return -1;
	p->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	p->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (p->sigfd < 0 || p->epfd < 0)
		return -1;
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
	return epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->sigfd, &ev);
}

static int start_workers(struct process *p)
{
	struct cfg *cfg = p->gen->cfg;

	p->n_workers = cfg->global.workers;
	p->workers = calloc((size_t)p->n_workers, sizeof(*p->workers));
	if (!p->workers)
		return -ENOMEM;
	for (int i = 0; i < p->n_workers; i++) {
		p->n_ready = i + 1;
		if (worker_init(&p->workers[i], i, p->gen) < 0) {
			fprintf(stderr, "fulcrum: cannot set up worker %d\n", i);
			return -1;
		}
	}
	return binds_open(cfg, p->workers, p->n_workers);
}

/* Start-up failed before any worker ran: free what start_workers built. */
static void discard_workers(struct process *p)
{
	binds_remove_unix_files();
	binds_free();
	for (int i = 0; i < p->n_ready; i++)
		worker_deinit(&p->workers[i]);
	free(p->workers);
	p->workers = NULL;
	gen_put(p->gen);
}

/* A start that fails leaves no pid file of its own behind; in a binary
 * upgrade the file is the old process's, which writes it again
 * (UPGRADE_FAILED). */
static void remove_own_pidfile(const struct process *p)
{
	if (p->opt.pidfile && !upgrade_inherited())
		remove_pidfile(p->opt.pidfile);
}

/* A thread failed to start once others run: what the start made on disk
 * goes, and the process exits (2) without waiting for them. */
static int start_failed(const struct process *p)
{
	binds_remove_unix_files();
	remove_own_pidfile(p);
	return 2;
}

static void remove_unix_sockets(const struct cfg *cfg)
{
	for (size_t i = 0; i < cfg->n_listeners; i++)
		for (size_t b = 0; b < cfg->listeners[i].n_binds; b++) {
			const struct cfg_addr *a = &cfg->listeners[i].binds[b];
			if (a->ss.ss_family == AF_UNIX)
				log_unlink(((const struct sockaddr_un *)&a->ss)->sun_path,
					   "socket");
		}
}

static void put_gen(void *g)
{
	gen_put(g);
}

/* Makes G (the caller's reference goes with it) the running generation:
 * the health thread adopts it first (carrying server health over), then one
 * release store publishes it, and the previous one is dropped once every
 * worker has passed a quiescent point and so can no longer load it (the
 * main loop's retire_collect: a worker held up does not hold up reloads
 * and the admin API). */
static void publish(struct process *p, struct gen *g)
{
	hc_set_gen(g);
	struct gen *old = p->gen;
	p->gen = g;
	atomic_store_explicit(&gen_current, g, memory_order_release);
	retire(&p->retired, old, put_gen);
	retire_collect(&p->retired);
}

/* Reads the configuration file again and publishes it, or keeps the running
 * one. Returns the new generation number, or -1 with ERRS filled. Server
 * health, counters and the admin API's changes carry over (admin_carry_over). */
static long long reload(struct process *p, struct cfg_errors *errs)
{
	struct gen *g = NULL;

	bool tried = false;
	if (p->stopping) { /* the listeners are closed: a reload would open them again */
		cfg_errors_add(errs, "%s: fulcrum is stopping; no reload", p->opt.config);
	} else if (upgrade_in_progress()) {
		cfg_errors_add(errs, "%s: a binary upgrade is under way; no reload", p->opt.config);
	} else {
		notify_send("RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)clock_us());
		tried = true;
		g = reload_prepare(p->gen->cfg, &p->opt, p->generation + 1, errs);
	}
	if (!g) {
		stats_note_reload(false);
		for (size_t i = 0; i < errs->len; i++)
			log_error("%s", errs->msgs[i]);
		log_error("reload of %s failed; the running configuration stays", p->opt.config);
		if (tried)
			notify_send("READY=1\nSTATUS=serving generation %llu; the last reload "
				    "failed",
				    (unsigned long long)p->gen->number);
		return -1;
	}
	p->generation++;
	admin_carry_over(g, p->gen);
	reload_apply_globals(p->gen->cfg, g->cfg);
	publish(p, g);
	binds_commit();
	cache_http_drop_orphans(g);
	stats_note_reload(true);
	log_info("reloaded %s: generation %llu", p->opt.config, (unsigned long long)g->number);
	notify_send("READY=1\nSTATUS=serving generation %llu", (unsigned long long)g->number);
	return (long long)g->number;
}

static long long admin_reload_cb(void *ctx, struct cfg_errors *errs)
{
	return reload(ctx, errs);
}

static void admin_publish_cb(void *ctx, struct gen *g)
{
	publish(ctx, g);
}

static void reload_on_signal(struct process *p)
{
	struct cfg_errors errs = {0};

	reload(p, &errs); /* logs what went wrong */
	cfg_errors_free(&errs);
}

/* Before privileges are dropped, so the admin port may be a low one. */
static int open_admin(struct process *p)
{
	p->admin = (struct admin_host){
		.ctx = p,
		.reload = admin_reload_cb,
		.publish = admin_publish_cb,
		.workers = p->workers,
		.n_workers = p->n_workers,
	};
	return admin_open(p->gen->cfg, p->epfd, &p->admin);
}

static bool all_exited(const struct process *p)
{
	for (int i = 0; i < p->n_workers; i++)
		if (!atomic_load(&p->workers[i].exited))
			return false;
	return true;
}

/* Every command but WORKER_RUN closes the listeners: the workers stop
 * accepting at once, and the sockets close once they moved past them. */
static void stop_all(struct process *p, enum worker_cmd cmd)
{
	for (int i = 0; i < p->n_workers; i++)
		worker_send(&p->workers[i], cmd);
	binds_drop_all();
	p->stopping = true;
}

static void begin_upgrade(struct process *p)
{
	struct cfg_errors errs = {0};
	struct upgrade_sock *socks;

	if (reload_file_rereadable(p->opt.config, "binary upgrade", &errs) < 0) {
		log_error("upgrade: %s", errs.msgs[0]);
		cfg_errors_free(&errs);
		return;
	}
	long n = binds_list(&socks);

	if (n < 0) {
		log_error("upgrade: out of memory");
		return;
	}
	upgrade_begin(p->gen->cfg, socks, (size_t)n, admin_listen_fd(), p->epfd);
	free(socks);
}

/* Where main_loop stands in a shutdown. */
struct stop_state {
	bool stopping;
	bool now; /* SIGINT: everything is closed already */
	uint64_t deadline_ms; /* graceful_timeout; 0 = none pending */
	uint64_t handoff_ms; /* binary upgrade: when draining starts; 0 = none */
};

/* Tells systemd the service is stopping, unless a new process took over
 * after a binary upgrade: the service is that one's now. */
static void stopping_notice(void)
{
	if (!upgrade_handed_over())
		notify_send("STOPPING=1");
}

static void on_signals(struct process *p, struct stop_state *st)
{
	struct signalfd_siginfo si;

	while (read(p->sigfd, &si, sizeof(si)) == sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGTERM:
		case SIGQUIT: {
			const char *name = si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGQUIT";
			/* A stop under way keeps its deadline: a supervisor that
			 * repeats SIGTERM must not put the exit off. Only a binary
			 * upgrade's hand-off gives way to a graceful stop now. */
			if (st->stopping && !st->handoff_ms) {
				log_info("%s: already stopping", name);
				break;
			}
			log_info("%s: stopping gracefully", name);
			stopping_notice();
			admin_set_stopping();
			stop_all(p, WORKER_GRACEFUL);
			st->stopping = true;
			st->deadline_ms = clock_ms() + p->gen->cfg->global.graceful_timeout_ms;
			st->handoff_ms = 0;
			break;
		}
		case SIGINT:
			/* A terminal's Ctrl-C reaches both a wrapper (make run)
			 * and fulcrum, and the wrapper passes it on too. */
			if (st->now)
				break;
			log_info("SIGINT: stopping now");
			stopping_notice();
			admin_set_stopping();
			stop_all(p, WORKER_STOP);
			st->stopping = st->now = true;
			st->deadline_ms = 0;
			st->handoff_ms = 0;
			break;
		case SIGHUP:
			reload_on_signal(p);
			break;
		case SIGUSR1: {
			int err = log_access_open(p->gen->cfg->global.access_log,
						  p->gen->cfg->global.access_log_format);
			if (err < 0)
				log_error("SIGUSR1: cannot reopen the access log %s (%s); "
					  "still writing to the old one",
					  p->gen->cfg->global.access_log, strerror(-err));
			break;
		}
		case SIGUSR2:
			if (st->stopping)
				log_warn("SIGUSR2: already stopping; no upgrade");
			else
				begin_upgrade(p);
			break;
		}
	}
}

/* A binary upgrade ended (upgrade.h). Ready: the new process accepts on
 * our listeners, so stop accepting at once, but close idle connections
 * only UPGRADE_HANDOFF_MS later. Failed: carry on, the pid file ours
 * again. */
static void on_upgrade(struct process *p, struct stop_state *st, enum upgrade_outcome o)
{
	if (o == UPGRADE_FAILED && p->opt.pidfile)
		write_pidfile(p->opt.pidfile);
	if (o != UPGRADE_READY)
		return;
	admin_release();
	if (st->stopping)
		return;
	stop_all(p, WORKER_HANDOFF);
	st->stopping = true;
	st->handoff_ms = clock_ms() + UPGRADE_HANDOFF_MS;
	st->deadline_ms = st->handoff_ms + p->gen->cfg->global.graceful_timeout_ms;
}

static int earliest_ms(int a, int b)
{
	if (a < 0 || b < 0)
		return a < 0 ? b : a;
	return a < b ? a : b;
}

/* Sleeps on signals and the admin API until the workers are gone. The
 * signalfd is registered with data.ptr NULL; everything else with its
 * struct ev_handler. */
static void main_loop(struct process *p)
{
	struct stop_state st = {0};
	struct epoll_event evs[16];

	for (;;) {
		int timeout = earliest_ms(admin_timeout_ms(), upgrade_timeout_ms());
		if (st.stopping && (timeout < 0 || timeout > 50))
			timeout = 50;
		/* Dropped listening sockets close, and replaced generations
		 * go, as soon as the workers let go of them. */
		bool pending = binds_collect();
		if (retire_collect(&p->retired) || pending)
			timeout = earliest_ms(timeout, 2);
		int n = epoll_wait(p->epfd, evs, 16, timeout);
		if (st.stopping && all_exited(p))
			return;
		if (st.stopping && st.deadline_ms && clock_ms() >= st.deadline_ms) {
			log_warn("graceful_timeout reached; closing tunnels and tcp connections, "
				 "letting the requests in flight finish");
			stop_all(p, WORKER_DEADLINE);
			st.deadline_ms = 0;
			st.handoff_ms = 0;
		}
		if (st.handoff_ms && clock_ms() >= st.handoff_ms) {
			stop_all(p, WORKER_GRACEFUL);
			st.handoff_ms = 0;
		}
		for (int i = 0; i < n; i++) {
			struct ev_handler *h = evs[i].data.ptr;
			if (h)
				h->fn(h, evs[i].events);
			else
				on_signals(p, &st);
		}
		admin_tick();
		on_upgrade(p, &st, upgrade_poll());
	}
}

/* What -t checks beyond the file itself: the access log can be opened, and
 * a binary upgrade would not close every listener. Returns 0, or -1 after
 * saying why on stderr. */
static int config_usable(const struct process *p, const struct cfg *cfg)
{
	int err = log_access_check(cfg->global.access_log);
	if (err < 0) {
		fprintf(stderr, "%s:%d: cannot open the access log %s: %s\n", cfg->path,
			cfg->global.access_log_line, cfg->global.access_log, strerror(-err));
		return -1;
	}
	if (cfg->n_listeners == 0) {
		/* A new binary taking over with none would stop the service. */
		if (upgrade_inherited()) {
			fprintf(stderr,
				"%s: no [listener] section: the upgrade would close every "
				"listener\n",
				p->opt.config);
			return -1;
		}
		fprintf(stderr,
			"%s: warning: no [listener] section: only the admin API will serve\n",
			p->opt.config);
	}
	return 0;
}

/* Once main_loop has returned (the stop is over): joins the threads and
 * frees what they used. The unix sockets and the pid file go too, unless a
 * binary upgrade handed them to the new process. */
static void stop_process(struct process *p)
{
	admin_close();
	hc_stop();
	workers_register(NULL, 0);
	for (int i = 0; i < p->n_workers; i++)
		worker_join(&p->workers[i]);
	retire_drain(&p->retired); /* the workers are gone: at once */
	binds_free();
	for (int i = 0; i < p->n_workers; i++)
		worker_deinit(&p->workers[i]);
	if (!upgrade_handed_over()) {
		remove_unix_sockets(p->gen->cfg);
		if (p->opt.pidfile)
			remove_pidfile(p->opt.pidfile);
	}
	free(p->workers);
	gen_put(p->gen);
	close(p->sigfd);
	close(p->epfd);
	stats_deinit();
}

/* A reload, reopen or upgrade signal that comes while the process is still
 * starting, or only checking (-t), waits for the signalfd instead of
 * killing it: logrotate and systemctl kill signal every process of the
 * unit, an ExecReload's fulcrum -t included. */
static void hold_early_signals(void)
{
	sigset_t early;

	sigemptyset(&early);
	sigaddset(&early, SIGHUP);
	sigaddset(&early, SIGUSR1);
	sigaddset(&early, SIGUSR2);
	sigprocmask(SIG_BLOCK, &early, NULL);
}

/* What start-up opens while it may still be root: the access log, the
 * first generation, the signalfd, every listening socket, the admin
 * listener and the pid file; then root is dropped. Takes CFG. 0, or the
 * exit status (2) with the cause on stderr. */
static int open_all(struct process *p, struct cfg *cfg)
{
	int err = log_access_open(cfg->global.access_log, cfg->global.access_log_format);
	if (err < 0) {
		fprintf(stderr, "fulcrum: cannot open access log %s: %s\n", cfg->global.access_log,
			strerror(-err));
		cfg_free(cfg);
		return 2;
	}
	lb_hash_local_seed();
	p->gen = gen_new(cfg, ++p->generation);
	if (!p->gen) {
		fprintf(stderr, "fulcrum: out of memory\n");
		return 2;
	}
	atomic_store(&gen_current, p->gen);
	if (setup_signals(p) < 0) {
		fprintf(stderr, "fulcrum: cannot set up signal handling: %s\n", strerror(errno));
		return 2;
	}
	if (start_workers(p) < 0 || open_admin(p) < 0 ||
	    (p->opt.pidfile && write_pidfile(p->opt.pidfile) < 0) ||
	    drop_privileges(cfg->global.user, p->opt.pidfile) < 0) {
		if (upgrade_inherited())
			admin_release(); /* the old process's still */
		admin_close();
		remove_own_pidfile(p);
		discard_workers(p);
		return 2;
	}
	upgrade_close_unused();
	return 0;
}

/* Starts the worker and health-check threads, and says the process serves
 * (to the log, an upgrading old process and systemd). 0, or the exit
 * status (2). */
static int start_threads(struct process *p, rlim_t fd_limit)
{
	const struct cfg *cfg = p->gen->cfg;

	for (int i = 0; i < p->n_workers; i++)
		if (worker_start(&p->workers[i], cfg->global.cpu_affinity) < 0) {
			fprintf(stderr, "fulcrum: cannot start worker %d\n", i);
			return start_failed(p);
		}
	workers_register(p->workers, p->n_workers);
	int err = hc_start(p->gen);
	if (err < 0) {
		fprintf(stderr, "fulcrum: cannot start the health-check thread: %s\n",
			strerror(-err));
		return start_failed(p);
	}
	warn_fd_limit(cfg, fd_limit);
	log_info("fulcrum %s started: %d workers, %zu listeners, generation %llu", FULCRUM_VERSION,
		 p->n_workers, cfg->n_listeners, (unsigned long long)p->gen->number);
	upgrade_ready(cfg);
	/* MAINPID: after a binary upgrade, this process is the service now. */
	notify_send("READY=1\nMAINPID=%d\nSTATUS=serving generation %llu", (int)getpid(),
		    (unsigned long long)p->gen->number);
	return 0;
}

int main(int argc, char **argv)
{
	struct process p = {.sigfd = -1, .epfd = -1};

	hold_early_signals();
	if (cli_parse(argc, argv, &p.opt) < 0)
		return 1;
	if (upgrade_init(argv) < 0)
		return 2;
	struct cfg *cfg = load_config(&p.opt);
	if (!cfg)
		return 1;
	if (config_usable(&p, cfg) < 0) {
		cfg_free(cfg);
		return 1;
	}
	if (p.opt.check_only) {
		printf("%s: configuration is valid\n", p.opt.config);
		cfg_free(cfg);
		return 0;
	}
	log_set_level(cfg->global.log_level);
	notify_init();
	rlim_t fd_limit = raise_fd_limit();
	int status = open_all(&p, cfg);
	if (status == 0)
		status = start_threads(&p, fd_limit);
	if (status != 0)
		return status;

	main_loop(&p);
	stop_process(&p);
	log_info("stopped");
	return 0;
}
