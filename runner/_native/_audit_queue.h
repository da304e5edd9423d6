/* The lanes' audit queue: the statement and outcome entries the C fast lanes of one
 * loop iteration queue for the writer's flush (runner.audit.writer takes them, writes
 * them in one journal append and delivers the seqs back). The Lane (_lane.c) pushes
 * to it and receives its deliveries. */
#ifndef SIGNOFF_AUDIT_QUEUE_H
#define SIGNOFF_AUDIT_QUEUE_H

#include <Python.h>

typedef struct {
    PyObject_HEAD
    PyObject *items; /* list of (kind, session_id, ref, data, waiter) */
    PyObject *wake;  /* called once when the first item of a batch arrives */
    int woken;
    int closed;
    long long decided; /* statements the lanes decided from their caches (the rest were
                        * decided by the Python relay and carried) */
} AuditQueue;

extern PyTypeObject AuditQueueType;

/* Append ``item`` (a new reference, always consumed): 0, or -1 with an exception. */
int queue_push(AuditQueue *q, PyObject *item);
/* queue.deliver(items, first_seq | None), in _lane.c: it tells held lanes their seqs. */
PyObject *audit_queue_deliver(AuditQueue *self, PyObject *args);
int audit_queue_add_to_module(PyObject *module);

#endif
