/* What the Lane's two halves share: its state and the calls between them.
 * _lane.c holds the Lane type, the client direction and the hand-overs;
 * _lane_upstream.c the server direction (relay to ReadyForQuery). */
#ifndef SIGNOFF_LANE_H
#define SIGNOFF_LANE_H

#include <Python.h>
#include <stdint.h>
#include <time.h>

#include "_audit_queue.h"

enum { LANE_IDLE = 0, LANE_HOLD = 1, LANE_FLIGHT = 2 };


static inline int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* time.perf_counter()'s clock on Linux */
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline uint32_t be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* ------------------------------------------------------------------- Lane */

typedef struct {
    PyObject_HEAD
    PyObject *conn;
    PyObject *client_write;   /* the client transport's write */
    PyObject *upstream_write; /* the upstream transport's write */
    AuditQueue *queue;
    PyObject *session_id;     /* str */
    PyObject *shapes;         /* dict: literal mask -> statement data up to its sha256 */
    PyObject *texts;          /* dict: Parse text -> (statement data, StatementDecision) */
    /* the Python relay (bound methods of conn) */
    PyObject *slow_client;    /* (data) -> quiet: bool */
    PyObject *slow_upstream;  /* (data) -> quiet: bool */
    PyObject *adopt;          /* (seq, t0, tag | None, tag_at, decision | None, answered, described) */
    PyObject *unhold;         /* (seq | None, held, rest, decision | None, execute at, end, described) */
    PyObject *resume;         /* (rest: list[bytes]) */
    PyObject *backlog;        /* () */
    PyObject *failed;         /* (exception) */
    PyObject *unnamed_hook;   /* (decision): the unnamed statement and portal it left */
    Py_ssize_t backlog_max;
    int enabled;
    int quiet;
    int quiet_when_idle;      /* what quiet becomes at a ReadyForQuery 'I' of the lane's */
    int relay_txn;            /* the relay's txn (a ReadyForQuery status) as the lane left it */
    int ended;
    int state;
    /* HOLD */
    PyObject *held;           /* the Query message (bytes) */
    PyObject *rest;           /* list of client chunks that arrived after it, or NULL */
    Py_ssize_t rest_size;
    int backlog_blocked;
    /* HOLD and FLIGHT of the extended shape */
    PyObject *decision;       /* its StatementDecision, or NULL for a simple Query */
    int described;            /* a Describe came between Bind and Execute */
    int answered;             /* ParseComplete, BindComplete, the description: seen so far */
    Py_ssize_t execute_at, execute_end; /* the Execute within the held bytes */
    PyObject *unnamed;        /* the decision the relay has not been told of yet */
    /* FLIGHT */
    long long seq;
    int64_t t0;
    PyObject *tag;            /* the CommandComplete tag (str), or NULL */
    int64_t tag_at;
} Lane;

/* A message the lane does not take goes to the Python relay's ``slow`` callback. */
int lane_slow(Lane *self, PyObject *slow, PyObject *data);
/* Hand what is in flight over to the Python relay (``adopt``); 0 or -1. */
int lane_hand_over(Lane *self);
/* The upstream transport's data_received (in _lane_upstream.c). */
PyObject *lane_upstream_data(Lane *self, PyObject *data);

#endif
