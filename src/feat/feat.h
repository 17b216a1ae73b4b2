/*
 * feat.h - representations: hashed tf-idf of the text, or dense embeddings supplied by the user.
 *
 * A featurizer is fitted on training traces only (the IDF weights, or the embedding dimension), saved
 * with the model, and applied unchanged when routing. Rows come out as sparse nodes in the layout
 * liblinear (feature_node) and libsvm (svm_node) take: ascending 1-based indices, ended by index -1.
 */
#ifndef TR_FEAT_H
#define TR_FEAT_H

#include <stddef.h>
#include <stdint.h>

#include "../common/common.h"
#include "../data/data.h"

/* The largest feature dimension a model file may announce (tf-idf hashes into at most 2^26 buckets). */
#define TR_MAX_DIM (1 << 26)

struct tr_node {
	int index;
	double value;
};

/*
 * Feature rows of n inputs: sparse features as rows of nodes (rows, pool), dense features as one
 * n × dim row-major matrix only (dense; rows and pool NULL): a family that reads rows of nodes gets
 * them from tr_feats_row or tr_feats_dense_rows.
 */
struct tr_feats {
	size_t n;
	int dim;
	struct tr_node **rows;
	struct tr_node *pool;
	double *dense;
};
void tr_feats_free(struct tr_feats *f);
/* Rows `idx` of f, sharing f's sparse rows (dense rows are copied); free with tr_feats_view_free. */
int tr_feats_view(const struct tr_feats *f, const size_t *idx, size_t n, struct tr_feats *out);
void tr_feats_view_free(struct tr_feats *v);
/*
 * Row i of X as nodes (1-based indices, ended by index -1): X's own row when X is sparse, else dense
 * row i written into buf (X->dim + 1 nodes: every value, zeros included) and buf returned.
 */
const struct tr_node *tr_feats_row(const struct tr_feats *X, size_t i, struct tr_node *buf);
/* Every row of dense X as nodes, as tr_feats_row writes them, in one pool; the caller frees both. */
struct tr_node **tr_feats_dense_rows(const struct tr_feats *X, struct tr_node **pool);

enum tr_feat_kind { TR_FEAT_TFIDF, TR_FEAT_NPY };

struct tr_tfidf_params {
	int hash_bits; /* feature space 2^hash_bits before compaction */
	uint64_t seed; /* hash seed */
	int min_df;    /* keep features seen in at least this many training texts */
};
#define TR_TFIDF_DEFAULTS {18, 0, 2}

struct tr_featurizer;

/* Fits tf-idf on the texts of rows idx[0..n) (IDF from those rows only). */
int tr_feat_fit_tfidf(const struct tr_trace *rows, const size_t *idx, size_t n,
		      const struct tr_tfidf_params *p, struct tr_featurizer **out, struct tr_err *e);
/* A featurizer for dense embeddings of dimension dim. */
int tr_feat_fit_dense(int dim, struct tr_featurizer **out, struct tr_err *e);
void tr_featurizer_free(struct tr_featurizer *f);
enum tr_feat_kind tr_featurizer_kind(const struct tr_featurizer *f);
/* Dimension of the rows the featurizer produces. */
int tr_featurizer_dim(const struct tr_featurizer *f);

/* tf-idf rows for the texts of rows idx[0..n). */
int tr_feat_transform_text(const struct tr_featurizer *f, const struct tr_trace *rows, const size_t *idx,
			   size_t n, struct tr_feats *out, struct tr_err *e);
/* Dense rows idx[0..n) of an embedding matrix (nrows × dim, row-major); rows are L2-normalised. */
int tr_feat_transform_dense(const struct tr_featurizer *f, const double *emb, size_t nrows, int dim,
			    const size_t *idx, size_t n, struct tr_feats *out, struct tr_err *e);

/*
 * An inverted index over sparse rows, for dot products of a query row with every stored row (the
 * cosine similarities of kNN, the linear kernel of the SVM). Rows are borrowed while building only.
 */
struct tr_sparse_index;
int tr_sparse_index_build(struct tr_node *const *rows, size_t n, int dim, struct tr_sparse_index **out);
/* out[j] = <q, row j> for every stored row j (n doubles). */
void tr_sparse_index_dots(const struct tr_sparse_index *ix, const struct tr_node *q, double *out);
/*
 * Rows kept packed in one array (each ended by index -1), as models store them: tr_rows_pack copies X's
 * rows into a new array; tr_sparse_index_packed indexes n_rows packed rows, checking first that there
 * are exactly n_rows of them (a corrupt model file is an error, not an overrun).
 */
int tr_rows_pack(const struct tr_feats *X, struct tr_node **nodes, size_t *n_nodes);
int tr_sparse_index_packed(const struct tr_node *nodes, size_t n_nodes, size_t n_rows, int dim,
			   struct tr_sparse_index **out);
void tr_sparse_index_free(struct tr_sparse_index *ix);

/*
 * Exact top-k search by dot product over packed rows (as tr_sparse_index_packed takes them; copied, so
 * `nodes` may go afterwards): the k rows of largest <q, row>, ranked by similarity descending then row
 * ascending, with similarities bit-identical to tr_sparse_index_dots (a full scan), while reading only
 * the postings of uncommon features and the rows a bound cannot rule out (sparse_knn.c says how).
 * tr_sparse_knn_top writes up to k rows and similarities into rows/sims (k entries each), leaving out
 * row `skip` (SIZE_MAX: none), and returns how many it wrote (k, or fewer when there are fewer rows).
 * A scratch belongs to one thread at a time; it is sized for the index it was made for (and k).
 */
struct tr_sparse_knn;
struct tr_sparse_knn_scratch;
/*
 * A caller's stop rule: enough(sims, k, arg) is asked whenever a search's list of k rows improves (sims
 * ranked, k entries); when it answers 1 the search ends there. It must hold for any list ranked no
 * lower, rank by rank, than one it accepted (the OOD guard's "near": a mean distance within the limit),
 * so stopping never changes a verdict the true top k would give.
 */
struct tr_knn_stop {
	int (*enough)(const double *sims, size_t k, void *arg);
	void *arg;
};
int tr_sparse_knn_new(const struct tr_node *nodes, size_t n_nodes, size_t n_rows, int dim, struct tr_sparse_knn **out);
void tr_sparse_knn_free(struct tr_sparse_knn *ix);
size_t tr_sparse_knn_rows(const struct tr_sparse_knn *ix);
struct tr_sparse_knn_scratch *tr_sparse_knn_scratch_new(const struct tr_sparse_knn *ix, int k);
void tr_sparse_knn_scratch_free(struct tr_sparse_knn_scratch *s);
/* Rows whose full dot product a search computed, summed over every search with this scratch. */
size_t tr_sparse_knn_scratch_evaluated(const struct tr_sparse_knn_scratch *s);
size_t tr_sparse_knn_top(const struct tr_sparse_knn *ix, const struct tr_node *q, int k, size_t skip,
			 struct tr_sparse_knn_scratch *s, uint32_t *rows, double *sims);
/*
 * tr_sparse_knn_top that ends as soon as `stop` (NULL: never) accepts the k rows found so far: then
 * *stopped (may be NULL) is 1 and the rows are real rows with their full-scan similarities, each no
 * more similar than the true row of its rank; else *stopped is 0 and the result is tr_sparse_knn_top's.
 */
size_t tr_sparse_knn_top_until(const struct tr_sparse_knn *ix, const struct tr_node *q, int k, size_t skip,
			       const struct tr_knn_stop *stop, struct tr_sparse_knn_scratch *s, uint32_t *rows,
			       double *sims, int *stopped);
/*
 * A cheap first look: up to k rows among those sharing the query's rarest features (the best 2k by
 * those features alone, computed in the order of those partial sums, and no further once `stop`, which
 * may be NULL, accepts k of them), with their exact similarities (the bits of a full scan), ranked as
 * tr_sparse_knn_top ranks. Not the top k in general, but the j-th of them is never more similar than the
 * true j-th nearest row: a caller that only needs to know the neighbours are at least this close (the OOD
 * guard's "near" verdict) can stop here.
 */
size_t tr_sparse_knn_probe(const struct tr_sparse_knn *ix, const struct tr_node *q, int k, size_t skip,
			   const struct tr_knn_stop *stop, struct tr_sparse_knn_scratch *s, uint32_t *rows,
			   double *sims);

/*
 * Nodes in model and index files, field by field: a 4-byte index then an 8-byte value, 12 bytes a node
 * (a struct tr_node holds 4 bytes of padding that would carry whatever the heap held). tr_nodes_take
 * fails, copying nothing, when fewer than n nodes are left.
 */
#define TR_NODE_BYTES 12
int tr_nodes_put(struct tr_buf *out, const struct tr_node *nodes, size_t n);
int tr_nodes_take(struct tr_cursor *in, struct tr_node *nodes, size_t n);

/* Text serialisation ("tracer-featurizer 1" first line); load names `what` in its errors. */
int tr_featurizer_save(const struct tr_featurizer *f, struct tr_buf *out);
int tr_featurizer_load(const char *what, const char *text, struct tr_featurizer **out, struct tr_err *e);

/*
 * .npy (and .npy.zst) embeddings: float32 or float64, little-endian, C order, 2-D. The matrix is
 * returned as doubles (caller frees); NaN and Inf are rejected.
 */
int tr_npy_read(const char *path, double **data, size_t *nrows, int *dim, struct tr_err *e);
int tr_npy_parse(const char *what, const char *buf, size_t len, double **data, size_t *nrows, int *dim,
		 struct tr_err *e);

#endif
