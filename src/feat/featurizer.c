/*
 * featurizer.c - hashed tf-idf and dense-embedding featurizers, their rows and their serialisation.
 *
 * tf-idf: lower-cased (ASCII) words are maximal runs of letters, digits and non-ASCII bytes; features are
 * word unigrams, word bigrams and character n-grams of 2..5 code points taken within each word padded by
 * one space on each side. Each feature is hashed (XXH3, seeded, with a namespace byte for the feature
 * kind and for the text field, so a pair's premise and hypothesis never share a feature) into 2^bits
 * buckets. Term frequency is sublinear (1 + ln tf), IDF is ln((1 + N) / (1 + df)) + 1 over the training
 * texts, and rows are L2-normalised. Buckets seen in fewer than min_df training texts are dropped and
 * the rest renumbered 1..F, which keeps models small.
 */
#include "feat.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* the packaged xxHash, its functions inlined (its documented XXH_INLINE_ALL mode: the same hashes, no call per n-gram) */
#define XXH_INLINE_ALL
#include <xxhash.h>

/* sublinear term frequencies 1 + ln tf kept for tf below this (the same log() values, computed once) */
#define TF_TABLE 64

struct tr_featurizer {
	enum tr_feat_kind kind;
	struct tr_tfidf_params p;
	int dim;	 /* output features */
	int *map;	 /* bucket -> feature (1..dim) or 0; 2^bits entries (tf-idf) */
	double *idf;	 /* feature -> idf, dim + 1 entries (tf-idf) */
	size_t n_docs;	 /* training texts the IDF was fitted on */
	double tf[TF_TABLE]; /* tf[c] = 1 + ln c for c >= 2 (tf-idf) */
};

static void tf_table(struct tr_featurizer *f)
{
	for (int c = 2; c < TF_TABLE; c++)
		f->tf[c] = 1.0 + log((double)c);
}

/* The sublinear weight of a term seen c times: 1 + ln c (1 when c = 1). */
static double tf_weight(const struct tr_featurizer *f, size_t c)
{
	return c == 1 ? 1.0 : c < TF_TABLE ? f->tf[c] : 1.0 + log((double)c);
}

/* ---- feature rows ---- */

void tr_feats_free(struct tr_feats *f)
{
	if (!f)
		return;
	tr_free(f->rows);
	tr_free(f->pool);
	tr_free(f->dense);
	memset(f, 0, sizeof *f);
}

int tr_feats_view(const struct tr_feats *f, const size_t *idx, size_t n, struct tr_feats *out)
{
	memset(out, 0, sizeof *out);
	if (f->rows) {
		if (!(out->rows = tr_malloc(n * sizeof *out->rows)))
			return -1;
		for (size_t i = 0; i < n; i++)
			out->rows[i] = f->rows[idx[i]];
	}
	out->n = n;
	out->dim = f->dim;
	if (f->dense) {
		if (!(out->dense = tr_malloc(n * (size_t)f->dim * sizeof *out->dense))) {
			tr_free(out->rows);
			return -1;
		}
		for (size_t i = 0; i < n; i++)
			memcpy(out->dense + i * (size_t)f->dim, f->dense + idx[i] * (size_t)f->dim,
			       (size_t)f->dim * sizeof *out->dense);
	}
	return 0;
}

void tr_feats_view_free(struct tr_feats *v)
{
	tr_free(v->rows);
	tr_free(v->dense);
	memset(v, 0, sizeof *v);
}

const struct tr_node *tr_feats_row(const struct tr_feats *X, size_t i, struct tr_node *buf)
{
	if (X->rows)
		return X->rows[i];
	const double *x = X->dense + i * (size_t)X->dim;
	for (int k = 0; k < X->dim; k++)
		buf[k] = (struct tr_node){k + 1, x[k]};
	buf[X->dim] = (struct tr_node){-1, 0};
	return buf;
}

struct tr_node **tr_feats_dense_rows(const struct tr_feats *X, struct tr_node **pool)
{
	size_t d = (size_t)X->dim + 1;
	struct tr_node **rows = tr_malloc((X->n ? X->n : 1) * sizeof *rows);
	*pool = tr_malloc((X->n ? X->n : 1) * d * sizeof **pool);
	if (!rows || !*pool) {
		tr_free(rows), tr_free(*pool);
		*pool = NULL;
		return NULL;
	}
	for (size_t i = 0; i < X->n; i++)
		rows[i] = (struct tr_node *)tr_feats_row(X, i, *pool + i * d);
	return rows;
}

/* ---- tokenisation and hashing ---- */

struct grams {
	uint32_t *b; /* bucket of each feature occurrence */
	size_t n, cap;
	uint32_t *tmp; /* scratch for sorting */
	size_t tmpcap;
	char *low; /* lower-cased text */
	size_t lowcap;
};

static int is_word_byte(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c >= 0x80;
}

static int push_gram(struct grams *g, uint64_t seed, uint32_t mask, char ns, const char *s, size_t len)
{
	char buf[256];
	if (len > sizeof buf - 1)
		len = sizeof buf - 1; /* very long words: hash their first 255 bytes */
	buf[0] = ns;
	memcpy(buf + 1, s, len);
	if (g->n == g->cap && tr_grow(&g->b, &g->cap, g->n + 1, sizeof *g->b))
		return -1;
	g->b[g->n++] = (uint32_t)(XXH3_64bits_withSeed(buf, len + 1, seed) & mask);
	return 0;
}

/* Appends the hashed features of one text; field 0 or 1 picks the namespace. */
static int text_grams(struct grams *g, const char *text, int field, const struct tr_tfidf_params *p)
{
	size_t len = strlen(text);
	if (len + 3 > g->lowcap && tr_grow(&g->low, &g->lowcap, len + 3, 1))
		return -1;
	char *low = g->low;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];
		low[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
	}
	low[len] = 0;
	uint32_t mask = (uint32_t)((1u << p->hash_bits) - 1);
	char nsw = field ? 'W' : 'w', nsb = field ? 'B' : 'b', nsc = field ? 'C' : 'c';
	const char *prev = NULL;
	size_t prevlen = 0;
	for (size_t i = 0; i < len;) {
		if (!is_word_byte((unsigned char)low[i])) {
			i++;
			continue;
		}
		size_t start = i;
		while (i < len && is_word_byte((unsigned char)low[i]))
			i++;
		size_t wl = i - start;
		const char *w = low + start;
		if (push_gram(g, p->seed, mask, nsw, w, wl))
			return -1;
		if (prev) {
			char bi[256];
			size_t a = prevlen < 127 ? prevlen : 127, b = wl < 127 ? wl : 127;
			memcpy(bi, prev, a);
			bi[a] = ' ';
			memcpy(bi + a + 1, w, b);
			if (push_gram(g, p->seed, mask, nsb, bi, a + 1 + b))
				return -1;
		}
		prev = w, prevlen = wl;
		/* character n-grams over code points of " word " */
		char pad[260];
		size_t pl = wl < 256 ? wl : 256;
		pad[0] = ' ';
		memcpy(pad + 1, w, pl);
		pad[pl + 1] = ' ';
		pl += 2;
		size_t cp[260], ncp = 0; /* byte offset of each code point */
		for (size_t k = 0; k < pl; k++)
			if (((unsigned char)pad[k] & 0xC0) != 0x80)
				cp[ncp++] = k;
		cp[ncp] = pl;
		for (size_t n = 2; n <= 5; n++)
			for (size_t s = 0; s + n <= ncp; s++)
				if (push_gram(g, p->seed, mask, nsc, pad + cp[s], cp[s + n] - cp[s]))
					return -1;
	}
	return 0;
}

/*
 * Sorts n numbers below 2^bits: insertion sort when short, else LSD radix sort in two passes when bits
 * <= 18 (digits of half the bits: fewer counters to clear and sum for small ranges), 9-bit digits above.
 */
static void sort_buckets(uint32_t *a, uint32_t *tmp, size_t n, int bits)
{
	if (n <= 32) {
		for (size_t i = 1; i < n; i++) {
			uint32_t v = a[i];
			size_t j = i;
			for (; j > 0 && a[j - 1] > v; j--)
				a[j] = a[j - 1];
			a[j] = v;
		}
		return;
	}
	uint32_t count[1 << 9];
	int digit = bits <= 18 ? (bits + 1) / 2 : 9, passes = 0;
	uint32_t radix = 1u << digit, low = radix - 1;
	for (int shift = 0; shift < bits; shift += digit, passes++) {
		memset(count, 0, radix * sizeof *count);
		for (size_t i = 0; i < n; i++)
			count[(a[i] >> shift) & low]++;
		uint32_t sum = 0;
		for (size_t d = 0; d < radix; d++) {
			uint32_t c = count[d];
			count[d] = sum;
			sum += c;
		}
		for (size_t i = 0; i < n; i++)
			tmp[count[(a[i] >> shift) & low]++] = a[i];
		uint32_t *t = a;
		a = tmp, tmp = t;
	}
	if (passes % 2) /* an odd number of passes left the result in the scratch array */
		memcpy(tmp, a, n * sizeof *a);
}

/* The sorted buckets of one trace (both fields). */
static int trace_grams(struct grams *g, const struct tr_trace *t, const struct tr_tfidf_params *p)
{
	g->n = 0;
	if (text_grams(g, t->input, 0, p) || (t->input_b && text_grams(g, t->input_b, 1, p)))
		return -1;
	if (g->n > g->tmpcap && tr_grow(&g->tmp, &g->tmpcap, g->n, sizeof *g->tmp))
		return -1;
	sort_buckets(g->b, g->tmp, g->n, p->hash_bits);
	return 0;
}

static void grams_free(struct grams *g)
{
	tr_free(g->b);
	tr_free(g->tmp);
	tr_free(g->low);
}

/* ---- fitting ---- */

int tr_feat_fit_tfidf(const struct tr_trace *rows, const size_t *idx, size_t n,
		      const struct tr_tfidf_params *p, struct tr_featurizer **out, struct tr_err *e)
{
	*out = NULL;
	if (p->hash_bits < 4 || p->hash_bits > 26)
		return tr_fail(e, "tfidf: hash_bits %d out of range 4..26", p->hash_bits);
	if (p->min_df < 1)
		return tr_fail(e, "tfidf: min_df %d must be at least 1", p->min_df);
	size_t nb = (size_t)1 << p->hash_bits;
	struct tr_featurizer *f = tr_calloc(1, sizeof *f);
	uint32_t *df = tr_calloc(nb, sizeof *df);
	struct grams g = {0};
	if (!f || !df || !(f->map = tr_calloc(nb, sizeof *f->map)))
		goto oom;
	f->kind = TR_FEAT_TFIDF;
	f->p = *p;
	f->n_docs = n;
	tf_table(f);
	for (size_t i = 0; i < n; i++) {
		if (trace_grams(&g, &rows[idx[i]], p))
			goto oom;
		for (size_t k = 0; k < g.n; k++)
			if (k == 0 || g.b[k] != g.b[k - 1])
				df[g.b[k]]++;
	}
	int dim = 0;
	for (size_t b = 0; b < nb; b++)
		if (df[b] >= (uint32_t)p->min_df)
			f->map[b] = ++dim;
	f->dim = dim;
	if (!(f->idf = tr_malloc(((size_t)dim + 1) * sizeof *f->idf)))
		goto oom;
	f->idf[0] = 0;
	for (size_t b = 0; b < nb; b++)
		if (f->map[b])
			f->idf[f->map[b]] = log((1.0 + (double)n) / (1.0 + df[b])) + 1.0;
	tr_free(df);
	grams_free(&g);
	*out = f;
	return 0;
oom:
	tr_free(df);
	grams_free(&g);
	tr_featurizer_free(f);
	return tr_fail(e, "tfidf: out of memory fitting on %zu texts", n);
}

int tr_feat_fit_dense(int dim, struct tr_featurizer **out, struct tr_err *e)
{
	if (dim < 1)
		return tr_fail(e, "embeddings: dimension %d", dim);
	if (!(*out = tr_calloc(1, sizeof **out)))
		return tr_fail(e, "out of memory");
	(*out)->kind = TR_FEAT_NPY;
	(*out)->dim = dim;
	return 0;
}

void tr_featurizer_free(struct tr_featurizer *f)
{
	if (!f)
		return;
	tr_free(f->map);
	tr_free(f->idf);
	tr_free(f);
}

enum tr_feat_kind tr_featurizer_kind(const struct tr_featurizer *f)
{
	return f->kind;
}

int tr_featurizer_dim(const struct tr_featurizer *f)
{
	return f->dim;
}

/* ---- transforming ---- */

int tr_feat_transform_text(const struct tr_featurizer *f, const struct tr_trace *rows, const size_t *idx,
			   size_t n, struct tr_feats *out, struct tr_err *e)
{
	memset(out, 0, sizeof *out);
	if (f->kind != TR_FEAT_TFIDF)
		return tr_fail(e, "featurizer: dense embeddings cannot featurize text");
	struct grams g = {0};
	size_t cap = 0, used = 0;
	size_t *start = tr_malloc((n + 1) * sizeof *start);
	if (!start)
		goto oom;
	int fbits = 1;
	while (fbits < 31 && (1u << fbits) <= (unsigned)f->dim)
		fbits++;
	for (size_t i = 0; i < n; i++) {
		/*
		 * Buckets to features first (dropped buckets go), then sort the features: the map is monotone and
		 * one-to-one on kept buckets, so runs and order are those of the sorted buckets, over fewer and
		 * smaller numbers.
		 */
		const struct tr_trace *t = &rows[idx[i]];
		g.n = 0;
		if (text_grams(&g, t->input, 0, &f->p) || (t->input_b && text_grams(&g, t->input_b, 1, &f->p)))
			goto oom;
		size_t kept = 0;
		for (size_t k = 0; k < g.n; k++) {
			uint32_t feat = (uint32_t)f->map[g.b[k]];
			g.b[kept] = feat;
			kept += feat != 0;
		}
		g.n = kept;
		if (g.n > g.tmpcap && tr_grow(&g.tmp, &g.tmpcap, g.n, sizeof *g.tmp))
			goto oom;
		sort_buckets(g.b, g.tmp, g.n, fbits);
		start[i] = used;
		if (tr_grow(&out->pool, &cap, used + g.n + 1, sizeof *out->pool))
			goto oom;
		struct tr_node *row = out->pool + used;
		size_t m = 0;
		double norm = 0;
		for (size_t k = 0; k < g.n;) {
			size_t j = k;
			while (j < g.n && g.b[j] == g.b[k])
				j++;
			int feat = (int)g.b[k];
			double v = tf_weight(f, j - k) * f->idf[feat];
			row[m++] = (struct tr_node){feat, v};
			norm += v * v;
			k = j;
		}
		if (norm > 0) {
			norm = 1.0 / sqrt(norm);
			for (size_t k = 0; k < m; k++)
				row[k].value *= norm;
		}
		row[m++] = (struct tr_node){-1, 0};
		used += m;
	}
	start[n] = used;
	if (!(out->rows = tr_malloc((n ? n : 1) * sizeof *out->rows)))
		goto oom;
	for (size_t i = 0; i < n; i++)
		out->rows[i] = out->pool + start[i];
	out->n = n;
	out->dim = f->dim;
	tr_free(start);
	grams_free(&g);
	return 0;
oom:
	tr_free(start);
	grams_free(&g);
	tr_feats_free(out);
	return tr_fail(e, "tfidf: out of memory featurizing %zu texts", n);
}

int tr_feat_transform_dense(const struct tr_featurizer *f, const double *emb, size_t nrows, int dim,
			    const size_t *idx, size_t n, struct tr_feats *out, struct tr_err *e)
{
	memset(out, 0, sizeof *out);
	if (f->kind != TR_FEAT_NPY)
		return tr_fail(e, "featurizer: tf-idf cannot take embeddings");
	if (dim != f->dim)
		return tr_fail(e, "embeddings: dimension %d, the model was fitted on %d", dim, f->dim);
	size_t d = (size_t)dim;
	out->dense = tr_malloc((n ? n : 1) * d * sizeof *out->dense);
	if (!out->dense) {
		tr_feats_free(out);
		return tr_fail(e, "embeddings: out of memory for %zu rows of %d", n, dim);
	}
	for (size_t i = 0; i < n; i++) {
		if (idx[i] >= nrows) {
			tr_feats_free(out);
			return tr_fail(e, "embeddings: row %zu requested, the matrix has %zu rows", idx[i], nrows);
		}
		const double *src = emb + idx[i] * d;
		double norm = 0;
		for (size_t k = 0; k < d; k++)
			norm += src[k] * src[k];
		norm = norm > 0 ? 1.0 / sqrt(norm) : 0;
		double *dst = out->dense + i * d;
		for (size_t k = 0; k < d; k++)
			dst[k] = src[k] * norm;
	}
	out->n = n;
	out->dim = dim;
	return 0;
}

/* ---- serialisation ---- */

int tr_featurizer_save(const struct tr_featurizer *f, struct tr_buf *out)
{
	if (f->kind == TR_FEAT_NPY)
		return tr_buf_printf(out, "tracer-featurizer 1\nkind npy\ndim %d\n", f->dim);
	int bad = tr_buf_printf(out, "tracer-featurizer 1\nkind tfidf\nhash_bits %d\nseed %llu\nmin_df %d\n"
				     "n_docs %zu\nfeatures %d\n",
				f->p.hash_bits, (unsigned long long)f->p.seed, f->p.min_df, f->n_docs, f->dim);
	size_t nb = (size_t)1 << f->p.hash_bits;
	for (size_t b = 0; b < nb && !bad; b++)
		if (f->map[b])
			bad = tr_buf_printf(out, "%zu %.17g\n", b, f->idf[f->map[b]]);
	return bad;
}

int tr_featurizer_load(const char *what, const char *text, struct tr_featurizer **out, struct tr_err *e)
{
	*out = NULL;
	int dim, bits, min_df, off = 0;
	unsigned long long seed;
	size_t n_docs;
	if (sscanf(text, "tracer-featurizer 1\nkind npy\ndim %d\n%n", &dim, &off) == 1 && off > 0)
		return tr_feat_fit_dense(dim, out, e);
	if (sscanf(text, "tracer-featurizer 1\nkind tfidf\nhash_bits %d\nseed %llu\nmin_df %d\nn_docs %zu\n"
			 "features %d\n%n",
		   &bits, &seed, &min_df, &n_docs, &dim, &off) != 5 || off == 0)
		return tr_fail(e, "%s:1: not a tracer featurizer (format 1)", what);
	if (bits < 4 || bits > 26 || dim < 0 || (size_t)dim > ((size_t)1 << bits))
		return tr_fail(e, "%s: bad featurizer header", what);
	struct tr_featurizer *f = tr_calloc(1, sizeof *f);
	if (!f || !(f->map = tr_calloc((size_t)1 << bits, sizeof *f->map)) ||
	    !(f->idf = tr_malloc(((size_t)dim + 1) * sizeof *f->idf))) {
		tr_featurizer_free(f);
		return tr_fail(e, "%s: out of memory", what);
	}
	f->kind = TR_FEAT_TFIDF;
	f->p = (struct tr_tfidf_params){bits, seed, min_df};
	tf_table(f);
	f->dim = dim;
	f->n_docs = n_docs;
	f->idf[0] = 0;
	const char *s = text + off;
	size_t prev = 0;
	for (int k = 1; k <= dim; k++) {
		char *end;
		unsigned long long b = strtoull(s, &end, 10);
		double v = end > s ? strtod(end, &end) : NAN;
		if (end == s || *end != '\n' || b >= ((size_t)1 << bits) || (k > 1 && b <= prev) || !isfinite(v)) {
			tr_featurizer_free(f);
			return tr_fail(e, "%s:%d: bad feature line", what, k + 7);
		}
		f->map[b] = k;
		f->idf[k] = v;
		prev = (size_t)b;
		s = end + 1;
	}
	*out = f;
	return 0;
}
