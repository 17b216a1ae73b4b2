/*
 * fam_global.c - the global family: stage 1 answers every input, or nothing deploys.
 */
#include "fit.h"

static int global_prepare(struct tr_fit *f, int t, struct tr_family_view *v, struct tr_err *e)
{
	(void)t, (void)e;
	tr_fit_stage1_view(f, v);
	return 0;
}

const struct tr_pol_family tr_pol_global = {
	.name = "global",
	.about = "stage 1 answers every input",
	.accept_all = 1,
	.max_stages = 1,
	.prepare = global_prepare,
};
