/*
 * collect.c - summing finished cells over seeds into table rows.
 */
#include "report.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tr_table_free(struct tr_table *t)
{
	tr_free(t->v);
	memset(t, 0, sizeof *t);
}

const struct tr_agg *tr_table_find(const struct tr_table *t, const char *spec, const char *set, const char *protocol,
				   const char *backend, long traces, const char *rule, double target)
{
	for (size_t i = 0; i < t->n; i++) {
		const struct tr_agg *a = &t->v[i];
		if ((!spec || strcmp(a->spec, spec) == 0) && strcmp(a->set, set) == 0 &&
		    strcmp(a->protocol, protocol) == 0 && strcmp(a->backend, backend) == 0 && a->traces == traces &&
		    strcmp(a->rule, rule) == 0 && fabs(a->target - target) < 1e-9)
			return a;
	}
	return NULL;
}

static struct tr_agg *row_for(struct tr_table *t, const char *spec, const struct tr_cell *c, const char *rule,
			      double target)
{
	const char *proto = tr_protocol_names[c->protocol];
	char split[16] = "default";
	if (c->split)
		snprintf(split, sizeof split, "%d/%d/%d", c->split[0], c->split[1], c->split[2]);
	for (size_t i = 0; i < t->n; i++) {
		struct tr_agg *a = &t->v[i];
		if (strcmp(a->spec, spec) == 0 && strcmp(a->set, c->set) == 0 && strcmp(a->protocol, proto) == 0 &&
		    strcmp(a->backend, c->backend) == 0 && a->traces == c->traces && strcmp(a->rule, rule) == 0 &&
		    fabs(a->target - target) < 1e-9 && strcmp(a->split, split) == 0)
			return a;
	}
	if (tr_grow(&t->v, &t->cap, t->n + 1, sizeof *t->v))
		return NULL;
	struct tr_agg *a = &t->v[t->n++];
	memset(a, 0, sizeof *a);
	snprintf(a->spec, sizeof a->spec, "%s", spec);
	snprintf(a->set, sizeof a->set, "%s", c->set);
	snprintf(a->protocol, sizeof a->protocol, "%s", proto);
	snprintf(a->backend, sizeof a->backend, "%s", c->backend);
	snprintf(a->rule, sizeof a->rule, "%s", rule);
	snprintf(a->split, sizeof a->split, "%s", split);
	a->traces = c->traces;
	a->target = target;
	a->cov_min = INFINITY;
	a->cov_max = -INFINITY;
	return a;
}

static double num(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	return json_is_number(v) ? json_number_value(v) : NAN;
}

int tr_table_add_cell(struct tr_table *t, const struct tr_spec *s, const struct tr_cell *c, const char *path,
		      const char *time_path, struct tr_err *e)
{
	json_error_t jerr;
	json_t *cell = json_load_file(path, 0, &jerr);
	json_t *res = json_object_get(cell, "results");
	if (!cell || !json_is_array(res)) {
		tr_fail(e, "%s:%d: not a cell file: %s", path, jerr.line, cell ? "no results" : jerr.text);
		json_decref(cell);
		return -1;
	}
	double fit = NAN, used = num(json_object_get(cell, "splits"), "used");
	FILE *tf = fopen(time_path, "r");
	if (tf) {
		if (fscanf(tf, "%lf", &fit) != 1)
			fit = NAN;
		fclose(tf);
	}
	int rc = 0;
	size_t k;
	json_t *r;
	json_array_foreach(res, k, r)
	{
		const char *rule = json_string_value(json_object_get(r, "rule"));
		const char *fam = json_string_value(json_object_get(r, "family"));
		double target = num(r, "target");
		const struct tr_pol_family *pf = tr_pol_family_find(fam);
		int fi = pf ? 1 + tr_pol_family_index(pf) : fam && strcmp(fam, "refused") == 0 ? 0 : -1;
		json_t *wo = json_object_get(r, "without_ood");
		struct tr_agg *a = rule && fi >= 0 && json_is_object(wo) ? row_for(t, s->name, c, rule, target) : NULL;
		if (!a) {
			rc = tr_fail(e, "%s: bad result %zu", path, k);
			break;
		}
		double cov = num(r, "test_coverage"), agr = num(r, "test_agreement"), gold = num(r, "gold_accuracy");
		a->seeds++;
		a->cov_sum += cov;
		a->cov_min = fmin(a->cov_min, cov);
		a->cov_max = fmax(a->cov_max, cov);
		if (!isnan(agr))
			a->agr_sum += agr, a->agr_n++;
		if (json_is_true(json_object_get(r, "violation")))
			a->violations++, a->gap_sum += target - agr;
		a->cal_cov_sum += num(r, "cal_coverage");
		a->e2e_sum += num(r, "e2e_agreement");
		if (!isnan(gold))
			a->gold_sum += gold, a->gold_n++;
		a->fam[fi]++;
		double wagr = num(wo, "test_agreement");
		a->cov_noood_sum += num(wo, "test_coverage");
		if (!isnan(wagr))
			a->agr_noood_sum += wagr, a->agr_noood_n++;
		a->violations_noood += json_is_true(json_object_get(wo, "violation"));
		if (!isnan(fit))
			a->fit_sum += fit, a->fit_n++;
		a->n_traces_sum += used;
	}
	json_decref(cell);
	return rc;
}

int tr_table_add_spec(struct tr_table *t, const struct tr_spec *s, const char *results, FILE *missing_log,
		      struct tr_err *e)
{
	struct tr_cell *cells;
	size_t n;
	if (tr_spec_cells(s, &cells, &n, e))
		return -1;
	int rc = 0;
	for (size_t i = 0; i < n && !rc; i++) {
		char path[PATH_MAX], tpath[PATH_MAX];
		tr_cell_path(results, s, &cells[i], path, sizeof path);
		t->cells++;
		if (!tr_file_exists(path)) {
			t->missing++;
			if (missing_log)
				fprintf(missing_log, "missing: %s cell %zu (%s %s %s traces=%ld seed=%llu)\n", s->name, i,
					cells[i].set, tr_protocol_names[cells[i].protocol], cells[i].backend, cells[i].traces,
					(unsigned long long)cells[i].seed);
			continue;
		}
		snprintf(tpath, sizeof tpath, "%s/cells/%s/%s.time", results, s->name, cells[i].hash);
		rc = tr_table_add_cell(t, s, &cells[i], path, tpath, e);
	}
	tr_free(cells);
	return rc;
}

/* The family most seeds deployed (ties: refused, then the first in the family table). */
static const char *modal_family(const struct tr_agg *a)
{
	int best = 0;
	for (int f = 1; f <= tr_pol_family_count(); f++)
		if (a->fam[f] > a->fam[best])
			best = f;
	return tr_pol_family_name(tr_pol_family_at(best - 1));
}

static void put_num(struct tr_buf *b, double v, const char *fmt)
{
	if (isfinite(v))
		tr_buf_printf(b, fmt, v);
	else
		tr_buf_puts(b, "NaN");
}

int tr_table_write_tsv(const struct tr_table *t, const char *name, struct tr_buf *out)
{
	tr_buf_puts(out, "set\tprotocol\tbackend\ttraces\trule\ttarget\tseeds\tcoverage\tcoverage_min\tcoverage_max\t"
			 "agreement\tviolations\tviolation_rate\tcal_coverage\te2e_agreement\tgold_accuracy\t"
			 "family\ttraces_used\tfit_seconds\tcoverage_no_ood\tagreement_no_ood\tviolations_no_ood\tviolation_depth\t"
			 "split\trefused");
	for (int f = 0; f < tr_pol_family_count(); f++) /* one count column per family, last: the table grows here */
		tr_buf_printf(out, "\t%s", tr_pol_family_at(f)->name);
	tr_buf_puts(out, "\n");
	for (size_t i = 0; i < t->n; i++) {
		const struct tr_agg *a = &t->v[i];
		if (strcmp(a->spec, name) != 0)
			continue;
		tr_buf_printf(out, "%s\t%s\t%s\t", a->set, a->protocol, a->backend);
		if (a->traces < 0)
			tr_buf_puts(out, "all");
		else
			tr_buf_printf(out, "%ld", a->traces);
		tr_buf_printf(out, "\t%s\t%.2f\t%d\t", a->rule, a->target, a->seeds);
		put_num(out, a->cov_sum / a->seeds, "%.4f");
		tr_buf_printf(out, "\t%.4f\t%.4f\t", a->cov_min, a->cov_max);
		put_num(out, a->agr_n ? a->agr_sum / a->agr_n : NAN, "%.4f");
		tr_buf_printf(out, "\t%d\t%.4f\t", a->violations, (double)a->violations / a->seeds);
		put_num(out, a->cal_cov_sum / a->seeds, "%.4f");
		tr_buf_puts(out, "\t");
		put_num(out, a->e2e_sum / a->seeds, "%.4f");
		tr_buf_puts(out, "\t");
		put_num(out, a->gold_n ? a->gold_sum / a->gold_n : NAN, "%.4f");
		tr_buf_printf(out, "\t%s\t%.0f\t", modal_family(a), a->n_traces_sum / a->seeds);
		put_num(out, a->fit_n ? a->fit_sum / a->fit_n : NAN, "%.2f");
		tr_buf_puts(out, "\t");
		put_num(out, a->cov_noood_sum / a->seeds, "%.4f");
		tr_buf_puts(out, "\t");
		put_num(out, a->agr_noood_n ? a->agr_noood_sum / a->agr_noood_n : NAN, "%.4f");
		tr_buf_printf(out, "\t%d\t", a->violations_noood);
		put_num(out, a->violations ? a->gap_sum / a->violations : NAN, "%.4f"); /* mean α - agreement, violated */
		tr_buf_printf(out, "\t%s", a->split[0] ? a->split : "default");
		for (int f = 0; f <= tr_pol_family_count(); f++)
			tr_buf_printf(out, "\t%d", a->fam[f]);
		tr_buf_puts(out, "\n");
	}
	return out->data ? 0 : -1;
}
