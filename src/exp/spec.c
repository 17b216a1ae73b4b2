/*
 * spec.c - experiment specs: a plain-text file of `key values...` lines.
 *
 *   name       coverage            (the results subdirectory)
 *   sets       banking77:gold mnli:gold
 *   protocols  official pooled
 *   backends   liblinear knn
 *   grid       liblinear C=10      (optional, one line per backend)
 *   gates      point cp-holdout ltt
 *   targets    0.80 0.90 0.95
 *   traces     250 1000 all
 *   seeds      0 1 2               (or a range: 0-19)
 *   delta      0.10
 *   splits     60/20/20 50/10/40   (optional: train/validation/calibration percents, one cell each)
 *   crossfit   ltt-plan            (optional: that rule also under crossfit calibration, as rule "crossfit")
 *   oof        ltt-plan cp-holdout (optional: these rules also under oof calibration, as rules "ltt-plan-oof"...)
 *   oofsplit   70/30               (optional: oof's fit / calibration percents; default TR_OOF_CAL)
 *   subsample  iid                 (optional: a trace count drawn without looking at labels, as independent
 *                                   draws would fall; default `stratified`, each label's share kept)
 */
#include "exp.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const tr_protocol_names[2] = {"official", "pooled"};

void tr_spec_free(struct tr_spec *s)
{
	for (int i = 0; i < s->n_sets; i++)
		tr_free(s->sets[i]);
	for (int i = 0; i < s->n_backends; i++)
		tr_free(s->backends[i]), tr_free(s->grids[i]);
	memset(s, 0, sizeof *s);
}

/* Splits line into whitespace-separated words (in place); returns the count. */
static int words(char *line, char **w, int max)
{
	int n = 0;
	for (char *p = line; *p;) {
		while (*p && isspace((unsigned char)*p))
			p++;
		if (!*p)
			break;
		if (n == max)
			return max + 1;
		w[n++] = p;
		while (*p && !isspace((unsigned char)*p))
			p++;
		if (*p)
			*p++ = 0;
	}
	return n;
}

int tr_spec_parse(const char *path, const char *text, struct tr_spec *s, struct tr_err *e)
{
	memset(s, 0, sizeof *s);
	s->delta = 0.10;
	size_t lineno = 0;
	int rc = 0;
	for (const char *p = text; *p && !rc;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		lineno++;
		char line[1024];
		if (len >= sizeof line) {
			rc = tr_fail(e, "%s:%zu: line too long", path, lineno);
			break;
		}
		memcpy(line, p, len);
		line[len] = 0;
		p += len + (nl != NULL);
		char *hash = strchr(line, '#');
		if (hash)
			*hash = 0;
		char *w[80];
		int n = words(line, w, 79);
		if (n == 0)
			continue;
		if (n > 79) {
			rc = tr_fail(e, "%s:%zu: too many values", path, lineno);
			break;
		}
		const char *key = w[0];
		if (n < 2) {
			rc = tr_fail(e, "%s:%zu: \"%s\" has no value", path, lineno, key);
			break;
		}
		if (strcmp(key, "name") == 0) {
			int ok = n == 2 && strlen(w[1]) < sizeof s->name;
			for (const char *c = w[1]; ok && *c; c++)
				ok = isalnum((unsigned char)*c) || *c == '-' || *c == '_';
			if (!ok)
				rc = tr_fail(e, "%s:%zu: name must be one word of letters, digits, - and _", path, lineno);
			else
				strcpy(s->name, w[1]);
		} else if (strcmp(key, "sets") == 0) {
			for (int i = 1; i < n && !rc; i++) {
				if (s->n_sets == TR_SPEC_MAX)
					rc = tr_fail(e, "%s:%zu: more than %d sets", path, lineno, TR_SPEC_MAX);
				else if (!(s->sets[s->n_sets++] = tr_strdup(w[i])))
					rc = tr_fail(e, "out of memory");
			}
		} else if (strcmp(key, "protocols") == 0) {
			for (int i = 1; i < n && !rc; i++) {
				int k = strcmp(w[i], "official") == 0 ? 0 : strcmp(w[i], "pooled") == 0 ? 1 : -1;
				if (k < 0 || s->n_protocols == 2)
					rc = tr_fail(e, "%s:%zu: unknown protocol \"%s\" (official, pooled)", path, lineno, w[i]);
				else
					s->protocols[s->n_protocols++] = k;
			}
		} else if (strcmp(key, "backends") == 0) {
			for (int i = 1; i < n && !rc; i++) {
				if (!tr_family_find(w[i]))
					rc = tr_fail(e, "%s:%zu: unknown backend \"%s\"", path, lineno, w[i]);
				else if (s->n_backends == TR_SPEC_MAX)
					rc = tr_fail(e, "%s:%zu: more than %d backends", path, lineno, TR_SPEC_MAX);
				else if (!(s->backends[s->n_backends++] = tr_strdup(w[i])))
					rc = tr_fail(e, "out of memory");
			}
		} else if (strcmp(key, "grid") == 0) {
			int k = -1;
			for (int i = 0; i < s->n_backends; i++)
				if (strcmp(s->backends[i], w[1]) == 0)
					k = i;
			struct tr_grid g;
			struct tr_err ge;
			if (n != 3 || k < 0)
				rc = tr_fail(e, "%s:%zu: expected `grid BACKEND SPEC` after the backends line", path, lineno);
			else if (s->grids[k])
				rc = tr_fail(e, "%s:%zu: a second grid for %s", path, lineno, w[1]);
			else if (tr_grid_parse(tr_family_find(w[1]), w[2], &g, &ge))
				rc = tr_fail(e, "%s:%zu: %s", path, lineno, ge.msg);
			else if (!(s->grids[k] = tr_strdup(w[2])))
				rc = tr_fail(e, "out of memory");
		} else if (strcmp(key, "crossfit") == 0) {
			const struct tr_rule *r = n == 2 ? tr_rule_find(w[1]) : NULL;
			if (!r || s->crossfit)
				rc = tr_fail(e, "%s:%zu: expected one `crossfit RULE` line with a rule of %s", path, lineno,
					     tr_rule_list(", "));
			else
				s->crossfit = r;
		} else if (strcmp(key, "oof") == 0) {
			for (int i = 1; i < n && !rc; i++) {
				const struct tr_rule *r = tr_rule_find(w[i]);
				if (!r || s->n_oof == TR_SPEC_MAX)
					rc = tr_fail(e, "%s:%zu: unknown rule \"%s\" in `oof` (rules: %s)", path, lineno, w[i],
						     tr_rule_list(", "));
				else
					s->oof[s->n_oof++] = r;
			}
		} else if (strcmp(key, "oofsplit") == 0) {
			if (n != 2 || tr_oof_split_parse(w[1], &s->oof_cal))
				rc = tr_fail(e, "%s:%zu: expected `oofsplit FIT/CAL` (two positive percents summing to 100)",
					     path, lineno);
		} else if (strcmp(key, "subsample") == 0) {
			if (n != 2 || (strcmp(w[1], "iid") != 0 && strcmp(w[1], "stratified") != 0))
				rc = tr_fail(e, "%s:%zu: expected `subsample iid` or `subsample stratified`", path, lineno);
			else
				s->subsample_iid = strcmp(w[1], "iid") == 0;
		} else if (strcmp(key, "splits") == 0) {
			for (int i = 1; i < n && !rc; i++) {
				if (s->n_splits == 8 || tr_split_parse(w[i], s->splits[s->n_splits]))
					rc = tr_fail(e, "%s:%zu: bad split \"%s\" (TRAIN/VAL/CAL percents summing to 100, up to 8)",
						     path, lineno, w[i]);
				else
					s->n_splits++;
			}
		} else if (strcmp(key, "gates") == 0) {
			for (int i = 1; i < n && !rc; i++) {
				const struct tr_rule *r = tr_rule_find(w[i]);
				if (!r)
					rc = tr_fail(e, "%s:%zu: unknown gate rule \"%s\" (%s)", path, lineno, w[i],
						     tr_rule_list(", "));
				else if (s->n_gates == TR_SPEC_MAX)
					rc = tr_fail(e, "%s:%zu: more than %d gate rules", path, lineno, TR_SPEC_MAX);
				else
					s->gates[s->n_gates++] = r;
			}
		} else if (strcmp(key, "targets") == 0 || strcmp(key, "delta") == 0) {
			int is_delta = key[0] == 'd';
			for (int i = 1; i < n && !rc; i++) {
				char *end;
				double v = strtod(w[i], &end);
				if (*end || !(v > 0 && v < 1) || (is_delta && n != 2) || (!is_delta && s->n_targets == TR_MAX_TARGETS))
					rc = tr_fail(e, "%s:%zu: bad %s \"%s\"", path, lineno, key, w[i]);
				else if (is_delta)
					s->delta = v;
				else
					s->targets[s->n_targets++] = v;
			}
		} else if (strcmp(key, "traces") == 0) {
			for (int i = 1; i < n && !rc; i++) {
				char *end;
				long v = strcmp(w[i], "all") == 0 ? -1 : strtol(w[i], &end, 10);
				if ((v != -1 && (*end || v < 10)) || s->n_traces == TR_SPEC_MAX)
					rc = tr_fail(e, "%s:%zu: bad trace count \"%s\" (a number >= 10, or all)", path, lineno, w[i]);
				else
					s->traces[s->n_traces++] = v;
			}
		} else if (strcmp(key, "seeds") == 0) {
			for (int i = 1; i < n && !rc; i++) {
				char *end;
				unsigned long long a = strtoull(w[i], &end, 10), b = a;
				if (*end == '-')
					b = strtoull(end + 1, &end, 10);
				if (*end || b < a || b - a >= 64 || s->n_seeds + (int)(b - a + 1) > 64)
					rc = tr_fail(e, "%s:%zu: bad seeds \"%s\" (numbers or ranges, at most 64)", path, lineno, w[i]);
				for (unsigned long long k = 0; !rc && k <= b - a; k++) /* counted: a + k may be the largest value */
					s->seeds[s->n_seeds++] = a + k;
			}
		} else {
			rc = tr_fail(e, "%s:%zu: unknown key \"%s\"", path, lineno, key);
		}
	}
	if (!rc && (!s->name[0] || !s->n_sets || !s->n_backends || !(s->n_gates || s->n_oof) || !s->n_targets))
		rc = tr_fail(e, "%s: a spec needs name, sets, backends, gates (or oof) and targets", path);
	if (!rc && s->crossfit && !s->n_gates)
		rc = tr_fail(e, "%s: a crossfit line needs a gates line", path);
	if (!rc && !s->n_protocols)
		s->protocols[s->n_protocols++] = TR_PROTO_OFFICIAL;
	if (!rc && !s->n_traces)
		s->traces[s->n_traces++] = -1;
	if (!rc && !s->n_seeds)
		s->seeds[s->n_seeds++] = 0;
	if (rc)
		tr_spec_free(s);
	return rc;
}

int tr_spec_load(const char *path, struct tr_spec *s, struct tr_err *e)
{
	char *text;
	size_t len;
	memset(s, 0, sizeof *s);
	if (tr_read_file(path, &text, &len, e))
		return -1;
	int rc = strlen(text) != len ? tr_fail(e, "%s: NUL byte in a spec", path) : tr_spec_parse(path, text, s, e);
	tr_free(text);
	return rc;
}

/* The canonical text of a cell: everything its result depends on. */
static void cell_key(const struct tr_spec *s, const struct tr_cell *c, struct tr_buf *b)
{
	tr_buf_printf(b, "cell %d|%s|%s|%s|%s|%ld|%llu|delta %.17g|gates", TR_CELL_FORMAT, c->set,
		      tr_protocol_names[c->protocol], c->backend, c->grid ? c->grid : "default", c->traces,
		      (unsigned long long)c->seed, s->delta);
	for (int g = 0; g < s->n_gates; g++)
		tr_buf_printf(b, " %s", s->gates[g]->name);
	tr_buf_puts(b, "|targets");
	for (int t = 0; t < s->n_targets; t++)
		tr_buf_printf(b, " %.17g", s->targets[t]);
	if (s->crossfit) /* absent from specs without these lines, so their hashes stay as they were */
		tr_buf_printf(b, "|crossfit %s", s->crossfit->name);
	if (s->n_oof) {
		tr_buf_puts(b, "|oof");
		for (int g = 0; g < s->n_oof; g++)
			tr_buf_printf(b, " %s", s->oof[g]->name);
	}
	if (s->oof_cal)
		tr_buf_printf(b, "|oofcal %d", s->oof_cal);
	if (s->subsample_iid)
		tr_buf_puts(b, "|subsample iid");
	if (c->split)
		tr_buf_printf(b, "|split %d/%d/%d", c->split[0], c->split[1], c->split[2]);
}

int tr_spec_cells(const struct tr_spec *s, struct tr_cell **cells, size_t *n, struct tr_err *e)
{
	*cells = NULL;
	*n = 0;
	size_t cap = 0;
	for (int si = 0; si < s->n_sets; si++) {
		struct tr_traceset ts;
		if (tr_traceset_open(s->sets[si], &ts, e))
			goto fail;
		size_t pool = ts.part[TR_PART_TRACES].n + ts.part[TR_PART_TEST].n;
		size_t official = ts.part[TR_PART_TRACES].n;
		int has_test = ts.part[TR_PART_TEST].n > 0;
		tr_traceset_free(&ts);
		if (!has_test) {
			tr_fail(e, "%s: no test part: experiment cells need DATASET:TEACHER sets", s->sets[si]);
			goto fail;
		}
		for (int pi = 0; pi < s->n_protocols; pi++) {
			/* pooled traffic keeps 30% of the pool as test rows */
			size_t avail = s->protocols[pi] == TR_PROTO_POOLED ? (size_t)(0.7 * (double)pool) : official;
			for (int bi = 0; bi < s->n_backends; bi++)
				for (int ti = 0; ti < s->n_traces; ti++) {
					if (s->traces[ti] >= 0 && (size_t)s->traces[ti] >= avail)
						continue;
					for (int ki = 0; ki < s->n_seeds * (s->n_splits ? s->n_splits : 1); ki++) {
						if (tr_grow(cells, &cap, *n + 1, sizeof **cells)) {
							tr_fail(e, "out of memory");
							goto fail;
						}
						struct tr_cell *c = &(*cells)[(*n)++];
						*c = (struct tr_cell){s->sets[si], s->backends[bi], s->grids[bi],
								      (enum tr_protocol)s->protocols[pi], s->traces[ti],
								      s->seeds[ki % s->n_seeds],
								      s->n_splits ? s->splits[ki / s->n_seeds] : NULL, {0}};
						struct tr_buf b = {0};
						cell_key(s, c, &b);
						char hex[65];
						tr_sha256_hex(b.data, b.len, hex);
						memcpy(c->hash, hex, 16);
						c->hash[16] = 0;
						tr_buf_free(&b);
					}
				}
		}
	}
	return 0;
fail:
	tr_free(*cells);
	*cells = NULL;
	*n = 0;
	return -1;
}

void tr_cell_path(const char *results, const struct tr_spec *s, const struct tr_cell *c, char *buf, size_t size)
{
	snprintf(buf, size, "%s/cells/%s/%s.json", results, s->name, c->hash);
}
