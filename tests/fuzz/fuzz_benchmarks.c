/*
 * Fuzz target: the benchmark loaders' own formats - the CLINC150 JSON (first byte even) and the Phi-3
 * output JSON (first byte odd; matched against two fixed MNLI pairs and prompts).
 */
#include "../../src/data/loaders.h"
#include "fuzz.h"

static const char dev[] = "{\"premise\":\"A man sleeps.\",\"hypothesis\":\"A man is awake.\",\"label\":\"contradiction\"}\n"
			  "{\"premise\":\"It rains.\",\"hypothesis\":\"It is wet.\",\"label\":\"entailment\"}\n";
static const char prompts[] = "label,idx,prompt_text\n2,0,\"P: A man sleeps.\nH: A man is awake.\n Answer: \"\n"
			      "0,1,\"P: It rains.\nH: It is wet.\n Answer: \"\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tr_traceset ts = {0};
	struct tr_err e;
	if (size == 0)
		return 0;
	if (data[0] % 2 == 0) {
		char *paths[1] = {(char *)fuzz_file("clinc.json", data + 1, size - 1)};
		tr_build_clinc150_gold(paths, &ts, &e);
	} else {
		static char p0[256], p1[256];
		strcpy(p0, fuzz_file("dev.jsonl", (const uint8_t *)dev, sizeof dev - 1));
		strcpy(p1, fuzz_file("prompts.csv", (const uint8_t *)prompts, sizeof prompts - 1));
		char *paths[3] = {p0, p1, (char *)fuzz_file("out.json", data + 1, size - 1)};
		tr_build_mnli_phi3(paths, &ts, &e);
	}
	tr_traceset_free(&ts);
	return 0;
}
