/* The Lane's server direction: the server's answer relayed to the client up to
 * its ReadyForQuery, the outcome queued, anything unexpected handed over. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#include "_contract.h"
#include "_lane.h"
#include "_speedups_core.h"

/* Relay data[0:upto] to the client: the bytes object itself when it is all of it. */
static int relay(Lane *self, PyObject *data, Py_ssize_t upto) {
    if (upto <= 0) return 0;
    PyObject *chunk;
    if (upto == PyBytes_GET_SIZE(data)) {
        chunk = data;
        Py_INCREF(chunk);
    } else {
        chunk = PyBytes_FromStringAndSize(PyBytes_AS_STRING(data), upto);
        if (chunk == NULL) return -1;
    }
    PyObject *result = PyObject_CallOneArg(self->client_write, chunk);
    Py_DECREF(chunk);
    if (result == NULL) return -1;
    Py_DECREF(result);
    return 0;
}

static PyObject *tail(PyObject *data, Py_ssize_t from) {
    return PyBytes_FromStringAndSize(PyBytes_AS_STRING(data) + from,
                                     PyBytes_GET_SIZE(data) - from);
}

PyObject *lane_upstream_data(Lane *self, PyObject *data) {
    if (!PyBytes_Check(data)) {
        PyErr_SetString(PyExc_TypeError, "upstream data must be bytes");
        return NULL;
    }
    if (self->state != LANE_FLIGHT) {
        int holding = self->state == LANE_HOLD;
        if (lane_slow(self, self->slow_upstream, data) < 0) return NULL;
        /* Something came while a statement waits for its entry (a notification, a
         * setting reported after a configuration reload): the relay's view may have
         * changed, so its own answer decides, not the one it gave at the start. */
        if (holding) self->quiet_when_idle = 0;
        Py_RETURN_NONE;
    }
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(data);
    Py_ssize_t n = PyBytes_GET_SIZE(data), pos = 0;
    while (n - pos >= 5) {
        unsigned char kind = d[pos];
        uint32_t length = be32(d + pos + 1);
        if (length < 4 || (Py_ssize_t)length > n - pos - 1) break; /* Python reads the rest */
        Py_ssize_t end = pos + 1 + (Py_ssize_t)length;
        if (self->decision != NULL) { /* the extended shape's answers, in order */
            if ((kind == '1' && self->answered == 0) || (kind == '2' && self->answered == 1) ||
                ((kind == 'T' || kind == 'n') && self->answered == 2 && self->described)) {
                self->answered++;
                pos = end;
                continue;
            }
            if (self->answered != 2 + self->described) break;
            if (kind == 'D') {
                if (self->tag != NULL) break;
                pos = end;
                continue;
            }
        } else if (kind == 'T' || kind == 'D') {
            pos = end;
            continue;
        }
        if (kind == 'C') {
            if (self->tag != NULL || d[end - 1] != 0) break;
            Py_ssize_t size = end - 1 - (pos + 5);
            const unsigned char *text = d + pos + 5;
            int plain = 1;
            for (Py_ssize_t i = 0; i < size; i++) {
                if (text[i] < 0x20 || text[i] >= 0x7f) plain = 0;
            }
            /* a count too long for C: the Python relay records it */
            if (!plain || contract_tag_rows((const char *)text, size) == -2) break;
            self->tag = PyUnicode_DecodeASCII((const char *)text, size, NULL);
            if (self->tag == NULL) return NULL;
            self->tag_at = now_ns();
            pos = end;
            continue;
        }
        if (kind == 'Z' && length == 5 && self->tag != NULL) {
            Py_ssize_t tag_size;
            const char *tag = PyUnicode_AsUTF8AndSize(self->tag, &tag_size);
            if (tag == NULL) return NULL;
            long long us = (self->tag_at - self->t0 + 500) / 1000;
            PyObject *entry_data = contract_outcome_data(tag, tag_size, us < 0 ? 0 : us);
            if (entry_data == NULL) return NULL;
            PyObject *ref = PyLong_FromLongLong(self->seq);
            PyObject *item = ref == NULL ? NULL
                                         : PyTuple_Pack(5, contract_outcome_kind, self->session_id, ref,
                                                        entry_data, Py_None);
            Py_XDECREF(ref);
            Py_DECREF(entry_data);
            if (item == NULL || queue_push(self->queue, item) < 0) return NULL;
            Py_CLEAR(self->tag);
            /* the unnamed statement and portal it leaves, told to the relay later */
            Py_XSETREF(self->unnamed, self->decision);
            self->decision = NULL;
            self->state = LANE_IDLE;
            unsigned char status = d[pos + 5];
            if (status != self->relay_txn) { /* the server's status is the truth */
                PyObject *value = PyLong_FromLong(status);
                if (value == NULL || PyObject_SetAttrString(self->conn, "txn", value) < 0) {
                    Py_XDECREF(value);
                    return NULL;
                }
                Py_DECREF(value);
                self->relay_txn = status;
            }
            self->quiet = status == 'I' && self->quiet_when_idle;
            if (relay(self, data, end) < 0) return NULL;
            if (end < n) {
                PyObject *rest = tail(data, end);
                if (rest == NULL) return NULL;
                int failed = lane_slow(self, self->slow_upstream, rest);
                Py_DECREF(rest);
                if (failed) return NULL;
            }
            Py_RETURN_NONE;
        }
        break; /* an error, a notice, a parameter status, ...: Python's */
    }
    /* What was read is relayed as is; Python takes the statement and the rest. */
    if (relay(self, data, pos) < 0) return NULL;
    if (lane_hand_over(self) < 0) return NULL;
    if (pos < n) {
        PyObject *rest = pos ? tail(data, pos) : (Py_INCREF(data), data);
        if (rest == NULL) return NULL;
        int failed = lane_slow(self, self->slow_upstream, rest);
        Py_DECREF(rest);
        if (failed) return NULL;
    }
    Py_RETURN_NONE;
}

