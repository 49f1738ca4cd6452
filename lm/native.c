/* CPU kernels for inference at batch sizes of a chat bot (a few sequences, one at a time).
 *
 * Built with the package (setup.py: a plain shared library, loaded by lm/native.py through
 * ctypes, which releases the GIL for each call). Every function is the same arithmetic as the
 * torch or numpy path it replaces, up to float summation order; lm/native.py documents the
 * contract of each. Compiled without -ffast-math: it would change the float mode of the whole
 * process and turn overflowing gates into NaN where torch gives 0 or 1.
 *
 * The GRU kernel is built once per instruction set from native_gru.h (#pragma GCC target), so
 * one binary runs on any x86-64 CPU at its best; cpu_kernels() says which copies this CPU can
 * run. Functions that read symbol ids check them first and return KERNEL_BAD_ID rather than
 * read outside their tables.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

typedef _Float16 half;

#if defined(__GLIBC__) && defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
/* glibc's vector math library (libmvec, linked by setup.py) has expf, logf and log for every
 * vector width, with the scalar functions' handling of overflow, infinities and NaN; math.h
 * declares them only under -ffast-math, which this file must not use. Declared here, gcc
 * vectorises the loops that call them (the gates, the softmaxes, the n-gram, the mixture). */
float expf(float) __attribute__((simd("notinbranch")));
float logf(float) __attribute__((simd("notinbranch")));
double log(double) __attribute__((simd("notinbranch")));
/* The plain-C kernels in one copy per vector width, the best chosen when the library loads
 * (gcc function multiversioning; the GRU kernel has hand-written copies instead). */
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

#define KERNEL_OK 0
#define KERNEL_BAD_ID 1

enum { ISA_GENERIC = 1, ISA_AVX2 = 2, ISA_AVX512 = 4 };

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define HAVE_X86_COPIES 1
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma,f16c")
#define ISA(name) name##_avx512
#define VEC 16
#include "native_gru.h"
#undef ISA
#undef VEC
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#define ISA(name) name##_avx2
#define VEC 8
#include "native_gru.h"
#undef ISA
#undef VEC
#pragma GCC pop_options
#endif

#define ISA(name) name##_generic
#define VEC 0
#include "native_gru.h"
#undef ISA
#undef VEC

/* Which copies of the GRU kernel this CPU can run (ISA_* bits). */
int64_t cpu_kernels(void) {
    int64_t isas = ISA_GENERIC;
#ifdef HAVE_X86_COPIES
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        isas |= ISA_AVX2; /* every AVX2 CPU has F16C, which gcc cannot test by name */
    if (__builtin_cpu_supports("avx512f")) isas |= ISA_AVX512;
#endif
    return isas;
}

/* Whether every id[0..n) lies in [lo, hi). */
static int ids_within(const int64_t *id, int64_t n, int64_t lo, int64_t hi) {
    for (int64_t i = 0; i < n; i++)
        if (id[i] < lo || id[i] >= hi) return 0;
    return 1;
}

/* Single-layer GRU language model, B sequences of T steps, in PyTorch's gate order (r, z, n),
 * with the copy for instruction set `isa` (one ISA_* bit that cpu_kernels() reported).
 *   ids  [B, T]   int64 symbols read, each in [0, V)
 *   gi   [V, 3H]  input projection of every symbol, input bias included (float32)
 *   whh  [H, 3H]  recurrent weights, transposed (float16); bhh [3H] (float32)
 *   wout [H, V]   output weights, transposed (float16); bout [V] (float32)
 *   h    [B, H]   state, updated in place; H a multiple of 4
 *   work [B * 3H + 4 * max(3H, V)] scratch
 *   logp [B, T, V] log-softmax output (float32), or NULL: then hs [B, T, H] receives the
 *                  state after each step instead, for the caller's batched output layer
 * Returns KERNEL_BAD_ID, having changed nothing, when an id is out of range.
 */
int64_t gru_forward(int64_t isa, int64_t B, int64_t T, int64_t H, int64_t V, const int64_t *ids,
                    const float *gi, const half *whh, const float *bhh, const half *wout,
                    const float *bout, float *h, float *work, float *logp, float *hs) {
    if (!ids_within(ids, B * T, 0, V)) return KERNEL_BAD_ID;
#ifdef HAVE_X86_COPIES
    if (isa == ISA_AVX512) {
        gru_forward_avx512(B, T, H, V, ids, gi, whh, bhh, wout, bout, h, work, logp, hs);
        return KERNEL_OK;
    }
    if (isa == ISA_AVX2) {
        gru_forward_avx2(B, T, H, V, ids, gi, whh, bhh, wout, bout, h, work, logp, hs);
        return KERNEL_OK;
    }
#else
    (void)isa; /* only the plain C copy exists here */
#endif
    gru_forward_generic(B, T, H, V, ids, gi, whh, bhh, wout, bout, h, work, logp, hs);
    return KERNEL_OK;
}

/* Slot of `key` in an open-addressing table of 2^bits slots (Fibonacci hashing). */
static inline uint64_t slot_of(int64_t key, int64_t bits) {
    return ((uint64_t)key * 0x9E3779B97F4A7C15ull) >> (64 - bits);
}

/* Hash index of the C sorted context keys ctx: slots [2^bits] (2^bits >= 2C) receive each
 * key's row, -1 where empty, with linear probing. One probe or two find a context, where a
 * binary search over hundreds of thousands of keys costs a dozen cache misses. */
void ngram_index(int64_t C, const int64_t *ctx, int64_t bits, int32_t *slots) {
    const uint64_t mask = ((uint64_t)1 << bits) - 1;
    for (uint64_t s = 0; s <= mask; s++) slots[s] = -1;
    for (int64_t r = 0; r < C; r++) {
        uint64_t s = slot_of(ctx[r], bits);
        while (slots[s] >= 0) s = (s + 1) & mask;
        slots[s] = (int32_t)r;
    }
}

/* Row of `key` in the index built by ngram_index, or -1. */
static int64_t find(const int64_t *ctx, const int32_t *slots, int64_t bits, int64_t key) {
    const uint64_t mask = ((uint64_t)1 << bits) - 1;
    for (uint64_t s = slot_of(key, bits);; s = (s + 1) & mask) {
        int32_t r = slots[s];
        if (r < 0 || ctx[r] == key) return r;
    }
}

/* Interpolated Kneser-Ney log-probabilities (see lm/models/ngram.py for the tables).
 *   full [B, order-1+T] int64: the carried context (each in [0, base)), then the T symbols
 *        read (each in [0, V)); KERNEL_BAD_ID, with nothing written, for any other value
 *   logp [B, T, V] float32 output, V = 257; keys are packed in base `base` with lengths
 *   offset by len_offset, exactly as context_keys() packs them; slots [2^bits] is the index
 *   that ngram_index built from ctx.
 */
CLONES
int64_t ngram_forward(int64_t B, int64_t T, int64_t order, int64_t V, int64_t base,
                      int64_t len_offset, const int64_t *full, int64_t bits,
                      const int32_t *slots, const int64_t *ctx, const int64_t *start,
                      const double *gamma, const int64_t *sym, const double *disc, double *work,
                      float *logp) {
    const int64_t k = order - 1, width = k + T;
    for (int64_t b = 0; b < B; b++)
        if (!ids_within(full + b * width, k, 0, base) || !ids_within(full + b * width + k, T, 0, V))
            return KERNEL_BAD_ID;
    for (int64_t b = 0; b < B; b++) {
        for (int64_t t = 0; t < T; t++) {
            const int64_t *end = full + b * width + k + t + 1; /* one past the context */
            int64_t keys[8], acc = 0, mult = 1;
            keys[0] = 0;
            for (int64_t len = 1; len < order; len++) {
                acc += end[-len] * mult;
                mult *= base;
                keys[len] = acc + len * len_offset;
            }
            memset(work, 0, V * sizeof(double));
            double w = 1.0; /* product of the gammas of the longer contexts found */
            for (int64_t len = k; len >= 0; len--) {
                int64_t row = find(ctx, slots, bits, keys[len]);
                if (row < 0) continue;
                for (int64_t e = start[row]; e < start[row + 1]; e++) work[sym[e]] += w * disc[e];
                w *= gamma[row];
            }
            float *out = logp + (b * T + t) * V;
            for (int64_t v = 0; v < V; v++) out[v] = (float)log(work[v] + w / V);
        }
    }
    return KERNEL_OK;
}

/* Entropy-gated mixture of K components' log-probs lps [K, N, V] (float32) into out [N, V]:
 *   bucket = digits of each component's entropy bin (edges [E], bins E+1), most significant
 *   first; weights table [(E+1)^K, K] (float64). The arithmetic of Mix.forward, in float32
 *   as torch does it there (the clamp at -1e4 keeps a NaN, as torch's clamp_min does); work
 *   [K, V] scratch. */
CLONES
void mix_forward(int64_t K, int64_t N, int64_t V, const float *lps, int64_t E,
                 const double *edges, const double *table, float *work, float *out) {
    for (int64_t n = 0; n < N; n++) {
        int64_t bucket = 0;
        for (int64_t c = 0; c < K; c++) {
            const float *lp = lps + (c * N + n) * V;
            float *p = work + c * V;
            for (int64_t v = 0; v < V; v++) p[v] = expf(lp[v]);
            float ent = 0.0f;
            for (int64_t v = 0; v < V; v++) ent -= p[v] * (lp[v] < -1e4f ? -1e4f : lp[v]);
            int64_t bin = 0;
            while (bin < E && edges[bin] < ent) bin++;
            bucket = bucket * (E + 1) + bin;
        }
        const double *w = table + bucket * K;
        float *o = out + n * V;
        float w0 = (float)w[0];
        for (int64_t v = 0; v < V; v++) o[v] = w0 * work[v];
        for (int64_t c = 1; c < K; c++) {
            float wc = (float)w[c];
            const float *p = work + c * V;
            for (int64_t v = 0; v < V; v++) o[v] += wc * p[v];
        }
        for (int64_t v = 0; v < V; v++) o[v] = logf(o[v]);
    }
}

/* One symbol drawn from log-probs logp [V] under the mask ok [V] (1 = allowed): from
 * softmax(logp / temperature) over the allowed symbols, by inverse CDF at u in [0, 1): the
 * first symbol whose cumulative weight exceeds u * total (the last symbol at most). The same
 * arithmetic as lm/runners.py's numpy draw; work [V] scratch. */
int64_t draw(int64_t V, const float *logp, const uint8_t *ok, double temperature, double u,
             double *work) {
    double mx = -1e300;
    for (int64_t v = 0; v < V; v++)
        if (ok[v] && logp[v] > mx) mx = logp[v];
    double total = 0.0;
    for (int64_t v = 0; v < V; v++) {
        total += ok[v] ? exp((logp[v] - mx) / temperature) : 0.0;
        work[v] = total;
    }
    double target = u * total;
    int64_t k = 0;
    while (k < V - 1 && work[k] <= target) k++;
    return k;
}
