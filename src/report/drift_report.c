/*
 * drift_report.c - the drift study's tables and its PAPER.md section, from RESULTS/drift (written by
 * scripts/drift-study.sh through `tracer replay`).
 */
#include "report.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One row: a scenario × set × α × monitor method × audit rate, over its streams (all policy seeds). */
struct drow {
	char scenario[32], set[64], method[16];
	double alpha, rate;
	int streams, detected, before_switch, policies;
	long delays[512];
	int n_delays;
	double wrong_after, audits, calls, handled, n_sum;
	double agr_before_min, agr_before_max, agr_after_sum;
	int agr_after_n;
	long novel, novel_ood, novel_handled;
};

struct dtab {
	struct drow *v;
	size_t n, cap;
};

static struct drow *drow_for(struct dtab *t, const char *sc, const char *set, double alpha, const char *method, double rate)
{
	for (size_t i = 0; i < t->n; i++) {
		struct drow *r = &t->v[i];
		if (!strcmp(r->scenario, sc) && !strcmp(r->set, set) && !strcmp(r->method, method) &&
		    fabs(r->alpha - alpha) < 1e-9 && fabs(r->rate - rate) < 1e-9)
			return r;
	}
	if (tr_grow(&t->v, &t->cap, t->n + 1, sizeof *t->v))
		return NULL;
	struct drow *r = &t->v[t->n++];
	memset(r, 0, sizeof *r);
	snprintf(r->scenario, sizeof r->scenario, "%s", sc);
	snprintf(r->set, sizeof r->set, "%s", set);
	snprintf(r->method, sizeof r->method, "%s", method);
	r->alpha = alpha, r->rate = rate;
	r->agr_before_min = INFINITY, r->agr_before_max = -INFINITY;
	return r;
}

static double jnum(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	return json_is_number(v) ? json_number_value(v) : NAN;
}

/* Adds the summary lines of one file. */
static int add_file(struct dtab *t, const char *path, const char *sc, const char *set, double alpha, struct tr_err *e)
{
	char *text;
	size_t len;
	if (tr_read_file(path, &text, &len, e))
		return -1;
	int rc = 0;
	size_t lineno = 0;
	for (char *save, *line = strtok_r(text, "\n", &save); line && !rc; line = strtok_r(NULL, "\n", &save)) {
		lineno++;
		json_error_t jerr;
		json_t *o = json_loads(line, 0, &jerr);
		const char *method = json_string_value(json_object_get(o, "method"));
		double rate = jnum(o, "audit_rate");
		struct drow *r = o && method && !isnan(rate) ? drow_for(t, sc, set, alpha, method, rate) : NULL;
		if (!r) {
			rc = tr_fail(e, "%s:%zu: not a replay summary", path, lineno);
			json_decref(o);
			break;
		}
		r->streams++;
		int det = json_is_true(json_object_get(o, "detected"));
		json_t *delay = json_object_get(o, "delay");
		r->detected += det;
		r->before_switch += det && !json_is_integer(delay) && json_is_integer(json_object_get(o, "switch_at"));
		if (det && json_is_integer(delay) && r->n_delays < 512)
			r->delays[r->n_delays++] = (long)json_integer_value(delay);
		if (det && json_is_null(json_object_get(o, "switch_at")) && r->n_delays < 512)
			r->delays[r->n_delays++] = (long)jnum(o, "detect_at");
		r->wrong_after += jnum(o, "wrong_after_switch");
		r->audits += jnum(o, "audits");
		r->calls += jnum(o, "teacher_calls");
		r->handled += jnum(o, "handled");
		r->n_sum += jnum(o, "n");
		double ab = jnum(o, "agreement_before"), aa = jnum(o, "agreement_after");
		if (!isnan(ab))
			r->agr_before_min = fmin(r->agr_before_min, ab), r->agr_before_max = fmax(r->agr_before_max, ab);
		if (!isnan(aa))
			r->agr_after_sum += aa, r->agr_after_n++;
		r->novel += (long)jnum(o, "novel");
		r->novel_ood += (long)jnum(o, "novel_ood");
		r->novel_handled += (long)jnum(o, "novel_handled");
		json_decref(o);
	}
	tr_free(text);
	return rc;
}

static int cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;
	return x < y ? -1 : x > y;
}

static double median(struct drow *r)
{
	if (!r->n_delays)
		return NAN;
	qsort(r->delays, (size_t)r->n_delays, sizeof *r->delays, cmp_long);
	int n = r->n_delays;
	return n % 2 ? (double)r->delays[n / 2] : 0.5 * (double)(r->delays[n / 2 - 1] + r->delays[n / 2]);
}

static void num(struct tr_buf *b, double v, const char *fmt)
{
	if (isfinite(v))
		tr_buf_printf(b, fmt, v);
	else
		tr_buf_puts(b, "NaN");
}

static void write_tsv(struct dtab *t, struct tr_buf *b)
{
	tr_buf_puts(b, "scenario\tset\talpha\tmethod\taudit_rate\tstreams\tdetected\tdetection_rate\tmedian_delay\t"
		       "max_delay\twrong_after_switch\taudits\tteacher_calls\tcoverage\tagreement_before_min\t"
		       "agreement_before_max\tagreement_after\tnovel\tnovel_ood\tnovel_handled\n");
	for (size_t i = 0; i < t->n; i++) {
		struct drow *r = &t->v[i];
		double med = median(r);
		tr_buf_printf(b, "%s\t%s\t%.2f\t%s\t%.2f\t%d\t%d\t%.4f\t", r->scenario, r->set, r->alpha, r->method, r->rate,
			      r->streams, r->detected, (double)r->detected / r->streams);
		num(b, med, "%.0f");
		tr_buf_puts(b, "\t");
		num(b, r->n_delays ? (double)r->delays[r->n_delays - 1] : NAN, "%.0f");
		tr_buf_printf(b, "\t%.1f\t%.1f\t%.1f\t%.4f\t", r->wrong_after / r->streams, r->audits / r->streams,
			      r->calls / r->streams, r->handled / r->n_sum);
		num(b, r->agr_before_min, "%.4f");
		tr_buf_puts(b, "\t");
		num(b, r->agr_before_max, "%.4f");
		tr_buf_puts(b, "\t");
		num(b, r->agr_after_n ? r->agr_after_sum / r->agr_after_n : NAN, "%.4f");
		tr_buf_printf(b, "\t%ld\t%ld\t%ld\n", r->novel, r->novel_ood, r->novel_handled);
	}
}

static const struct drow *find(const struct dtab *t, const char *sc, const char *set, double alpha, const char *method,
			       double rate)
{
	for (size_t i = 0; i < t->n; i++) {
		const struct drow *r = &t->v[i];
		if (!strcmp(r->scenario, sc) && (!set || !strcmp(r->set, set)) && !strcmp(r->method, method) &&
		    fabs(r->alpha - alpha) < 1e-9 && fabs(r->rate - rate) < 1e-9)
			return r;
	}
	return NULL;
}

/*
 * Audits that even a bettor who knew the agreement p < α would need on average before the monitor could
 * close the gate: ln(1/δ) / KL(p ‖ α) (Wald's identity for the log-likelihood-ratio test). NAN when p >= α.
 */
static double oracle_audits(double p, double alpha, double delta)
{
	if (!(p < alpha) || !(p > 0))
		return NAN;
	double kl = p * log(p / alpha) + (1 - p) * log((1 - p) / (1 - alpha));
	return log(1 / delta) / kl;
}

static const double rates[3] = {0.01, 0.02, 0.05};
static const char *const methods[2] = {"betting", "mixture"};

static void sec_drift(const struct dtab *t, struct tr_buf *b)
{
	if (!t->n) {
		tr_buf_puts(b, "*(the drift study has not been run: scripts/drift-study.sh)*\n");
		return;
	}
	/* no drift */
	tr_buf_puts(b, "**No drift** (pooled traffic, one policy per set and α, 100 shuffles each with its own audit "
		       "seed): streams in which the gate closed, δ_m = 0.05.\n\n"
		       "| set | α | agreement on handled of this traffic | monitor | rate 0.01 | rate 0.02 | rate 0.05 |\n"
		       "|---|---|---|---|---|---|---|\n");
	static const char *const sets[2] = {"banking77:gold", "clinc150:gold"};
	static const double alphas[2] = {0.90, 0.95};
	for (int s = 0; s < 2; s++)
		for (int a = 0; a < 2; a++)
			for (int m = 0; m < 2; m++) {
				const struct drow *r0 = find(t, "nodrift", sets[s], alphas[a], methods[m], 0.01);
				if (!r0)
					continue;
				tr_buf_printf(b, "| %s | %.2f | %.4f | %s |", sets[s], alphas[a], r0->agr_before_min, methods[m]);
				for (int k = 0; k < 3; k++) {
					const struct drow *r = find(t, "nodrift", sets[s], alphas[a], methods[m], rates[k]);
					if (r)
						tr_buf_printf(b, " %d/%d |", r->detected, r->streams);
					else
						tr_buf_puts(b, " — |");
				}
				tr_buf_puts(b, "\n");
			}
	for (int m = 0; m < 2; m++) {
		int worst = -1, streams = 0;
		for (size_t i = 0; i < t->n; i++)
			if (!strcmp(t->v[i].scenario, "nodrift") && !strcmp(t->v[i].method, methods[m]) &&
			    t->v[i].detected > worst)
				worst = t->v[i].detected, streams = t->v[i].streams;
		if (worst >= 0)
			tr_buf_printf(b, "%s- `%s`: at most %d of %d streams closed the gate in any row (δ_m allows %.0f; two "
					 "binomial standard errors above it is %.0f).\n",
				      m ? "" : "\n", methods[m], worst, streams, 0.05 * streams,
				      0.05 * streams + 2 * sqrt(0.05 * 0.95 * streams));
	}
	/* change points */
	static const struct {
		const char *sc, *what;
	} scs[3] = {{"swap", "teacher swap (banking77:gold policy, GPT-4o labels after input 1,000)"},
		    {"oos0.30", "new intents, 30% oos after input 1,000 (clinc150:gold policy)"},
		    {"oos0.10", "new intents, 10% oos after input 1,000 (clinc150:gold policy)"}};
	tr_buf_puts(b, "\n**Change points** (α = 0.95; policy seeds 0–2, 10 shuffles each): streams in which the gate "
		       "closed after the change, median and worst delay in inputs after the change point, wrong answers "
		       "served after the change (mean per stream), audits (teacher calls spent on auditing, mean).\n\n"
		       "| scenario | monitor | audit rate | detected | median delay | max delay | wrong served after change "
		       "| audits | true agreement after change |\n|---|---|---|---|---|---|---|---|---|\n");
	for (int s = 0; s < 3; s++)
		for (int m = 0; m < 2; m++)
			for (int k = 0; k < 3; k++) {
				struct drow *r = (struct drow *)find(t, scs[s].sc, NULL, 0.95, methods[m], rates[k]);
				if (!r)
					continue;
				tr_buf_printf(b, "| %s | %s | %.2f | %d/%d", scs[s].what, methods[m], rates[k],
					      r->detected - r->before_switch, r->streams);
				if (r->before_switch)
					tr_buf_printf(b, " (+%d before the change)", r->before_switch);
				tr_buf_puts(b, " | ");
				num(b, median(r), "%.0f");
				tr_buf_puts(b, " | ");
				num(b, r->n_delays ? (double)r->delays[r->n_delays - 1] : NAN, "%.0f");
				tr_buf_printf(b, " | %.1f | %.1f | ", r->wrong_after / r->streams, r->audits / r->streams);
				num(b, r->agr_after_n ? r->agr_after_sum / r->agr_after_n : NAN, "%.3f");
				tr_buf_puts(b, " |\n");
			}
	for (int s = 0; s < 3; s++) {
		const struct drow *r = find(t, scs[s].sc, NULL, 0.95, "betting", 0.05);
		double p = r && r->agr_after_n ? r->agr_after_sum / r->agr_after_n : NAN;
		if (!r)
			continue;
		tr_buf_printf(b, "%s- %s, betting monitor, audit rate 0.05: the gate closed after the change in %d of %d "
				 "streams", s ? "" : "\n", scs[s].what, r->detected - r->before_switch, r->streams);
		if (r->n_delays)
			tr_buf_printf(b, ", median %.0f inputs after it", median((struct drow *)r));
		if (!isnan(oracle_audits(p, 0.95, 0.05)))
			tr_buf_printf(b, "; at the true agreement after the change (%.3f) even a bettor who knew it would "
					 "need about %.0f audits on average",
				      p, oracle_audits(p, 0.95, 0.05));
		tr_buf_puts(b, ".\n");
	}
	for (int s = 1; s < 3; s++) {
		const struct drow *r = find(t, scs[s].sc, NULL, 0.95, "betting", 0.05);
		if (r && r->novel)
			tr_buf_printf(b, "\nOOD guard, %s, over the %d streams: of the %ld oos inputs after the change the "
					 "policy would have answered %.1f%% (every answer wrong), the OOD guard deferred "
					 "%.1f%% on its own and the acceptor the remaining %.1f%%.\n",
				      scs[s].what, r->streams, r->novel, 100.0 * (double)r->novel_handled / (double)r->novel,
				      100.0 * (double)r->novel_ood / (double)r->novel,
				      100.0 * (double)(r->novel - r->novel_handled - r->novel_ood) / (double)r->novel);
	}
	/* official split */
	tr_buf_puts(b, "\n**Official test split** (α = 0.95, no change point; policy seeds 0–2, 10 shuffles each): streams "
		       "in which the gate closed, median inputs until it closed.\n\n"
		       "| set | agreement on handled of the traffic (min–max over policies) | monitor | rate 0.01 | rate 0.02 "
		       "| rate 0.05 |\n|---|---|---|---|---|---|\n");
	for (int s = 0; s < 2; s++)
		for (int m = 0; m < 2; m++) {
			const struct drow *r0 = find(t, "official", sets[s], 0.95, methods[m], 0.05);
			if (!r0)
				continue;
			tr_buf_printf(b, "| %s | %.4f–%.4f", sets[s], r0->agr_before_min, r0->agr_before_max);
			if (!isnan(oracle_audits(r0->agr_before_min, 0.95, 0.05)))
				tr_buf_printf(b, " (at %.4f, about %.0f audits needed even by an oracle bettor)", r0->agr_before_min,
					      oracle_audits(r0->agr_before_min, 0.95, 0.05));
			tr_buf_printf(b, " | %s |", methods[m]);
			for (int k = 0; k < 3; k++) {
				struct drow *r = (struct drow *)find(t, "official", sets[s], 0.95, methods[m], rates[k]);
				if (!r) {
					tr_buf_puts(b, " — |");
					continue;
				}
				tr_buf_printf(b, " %d/%d", r->detected, r->streams);
				if (r->n_delays)
					tr_buf_printf(b, " (median %.0f)", median(r));
				tr_buf_puts(b, " |");
			}
			tr_buf_puts(b, "\n");
		}
	/* cost */
	tr_buf_puts(b, "\n**Cost of auditing** (no-drift traffic, α = 0.95, betting monitor): LLM calls per 10,000 "
		       "queries, deferred inputs plus audits.\n\n| set | no audits | rate 0.01 | rate 0.02 | rate 0.05 |\n"
		       "|---|---|---|---|---|\n");
	for (int s = 0; s < 2; s++) {
		const struct drow *r0 = find(t, "nodrift", sets[s], 0.95, "betting", 0.01);
		if (!r0)
			continue;
		tr_buf_printf(b, "| %s | %.0f |", sets[s], 10000 * (1 - r0->handled / r0->n_sum));
		for (int k = 0; k < 3; k++) {
			const struct drow *r = find(t, "nodrift", sets[s], 0.95, "betting", rates[k]);
			if (r)
				tr_buf_printf(b, " %.0f |", 10000 * r->calls / r->n_sum);
			else
				tr_buf_puts(b, " — |");
		}
		tr_buf_puts(b, "\n");
	}
}

/* Timelines (JSONL) -> TSV rows "scenario t phase coverage agreement_handled agreement_recent upper closed". */
static int timelines(const char *results, struct tr_buf *out, struct tr_err *e)
{
	static const char *const names[4] = {"nodrift", "swap", "oos0.30", "official"};
	tr_buf_puts(out, "scenario\tt\tphase\tcoverage\tagreement_handled\tagreement_recent\tupper\tclosed\tstat\t"
			 "threshold\tswitch_at\tdetect_at\n");
	for (int i = 0; i < 4; i++) {
		char path[PATH_MAX], spath[PATH_MAX];
		snprintf(path, sizeof path, "%s/drift/timeline-%s.jsonl", results, names[i]);
		snprintf(spath, sizeof spath, "%s/drift/timeline-%s.summary.json", results, names[i]);
		if (!tr_file_exists(path) || !tr_file_exists(spath))
			continue;
		json_error_t jerr;
		json_t *sum = json_load_file(spath, 0, &jerr);
		if (!sum)
			return tr_fail(e, "%s:%d: %s", spath, jerr.line, jerr.text);
		double sw = jnum(sum, "switch_at"), det = jnum(sum, "detect_at");
		json_decref(sum);
		char *text;
		size_t len, lineno = 0;
		if (tr_read_file(path, &text, &len, e))
			return -1;
		int rc = 0;
		for (char *save, *line = strtok_r(text, "\n", &save); line && !rc; line = strtok_r(NULL, "\n", &save)) {
			lineno++;
			json_t *o = json_loads(line, 0, &jerr);
			if (!o) {
				rc = tr_fail(e, "%s:%zu: %s", path, lineno, jerr.text);
				break;
			}
			tr_buf_printf(out, "%s\t%.0f\t%.0f\t", names[i], jnum(o, "t"), jnum(o, "phase"));
			const char *keys[6] = {"coverage", "agreement_handled", "agreement_recent", "upper", "closed", "stat"};
			for (int k = 0; k < 6; k++) {
				double v = k == 4 ? json_is_true(json_object_get(o, "closed")) : jnum(o, keys[k]);
				num(out, v, "%.6g");
				tr_buf_puts(out, "\t");
			}
			num(out, jnum(o, "threshold"), "%.6g");
			tr_buf_puts(out, "\t");
			num(out, sw, "%.0f");
			tr_buf_puts(out, "\t");
			num(out, det, "%.0f");
			tr_buf_puts(out, "\n");
			json_decref(o);
		}
		tr_free(text);
		if (rc)
			return -1;
	}
	return 0;
}

int tr_drift_collect(const char *results, const char *paper, struct tr_err *e)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/drift/scenarios.tsv", results);
	struct dtab t = {0};
	int rc = 0;
	if (tr_file_exists(path)) {
		char *text;
		size_t len, lineno = 0;
		if (tr_read_file(path, &text, &len, e))
			return -1;
		for (char *save, *line = strtok_r(text, "\n", &save); line && !rc; line = strtok_r(NULL, "\n", &save)) {
			if (lineno++ == 0)
				continue;
			char sc[32], set[64], file[200], fpath[PATH_MAX];
			double alpha;
			int ps;
			if (sscanf(line, "%31[^\t]\t%63[^\t]\t%lf\t%d\t%199[^\t]", sc, set, &alpha, &ps, file) != 5 ||
			    strchr(file, '/')) {
				rc = tr_fail(e, "%s:%zu: bad line", path, lineno);
				break;
			}
			snprintf(fpath, sizeof fpath, "%s/drift/%s", results, file);
			rc = add_file(&t, fpath, sc, set, alpha, e);
		}
		tr_free(text);
	}
	struct tr_buf tsv = {0}, tl = {0}, sec = {0};
	char out[PATH_MAX];
	if (!rc && t.n) {
		write_tsv(&t, &tsv);
		snprintf(out, sizeof out, "%s/tables/drift.tsv", results);
		rc = tr_write_atomic(out, tsv.data, tsv.len, e);
		if (!rc && !(rc = timelines(results, &tl, e))) {
			snprintf(out, sizeof out, "%s/tables/drift-timeline.tsv", results);
			rc = tr_write_atomic(out, tl.data, tl.len, e);
		}
	}
	if (!rc && paper) {
		sec_drift(&t, &sec);
		rc = tr_paper_splice_file(paper, "drift", sec.data ? sec.data : "", e);
	}
	tr_buf_free(&tsv), tr_buf_free(&tl), tr_buf_free(&sec);
	tr_free(t.v);
	return rc;
}
