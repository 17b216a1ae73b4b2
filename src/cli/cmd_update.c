/*
 * cmd_update.c - `tracer update POLICY NEW_TRACES --out NEW_POLICY`: refits a policy on the traces it was
 * fitted on (POLICY/traces.jsonl.zst) plus new ones, under the parent's settings, and records the lineage.
 * Also the helper `fit` uses to keep the traces in the policy it writes.
 */
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../gate/gate.h"
#include "cli.h"

const char cmd_update_usage[] =
	"usage: tracer update POLICY NEW_TRACES --out NEW_POLICY [--force]\n"
	"  Refits the policy in POLICY on its own traces (POLICY/traces.jsonl.zst, which `fit` keeps) plus\n"
	"  NEW_TRACES (a trace JSONL file, or DATASET:TEACHER for its traces part), with the parent's settings\n"
	"  (backend, grid, gate rule, targets, delta, seed, cap, OOD guard, split, calibration). The union is\n"
	"  the parent's traces in order, less those whose id appears in NEW_TRACES, then NEW_TRACES in order (a\n"
	"  new trace replaces an old one with the same id); it is kept as NEW_POLICY/traces.jsonl.zst, so a\n"
	"  fresh `tracer fit` on that union with the same settings gives the same models and decisions.\n"
	"  manifest.json gets \"lineage\": the parent's manifest SHA-256 and the trace counts. Policies fitted on\n"
	"  embeddings cannot be updated (the new traces carry no embeddings). `tracer audit NEW_POLICY TRAFFIC\n"
	"  --compare POLICY` shows what changed.\n";

int tr_cli_keep_traces(struct tr_policy *p, const struct tr_traceset *ts, const char *grid, struct tr_err *e)
{
	struct tr_buf b = {0};
	if (tr_traces_write_jsonl(ts, TR_PART_TRACES, &b, e)) {
		tr_buf_free(&b);
		return -1;
	}
	tr_free(p->traces);
	p->traces = b.data ? b.data : tr_strdup("");
	p->traces_len = b.len;
	if (!p->traces || json_object_set_new(p->manifest, "grid", grid ? json_string(grid) : json_null()))
		return tr_fail(e, "out of memory");
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The parent's fit settings from its manifest; -1 with a message naming the bad field. */
static int options(const char *dir, json_t *m, struct tr_fit_options *o, char *grid, size_t gsize, struct tr_err *e)
{
	json_t *v;
	const char *feat = json_string_value(json_object_get(m, "features"));
	if (!feat || strcmp(feat, "tfidf") != 0)
		return tr_fail(e, "%s: fitted on %s features: only tf-idf policies can be updated (new traces carry no "
				  "embeddings)", dir, feat ? feat : "unknown");
	const char *backend = json_string_value(json_object_get(m, "backend"));
	const char *gate = json_string_value(json_object_get(m, "gate"));
	if (!backend || !tr_family_find(backend))
		return tr_fail(e, "%s/manifest.json: bad \"backend\"", dir);
	if (!gate || !(o->rule = tr_rule_find(gate)))
		return tr_fail(e, "%s/manifest.json: bad \"gate\"", dir);
	o->backend = tr_family_find(backend)->name;
	v = json_object_get(m, "grid");
	if (!v)
		return tr_fail(e, "%s/manifest.json: no \"grid\" (fitted before tracer recorded it): refit with tracer fit", dir);
	o->grid = NULL;
	if (json_is_string(v)) {
		snprintf(grid, gsize, "%s", json_string_value(v));
		o->grid = grid;
	}
	o->target = json_number_value(json_object_get(m, "target"));
	o->delta = json_number_value(json_object_get(m, "delta"));
	json_t *ts = json_object_get(m, "targets");
	o->n_targets = 0;
	for (size_t i = 0; i < json_array_size(ts) && o->n_targets < TR_MAX_TARGETS; i++)
		o->targets[o->n_targets++] = json_number_value(json_array_get(ts, i));
	json_t *seed = json_object_get(m, "seed"), *cap = json_object_get(m, "cap"), *ood = json_object_get(m, "ood");
	if (!(o->target > 0 && o->target < 1) || !(o->delta > 0 && o->delta < 1) || !o->n_targets ||
	    !json_is_integer(seed) || json_integer_value(seed) < 0 || !json_is_integer(cap) || json_integer_value(cap) < 0 ||
	    !json_is_boolean(ood))
		return tr_fail(e, "%s/manifest.json: bad target, targets, delta, seed, cap or ood", dir);
	const char *cal = json_string_value(json_object_get(m, "calibration"));
	json_t *sp = json_object_get(m, "split_percent");
	if (cal && strcmp(cal, "crossfit") == 0) {
		o->crossfit = 1;
		o->folds = (int)json_integer_value(json_object_get(m, "folds"));
	} else if (cal && strcmp(cal, "oof") == 0) {
		json_t *fc = json_object_get(m, "oof_split_percent");
		o->oof = 1;
		o->folds = (int)json_integer_value(json_object_get(m, "folds"));
		if (json_array_size(fc) == 2)
			o->oof_cal = (int)json_integer_value(json_array_get(fc, 1));
	} else if (json_array_size(sp) == 3) {
		for (int k = 0; k < 3; k++)
			o->split[k] = (int)json_integer_value(json_array_get(sp, k));
	}
	o->seed = (uint64_t)json_integer_value(seed);
	o->cap = (size_t)json_integer_value(cap);
	o->ood = json_is_true(ood);
	return 0;
}

/*
 * The union as trace JSONL: old's lines whose id is not among new's, then new's lines. *replaced counts the
 * old lines dropped.
 */
static int union_text(const struct tr_traceset *old, const struct tr_traceset *nw, struct tr_buf *out, size_t *replaced,
		      struct tr_err *e)
{
	const struct tr_rows *o = &old->part[TR_PART_TRACES], *n = &nw->part[TR_PART_TRACES];
	struct tr_buf ob = {0};
	char **ids = tr_calloc(n->n ? n->n : 1, sizeof *ids);
	int rc = ids ? tr_traces_write_jsonl(old, TR_PART_TRACES, &ob, e) : tr_fail(e, "out of memory");
	for (size_t i = 0; ids && i < n->n; i++)
		ids[i] = n->v[i].id;
	if (ids)
		qsort(ids, n->n, sizeof *ids, cmp_str);
	*replaced = 0;
	const char *p = ob.data, *end = ob.data + ob.len;
	for (size_t i = 0; !rc && i < o->n; i++) {
		const char *nl = p < end ? memchr(p, '\n', (size_t)(end - p)) : NULL;
		if (!nl) {
			rc = tr_fail(e, "internal: %zu trace lines for %zu traces", i, o->n);
			break;
		}
		const char *key = o->v[i].id;
		if (n->n && bsearch(&key, ids, n->n, sizeof *ids, cmp_str))
			(*replaced)++;
		else
			rc = tr_buf_add(out, p, (size_t)(nl + 1 - p)) ? tr_fail(e, "out of memory") : 0;
		p = nl + 1;
	}
	if (!rc)
		rc = tr_traces_write_jsonl(nw, TR_PART_TRACES, out, e);
	tr_buf_free(&ob);
	tr_free(ids);
	return rc;
}

int cmd_update(int argc, char **argv)
{
	const char *dir = NULL, *add = NULL, *out = NULL;
	int force = 0;
	struct tr_args a = {.verb = "update", .spec = "--out= --force", .pos = (const char **[]){&dir, &add}, .n_pos = 2};
	int k;
	while ((k = tr_args_next(&a, argc, argv)) == TR_ARG_OPT) {
		if (tr_args_is(&a, "--out"))
			out = a.val;
		else if (tr_args_is(&a, "--force"))
			force = 1;
	}
	if (k < 0)
		return TR_EXIT_USAGE;
	if (!dir || !add || !out)
		return tr_cli_usage_error("update", "expected POLICY NEW_TRACES --out NEW_POLICY");
	struct tr_err e;
	if (tr_cli_out_check(out, force, &e))
		return tr_cli_data_error(&e);
	struct tr_policy *parent = NULL, *p = NULL;
	struct tr_traceset old = {0}, nw = {0}, u = {0};
	struct tr_fit_options o = {0};
	char grid[256], path[PATH_MAX], sha[65], aside[PATH_MAX] = "";
	char *z = NULL, *text = NULL;
	size_t zn, tn, replaced = 0;
	struct tr_buf ub = {0};
	int rc = tr_cli_policy_load(dir, &parent, &e);
	if (!rc && !json_object_get(json_object_get(parent->manifest, "files"), "traces.jsonl.zst"))
		rc = tr_fail(&e, "%s: no traces.jsonl.zst (fitted before policies kept their traces): refit with tracer fit", dir);
	if (!rc)
		rc = options(dir, parent->manifest, &o, grid, sizeof grid, &e);
	snprintf(path, sizeof path, "%s/traces.jsonl.zst", dir);
	if (!rc)
		rc = tr_read_file(path, &z, &zn, &e) || tr_zstd_decompress(z, zn, path, &text, &tn, &e) ||
		     tr_traces_read_jsonl(path, text, tn, &old, &e);
	if (!rc)
		rc = tr_traceset_open(add, &nw, &e);
	if (!rc)
		rc = union_text(&old, &nw, &ub, &replaced, &e);
	if (!rc)
		rc = tr_traces_read_jsonl("the union of the traces", ub.data ? ub.data : "", ub.len, &u, &e);
	snprintf(path, sizeof path, "%s/manifest.json", dir);
	if (!rc)
		rc = tr_sha256_file(path, sha, &e);
	if (!rc) {
		fprintf(stderr, "update: %zu traces of %s, %zu new (%zu replacing an old one): refitting on %zu\n",
			old.part[TR_PART_TRACES].n, dir, nw.part[TR_PART_TRACES].n, replaced, u.part[TR_PART_TRACES].n);
		rc = tr_policy_fit(&u, add, &o, &p, &e);
	}
	if (!rc && (rc = tr_cli_keep_traces(p, &u, o.grid, &e)) == 0) {
		json_t *lin = json_pack("{s:s,s:s,s:I,s:I,s:I,s:I}", "parent", dir, "parent_sha256", sha, "parent_traces",
					(json_int_t)old.part[TR_PART_TRACES].n, "new_traces",
					(json_int_t)nw.part[TR_PART_TRACES].n, "replaced", (json_int_t)replaced, "traces",
					(json_int_t)u.part[TR_PART_TRACES].n);
		if (!lin || json_object_set_new(p->manifest, "lineage", lin))
			rc = tr_fail(&e, "out of memory");
	}
	if (!rc)
		rc = tr_policy_write(p, out, force, aside, sizeof aside, &e);
	if (!rc) {
		if (aside[0])
			fprintf(stderr, "update: %s was not written by tracer: moved aside, intact, to %s\n", out, aside);
		fputs(p->report, stdout);
		printf("\nlineage: parent %s (manifest sha256 %s), %zu + %zu traces (%zu replaced) = %zu\n", dir, sha,
		       old.part[TR_PART_TRACES].n, nw.part[TR_PART_TRACES].n, replaced, u.part[TR_PART_TRACES].n);
	}
	tr_policy_free(parent), tr_policy_free(p);
	tr_traceset_free(&old), tr_traceset_free(&nw), tr_traceset_free(&u);
	tr_free(z), tr_free(text);
	tr_buf_free(&ub);
	return rc ? tr_cli_data_error(&e) : TR_EXIT_OK;
}
