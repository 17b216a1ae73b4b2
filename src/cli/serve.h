/*
 * serve.h - private to `tracer serve`: the server state shared by the HTTP plumbing (cmd_serve.c) and
 * the endpoints (serve_endpoints.c).
 */
#ifndef TR_SERVE_H
#define TR_SERVE_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "cli.h"
#include "route_io.h"

#define HIST_N 12
extern const double hist_le[HIST_N];

enum ep { EP_ROUTE, EP_BATCH, EP_FEEDBACK, EP_HEALTH, EP_METRICS, EP_OTHER, EP_N };
extern const char *const ep_names[EP_N];
#define N_CODES 6
extern const int codes[N_CODES];

/* One loaded policy with its drift monitor, shared by the requests that use it. */
struct served {
	atomic_int refs;
	struct tr_policy *p;
	char sha[65];
	pthread_mutex_t mlock; /* guards mon and have_mon */
	struct tr_monitor mon;
	int have_mon; /* the state file exists (or was written by us) */
	int mon_dirty; /* inputs counted since the state file was last written */
	atomic_int closed;
};

struct server {
	const char *dir;
	char mon_path[PATH_MAX];
	size_t max_body;
	double audit_rate;
	uint64_t audit_seed;
	pthread_mutex_t lock; /* guards cur (the swap, not the policy) */
	struct served *cur;
	const char *fb_path;
	int fb_fd;
	pthread_mutex_t fb_lock;
	atomic_long inflight;
	atomic_ulong requests[EP_N], responses[N_CODES], aborted;
	atomic_ulong inputs, handled, deferred, ood, audited, feedback, feedback_audits, reloads, reload_failures;
	atomic_ulong pair_mismatch; /* inputs routed whose pair-ness is not the policy's (tr_route_pair_warning) */
	atomic_ulong hist[HIST_N + 1], lat_ns; /* latency: counts per bucket (+Inf last), sum in ns */
};

struct req {
	enum ep ep;
	struct tr_buf body;
	int too_big, done;
	struct timespec t0;
};

/* The policy served now, with a reference taken (serve_release gives it back). */
struct served *serve_acquire(struct server *sv);
void serve_release(struct served *s);
/* The drift guard of s as it stands (gate state, audit rate and seed). */
struct tr_guard serve_guard(struct served *s);

/* Queues a response (text is consumed; NULL text gives an empty 500) and counts its status code. */
enum MHD_Result serve_reply(struct server *sv, struct MHD_Connection *c, unsigned code, const char *type, char *text,
			    size_t len, const char *allow);
/* A JSON object (consumed) as the body; out of memory gives 500. */
enum MHD_Result serve_reply_json(struct server *sv, struct MHD_Connection *c, unsigned code, json_t *o,
				 const char *allow);
/* {"error": msg} with the given code. */
enum MHD_Result serve_reply_error(struct server *sv, struct MHD_Connection *c, unsigned code, const char *msg,
				  const char *allow);

/* The endpoints (serve_endpoints.c); r holds the whole request body. */
enum MHD_Result serve_route(struct server *sv, struct MHD_Connection *c, struct req *r);
enum MHD_Result serve_batch(struct server *sv, struct MHD_Connection *c, struct req *r);
enum MHD_Result serve_feedback(struct server *sv, struct MHD_Connection *c, struct req *r);
enum MHD_Result serve_health(struct server *sv, struct MHD_Connection *c);
enum MHD_Result serve_metrics(struct server *sv, struct MHD_Connection *c);

#endif
