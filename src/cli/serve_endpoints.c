/*
 * serve_endpoints.c - what `tracer serve` answers on each path: routing one input or a batch, feedback
 * from the teacher (traces and the drift monitor), health and Prometheus metrics.
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

/*
 * Counts routed inputs in the metrics and in the policy's monitor (its state file gets them at the next
 * save: an audited feedback, a reload or the end), so the monitor's events say how much traffic passed.
 */
static void count_decisions(struct server *sv, struct served *s, const struct tr_guard *g,
			    const struct tr_route_in *in, const struct tr_decision *d, size_t n)
{
	pthread_mutex_lock(&s->mlock);
	for (size_t i = 0; i < n; i++) {
		if (!in[i].t.id)
			continue;
		atomic_fetch_add(&sv->inputs, 1);
		if (tr_route_pair_warning(s->p, &in[i]))
			atomic_fetch_add(&sv->pair_mismatch, 1);
		atomic_fetch_add(d[i].handled ? &sv->handled : &sv->deferred, 1);
		if (d[i].ood)
			atomic_fetch_add(&sv->ood, 1);
		if (tr_guard_audits(g, &d[i], in[i].t.id))
			atomic_fetch_add(&sv->audited, 1);
		tr_monitor_count(&s->mon, d[i].handled);
	}
	s->mon_dirty = 1;
	pthread_mutex_unlock(&s->mlock);
}

/* The decision object of `tracer route`, with a "warning" when the input's pair-ness is not the policy's
 * (route says it on stderr; a client sees it in the answer). */
static json_t *decision_json(const struct tr_policy *p, const struct tr_route_in *in, const struct tr_decision *d,
			     const struct tr_guard *g)
{
	json_t *o = tr_route_decision_json(p, in, d, g, NULL);
	const char *w = tr_route_pair_warning(p, in);
	if (o && w && json_object_set_new(o, "warning", json_string(w))) {
		json_decref(o);
		return NULL;
	}
	return o;
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

enum MHD_Result serve_route(struct server *sv, struct MHD_Connection *c, struct req *r)
{
	struct served *s = serve_acquire(sv);
	int dim = s->p->fz && tr_featurizer_kind(s->p->fz) == TR_FEAT_NPY ? tr_featurizer_dim(s->p->fz) : 0;
	double *emb = dim ? tr_malloc((size_t)dim * sizeof *emb) : NULL;
	struct tr_route_in in;
	struct tr_decision d;
	struct tr_err e;
	enum MHD_Result rc;
	if (dim && !emb)
		rc = serve_reply(sv, c, 500, NULL, NULL, 0, NULL);
	else if (tr_route_parse(s->p, "body", 1, r->body.data ? r->body.data : "", r->body.len, NULL, &in, emb, &e))
		rc = serve_reply_error(sv, c, strcmp(e.msg, "out of memory") == 0 ? 500 : 400, e.msg, NULL);
	else {
		struct tr_guard g = serve_guard(s);
		if (route_many(s, &in, emb, dim, 1, &d, &e))
			rc = serve_reply_error(sv, c, 500, e.msg, NULL);
		else {
			tr_guard_apply(&g, &d, 1);
			count_decisions(sv, s, &g, &in, &d, 1);
			json_t *o = decision_json(s->p, &in, &d, &g);
			rc = o ? serve_reply_json(sv, c, 200, o, NULL) : serve_reply(sv, c, 500, NULL, NULL, 0, NULL);
		}
		tr_route_in_free(&in);
	}
	tr_free(emb);
	serve_release(s);
	return rc;
}

/* POST /route/batch: a JSON array (answered with an array) or JSONL (answered with JSONL). */
enum MHD_Result serve_batch(struct server *sv, struct MHD_Connection *c, struct req *r)
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
			return serve_reply_error(sv, c, 400, jerr.text, NULL);
	}
	/* the items: array elements, or the non-blank lines */
	size_t n = 0;
	if (array)
		n = json_array_size(arr);
	else
		for (size_t i = 0; i < len; i++)
			n += body[i] == '\n' || i + 1 == len;
	struct served *s = serve_acquire(sv);
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
	struct tr_guard g = serve_guard(s);
	int rc = oom ? tr_fail(&e, "out of memory") : route_many(s, in, emb, dim, m, d, &e);
	struct tr_buf out = {0};
	if (!rc) {
		tr_guard_apply(&g, d, m);
		count_decisions(sv, s, &g, in, d, m);
		rc = tr_buf_puts(&out, array ? "[" : "");
	}
	for (size_t i = 0; !rc && i < m; i++) {
		json_t *o = err[i] ? tr_route_error_json(line[i], err[i]) : decision_json(s->p, &in[i], &d[i], &g);
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
	serve_release(s);
	if (rc) {
		tr_buf_free(&out);
		return serve_reply_error(sv, c, 500, e.msg, NULL);
	}
	char *text = out.data ? out.data : strdup("");
	return serve_reply(sv, c, 200, array ? "application/json" : "application/x-ndjson", text, out.len, NULL);
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
enum MHD_Result serve_feedback(struct server *sv, struct MHD_Connection *c, struct req *r)
{
	json_error_t jerr;
	json_t *o = json_loadb(r->body.data ? r->body.data : "", r->body.len, JSON_REJECT_DUPLICATES, &jerr);
	if (!o)
		return serve_reply_error(sv, c, 400, jerr.text, NULL);
	json_t *teacher = json_object_get(o, "teacher"), *id = json_object_get(o, "id");
	if (!json_is_object(o) || !json_is_string(teacher) || !json_string_length(teacher) || !json_is_string(id)) {
		const char *why = !json_is_object(o)	      ? "body:1: expected a JSON object"
				  : !json_is_string(id)	      ? "body:1: \"id\" is not a string"
							      : "body:1: \"teacher\" is not a non-empty string";
		json_decref(o);
		return serve_reply_error(sv, c, 400, why, NULL);
	}
	struct served *s = serve_acquire(sv);
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
				s->have_mon = 1, s->mon_dirty = 0;
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
		rc = serve_reply_error(sv, c, (unsigned)code, e.msg, NULL);
	else {
		/* the trace is recorded either way; a pair mismatch is said as /route says it */
		json_t *a = json_pack("{s:s,s:b,s:b,s:o,s:s}", "id", in.t.id, "recorded", 1, "audited", audited, "agree",
				      audited ? json_boolean(agree) : json_null(), "gate",
				      atomic_load(&s->closed) ? "closed" : "open");
		const char *w = tr_route_pair_warning(s->p, &in);
		if (a && w && json_object_set_new(a, "warning", json_string(w)))
			json_decref(a), a = NULL;
		rc = serve_reply_json(sv, c, 200, a, NULL);
	}
	tr_route_in_free(&in);
	tr_free(emb);
	json_decref(o);
	serve_release(s);
	return rc;
}

enum MHD_Result serve_health(struct server *sv, struct MHD_Connection *c)
{
	struct served *s = serve_acquire(sv);
	json_t *o = json_pack("{s:s,s:s,s:s,s:i,s:f,s:b,s:s,s:I}", "status", "ok", "policy", sv->dir, "policy_sha256", s->sha,
			      "labels", s->p->labels.n, "target", s->p->target, "refused", s->p->n_stages == 0, "gate",
			      atomic_load(&s->closed) ? "closed" : "open", "reloads", (json_int_t)atomic_load(&sv->reloads));
	serve_release(s);
	return o ? serve_reply_json(sv, c, 200, o, NULL) : serve_reply(sv, c, 500, NULL, NULL, 0, NULL);
}

enum MHD_Result serve_metrics(struct server *sv, struct MHD_Connection *c)
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
		{"tracer_inputs_pair_mismatch_total",
		 "Inputs with input_b for a single-text policy (routed on input alone) or without it for a pair policy.",
		 &sv->pair_mismatch},
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
	struct served *s = serve_acquire(sv);
	P("# HELP tracer_gate_open 1 while the drift monitor keeps the gate open, 0 once it closed it.\n"
	  "# TYPE tracer_gate_open gauge\ntracer_gate_open %d\n",
	  !atomic_load(&s->closed));
	P("# HELP tracer_policy_info The policy served (its manifest's SHA-256).\n# TYPE tracer_policy_info gauge\n"
	  "tracer_policy_info{sha256=\"%s\"} 1\n",
	  s->sha);
	serve_release(s);
#undef P
	if (bad) {
		tr_buf_free(&b);
		return serve_reply(sv, c, 500, NULL, NULL, 0, NULL);
	}
	return serve_reply(sv, c, 200, "text/plain; version=0.0.4", b.data, b.len, NULL);
}
