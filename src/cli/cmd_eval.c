/*
 * cmd_eval.c - `tracer eval DIR TEST`: a policy on held-out traffic.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../gate/gate.h"
#include "cli.h"

const char cmd_eval_usage[] =
	"usage: tracer eval DIR TEST [--json] [--no-check] [--embeddings X.npy]\n"
	"  TEST is DATASET:TEACHER (its test part) or a trace JSONL file (all its rows); with a policy fitted\n"
	"  on embeddings, --embeddings gives TEST's rows in order. Prints coverage, agreement with the teacher\n"
	"  on handled rows, end-to-end agreement (handled answers + the teacher for the rest), end-to-end gold\n"
	"  accuracy when gold labels exist, counts, and whether agreement on handled fell below the target (a\n"
	"  contract violation). --json prints one object with n, handled, coverage, agreement_handled,\n"
	"  e2e_agreement, gold_accuracy, target, violation (and ood, family, warnings). A violated contract\n"
	"  exits 1; --no-check reports it and exits 0. Warnings (stderr and the report): TEST is the policy's\n"
	"  own trace file, or more than 5% of its rows are among the policy's traces (same id and text); pairs\n"
	"  (input_b) given to a single-text policy or the reverse; fewer than half of TEST's rows have a\n"
	"  teacher label the policy knows.\n";

int cmd_eval(int argc, char **argv)
{
	const char *dir = NULL, *test = NULL, *emb_path = NULL;
	int as_json = 0, check = 1;
	struct tr_args a = {.verb = "eval", .spec = "--json --no-check --embeddings=", .pos = (const char **[]){&dir, &test}, .n_pos = 2};
	int k;
	while ((k = tr_args_next(&a, argc, argv)) == TR_ARG_OPT) {
		if (tr_args_is(&a, "--json"))
			as_json = 1;
		else if (tr_args_is(&a, "--no-check"))
			check = 0;
		else if (tr_args_is(&a, "--embeddings"))
			emb_path = a.val;
	}
	if (k < 0)
		return TR_EXIT_USAGE;
	if (!dir || !test)
		return tr_cli_usage_error("eval", "expected DIR and TEST");
	struct tr_err e;
	struct tr_policy *p;
	struct tr_traceset ts;
	if (tr_cli_policy_load(dir, &p, &e))
		return tr_cli_data_error(&e);
	if (tr_traceset_open(test, &ts, &e)) {
		tr_policy_free(p);
		return tr_cli_data_error(&e);
	}
	const struct tr_rows *r = ts.part[TR_PART_TEST].n ? &ts.part[TR_PART_TEST] : &ts.part[TR_PART_TRACES];
	size_t n = r->n, emb_rows = 0;
	int emb_dim = 0, rc = -1, violated = 0;
	double target = p->target;
	double *emb = NULL;
	size_t *idx = tr_malloc((n ? n : 1) * sizeof *idx);
	struct tr_decision *d = tr_malloc((n ? n : 1) * sizeof *d);
	int *teacher = tr_malloc((n ? n : 1) * sizeof *teacher), *gold = tr_malloc((n ? n : 1) * sizeof *gold);
	if (!idx || !d || !teacher || !gold) {
		tr_fail(&e, "out of memory");
		goto out;
	}
	if (emb_path) {
		if (tr_npy_read(emb_path, &emb, &emb_rows, &emb_dim, &e))
			goto out;
		if (emb_rows != n) {
			tr_fail(&e, "%s: %zu rows, but %s has %zu test rows", emb_path, emb_rows, test, n);
			goto out;
		}
	}
	for (size_t i = 0; i < n; i++) {
		idx[i] = i;
		/* map the test set's labels onto the policy's by name (-1: a label the policy never saw) */
		teacher[i] = tr_labels_find(&p->labels, ts.labels.names[r->v[i].teacher]);
		gold[i] = r->v[i].gold >= 0 ? tr_labels_find(&p->labels, ts.labels.names[r->v[i].gold]) : TR_NO_GOLD;
	}
	struct tr_traffic_warnings w;
	if (tr_traffic_check(dir, p, &ts, r, &w, &e) || tr_policy_route(p, r->v, idx, n, emb, emb_rows, emb_dim, d, &e))
		goto out;
	tr_traffic_warn("eval", &w);
	struct tr_metrics m;
	tr_metrics_compute(d, teacher, gold, n, p->target, &m);
	const char *family = tr_pol_family_name(p->family);
	if (as_json) {
		json_t *warn = json_array();
		for (int i = 0; i < w.n; i++)
			json_array_append_new(warn, json_string(w.msg[i]));
		json_t *o = json_pack("{s:I, s:I, s:f, s:o, s:f, s:o, s:f, s:b, s:I, s:s, s:o}", "n", (json_int_t)n, "handled",
				      (json_int_t)m.handled, "coverage", m.coverage, "agreement_handled",
				      m.handled ? json_real(m.agreement) : json_null(), "e2e_agreement", m.e2e_agreement,
				      "gold_accuracy", m.gold_n ? json_real(m.gold_accuracy) : json_null(), "target",
				      p->target, "violation", m.violation, "ood", (json_int_t)m.ood, "family", family, "warnings", warn);
		char *s = tr_json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
		puts(s);
		free(s);
		json_decref(o);
	} else {
		printf("policy %s (%s, target %.2f) on %s: %zu rows\n", dir, family, p->target, test, n);
		printf("coverage           %.4f (%zu/%zu handled, %zu deferred by the OOD guard)\n", m.coverage, m.handled,
		       n, m.ood);
		if (m.handled)
			printf("agreement handled  %.4f (%zu/%zu)\n", m.agreement, m.agree, m.handled);
		else
			printf("agreement handled  - (nothing handled)\n");
		printf("e2e agreement      %.4f\n", n ? m.e2e_agreement : NAN);
		if (m.gold_n)
			printf("e2e gold accuracy  %.4f (%zu/%zu)\n", m.gold_accuracy, m.gold_ok, m.gold_n);
		printf("contract           %s\n", m.violation ? "VIOLATED: agreement on handled below the target" : "held");
		for (int i = 0; i < w.n; i++)
			printf("warning            %s\n", w.msg[i]);
	}
	rc = 0;
	violated = check && m.violation;
out:
	tr_free(idx), tr_free(d), tr_free(teacher), tr_free(gold), tr_free(emb);
	tr_traceset_free(&ts);
	tr_policy_free(p);
	if (rc)
		return tr_cli_data_error(&e);
	if (violated) {
		fprintf(stderr, "tracer: %s on %s: contract violated (agreement on handled below the target %g; "
				"--no-check to report only)\n", dir, test, target);
		return TR_EXIT_DATA;
	}
	return TR_EXIT_OK;
}
