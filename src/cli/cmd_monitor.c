/*
 * cmd_monitor.c - `tracer monitor DIR`: feeds the teacher's answers on audited inputs to the policy's drift
 * monitor (DIR.monitor), saving its state atomically after every answer; shows the state and history.
 */
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../drift/drift.h"
#include "cli.h"

const char cmd_monitor_usage[] =
	"usage: tracer monitor DIR [--show] [--audit-rate R] [--audit-seed S] [--monitor-delta D] [--alpha A]\n"
	"           [--method betting|mixture] < answers.jsonl\n"
	"  The drift monitor of the policy in DIR lives in DIR.monitor, beside the directory. Each input line is an\n"
	"  audited input (one `tracer route` marked \"audit\": true): {\"id\", \"label\" (the policy's answer),\n"
	"  \"teacher\" (the teacher's)}. Each answer updates the anytime-valid test of \"agreement on handled >= α\"\n"
	"  (α: the policy's target) and the state is saved atomically (a crash leaves the previous state or the\n"
	"  new one). When the test rejects at level D (default 0.05) the gate closes, the event is recorded and\n"
	"  `tracer route` defers every input; only a refit (a new manifest.json) starts a new monitor. Settings\n"
	"  (rate R default 0.02, seed S default 0, D, α, method default betting) are fixed when the monitor is\n"
	"  created. Prints the state at the end; --show only prints it.\n";

static void show(const struct tr_monitor *m, const char *path)
{
	printf("monitor %s (%s, α %.2f, δ_m %.2f, audit rate %.3f, audit seed %llu)\n", path,
	       tr_mon_method_names[m->method], m->alpha, m->delta, m->audit_rate, (unsigned long long)m->audit_seed);
	printf("audits             %llu (%llu agreeing)\n", (unsigned long long)m->audits, (unsigned long long)m->agree);
	printf("statistic          ln W = %.4f (closes at ln(1/δ_m) = %.4f; maximum so far %.4f)\n", m->stat,
	       tr_monitor_threshold(m), m->stat_max);
	printf("upper bound        agreement on handled <= %.3f (anytime-valid at 1 - δ_m)\n", tr_monitor_upper(m));
	if (m->closed)
		printf("gate               CLOSED after %llu audits (%llu agreeing), ln W = %.4f: every input goes to the "
		       "teacher until a refit\n",
		       (unsigned long long)m->closing.audits, (unsigned long long)m->closing.agree, m->closing.stat);
	else
		printf("gate               open\n");
}

int cmd_monitor(int argc, char **argv)
{
	const char *dir = NULL;
	int only_show = 0, method = TR_MON_BETTING;
	double rate = 0.02, delta = 0.05, alpha = 0;
	unsigned long long seed = 0;
	struct tr_args a = {.verb = "monitor",
			    .spec = "--show --audit-rate= --audit-seed= --monitor-delta= --alpha= --method=",
			    .pos = (const char **[]){&dir},
			    .n_pos = 1};
	int k;
	while ((k = tr_args_next(&a, argc, argv)) == TR_ARG_OPT) {
		const char *v = a.val;
		int bad = 0;
		if (tr_args_is(&a, "--show"))
			only_show = 1;
		else if (tr_args_is(&a, "--audit-rate"))
			bad = tr_cli_number(v, 0, 1.0000001, &rate);
		else if (tr_args_is(&a, "--audit-seed"))
			bad = tr_cli_count(v, &seed);
		else if (tr_args_is(&a, "--monitor-delta"))
			bad = tr_cli_number(v, 0, 1, &delta);
		else if (tr_args_is(&a, "--alpha"))
			bad = tr_cli_number(v, 0.5, 1, &alpha);
		else if (tr_args_is(&a, "--method"))
			bad = (method = tr_mon_method_parse(v)) < 0;
		if (bad)
			return tr_cli_usage_error("monitor", "bad value for %s: \"%s\"", a.opt, v);
	}
	if (k < 0)
		return TR_EXIT_USAGE;
	if (!dir)
		return tr_cli_usage_error("monitor", "expected a policy directory");
	struct tr_err e;
	struct tr_monitor m;
	char sha[65], path[PATH_MAX];
	tr_monitor_path(dir, path, sizeof path);
	int got = tr_monitor_open(dir, &m, sha, &e);
	if (got < 0)
		return tr_cli_data_error(&e);
	if (!got) {
		if (only_show) {
			printf("no monitor for the policy in %s\n", dir);
			return TR_EXIT_OK;
		}
		struct tr_policy *p;
		if (!(alpha > 0)) {
			if (tr_cli_policy_load(dir, &p, &e))
				return tr_cli_data_error(&e);
			alpha = p->target;
			tr_policy_free(p);
		}
		tr_monitor_init(&m, (enum tr_mon_method)method, alpha, delta, rate, seed);
		memcpy(m.policy_sha, sha, sizeof sha);
	}
	char *line = NULL;
	size_t cap = 0, lineno = 0;
	ssize_t len;
	int rc = 0;
	while (!only_show && !rc && (len = getline(&line, &cap, stdin)) >= 0) {
		lineno++;
		json_error_t jerr;
		json_t *o = json_loadb(line, (size_t)len, 0, &jerr);
		json_t *lab = json_object_get(o, "label"), *tea = json_object_get(o, "teacher");
		if (!o || !json_is_object(o) || !json_is_string(lab) || !json_is_string(tea)) {
			rc = tr_fail(&e, "stdin:%zu: %s", lineno,
				     !o ? jerr.text : !json_is_string(lab) ? "\"label\" is not a string" : "\"teacher\" is not a string");
			json_decref(o);
			break;
		}
		int closes = tr_monitor_observe(&m, strcmp(json_string_value(lab), json_string_value(tea)) == 0);
		json_decref(o);
		rc = tr_monitor_save(&m, path, &e);
		if (closes)
			fprintf(stderr, "monitor: the gate is closed (stdin:%zu, %llu audits, %llu agreeing, ln W = %.4f)\n",
				lineno, (unsigned long long)m.audits, (unsigned long long)m.agree, m.stat);
	}
	free(line);
	if (rc)
		return tr_cli_data_error(&e);
	if (!got && !only_show && lineno == 0 && tr_monitor_save(&m, path, &e))
		return tr_cli_data_error(&e);
	show(&m, path);
	return TR_EXIT_OK;
}
