/*
 * fam_l2d.c - learning to defer: stage 1 answers the inputs its acceptor scores at or above the
 * gate's threshold and defers the rest to the teacher.
 */
#include "fit.h"

static int l2d_prepare(struct tr_fit *f, int t, struct tr_family_view *v, struct tr_err *e)
{
	(void)t, (void)e;
	tr_fit_stage1_view(f, v);
	return 0;
}

const struct tr_pol_family tr_pol_l2d = {
	.name = "l2d",
	.about = "stage 1 answers above a threshold, the teacher the rest",
	.accept_all = 0,
	.max_stages = 1,
	.prepare = l2d_prepare,
};
