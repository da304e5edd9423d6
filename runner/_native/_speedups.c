/* runner._native._speedups: the gateway's per-statement hot path, in C.
 *
 * Two functions, each with a pure-Python twin that stays the reference (the
 * tests run both on the same inputs and require equal results):
 *
 *   literal_shape(sql: str) -> tuple[str, int, int] | None
 *       The text with each plain literal (a standard '...' string, a decimal
 *       number, a $n parameter) replaced by "?", and the [start, end) span of
 *       the text split_statements would give for it, when the text is one
 *       statement. None when anything is not plainly simple (a comment, a
 *       dollar quote, a prefixed or backslashed string, non-ASCII text, more
 *       than one statement, ...): the caller then tokenizes with sqlglot. It
 *       only ever answers for texts where "same mask" implies "same sqlglot
 *       fingerprint", so the mask is a sound cache key.
 *
 *   chain_lines(prepared: list, last_seq: int, last_hash: str, ts: str)
 *       -> tuple[bytes, str]
 *       The audit journal lines of ``prepared`` (audit.chain's prepared tuples:
 *       kind, session_id, ref, canonical data text, ...) chained after
 *       (last_seq, last_hash), and the last entry's hash: exactly what
 *       audit.chain.chain_rows writes, in the layouts it hands over at configure()
 *       (_contract.c), checked against runner/audit/chain_vectors.json.
 */
#include "_contract.h"
#include "_speedups_core.h"

#include <errno.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------ chain_lines */

static PyObject *chain_lines(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *prepared;
    long long seq;
    const char *prev_in, *ts;
    Py_ssize_t prev_size, ts_size;
    if (!PyArg_ParseTuple(args, "O!Ls#s#", &PyList_Type, &prepared, &seq, &prev_in, &prev_size,
                          &ts, &ts_size)) {
        return NULL;
    }
    if (prev_size != 64) {
        PyErr_SetString(PyExc_ValueError, "last_hash must be 64 hex digits");
        return NULL;
    }
    char prev[64];
    memcpy(prev, prev_in, 64);
    Buffer out = {NULL, 0, 0};
    if (contract_chain_into(&out, prepared, seq, prev, ts, ts_size) < 0) {
        PyMem_Free(out.data);
        return NULL;
    }
    PyObject *lines = PyBytes_FromStringAndSize(out.data ? out.data : "", (Py_ssize_t)out.size);
    PyMem_Free(out.data);
    if (lines == NULL) return NULL;
    PyObject *last = PyUnicode_FromStringAndSize(prev, 64);
    if (last == NULL) {
        Py_DECREF(lines);
        return NULL;
    }
    return Py_BuildValue("(NN)", lines, last);
}

/* ---------------------------------------------------------- journal_append */

/* store._now_rfc3339(): "YYYY-MM-DDTHH:MM:SS.ffffffZ" (UTC). */
static int utc_now(char out[28]) {
    struct timespec now;
    struct tm tm;
    if (clock_gettime(CLOCK_REALTIME, &now) != 0 || gmtime_r(&now.tv_sec, &tm) == NULL) return -1;
    int n = snprintf(out, 28, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (long)(now.tv_nsec / 1000));
    return n == 27 ? 0 : -1;
}

static int lock_file(int fd, int operation) {
    int failed;
    Py_BEGIN_ALLOW_THREADS /* another process may hold it */
    do {
        failed = flock(fd, operation);
    } while (failed != 0 && errno == EINTR);
    Py_END_ALLOW_THREADS
    return failed;
}

/* journal_append(fd, prepared, last_seq, last_hash, known_end, sync)
 *     -> (new_end, last_hash) | None
 * store._Journal's append in one call, for when this process knows where the file
 * ends: under the flock, if the file is still ``known_end`` bytes long, write the
 * chained lines of ``prepared`` (stamped now) and fdatasync them when ``sync``.
 * None when the file's size differs (another process appended, or a torn tail):
 * the caller learns the file again under the lock. OSError when a call fails
 * (whatever reached the file is re-read by the next append, as in Python). */
static PyObject *journal_append(PyObject *module, PyObject *args) {
    (void)module;
    int fd, sync;
    PyObject *prepared;
    long long seq, known_end;
    const char *prev_in;
    Py_ssize_t prev_size;
    if (!PyArg_ParseTuple(args, "iO!Ls#Lp", &fd, &PyList_Type, &prepared, &seq, &prev_in,
                          &prev_size, &known_end, &sync)) {
        return NULL;
    }
    if (prev_size != 64) {
        PyErr_SetString(PyExc_ValueError, "last_hash must be 64 hex digits");
        return NULL;
    }
    if (!contract_ready()) return NULL; /* before the lock: the layouts are Python's */
    char prev[64], ts[28];
    memcpy(prev, prev_in, 64);
    Buffer out = {NULL, 0, 0};
    if (lock_file(fd, LOCK_EX) != 0) return PyErr_SetFromErrno(PyExc_OSError);
    struct stat st;
    if (fstat(fd, &st) != 0) goto os_error;
    if ((long long)st.st_size != known_end) {
        lock_file(fd, LOCK_UN);
        Py_RETURN_NONE;
    }
    if (utc_now(ts) < 0) goto os_error;
    if (contract_chain_into(&out, prepared, seq, prev, ts, 27) < 0) {
        lock_file(fd, LOCK_UN);
        PyMem_Free(out.data);
        return NULL;
    }
    size_t done = 0;
    while (done < out.size) {
        ssize_t written = write(fd, out.data + done, out.size - done);
        if (written < 0) {
            if (errno == EINTR) continue;
            goto os_error;
        }
        done += (size_t)written;
    }
    if (sync && fdatasync(fd) != 0) goto os_error;
    if (lock_file(fd, LOCK_UN) != 0) goto os_error_unlocked;
    PyMem_Free(out.data);
    return Py_BuildValue("(Ls#)", known_end + (long long)out.size, prev, (Py_ssize_t)64);
os_error: {
    int saved = errno;
    lock_file(fd, LOCK_UN);
    errno = saved;
}
os_error_unlocked:
    PyMem_Free(out.data);
    return PyErr_SetFromErrno(PyExc_OSError);
}

/* ---------------------------------------------------------- literal_shape */

static PyObject *literal_shape(PyObject *module, PyObject *arg) {
    (void)module;
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "literal_shape takes a str");
        return NULL;
    }
    if (!PyUnicode_IS_ASCII(arg)) Py_RETURN_NONE; /* str.isspace and offsets: ASCII only */
    Buffer mask = {NULL, 0, 0};
    Py_ssize_t start, end;
    int plain = shape_scan((const unsigned char *)PyUnicode_DATA(arg), PyUnicode_GET_LENGTH(arg),
                           &mask, &start, &end);
    if (plain <= 0) {
        PyMem_Free(mask.data);
        if (plain < 0) return NULL;
        Py_RETURN_NONE;
    }
    PyObject *text = PyUnicode_DecodeASCII(mask.data, (Py_ssize_t)mask.size, NULL);
    PyMem_Free(mask.data);
    if (text == NULL) return NULL;
    return Py_BuildValue("(Nnn)", text, start, end);
}

/* sha256_hex(data: bytes, portable: bool = False) -> str: for the tests, which
 * check both implementations against hashlib. */
static PyObject *sha256_hex_py(PyObject *module, PyObject *args) {
    (void)module;
    const char *data;
    Py_ssize_t size;
    int portable = 0;
    if (!PyArg_ParseTuple(args, "y#|p", &data, &size, &portable)) return NULL;
    char out[64];
    digest_hex((const uint8_t *)data, (size_t)size, portable, out);
    return PyUnicode_FromStringAndSize(out, 64);
}

/* ----------------------------------------------------------------- module */

static PyMethodDef methods[] = {
    {"journal_append", journal_append, METH_VARARGS,
     "journal_append(fd, prepared, last_seq, last_hash, known_end, sync) -> (new end, last "
     "hash) | None"},
    {"chain_lines", chain_lines, METH_VARARGS,
     "chain_lines(prepared, last_seq, last_hash, ts) -> (journal lines, last hash)"},
    {"sha256_hex", sha256_hex_py, METH_VARARGS,
     "sha256_hex(data, portable=False) -> hex digest (libcrypto's, or the portable one)"},
    {"literal_shape", literal_shape, METH_O,
     "literal_shape(sql) -> (literal mask, start, end) of one plain statement, or None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "runner._native._speedups", "The gateway's hot path in C.", -1, methods,
    NULL, NULL, NULL, NULL,
};

/* runner/_lane.c: the proxy's fast lane (Lane, AuditQueue, outcome_data). */
int lane_add_to_module(PyObject *module);

PyMODINIT_FUNC PyInit__speedups(void) {
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && lane_add_to_module(m) < 0) Py_CLEAR(m);
    return m;
}
