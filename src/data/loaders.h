/*
 * loaders.h - helpers shared by the benchmark loaders (banking77.c, clinc150.c, mnli.c); private to
 * src/data.
 */
#ifndef TR_LOADERS_H
#define TR_LOADERS_H

#include <jansson.h>

#include "data.h"

int tr_load_csv(const char *path, struct tr_csv *csv, struct tr_err *e);
int tr_load_json(const char *path, json_t **out, struct tr_err *e);
/* Checks that a CSV's first record is exactly the given header (a NULL-terminated list). */
int tr_csv_check_header(const char *path, const struct tr_csv *csv, const char *const *names,
			struct tr_err *e);
/* A trace with copies of the given texts (input_b may be NULL). Returns -1 when out of memory. */
int tr_trace_make(struct tr_trace *t, const char *idfmt, size_t idn, const char *input,
		  const char *input_b, int teacher, int gold);
/*
 * Splits `all` (moved into ts, whatever happens) 70/30 into the traces and test parts, stratified by
 * teacher label and grouped by tr_trace_group, with TR_SET_SPLIT_SEED.
 */
int tr_set_split_traffic(struct tr_traceset *ts, struct tr_rows *all, struct tr_err *e);
/* Records one teacher file's figures in ts->src. */
void tr_set_note_source(struct tr_traceset *ts, const char *file, size_t rows, size_t valid,
			size_t agree);

int tr_build_banking77_gold(char *const *paths, struct tr_traceset *ts, struct tr_err *e);
int tr_build_banking77_gpt4o(char *const *paths, struct tr_traceset *ts, struct tr_err *e);
int tr_build_clinc150_gold(char *const *paths, struct tr_traceset *ts, struct tr_err *e);
int tr_build_clinc150_lora(char *const *paths, struct tr_traceset *ts, struct tr_err *e);
int tr_build_mnli_gold(char *const *paths, struct tr_traceset *ts, struct tr_err *e);
int tr_build_mnli_phi3(char *const *paths, struct tr_traceset *ts, struct tr_err *e);

#endif
