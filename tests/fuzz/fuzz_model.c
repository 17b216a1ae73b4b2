/* Fuzz target: surrogate model files of every family; a loaded model must also predict safely. */
#include "../../src/surrogate/surrogate.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tr_surrogate *s;
	struct tr_err e;
	tr_gsl_init();
	if (tr_surrogate_load("fuzz.model", (const char *)data, size, &s, &e) == 0) {
		struct tr_node row[3] = {{1, 0.6}, {2, 0.8}, {-1, 0}};
		struct tr_node *rows[1] = {row};
		struct tr_feats X = {.n = 1, .dim = 2, .rows = rows};
		if (s->K <= 1000) {
			double *p = malloc((size_t)s->K * sizeof *p);
			if (p)
				tr_surrogate_predict(s, &X, p, &e);
			free(p);
		}
		tr_surrogate_free(s);
	}
	return 0;
}
