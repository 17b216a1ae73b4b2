/*
 * sparse_index.c - an inverted index (feature -> postings of (row, value)) for sparse dot products.
 */
#include "feat.h"

#include <string.h>

struct tr_sparse_index {
	size_t n;
	int dim;
	size_t *start; /* postings of feature f: [start[f], start[f+1]) */
	uint32_t *row;
	double *val;
};

void tr_sparse_index_free(struct tr_sparse_index *ix)
{
	if (!ix)
		return;
	tr_free(ix->start);
	tr_free(ix->row);
	tr_free(ix->val);
	tr_free(ix);
}

int tr_sparse_index_build(struct tr_node *const *rows, size_t n, int dim, struct tr_sparse_index **out)
{
	*out = NULL;
	if (n > UINT32_MAX)
		return -1;
	struct tr_sparse_index *ix = tr_calloc(1, sizeof *ix);
	size_t d = (size_t)dim + 2, np = 0;
	if (!ix || !(ix->start = tr_calloc(d, sizeof *ix->start)))
		goto oom;
	ix->n = n;
	ix->dim = dim;
	for (size_t i = 0; i < n; i++)
		for (const struct tr_node *p = rows[i]; p->index != -1; p++)
			if (p->index > 0 && p->index <= dim)
				ix->start[p->index + 1]++, np++;
	for (size_t f = 1; f < d; f++)
		ix->start[f] += ix->start[f - 1];
	ix->row = tr_malloc(np * sizeof *ix->row);
	ix->val = tr_malloc(np * sizeof *ix->val);
	size_t *fill = tr_malloc(d * sizeof *fill);
	if (!ix->row || !ix->val || !fill) {
		tr_free(fill);
		goto oom;
	}
	memcpy(fill, ix->start, d * sizeof *fill);
	for (size_t i = 0; i < n; i++)
		for (const struct tr_node *p = rows[i]; p->index != -1; p++)
			if (p->index > 0 && p->index <= dim) {
				ix->row[fill[p->index]] = (uint32_t)i;
				ix->val[fill[p->index]++] = p->value;
			}
	tr_free(fill);
	*out = ix;
	return 0;
oom:
	tr_sparse_index_free(ix);
	return -1;
}

void tr_sparse_index_dots(const struct tr_sparse_index *ix, const struct tr_node *q, double *out)
{
	memset(out, 0, ix->n * sizeof *out);
	for (; q->index != -1; q++)
		if (q->index > 0 && q->index <= ix->dim)
			for (size_t j = ix->start[q->index]; j < ix->start[q->index + 1]; j++)
				out[ix->row[j]] += q->value * ix->val[j];
}


int tr_rows_pack(const struct tr_feats *X, struct tr_node **nodes, size_t *n_nodes)
{
	size_t total = 0;
	for (size_t i = 0; i < X->n; i++) {
		const struct tr_node *p = X->rows[i];
		while (p->index != -1)
			p++;
		total += (size_t)(p - X->rows[i]) + 1;
	}
	if (!(*nodes = tr_malloc((total ? total : 1) * sizeof **nodes)))
		return -1;
	struct tr_node *q = *nodes;
	for (size_t i = 0; i < X->n; i++)
		for (const struct tr_node *p = X->rows[i];; p++) {
			*q++ = *p;
			if (p->index == -1)
				break;
		}
	*n_nodes = total;
	return 0;
}

int tr_sparse_index_packed(const struct tr_node *nodes, size_t n_nodes, size_t n_rows, int dim,
			   struct tr_sparse_index **out)
{
	*out = NULL;
	size_t ends = 0;
	for (size_t j = 0; j < n_nodes; j++)
		ends += nodes[j].index == -1;
	if (ends != n_rows || n_nodes == 0 || nodes[n_nodes - 1].index != -1)
		return -1;
	struct tr_node **rows = tr_malloc((n_rows ? n_rows : 1) * sizeof *rows);
	if (!rows)
		return -1;
	for (size_t i = 0, j = 0; i < n_rows; i++) {
		rows[i] = (struct tr_node *)nodes + j;
		while (nodes[j++].index != -1)
			;
	}
	int rc = tr_sparse_index_build(rows, n_rows, dim, out);
	tr_free(rows);
	return rc;
}

int tr_nodes_put(struct tr_buf *out, const struct tr_node *nodes, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int32_t index = nodes[i].index;
		double value = nodes[i].value;
		if (tr_buf_add(out, &index, sizeof index) || tr_buf_add(out, &value, sizeof value))
			return -1;
	}
	return 0;
}

int tr_nodes_take(struct tr_cursor *in, struct tr_node *nodes, size_t n)
{
	if ((size_t)(in->end - in->p) / TR_NODE_BYTES < n)
		return -1;
	for (size_t i = 0; i < n; i++) {
		int32_t index;
		double value;
		tr_cursor_take(in, &index, sizeof index);
		tr_cursor_take(in, &value, sizeof value);
		nodes[i] = (struct tr_node){index, value};
	}
	return 0;
}
