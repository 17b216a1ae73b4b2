/* Unit tests of src/feat: tf-idf rows, IDF from training rows only, pair namespaces, .npy reading. */
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "../../src/feat/feat.h"
#include "unit.h"

static struct tr_trace tr(const char *a, const char *b)
{
	return (struct tr_trace){.input = (char *)a, .input_b = (char *)b, .teacher = 0, .gold = -1};
}

static int same_row(const struct tr_node *x, const struct tr_node *y)
{
	for (;; x++, y++) {
		if (x->index != y->index || x->value != y->value)
			return 0;
		if (x->index == -1)
			return 1;
	}
}

static size_t row_nnz(const struct tr_node *x)
{
	size_t n = 0;
	while (x[n].index != -1)
		n++;
	return n;
}

static void test_tfidf(void)
{
	struct tr_trace rows[] = {
		tr("I lost my card", NULL),	     tr("Where is my card?", NULL),   tr("card arrival time", NULL),
		tr("top up failed", NULL),	     tr("Top-up FAILED again", NULL), tr("café crème – naïve", NULL),
		tr("bad \xff\xfe bytes \xc3", NULL), tr("zebra quantum", NULL),	      tr("", "card arrival time"),
	};
	size_t idx[] = {0, 1, 2, 3, 4, 5, 6, 8};
	struct tr_tfidf_params p = {16, 7, 1};
	struct tr_featurizer *f;
	struct tr_err e;
	CHECK(tr_feat_fit_tfidf(rows, idx, 8, &p, &f, &e) == 0, "%s", e.msg);
	size_t all[] = {0, 1, 2, 3, 4, 5, 6, 7, 8};
	struct tr_feats a, b;
	CHECK(tr_feat_transform_text(f, rows, all, 9, &a, &e) == 0, "%s", e.msg);
	CHECK(tr_feat_transform_text(f, rows, all, 9, &b, &e) == 0, "%s", e.msg);
	int same = 1;
	for (size_t i = 0; i < 9; i++)
		same &= same_row(a.rows[i], b.rows[i]);
	CHECK(same, "the same text gives the same row");
	for (size_t i = 0; i < 9; i++) {
		double ss = 0;
		int sorted = 1;
		for (const struct tr_node *q = a.rows[i]; q->index != -1; q++) {
			ss += q->value * q->value;
			sorted &= q[1].index == -1 || q[1].index > q->index;
		}
		if (i != 7)
			CHECK(fabs(ss - 1) < 1e-12, "row %zu norm^2 %g", i, ss);
		CHECK(sorted, "row %zu indices ascending", i);
	}
	/* "zebra quantum" never occurs in the training rows: IDF knows none of its features */
	CHECK(row_nnz(a.rows[7]) == 0, "unseen text has %zu features", row_nnz(a.rows[7]));
	/* case folding: "top up failed" and "Top-up FAILED again" share their words */
	CHECK(row_nnz(a.rows[5]) > 10 && row_nnz(a.rows[6]) > 5, "UTF-8 and invalid bytes featurized");
	/* the same text as premise and as hypothesis has disjoint features */
	int shared = 0;
	for (const struct tr_node *x = a.rows[2]; x->index != -1; x++)
		for (const struct tr_node *y = a.rows[8]; y->index != -1; y++)
			shared += x->index == y->index;
	CHECK(shared == 0 && row_nnz(a.rows[8]) == row_nnz(a.rows[2]), "pair namespaces: %d shared", shared);
	/* IDF from the training rows only: a featurizer fitted on fewer rows gives other weights */
	struct tr_featurizer *g;
	CHECK(tr_feat_fit_tfidf(rows, idx, 3, &p, &g, &e) == 0, "%s", e.msg);
	CHECK(tr_featurizer_dim(g) < tr_featurizer_dim(f), "dims %d %d", tr_featurizer_dim(g), tr_featurizer_dim(f));
	struct tr_feats c;
	size_t only3[] = {3};
	CHECK(tr_feat_transform_text(g, rows, only3, 1, &c, &e) == 0 && row_nnz(c.rows[0]) < row_nnz(a.rows[3]),
	      "text outside the 3 training rows keeps only their features");
	tr_feats_free(&c);
	tr_featurizer_free(g);
	/* save -> load gives the same rows */
	struct tr_buf sb = {0};
	CHECK(tr_featurizer_save(f, &sb) == 0, "save");
	struct tr_featurizer *h;
	CHECK(tr_featurizer_load("f.txt", sb.data, &h, &e) == 0, "%s", e.msg);
	struct tr_feats d;
	CHECK(tr_feat_transform_text(h, rows, all, 9, &d, &e) == 0, "%s", e.msg);
	same = 1;
	for (size_t i = 0; i < 9; i++)
		same &= same_row(a.rows[i], d.rows[i]);
	CHECK(same, "save/load keeps the transform");
	struct tr_featurizer *junk;
	CHECK(tr_featurizer_load("junk.txt", "hello\n", &junk, &e) == -1, "junk featurizer");
	CHECK_ERR(e, "junk.txt:1: not a tracer featurizer");
	tr_buf_free(&sb);
	tr_feats_free(&a), tr_feats_free(&b), tr_feats_free(&d);
	tr_featurizer_free(f), tr_featurizer_free(h);
}

/* Builds a .npy image: header dict text, then raw data. */
static size_t npy(char *buf, const char *dict, const void *data, size_t n)
{
	size_t hl = strlen(dict);
	size_t pad = 64 - (10 + hl + 1) % 64;
	memcpy(buf, "\x93NUMPY\x01\x00", 8);
	size_t total = hl + pad + 1;
	buf[8] = (char)(total & 0xff), buf[9] = (char)(total >> 8);
	memcpy(buf + 10, dict, hl);
	memset(buf + 10 + hl, ' ', pad);
	buf[10 + hl + pad] = '\n';
	memcpy(buf + 10 + total, data, n);
	return 10 + total + n;
}

static void test_npy(void)
{
	static char buf[4096];
	double *m;
	size_t r;
	int d;
	struct tr_err e;
	float f32[6] = {1, 2, 3, 4, 5, 6.5f};
	double f64[6] = {0.1, -2, 3e10, 4, 5, 6};
	size_t n = npy(buf, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", f32, sizeof f32);
	CHECK(tr_npy_parse("a.npy", buf, n, &m, &r, &d, &e) == 0 && r == 2 && d == 3 && m[5] == 6.5, "float32");
	tr_free(m);
	n = npy(buf, "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }", f64, sizeof f64);
	CHECK(tr_npy_parse("b.npy", buf, n, &m, &r, &d, &e) == 0 && r == 3 && d == 2 && memcmp(m, f64, sizeof f64) == 0,
	      "float64 exact");
	tr_free(m);
	/* the same file compressed with zstd */
	char *z;
	size_t zn;
	tr_zstd_compress(buf, n, &z, &zn, &e);
	char path[] = "/tmp/tracer-npy-XXXXXX";
	int fd = mkstemp(path);
	close(fd);
	char zpath[64];
	snprintf(zpath, sizeof zpath, "%s.npy.zst", path);
	tr_write_atomic(zpath, z, zn, &e);
	CHECK(tr_npy_read(zpath, &m, &r, &d, &e) == 0 && r == 3 && memcmp(m, f64, sizeof f64) == 0, "%s", e.msg);
	tr_free(m), tr_free(z);
	unlink(zpath), unlink(path);

	static const struct {
		const char *dict;
		size_t bytes;
		const char *err;
	} bad[] = {
		{"{'descr': '<f8', 'fortran_order': True, 'shape': (3, 2), }", 48, "Fortran-ordered"},
		{"{'descr': '<i4', 'fortran_order': False, 'shape': (3, 2), }", 24, "is not little-endian float32"},
		{"{'descr': '>f8', 'fortran_order': False, 'shape': (3, 2), }", 48, "is not little-endian float32"},
		{"{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }", 40, "truncated"},
		{"{'descr': '<f8', 'fortran_order': False, 'shape': (6,), }", 48, "expected a 2-D shape"},
		{"{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }", 48, "trailing data"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		n = npy(buf, bad[i].dict, f64, bad[i].bytes);
		CHECK(tr_npy_parse("x.npy", buf, n, &m, &r, &d, &e) == -1, "case %zu accepted", i);
		CHECK_ERR(e, bad[i].err);
	}
	CHECK(tr_npy_parse("x.npy", "PK\3\4junk...", 11, &m, &r, &d, &e) == -1, "bad magic");
	CHECK_ERR(e, "x.npy: not a .npy file");
	double nan[6] = {1, 2, NAN, 4, 5, 6};
	n = npy(buf, "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }", nan, sizeof nan);
	CHECK(tr_npy_parse("n.npy", buf, n, &m, &r, &d, &e) == -1, "NaN rejected");
	CHECK_ERR(e, "n.npy: row 1 column 0 is not finite");
	/* dense rows are L2-normalised and the dimension is checked */
	struct tr_featurizer *f;
	struct tr_feats X;
	size_t idx[] = {2, 0};
	CHECK(tr_feat_fit_dense(2, &f, &e) == 0, "%s", e.msg);
	CHECK(tr_feat_transform_dense(f, f64, 3, 2, idx, 2, &X, &e) == 0 && fabs(X.dense[0] * X.dense[0] +
										 X.dense[1] * X.dense[1] - 1) < 1e-12,
	      "dense normalised");
	/* dense features keep the matrix only; rows as nodes are made on demand, from the same values */
	CHECK(X.rows == NULL && X.pool == NULL, "dense features hold no node rows");
	struct tr_node nb[3], *pool = NULL, **rows = tr_feats_dense_rows(&X, &pool);
	const struct tr_node *r1 = tr_feats_row(&X, 1, nb);
	CHECK(r1 == nb && r1[0].index == 1 && r1[1].index == 2 && r1[2].index == -1 && r1[0].value == X.dense[2] &&
	      r1[1].value == X.dense[3], "dense row 1 as nodes");
	CHECK(rows && rows[1][0].index == 1 && rows[1][1].value == X.dense[3] && rows[1][2].index == -1 &&
	      rows[0][1].value == X.dense[1], "dense rows as nodes in one pool");
	tr_free(rows), tr_free(pool);
	struct tr_feats V;
	size_t back[] = {1};
	CHECK(tr_feats_view(&X, back, 1, &V) == 0 && V.rows == NULL && V.dense[0] == X.dense[2], "dense view");
	tr_feats_view_free(&V);
	tr_feats_free(&X);
	CHECK(tr_feat_transform_dense(f, f64, 2, 3, idx, 2, &X, &e) == -1, "dimension mismatch");
	CHECK_ERR(e, "dimension 3, the model was fitted on 2");
	tr_featurizer_free(f);
}

/*
 * n random sparse rows over dim features, packed (each ended by -1): feature f is present with a
 * probability falling from 0.6 (feature 1) to 0.6/dim, so the first features are common and the rest
 * rare, as with tf-idf; values in (0, 1] (or in [-1, 1] when `neg`), rows L2-normalised when `unit`.
 * Rows `dup` apart repeat each other (ties in similarity).
 */
static struct tr_node *random_rows(gsl_rng *r, size_t n, int dim, int neg, int unit, size_t dup, size_t *n_nodes)
{
	struct tr_node *nodes = malloc(n * ((size_t)dim + 1) * sizeof *nodes);
	size_t m = 0, *row_at = malloc(n * sizeof *row_at);
	for (size_t i = 0; i < n; i++) {
		row_at[i] = m;
		if (dup && i >= dup && i % 3 == 0) { /* a copy of row i - dup */
			for (size_t t = row_at[i - dup]; nodes[t].index != -1; t++)
				nodes[m++] = nodes[t];
			nodes[m++] = (struct tr_node){-1, 0};
			continue;
		}
		size_t first = m;
		double ss = 0;
		for (int f = 1; f <= dim; f++)
			if (gsl_rng_uniform(r) < 0.6 / f) {
				double v = neg ? 2 * gsl_rng_uniform(r) - 1 : 1 - gsl_rng_uniform(r);
				nodes[m++] = (struct tr_node){f, v};
				ss += v * v;
			}
		for (size_t t = first; unit && ss > 0 && t < m; t++)
			nodes[t].value /= sqrt(ss);
		nodes[m++] = (struct tr_node){-1, 0};
	}
	free(row_at);
	*n_nodes = m;
	return nodes;
}

/* The k best rows of a full scan (similarity descending, then row ascending), skipping row `skip`. */
static size_t brute_top(const double *dots, size_t n, size_t k, size_t skip, uint32_t *row, double *sim)
{
	size_t have = 0;
	for (size_t j = 0; j < n; j++) {
		if (j == skip)
			continue;
		if (have == k && !(dots[j] > sim[k - 1]))
			continue;
		size_t pos = have < k ? have++ : k - 1;
		while (pos > 0 && dots[j] > sim[pos - 1]) {
			sim[pos] = sim[pos - 1], row[pos] = row[pos - 1];
			pos--;
		}
		sim[pos] = dots[j], row[pos] = (uint32_t)j;
	}
	return have;
}

/* A stop rule for the tests: the k-th similarity found reaches *arg (monotone, as the rule must be). */
static int kth_reaches(const double *sims, size_t k, void *arg)
{
	return sims[k - 1] >= *(const double *)arg;
}

/* The pruned top-k search against a full scan of the inverted index: same rows, same similarity bits. */
static void test_sparse_knn(void)
{
	gsl_rng *r = tr_rng_new(11);
	struct {
		size_t n, nq, dup;
		int dim, neg, unit;
	} cases[] = {
		{600, 200, 0, 300, 0, 1, }, {400, 100, 7, 120, 0, 1}, {300, 60, 0, 200, 0, 0},
		{200, 50, 0, 80, 1, 1},	    {5, 20, 0, 40, 0, 1},     {1, 5, 0, 10, 0, 1},
	};
	int ks[] = {1, 3, 10, 25};
	for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
		size_t nn, qn;
		int dim = cases[c].dim;
		struct tr_node *nodes = random_rows(r, cases[c].n, dim, cases[c].neg, cases[c].unit, cases[c].dup, &nn);
		/* queries: fresh rows and the stored rows themselves (searched with and without themselves) */
		struct tr_node *qs = random_rows(r, cases[c].nq, dim, cases[c].neg, cases[c].unit, 0, &qn);
		struct tr_sparse_knn *ix;
		struct tr_sparse_index *full;
		CHECK(tr_sparse_knn_new(nodes, nn, cases[c].n, dim, &ix) == 0, "case %zu: index", c);
		CHECK(tr_sparse_index_packed(nodes, nn, cases[c].n, dim, &full) == 0, "case %zu: full index", c);
		double *dots = malloc(cases[c].n * sizeof *dots);
		int bad_rows = 0, bad_bits = 0, bad_count = 0, searches = 0, bad_probe = 0, probes = 0;
		int bad_stop = 0, stops = 0, full_runs = 0;
		for (size_t kk = 0; kk < sizeof ks / sizeof *ks; kk++) {
			int k = ks[kk];
			struct tr_sparse_knn_scratch *s = tr_sparse_knn_scratch_new(ix, k);
			uint32_t *row = malloc((size_t)k * sizeof *row), *brow = malloc((size_t)k * sizeof *brow);
			double *sim = malloc((size_t)k * sizeof *sim), *bsim = malloc((size_t)k * sizeof *bsim);
			const struct tr_node *q = qs;
			for (size_t i = 0; i < cases[c].nq + cases[c].n; i++) {
				int stored = i >= cases[c].nq;
				const struct tr_node *qq = q;
				if (stored) { /* stored row i - nq */
					qq = nodes;
					for (size_t skip = 0; skip < i - cases[c].nq; skip++)
						while ((qq++)->index != -1)
							;
				}
				size_t self = stored && i % 2 ? i - cases[c].nq : SIZE_MAX;
				tr_sparse_index_dots(full, qq, dots);
				size_t hb = brute_top(dots, cases[c].n, (size_t)k, self, brow, bsim);
				/* a probe's j-th row is a real row with its full-scan similarity, never above the true j-th */
				size_t hp = tr_sparse_knn_probe(ix, qq, k, self, NULL, s, row, sim);
				probes += hp > 0;
				for (size_t t = 0; t < hp; t++)
					bad_probe += row[t] == self || memcmp(&sim[t], &dots[row[t]], sizeof sim[t]) != 0 ||
						     t >= hb || sim[t] > bsim[t] || (t > 0 && sim[t] > sim[t - 1]);
				/* with a stop rule: the full search's result, or k real rows no higher, rank by rank, that
				 * meet the rule (a level above the true k-th similarity for every third query: never met) */
				double level = hb == (size_t)k ? bsim[k - 1] * (i % 3 == 0 ? 2.0 : 0.7) : INFINITY;
				struct tr_knn_stop rule = {kth_reaches, &level};
				int stopped = -1;
				size_t hs = tr_sparse_knn_top_until(ix, qq, k, self, &rule, s, row, sim, &stopped);
				if (stopped == 1) {
					stops++;
					bad_stop += hs != (size_t)k || !kth_reaches(sim, hs, &level);
					for (size_t t = 0; t < hs; t++)
						bad_stop += row[t] == self || memcmp(&sim[t], &dots[row[t]], sizeof sim[t]) != 0 ||
							    sim[t] > bsim[t] || (t > 0 && !(sim[t] <= sim[t - 1]));
				} else {
					full_runs++;
					bad_stop += stopped != 0 || hs != hb;
					for (size_t t = 0; t < hs && t < hb; t++)
						bad_stop += row[t] != brow[t] || memcmp(&sim[t], &bsim[t], sizeof sim[t]) != 0;
				}
				hp = tr_sparse_knn_probe(ix, qq, k, self, &rule, s, row, sim);
				for (size_t t = 0; t < hp; t++)
					bad_probe += row[t] == self || memcmp(&sim[t], &dots[row[t]], sizeof sim[t]) != 0 ||
						     t >= hb || sim[t] > bsim[t] || (t > 0 && sim[t] > sim[t - 1]);
				size_t h = tr_sparse_knn_top(ix, qq, k, self, s, row, sim);
				searches++;
				bad_count += h != hb;
				for (size_t t = 0; t < h && t < hb; t++) {
					bad_rows += row[t] != brow[t];
					bad_bits += memcmp(&sim[t], &bsim[t], sizeof sim[t]) != 0;
				}
				if (!stored)
					while ((q++)->index != -1)
						;
			}
			CHECK(!bad_count && !bad_rows && !bad_bits,
			      "case %zu k %d: %d counts, %d rows, %d similarities differ from the full scan in %d searches", c, k,
			      bad_count, bad_rows, bad_bits, searches);
			CHECK(!bad_probe && (cases[c].n < 300 || probes > 0), "case %zu k %d: %d bad probe rows (%d probes found rows)",
			      c, k, bad_probe, probes);
			CHECK(!bad_stop && (cases[c].n < 300 || (stops > 0 && full_runs > 0)),
			      "case %zu k %d: %d bad results with a stop rule (%d stopped early, %d ran in full)", c, k, bad_stop,
			      stops, full_runs);
			if (!cases[c].neg && cases[c].n >= 300 && k == 10)
				CHECK(tr_sparse_knn_scratch_evaluated(s) < (size_t)searches * cases[c].n,
				      "case %zu: the bound pruned nothing (%zu rows computed in %d searches)", c,
				      tr_sparse_knn_scratch_evaluated(s), searches);
			tr_sparse_knn_scratch_free(s);
			free(row), free(brow), free(sim), free(bsim);
		}
		free(dots), free(nodes), free(qs);
		tr_sparse_knn_free(ix);
		tr_sparse_index_free(full);
	}
	/* every row touched, then one again: 20 rows, row i holds feature i + 1 (and row 0 also feature 21),
	 * each in 5% of the rows (none common); a query with all 21 features touches row 0 twice */
	{
		struct tr_node all[20 * 2 + 1 + 1], q[22];
		size_t m = 0;
		for (int i = 0; i < 20; i++) {
			all[m++] = (struct tr_node){i + 1, 1.0};
			if (i == 0)
				all[m++] = (struct tr_node){21, 1.0};
			all[m++] = (struct tr_node){-1, 0};
		}
		for (int f = 0; f < 21; f++)
			q[f] = (struct tr_node){f + 1, 1.0};
		q[21] = (struct tr_node){-1, 0};
		struct tr_sparse_knn *ix = NULL;
		CHECK(tr_sparse_knn_new(all, m, 20, 21, &ix) == 0, "index of 20 rows");
		struct tr_sparse_knn_scratch *s = ix ? tr_sparse_knn_scratch_new(ix, 3) : NULL;
		uint32_t row[3];
		double sim[3];
		size_t h = s ? tr_sparse_knn_top(ix, q, 3, SIZE_MAX, s, row, sim) : 0;
		CHECK(h == 3 && row[0] == 0 && sim[0] == 2.0 && row[1] == 1 && sim[1] == 1.0,
		      "every row touched and one twice: row 0 first (2), then row 1 (1)");
		tr_sparse_knn_scratch_free(s);
		tr_sparse_knn_free(ix);
	}
	size_t nn;
	struct tr_node *nodes = random_rows(r, 10, 20, 0, 1, 0, &nn);
	struct tr_sparse_knn *bad = NULL;
	CHECK(tr_sparse_knn_new(nodes, nn, 11, 20, &bad) == -1 && !bad, "a wrong row count is refused");
	CHECK(tr_sparse_knn_new(nodes, nn - 1, 10, 20, &bad) == -1 && !bad, "rows without their last end are refused");
	tr_sparse_knn_free(NULL);
	tr_sparse_knn_scratch_free(NULL);
	free(nodes);
	gsl_rng_free(r);
}

int main(void)
{
	test_tfidf();
	test_npy();
	test_sparse_knn();
	return unit_done();
}
