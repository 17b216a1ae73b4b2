/*
 * families.c - the table of policy families. Each family lives in its own file (fam_global.c,
 * fam_l2d.c, fam_rsb.c); its row here is all the rest of the tool needs to know about it.
 */
#include "gate.h"

#include <stdio.h>
#include <string.h>

/* The family table: one line per family, in competition order (a family may build on earlier ones). */
static struct tr_registry families = {{
	&tr_pol_global,
	&tr_pol_l2d,
	&tr_pol_rsb,
}};

int tr_pol_family_count(void)
{
	return tr_registry_count(&families);
}

const struct tr_pol_family *tr_pol_family_at(int i)
{
	return i >= 0 && i < tr_pol_family_count() ? families.v[i] : NULL;
}

int tr_pol_family_index(const struct tr_pol_family *f)
{
	return tr_registry_index(&families, f);
}

const struct tr_pol_family *tr_pol_family_find(const char *name)
{
	return tr_registry_find(&families, name);
}

int tr_pol_family_register(const struct tr_pol_family *f)
{
	if (strcmp(f->name, "refused") == 0 || f->max_stages < 1 || f->max_stages > TR_MAX_STAGES)
		return -1;
	return tr_registry_add(&families, f);
}

const char *tr_pol_family_list(const char *sep)
{
	static _Thread_local char buf[512];
	return tr_registry_list(&families, sep, buf, sizeof buf);
}

const char *tr_pol_family_name(const struct tr_pol_family *f)
{
	return f ? f->name : "refused";
}
