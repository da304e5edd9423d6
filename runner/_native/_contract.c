/* The values the C code must agree on with Python, handed over by Python once
 * (configure), and the readers that use them. See _contract.h. */
#include "_contract.h"

#include <stdint.h>
#include <string.h>

#include "_speedups_core.h"

/* Fixed room: the contract is a handful of short words and two small layouts, and
 * configure() refuses anything larger, so nothing here is allocated or freed. */
#define WORDS_MAX 16
#define WORD_SIZE 64
#define PIECES_MAX 16
#define PIECE_SIZE 256

typedef struct {
    char text[WORD_SIZE];
    size_t size;
} Word;

typedef struct {
    Word items[WORDS_MAX];
    int count;
} WordList;

/* A JSON layout: literal text and slots, in order. */
enum {
    SLOT_NONE = 0,   /* literal text only */
    SLOT_DURATION,   /* duration_ms: round(us / 1000, 3) as Python's repr writes it */
    SLOT_TAG,        /* the CommandComplete tag, a JSON string */
    SLOT_ROWS,       /* the tag's row count, or null */
    SLOT_SHA256,     /* 64 hex digits, bare */
    SLOT_TEXT,       /* the statement's text, a JSON string */
    SLOT_DATA,       /* an entry's data: its canonical JSON text, as it is */
    SLOT_KIND,       /* an entry's kind, a JSON string */
    SLOT_PREV_HASH,  /* the previous entry's hash: 64 hex digits, bare */
    SLOT_REF,        /* an integer, or null */
    SLOT_SEQ,        /* an integer */
    SLOT_SESSION_ID, /* a JSON string, or null */
    SLOT_TS,         /* the append's stamp, a JSON string */
    SLOT_HASH,       /* the entry's hash: 64 hex digits, bare */
};

static const char *const SLOT_NAMES[] = {
    "",     "duration_ms", "tag", "rows", "sha256",     "text", "data",
    "kind", "prev_hash",   "ref", "seq",  "session_id", "ts",   "hash",
};

typedef struct {
    char text[PIECE_SIZE]; /* literal text before the slot */
    size_t size;
    int slot; /* SLOT_NONE on the last piece */
} Piece;

typedef struct {
    Piece items[PIECES_MAX];
    int count;
} Layout;

static int configured = 0;
PyObject *contract_statement_kind = NULL;
PyObject *contract_outcome_kind = NULL;
static WordList guard_words;  /* policy.LITERAL_GUARD_WORDS */
static WordList row_commands; /* the commands whose tag ends with a row count */
static Layout outcome_layout; /* outcome_data_json of a completed statement */
static Layout statement_tail; /* statement_data_json after statement_data_prefix */
static Layout chain_hashed;   /* what an entry's hash is taken over (audit.chain) */
static Layout chain_line;     /* an entry's journal line, its newline included */

int contract_ready(void) {
    if (configured) return 1;
    PyErr_SetString(PyExc_RuntimeError,
                    "runner._native._speedups is not configured: import it through "
                    "runner._native.loader, which hands it Python's values");
    return 0;
}

/* ------------------------------------------------------------- configure */

static int read_words(PyObject *words, const char *what, int lower, WordList *out) {
    if (!PyTuple_Check(words) || PyTuple_GET_SIZE(words) == 0 ||
        PyTuple_GET_SIZE(words) > WORDS_MAX) {
        PyErr_Format(PyExc_ValueError, "%s: a tuple of 1 to %d words", what, WORDS_MAX);
        return -1;
    }
    WordList list = {.count = 0};
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(words); i++) {
        PyObject *word = PyTuple_GET_ITEM(words, i);
        Py_ssize_t size;
        const char *text = PyUnicode_Check(word) && PyUnicode_IS_ASCII(word)
                               ? PyUnicode_AsUTF8AndSize(word, &size)
                               : NULL;
        if (text == NULL || size == 0 || size >= WORD_SIZE) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "%s: each word is 1 to %d ASCII characters", what,
                         WORD_SIZE - 1);
            return -1;
        }
        for (Py_ssize_t k = 0; k < size; k++) {
            /* the lane folds A-Z only: a word with a capital would never match */
            if ((lower && text[k] >= 'A' && text[k] <= 'Z') || text[k] == ' ' ||
                (unsigned char)text[k] < 0x20) {
                PyErr_Format(PyExc_ValueError,
                             "%s: %R must be lower-case printable ASCII with no space", what,
                             word);
                return -1;
            }
        }
        memcpy(list.items[list.count].text, text, (size_t)size);
        list.items[list.count].size = (size_t)size;
        list.count++;
    }
    *out = list;
    return 0;
}

/* (literal, slot name, literal, ..., literal): slot names from ``allowed``. */
static int read_layout(PyObject *layout, const char *what, const int *allowed, Layout *out) {
    Py_ssize_t count = PyTuple_Check(layout) ? PyTuple_GET_SIZE(layout) : 0;
    if (count % 2 == 0 || (count + 1) / 2 > PIECES_MAX) {
        PyErr_Format(PyExc_ValueError,
                     "%s: a tuple (literal, slot, literal, ..., literal) of at most %d literals",
                     what, PIECES_MAX);
        return -1;
    }
    Layout result = {.count = 0};
    for (Py_ssize_t i = 0; i < count; i += 2) {
        Py_ssize_t size;
        PyObject *literal = PyTuple_GET_ITEM(layout, i);
        const char *text = PyUnicode_Check(literal) ? PyUnicode_AsUTF8AndSize(literal, &size) : NULL;
        if (text == NULL || size >= PIECE_SIZE) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "%s: literals are str of under %d bytes", what,
                         PIECE_SIZE);
            return -1;
        }
        Piece *piece = &result.items[result.count++];
        memcpy(piece->text, text, (size_t)size);
        piece->size = (size_t)size;
        piece->slot = SLOT_NONE;
        if (i + 1 == count) break;
        PyObject *name = PyTuple_GET_ITEM(layout, i + 1);
        for (int k = 0; allowed[k] != SLOT_NONE; k++) {
            if (PyUnicode_Check(name) && PyUnicode_CompareWithASCIIString(name, SLOT_NAMES[allowed[k]]) == 0) {
                piece->slot = allowed[k];
            }
        }
        if (piece->slot == SLOT_NONE) {
            PyErr_Format(PyExc_ValueError, "%s: unknown slot %R", what, name);
            return -1;
        }
    }
    *out = result;
    return 0;
}

/* configure(guard_words, row_commands, outcome_layout, statement_tail, chain_hashed,
 *           chain_line, statement_kind, outcome_kind): once. */
static PyObject *configure(PyObject *module, PyObject *args) {
    (void)module;
    static const int outcome_slots[] = {SLOT_DURATION, SLOT_TAG, SLOT_ROWS, SLOT_NONE};
    static const int statement_slots[] = {SLOT_SHA256, SLOT_TEXT, SLOT_NONE};
    static const int hashed_slots[] = {SLOT_DATA, SLOT_KIND,       SLOT_PREV_HASH, SLOT_REF,
                                       SLOT_SEQ,  SLOT_SESSION_ID, SLOT_TS,        SLOT_NONE};
    static const int line_slots[] = {SLOT_DATA,       SLOT_KIND, SLOT_PREV_HASH, SLOT_REF, SLOT_SEQ,
                                     SLOT_SESSION_ID, SLOT_TS,   SLOT_HASH,      SLOT_NONE};
    PyObject *guard, *rows, *outcome, *statement, *hashed, *line, *statement_kind, *outcome_kind;
    if (!PyArg_ParseTuple(args, "O!O!O!O!O!O!O!O!:configure", &PyTuple_Type, &guard,
                          &PyTuple_Type, &rows, &PyTuple_Type, &outcome, &PyTuple_Type,
                          &statement, &PyTuple_Type, &hashed, &PyTuple_Type, &line,
                          &PyUnicode_Type, &statement_kind, &PyUnicode_Type, &outcome_kind)) {
        return NULL;
    }
    if (configured) { /* lanes may be running on what was handed over */
        PyErr_SetString(PyExc_RuntimeError, "runner._native._speedups is configured once");
        return NULL;
    }
    if (read_words(guard, "guard_words", 1, &guard_words) < 0 ||
        read_words(rows, "row_commands", 0, &row_commands) < 0 ||
        read_layout(outcome, "outcome_layout", outcome_slots, &outcome_layout) < 0 ||
        read_layout(statement, "statement_tail", statement_slots, &statement_tail) < 0 ||
        read_layout(hashed, "chain_hashed", hashed_slots, &chain_hashed) < 0 ||
        read_layout(line, "chain_line", line_slots, &chain_line) < 0) {
        return NULL;
    }
    Py_INCREF(statement_kind); /* kept for good: lanes put them in every entry */
    Py_INCREF(outcome_kind);
    contract_statement_kind = statement_kind;
    contract_outcome_kind = outcome_kind;
    configured = 1;
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------- the readers */

int contract_literal_guard(const unsigned char *s, Py_ssize_t n) {
    for (int w = 0; w < guard_words.count; w++) {
        const Word *word = &guard_words.items[w];
        Py_ssize_t size = (Py_ssize_t)word->size;
        for (Py_ssize_t i = 0; i + size <= n; i++) {
            Py_ssize_t k = 0;
            while (k < size) {
                unsigned char c = s[i + k];
                if (c >= 'A' && c <= 'Z') c = (unsigned char)(c + 32);
                if (c != (unsigned char)word->text[k]) break;
                k++;
            }
            if (k == size) return 1;
        }
    }
    return 0;
}

/* The rule is wire._rows_from_tag's: the number after the last space, when the
 * first word is one of the commands that report rows. */
long long contract_tag_rows(const char *tag, Py_ssize_t n) {
    Py_ssize_t first = -1, last = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (tag[i] == ' ') {
            if (first < 0) first = i;
            last = i;
        }
    }
    if (last <= 0) return -1;
    int known = 0;
    for (int i = 0; i < row_commands.count; i++) {
        const Word *command = &row_commands.items[i];
        if ((Py_ssize_t)command->size == first && memcmp(tag, command->text, command->size) == 0) {
            known = 1;
            break;
        }
    }
    if (!known || last + 1 >= n) return -1;
    for (Py_ssize_t i = last + 1; i < n; i++) {
        if (tag[i] < '0' || tag[i] > '9') return -1;
    }
    if (n - last - 1 > 18) return -2; /* a long long holds every 18-digit count */
    long long rows = 0;
    for (Py_ssize_t i = last + 1; i < n; i++) rows = rows * 10 + (tag[i] - '0');
    return rows;
}

/* A duration in whole microseconds as canonical_json writes round(ms, 3): the
 * shortest repr of the double nearest us/1000, which is that decimal with its
 * trailing zeros dropped ("12.34", "0.001", "3.0"). */
static int add_duration(Buffer *b, long long us) {
    char number[48];
    long long whole = us / 1000, frac = us % 1000;
    int n;
    if (frac == 0) {
        n = snprintf(number, sizeof number, "%lld.0", whole);
    } else {
        n = snprintf(number, sizeof number, "%lld.%03lld", whole, frac);
        while (number[n - 1] == '0') n--;
    }
    return buffer_add(b, number, (size_t)n);
}

typedef struct {
    long long us;
    const char *tag;
    Py_ssize_t tag_size;
    long long rows; /* < 0: null */
    const char *sha256;
    const unsigned char *text;
    Py_ssize_t text_size;
    /* an audit entry */
    const char *data, *kind, *session_id, *ts; /* session_id NULL: null */
    Py_ssize_t data_size, kind_size, session_id_size, ts_size;
    const char *prev_hash, *hash;
    long long ref, seq;
    int has_ref;
} SlotValues;

static int add_integer(Buffer *b, long long value) {
    char number[32];
    int n = snprintf(number, sizeof number, "%lld", value);
    return buffer_add(b, number, (size_t)n);
}

static int render(Buffer *b, const Layout *layout, const SlotValues *v) {
    for (int i = 0; i < layout->count; i++) {
        const Piece *piece = &layout->items[i];
        if (buffer_add(b, piece->text, piece->size) < 0) return -1;
        int failed = 0;
        switch (piece->slot) {
            case SLOT_DURATION: failed = add_duration(b, v->us); break;
            case SLOT_TAG: failed = buffer_add_json_string(b, v->tag, v->tag_size); break;
            case SLOT_ROWS:
                failed = v->rows < 0 ? ADD_LITERAL(b, "null") : add_integer(b, v->rows);
                break;
            case SLOT_SHA256: failed = buffer_add(b, v->sha256, 64); break;
            case SLOT_TEXT:
                failed = buffer_add_json_string(b, (const char *)v->text, v->text_size);
                break;
            case SLOT_DATA: failed = buffer_add(b, v->data, (size_t)v->data_size); break;
            case SLOT_KIND: failed = buffer_add_json_string(b, v->kind, v->kind_size); break;
            case SLOT_PREV_HASH: failed = buffer_add(b, v->prev_hash, 64); break;
            case SLOT_REF: failed = v->has_ref ? add_integer(b, v->ref) : ADD_LITERAL(b, "null"); break;
            case SLOT_SEQ: failed = add_integer(b, v->seq); break;
            case SLOT_SESSION_ID:
                failed = v->session_id == NULL
                             ? ADD_LITERAL(b, "null")
                             : buffer_add_json_string(b, v->session_id, v->session_id_size);
                break;
            case SLOT_TS: failed = buffer_add_json_string(b, v->ts, v->ts_size); break;
            case SLOT_HASH: failed = buffer_add(b, v->hash, 64); break;
            default: break;
        }
        if (failed < 0) return -1;
    }
    return 0;
}

static PyObject *render_text(const Layout *layout, const SlotValues *v, PyObject *prefix) {
    Buffer b = {NULL, 0, 0};
    PyObject *data = NULL;
    if (prefix != NULL) {
        Py_ssize_t size;
        const char *head = PyUnicode_AsUTF8AndSize(prefix, &size);
        if (head == NULL || buffer_reserve(&b, (size_t)(size + v->text_size) + 128) < 0 ||
            buffer_add(&b, head, (size_t)size) < 0) {
            goto done;
        }
    }
    if (render(&b, layout, v) < 0) goto done;
    data = PyUnicode_DecodeUTF8(b.data, (Py_ssize_t)b.size, NULL);
done:
    PyMem_Free(b.data);
    return data;
}

PyObject *contract_outcome_data(const char *tag, Py_ssize_t size, long long us) {
    if (!contract_ready()) return NULL;
    SlotValues v = {.us = us, .tag = tag, .tag_size = size, .rows = contract_tag_rows(tag, size)};
    if (v.rows == -2) {
        PyErr_SetString(PyExc_OverflowError, "row count too long");
        return NULL;
    }
    return render_text(&outcome_layout, &v, NULL);
}

PyObject *contract_statement_data(PyObject *prefix, const unsigned char *text, Py_ssize_t size) {
    if (!contract_ready()) return NULL;
    char digest[64];
    digest_hex(text, (size_t)size, 0, digest);
    SlotValues v = {.sha256 = digest, .text = text, .text_size = size};
    return render_text(&statement_tail, &v, prefix);
}

int contract_chain_into(Buffer *out, PyObject *prepared, long long seq, char prev[64],
                        const char *ts, Py_ssize_t ts_size) {
    if (!contract_ready()) return -1;
    Buffer hashed = {NULL, 0, 0};
    Py_ssize_t count = PyList_GET_SIZE(prepared);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PyList_GET_ITEM(prepared, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) < 4) {
            PyErr_SetString(PyExc_TypeError, "prepared entries must be tuples");
            goto fail;
        }
        PyObject *kind = PyTuple_GET_ITEM(item, 0);
        PyObject *session = PyTuple_GET_ITEM(item, 1);
        PyObject *ref = PyTuple_GET_ITEM(item, 2);
        SlotValues v = {.prev_hash = prev, .ts = ts, .ts_size = ts_size, .seq = ++seq};
        v.kind = PyUnicode_AsUTF8AndSize(kind, &v.kind_size);
        v.data = v.kind ? PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(item, 3), &v.data_size) : NULL;
        if (v.data == NULL) goto fail;
        if (session != Py_None) {
            v.session_id = PyUnicode_AsUTF8AndSize(session, &v.session_id_size);
            if (v.session_id == NULL) goto fail;
        }
        if (ref != Py_None) {
            v.has_ref = 1;
            v.ref = PyLong_AsLongLong(ref);
            if (v.ref == -1 && PyErr_Occurred()) goto fail;
        }
        char digest[64];
        hashed.size = 0;
        if (render(&hashed, &chain_hashed, &v) < 0) goto fail;
        digest_hex((const uint8_t *)hashed.data, hashed.size, 0, digest);
        v.hash = digest;
        if (render(out, &chain_line, &v) < 0) goto fail;
        memcpy(prev, digest, 64);
    }
    PyMem_Free(hashed.data);
    return 0;
fail:
    PyMem_Free(hashed.data);
    return -1;
}

static uint32_t be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

int contract_query_key(const unsigned char *d, Py_ssize_t n, PyObject **key, Py_ssize_t *start,
                       Py_ssize_t *end) {
    if (!contract_ready()) return -1;
    if (n < 6 || d[0] != 'Q' || (Py_ssize_t)be32(d + 1) + 1 != n || d[n - 1] != 0) return 0;
    const unsigned char *body = d + 5;
    Py_ssize_t size = n - 6;
    for (Py_ssize_t i = 0; i < size; i++) {
        if (body[i] >= 0x80) return 0; /* decoded by the client encoding: Python's */
    }
    /* policy.needs_literal_guard: decided statement by statement, never cached */
    if (contract_literal_guard(body, size)) return 0;
    Buffer mask = {NULL, 0, 0};
    int plain = shape_scan(body, size, &mask, start, end);
    if (plain <= 0) {
        PyMem_Free(mask.data);
        return plain;
    }
    *key = PyUnicode_DecodeASCII(mask.data, (Py_ssize_t)mask.size, NULL);
    PyMem_Free(mask.data);
    if (*key == NULL) return -1;
    *start += 5;
    *end += 5;
    return 1;
}

/* One message of ``kind`` at d[pos:n]: its end, or -1 when it is not there whole. */
static Py_ssize_t message_end(const unsigned char *d, Py_ssize_t n, Py_ssize_t pos,
                              unsigned char kind) {
    if (n - pos < 5 || d[pos] != kind) return -1;
    uint32_t length = be32(d + pos + 1);
    if (length < 4 || (Py_ssize_t)length > n - pos - 1) return -1;
    return pos + 1 + (Py_ssize_t)length;
}

int contract_one_shot_shape(const unsigned char *d, Py_ssize_t n, OneShot *shape) {
    /* Parse: name "", the text, the parameter types and nothing after them */
    Py_ssize_t end = message_end(d, n, 0, 'P');
    if (end < 9 || d[5] != 0) return 0; /* at least two NULs and the type count */
    const unsigned char *text = d + 6;
    const unsigned char *stop = memchr(text, 0, (size_t)(end - 6));
    if (stop == NULL) return 0;
    Py_ssize_t types_at = stop - d + 1;
    if (end - types_at < 2) return 0;
    int count = (int)(int16_t)((d[types_at] << 8) | d[types_at + 1]);
    if (count < 0 || types_at + 2 + 4 * (Py_ssize_t)count != end) return 0;
    shape->text_at = 6;
    shape->text_size = stop - text;
    /* Bind: portal "" of statement ""; its parameters are the server's to read */
    Py_ssize_t pos = end;
    end = message_end(d, n, pos, 'B');
    if (end < 0 || end - pos < 7 || d[pos + 5] != 0 || d[pos + 6] != 0) return 0;
    /* Describe the portal "" */
    pos = end;
    shape->described = 0;
    end = message_end(d, n, pos, 'D');
    if (end >= 0) {
        if (end - pos != 7 || d[pos + 5] != 'P' || d[pos + 6] != 0) return 0;
        shape->described = 1;
        pos = end;
    }
    /* Execute portal "" with no row limit, then Sync, then nothing */
    shape->execute_at = pos;
    end = message_end(d, n, pos, 'E');
    if (end < 0 || end - pos != 10 || d[pos + 5] != 0 || be32(d + pos + 6) != 0) return 0;
    shape->execute_end = end;
    end = message_end(d, n, end, 'S');
    return end == n && end - shape->execute_end == 5;
}

/* ------------------------------------------- the test entry points (Python twins) */

/* _one_shot_shape(data) -> (text_at, text_size, described, execute_at, execute_end) | None */
static PyObject *one_shot_shape_py(PyObject *module, PyObject *arg) {
    (void)module;
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "_one_shot_shape takes bytes");
        return NULL;
    }
    OneShot s;
    if (!contract_one_shot_shape((const unsigned char *)PyBytes_AS_STRING(arg),
                                 PyBytes_GET_SIZE(arg), &s)) {
        Py_RETURN_NONE;
    }
    return Py_BuildValue("(nnOnn)", s.text_at, s.text_size, s.described ? Py_True : Py_False,
                         s.execute_at, s.execute_end);
}

/* _query_key(message) -> (literal mask, start, end) | None: what the lane looks up. */
static PyObject *query_key_py(PyObject *module, PyObject *arg) {
    (void)module;
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "_query_key takes bytes");
        return NULL;
    }
    PyObject *key = NULL;
    Py_ssize_t start, end;
    int found = contract_query_key((const unsigned char *)PyBytes_AS_STRING(arg),
                                   PyBytes_GET_SIZE(arg), &key, &start, &end);
    if (found < 0) return NULL;
    if (found == 0) Py_RETURN_NONE;
    return Py_BuildValue("(Nnn)", key, start, end);
}

/* _literal_guard(text) -> bool */
static PyObject *literal_guard_py(PyObject *module, PyObject *arg) {
    (void)module;
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "_literal_guard takes bytes");
        return NULL;
    }
    if (!contract_ready()) return NULL;
    return PyBool_FromLong(contract_literal_guard((const unsigned char *)PyBytes_AS_STRING(arg),
                                                  PyBytes_GET_SIZE(arg)));
}

/* _tag_rows(tag) -> int | None (OverflowError past 18 digits) */
static PyObject *tag_rows_py(PyObject *module, PyObject *arg) {
    (void)module;
    Py_ssize_t size;
    const char *tag = PyUnicode_Check(arg) ? PyUnicode_AsUTF8AndSize(arg, &size) : NULL;
    if (tag == NULL) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "_tag_rows takes a str");
        return NULL;
    }
    if (!contract_ready()) return NULL;
    long long rows = contract_tag_rows(tag, size);
    if (rows == -2) {
        PyErr_SetString(PyExc_OverflowError, "row count too long");
        return NULL;
    }
    if (rows < 0) Py_RETURN_NONE;
    return PyLong_FromLongLong(rows);
}

/* outcome_data(tag, duration_us) -> str */
static PyObject *outcome_data_py(PyObject *module, PyObject *args) {
    (void)module;
    const char *tag;
    Py_ssize_t size;
    long long us;
    if (!PyArg_ParseTuple(args, "s#L", &tag, &size, &us)) return NULL;
    return contract_outcome_data(tag, size, us);
}

/* _statement_data(prefix, text) -> str */
static PyObject *statement_data_py(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *prefix;
    const char *text;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "Uy#", &prefix, &text, &size)) return NULL;
    return contract_statement_data(prefix, (const unsigned char *)text, size);
}

static PyMethodDef contract_methods[] = {
    {"configure", configure, METH_VARARGS,
     "configure(guard_words, row_commands, outcome_layout, statement_tail, chain_hashed, "
     "chain_line, statement_kind, outcome_kind): Python's values, once"},
    {"outcome_data", outcome_data_py, METH_VARARGS,
     "outcome_data(tag, duration_us) -> a completed statement's outcome data, as the lane "
     "writes it"},
    {"_statement_data", statement_data_py, METH_VARARGS,
     "_statement_data(prefix, text) -> the statement data the lane writes for text"},
    {"_one_shot_shape", one_shot_shape_py, METH_O,
     "_one_shot_shape(data) -> (text_at, text_size, described, execute_at, execute_end) | None"},
    {"_query_key", query_key_py, METH_O,
     "_query_key(message) -> (literal mask, start, end) the lane looks up, or None"},
    {"_literal_guard", literal_guard_py, METH_O,
     "_literal_guard(text) -> whether the text holds a guard word"},
    {"_tag_rows", tag_rows_py, METH_O, "_tag_rows(tag) -> the rows the tag reports, or None"},
    {NULL, NULL, 0, NULL},
};

int contract_add_to_module(PyObject *module) {
    return PyModule_AddFunctions(module, contract_methods);
}
