/*
 * route_io.h - the input and output of one routed input, shared by `tracer route` (JSONL on stdin) and
 * `tracer serve` (HTTP bodies): how an input object is read and how its decision is written.
 */
#ifndef TR_ROUTE_IO_H
#define TR_ROUTE_IO_H

#include <jansson.h>

#include "../drift/drift.h"

/* One input, parsed: the trace (id, input, input_b owned) and the fallback field's value (a reference). */
struct tr_route_in {
	struct tr_trace t;
	json_t *fallback;
};
void tr_route_in_free(struct tr_route_in *in);

/*
 * Reads one input object with the trace reader's line rules (tr_trace_parse_line: the text under "input"
 * or one of tr_input_keys, "input_b", "id" string or integer, "line:N" when absent; duplicate keys
 * refused) and, for a policy fitted on embeddings, its "embedding" (dim finite numbers into emb[0..dim)).
 * `field` (may be NULL) names the fallback field to keep. Errors name WHERE:LINENO. tr_route_from_line
 * takes a line already read (consumed, also on failure); tr_route_parse_json an object (an array item).
 */
int tr_route_from_line(const struct tr_policy *p, const char *where, size_t lineno, struct tr_trace_line *l,
		       const char *field, struct tr_route_in *in, double *emb, struct tr_err *e);
int tr_route_parse(const struct tr_policy *p, const char *where, size_t lineno, const char *s, size_t len,
		   const char *field, struct tr_route_in *in, double *emb, struct tr_err *e);
int tr_route_parse_json(const struct tr_policy *p, const char *where, size_t lineno, json_t *o, const char *field,
			struct tr_route_in *in, double *emb, struct tr_err *e);

/*
 * The warning for an input whose pair-ness is not the policy's (input_b given to a single-text policy,
 * which routes on input alone, or missing for a pair policy), or NULL when it matches. A static string.
 */
const char *tr_route_pair_warning(const struct tr_policy *p, const struct tr_route_in *in);

/* The drift guard's view of routing: a closed gate, and which handled inputs are audited. */
struct tr_guard {
	int closed, audits;
	double rate;
	uint64_t seed;
};
/* Applies a closed gate to decisions (everything deferred). */
void tr_guard_apply(const struct tr_guard *g, struct tr_decision *d, size_t n);
/* 1 when the decision is a handled input the guard audits. */
int tr_guard_audits(const struct tr_guard *g, const struct tr_decision *d, const char *id);

/*
 * The decision line {"id", "label", "decision", "score", "stage", "ood"[, "gate"][, "audit"][, "source"]}
 * (a new object, NULL when out of memory). With `field`, a deferred input takes its label from the
 * fallback value and "source" says which answered.
 */
json_t *tr_route_decision_json(const struct tr_policy *p, const struct tr_route_in *in, const struct tr_decision *d,
			       const struct tr_guard *g, const char *field);
/* The error record {"line": N, "error": msg}. */
json_t *tr_route_error_json(size_t lineno, const char *msg);
/* Compact JSON text of o (fixed key order, shortest round-trip reals: tr_json_dumps), or NULL; free with free(). */
char *tr_route_dumps(const json_t *o);

#endif
