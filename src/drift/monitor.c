/*
 * monitor.c - audit sampling and the anytime-valid monitor of agreement on handled (see drift.h), and
 * its state file.
 */
#include "drift.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

const char *const tr_mon_method_names[2] = {"betting", "mixture"};

int tr_mon_method_parse(const char *name)
{
	for (int i = 0; i < 2; i++)
		if (strcmp(name, tr_mon_method_names[i]) == 0)
			return i;
	return -1;
}

int tr_audit_pick(const char *id, uint64_t seed, double rate)
{
	uint64_t h = XXH3_64bits_withSeed(id, strlen(id), seed ^ 0x61756469744d6f6eull);
	return (double)(h >> 11) * 0x1.0p-53 < rate;
}

static double grid_m(int j)
{
	return 0.5 + 0.005 * j;
}

void tr_monitor_init(struct tr_monitor *m, enum tr_mon_method method, double alpha, double delta,
		     double audit_rate, uint64_t audit_seed)
{
	memset(m, 0, sizeof *m);
	m->method = method;
	m->alpha = alpha;
	m->delta = delta;
	m->audit_rate = audit_rate;
	m->audit_seed = audit_seed;
	m->hist_every = 8;
}

void tr_monitor_count(struct tr_monitor *m, int handled)
{
	m->inputs++;
	m->handled += handled != 0;
}

double tr_monitor_threshold(const struct tr_monitor *m)
{
	return log(1 / m->delta);
}

/*
 * betting: the prediction q in (0, b] of the next audit's agreement under boundary b, from the past only
 * (any value in (0, b] keeps the test valid; only its power depends on the choice).
 */
static double predict(const struct tr_monitor *m, double b)
{
	double q = (m->ew_k + TR_MON_PRIOR * b) / (m->ew_n + TR_MON_PRIOR);
	if (q < TR_MON_FLOOR * b)
		q = TR_MON_FLOOR * b;
	return q <= b ? q : b;
}

/*
 * ln W after one more audit x against boundary b, given ln W now (lw).
 * betting: the factor (q/b)^x ((1-q)/(1-b))^(1-x).
 * mixture: W_n(b) = J(A, B) / (b^A (1-b)^(B-1)) with J(A, B) = int_0^b q^(A-1) (1-q)^(B-1) dq, A = k + 1,
 *   B = n - k + 1 (k agreements in n audits): the uniform-prior mixture on [0, b] of the likelihood
 *   ratios. The incomplete-beta recurrences J(A+1, B) = (A J - b^A (1-b)^B) / (A + B) and
 *   J(A, B+1) = (B J + b^A (1-b)^B) / (A + B) give W in O(1) per audit:
 *   x = 1: W' = (A W - (1 - b)) / ((A + B) b);  x = 0: W' = (B W / (1 - b) + 1) / (A + B).
 */
static double step(const struct tr_monitor *m, double lw, double b, int x)
{
	if (m->method == TR_MON_BETTING) {
		double q = predict(m, b);
		return lw + (x ? log(q / b) : log((1 - q) / (1 - b)));
	}
	double A = (double)m->agree + 1, B = (double)(m->audits - m->agree) + 1;
	if (x) {
		double r = A - (1 - b) * exp(-lw); /* A - (1-b)/W > 0 in exact arithmetic */
		return lw + log(r > 1e-300 ? r : 1e-300) - log((A + B) * b);
	}
	double u = log(B) + lw - log(1 - b); /* ln(B W / (1 - b)) */
	return (u > 0 ? u + log1p(exp(-u)) : log1p(exp(u))) - log(A + B);
}

static void checkpoint(struct tr_monitor *m)
{
	if (m->n_hist == TR_MON_HIST) {
		for (int i = 0; i < TR_MON_HIST / 2; i++)
			m->hist[i] = m->hist[2 * i + 1];
		m->n_hist = TR_MON_HIST / 2;
		m->hist_every *= 2;
	}
	m->hist[m->n_hist++] = (struct tr_mon_point){m->inputs, m->audits, m->agree, m->stat, tr_monitor_upper(m)};
}

int tr_monitor_observe(struct tr_monitor *m, int agree)
{
	if (m->closed)
		return 0;
	int x = agree != 0;
	double thr = tr_monitor_threshold(m);
	m->stat = step(m, m->stat, m->alpha, x);
	if (m->stat > m->stat_max)
		m->stat_max = m->stat;
	for (int j = 0; j < TR_MON_GRID; j++) {
		double b = grid_m(j);
		m->grid_stat[j] = step(m, m->grid_stat[j], b, x);
		if (m->grid_stat[j] >= thr)
			m->grid_rej[j] = 1;
	}
	/* the predictions above used the past only; now the past grows */
	m->audits++;
	m->agree += (uint64_t)x;
	m->ew_n = m->ew_n * (1 - 1 / TR_MON_MEMORY) + 1;
	m->ew_k = m->ew_k * (1 - 1 / TR_MON_MEMORY) + x;
	if (m->stat >= thr) {
		m->closed = 1;
		m->closing = (struct tr_mon_point){m->inputs, m->audits, m->agree, m->stat, tr_monitor_upper(m)};
		checkpoint(m);
		return 1;
	}
	if (m->audits % m->hist_every == 0)
		checkpoint(m);
	return 0;
}

double tr_monitor_upper(const struct tr_monitor *m)
{
	double u = 1;
	for (int j = 0; j < TR_MON_GRID; j++)
		if (m->grid_rej[j]) {
			u = grid_m(j);
			break;
		}
	if (m->stat_max >= tr_monitor_threshold(m) && m->alpha < u)
		u = m->alpha;
	return u;
}

/* ---- the state file ---- */

static int put_point(struct tr_buf *b, const char *key, const struct tr_mon_point *p)
{
	return tr_buf_printf(b, "%s %llu %llu %llu %.17g %.17g\n", key, (unsigned long long)p->inputs,
			     (unsigned long long)p->audits, (unsigned long long)p->agree, p->stat, p->upper);
}

/* Every append is checked: a buffer that failed to grow part-way must never be written as a state. */
int tr_monitor_format(const struct tr_monitor *m, struct tr_buf *b)
{
	int bad = tr_buf_puts(b, "tracer-monitor 1\n");
	bad |= tr_buf_printf(b, "policy %s\nmethod %s\n", m->policy_sha[0] ? m->policy_sha : "-",
			     tr_mon_method_names[m->method]);
	bad |= tr_buf_printf(b, "alpha %.17g\ndelta %.17g\naudit_rate %.17g\naudit_seed %llu\n", m->alpha, m->delta,
			     m->audit_rate, (unsigned long long)m->audit_seed);
	bad |= tr_buf_printf(b, "inputs %llu\nhandled %llu\naudits %llu\nagree %llu\n", (unsigned long long)m->inputs,
			     (unsigned long long)m->handled, (unsigned long long)m->audits, (unsigned long long)m->agree);
	bad |= tr_buf_printf(b, "ew %.17g %.17g\nstat %.17g %.17g\n", m->ew_n, m->ew_k, m->stat, m->stat_max);
	for (int j = 0; j < TR_MON_GRID; j++)
		bad |= tr_buf_printf(b, "grid %d %.17g %d\n", j, m->grid_stat[j], m->grid_rej[j]);
	bad |= tr_buf_printf(b, "closed %d\n", m->closed);
	bad |= put_point(b, "closing", &m->closing);
	bad |= tr_buf_printf(b, "history %llu %d\n", (unsigned long long)m->hist_every, m->n_hist);
	for (int i = 0; i < m->n_hist; i++)
		bad |= put_point(b, "h", &m->hist[i]);
	bad |= tr_buf_puts(b, "end\n");
	return bad ? -1 : 0;
}

/* A line cursor over the state text. */
struct lines {
	const char *what, *p;
	size_t no;
	char line[256];
};

static int next_line(struct lines *l, const char *key, struct tr_err *e)
{
	if (!*l->p)
		return tr_fail(e, "%s:%zu: truncated: expected \"%s\"", l->what, l->no + 1, key);
	const char *nl = strchr(l->p, '\n');
	size_t n = nl ? (size_t)(nl - l->p) : strlen(l->p);
	l->no++;
	if (n >= sizeof l->line || !nl)
		return tr_fail(e, "%s:%zu: %s", l->what, l->no, nl ? "line too long" : "truncated line");
	memcpy(l->line, l->p, n);
	l->line[n] = 0;
	l->p = nl + 1;
	size_t kl = strlen(key);
	if (strncmp(l->line, key, kl) != 0 || (l->line[kl] != ' ' && l->line[kl] != 0))
		return tr_fail(e, "%s:%zu: expected \"%s\", got \"%.40s\"", l->what, l->no, key, l->line);
	return 0;
}

static int bad(struct lines *l, struct tr_err *e)
{
	return tr_fail(e, "%s:%zu: bad value: \"%.60s\"", l->what, l->no, l->line);
}

static int get_point(struct lines *l, const char *key, struct tr_mon_point *p, struct tr_err *e)
{
	unsigned long long a, b, c;
	int end = 0;
	char fmt[64];
	snprintf(fmt, sizeof fmt, "%s %%llu %%llu %%llu %%lf %%lf%%n", key);
	if (next_line(l, key, e))
		return -1;
	if (sscanf(l->line, fmt, &a, &b, &c, &p->stat, &p->upper, &end) != 5 || l->line[end] || c > b ||
	    !isfinite(p->stat) || !(p->upper >= 0 && p->upper <= 1))
		return bad(l, e);
	p->inputs = a, p->audits = b, p->agree = c;
	return 0;
}

int tr_monitor_parse(const char *what, const char *text, struct tr_monitor *m, struct tr_err *e)
{
	struct lines l = {.what = what, .p = text};
	memset(m, 0, sizeof *m);
	char meth[16], sha[80];
	unsigned long long a, b, c, d, seed;
	int end = 0, j, rej;
	if (next_line(&l, "tracer-monitor", e))
		return -1;
	if (strcmp(l.line, "tracer-monitor 1") != 0)
		return tr_fail(e, "%s:1: not a tracer monitor state (format 1)", what);
#define FIELD(key, fmt, n, ...)                                                                              \
	do {                                                                                                 \
		end = 0;                                                                                     \
		if (next_line(&l, key, e))                                                                   \
			return -1;                                                                           \
		if (sscanf(l.line + strlen(key) + 1, fmt "%n", __VA_ARGS__, &end) != n || l.line[strlen(key) + 1 + end]) \
			return bad(&l, e);                                                                   \
	} while (0)
	FIELD("policy", "%79s", 1, sha);
	if (strcmp(sha, "-") != 0 && strlen(sha) != 64)
		return bad(&l, e);
	snprintf(m->policy_sha, sizeof m->policy_sha, "%s", strcmp(sha, "-") ? sha : "");
	FIELD("method", "%15s", 1, meth);
	if (tr_mon_method_parse(meth) < 0)
		return bad(&l, e);
	m->method = (enum tr_mon_method)tr_mon_method_parse(meth);
	FIELD("alpha", "%lf", 1, &m->alpha);
	if (!(m->alpha > 0.5 && m->alpha < 1))
		return bad(&l, e);
	FIELD("delta", "%lf", 1, &m->delta);
	if (!(m->delta > 0 && m->delta < 1))
		return bad(&l, e);
	FIELD("audit_rate", "%lf", 1, &m->audit_rate);
	if (!(m->audit_rate >= 0 && m->audit_rate <= 1))
		return bad(&l, e);
	FIELD("audit_seed", "%llu", 1, &seed);
	m->audit_seed = seed;
	FIELD("inputs", "%llu", 1, &a);
	FIELD("handled", "%llu", 1, &b);
	FIELD("audits", "%llu", 1, &c);
	FIELD("agree", "%llu", 1, &d);
	if (b > a || d > c) /* audits fed by `tracer monitor` are not counted as routed inputs */
		return bad(&l, e);
	m->inputs = a, m->handled = b, m->audits = c, m->agree = d;
	FIELD("ew", "%lf %lf", 2, &m->ew_n, &m->ew_k);
	if (!(m->ew_n >= 0 && m->ew_k >= 0 && m->ew_k <= m->ew_n + 1e-9))
		return bad(&l, e);
	FIELD("stat", "%lf %lf", 2, &m->stat, &m->stat_max);
	if (!isfinite(m->stat) || !isfinite(m->stat_max) || m->stat > m->stat_max)
		return bad(&l, e);
	for (int i = 0; i < TR_MON_GRID; i++) {
		FIELD("grid", "%d %lf %d", 3, &j, &m->grid_stat[i], &rej);
		if (j != i || !isfinite(m->grid_stat[i]) || (rej != 0 && rej != 1))
			return bad(&l, e);
		m->grid_rej[i] = (unsigned char)rej;
	}
	FIELD("closed", "%d", 1, &m->closed);
	if (m->closed != 0 && m->closed != 1)
		return bad(&l, e);
	if (get_point(&l, "closing", &m->closing, e))
		return -1;
	int nh;
	FIELD("history", "%llu %d", 2, &a, &nh);
	if (a == 0 || nh < 0 || nh > TR_MON_HIST)
		return bad(&l, e);
	m->hist_every = a, m->n_hist = nh;
	for (int i = 0; i < nh; i++)
		if (get_point(&l, "h", &m->hist[i], e))
			return -1;
#undef FIELD
	if (next_line(&l, "end", e))
		return -1;
	if (strcmp(l.line, "end") != 0 || *l.p)
		return tr_fail(e, "%s:%zu: text after \"end\"", what, l.no);
	return 0;
}

void tr_monitor_path(const char *dir, char *buf, size_t size)
{
	size_t n = strlen(dir);
	while (n > 1 && dir[n - 1] == '/')
		n--;
	snprintf(buf, size, "%.*s.monitor", (int)n, dir);
}

int tr_monitor_save(const struct tr_monitor *m, const char *path, struct tr_err *e)
{
	struct tr_buf b = {0};
	if (tr_monitor_format(m, &b)) {
		tr_buf_free(&b);
		return tr_fail(e, "out of memory");
	}
	int rc = tr_write_atomic(path, b.data, b.len, e);
	tr_buf_free(&b);
	return rc;
}

int tr_monitor_load(const char *path, struct tr_monitor *m, struct tr_err *e)
{
	if (!tr_file_exists(path))
		return 0;
	char *text;
	size_t len;
	if (tr_read_file(path, &text, &len, e))
		return -1;
	int rc = strlen(text) != len ? tr_fail(e, "%s: holds a NUL byte", path) : tr_monitor_parse(path, text, m, e);
	tr_free(text);
	return rc ? -1 : 1;
}

int tr_monitor_open(const char *dir, struct tr_monitor *m, char *sha, struct tr_err *e)
{
	char path[4200], own[65];
	snprintf(path, sizeof path, "%s/manifest.json", dir);
	if (tr_sha256_file(path, own, e))
		return -1;
	if (sha)
		memcpy(sha, own, sizeof own);
	tr_monitor_path(dir, path, sizeof path);
	int got = tr_monitor_load(path, m, e);
	return got <= 0 ? got : strcmp(m->policy_sha, own) == 0;
}

static json_t *point_json(const struct tr_mon_point *p)
{
	return json_pack("{s:I, s:I, s:I, s:f, s:f}", "inputs", (json_int_t)p->inputs, "audits", (json_int_t)p->audits,
			 "agree", (json_int_t)p->agree, "stat", p->stat, "upper", p->upper);
}

void *tr_monitor_json(const struct tr_monitor *m)
{
	json_t *h = json_array();
	for (int i = 0; h && i < m->n_hist; i++)
		json_array_append_new(h, point_json(&m->hist[i]));
	return json_pack("{s:s, s:f, s:f, s:f, s:I, s:I, s:I, s:f, s:f, s:f, s:b, s:o, s:o}", "method",
			 tr_mon_method_names[m->method], "alpha", m->alpha, "delta", m->delta, "audit_rate", m->audit_rate,
			 "audit_seed", (json_int_t)m->audit_seed, "audits", (json_int_t)m->audits, "agree",
			 (json_int_t)m->agree, "stat", m->stat, "threshold", tr_monitor_threshold(m), "upper",
			 tr_monitor_upper(m), "closed", m->closed, "closing", m->closed ? point_json(&m->closing) : json_null(),
			 "history", h ? h : json_array());
}
