/*
 * replay.c - a traffic stream through route + audit + monitor: the timeline and the summary of
 * `tracer replay` and of the drift study.
 */
#include "drift.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define ROUTE_CHUNK 2048 /* rows featurised at once */

int tr_replay_route(const struct tr_policy *p, const struct tr_trace *rows, const char *const *teacher_names,
		    size_t n, struct tr_stream_item *items, struct tr_err *e)
{
	if (p->fz && tr_featurizer_kind(p->fz) == TR_FEAT_NPY)
		return tr_fail(e, "replay: policies fitted on embeddings are not supported (the traffic has no embeddings)");
	size_t *idx = tr_malloc(ROUTE_CHUNK * sizeof *idx);
	struct tr_decision *d = tr_malloc(ROUTE_CHUNK * sizeof *d);
	int rc = idx && d ? 0 : tr_fail(e, "out of memory");
	for (size_t s = 0; s < n && !rc; s += ROUTE_CHUNK) {
		size_t k = n - s < ROUTE_CHUNK ? n - s : ROUTE_CHUNK;
		for (size_t i = 0; i < k; i++)
			idx[i] = s + i;
		/* the drift guard's one call into routing */
		if ((rc = tr_policy_route(p, rows, idx, k, NULL, 0, 0, d, e)))
			break;
		for (size_t i = 0; i < k; i++) {
			int t = teacher_names[s + i] ? tr_labels_find(&p->labels, teacher_names[s + i]) : -1;
			items[s + i] = (struct tr_stream_item){.id = rows[s + i].id, .handled = d[i].handled,
							       .agree = d[i].handled && t >= 0 && d[i].label == t,
							       .ood = d[i].ood, .novel = t < 0};
		}
	}
	tr_free(idx), tr_free(d);
	return rc;
}

/* One timeline line; -1 when the buffer could not grow (every append checked). */
static int timeline_line(struct tr_buf *b, size_t t, int phase, size_t served, size_t served_ok, double recent,
			 const struct tr_monitor *m)
{
	int bad = tr_buf_printf(b, "{\"t\":%zu,\"phase\":%d,\"coverage\":%.6f,\"agreement_handled\":", t, phase,
				t ? (double)served / (double)t : 0.0);
	bad |= served ? tr_buf_printf(b, "%.6f", (double)served_ok / (double)served) : tr_buf_puts(b, "null");
	bad |= tr_buf_puts(b, ",\"agreement_recent\":");
	bad |= isnan(recent) ? tr_buf_puts(b, "null") : tr_buf_printf(b, "%.6f", recent);
	bad |= tr_buf_printf(b, ",\"audits\":%llu,\"audit_agree\":%llu,\"stat\":%.6f,\"threshold\":%.6f,"
				"\"upper\":%.4f,\"closed\":%s}\n",
			     (unsigned long long)m->audits, (unsigned long long)m->agree, m->stat, tr_monitor_threshold(m),
			     tr_monitor_upper(m), m->closed ? "true" : "false");
	return bad ? -1 : 0;
}

int tr_replay_stream(const struct tr_stream_item *items, size_t n, size_t switch_at, const struct tr_replay_opts *o,
		     struct tr_monitor *m, struct tr_buf *timeline, struct tr_replay_summary *s, struct tr_err *e)
{
	memset(s, 0, sizeof *s);
	s->n = n;
	s->switch_at = switch_at;
	s->delay = -1;
	size_t win = o->window ? o->window : 1;
	unsigned char *ring = tr_calloc(win, 1);
	if (!ring)
		return tr_fail(e, "out of memory");
	size_t ring_n = 0, ring_pos = 0, ring_ok = 0, served_ok = 0;
	size_t ph_n[2] = {0, 0}, ph_ok[2] = {0, 0};
	int was_closed = m->closed, oom = 0;
	for (size_t i = 0; i < n; i++) {
		const struct tr_stream_item *it = &items[i];
		int phase = i >= switch_at;
		/* true agreement of what the policy would do, whether or not the gate lets it */
		if (it->handled) {
			ph_n[phase]++;
			ph_ok[phase] += (size_t)it->agree;
			if (ring_n == win)
				ring_ok -= ring[ring_pos];
			else
				ring_n++;
			ring[ring_pos] = (unsigned char)it->agree;
			ring_ok += (size_t)it->agree;
			ring_pos = (ring_pos + 1) % win;
		}
		if (phase)
			s->novel += (size_t)it->novel, s->novel_ood += (size_t)(it->novel && it->ood),
			s->novel_handled += (size_t)(it->novel && it->handled);
		int serve = it->handled && !m->closed;
		tr_monitor_count(m, serve);
		int closed_now = 0;
		if (!serve) {
			s->teacher_calls++;
		} else {
			s->handled++;
			served_ok += (size_t)it->agree;
			if (!it->agree) {
				s->wrong++;
				s->wrong_after_switch += (size_t)phase;
			}
			if (tr_audit_pick(it->id, o->audit_seed, o->audit_rate)) {
				s->audits++;
				s->teacher_calls++;
				s->audit_agree += (size_t)it->agree;
				closed_now = tr_monitor_observe(m, it->agree);
			}
		}
		if (closed_now) {
			s->detected = 1;
			s->detect_at = i + 1;
			s->delay = i + 1 > switch_at ? (long)(i + 1 - switch_at) : -1;
		}
		if (timeline && ((o->every && (i + 1) % o->every == 0) || closed_now || i + 1 == n))
			oom |= timeline_line(timeline, i + 1, phase, s->handled, served_ok,
					     ring_n >= win ? (double)ring_ok / (double)ring_n : NAN, m);
	}
	s->detected |= was_closed;
	s->stat = m->stat;
	s->upper = tr_monitor_upper(m);
	s->agreement_before = ph_n[0] ? (double)ph_ok[0] / (double)ph_n[0] : NAN;
	s->agreement_after = ph_n[1] ? (double)ph_ok[1] / (double)ph_n[1] : NAN;
	tr_free(ring);
	return oom ? tr_fail(e, "out of memory") : 0;
}

static int put_real(struct tr_buf *b, const char *key, double v)
{
	return isfinite(v) ? tr_buf_printf(b, ",\"%s\":%.6f", key, v) : tr_buf_printf(b, ",\"%s\":null", key);
}

/* Every append is checked: -1 means the line is incomplete and must not be written. */
int tr_replay_summary_json(const struct tr_replay_summary *s, struct tr_buf *b)
{
	int bad = tr_buf_printf(b, "{\"n\":%zu,\"switch_at\":", s->n);
	bad |= s->switch_at < s->n ? tr_buf_printf(b, "%zu", s->switch_at) : tr_buf_puts(b, "null");
	bad |= tr_buf_printf(b, ",\"detected\":%s,\"detect_at\":", s->detected ? "true" : "false");
	bad |= s->detect_at ? tr_buf_printf(b, "%zu", s->detect_at) : tr_buf_puts(b, "null");
	bad |= tr_buf_puts(b, ",\"delay\":");
	bad |= s->delay >= 0 ? tr_buf_printf(b, "%ld", s->delay) : tr_buf_puts(b, "null");
	bad |= tr_buf_printf(b, ",\"handled\":%zu,\"wrong\":%zu,\"wrong_after_switch\":%zu,\"audits\":%zu,"
				"\"audit_agree\":%zu,\"teacher_calls\":%zu,\"novel\":%zu,\"novel_ood\":%zu,"
				"\"novel_handled\":%zu",
			     s->handled, s->wrong, s->wrong_after_switch, s->audits, s->audit_agree, s->teacher_calls,
			     s->novel, s->novel_ood, s->novel_handled);
	bad |= put_real(b, "stat", s->stat);
	bad |= put_real(b, "upper", s->upper);
	bad |= put_real(b, "agreement_before", s->agreement_before);
	bad |= put_real(b, "agreement_after", s->agreement_after);
	bad |= tr_buf_puts(b, "}\n");
	return bad ? -1 : 0;
}
