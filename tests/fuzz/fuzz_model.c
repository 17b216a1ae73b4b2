/*
 * Fuzz target: surrogate model files of every family; a loaded model must also predict safely, one row
 * at a time and by blocks (liblinear and libsvm predict blocks of rows by their own paths: 40 rows
 * reach them), on rows with features inside and beyond the model's, an empty row and large values, and
 * on 40 dense rows of 2 dimensions.
 */
#include "../../src/surrogate/surrogate.h"
#include "fuzz.h"

#define BLOCK_ROWS 40

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tr_surrogate *s;
	struct tr_err e;
	tr_gsl_init();
	if (tr_surrogate_load("fuzz.model", (const char *)data, size, &s, &e) == 0) {
		static const struct tr_node kinds[4][4] = {
			{{1, 0.6}, {2, 0.8}, {-1, 0}},
			{{-1, 0}},
			{{2, -1.5}, {7, 2.0}, {40000, 1.0}, {-1, 0}},
			{{1, 1e6}, {3, 1e-300}, {-1, 0}},
		};
		struct tr_node *rows[BLOCK_ROWS];
		for (int i = 0; i < BLOCK_ROWS; i++)
			rows[i] = (struct tr_node *)kinds[i % 4];
		static double dense[BLOCK_ROWS * 2];
		for (int i = 0; i < BLOCK_ROWS * 2; i++)
			dense[i] = (i % 3 - 1) * 0.5;
		struct tr_feats one = {.n = 1, .dim = 2, .rows = rows};
		struct tr_feats block = {.n = BLOCK_ROWS, .dim = 2, .rows = rows};
		struct tr_feats dblock = {.n = BLOCK_ROWS, .dim = 2, .dense = dense};
		if (s->K <= 1000) {
			double *p = malloc((size_t)s->K * BLOCK_ROWS * sizeof *p);
			if (p && tr_surrogate_predict(s, &one, p, &e) == 0)
				tr_surrogate_predict(s, &block, p, &e);
			if (p) /* dense rows of 2 dimensions: a dense model of another dimension must refuse them */
				tr_surrogate_predict(s, &dblock, p, &e);
			free(p);
		}
		tr_surrogate_free(s);
	}
	return 0;
}
