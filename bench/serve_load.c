/*
 * serve_load.c - a small closed-loop HTTP load client for `make bench`: C connections (one thread each,
 * keep-alive) POST the same body to 127.0.0.1:PORT/PATH as fast as answers come back, for S seconds.
 * Prints one tab-separated line: requests, seconds, requests/s, p50 ms, p99 ms, non-200 answers.
 *
 * usage: serve_load PORT PATH BODY_FILE CONNECTIONS SECONDS
 */
#define _DEFAULT_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int port;
static const char *path;
static char *req;
static size_t req_len;
static double stop_at;

struct worker {
	pthread_t th;
	double *lat;
	size_t n, cap, bad;
};

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int dial(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Sends the request and reads one whole response; returns the status code or -1. */
static int once(int fd)
{
	for (size_t off = 0; off < req_len;) {
		ssize_t w = write(fd, req + off, req_len - off);
		if (w <= 0)
			return -1;
		off += (size_t)w;
	}
	static _Thread_local char buf[1 << 16];
	size_t have = 0;
	char *hend = NULL;
	while (!hend) {
		ssize_t r = read(fd, buf + have, sizeof buf - 1 - have);
		if (r <= 0)
			return -1;
		have += (size_t)r;
		buf[have] = 0;
		hend = strstr(buf, "\r\n\r\n");
		if (!hend && have >= sizeof buf - 1)
			return -1;
	}
	int code = atoi(buf + 9);
	size_t clen = 0;
	for (char *p = buf; p < hend; p++)
		if ((p == buf || p[-1] == '\n') && strncasecmp(p, "Content-Length:", 15) == 0)
			clen = strtoul(p + 15, NULL, 10);
	size_t body = have - (size_t)(hend + 4 - buf);
	while (body < clen) {
		ssize_t r = read(fd, buf, sizeof buf);
		if (r <= 0)
			return -1;
		body += (size_t)r;
	}
	return code;
}

static void *run(void *arg)
{
	struct worker *w = arg;
	int fd = dial();
	while (fd >= 0 && now() < stop_at) {
		double t0 = now();
		int code = once(fd);
		if (code < 0) {
			close(fd);
			fd = dial();
			w->bad++;
			continue;
		}
		if (w->n == w->cap) {
			w->cap = w->cap ? 2 * w->cap : 4096;
			w->lat = realloc(w->lat, w->cap * sizeof *w->lat);
			if (!w->lat)
				break;
		}
		w->lat[w->n++] = now() - t0;
		w->bad += code != 200;
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: serve_load PORT PATH BODY_FILE CONNECTIONS SECONDS\n");
		return 2;
	}
	port = atoi(argv[1]), path = argv[2];
	int conns = atoi(argv[4]);
	double secs = atof(argv[5]);
	FILE *f = fopen(argv[3], "rb");
	if (!f || conns < 1 || conns > 1024 || !(secs > 0)) {
		fprintf(stderr, "serve_load: bad arguments\n");
		return 2;
	}
	char *body = malloc(1 << 20);
	size_t blen = fread(body, 1, (1 << 20) - 1, f);
	fclose(f);
	req = malloc(blen + 256);
	req_len = (size_t)sprintf(req,
				  "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
				  path, blen);
	memcpy(req + req_len, body, blen);
	req_len += blen;
	struct worker *w = calloc((size_t)conns, sizeof *w);
	double t0 = now();
	stop_at = t0 + secs;
	for (int i = 0; i < conns; i++)
		pthread_create(&w[i].th, NULL, run, &w[i]);
	size_t n = 0, bad = 0;
	for (int i = 0; i < conns; i++)
		pthread_join(w[i].th, NULL), n += w[i].n, bad += w[i].bad;
	double el = now() - t0;
	double *all = malloc((n ? n : 1) * sizeof *all);
	for (int i = 0, k = 0; i < conns; i++)
		for (size_t j = 0; j < w[i].n; j++)
			all[k++] = w[i].lat[j];
	qsort(all, n, sizeof *all, cmp_d);
	printf("%zu\t%.2f\t%.0f\t%.3f\t%.3f\t%zu\n", n, el, (double)n / el, n ? 1e3 * all[n / 2] : 0.0,
	       n ? 1e3 * all[(size_t)(0.99 * (double)(n - 1))] : 0.0, bad);
	return 0;
}
