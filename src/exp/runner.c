/*
 * runner.c - computing one cell: its traffic (official or pooled), its trace count, the fit and the
 * evaluation, written atomically to RESULTS/cells/SPEC/HASH.json.
 */
#include "exp.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Seeds of a cell's random choices, derived from its seed so that cells never share a stream. */
#define POOL_SEED(s) ((s) * 1000003ull + 101)
#define SUBSAMPLE_SEED(s, n) ((s) * 1000003ull + 7919ull * (uint64_t)(n) + 202)

int tr_cell_finished(const char *path, const struct tr_cell *c)
{
	json_t *cell = json_load_file(path, 0, NULL);
	const char *fmt = json_string_value(json_object_get(cell, "format"));
	const char *hash = json_string_value(json_object_get(json_object_get(cell, "params"), "hash"));
	json_t *ver = json_object_get(cell, "version");
	int done = fmt && strcmp(fmt, "tracer-cell") == 0 && json_is_integer(ver) &&
		   json_integer_value(ver) == TR_CELL_FORMAT && hash && strcmp(hash, c->hash) == 0 &&
		   json_is_array(json_object_get(cell, "results"));
	json_decref(cell);
	return done;
}

int tr_pool_split(const struct tr_traceset *ts, uint64_t seed, struct tr_rows *traces, struct tr_rows *test,
		  struct tr_err *e)
{
	size_t nt = ts->part[TR_PART_TRACES].n, nx = ts->part[TR_PART_TEST].n;
	struct tr_rows pool = {0};
	memset(traces, 0, sizeof *traces), memset(test, 0, sizeof *test);
	if (!(pool.v = tr_malloc((nt + nx ? nt + nx : 1) * sizeof *pool.v)))
		return tr_fail(e, "out of memory");
	memcpy(pool.v, ts->part[TR_PART_TRACES].v, nt * sizeof *pool.v);
	memcpy(pool.v + nt, ts->part[TR_PART_TEST].v, nx * sizeof *pool.v);
	int rc = tr_split_rows(pool.v, nt + nx, (const double[2]){0.7, 1 - 0.7}, POOL_SEED(seed), traces, test, e);
	tr_free(pool.v);
	return rc;
}

/*
 * The spec's crossfit rule evaluated once more under crossfit calibration (its own folds and halves),
 * appended to the cell's results as rule "crossfit", with that fit's splits under "crossfit_splits".
 */
static int add_crossfit(const struct tr_spec *s, const struct tr_traceset *view, const struct tr_rows *test,
			const struct tr_fit_options *o, json_t *cell, double *secs, struct tr_err *e)
{
	struct tr_fit_options cf = *o;
	cf.crossfit = 1;
	json_t *x = NULL;
	double more = 0;
	if (tr_cell_evaluate(view, test, &cf, &s->crossfit, 1, &x, &more, e))
		return -1;
	json_t *all = json_object_get(cell, "results"), *r;
	size_t i;
	json_array_foreach(json_object_get(x, "results"), i, r)
	{
		json_object_set_new(r, "rule", json_string("crossfit"));
		json_object_set_new(r, "crossfit_rule", json_string(s->crossfit->name));
		json_array_append(all, r);
	}
	json_object_set(cell, "crossfit_splits", json_object_get(x, "splits"));
	json_decref(x);
	*secs += more;
	return 0;
}

/*
 * The spec's oof rules evaluated once more under oof calibration (one fit: its own fit and calibration
 * parts), appended to the cell's results as rules "R-oof", with that fit's splits under "oof_splits".
 * A spec without a gates line has no holdout fit: *cell is NULL and becomes the oof fit's cell.
 */
static int add_oof(const struct tr_spec *s, const struct tr_traceset *view, const struct tr_rows *test,
		   const struct tr_fit_options *o, json_t **cellp, double *secs, struct tr_err *e)
{
	struct tr_fit_options of = *o;
	of.oof = 1, of.oof_cal = s->oof_cal;
	json_t *x = NULL, *r;
	double more = 0;
	if (tr_cell_evaluate(view, test, &of, s->oof, s->n_oof, &x, &more, e))
		return -1;
	json_t *all = *cellp ? json_object_get(*cellp, "results") : NULL;
	size_t i;
	json_array_foreach(json_object_get(x, "results"), i, r)
	{
		char name[64];
		snprintf(name, sizeof name, "%s-oof", json_string_value(json_object_get(r, "rule")));
		json_object_set_new(r, "rule", json_string(name));
		if (*cellp)
			json_array_append(all, r);
	}
	if (!*cellp) {
		*cellp = x;
		x = NULL;
	}
	json_object_set(*cellp, "oof_splits", json_object_get(x ? x : *cellp, "splits"));
	json_decref(x);
	*secs += more;
	return 0;
}

/*
 * `subsample iid`: a share `first` of the rows (kept in order) into sub, grouped but blind to labels, so
 * each label's count varies as it would in independent draws from the traffic. The stratified default
 * fixes every label's count, and then a label-blind split of the traces (oof's fit / calibration split)
 * gives the calibration part the complement of the fit part's label counts (PAPER.md, honesty-iid).
 */
static int subsample_blind(const struct tr_rows *rows, double first, uint64_t seed, struct tr_rows *sub,
			   struct tr_err *e)
{
	size_t n = rows->n;
	int *zero = tr_calloc(n ? n : 1, sizeof *zero), *part = tr_malloc((n ? n : 1) * sizeof *part), rc = -1;
	const char **group = tr_malloc((n ? n : 1) * sizeof *group);
	sub->n = 0;
	sub->v = tr_malloc((n ? n : 1) * sizeof *sub->v);
	if (!zero || !part || !group || !sub->v) {
		tr_fail(e, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		group[i] = tr_trace_group(&rows->v[i]);
	if (tr_split_grouped(n, zero, group, (const double[2]){first, 1 - first}, 2, seed, 0, part, e))
		goto out;
	for (size_t i = 0; i < n; i++)
		if (part[i] == 0)
			sub->v[sub->n++] = rows->v[i];
	rc = 0;
out:
	tr_free(zero), tr_free(part), tr_free(group);
	return rc;
}

int tr_cell_run(const struct tr_spec *s, const struct tr_cell *c, const char *results, int threads, int *skipped,
		struct tr_err *e)
{
	char path[PATH_MAX], dir[PATH_MAX];
	tr_cell_path(results, s, c, path, sizeof path);
	*skipped = tr_cell_finished(path, c);
	if (*skipped)
		return 0;
	snprintf(dir, sizeof dir, "%s/cells/%s", results, s->name);
	if (tr_mkdirs(dir, e))
		return -1;
	struct tr_traceset ts;
	if (tr_traceset_open(c->set, &ts, e))
		return -1;
	/* the cell's own view: shallow copies of the set's rows (never freed one by one) */
	struct tr_rows traces = {0}, test = {0}, sub = {0};
	struct tr_traceset view = ts;
	json_t *cell = NULL;
	int rc = -1;
	if (c->protocol == TR_PROTO_POOLED) {
		if (tr_pool_split(&ts, c->seed, &traces, &test, e))
			goto out;
	} else {
		const struct tr_rows *t = &ts.part[TR_PART_TRACES], *x = &ts.part[TR_PART_TEST];
		traces.v = tr_malloc((t->n ? t->n : 1) * sizeof *traces.v);
		test.v = tr_malloc((x->n ? x->n : 1) * sizeof *test.v);
		if (!traces.v || !test.v) {
			tr_fail(e, "out of memory");
			goto out;
		}
		memcpy(traces.v, t->v, t->n * sizeof *traces.v), traces.n = t->n;
		memcpy(test.v, x->v, x->n * sizeof *test.v), test.n = x->n;
	}
	struct tr_rows *fitrows = &traces;
	if (c->traces >= 0 && (size_t)c->traces < traces.n) {
		double first = (double)c->traces / (double)traces.n;
		uint64_t seed = SUBSAMPLE_SEED(c->seed, c->traces);
		if (s->subsample_iid ? subsample_blind(&traces, first, seed, &sub, e)
				     : tr_split_rows(traces.v, traces.n, (const double[2]){first, 1 - first}, seed, &sub, NULL, e))
			goto out;
		fitrows = &sub;
	}
	memset(view.part, 0, sizeof view.part);
	view.part[TR_PART_TRACES] = *fitrows;
	struct tr_fit_options o = {.backend = c->backend, .grid = c->grid, .delta = s->delta, .seed = c->seed,
				   .n_targets = s->n_targets, .threads = threads};
	memcpy(o.targets, s->targets, sizeof o.targets);
	if (c->split)
		memcpy(o.split, c->split, sizeof o.split);
	o.target = o.targets[0];
	double secs = 0;
	if (s->n_gates && tr_cell_evaluate(&view, &test, &o, s->gates, s->n_gates, &cell, &secs, e))
		goto out;
	if (s->crossfit && add_crossfit(s, &view, &test, &o, cell, &secs, e))
		goto out;
	if (s->n_oof && add_oof(s, &view, &test, &o, &cell, &secs, e))
		goto out;
	json_t *params = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:I, s:s}", "spec", s->name, "set", c->set,
				   "protocol", tr_protocol_names[c->protocol], "backend", c->backend, "grid",
				   c->grid ? c->grid : "default", "traces",
				   c->traces < 0 ? json_string("all") : json_integer(c->traces), "seed",
				   (json_int_t)c->seed, "hash", c->hash);
	json_object_set_new(cell, "format", json_string("tracer-cell"));
	json_object_set_new(cell, "version", json_integer(TR_CELL_FORMAT));
	if (c->split)
		json_object_set_new(params, "split", json_pack("[i, i, i]", c->split[0], c->split[1], c->split[2]));
	if (s->subsample_iid) /* absent otherwise: earlier cells keep their bytes */
		json_object_set_new(params, "subsample", json_string("iid"));
	json_object_set_new(cell, "params", params);
	char *text = json_dumps(cell, JSON_INDENT(1) | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
	if (!text) {
		tr_fail(e, "out of memory");
		goto out;
	}
	size_t len = strlen(text);
	text[len++] = '\n'; /* json_dumps leaves room: its terminating NUL becomes the newline */
	char timing[PATH_MAX], line[64];
	snprintf(timing, sizeof timing, "%s/cells/%s/%s.time", results, s->name, c->hash);
	int n = snprintf(line, sizeof line, "%.3f\n", secs);
	/* the timing first: a cell counts as done once its .json exists */
	rc = tr_write_atomic(timing, line, (size_t)n, e) || tr_write_atomic(path, text, len, e) ? -1 : 0;
	free(text);
out:
	json_decref(cell);
	tr_free(traces.v), tr_free(test.v), tr_free(sub.v);
	tr_traceset_free(&ts);
	return rc;
}
