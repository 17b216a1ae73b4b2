/*
 * families.c - the table of policy families. Each family lives in its own file (fam_global.c,
 * fam_l2d.c, fam_rsb.c); its row here is all the rest of the tool needs to know about it.
 */
#include "gate.h"

#include <stdio.h>
#include <string.h>

/* The family table: one line per family, in competition order (a family may build on earlier ones). */
static const struct tr_pol_family *families[TR_REGISTRY_MAX] = {
	&tr_pol_global,
	&tr_pol_l2d,
	&tr_pol_rsb,
};

int tr_pol_family_count(void)
{
	int n = 0;
	while (n < TR_REGISTRY_MAX && families[n])
		n++;
	return n;
}

const struct tr_pol_family *tr_pol_family_at(int i)
{
	return i >= 0 && i < tr_pol_family_count() ? families[i] : NULL;
}

int tr_pol_family_index(const struct tr_pol_family *f)
{
	for (int i = 0; i < tr_pol_family_count(); i++)
		if (families[i] == f)
			return i;
	return -1;
}

const struct tr_pol_family *tr_pol_family_find(const char *name)
{
	for (int i = 0; name && i < tr_pol_family_count(); i++)
		if (strcmp(families[i]->name, name) == 0)
			return families[i];
	return NULL;
}

int tr_pol_family_register(const struct tr_pol_family *f)
{
	int n = tr_pol_family_count();
	if (n == TR_REGISTRY_MAX || tr_pol_family_find(f->name) || strcmp(f->name, "refused") == 0 ||
	    f->max_stages < 1 || f->max_stages > TR_MAX_STAGES)
		return -1;
	families[n] = f;
	return 0;
}

const char *tr_pol_family_list(const char *sep)
{
	static _Thread_local char buf[512];
	buf[0] = 0;
	for (int i = 0; i < tr_pol_family_count(); i++)
		snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%s", i ? sep : "", families[i]->name);
	return buf;
}

const char *tr_pol_family_name(const struct tr_pol_family *f)
{
	return f ? f->name : "refused";
}
