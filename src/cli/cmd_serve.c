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

#include "cli.h"
#include "route_io.h"

const char cmd_serve_usage[] =
	"usage: tracer serve DIR [--listen ADDR:PORT] [--threads N] [--max-body BYTES] [--feedback-out FILE]\n"
	"           [--audit-rate R] [--audit-seed S] [--allow-remote]\n"
	"  Serves the policy in DIR over HTTP (default 127.0.0.1:8080; port 0 picks a free port). Prints\n"
	"  \"listening on http://ADDR:PORT\" on stdout once it accepts requests. Endpoints:\n"
	"    POST /route        one input object (as a line of `tracer route`) -> its decision object\n"
	"    POST /route/batch  JSONL (-> JSONL) or a JSON array (-> an array): one decision per input, an error\n"
	"                       record {\"line\": N, \"error\"} in place of a bad one (N counts from 1)\n"
	"    POST /feedback     {\"id\", \"input\", \"teacher\"} the teacher's label for an input that was deferred\n"
	"                       or audited: appended (and fsync'ed) to FILE (default DIR.traces.jsonl) as a trace\n"
	"                       line; when the input is one the drift guard audits, it also feeds the monitor\n"
	"                       (DIR.monitor, saved atomically), which may close the gate\n"
	"    GET /health        status, policy checksum, gate state\n"
	"    GET /metrics       Prometheus text: requests, inputs handled/deferred/OOD/audited, latency, gate\n"
	"  Bodies over --max-body (default 1048576) get 413, malformed JSON 400 with the parser's message,\n"
	"  unknown paths 404, wrong methods 405. A monitor is created at the first audited feedback with rate R\n"
	"  (default 0.02) and seed S (default 0); an existing one keeps its settings. SIGHUP reloads DIR (a\n"
	"  failed load keeps the old policy; requests in flight finish on the one they started with); SIGTERM\n"
	"  or SIGINT drains the requests in flight and exits 0. Addresses other than loopback need\n"
	"  --allow-remote. --threads: the pool size (default: the number of processors).\n";

#define HIST_N 12
static const double hist_le[HIST_N] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
				       0.01,   0.025,   0.05,   0.1,   0.5,	   1.0};

enum ep { EP_ROUTE, EP_BATCH, EP_FEEDBACK, EP_HEALTH, EP_METRICS, EP_OTHER, EP_N };
static const char *const ep_names[EP_N] = {"route", "route_batch", "feedback", "health", "metrics", "other"};
static const int codes[] = {200, 400, 404, 405, 413, 500};
#define N_CODES (sizeof codes / sizeof codes[0])

/* One loaded policy with its drift monitor, shared by the requests that use it. */
struct served {
	atomic_int refs;
	struct tr_policy *p;
	char sha[65];
	pthread_mutex_t mlock; /* guards mon and have_mon */
	struct tr_monitor mon;
	int have_mon; /* the state file exists (or was written by us) */
	atomic_int closed;
};

struct server {
	const char *dir;
	char mon_path[PATH_MAX];
	size_t max_body;
	double audit_rate;
	uint64_t audit_seed;
	pthread_mutex_t lock; /* guards cur (the swap, not the policy) */
	struct served *cur;
	const char *fb_path;
	int fb_fd;
	pthread_mutex_t fb_lock;
	atomic_long inflight;
	atomic_ulong requests[EP_N], responses[N_CODES], aborted;
	atomic_ulong inputs, handled, deferred, ood, audited, feedback, feedback_audits, reloads, reload_failures;
	atomic_ulong hist[HIST_N + 1], lat_ns; /* latency: counts per bucket (+Inf last), sum in ns */
};

struct req {
	enum ep ep;
	struct tr_buf body;
	int too_big, done;
	struct timespec t0;
};

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
	if (tr_policy_load(sv->dir, &s->p, e)) {
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

static struct served *acquire(struct server *sv)
{
	pthread_mutex_lock(&sv->lock);
	struct served *s = sv->cur;
	atomic_fetch_add(&s->refs, 1);
	pthread_mutex_unlock(&sv->lock);
	return s;
}

static void release(struct served *s)
{
	if (s && atomic_fetch_sub(&s->refs, 1) == 1)
		served_free(s);
}

static struct tr_guard guard_of(struct served *s)
{
	struct tr_guard g = {.closed = atomic_load(&s->closed), .audits = 1, .rate = s->mon.audit_rate,
			     .seed = s->mon.audit_seed};
	return g;
}

/* ---- responses ---- */

static enum MHD_Result reply(struct server *sv, struct MHD_Connection *c, unsigned code, const char *type, char *text,
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
static enum MHD_Result reply_json(struct server *sv, struct MHD_Connection *c, unsigned code, json_t *o,
				  const char *allow)
{
	char *s = tr_route_dumps(o);
	json_decref(o);
	if (!s)
		return reply(sv, c, 500, NULL, NULL, 0, NULL);
	size_t n = strlen(s);
	char *t = realloc(s, n + 2);
	if (!t) {
		free(s);
		return reply(sv, c, 500, NULL, NULL, 0, NULL);
	}
	t[n] = '\n', t[n + 1] = 0;
	return reply(sv, c, code, "application/json", t, n + 1, allow);
}

static enum MHD_Result reply_error(struct server *sv, struct MHD_Connection *c, unsigned code, const char *msg,
				   const char *allow)
{
	return reply_json(sv, c, code, json_pack("{s:s}", "error", msg), allow);
}

static void count_decisions(struct server *sv, const struct tr_guard *g, const struct tr_route_in *in,
			    const struct tr_decision *d, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (!in[i].t.id)
			continue;
		atomic_fetch_add(&sv->inputs, 1);
		atomic_fetch_add(d[i].handled ? &sv->handled : &sv->deferred, 1);
		if (d[i].ood)
			atomic_fetch_add(&sv->ood, 1);
		if (tr_guard_audits(g, &d[i], in[i].t.id))
			atomic_fetch_add(&sv->audited, 1);
	}
}

/*
 * Routes the parsed inputs in[0..n) (those with a NULL id failed to parse and are skipped) in one call;
 * d gets their decisions.
 */
static int route_many(struct served *s, struct tr_route_in *in, const double *emb, int dim, size_t n,
		      struct tr_decision *d, struct tr_err *e)
{
	struct tr_trace *rows = tr_calloc(n ? n : 1, sizeof *rows);
	size_t *idx = tr_calloc(n ? n : 1, sizeof *idx), *pos = tr_calloc(n ? n : 1, sizeof *pos);
	struct tr_decision *dd = tr_calloc(n ? n : 1, sizeof *dd);
	int rc = rows && idx && pos && dd ? 0 : tr_fail(e, "out of memory");
	size_t m = 0;
	for (size_t i = 0; !rc && i < n; i++)
		if (in[i].t.id)
			rows[i] = in[i].t, idx[m] = i, pos[m++] = i;
	if (!rc && m)
		rc = tr_policy_route(s->p, rows, idx, m, emb, n, dim, dd, e);
	for (size_t k = 0; !rc && k < m; k++)
		d[pos[k]] = dd[k];
	tr_free(rows), tr_free(idx), tr_free(pos), tr_free(dd);
	return rc;
}

static enum MHD_Result do_route(struct server *sv, struct MHD_Connection *c, struct req *r)
{
	struct served *s = acquire(sv);
	int dim = s->p->fz && tr_featurizer_kind(s->p->fz) == TR_FEAT_NPY ? tr_featurizer_dim(s->p->fz) : 0;
	double *emb = dim ? tr_malloc((size_t)dim * sizeof *emb) : NULL;
	struct tr_route_in in;
	struct tr_decision d;
	struct tr_err e;
	enum MHD_Result rc;
	if (dim && !emb)
		rc = reply(sv, c, 500, NULL, NULL, 0, NULL);
	else if (tr_route_parse(s->p, "body", 1, r->body.data ? r->body.data : "", r->body.len, NULL, &in, emb, &e))
		rc = reply_error(sv, c, strcmp(e.msg, "out of memory") == 0 ? 500 : 400, e.msg, NULL);
	else {
		struct tr_guard g = guard_of(s);
		if (route_many(s, &in, emb, dim, 1, &d, &e))
			rc = reply_error(sv, c, 500, e.msg, NULL);
		else {
			tr_guard_apply(&g, &d, 1);
			count_decisions(sv, &g, &in, &d, 1);
			json_t *o = tr_route_decision_json(s->p, &in, &d, &g, NULL);
			rc = o ? reply_json(sv, c, 200, o, NULL) : reply(sv, c, 500, NULL, NULL, 0, NULL);
		}
		tr_route_in_free(&in);
	}
	tr_free(emb);
	release(s);
	return rc;
}

/* POST /route/batch: a JSON array (answered with an array) or JSONL (answered with JSONL). */
static enum MHD_Result do_batch(struct server *sv, struct MHD_Connection *c, struct req *r)
{
	const char *body = r->body.data ? r->body.data : "";
	size_t len = r->body.len, k = 0;
	while (k < len && strchr(" \t\r\n", body[k]))
		k++;
	int array = k < len && body[k] == '[';
	json_t *arr = NULL;
	struct tr_err e;
	if (array) {
		json_error_t jerr;
		if (!(arr = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr)))
			return reply_error(sv, c, 400, jerr.text, NULL);
	}
	/* the items: array elements, or the non-blank lines */
	size_t n = 0;
	if (array)
		n = json_array_size(arr);
	else
		for (size_t i = 0; i < len; i++)
			n += body[i] == '\n' || i + 1 == len;
	struct served *s = acquire(sv);
	int dim = s->p->fz && tr_featurizer_kind(s->p->fz) == TR_FEAT_NPY ? tr_featurizer_dim(s->p->fz) : 0;
	struct tr_route_in *in = tr_calloc(n ? n : 1, sizeof *in);
	size_t *line = tr_calloc(n ? n : 1, sizeof *line);
	char **err = tr_calloc(n ? n : 1, sizeof *err);
	struct tr_decision *d = tr_calloc(n ? n : 1, sizeof *d);
	double *emb = dim ? tr_calloc(n ? n : 1, (size_t)dim * sizeof *emb) : NULL;
	int oom = !in || !line || !err || !d || (dim && !emb);
	size_t m = 0; /* items, blank lines dropped */
	for (size_t i = 0, start = 0, no = 0; !oom && (array ? i < n : start < len); i++) {
		struct tr_err le;
		int bad;
		double *ev = dim ? emb + m * (size_t)dim : NULL;
		if (array) {
			line[m] = i + 1;
			bad = tr_route_parse_json(s->p, "body", i + 1, json_array_get(arr, i), NULL, &in[m], ev, &le);
		} else {
			const char *nl = memchr(body + start, '\n', len - start);
			size_t end = nl ? (size_t)(nl - body) : len, a = start, b = end;
			start = end + 1, no++;
			if (no == 1 && b - a >= 3 && memcmp(body + a, "\xEF\xBB\xBF", 3) == 0)
				a += 3;
			while (a < b && strchr(" \t\r", body[a]))
				a++;
			while (b > a && strchr(" \t\r", body[b - 1]))
				b--;
			if (a == b)
				continue;
			line[m] = no;
			bad = tr_route_parse(s->p, "body", no, body + a, b - a, NULL, &in[m], ev, &le);
		}
		if (bad && !(err[m] = tr_strdup(le.msg)))
			oom = 1;
		m++;
	}
	struct tr_guard g = guard_of(s);
	int rc = oom ? tr_fail(&e, "out of memory") : route_many(s, in, emb, dim, m, d, &e);
	struct tr_buf out = {0};
	if (!rc) {
		tr_guard_apply(&g, d, m);
		count_decisions(sv, &g, in, d, m);
		rc = tr_buf_puts(&out, array ? "[" : "");
	}
	for (size_t i = 0; !rc && i < m; i++) {
		json_t *o = err[i] ? tr_route_error_json(line[i], err[i]) : tr_route_decision_json(s->p, &in[i], &d[i], &g, NULL);
		char *t = tr_route_dumps(o);
		json_decref(o);
		rc = !t ? tr_fail(&e, "out of memory")
			: tr_buf_printf(&out, "%s%s%s", array && i ? "," : "", t, array ? "" : "\n");
		free(t);
	}
	if (!rc && array)
		rc = tr_buf_puts(&out, "]\n");
	for (size_t i = 0; i < m; i++)
		tr_route_in_free(&in[i]), tr_free(err[i]);
	tr_free(in), tr_free(line), tr_free(err), tr_free(d), tr_free(emb);
	json_decref(arr);
	release(s);
	if (rc) {
		tr_buf_free(&out);
		return reply_error(sv, c, 500, e.msg, NULL);
	}
	char *text = out.data ? out.data : strdup("");
	return reply(sv, c, 200, array ? "application/json" : "application/x-ndjson", text, out.len, NULL);
}

/* Appends one line to the feedback file and makes it durable before answering. */
static int append_trace(struct server *sv, const char *text, size_t len, struct tr_err *e)
{
	pthread_mutex_lock(&sv->fb_lock);
	int rc = 0;
	if (sv->fb_fd < 0 && (sv->fb_fd = open(sv->fb_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644)) < 0)
		rc = tr_fail(e, "%s: cannot open: %s", sv->fb_path, strerror(errno));
	for (size_t off = 0; !rc && off < len;) {
		ssize_t w = write(sv->fb_fd, text + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			rc = tr_fail(e, "%s: write failed: %s", sv->fb_path, strerror(errno));
		else
			off += (size_t)w;
	}
	if (!rc && fsync(sv->fb_fd) != 0)
		rc = tr_fail(e, "%s: fsync failed: %s", sv->fb_path, strerror(errno));
	pthread_mutex_unlock(&sv->fb_lock);
	return rc;
}

/*
 * POST /feedback {"id", "input", ["input_b"], "teacher"}: the input is routed again with the current
 * policy (the client is not trusted with the policy's answer); when the guard audits it, agreement with
 * the teacher feeds the monitor. Only audited inputs may feed it: they are a random sample of handled
 * traffic (the hash of the id), which the monitor's guarantee assumes; other feedback only becomes traces.
 */
static enum MHD_Result do_feedback(struct server *sv, struct MHD_Connection *c, struct req *r)
{
	json_error_t jerr;
	json_t *o = json_loadb(r->body.data ? r->body.data : "", r->body.len, JSON_REJECT_DUPLICATES, &jerr);
	if (!o)
		return reply_error(sv, c, 400, jerr.text, NULL);
	json_t *teacher = json_object_get(o, "teacher"), *id = json_object_get(o, "id");
	if (!json_is_object(o) || !json_is_string(teacher) || !json_string_length(teacher) || !json_is_string(id)) {
		const char *why = !json_is_object(o)	      ? "body:1: expected a JSON object"
				  : !json_is_string(id)	      ? "body:1: \"id\" is not a string"
							      : "body:1: \"teacher\" is not a non-empty string";
		json_decref(o);
		return reply_error(sv, c, 400, why, NULL);
	}
	struct served *s = acquire(sv);
	int dim = s->p->fz && tr_featurizer_kind(s->p->fz) == TR_FEAT_NPY ? tr_featurizer_dim(s->p->fz) : 0;
	double *emb = dim ? tr_malloc((size_t)dim * sizeof *emb) : NULL;
	struct tr_route_in in = {0};
	struct tr_decision d;
	struct tr_err e;
	enum MHD_Result rc;
	int code = 0, audited = 0, agree = 0;
	if (dim && !emb)
		code = 500, tr_fail(&e, "out of memory");
	else if (tr_route_parse_json(s->p, "body", 1, o, NULL, &in, emb, &e))
		code = 400;
	else if (route_many(s, &in, emb, dim, 1, &d, &e))
		code = 500;
	if (!code) {
		/* the trace line first: a crash after it loses one monitor update, never a trace */
		json_t *t = json_pack("{s:s,s:s}", "id", in.t.id, "input", in.t.input);
		if (t && in.t.input_b)
			json_object_set_new(t, "input_b", json_string(in.t.input_b));
		if (t)
			json_object_set(t, "teacher", teacher);
		json_t *gt = json_object_get(o, "ground_truth");
		if (t && json_is_string(gt))
			json_object_set(t, "ground_truth", gt);
		char *text = tr_route_dumps(t);
		json_decref(t);
		size_t n = text ? strlen(text) : 0;
		char *tl = text ? realloc(text, n + 2) : NULL;
		if (!tl)
			free(text), code = 500, tr_fail(&e, "out of memory");
		else {
			tl[n] = '\n', tl[n + 1] = 0;
			if (append_trace(sv, tl, n + 1, &e))
				code = 500;
			free(tl);
		}
	}
	if (!code) {
		atomic_fetch_add(&sv->feedback, 1);
		pthread_mutex_lock(&s->mlock);
		struct tr_guard g = {.closed = s->mon.closed, .audits = 1, .rate = s->mon.audit_rate, .seed = s->mon.audit_seed};
		audited = !g.closed && tr_guard_audits(&g, &d, in.t.id);
		if (audited) {
			agree = strcmp(s->p->labels.names[d.label], json_string_value(teacher)) == 0;
			int closes = tr_monitor_observe(&s->mon, agree);
			if (tr_monitor_save(&s->mon, sv->mon_path, &e))
				code = 500;
			else
				s->have_mon = 1;
			atomic_store(&s->closed, s->mon.closed);
			if (closes)
				fprintf(stderr, "tracer serve: the drift monitor closed the gate (%llu audits, %llu agreeing): every input "
						"is deferred until a refit\n",
					(unsigned long long)s->mon.audits, (unsigned long long)s->mon.agree);
			atomic_fetch_add(&sv->feedback_audits, 1);
		}
		pthread_mutex_unlock(&s->mlock);
	}
	if (code)
		rc = reply_error(sv, c, (unsigned)code, e.msg, NULL);
	else
		rc = reply_json(sv, c, 200,
				json_pack("{s:s,s:b,s:b,s:o,s:s}", "id", in.t.id, "recorded", 1, "audited", audited, "agree",
					  audited ? json_boolean(agree) : json_null(), "gate",
					  atomic_load(&s->closed) ? "closed" : "open"),
				NULL);
	tr_route_in_free(&in);
	tr_free(emb);
	json_decref(o);
	release(s);
	return rc;
}

static enum MHD_Result do_health(struct server *sv, struct MHD_Connection *c)
{
	struct served *s = acquire(sv);
	json_t *o = json_pack("{s:s,s:s,s:s,s:i,s:f,s:b,s:s,s:I}", "status", "ok", "policy", sv->dir, "policy_sha256", s->sha,
			      "labels", s->p->labels.n, "target", s->p->target, "refused", s->p->n_stages == 0, "gate",
			      atomic_load(&s->closed) ? "closed" : "open", "reloads", (json_int_t)atomic_load(&sv->reloads));
	release(s);
	return o ? reply_json(sv, c, 200, o, NULL) : reply(sv, c, 500, NULL, NULL, 0, NULL);
}

static enum MHD_Result do_metrics(struct server *sv, struct MHD_Connection *c)
{
	struct tr_buf b = {0};
	int bad = 0;
#define P(...) (bad |= tr_buf_printf(&b, __VA_ARGS__))
	P("# HELP tracer_requests_total HTTP requests received, by endpoint.\n# TYPE tracer_requests_total counter\n");
	for (int i = 0; i < EP_N; i++)
		P("tracer_requests_total{endpoint=\"%s\"} %lu\n", ep_names[i], atomic_load(&sv->requests[i]));
	P("# HELP tracer_responses_total HTTP responses sent, by status code.\n# TYPE tracer_responses_total counter\n");
	for (size_t i = 0; i < N_CODES; i++)
		P("tracer_responses_total{code=\"%d\"} %lu\n", codes[i], atomic_load(&sv->responses[i]));
	P("# HELP tracer_requests_aborted_total Requests the client cut before a response.\n"
	  "# TYPE tracer_requests_aborted_total counter\ntracer_requests_aborted_total %lu\n",
	  atomic_load(&sv->aborted));
	const struct {
		const char *name, *help;
		atomic_ulong *v;
	} cnt[] = {
		{"tracer_inputs_total", "Inputs routed.", &sv->inputs},
		{"tracer_inputs_handled_total", "Inputs the surrogate answered.", &sv->handled},
		{"tracer_inputs_deferred_total", "Inputs deferred to the teacher (OOD deferrals included).", &sv->deferred},
		{"tracer_inputs_ood_deferred_total", "Inputs the OOD guard deferred.", &sv->ood},
		{"tracer_inputs_audited_total", "Handled inputs marked for an audit by the teacher.", &sv->audited},
		{"tracer_feedback_total", "Teacher labels received and appended to the feedback traces.", &sv->feedback},
		{"tracer_feedback_audits_total", "Feedback on audited inputs fed to the drift monitor.", &sv->feedback_audits},
		{"tracer_policy_reloads_total", "Successful policy reloads (SIGHUP).", &sv->reloads},
		{"tracer_policy_reload_failures_total", "Failed reloads (the old policy kept serving).", &sv->reload_failures},
	};
	for (size_t i = 0; i < sizeof cnt / sizeof cnt[0]; i++)
		P("# HELP %s %s\n# TYPE %s counter\n%s %lu\n", cnt[i].name, cnt[i].help, cnt[i].name, cnt[i].name,
		  atomic_load(cnt[i].v));
	P("# HELP tracer_request_duration_seconds Time from the request's arrival to its response.\n"
	  "# TYPE tracer_request_duration_seconds histogram\n");
	unsigned long cum = 0;
	for (int i = 0; i <= HIST_N; i++) {
		cum += atomic_load(&sv->hist[i]);
		if (i < HIST_N)
			P("tracer_request_duration_seconds_bucket{le=\"%g\"} %lu\n", hist_le[i], cum);
		else
			P("tracer_request_duration_seconds_bucket{le=\"+Inf\"} %lu\n", cum);
	}
	P("tracer_request_duration_seconds_sum %.9f\ntracer_request_duration_seconds_count %lu\n",
	  (double)atomic_load(&sv->lat_ns) * 1e-9, cum);
	struct served *s = acquire(sv);
	P("# HELP tracer_gate_open 1 while the drift monitor keeps the gate open, 0 once it closed it.\n"
	  "# TYPE tracer_gate_open gauge\ntracer_gate_open %d\n",
	  !atomic_load(&s->closed));
	P("# HELP tracer_policy_info The policy served (its manifest's SHA-256).\n# TYPE tracer_policy_info gauge\n"
	  "tracer_policy_info{sha256=\"%s\"} 1\n",
	  s->sha);
	release(s);
#undef P
	if (bad) {
		tr_buf_free(&b);
		return reply(sv, c, 500, NULL, NULL, 0, NULL);
	}
	return reply(sv, c, 200, "text/plain; version=0.0.4", b.data, b.len, NULL);
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
			return reply_error(sv, c, 404, "no such endpoint (POST /route, /route/batch, /feedback; GET /health, /metrics)", NULL);
		}
		if (strcmp(method, want) != 0) {
			r->done = 1;
			return reply_error(sv, c, 405, strcmp(want, "GET") == 0 ? "method not allowed: use GET" : "method not allowed: use POST", want);
		}
		const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl && strtoull(cl, NULL, 10) > sv->max_body) {
			r->done = 1;
			return reply_error(sv, c, 413, "request body over --max-body", NULL);
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
		return reply_error(sv, c, 413, "request body over --max-body", NULL);
	switch (ep) {
	case EP_ROUTE:
		return do_route(sv, c, r);
	case EP_BATCH:
		return do_batch(sv, c, r);
	case EP_FEEDBACK:
		return do_feedback(sv, c, r);
	case EP_HEALTH:
		return do_health(sv, c);
	case EP_METRICS:
		return do_metrics(sv, c);
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
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
		int bad = 0;
		if (strcmp(a, "--allow-remote") == 0)
			remote = 1;
		else if (a[0] != '-' && !sv.dir)
			sv.dir = a;
		else if (!val)
			return tr_cli_usage_error("serve", "unexpected argument \"%s\"", a);
		else if (strcmp(a, "--listen") == 0)
			listen = val, i++;
		else if (strcmp(a, "--threads") == 0)
			bad = tr_cli_count(val, &threads) || threads < 1 || threads > 256, i++;
		else if (strcmp(a, "--max-body") == 0)
			bad = tr_cli_count(val, &v) || v < 1 || v > (1ULL << 32), sv.max_body = (size_t)v, i++;
		else if (strcmp(a, "--feedback-out") == 0)
			sv.fb_path = val, i++;
		else if (strcmp(a, "--audit-rate") == 0)
			bad = tr_cli_number(val, 0, 1.0000001, &sv.audit_rate), i++;
		else if (strcmp(a, "--audit-seed") == 0)
			bad = tr_cli_count(val, &v), sv.audit_seed = v, i++;
		else
			return tr_cli_usage_error("serve", "unexpected argument \"%s\"", a);
		if (bad)
			return tr_cli_usage_error("serve", "bad value for %s: \"%s\"", a, val);
	}
	if (!sv.dir)
		return tr_cli_usage_error("serve", "expected a policy directory");
	struct sockaddr_in addr;
	if (parse_listen(listen, &addr))
		return tr_cli_usage_error("serve", "bad --listen \"%s\" (an IPv4 address and a port, e.g. 127.0.0.1:8080)", listen);
	if ((ntohl(addr.sin_addr.s_addr) >> 24) != 127 && !remote)
		return tr_cli_usage_error("serve", "--listen %s is not a loopback address; add --allow-remote to serve it", listen);
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
		release(sv.cur);
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
			release(old);
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
	release(sv.cur);
	if (sv.fb_fd >= 0)
		close(sv.fb_fd);
	fprintf(stderr, "tracer serve: stopped (%lu requests; %ld still in flight at the end)\n",
		atomic_load(&sv.requests[EP_ROUTE]) + atomic_load(&sv.requests[EP_BATCH]) + atomic_load(&sv.requests[EP_FEEDBACK]) +
			atomic_load(&sv.requests[EP_HEALTH]) + atomic_load(&sv.requests[EP_METRICS]) +
			atomic_load(&sv.requests[EP_OTHER]),
		left);
	return TR_EXIT_OK;
}
