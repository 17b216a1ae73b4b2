/*
 * cmd_serve.c - `tracer serve DIR --listen 127.0.0.1:8080`: the policy behind HTTP (libmicrohttpd, a pool
 * of threads). Every request routes through tr_policy_route, the decision `tracer route` makes.
 *
 * The loaded policy is shared by reference count: a request takes a reference when it starts and drops it
 * when it ends, SIGHUP loads the directory anew and swaps the pointer, so requests in flight finish on the
 * policy they started with and the old one is freed by the last of them. SIGTERM (or SIGINT) stops
 * accepting connections, waits for the requests in flight and exits 0.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "serve.h"

const char cmd_serve_usage[] =
	"usage: tracer serve DIR [--listen ADDR:PORT] [--threads N] [--max-body BYTES] [--feedback-out FILE]\n"
	"           [--audit-rate R] [--audit-seed S] [--allow-remote]\n"
	"  Serves the policy in DIR over HTTP (default 127.0.0.1:8080; port 0 picks a free port). Prints\n"
	"  \"listening on http://ADDR:PORT\" on stdout once it accepts requests. Endpoints:\n"
	"    POST /route        one input object (as a line of `tracer route`) -> its decision object, with a\n"
	"                       \"warning\" when input_b is given to a single-text policy or missing for a pair one\n"
	"    POST /route/batch  JSONL (-> JSONL) or a JSON array (-> an array): one decision per input, an error\n"
	"                       record {\"line\": N, \"error\"} in place of a bad one (N counts from 1)\n"
	"    POST /feedback     {\"id\", \"input\", \"teacher\"} the teacher's label for an input that was deferred\n"
	"                       or audited: appended (and fsync'ed) to FILE (default DIR.traces.jsonl) as a trace\n"
	"                       line; when the input is one the drift guard audits, it also feeds the monitor\n"
	"                       (DIR.monitor, saved atomically), which may close the gate\n"
	"    GET /health        status, policy checksum, gate state\n"
	"    GET /metrics       Prometheus text: requests, inputs handled/deferred/OOD/audited/pair mismatches,\n"
	"                       latency, gate\n"
	"  Bodies over --max-body (default 1048576) get 413, malformed JSON 400 with the parser's message,\n"
	"  unknown paths 404, wrong methods 405. A monitor is created at the first audited feedback with rate R\n"
	"  (default 0.02) and seed S (default 0); an existing one keeps its settings. It also counts the\n"
	"  routed inputs: its file gets them at each audited feedback, before a reload and at the stop.\n"
	"  SIGHUP reloads DIR (a failed load keeps the old policy; requests in flight finish on the one they\n"
	"  started with); SIGTERM or SIGINT drains the requests in flight and exits 0. Addresses other than\n"
	"  loopback need --allow-remote. --threads: the pool size (default: the number of processors).\n";

const double hist_le[HIST_N] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
				       0.01,   0.025,   0.05,   0.1,   0.5,	   1.0};

const char *const ep_names[EP_N] = {"route", "route_batch", "feedback", "health", "metrics", "other"};
const int codes[N_CODES] = {200, 400, 404, 405, 413, 500};

static void served_free(struct served *s)
{
	if (!s)
		return;
	tr_policy_free(s->p);
	pthread_mutex_destroy(&s->mlock);
	tr_free(s);
}

/* Loads DIR and its monitor (or a fresh one, not yet written, under the server's audit settings). */
static struct served *served_load(const struct server *sv, struct tr_err *e)
{
	struct served *s = tr_calloc(1, sizeof *s);
	if (!s) {
		tr_fail(e, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&s->mlock, NULL);
	atomic_init(&s->refs, 1);
	if (tr_cli_policy_load(sv->dir, &s->p, e)) {
		served_free(s);
		return NULL;
	}
	int got = tr_monitor_open(sv->dir, &s->mon, s->sha, e);
	if (got < 0) {
		served_free(s);
		return NULL;
	}
	if (!got) {
		tr_monitor_init(&s->mon, TR_MON_BETTING, s->p->target, 0.05, sv->audit_rate, sv->audit_seed);
		memcpy(s->mon.policy_sha, s->sha, sizeof s->sha);
	}
	s->have_mon = got;
	atomic_init(&s->closed, s->mon.closed);
	return s;
}

/*
 * Writes the input counts the monitor gathered since its last save, when it has a state file (a monitor is
 * only written once an audit fed it). Called before a reload and at the end; a failure is said, not fatal.
 */
static void served_save_counts(const struct server *sv, struct served *s)
{
	struct tr_err e;
	pthread_mutex_lock(&s->mlock);
	if (s->have_mon && s->mon_dirty) {
		if (tr_monitor_save(&s->mon, sv->mon_path, &e))
			fprintf(stderr, "tracer serve: the monitor's input counts were not saved: %s\n", e.msg);
		else
			s->mon_dirty = 0;
	}
	pthread_mutex_unlock(&s->mlock);
}

struct served *serve_acquire(struct server *sv)
{
	pthread_mutex_lock(&sv->lock);
	struct served *s = sv->cur;
	atomic_fetch_add(&s->refs, 1);
	pthread_mutex_unlock(&sv->lock);
	return s;
}

void serve_release(struct served *s)
{
	if (s && atomic_fetch_sub(&s->refs, 1) == 1)
		served_free(s);
}

struct tr_guard serve_guard(struct served *s)
{
	struct tr_guard g = {.closed = atomic_load(&s->closed), .audits = 1, .rate = s->mon.audit_rate,
			     .seed = s->mon.audit_seed};
	return g;
}

/* ---- responses ---- */

enum MHD_Result serve_reply(struct server *sv, struct MHD_Connection *c, unsigned code, const char *type, char *text,
			     size_t len, const char *allow)
{
	struct MHD_Response *r = text ? MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE) : NULL;
	if (!r) {
		free(text);
		r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
		code = 500;
		if (!r)
			return MHD_NO;
	} else
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (allow)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
	for (size_t i = 0; i < N_CODES; i++)
		if ((unsigned)codes[i] == code)
			atomic_fetch_add(&sv->responses[i], 1);
	enum MHD_Result rc = MHD_queue_response(c, code, r);
	MHD_destroy_response(r);
	return rc;
}

/* A JSON object (consumed) as the body; out of memory gives 500. */
enum MHD_Result serve_reply_json(struct server *sv, struct MHD_Connection *c, unsigned code, json_t *o,
				  const char *allow)
{
	char *s = tr_route_dumps(o);
	json_decref(o);
	if (!s)
		return serve_reply(sv, c, 500, NULL, NULL, 0, NULL);
	size_t n = strlen(s);
	char *t = realloc(s, n + 2);
	if (!t) {
		free(s);
		return serve_reply(sv, c, 500, NULL, NULL, 0, NULL);
	}
	t[n] = '\n', t[n + 1] = 0;
	return serve_reply(sv, c, code, "application/json", t, n + 1, allow);
}

enum MHD_Result serve_reply_error(struct server *sv, struct MHD_Connection *c, unsigned code, const char *msg,
				   const char *allow)
{
	return serve_reply_json(sv, c, code, json_pack("{s:s}", "error", msg), allow);
}

static enum ep endpoint(const char *url, const char **want)
{
	static const struct {
		const char *path, *method;
		enum ep ep;
	} t[] = {{"/route", "POST", EP_ROUTE},	 {"/route/batch", "POST", EP_BATCH}, {"/feedback", "POST", EP_FEEDBACK},
		 {"/health", "GET", EP_HEALTH}, {"/metrics", "GET", EP_METRICS}};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
		if (strcmp(url, t[i].path) == 0) {
			*want = t[i].method;
			return t[i].ep;
		}
	*want = NULL;
	return EP_OTHER;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
			       const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
	(void)version;
	struct server *sv = cls;
	struct req *r = *con_cls;
	const char *want;
	enum ep ep = endpoint(url, &want);
	if (!r) {
		if (!(r = tr_calloc(1, sizeof *r)))
			return MHD_NO;
		clock_gettime(CLOCK_MONOTONIC, &r->t0);
		r->ep = ep;
		*con_cls = r;
		atomic_fetch_add(&sv->inflight, 1);
		atomic_fetch_add(&sv->requests[ep], 1);
		if (!want) {
			r->done = 1;
			return serve_reply_error(sv, c, 404, "no such endpoint (POST /route, /route/batch, /feedback; GET /health, /metrics)", NULL);
		}
		if (strcmp(method, want) != 0) {
			r->done = 1;
			return serve_reply_error(sv, c, 405, strcmp(want, "GET") == 0 ? "method not allowed: use GET" : "method not allowed: use POST", want);
		}
		const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl && strtoull(cl, NULL, 10) > sv->max_body) {
			r->done = 1;
			return serve_reply_error(sv, c, 413, "request body over --max-body", NULL);
		}
		return MHD_YES;
	}
	if (r->done) { /* a response is queued; drop what still arrives */
		*upload_size = 0;
		return MHD_YES;
	}
	if (*upload_size) {
		if (!r->too_big && r->body.len + *upload_size > sv->max_body) {
			r->too_big = 1;
			tr_buf_free(&r->body);
		}
		if (!r->too_big && tr_buf_add(&r->body, upload, *upload_size))
			return MHD_NO;
		*upload_size = 0;
		return MHD_YES;
	}
	r->done = 1;
	if (r->too_big)
		return serve_reply_error(sv, c, 413, "request body over --max-body", NULL);
	switch (ep) {
	case EP_ROUTE:
		return serve_route(sv, c, r);
	case EP_BATCH:
		return serve_batch(sv, c, r);
	case EP_FEEDBACK:
		return serve_feedback(sv, c, r);
	case EP_HEALTH:
		return serve_health(sv, c);
	case EP_METRICS:
		return serve_metrics(sv, c);
	default:
		return MHD_NO;
	}
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	(void)c;
	struct server *sv = cls;
	struct req *r = *con_cls;
	if (!r)
		return;
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double dt = (double)(t1.tv_sec - r->t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - r->t0.tv_nsec);
	if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK) {
		int k = 0;
		while (k < HIST_N && dt > hist_le[k])
			k++;
		atomic_fetch_add(&sv->hist[k], 1);
		atomic_fetch_add(&sv->lat_ns, (unsigned long)(dt * 1e9));
	} else
		atomic_fetch_add(&sv->aborted, 1);
	tr_buf_free(&r->body);
	tr_free(r);
	*con_cls = NULL;
	atomic_fetch_sub(&sv->inflight, 1);
}

/* HOST:PORT with an IPv4 literal; 0 or -1. */
static int parse_listen(const char *s, struct sockaddr_in *a)
{
	const char *colon = strrchr(s, ':');
	char host[64];
	unsigned long long port;
	if (!colon || (size_t)(colon - s) >= sizeof host || tr_cli_count(colon + 1, &port) || port > 65535)
		return -1;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = 0;
	memset(a, 0, sizeof *a);
	a->sin_family = AF_INET;
	a->sin_port = htons((uint16_t)port);
	return inet_pton(AF_INET, host, &a->sin_addr) == 1 ? 0 : -1;
}

int cmd_serve(int argc, char **argv)
{
	struct server sv;
	memset(&sv, 0, sizeof sv);
	sv.max_body = 1 << 20;
	sv.audit_rate = 0.02;
	sv.fb_fd = -1;
	const char *listen = "127.0.0.1:8080";
	unsigned long long threads = 0, v;
	int remote = 0;
	char fb_default[PATH_MAX];
	struct tr_args ar = {.verb = "serve",
			     .spec = "--allow-remote --listen= --threads= --max-body= --feedback-out= --audit-rate= --audit-seed=",
			     .pos = (const char **[]){&sv.dir},
			     .n_pos = 1};
	int k;
	while ((k = tr_args_next(&ar, argc, argv)) == TR_ARG_OPT) {
		const char *a = ar.opt, *val = ar.val;
		int bad = 0;
		if (strcmp(a, "--allow-remote") == 0)
			remote = 1;
		else if (strcmp(a, "--listen") == 0)
			listen = val;
		else if (strcmp(a, "--threads") == 0)
			bad = tr_cli_count(val, &threads) || threads < 1 || threads > 256;
		else if (strcmp(a, "--max-body") == 0)
			bad = tr_cli_count(val, &v) || v < 1 || v > (1ULL << 32), sv.max_body = (size_t)v;
		else if (strcmp(a, "--feedback-out") == 0)
			sv.fb_path = val;
		else if (strcmp(a, "--audit-rate") == 0)
			bad = tr_cli_number(val, 0, 1.0000001, &sv.audit_rate);
		else if (strcmp(a, "--audit-seed") == 0)
			bad = tr_cli_count(val, &v), sv.audit_seed = v;
		if (bad)
			return tr_cli_usage_error("serve", "bad value for %s: \"%s\"", a, val);
	}
	if (k < 0)
		return TR_EXIT_USAGE;
	if (!sv.dir)
		return tr_cli_usage_error("serve", "expected a policy directory");
	struct sockaddr_in addr;
	if (parse_listen(listen, &addr))
		return tr_cli_usage_error("serve", "bad --listen \"%s\" (an IPv4 address and a port, e.g. 127.0.0.1:8080)", listen);
	if ((ntohl(addr.sin_addr.s_addr) >> 24) != 127 && !remote)
		return tr_cli_usage_error("serve", "--listen %s is not a loopback address; add --allow-remote to serve it", listen);
	tr_cli_steady_heap();
	if (!threads) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		threads = n > 0 ? (unsigned long long)n : 1;
	}
	size_t dl = strlen(sv.dir);
	while (dl > 1 && sv.dir[dl - 1] == '/')
		dl--;
	snprintf(fb_default, sizeof fb_default, "%.*s.traces.jsonl", (int)dl, sv.dir);
	if (!sv.fb_path)
		sv.fb_path = fb_default;
	tr_monitor_path(sv.dir, sv.mon_path, sizeof sv.mon_path);
	struct tr_err e;
	pthread_mutex_init(&sv.lock, NULL);
	pthread_mutex_init(&sv.fb_lock, NULL);
	if (!(sv.cur = served_load(&sv, &e)))
		return tr_cli_data_error(&e);

	/* the pool's threads inherit this mask: only the main thread takes the signals, in sigwait */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGHUP), sigaddset(&set, SIGTERM), sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	struct MHD_Daemon *d = MHD_start_daemon(
		MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC, 0, NULL, NULL, handler, &sv,
		MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)threads,
		MHD_OPTION_NOTIFY_COMPLETED, completed, &sv, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
		MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1, MHD_OPTION_END);
	if (!d) {
		serve_release(sv.cur);
		tr_fail(&e, "cannot listen on %s: %s", listen, strerror(errno ? errno : EADDRINUSE));
		return tr_cli_data_error(&e);
	}
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	char host[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &addr.sin_addr, host, sizeof host);
	printf("listening on http://%s:%u\n", host, info ? info->port : ntohs(addr.sin_port));
	fflush(stdout);
	fprintf(stderr, "tracer serve: policy %s (sha256 %.12s), %llu threads, feedback to %s\n", sv.dir, sv.cur->sha,
		threads, sv.fb_path);
	for (;;) {
		int sig;
		if (sigwait(&set, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			served_save_counts(&sv, sv.cur); /* the new policy may be this one, its monitor read back */
			struct served *s = served_load(&sv, &e);
			if (!s) {
				atomic_fetch_add(&sv.reload_failures, 1);
				fprintf(stderr, "tracer serve: reload failed, the old policy keeps serving: %s\n", e.msg);
				continue;
			}
			pthread_mutex_lock(&sv.lock);
			struct served *old = sv.cur;
			sv.cur = s;
			pthread_mutex_unlock(&sv.lock);
			serve_release(old);
			atomic_fetch_add(&sv.reloads, 1);
			fprintf(stderr, "tracer serve: reloaded %s (sha256 %.12s)\n", sv.dir, s->sha);
			continue;
		}
		break;
	}
	/* drain: no new connections, then wait (up to 30 s) for the requests in flight */
	MHD_socket ls = MHD_quiesce_daemon(d);
	if (ls != MHD_INVALID_SOCKET)
		close(ls);
	for (int i = 0; i < 3000 && atomic_load(&sv.inflight) > 0; i++) {
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	long left = atomic_load(&sv.inflight);
	MHD_stop_daemon(d);
	served_save_counts(&sv, sv.cur);
	serve_release(sv.cur);
	if (sv.fb_fd >= 0)
		close(sv.fb_fd);
	fprintf(stderr, "tracer serve: stopped (%lu requests; %ld still in flight at the end)\n",
		atomic_load(&sv.requests[EP_ROUTE]) + atomic_load(&sv.requests[EP_BATCH]) + atomic_load(&sv.requests[EP_FEEDBACK]) +
			atomic_load(&sv.requests[EP_HEALTH]) + atomic_load(&sv.requests[EP_METRICS]) +
			atomic_load(&sv.requests[EP_OTHER]),
		left);
	return TR_EXIT_OK;
}
