/* The parts of runner._speedups that its two source files share: SHA-256 (from
 * libcrypto when the process has it), a growable byte buffer, JSON string
 * escaping as canonical_json writes it, and the literal-mask scanner.
 * Header-only (static inline): each file gets its own copy. */
#ifndef SIGNOFF_SPEEDUPS_CORE_H
#define SIGNOFF_SPEEDUPS_CORE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <stdint.h>
#include <string.h>

/* ---------------------------------------------------------------- SHA-256 */

typedef struct {
    uint32_t h[8];
    uint64_t length; /* bytes hashed so far */
    uint8_t block[64];
    size_t used;
} Sha256;

static const uint32_t SHA_K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static inline void sha256_compress(uint32_t h[8], const uint8_t *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++) {
        w[i] = ((uint32_t)p[4 * i] << 24) | ((uint32_t)p[4 * i + 1] << 16) |
               ((uint32_t)p[4 * i + 2] << 8) | (uint32_t)p[4 * i + 3];
    }
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROTR(w[i - 15], 7) ^ ROTR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROTR(w[i - 2], 17) ^ ROTR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = k + (ROTR(e, 6) ^ ROTR(e, 11) ^ ROTR(e, 25)) + ((e & f) ^ (~e & g)) +
                      SHA_K[i] + w[i];
        uint32_t t2 = (ROTR(a, 2) ^ ROTR(a, 13) ^ ROTR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += k;
}

static inline void sha256_init(Sha256 *s) {
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, iv, sizeof iv);
    s->length = 0;
    s->used = 0;
}

static inline void sha256_update(Sha256 *s, const uint8_t *p, size_t n) {
    s->length += n;
    if (s->used) {
        size_t take = 64 - s->used < n ? 64 - s->used : n;
        memcpy(s->block + s->used, p, take);
        s->used += take;
        p += take;
        n -= take;
        if (s->used < 64) return;
        sha256_compress(s->h, s->block);
        s->used = 0;
    }
    while (n >= 64) {
        sha256_compress(s->h, p);
        p += 64;
        n -= 64;
    }
    memcpy(s->block, p, n);
    s->used = n;
}

static inline void sha256_final(Sha256 *s, uint8_t digest[32]) {
    uint64_t bits = s->length * 8;
    uint8_t pad = 0x80, zero = 0, len[8];
    sha256_update(s, &pad, 1);
    while (s->used != 56) sha256_update(s, &zero, 1);
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)(bits >> (56 - 8 * i));
    sha256_update(s, len, 8);
    for (int i = 0; i < 8; i++) {
        for (int j = 0; j < 4; j++) digest[4 * i + j] = (uint8_t)(s->h[i] >> (24 - 8 * j));
    }
}

/* The same digest from the process's libcrypto when it has one (CPython's hashlib
 * loads it): its assembly uses the CPU's SHA extensions, several times faster
 * than the portable code above, which is the fallback. Through SHA256_Init/
 * Update/Final, not the one-shot SHA256(): in OpenSSL 3 that one looks the
 * algorithm up in the provider on every call, which costs more than hashing a
 * statement. The context lives on the stack (SHA256_CTX is 112 bytes). */
typedef int (*Sha256Init)(void *);
typedef int (*Sha256Update)(void *, const void *, size_t);
typedef int (*Sha256Final)(unsigned char *, void *);
static Sha256Init libcrypto_init = NULL;
static Sha256Update libcrypto_update = NULL;
static Sha256Final libcrypto_final = NULL;
static int libcrypto_looked_up = 0;

static inline void find_libcrypto(void) {
    static const char *names[] = {"libcrypto.so.3", "libcrypto.so.1.1", "libcrypto.so", NULL};
    libcrypto_looked_up = 1;
    for (int i = 0; names[i] != NULL; i++) {
        void *handle = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (handle == NULL) continue;
        libcrypto_init = (Sha256Init)dlsym(handle, "SHA256_Init");
        libcrypto_update = (Sha256Update)dlsym(handle, "SHA256_Update");
        libcrypto_final = (Sha256Final)dlsym(handle, "SHA256_Final");
        if (libcrypto_init != NULL && libcrypto_update != NULL && libcrypto_final != NULL) return;
        libcrypto_init = NULL;
        dlclose(handle);
    }
}

static inline void digest_hex(const uint8_t *data, size_t size, int portable, char out[64]) {
    static const char hex[] = "0123456789abcdef";
    uint8_t digest[32];
    if (!libcrypto_looked_up) find_libcrypto();
    _Alignas(16) unsigned char context[256];
    if (libcrypto_init != NULL && !portable && libcrypto_init(context) == 1 &&
        libcrypto_update(context, data, size) == 1 && libcrypto_final(digest, context) == 1) {
        /* done */
    } else {
        Sha256 sha;
        sha256_init(&sha);
        sha256_update(&sha, data, size);
        sha256_final(&sha, digest);
    }
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 15];
    }
}

/* ------------------------------------------------------------ byte buffer */

typedef struct {
    char *data;
    size_t size;
    size_t capacity;
} Buffer;

static inline int buffer_reserve(Buffer *b, size_t extra) {
    if (b->size + extra <= b->capacity) return 0;
    size_t capacity = b->capacity ? b->capacity : 1024;
    while (capacity < b->size + extra) capacity *= 2;
    char *data = PyMem_Realloc(b->data, capacity);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->capacity = capacity;
    return 0;
}

static inline int buffer_add(Buffer *b, const char *p, size_t n) {
    if (buffer_reserve(b, n) < 0) return -1;
    memcpy(b->data + b->size, p, n);
    b->size += n;
    return 0;
}

#define ADD_LITERAL(b, text) buffer_add((b), (text), sizeof(text) - 1)

/* json.dumps(text, ensure_ascii=False): only '"', '\\' and control characters
 * are escaped (Python's encode_basestring). */
static inline int buffer_add_json_string(Buffer *b, const char *p, Py_ssize_t n) {
    static const char hex[] = "0123456789abcdef";
    if (ADD_LITERAL(b, "\"") < 0) return -1;
    Py_ssize_t run = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        if (buffer_add(b, p + run, (size_t)(i - run)) < 0) return -1;
        run = i + 1;
        char escaped[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        const char *out = escaped;
        size_t size = 6;
        switch (c) {
            case '"': out = "\\\""; size = 2; break;
            case '\\': out = "\\\\"; size = 2; break;
            case '\n': out = "\\n"; size = 2; break;
            case '\r': out = "\\r"; size = 2; break;
            case '\t': out = "\\t"; size = 2; break;
            case '\b': out = "\\b"; size = 2; break;
            case '\f': out = "\\f"; size = 2; break;
            default: break;
        }
        if (buffer_add(b, out, size) < 0) return -1;
    }
    if (buffer_add(b, p + run, (size_t)(n - run)) < 0) return -1;
    return ADD_LITERAL(b, "\"");
}

/* ---------------------------------------------------------- literal_shape */

static inline int is_space(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static inline int is_ident_start(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

/* '$' is a PostgreSQL identifier character too, but sqlglot may read a word
 * with one as the start of a dollar quote: such text is left to sqlglot. */
static inline int is_ident_char(unsigned char c) {
    return is_ident_start(c) || (c >= '0' && c <= '9');
}

static inline int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* The literal mask of s[0:n] into ``mask`` (the caller frees it) and the span of
 * its one statement: 1 when the text is plainly one statement, 0 when the real
 * tokenizer must read it, -1 on a memory error (an exception is set). ASCII
 * callers only: the Python wrapper and the lane check that first. */
static inline int shape_scan(const unsigned char *s, Py_ssize_t n, Buffer *mask,
                             Py_ssize_t *start_out, Py_ssize_t *end_out) {
    if (buffer_reserve(mask, (size_t)n + 1) < 0) return -1;
    Py_ssize_t start = -1;     /* first character of the statement */
    Py_ssize_t end = -1;       /* just after its last token */
    int terminated = 0;        /* a ';' was seen: only whitespace may follow */
    int strings = 0, params = 0; /* sqlglot misreads some texts with both: not plain */
    Py_ssize_t i = 0, run = 0; /* s[run:i] is copied verbatim when a literal starts */
    while (i < n) {
        unsigned char c = s[i];
        if (is_space(c)) {
            i++;
            continue;
        }
        if (terminated) return 0; /* a second statement (or a stray token) */
        if (c < 0x20 || c == 0x7f) return 0;
        if (start < 0) start = i;
        if (c == ';') {
            terminated = 1;
            i++;
            continue;
        }
        if ((c == '-' && i + 1 < n && s[i + 1] == '-') || (c == '/' && i + 1 < n && s[i + 1] == '*')) {
            return 0; /* a comment may hold a signoff directive */
        }
        if (c == '\'') {
            if (i > 0 && (is_ident_char(s[i - 1]) || s[i - 1] == '&')) return 0; /* E'', U&'' */
            Py_ssize_t j = i + 1;
            for (;;) {
                if (j >= n) return 0; /* unterminated */
                if (s[j] == '\\') return 0; /* meaning depends on standard_conforming_strings */
                if (s[j] == '\'') {
                    if (j + 1 < n && s[j + 1] == '\'') {
                        j += 2;
                        continue;
                    }
                    break;
                }
                j++;
            }
            j++; /* past the closing quote */
            /* 'a' 'b' continues a string only across a newline; a quote right after
             * a string is its own token in sqlglot too, but keep it simple. */
            if (j < n && (s[j] == '\'' || is_ident_char(s[j]))) return 0;
            if (buffer_add(mask, (const char *)s + run, (size_t)(i - run)) < 0) return -1;
            if (ADD_LITERAL(mask, "?") < 0) return -1;
            i = run = end = j;
            strings = 1;
            continue;
        }
        if (c == '"') {
            if (i > 0 && (is_ident_char(s[i - 1]) || s[i - 1] == '&')) return 0; /* U&"" */
            Py_ssize_t j = i + 1;
            for (;;) {
                if (j >= n) return 0;
                if (s[j] == '"') {
                    if (j + 1 < n && s[j + 1] == '"') {
                        j += 2;
                        continue;
                    }
                    break;
                }
                j++;
            }
            i = end = j + 1;
            continue;
        }
        if (c == '$') {
            if (i + 1 < n && is_digit(s[i + 1]) && !(i > 0 && is_ident_char(s[i - 1]))) {
                Py_ssize_t j = i + 1;
                while (j < n && is_digit(s[j])) j++;
                if (j < n && (is_ident_char(s[j]) || s[j] == '.')) return 0;
                if (buffer_add(mask, (const char *)s + run, (size_t)(i - run)) < 0) return -1;
                if (ADD_LITERAL(mask, "?") < 0) return -1;
                i = run = end = j;
                params = 1;
                continue;
            }
            return 0; /* a dollar quote */
        }
        if (is_digit(c)) {
            Py_ssize_t j = i;
            while (j < n && is_digit(s[j])) j++;
            if (j < n && s[j] == '.') {
                if (!(j + 1 < n && is_digit(s[j + 1]))) return 0; /* "1." */
                j++;
                while (j < n && is_digit(s[j])) j++;
            }
            if (j < n && (s[j] == 'e' || s[j] == 'E')) {
                Py_ssize_t k = j + 1;
                if (k < n && (s[k] == '+' || s[k] == '-')) k++;
                if (!(k < n && is_digit(s[k]))) return 0;
                while (k < n && is_digit(s[k])) k++;
                j = k;
            }
            /* 1_000, 0x1F, 1.5.2, 12abc: let the real tokenizer decide */
            if (j < n && (is_ident_char(s[j]) || s[j] == '.' || s[j] == '\'' || s[j] == '"')) {
                return 0;
            }
            if (buffer_add(mask, (const char *)s + run, (size_t)(i - run)) < 0) return -1;
            if (ADD_LITERAL(mask, "?") < 0) return -1;
            i = run = end = j;
            continue;
        }
        if (is_ident_start(c)) {
            Py_ssize_t j = i + 1;
            while (j < n && is_ident_char(s[j])) j++;
            if (j < n && (s[j] == '\'' || s[j] == '"' || s[j] == '&')) return 0; /* E'', U& */
            i = end = j;
            continue;
        }
        if (c == '.' && i + 1 < n && is_digit(s[i + 1])) return 0; /* ".5" */
        /* operators and punctuation: verbatim, one character; anything unusual
         * (a backslash, a backtick, braces) is left to the real tokenizer */
        if (strchr("(),.:+-*/<>=!~^|%[]", c) == NULL) return 0;
        i = end = i + 1;
    }
    if (start < 0 || end <= start) return 0;
    /* sqlglot cannot tokenize "SELECT $1 = ''" (a $n, then a string at the end):
     * such a text must get the full analysis (unanalysable), not a cached answer */
    if (strings && params) return 0;
    if (buffer_add(mask, (const char *)s + run, (size_t)(n - run)) < 0) return -1;
    *start_out = start;
    *end_out = end;
    return 1;
}

#endif
