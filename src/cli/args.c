/*
 * args.c - the one argument parser every verb uses, and the checks on a policy directory named on the
 * command line.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "../gate/gate.h"
#include "cli.h"

/* Finds name (length n) in the space-separated spec; 1 and *valued when found, else 0. */
static int spec_find(const char *spec, const char *name, size_t n, int *valued)
{
	for (const char *p = spec; *p;) {
		while (*p == ' ')
			p++;
		size_t k = strcspn(p, " ");
		if (!k)
			break;
		int v = p[k - 1] == '=';
		if (k - (size_t)v == n && strncmp(p, name, n) == 0) {
			*valued = v;
			return 1;
		}
		p += k;
	}
	return 0;
}

int tr_args_next(struct tr_args *a, int argc, char **argv)
{
	if (a->i == 0)
		a->i = 1;
	for (; a->i < argc; a->i++) {
		const char *s = argv[a->i];
		a->opt[0] = 0;
		a->val = NULL;
		/* "-" alone names stdin, and anything not starting with '-' is a positional argument */
		if (s[0] != '-' || s[1] == 0) {
			if (!a->pos) {
				a->val = s;
				a->i++;
				return TR_ARG_POS;
			}
			int k = 0;
			while (k < a->n_pos && *a->pos[k])
				k++;
			if (k == a->n_pos) {
				tr_cli_usage_error(a->verb, "unexpected argument \"%s\"", s);
				return -1;
			}
			*a->pos[k] = s;
			continue;
		}
		const char *eq = strchr(s, '=');
		size_t n = eq ? (size_t)(eq - s) : strlen(s);
		int valued;
		if (!spec_find(a->spec, s, n, &valued)) {
			tr_cli_usage_error(a->verb, "unknown option %.*s", (int)n, s);
			return -1;
		}
		if (n >= sizeof a->opt) {
			tr_cli_usage_error(a->verb, "unknown option %.*s", (int)n, s);
			return -1;
		}
		memcpy(a->opt, s, n);
		a->opt[n] = 0;
		if (!valued && eq) {
			tr_cli_usage_error(a->verb, "%s takes no value (got \"%s\")", a->opt, eq + 1);
			return -1;
		}
		if (valued && eq)
			a->val = eq + 1;
		else if (valued && a->i + 1 < argc)
			a->val = argv[++a->i];
		else if (valued) {
			tr_cli_usage_error(a->verb, "%s needs a value", a->opt);
			return -1;
		}
		a->i++;
		return TR_ARG_OPT;
	}
	return TR_ARG_END;
}

int tr_args_is(const struct tr_args *a, const char *name)
{
	return strcmp(a->opt, name) == 0;
}

int tr_cli_policy_check(const char *dir, struct tr_err *e)
{
	char path[PATH_MAX];
	struct stat st;
	if (stat(dir, &st) != 0)
		return tr_fail(e, "%s: cannot open: %s", dir, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return tr_fail(e, "%s: not a policy directory (not a directory; tracer fit writes one)", dir);
	snprintf(path, sizeof path, "%s/manifest.json", dir);
	if (stat(path, &st) != 0)
		return tr_fail(e, "%s: not a policy directory (no manifest.json; tracer fit writes one)", dir);
	return 0;
}

int tr_cli_policy_load(const char *dir, struct tr_policy **p, struct tr_err *e)
{
	*p = NULL;
	return tr_cli_policy_check(dir, e) || tr_policy_load(dir, p, e) ? -1 : 0;
}
