/*
 * split.c - group-aware stratified splits.
 *
 * Rows that share a group key (the exact input, or the premise of a pair) always land in the same part:
 * a duplicate on both sides of a split makes every held-out figure optimistic. Within each stratum the
 * groups are shuffled with the seeded generator and dealt to the parts in order until each part holds
 * its fraction of the stratum's rows.
 */
#include "data.h"

#include <gsl/gsl_randist.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

struct keyed {
	const char *key;
	size_t row;
};

static int cmp_keyed(const void *a, const void *b)
{
	const struct keyed *x = a, *y = b;
	int c = strcmp(x->key, y->key);
	return c ? c : (x->row > y->row) - (x->row < y->row);
}

/* A row's draw: a seeded hash of its position alone (nothing about the row is read). */
static uint64_t row_draw(size_t row, uint64_t seed)
{
	unsigned char b[8];
	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)((uint64_t)row >> (8 * i));
	return XXH3_64bits_withSeed(b, sizeof b, seed);
}

int tr_group_pick(size_t n, const char *const *group, uint64_t seed, unsigned char *pick, struct tr_err *e)
{
	struct keyed *k = tr_malloc((n ? n : 1) * sizeof *k);
	if (!k)
		return tr_fail(e, "split: out of memory for %zu rows", n);
	for (size_t i = 0; i < n; i++)
		k[i] = (struct keyed){group[i], i};
	qsort(k, n, sizeof *k, cmp_keyed);
	for (size_t i = 0; i < n;) {
		size_t j = i, best = k[i].row;
		uint64_t bd = row_draw(best, seed);
		for (j = i; j < n && strcmp(k[j].key, k[i].key) == 0; j++) {
			pick[k[j].row] = 0;
			uint64_t d = row_draw(k[j].row, seed);
			if (d < bd || (d == bd && k[j].row < best))
				best = k[j].row, bd = d;
		}
		pick[best] = 1;
		i = j;
	}
	tr_free(k);
	return 0;
}

struct group {
	size_t first; /* lowest row index: fixes the group's stratum and its order */
	size_t size;
	int strat;
};

static int cmp_group(const void *a, const void *b)
{
	const struct group *x = a, *y = b;
	if (x->strat != y->strat)
		return (x->strat > y->strat) - (x->strat < y->strat);
	return (x->first > y->first) - (x->first < y->first);
}

int tr_split_grouped(size_t n, const int *strat, const char *const *group, const double *frac,
		     int nparts, uint64_t seed, int tiny, int *part, struct tr_err *e)
{
	/* tiny strata of a three-way split: 1 group -> part 0; 2 -> parts 0, 2; 3 -> parts 0, 1, 2 */
	static const int tiny_parts[3][3] = {{0}, {0, 2}, {0, 1, 2}};
	if (nparts < 1 || nparts > 16)
		return tr_fail(e, "split: bad number of parts %d", nparts);
	double cum[16], total = 0;
	for (int p = 0; p < nparts; p++) {
		if (!(frac[p] >= 0))
			return tr_fail(e, "split: bad fraction %g", frac[p]);
		total += frac[p];
		cum[p] = total;
	}
	if (!(total > 0))
		return tr_fail(e, "split: fractions sum to %g", total);
	if (n == 0)
		return 0;
	struct keyed *k = tr_malloc(n * sizeof *k);
	size_t *gid = tr_malloc(n * sizeof *gid);     /* row -> group */
	size_t *first = tr_malloc(n * sizeof *first); /* group -> its lowest row */
	int *gpart = tr_malloc(n * sizeof *gpart);    /* lowest row of a group -> part */
	struct group *g = tr_calloc(n, sizeof *g);
	gsl_rng *rng = tr_rng_new(seed);
	int rc = 0;
	if (!k || !gid || !first || !gpart || !g || !rng) {
		rc = tr_fail(e, "split: out of memory for %zu rows", n);
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		k[i] = (struct keyed){group[i], i};
	qsort(k, n, sizeof *k, cmp_keyed); /* equal keys are ordered by row: the first is the lowest */
	size_t ng = 0;
	for (size_t i = 0; i < n; i++) {
		if (i == 0 || strcmp(k[i].key, k[i - 1].key) != 0) {
			first[ng] = k[i].row;
			g[ng++] = (struct group){.first = k[i].row, .strat = strat[k[i].row]};
		}
		g[ng - 1].size++;
		gid[k[i].row] = ng - 1;
	}
	qsort(g, ng, sizeof *g, cmp_group);
	for (size_t s = 0; s < ng;) {
		size_t t = s, rows = 0;
		while (t < ng && g[t].strat == g[s].strat)
			rows += g[t++].size;
		gsl_ran_shuffle(rng, g + s, t - s, sizeof *g);
		if (tiny && nparts == 3 && t - s <= 3) {
			for (size_t i = s; i < t; i++)
				gpart[g[i].first] = tiny_parts[t - s - 1][i - s];
			s = t;
			continue;
		}
		size_t done = 0;
		for (size_t i = s; i < t; i++) {
			int p = 0;
			while (p < nparts - 1 && !(done + g[i].size / 2.0 < cum[p] / total * (double)rows))
				p++;
			gpart[g[i].first] = p;
			done += g[i].size;
		}
		s = t;
	}
	for (size_t i = 0; i < n; i++)
		part[i] = gpart[first[gid[i]]];
out:
	tr_free(k);
	tr_free(gid);
	tr_free(first);
	tr_free(gpart);
	tr_free(g);
	if (rng)
		gsl_rng_free(rng);
	return rc;
}

int tr_split_rows(const struct tr_trace *rows, size_t n, const double frac[2], uint64_t seed, struct tr_rows *a,
		  struct tr_rows *b, struct tr_err *e)
{
	int *part = tr_malloc((n ? n : 1) * sizeof *part);
	a->v = tr_malloc((n ? n : 1) * sizeof *a->v);
	a->n = 0;
	if (b) {
		b->v = tr_malloc((n ? n : 1) * sizeof *b->v);
		b->n = 0;
	}
	int rc = !part || !a->v || (b && !b->v) ? tr_fail(e, "out of memory")
						 : tr_split_traces(rows, NULL, n, frac, 2, seed, 0, part, e);
	for (size_t i = 0; !rc && i < n; i++) {
		if (part[i] == 0)
			a->v[a->n++] = rows[i];
		else if (b)
			b->v[b->n++] = rows[i];
	}
	tr_free(part);
	return rc ? -1 : 0;
}

static int split_traces(const struct tr_trace *rows, const size_t *idx, size_t n, const double *frac, int nparts,
			uint64_t seed, int tiny, int blind, int *part, struct tr_err *e)
{
	int *strat = tr_malloc((n ? n : 1) * sizeof *strat);
	const char **group = tr_malloc((n ? n : 1) * sizeof *group);
	int rc = -1;
	if (!strat || !group) {
		tr_fail(e, "out of memory");
	} else {
		for (size_t i = 0; i < n; i++) {
			const struct tr_trace *t = &rows[idx ? idx[i] : i];
			strat[i] = blind ? 0 : t->teacher;
			group[i] = tr_trace_group(t);
		}
		rc = tr_split_grouped(n, strat, group, frac, nparts, seed, tiny, part, e);
	}
	tr_free(strat);
	tr_free(group);
	return rc;
}

int tr_split_traces(const struct tr_trace *rows, const size_t *idx, size_t n, const double *frac, int nparts,
		    uint64_t seed, int tiny, int *part, struct tr_err *e)
{
	return split_traces(rows, idx, n, frac, nparts, seed, tiny, 0, part, e);
}

int tr_split_traces_blind(const struct tr_trace *rows, const size_t *idx, size_t n, const double *frac, int nparts,
			  uint64_t seed, int *part, struct tr_err *e)
{
	return split_traces(rows, idx, n, frac, nparts, seed, 0, 1, part, e);
}
