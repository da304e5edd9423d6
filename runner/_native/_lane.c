/* The proxy's fast lane: the steady state of a connection, in C.
 *
 * Most of a busy gateway's traffic is one shape: a client sends one simple Query
 * whose literal mask the session already allowed as a plain read, the server
 * answers with rows, a CommandComplete and ReadyForQuery. For that shape the
 * Python relay (runner.gateway.proxy.relay) costs more than the database does.
 * A Lane does exactly what the Python relay would for it, with no Python frame
 * in between:
 *
 *   client Query  -> decide from the session's lane cache (mask -> the statement
 *                    entry's data up to its sha256), queue the statement entry
 *                    on the AuditQueue and hold the message        (HOLD)
 *   entry durable -> forward the held message upstream          (FLIGHT)
 *   server answer -> relay T/D/C, and at ReadyForQuery queue the outcome entry
 *                    and relay the answer                        (IDLE)
 *
 * A Query the Python relay has just decided itself (any single allowed statement,
 * in a transaction or not) can be given to the lane the same way (``carry``): the
 * decision stays Python's, the walk from the entry to ReadyForQuery is C's.
 *
 * The extended protocol's one-shot shape is the same walk: Parse (unnamed, a text
 * the session allowed as a plain read, from the lane's exact-text cache), Bind
 * (unnamed to unnamed), an optional Describe of the portal, Execute (no row
 * limit) and Sync, in one read; answered by ParseComplete, BindComplete, the row
 * description, rows, CommandComplete and ReadyForQuery. The unnamed statement
 * and portal it leaves are told to the Python relay (``_lane_unnamed``) before
 * the relay next handles anything.
 *
 * Anything else goes to the Python relay, which stays the reference: the lane
 * takes a message only when Python says its own relay state is quiescent
 * (``quiet``: nothing pending, no transaction, nothing half-read), and it hands
 * an unfinished statement over (``adopt``) before Python sees any byte that
 * follows it. The lane never decides anything Python did not decide first: its
 * cache holds only what service.GatewayService put there, the same ALLOW
 * decisions Python's own shape cache serves. tests/gateway/test_gateway_lane.py runs the
 * same client sessions with the lane and without it and requires the same bytes
 * to the client and the same audit records.
 *
 * What the lane must read and write exactly as Python does (the literal guard's
 * words, the row count of a tag, the outcome's and the statement's data, the
 * one-shot shape) is in _contract.c, with the values Python hands over once
 * (runner/_native/contract.py); no Lane is made before.
 *
 * AuditQueue: the entries the lanes append during one loop iteration; the
 * audit writer's inline flush writes them in one journal append (chain_lines
 * takes the items as they are) and ``deliver`` tells each held statement its seq.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "_audit_queue.h"
#include "_lane.h"
#include "_contract.h"
#include "_speedups_core.h"



static PyTypeObject LaneType;

static PyObject *method_of(PyObject *conn, const char *name) {
    PyObject *method = PyObject_GetAttrString(conn, name);
    if (method != NULL && !PyCallable_Check(method)) {
        PyErr_Format(PyExc_TypeError, "conn.%s is not callable", name);
        Py_CLEAR(method);
    }
    return method;
}

static int lane_init(Lane *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"conn",   "client_write", "upstream_write", "queue", "session_id",
                               "shapes", "texts",        "backlog_max",    NULL};
    PyObject *conn, *client_write, *upstream_write, *queue, *session_id, *shapes, *texts;
    Py_ssize_t backlog_max;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOO!UO!O!n:Lane", keywords, &conn,
                                     &client_write, &upstream_write, &AuditQueueType, &queue,
                                     &session_id, &PyDict_Type, &shapes, &PyDict_Type, &texts,
                                     &backlog_max)) {
        return -1;
    }
    if (self->conn != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a Lane is initialised once");
        return -1;
    }
    if (!contract_ready()) return -1; /* Python's values first (runner/_native/loader.py) */
#define TAKE(field, value) \
    do {                   \
        Py_INCREF(value);  \
        self->field = (value); \
    } while (0)
    TAKE(conn, conn);
    TAKE(client_write, client_write);
    TAKE(upstream_write, upstream_write);
    TAKE(session_id, session_id);
    TAKE(shapes, shapes);
    TAKE(texts, texts);
    Py_INCREF(queue);
    self->queue = (AuditQueue *)queue;
#undef TAKE
    if ((self->slow_client = method_of(conn, "_slow_client")) == NULL ||
        (self->slow_upstream = method_of(conn, "_slow_upstream")) == NULL ||
        (self->adopt = method_of(conn, "_lane_adopt")) == NULL ||
        (self->unhold = method_of(conn, "_lane_unhold")) == NULL ||
        (self->resume = method_of(conn, "_lane_resume")) == NULL ||
        (self->backlog = method_of(conn, "_lane_backlog")) == NULL ||
        (self->failed = method_of(conn, "_lane_failed")) == NULL ||
        (self->unnamed_hook = method_of(conn, "_lane_unnamed")) == NULL) {
        return -1;
    }
    self->backlog_max = backlog_max;
    self->enabled = 1;
    self->quiet = 0;
    self->state = LANE_IDLE;
    return 0;
}

static int lane_traverse(Lane *self, visitproc visit, void *arg) {
    Py_VISIT(self->conn);
    Py_VISIT(self->client_write);
    Py_VISIT(self->upstream_write);
    Py_VISIT(self->queue);
    Py_VISIT(self->shapes);
    Py_VISIT(self->texts);
    Py_VISIT(self->unnamed_hook);
    Py_VISIT(self->decision);
    Py_VISIT(self->unnamed);
    Py_VISIT(self->slow_client);
    Py_VISIT(self->slow_upstream);
    Py_VISIT(self->adopt);
    Py_VISIT(self->unhold);
    Py_VISIT(self->resume);
    Py_VISIT(self->backlog);
    Py_VISIT(self->failed);
    Py_VISIT(self->held);
    Py_VISIT(self->rest);
    return 0;
}

static int lane_clear(Lane *self) {
    Py_CLEAR(self->conn);
    Py_CLEAR(self->client_write);
    Py_CLEAR(self->upstream_write);
    Py_CLEAR(self->queue);
    Py_CLEAR(self->session_id);
    Py_CLEAR(self->shapes);
    Py_CLEAR(self->texts);
    Py_CLEAR(self->unnamed_hook);
    Py_CLEAR(self->decision);
    Py_CLEAR(self->unnamed);
    Py_CLEAR(self->slow_client);
    Py_CLEAR(self->slow_upstream);
    Py_CLEAR(self->adopt);
    Py_CLEAR(self->unhold);
    Py_CLEAR(self->resume);
    Py_CLEAR(self->backlog);
    Py_CLEAR(self->failed);
    Py_CLEAR(self->held);
    Py_CLEAR(self->rest);
    Py_CLEAR(self->tag);
    return 0;
}

static void lane_dealloc(Lane *self) {
    PyObject_GC_UnTrack(self);
    lane_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* An exception raised in the lane's own work ends the connection, as one raised in
 * the Python relay's does (conn._lane_failed maps it to the end reason). */
static void lane_fail(Lane *self) {
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (value == NULL) {
        Py_XDECREF(type);
        Py_XDECREF(traceback);
        return;
    }
    if (traceback != NULL) PyException_SetTraceback(value, traceback);
    PyObject *result = self->failed ? PyObject_CallOneArg(self->failed, value) : NULL;
    if (result == NULL) PyErr_WriteUnraisable((PyObject *)self);
    Py_XDECREF(result);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(traceback);
}

/* Before the Python relay handles anything: the unnamed statement and portal the
 * lane's last extended-protocol statement left, as the relay would have them. */
static int lane_sync_unnamed(Lane *self) {
    if (self->unnamed == NULL) return 0;
    PyObject *decision = self->unnamed;
    self->unnamed = NULL;
    PyObject *result = PyObject_CallOneArg(self->unnamed_hook, decision);
    Py_DECREF(decision);
    if (result == NULL) return -1;
    Py_DECREF(result);
    return 0;
}

/* Call a slow path that answers whether Python's relay is quiescent afterwards. */
int lane_slow(Lane *self, PyObject *slow, PyObject *data) {
    self->quiet = 0;
    if (lane_sync_unnamed(self) < 0) return -1;
    PyObject *quiet = PyObject_CallOneArg(slow, data);
    if (quiet == NULL) return -1;
    self->quiet = PyObject_IsTrue(quiet) == 1;
    Py_DECREF(quiet);
    return 0;
}

/* FLIGHT -> IDLE: the statement in flight becomes an entry of Python's relay. */
int lane_hand_over(Lane *self) {
    if (self->state != LANE_FLIGHT) return 0;
    self->state = LANE_IDLE;
    self->quiet = 0;
    /* The statement is adopted even if telling the previous unnamed statement
     * failed (the connection then ends): its outcome must still be recorded. */
    PyObject *type = NULL, *value = NULL, *traceback = NULL;
    int synced = lane_sync_unnamed(self);
    if (synced < 0) PyErr_Fetch(&type, &value, &traceback);
    PyObject *tag = self->tag ? self->tag : Py_None;
    PyObject *decision = self->decision ? self->decision : Py_None;
    PyObject *result = PyObject_CallFunction(self->adopt, "LdOdOii", self->seq,
                                             (double)self->t0 / 1e9, tag,
                                             (double)self->tag_at / 1e9, decision,
                                             self->answered, self->described);
    Py_CLEAR(self->tag);
    Py_CLEAR(self->decision);
    if (synced < 0) {
        Py_XDECREF(result);
        PyErr_Restore(type, value, traceback);
        return -1;
    }
    if (result == NULL) return -1;
    Py_DECREF(result);
    return 0;
}

/* Queue the statement entry (``entry_data``) of the message(s) in ``data`` and hold
 * them until it is durable: a Query (``decision`` and ``shape`` NULL) or the one-shot
 * shape of ``decision``. ``relay_txn`` is the relay's txn as the lane takes over,
 * ``quiet_when_idle`` what quiet becomes at the answer's ReadyForQuery 'I'. */
static int lane_hold(Lane *self, PyObject *data, PyObject *entry_data, PyObject *decision,
                     const OneShot *shape, int relay_txn, int quiet_when_idle) {
    PyObject *item =
        PyTuple_Pack(5, contract_statement_kind, self->session_id, Py_None, entry_data, (PyObject *)self);
    if (item == NULL) return -1;
    Py_XINCREF(decision); /* before the push: a callback may change where it came from */
    if (queue_push(self->queue, item) < 0) {
        Py_XDECREF(decision);
        return -1;
    }
    Py_INCREF(data);
    Py_XSETREF(self->held, data);
    Py_XSETREF(self->decision, decision);
    self->relay_txn = relay_txn;
    self->quiet_when_idle = quiet_when_idle;
    self->answered = 0;
    self->described = shape != NULL && shape->described;
    self->execute_at = shape != NULL ? shape->execute_at : PyBytes_GET_SIZE(data);
    self->execute_end = shape != NULL ? shape->execute_end : PyBytes_GET_SIZE(data);
    self->rest_size = 0;
    self->backlog_blocked = 0;
    self->state = LANE_HOLD;
    return 1;
}

/* One simple Query that the session's cache allows, in ``data`` exactly: queue its
 * statement entry and hold it (1); 0: not the lane's (Python decides it). */
static int lane_try_query(Lane *self, PyObject *data) {
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(data);
    if (self->queue->closed) return 0; /* the Python path reports it */
    PyObject *key;
    Py_ssize_t start, end;
    int found = contract_query_key(d, PyBytes_GET_SIZE(data), &key, &start, &end);
    if (found <= 0) return found;
    PyObject *prefix = PyDict_GetItemWithError(self->shapes, key); /* borrowed */
    Py_DECREF(key);
    if (prefix == NULL) return PyErr_Occurred() ? -1 : 0;
    Py_INCREF(prefix); /* the dict may change under a callback */
    PyObject *entry_data = contract_statement_data(prefix, d + start, end - start);
    Py_DECREF(prefix);
    if (entry_data == NULL) return -1;
    int held = lane_hold(self, data, entry_data, NULL, NULL, 'I', 1);
    Py_DECREF(entry_data);
    if (held > 0) self->queue->decided++;
    return held;
}

/* The one-shot shape, exactly ``data``, with a text the session's exact-text cache
 * allows: queue its statement entry and hold it all (1); 0: not the lane's. */
static int lane_try_extended(Lane *self, PyObject *data) {
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(data);
    OneShot shape;
    if (self->queue->closed || !contract_one_shot_shape(d, PyBytes_GET_SIZE(data), &shape)) return 0;
    PyObject *key = PyUnicode_DecodeUTF8((const char *)d + shape.text_at, shape.text_size, NULL);
    if (key == NULL) { /* not UTF-8: the relay refuses it, as it should */
        PyErr_Clear();
        return 0;
    }
    PyObject *known = PyDict_GetItemWithError(self->texts, key); /* borrowed */
    Py_DECREF(key);
    if (known == NULL) return PyErr_Occurred() ? -1 : 0;
    if (!PyTuple_Check(known) || PyTuple_GET_SIZE(known) != 2 ||
        !PyUnicode_Check(PyTuple_GET_ITEM(known, 0))) {
        PyErr_SetString(PyExc_TypeError, "lane texts hold (statement data, decision) pairs");
        return -1;
    }
    Py_INCREF(known);
    int held = lane_hold(self, data, PyTuple_GET_ITEM(known, 0), PyTuple_GET_ITEM(known, 1),
                         &shape, 'I', 1);
    Py_DECREF(known);
    if (held > 0) self->queue->decided++;
    return held;
}

static PyObject *lane_client_data(Lane *self, PyObject *data) {
    if (!PyBytes_Check(data)) {
        PyErr_SetString(PyExc_TypeError, "client data must be bytes");
        return NULL;
    }
    if (self->ended) Py_RETURN_NONE; /* as the Python relay: nothing more is read */
    if (self->state == LANE_HOLD) {
        /* the Python relay's backlog: kept until the held message is forwarded */
        if (self->rest == NULL && (self->rest = PyList_New(0)) == NULL) goto fail;
        if (PyList_Append(self->rest, data) < 0) goto fail;
        self->rest_size += PyBytes_GET_SIZE(data);
        if (self->rest_size > self->backlog_max && !self->backlog_blocked) {
            self->backlog_blocked = 1;
            PyObject *result = PyObject_CallNoArgs(self->backlog);
            if (result == NULL) goto fail;
            Py_DECREF(result);
        }
        Py_RETURN_NONE;
    }
    if (self->state == LANE_FLIGHT) {
        if (lane_hand_over(self) < 0) goto fail;
    } else if (self->quiet && self->enabled && PyBytes_GET_SIZE(data) > 0) {
        char kind = PyBytes_AS_STRING(data)[0];
        int taken = kind == 'Q'   ? lane_try_query(self, data)
                    : kind == 'P' ? lane_try_extended(self, data)
                                  : 0;
        if (taken < 0) goto fail;
        if (taken) Py_RETURN_NONE;
    }
    if (lane_slow(self, self->slow_client, data) < 0) goto fail;
    Py_RETURN_NONE;
fail:
    lane_fail(self);
    Py_RETURN_NONE;
}

/* The held statement's entry is durable (seq >= 0) or its write failed (-1). */
static void lane_recorded(Lane *self, long long seq) {
    if (self->state != LANE_HOLD) return;
    PyObject *held = self->held, *rest = self->rest;
    self->held = self->rest = NULL;
    self->state = LANE_IDLE;
    if (seq < 0 || self->ended) { /* Python's relay records what becomes of it */
        self->quiet = 0;
        PyObject *decision = self->decision ? self->decision : Py_None;
        self->decision = NULL;
        if (rest == NULL) rest = PyList_New(0);
        PyObject *seq_object = seq < 0 ? (Py_INCREF(Py_None), Py_None) : PyLong_FromLongLong(seq);
        PyObject *result = NULL;
        if (rest != NULL && seq_object != NULL && lane_sync_unnamed(self) == 0) {
            result = PyObject_CallFunction(self->unhold, "OOOOnni", seq_object, held, rest,
                                           decision, self->execute_at, self->execute_end,
                                           self->described);
        }
        if (decision != Py_None) Py_DECREF(decision);
        Py_XDECREF(seq_object);
        Py_XDECREF(result);
        Py_XDECREF(held);
        Py_XDECREF(rest);
        if (result == NULL) lane_fail(self);
        return;
    }
    self->seq = seq;
    self->t0 = now_ns();
    self->state = LANE_FLIGHT;
    PyObject *result = PyObject_CallOneArg(self->upstream_write, held);
    Py_DECREF(held);
    if (result == NULL) {
        self->state = LANE_IDLE; /* never forwarded: its outcome is the Python relay's */
        Py_XDECREF(rest);
        lane_fail(self);
        return;
    }
    Py_DECREF(result);
    if (rest != NULL) { /* the client pipelined: the rest is Python's, after this one */
        if (lane_hand_over(self) < 0) {
            Py_DECREF(rest);
            lane_fail(self);
            return;
        }
        result = PyObject_CallOneArg(self->resume, rest);
        Py_DECREF(rest);
        if (result == NULL) {
            lane_fail(self);
            return;
        }
        Py_DECREF(result);
    }
}

/* carry(message, entry_data, txn, quiet_when_idle) -> bool: a simple Query the relay
 * has decided (one allowed statement; ``entry_data`` its statement entry's data),
 * given to the lane while the relay has nothing going on: the lane records it,
 * forwards it and relays its answer as its own. False: the relay keeps it. */
static PyObject *lane_carry(Lane *self, PyObject *args) {
    PyObject *data, *entry_data;
    int txn, quiet_when_idle;
    if (!PyArg_ParseTuple(args, "SUip", &data, &entry_data, &txn, &quiet_when_idle)) return NULL;
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(data);
    Py_ssize_t n = PyBytes_GET_SIZE(data);
    if (self->ended || self->state != LANE_IDLE || self->queue->closed || n < 6 || d[0] != 'Q' ||
        (Py_ssize_t)be32(d + 1) + 1 != n) {
        Py_RETURN_FALSE;
    }
    if (lane_hold(self, data, entry_data, NULL, NULL, txn, quiet_when_idle) < 0) return NULL;
    self->quiet = 0;
    Py_RETURN_TRUE;
}

/* one_shot(message) -> the Parse text (bytes) when ``message`` is exactly the
 * extended protocol's one-shot shape the lane can carry, else None. */
static PyObject *lane_one_shot(Lane *self, PyObject *data) {
    if (!PyBytes_Check(data)) {
        PyErr_SetString(PyExc_TypeError, "one_shot takes bytes");
        return NULL;
    }
    OneShot shape;
    const char *d = PyBytes_AS_STRING(data);
    if (self->ended || self->state != LANE_IDLE || self->queue->closed ||
        !contract_one_shot_shape((const unsigned char *)d, PyBytes_GET_SIZE(data), &shape)) {
        Py_RETURN_NONE;
    }
    return PyBytes_FromStringAndSize(d + shape.text_at, shape.text_size);
}

/* carry_one_shot(message, decision, entry_data, txn, quiet_when_idle) -> bool: the
 * one-shot shape (see one_shot) whose text the relay decided itself, given to the
 * lane as carry() gives a Query. */
static PyObject *lane_carry_one_shot(Lane *self, PyObject *args) {
    PyObject *data, *decision, *entry_data;
    int txn, quiet_when_idle;
    if (!PyArg_ParseTuple(args, "SOUip", &data, &decision, &entry_data, &txn, &quiet_when_idle)) {
        return NULL;
    }
    OneShot shape;
    if (self->ended || self->state != LANE_IDLE || self->queue->closed ||
        !contract_one_shot_shape((const unsigned char *)PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data),
                        &shape)) {
        Py_RETURN_FALSE;
    }
    int held = lane_hold(self, data, entry_data, decision, &shape, txn, quiet_when_idle);
    if (held < 0) return NULL;
    self->quiet = 0;
    return PyBool_FromLong(held);
}

static PyObject *lane_end(Lane *self, PyObject *unused) {
    (void)unused;
    self->ended = 1;
    self->enabled = 0;
    if (lane_hand_over(self) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *lane_get_holding(Lane *self, void *closure) {
    (void)closure;
    return PyBool_FromLong(self->state == LANE_HOLD);
}

static PyObject *lane_get_in_flight(Lane *self, void *closure) {
    (void)closure;
    return PyBool_FromLong(self->state == LANE_FLIGHT);
}

/* queue.deliver(items, first_seq | None): tell each held statement among ``items``
 * (a batch from take(), written from first_seq on) its seq, or that it failed. */
PyObject *audit_queue_deliver(AuditQueue *self, PyObject *args) {
    (void)self;
    PyObject *items, *first;
    if (!PyArg_ParseTuple(args, "O!O", &PyList_Type, &items, &first)) return NULL;
    long long seq = -1;
    if (first != Py_None) {
        seq = PyLong_AsLongLong(first);
        if (seq == -1 && PyErr_Occurred()) return NULL;
    }
    Py_INCREF(items);
    Py_ssize_t count = PyList_GET_SIZE(items);
    for (Py_ssize_t i = 0; i < count && i < PyList_GET_SIZE(items); i++) {
        PyObject *item = PyList_GET_ITEM(items, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) < 5) continue;
        PyObject *waiter = PyTuple_GET_ITEM(item, 4);
        if (Py_TYPE(waiter) != &LaneType) continue;
        Py_INCREF(waiter);
        lane_recorded((Lane *)waiter, first == Py_None ? -1 : seq + i);
        Py_DECREF(waiter);
    }
    Py_DECREF(items);
    Py_RETURN_NONE;
}

static PyMethodDef lane_methods[] = {
    {"client_data", (PyCFunction)lane_client_data, METH_O, "the client transport's data_received"},
    {"upstream_data", (PyCFunction)lane_upstream_data, METH_O,
     "the upstream transport's data_received"},
    {"carry", (PyCFunction)lane_carry, METH_VARARGS,
     "carry(message, entry_data, txn, quiet_when_idle) -> whether the lane took the Query"},
    {"one_shot", (PyCFunction)lane_one_shot, METH_O,
     "one_shot(message) -> the Parse text when message is the one-shot shape, else None"},
    {"carry_one_shot", (PyCFunction)lane_carry_one_shot, METH_VARARGS,
     "carry_one_shot(message, decision, entry_data, txn, quiet_when_idle) -> taken"},
    {"end", (PyCFunction)lane_end, METH_NOARGS,
     "the connection is ending: hand over what is in flight, take nothing more"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef lane_members[] = {
    {"enabled", T_INT, offsetof(Lane, enabled), 0, "whether the lane may take statements"},
    {"quiet", T_INT, offsetof(Lane, quiet), 0, "whether the Python relay is quiescent"},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef lane_getset[] = {
    {"holding", (getter)lane_get_holding, NULL, "a statement waits for its entry", NULL},
    {"in_flight", (getter)lane_get_in_flight, NULL, "a statement runs on the server", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject LaneType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "runner._native._speedups.Lane",
    .tp_basicsize = sizeof(Lane),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "One proxy connection's fast lane (see runner/_lane.c).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)lane_init,
    .tp_dealloc = (destructor)lane_dealloc,
    .tp_traverse = (traverseproc)lane_traverse,
    .tp_clear = (inquiry)lane_clear,
    .tp_methods = lane_methods,
    .tp_members = lane_members,
    .tp_getset = lane_getset,
};

int lane_add_to_module(PyObject *module) {
    if (audit_queue_add_to_module(module) < 0 || PyType_Ready(&LaneType) < 0) return -1;
    Py_INCREF(&LaneType);
    if (PyModule_AddObject(module, "Lane", (PyObject *)&LaneType) < 0) {
        Py_DECREF(&LaneType);
        return -1;
    }
    return contract_add_to_module(module);
}
