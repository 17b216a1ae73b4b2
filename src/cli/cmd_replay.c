/*
 * cmd_replay.c - `tracer replay POLICY TRAFFIC`: a traffic stream through route + audit + monitor, with an
 * optional change point, as a JSONL timeline and a summary.
 */
#include <gsl/gsl_randist.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../drift/drift.h"
#include "cli.h"

const char cmd_replay_usage[] =
	"usage: tracer replay POLICY TRAFFIC [--part P] [--shuffle SEED] [--streams N]\n"
	"           [--switch-at N --then OTHER [--then-part P] [--then-mix F]]\n"
	"           [--audit-rate R,...] [--audit-seed S] [--monitor-delta D] [--alpha A] [--method betting,mixture]\n"
	"           [--every K] [--window W] [--timeline FILE] [--summary FILE] [--state FILE]\n"
	"  Streams TRAFFIC (DATASET:TEACHER or trace JSONL; --part traces|test|extra|all, default the test part\n"
	"  of a named set and every row of a file) through the policy in file order, or in a seeded shuffle.\n"
	"  A handled input is audited (sent to the teacher too) with probability R (default 0.02), decided by a\n"
	"  hash of its id under --audit-seed (default: the shuffle seed, else 0); audited answers feed the\n"
	"  monitor (default betting, level D = 0.05, α = the policy's target). When it rejects \"agreement on\n"
	"  handled >= α\" the gate closes and every later input goes to the teacher.\n"
	"  --switch-at N --then OTHER: after N inputs the stream continues with OTHER's rows (--then-part, default\n"
	"  as --part), shuffled with the same seed; with --then-mix F each later input comes from OTHER with\n"
	"  probability F and from TRAFFIC otherwise, until either runs out. Labels outside the policy's label\n"
	"  space (CLINC150's oos) never agree.\n"
	"  --timeline FILE: JSONL every K inputs (default 100) with coverage, agreement on handled (cumulative and\n"
	"  over the last W handled inputs, default 250; known offline only), audits, the monitor's statistic\n"
	"  ln W, its threshold ln(1/D) and upper confidence bound, and whether the gate is closed.\n"
	"  The summary (stdout, or --summary FILE) is one JSON line: detected, detect_at, delay after the change\n"
	"  point, wrong answers served (after the change), audits, teacher calls, oos inputs and those the OOD\n"
	"  guard deferred, after the method, audit rate, α and D. Lists of rates or methods replay every\n"
	"  combination (the timeline is the first's). --streams N replays N shuffles (seeds SEED..SEED+N-1,\n"
	"  audit seeds likewise): one summary line each, the timeline of the first. --state FILE continues the\n"
	"  monitor saved in FILE (same policy; its own rate, seed, level and method win) and saves it\n"
	"  atomically after every audit.\n";

/* One traffic source: its set and its rows in the chosen part (shallow copies). */
struct source {
	struct tr_traceset ts;
	struct tr_trace *rows;
	const char **teacher;
	size_t n;
	struct tr_stream_item *items;
};

static int parse_part(const char *s)
{
	return strcmp(s, "all") == 0 ? TR_NPARTS : tr_part_parse(s);
}

static int source_open(const char *spec, int part, const struct tr_policy *p, struct source *s, struct tr_err *e)
{
	memset(s, 0, sizeof *s);
	if (tr_traceset_open(spec, &s->ts, e))
		return -1;
	if (part < 0)
		part = s->ts.part[TR_PART_TEST].n ? TR_PART_TEST : TR_PART_TRACES;
	size_t n = part == TR_NPARTS ? s->ts.part[TR_PART_TRACES].n + s->ts.part[TR_PART_TEST].n : s->ts.part[part].n;
	if (n == 0)
		return tr_fail(e, "%s: no rows in part %s", spec, part == TR_NPARTS ? "all" : tr_part_names[part]);
	s->rows = tr_malloc(n * sizeof *s->rows);
	s->teacher = tr_malloc(n * sizeof *s->teacher);
	s->items = tr_malloc(n * sizeof *s->items);
	if (!s->rows || !s->teacher || !s->items)
		return tr_fail(e, "out of memory");
	for (int k = 0; k < TR_NPARTS; k++)
		if (k == part || (part == TR_NPARTS && k != TR_PART_EXTRA))
			for (size_t i = 0; i < s->ts.part[k].n; i++)
				s->rows[s->n++] = s->ts.part[k].v[i];
	for (size_t i = 0; i < n; i++)
		s->teacher[i] = s->rows[i].teacher >= 0 ? s->ts.labels.names[s->rows[i].teacher] : s->ts.extra_label;
	return tr_replay_route(p, s->rows, s->teacher, n, s->items, e);
}

static void source_free(struct source *s)
{
	tr_free(s->rows), tr_free(s->teacher), tr_free(s->items);
	tr_traceset_free(&s->ts);
}

/* 0..n-1, shuffled when rng is given. */
static size_t *order(size_t n, gsl_rng *rng)
{
	size_t *o = tr_malloc((n ? n : 1) * sizeof *o);
	for (size_t i = 0; o && i < n; i++)
		o[i] = i;
	if (o && rng && n > 1)
		gsl_ran_shuffle(rng, o, n, sizeof *o);
	return o;
}

struct opts {
	int shuffle;
	uint64_t seed;
	size_t switch_at;
	double mix;
};

/* Builds one stream (items copied in stream order); returns its length and sets *sw to the change point. */
static int build_stream(const struct source *a, const struct source *b, const struct opts *o, uint64_t seed,
			struct tr_stream_item *out, size_t *len, size_t *sw, struct tr_err *e)
{
	int rc = -1;
	gsl_rng *rng = o->shuffle || o->mix > 0 ? tr_rng_new(seed) : NULL;
	size_t *oa = order(a->n, o->shuffle ? rng : NULL), *ob = b ? order(b->n, o->shuffle ? rng : NULL) : NULL;
	size_t n = 0, ia = 0, ib = 0;
	if (!oa || (b && !ob) || (!rng && (o->shuffle || o->mix > 0))) {
		tr_fail(e, "out of memory");
		goto out;
	}
	size_t first = b && o->switch_at < a->n ? o->switch_at : a->n;
	while (ia < first)
		out[n] = a->items[oa[ia++]], out[n++].phase = 0;
	*sw = b ? n : n + 1;
	if (b) {
		for (;;) {
			int from_b = o->mix > 0 ? gsl_rng_uniform(rng) < o->mix : 1;
			if (from_b ? ib == b->n : ia == a->n)
				break;
			out[n] = from_b ? b->items[ob[ib++]] : a->items[oa[ia++]];
			out[n++].phase = 1;
		}
	}
	if (!b)
		*sw = n;
	*len = n;
	rc = 0;
out:
	tr_free(oa), tr_free(ob);
	if (rng)
		gsl_rng_free(rng);
	return rc;
}

/* A comma-separated list of audit rates in (0, 1] (num) or of monitor methods (meth). 0 or -1. */
static int list(const char *s, double *num, int max, int *n, int *meth)
{
	char buf[256];
	snprintf(buf, sizeof buf, "%s", s);
	*n = 0;
	for (char *save, *w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
		if (*n == max)
			return -1;
		if (num ? tr_cli_number(w, 0, 1.0000001, &num[*n]) : (meth[*n] = tr_mon_method_parse(w)) < 0)
			return -1;
		(*n)++;
	}
	return *n ? 0 : -1;
}

int cmd_replay(int argc, char **argv)
{
	const char *dir = NULL, *traffic = NULL, *other = NULL, *tl_path = NULL, *sum_path = NULL, *state = NULL;
	int part = -1, then_part = -2, methods[2] = {TR_MON_BETTING}, n_methods = 1, n_rates = 1, have_audit_seed = 0;
	unsigned long long v, streams = 1, every = 100, window = 250, audit_seed = 0;
	double rates[8] = {0.02}, delta = 0.05, alpha = 0;
	struct opts o = {0};
	o.switch_at = SIZE_MAX;
	struct tr_args ar = {.verb = "replay",
			     .spec = "--part= --then-part= --then= --shuffle= --streams= --switch-at= --then-mix= "
				     "--audit-rate= --audit-seed= --monitor-delta= --alpha= --method= --every= --window= "
				     "--timeline= --summary= --state=",
			     .pos = (const char **[]){&dir, &traffic},
			     .n_pos = 2};
	int k;
	while ((k = tr_args_next(&ar, argc, argv)) == TR_ARG_OPT) {
		const char *a = ar.opt, *val = ar.val;
		int bad = 0;
		if (strcmp(a, "--part") == 0)
			bad = (part = parse_part(val)) < 0;
		else if (strcmp(a, "--then-part") == 0)
			bad = (then_part = parse_part(val)) < 0;
		else if (strcmp(a, "--then") == 0)
			other = val;
		else if (strcmp(a, "--shuffle") == 0)
			bad = tr_cli_count(val, &v), o.shuffle = 1, o.seed = v;
		else if (strcmp(a, "--streams") == 0)
			bad = tr_cli_count(val, &streams) || streams == 0 || streams > 100000;
		else if (strcmp(a, "--switch-at") == 0)
			bad = tr_cli_count(val, &v), o.switch_at = (size_t)v;
		else if (strcmp(a, "--then-mix") == 0)
			bad = tr_cli_number(val, 0, 1, &o.mix);
		else if (strcmp(a, "--audit-rate") == 0)
			bad = list(val, rates, 8, &n_rates, NULL);
		else if (strcmp(a, "--audit-seed") == 0)
			bad = tr_cli_count(val, &audit_seed), have_audit_seed = 1;
		else if (strcmp(a, "--monitor-delta") == 0)
			bad = tr_cli_number(val, 0, 1, &delta);
		else if (strcmp(a, "--alpha") == 0)
			bad = tr_cli_number(val, 0.5, 1, &alpha);
		else if (strcmp(a, "--method") == 0)
			bad = list(val, NULL, 2, &n_methods, methods);
		else if (strcmp(a, "--every") == 0)
			bad = tr_cli_count(val, &every);
		else if (strcmp(a, "--window") == 0)
			bad = tr_cli_count(val, &window) || window == 0;
		else if (strcmp(a, "--timeline") == 0)
			tl_path = val;
		else if (strcmp(a, "--summary") == 0)
			sum_path = val;
		else if (strcmp(a, "--state") == 0)
			state = val;
		if (bad)
			return tr_cli_usage_error("replay", "bad value for %s: \"%s\"", a, val);
	}
	if (k < 0)
		return TR_EXIT_USAGE;
	if (!dir || !traffic)
		return tr_cli_usage_error("replay", "expected POLICY and TRAFFIC");
	if ((o.switch_at != SIZE_MAX) != (other != NULL))
		return tr_cli_usage_error("replay", "--switch-at and --then go together");
	if (streams > 1 && !o.shuffle)
		return tr_cli_usage_error("replay", "--streams needs --shuffle");
	if (state && (streams > 1 || n_rates > 1 || n_methods > 1))
		return tr_cli_usage_error("replay", "--state replays one stream at one audit rate with one method");
	if (!have_audit_seed)
		audit_seed = o.seed;
	struct tr_err e;
	struct tr_policy *p;
	if (tr_cli_policy_load(dir, &p, &e))
		return tr_cli_data_error(&e);
	struct source a, b;
	int have_b = 0, rc = -1;
	struct tr_stream_item *items = NULL;
	struct tr_buf tl = {0}, sum = {0};
	char sha[65] = "", mpath[PATH_MAX];
	snprintf(mpath, sizeof mpath, "%s/manifest.json", dir);
	if (source_open(traffic, part, p, &a, &e))
		goto out_a;
	if (other && (have_b = 1, source_open(other, then_part == -2 ? part : then_part, p, &b, &e)))
		goto out;
	if (tr_sha256_file(mpath, sha, &e))
		goto out;
	if (!(items = tr_malloc((a.n + (have_b ? b.n : 0)) * sizeof *items))) {
		tr_fail(&e, "out of memory");
		goto out;
	}
	struct tr_replay_opts ro = {.alpha = alpha > 0 ? alpha : p->target, .delta = delta, .every = every,
				    .window = window};
	for (int mi = 0; mi < n_methods; mi++)
	for (int ri = 0; ri < n_rates; ri++)
	for (unsigned long long k = 0; k < streams; k++) {
		ro.method = (enum tr_mon_method)methods[mi], ro.audit_rate = rates[ri];
		int first = mi == 0 && ri == 0 && k == 0;
		size_t sw, n;
		if (build_stream(&a, have_b ? &b : NULL, &o, o.seed + k, items, &n, &sw, &e))
			goto out;
		ro.audit_seed = audit_seed + k;
		struct tr_monitor m;
		tr_monitor_init(&m, ro.method, ro.alpha, ro.delta, ro.audit_rate, ro.audit_seed);
		snprintf(m.policy_sha, sizeof m.policy_sha, "%s", sha);
		if (state) {
			struct tr_monitor old;
			int got = tr_monitor_load(state, &old, &e);
			if (got < 0)
				goto out;
			if (got && strcmp(old.policy_sha, sha) == 0) {
				/* the same policy: continue its test with its own settings (a refit starts afresh) */
				m = old;
				ro.method = m.method, ro.alpha = m.alpha, ro.delta = m.delta;
				ro.audit_rate = m.audit_rate, ro.audit_seed = m.audit_seed;
			}
		}
		struct tr_replay_summary s;
		if (state) {
			/* persist after every audit: one input at a time */
			uint64_t audits = m.audits;
			for (size_t i = 0; i < n; i++) {
				if (tr_replay_stream(items + i, 1, sw > i ? sw - i : 0, &ro, &m, NULL, &s, &e))
					goto out;
				if (m.audits != audits && tr_monitor_save(&m, state, &e))
					goto out;
				audits = m.audits;
			}
		}
		if (!state && tr_replay_stream(items, n, sw, &ro, &m, first && tl_path ? &tl : NULL, &s, &e))
			goto out;
		if (state) {
			/* the summary of a persisted run covers the monitor's whole life */
			memset(&s, 0, sizeof s);
			s.n = n, s.switch_at = sw, s.detected = m.closed, s.detect_at = m.closing.inputs;
			s.delay = -1, s.audits = m.audits, s.audit_agree = m.agree, s.stat = m.stat;
			s.upper = tr_monitor_upper(&m), s.agreement_before = s.agreement_after = NAN;
		}
		int bad = tr_buf_printf(&sum, "{\"method\":\"%s\",\"audit_rate\":%g,\"alpha\":%g,\"delta\":%g,",
					tr_mon_method_names[ro.method], ro.audit_rate, ro.alpha, ro.delta);
		if (streams > 1)
			bad |= tr_buf_printf(&sum, "\"stream\":%llu,\"seed\":%llu,\"audit_seed\":%llu,", k,
					     (unsigned long long)(o.seed + k), (unsigned long long)ro.audit_seed);
		struct tr_buf one = {0};
		bad |= tr_replay_summary_json(&s, &one) || tr_buf_puts(&sum, one.data + 1);
		tr_buf_free(&one);
		if (bad) {
			tr_fail(&e, "out of memory");
			goto out;
		}
	}
	if (tl_path && tr_write_atomic(tl_path, tl.data ? tl.data : "", tl.len, &e))
		goto out;
	rc = tr_cli_output(sum_path, sum.data ? sum.data : "", sum.len, &e);
out:
	if (have_b)
		source_free(&b);
out_a:
	source_free(&a);
	tr_free(items);
	tr_buf_free(&tl), tr_buf_free(&sum);
	tr_policy_free(p);
	return rc ? tr_cli_data_error(&e) : TR_EXIT_OK;
}
