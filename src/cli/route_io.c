/*
 * route_io.c - reading one input object and writing its decision, for `tracer route` and `tracer serve`.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "route_io.h"

void tr_route_in_free(struct tr_route_in *in)
{
	tr_free(in->t.id), tr_free(in->t.input), tr_free(in->t.input_b), tr_free(in->t.group);
	json_decref(in->fallback);
	memset(in, 0, sizeof *in);
}

int tr_route_from_line(const struct tr_policy *p, const char *where, size_t lineno, struct tr_trace_line *l,
		       const char *field, struct tr_route_in *in, double *emb, struct tr_err *e)
{
	memset(in, 0, sizeof *in);
	const char *bad = p->fz && tr_featurizer_kind(p->fz) == TR_FEAT_NPY
				  ? tr_trace_line_embedding(l, tr_featurizer_dim(p->fz), emb)
				  : NULL;
	if (bad) {
		tr_trace_line_free(l);
		return tr_fail(e, "%s:%zu: %s", where, lineno, bad);
	}
	in->t = l->t;
	in->fallback = field ? json_incref(json_object_get(l->json, field)) : NULL;
	memset(&l->t, 0, sizeof l->t);
	tr_trace_line_free(l);
	return 0;
}

int tr_route_parse(const struct tr_policy *p, const char *where, size_t lineno, const char *s, size_t len,
		   const char *field, struct tr_route_in *in, double *emb, struct tr_err *e)
{
	struct tr_trace_line l;
	memset(in, 0, sizeof *in);
	if (tr_trace_parse_line(where, lineno, s, len, TR_LINE_KEEP_JSON, &l, e))
		return -1;
	return tr_route_from_line(p, where, lineno, &l, field, in, emb, e);
}

int tr_route_parse_json(const struct tr_policy *p, const char *where, size_t lineno, json_t *o, const char *field,
			struct tr_route_in *in, double *emb, struct tr_err *e)
{
	memset(in, 0, sizeof *in);
	if (!json_is_object(o))
		return tr_fail(e, "%s:%zu: expected a JSON object", where, lineno);
	/* through the text, so an array item meets exactly the rules of a line */
	char *s = tr_json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (!s)
		return tr_fail(e, "out of memory");
	int rc = tr_route_parse(p, where, lineno, s, strlen(s), field, in, emb, e);
	free(s);
	return rc;
}

const char *tr_route_pair_warning(const struct tr_policy *p, const struct tr_route_in *in)
{
	if ((in->t.input_b != NULL) == (p->pairs != 0))
		return NULL;
	return p->pairs ? "no input_b, but the policy was fitted on pairs (input, input_b)"
			: "input_b given, but the policy was fitted on single texts: it is ignored";
}

void tr_guard_apply(const struct tr_guard *g, struct tr_decision *d, size_t n)
{
	for (size_t i = 0; g->closed && i < n; i++)
		d[i].handled = 0, d[i].label = -1, d[i].stage = 0;
}

int tr_guard_audits(const struct tr_guard *g, const struct tr_decision *d, const char *id)
{
	return g->audits && d->handled && tr_audit_pick(id, g->seed, g->rate);
}

json_t *tr_route_decision_json(const struct tr_policy *p, const struct tr_route_in *in, const struct tr_decision *d,
			       const struct tr_guard *g, const char *field)
{
	json_t *o = json_pack("{s:s}", "id", in->t.id);
	if (!o)
		return NULL;
	json_t *label = d->handled ? json_string(p->labels.names[d->label]) : json_null();
	if (field && !d->handled && in->fallback)
		json_decref(label), label = json_incref(in->fallback);
	int bad = json_object_set_new(o, "label", label);
	bad |= json_object_set_new(o, "decision", json_string(d->handled ? "handled" : "deferred"));
	bad |= json_object_set_new(o, "score", isfinite(d->score) ? json_real(d->score) : json_null());
	bad |= json_object_set_new(o, "stage", d->handled ? json_integer(d->stage) : json_null());
	bad |= json_object_set_new(o, "ood", json_boolean(d->ood));
	if (g && g->closed)
		bad |= json_object_set_new(o, "gate", json_string("closed"));
	if (g && g->audits)
		bad |= json_object_set_new(o, "audit", json_boolean(tr_guard_audits(g, d, in->t.id)));
	if (field)
		bad |= json_object_set_new(o, "source", json_string(d->handled ? "surrogate" : "teacher"));
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

json_t *tr_route_error_json(size_t lineno, const char *msg)
{
	return json_pack("{s:I,s:s}", "line", (json_int_t)lineno, "error", msg);
}

char *tr_route_dumps(const json_t *o)
{
	return o ? tr_json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
}
