/*
 * drift.h - the drift guard: audit sampling, an anytime-valid monitor of "agreement on handled >= α",
 * its state file beside the policy, and the replay of a traffic stream through route + audit + monitor.
 *
 * A deployed policy keeps checking itself: an input the surrogate handles is also sent to the teacher
 * with probability r (decided by a seeded hash of the input id, so a replay audits the same inputs), and
 * each audited answer (agrees with the teacher or not) feeds a test supermartingale for the null
 * "agreement on handled >= α". When its wealth reaches 1/δ_m the gate closes: every later input goes to
 * the teacher until a refit. By Ville's inequality, if every audited input agrees with probability >= α
 * given everything before it, the gate closes with probability at most δ_m over the whole (unbounded)
 * stream, whenever one looks.
 */
#ifndef TR_DRIFT_H
#define TR_DRIFT_H

#include "../gate/gate.h"

/* ---- audit sampling (monitor.c) ---- */

/* 1 when the input `id` is audited at rate `rate` under `seed` (XXH3 of the id as a uniform in [0,1)). */
int tr_audit_pick(const char *id, uint64_t seed, double rate);

/* ---- the monitor (monitor.c) ---- */

/*
 * Both constructions are products of plug-in likelihood ratios against the null boundary m,
 *   W_t(m) = prod_i (q_i / m)^x_i ((1 - q_i) / (1 - m))^(1 - x_i),
 * where x_i is 1 when the i-th audited answer agreed and q_i in (0, m] is predicted from x_1..x_{i-1}
 * only. Each factor has conditional mean <= 1 whenever P(x_i = 1 | past) >= m, so W_t(m) is a test
 * supermartingale under "agreement >= m" whatever the predictions are (a bet 1 + λ(m - x) with
 * λ = (m - q) / (m (1 - m)) in [0, 1/(1-m)]).
 *   mixture: q_i is the posterior mean of a uniform prior on [0, m]: W_t(m) is then exactly the
 *            beta-mixture likelihood ratio (all audits weigh the same, from the start of the stream).
 *   betting: q_i is a discounted mean of recent audits (memory TR_MON_MEMORY audits, shrunk towards m by
 *            TR_MON_PRIOR pseudo-audits): the bet grows soon after agreement falls, and stays near zero
 *            while agreement is above m, so a long healthy past costs little wealth.
 */
enum tr_mon_method { TR_MON_BETTING, TR_MON_MIXTURE };
extern const char *const tr_mon_method_names[2];
int tr_mon_method_parse(const char *name);

#define TR_MON_MEMORY 32.0 /* betting: effective memory of the discounted mean, in audits */
#define TR_MON_PRIOR 10.0  /* betting: pseudo-audits at the null boundary */
#define TR_MON_FLOOR 0.25  /* betting: q_i >= FLOOR * m, so one agreeing audit costs at most ln 4 */
#define TR_MON_GRID 100	   /* boundaries m = 0.500, 0.505, ..., 0.995 for the upper confidence bound */
#define TR_MON_HIST 64	   /* history checkpoints kept (thinned by half when full) */

struct tr_mon_point {
	uint64_t inputs, audits, agree;
	double stat;  /* ln W_t(α) */
	double upper; /* the upper confidence bound on agreement */
};

/* The whole state of a monitor: plain fields, no pointers; serialised field by field. */
struct tr_monitor {
	enum tr_mon_method method;
	double alpha, delta, audit_rate;
	uint64_t audit_seed;
	char policy_sha[65]; /* SHA-256 of the policy's manifest.json: a refit starts a new monitor */
	uint64_t inputs, handled, audits, agree;
	double ew_n, ew_k;		   /* betting: discounted audits and agreements */
	double stat, stat_max;		   /* ln W_t(α) now and its running maximum */
	double grid_stat[TR_MON_GRID];	   /* ln W_t(m) per boundary m */
	unsigned char grid_rej[TR_MON_GRID]; /* 1 once W(m) reached 1/δ: agreement < m */
	int closed;
	struct tr_mon_point closing; /* the event that closed the gate */
	uint64_t hist_every;	     /* a checkpoint every hist_every audits */
	int n_hist;
	struct tr_mon_point hist[TR_MON_HIST];
};

/* A fresh monitor (gate open). delta in (0,1), alpha in (0.5,1). */
void tr_monitor_init(struct tr_monitor *m, enum tr_mon_method method, double alpha, double delta,
		     double audit_rate, uint64_t audit_seed);
/* Counts one routed input (handled or not). */
void tr_monitor_count(struct tr_monitor *m, int handled);
/*
 * Feeds one audited answer (agree: 1 when the surrogate's answer equals the teacher's). Returns 1 when
 * this answer closes the gate (the closing event is recorded), else 0. A closed monitor ignores input.
 */
int tr_monitor_observe(struct tr_monitor *m, int agree);
/* ln(1/δ): the statistic's closing threshold. */
double tr_monitor_threshold(const struct tr_monitor *m);
/* Anytime-valid upper confidence bound on agreement: the least boundary m rejected so far (1: none). */
double tr_monitor_upper(const struct tr_monitor *m);

/* The state as text ("tracer-monitor 1", one field per line, %.17g, an "end" line). */
int tr_monitor_format(const struct tr_monitor *m, struct tr_buf *out);
/* Parses a state file; every field checked, a missing "end" line is an error (file and line named). */
int tr_monitor_parse(const char *what, const char *text, struct tr_monitor *m, struct tr_err *e);
/* The state file of the policy in `dir`: DIR.monitor beside the directory. */
void tr_monitor_path(const char *dir, char *buf, size_t size);
/* Writes the state atomically (temporary file + rename: a reader sees the old state or the new one). */
int tr_monitor_save(const struct tr_monitor *m, const char *path, struct tr_err *e);
/* Loads a state file: 1 when it exists and was read, 0 when there is none, -1 on error. */
int tr_monitor_load(const char *path, struct tr_monitor *m, struct tr_err *e);

/*
 * The monitor of the policy in `dir`: loads DIR.monitor when it exists and belongs to this policy (the
 * SHA-256 of DIR/manifest.json matches). Returns 1 when found, 0 when there is none or it belongs to an
 * earlier fit (a refit reopens the gate), -1 on error. sha (65 bytes, may be NULL) gets the policy's sum.
 */
int tr_monitor_open(const char *dir, struct tr_monitor *m, char *sha, struct tr_err *e);

/* The state as JSON (json_t *, owned by the caller; NULL when out of memory): settings, counts, the
 * statistic and threshold, the upper bound, the closing event and the history checkpoints. */
void *tr_monitor_json(const struct tr_monitor *m);

/* ---- replay (replay.c) ---- */

/* One input of a stream, routed: what the replay needs to know about it. */
struct tr_stream_item {
	const char *id; /* borrowed: the audit hash key */
	int handled;	/* the policy answered it */
	int agree;	/* the policy's answer equals the teacher's (meaningful when handled) */
	int ood;	/* deferred by the OOD guard */
	int phase;	/* 0 before the change point, 1 after */
	int novel;	/* the teacher's label is outside the policy's label space */
};

struct tr_replay_opts {
	enum tr_mon_method method;
	double alpha, delta, audit_rate;
	uint64_t audit_seed;
	size_t every;  /* a timeline line every `every` inputs (0: none) */
	size_t window; /* handled inputs in the timeline's recent agreement */
};

struct tr_replay_summary {
	size_t n, switch_at; /* switch_at = n when there is no change point */
	int detected;
	size_t detect_at;     /* inputs routed when the gate closed (0 when it never did) */
	long delay;	      /* detect_at - switch_at (-1 when not detected or before the change) */
	size_t handled, wrong, wrong_after_switch; /* answers the surrogate served, and those that were wrong */
	size_t audits, audit_agree, teacher_calls;  /* audits are teacher calls too */
	size_t novel, novel_ood, novel_handled;	    /* after the change: inputs with a new label; those the OOD
						       guard deferred; those the policy answered */
	double stat, upper;
	double agreement_before, agreement_after; /* true agreement on handled, each phase (all inputs) */
};

/*
 * Streams items[0..n) (already in stream order) through audit + monitor. m is the monitor to continue
 * (initialised by the caller, or loaded from its state file). `timeline` (may be NULL) receives JSONL:
 * every opts->every inputs {"t", "phase", "coverage", "agreement_handled", "agreement_recent", "audits",
 * "audit_agree", "stat", "threshold", "upper", "closed"}, plus a line at the closing moment and at the end.
 * switch_at: index of the first item of phase 1 (n: none).
 */
int tr_replay_stream(const struct tr_stream_item *items, size_t n, size_t switch_at, const struct tr_replay_opts *o,
		     struct tr_monitor *m, struct tr_buf *timeline, struct tr_replay_summary *s, struct tr_err *e);
/* The summary as one JSON object (compact, fixed key order). */
int tr_replay_summary_json(const struct tr_replay_summary *s, struct tr_buf *out);

/*
 * Routes `rows` with the policy and fills items (ids borrowed from rows): the drift module's one call
 * into routing. teacher_names gives each row's teacher label name (NULL: a label the policy cannot
 * produce, e.g. CLINC150's "oos").
 */
int tr_replay_route(const struct tr_policy *p, const struct tr_trace *rows, const char *const *teacher_names,
		    size_t n, struct tr_stream_item *items, struct tr_err *e);

#endif
