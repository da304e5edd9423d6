/* The lanes' audit queue (see _audit_queue.h). */

#include <Python.h>
#include <structmember.h>

#include "_audit_queue.h"



static int queue_init(AuditQueue *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"wake", NULL};
    PyObject *wake;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O:AuditQueue", keywords, &wake)) return -1;
    if (!PyCallable_Check(wake)) {
        PyErr_SetString(PyExc_TypeError, "wake must be callable");
        return -1;
    }
    Py_XSETREF(self->items, PyList_New(0));
    if (self->items == NULL) return -1;
    Py_INCREF(wake);
    Py_XSETREF(self->wake, wake);
    self->woken = 0;
    self->closed = 0;
    return 0;
}

static int queue_traverse(AuditQueue *self, visitproc visit, void *arg) {
    Py_VISIT(self->items);
    Py_VISIT(self->wake);
    return 0;
}

static int queue_clear(AuditQueue *self) {
    Py_CLEAR(self->items);
    Py_CLEAR(self->wake);
    return 0;
}

static void queue_dealloc(AuditQueue *self) {
    PyObject_GC_UnTrack(self);
    queue_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

int queue_push(AuditQueue *q, PyObject *item) {
    if (q->items == NULL) {
        Py_DECREF(item);
        PyErr_SetString(PyExc_RuntimeError, "the audit queue is not initialised");
        return -1;
    }
    int failed = PyList_Append(q->items, item);
    Py_DECREF(item);
    if (failed) return -1;
    if (!q->woken) {
        q->woken = 1;
        PyObject *result = PyObject_CallNoArgs(q->wake);
        if (result == NULL) return -1;
        Py_DECREF(result);
    }
    return 0;
}

static PyObject *queue_take(AuditQueue *self, PyObject *unused) {
    (void)unused;
    PyObject *fresh = PyList_New(0);
    if (fresh == NULL) return NULL;
    PyObject *taken = self->items;
    self->items = fresh;
    self->woken = 0;
    return taken;
}

static PyObject *queue_close(AuditQueue *self, PyObject *unused) {
    (void)unused;
    self->closed = 1;
    Py_RETURN_NONE;
}

static Py_ssize_t queue_len(AuditQueue *self) {
    return self->items == NULL ? 0 : PyList_GET_SIZE(self->items);
}

static PyObject *queue_get_closed(AuditQueue *self, void *closure) {
    (void)closure;
    return PyBool_FromLong(self->closed);
}

static PyMethodDef queue_methods[] = {
    {"take", (PyCFunction)queue_take, METH_NOARGS,
     "take() -> the queued items (kind, session_id, ref, data, waiter), emptying the queue"},
    {"deliver", (PyCFunction)audit_queue_deliver, METH_VARARGS,
     "deliver(items, first_seq | None): the held statements among items learn their seqs"},
    {"close", (PyCFunction)queue_close, METH_NOARGS,
     "close(): lanes stop queueing (the Python path reports the closed writer)"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef queue_members[] = {
    {"decided", T_LONGLONG, offsetof(AuditQueue, decided), READONLY,
     "statements the lanes decided from their caches"},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef queue_getset[] = {
    {"closed", (getter)queue_get_closed, NULL, "whether close() was called", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods queue_as_sequence = {.sq_length = (lenfunc)queue_len};

PyTypeObject AuditQueueType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "runner._native._speedups.AuditQueue",
    .tp_basicsize = sizeof(AuditQueue),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The lanes' audit entries of one loop iteration, for the writer's flush.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)queue_init,
    .tp_dealloc = (destructor)queue_dealloc,
    .tp_traverse = (traverseproc)queue_traverse,
    .tp_clear = (inquiry)queue_clear,
    .tp_methods = queue_methods,
    .tp_members = queue_members,
    .tp_getset = queue_getset,
    .tp_as_sequence = &queue_as_sequence,
};


int audit_queue_add_to_module(PyObject *module) {
    if (PyType_Ready(&AuditQueueType) < 0) return -1;
    Py_INCREF(&AuditQueueType);
    if (PyModule_AddObject(module, "AuditQueue", (PyObject *)&AuditQueueType) < 0) {
        Py_DECREF(&AuditQueueType);
        return -1;
    }
    return 0;
}
