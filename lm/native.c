/* CPU kernels for inference at batch sizes of a chat bot (a few sequences, one at a time).
 *
 * Built on first use by lm/native.py (cc -O3 -march=native) and called through ctypes, which
 * releases the GIL for the call. Every function is the same arithmetic as the torch path it
 * replaces, up to float summation order; lm/native.py documents the contract of each.
 *
 * Why: at batch 1 a GRU-512 step reads its 3 MB recurrent matrix once, which does not fit a
 * core's L2 cache. Kept in float16 (1.5 MB, converted exactly to float32 in registers) it does,
 * and the ~40 small torch calls a step costs in Python collapse into one call.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

typedef _Float16 half;

static void log_softmax(float *x, int n) {
    float mx = x[0];
    for (int i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += expf(x[i] - mx);
    float lse = mx + logf(s);
    for (int i = 0; i < n; i++) x[i] -= lse;
}

/* y[0..n) += sum over r < 4 of a[r] * w[r * ld + j]: four half-precision rows at once, so y
 * is loaded and stored once per four rows. Explicit vector code where the CPU has it (gcc
 * does not vectorise the float16 conversion by itself), plain C elsewhere. */
static inline void axpy4_h(float *restrict y, const float *a, const half *restrict w,
                           int64_t ld, int64_t n) {
    int64_t j = 0;
#if defined(__AVX512F__)
    __m512 a0 = _mm512_set1_ps(a[0]), a1 = _mm512_set1_ps(a[1]);
    __m512 a2 = _mm512_set1_ps(a[2]), a3 = _mm512_set1_ps(a[3]);
    for (; j + 16 <= n; j += 16) {
        __m512 acc = _mm512_loadu_ps(y + j);
        acc = _mm512_fmadd_ps(a0, _mm512_cvtph_ps(_mm256_loadu_si256((const void *)(w + j))), acc);
        acc = _mm512_fmadd_ps(a1, _mm512_cvtph_ps(_mm256_loadu_si256((const void *)(w + ld + j))), acc);
        acc = _mm512_fmadd_ps(a2, _mm512_cvtph_ps(_mm256_loadu_si256((const void *)(w + 2 * ld + j))), acc);
        acc = _mm512_fmadd_ps(a3, _mm512_cvtph_ps(_mm256_loadu_si256((const void *)(w + 3 * ld + j))), acc);
        _mm512_storeu_ps(y + j, acc);
    }
#elif defined(__AVX2__) && defined(__F16C__) && defined(__FMA__)
    __m256 a0 = _mm256_set1_ps(a[0]), a1 = _mm256_set1_ps(a[1]);
    __m256 a2 = _mm256_set1_ps(a[2]), a3 = _mm256_set1_ps(a[3]);
    for (; j + 8 <= n; j += 8) {
        __m256 acc = _mm256_loadu_ps(y + j);
        acc = _mm256_fmadd_ps(a0, _mm256_cvtph_ps(_mm_loadu_si128((const void *)(w + j))), acc);
        acc = _mm256_fmadd_ps(a1, _mm256_cvtph_ps(_mm_loadu_si128((const void *)(w + ld + j))), acc);
        acc = _mm256_fmadd_ps(a2, _mm256_cvtph_ps(_mm_loadu_si128((const void *)(w + 2 * ld + j))), acc);
        acc = _mm256_fmadd_ps(a3, _mm256_cvtph_ps(_mm_loadu_si128((const void *)(w + 3 * ld + j))), acc);
        _mm256_storeu_ps(y + j, acc);
    }
#endif
    for (; j < n; j++)
        y[j] += a[0] * (float)w[j] + a[1] * (float)w[ld + j] + a[2] * (float)w[2 * ld + j]
                + a[3] * (float)w[3 * ld + j];
}

/* dst[0..n) = src[0..n) converted exactly from float16 (vector code: gcc leaves the plain
 * loop scalar). */
static inline void to_float(float *restrict dst, const half *restrict src, int64_t n) {
    int64_t j = 0;
#if defined(__AVX512F__)
    for (; j + 16 <= n; j += 16)
        _mm512_storeu_ps(dst + j, _mm512_cvtph_ps(_mm256_loadu_si256((const void *)(src + j))));
#elif defined(__AVX2__) && defined(__F16C__)
    for (; j + 8 <= n; j += 8)
        _mm256_storeu_ps(dst + j, _mm256_cvtph_ps(_mm_loadu_si128((const void *)(src + j))));
#endif
    for (; j < n; j++) dst[j] = (float)src[j];
}

/* axpy4_h for four float32 rows w[r * n + j] (converted from float16 into L1): the same
 * operations in the same order, so a batch computes exactly what one sequence alone does.
 * One sequence keeps axpy4_h, converting in registers: going through L1 as a batch does made
 * it 30% slower. */
static inline void axpy4_f(float *restrict y, const float *a, const float *restrict w,
                           int64_t n) {
    int64_t j = 0;
#if defined(__AVX512F__)
    __m512 a0 = _mm512_set1_ps(a[0]), a1 = _mm512_set1_ps(a[1]);
    __m512 a2 = _mm512_set1_ps(a[2]), a3 = _mm512_set1_ps(a[3]);
    for (; j + 16 <= n; j += 16) {
        __m512 acc = _mm512_loadu_ps(y + j);
        acc = _mm512_fmadd_ps(a0, _mm512_loadu_ps(w + j), acc);
        acc = _mm512_fmadd_ps(a1, _mm512_loadu_ps(w + n + j), acc);
        acc = _mm512_fmadd_ps(a2, _mm512_loadu_ps(w + 2 * n + j), acc);
        acc = _mm512_fmadd_ps(a3, _mm512_loadu_ps(w + 3 * n + j), acc);
        _mm512_storeu_ps(y + j, acc);
    }
#elif defined(__AVX2__) && defined(__F16C__) && defined(__FMA__)
    __m256 a0 = _mm256_set1_ps(a[0]), a1 = _mm256_set1_ps(a[1]);
    __m256 a2 = _mm256_set1_ps(a[2]), a3 = _mm256_set1_ps(a[3]);
    for (; j + 8 <= n; j += 8) {
        __m256 acc = _mm256_loadu_ps(y + j);
        acc = _mm256_fmadd_ps(a0, _mm256_loadu_ps(w + j), acc);
        acc = _mm256_fmadd_ps(a1, _mm256_loadu_ps(w + n + j), acc);
        acc = _mm256_fmadd_ps(a2, _mm256_loadu_ps(w + 2 * n + j), acc);
        acc = _mm256_fmadd_ps(a3, _mm256_loadu_ps(w + 3 * n + j), acc);
        _mm256_storeu_ps(y + j, acc);
    }
#endif
    for (; j < n; j++)
        y[j] += a[0] * w[j] + a[1] * w[n + j] + a[2] * w[2 * n + j] + a[3] * w[3 * n + j];
}

/* ys[b] = bias + xs[b] @ w for B vectors (row strides ldx, ldy): each block of four weight rows
 * is converted to float32 once, into buf [4, n], and used by every vector while in L1. */
static void matvec_h_batch(float *ys, int64_t ldy, const float *bias, const float *xs,
                           int64_t ldx, const half *w, int64_t m, int64_t n, int64_t B,
                           float *buf) {
    for (int64_t b = 0; b < B; b++) memcpy(ys + b * ldy, bias, n * sizeof(float));
    for (int64_t i = 0; i < m; i += 4) {
        const half *wi = w + i * n;
        to_float(buf, wi, 4 * n);
        for (int64_t b = 0; b < B; b++) axpy4_f(ys + b * ldy, xs + b * ldx + i, buf, n);
    }
}

/* y[0..n) = bias + x[0..m) @ w[m, n] for half-precision w (m a multiple of 4). */
static void matvec_h(float *restrict y, const float *bias, const float *x, const half *w,
                     int64_t m, int64_t n) {
    memcpy(y, bias, n * sizeof(float));
    for (int64_t i = 0; i < m; i += 4) axpy4_h(y, x + i, w + i * n, n, n);
}

/* The gates of one GRU step: gh [3H] holds W_hh h + b_hh on entry (clobbered), x [3H] the
 * input projection; the state hb [H] is updated in place. */
static void gru_gates(const float *x, float *gh, float *hb, int64_t H) {
    for (int64_t j = 0; j < 2 * H; j++) gh[j] = 1.0f / (1.0f + expf(-(x[j] + gh[j])));
    for (int64_t j = 0; j < H; j++) {  /* tanh(u) = 2 sigmoid(2u) - 1 */
        float u = x[2 * H + j] + gh[j] * gh[2 * H + j];
        float n = 2.0f / (1.0f + expf(-2.0f * u)) - 1.0f;
        hb[j] = n + gh[H + j] * (hb[j] - n);
    }
}

/* Single-layer GRU language model, B sequences of T steps, in PyTorch's gate order (r, z, n).
 *   ids  [B, T]   int64 symbols read
 *   gi   [V, 3H]  input projection of every symbol, input bias included (float32)
 *   whh  [H, 3H]  recurrent weights, transposed (float16); bhh [3H] (float32)
 *   wout [H, V]   output weights, transposed (float16); bout [V] (float32)
 *   h    [B, H]   state, updated in place; H a multiple of 4
 *   work [B * 3H + 4 * max(3H, V)] scratch
 *   logp [B, T, V] log-softmax output (float32), or NULL: then hs [B, T, H] receives the
 *                  state after each step instead, for the caller's batched output layer
 */
void gru_forward(int64_t B, int64_t T, int64_t H, int64_t V, const int64_t *ids,
                 const float *gi, const half *whh, const float *bhh, const half *wout,
                 const float *bout, float *h, float *work, float *logp, float *hs) {
    const int64_t G = 3 * H;
    float *buf = work + B * G; /* B > 1: four converted weight rows */
    for (int64_t t = 0; t < T; t++) {
        if (B == 1)
            matvec_h(work, bhh, h, whh, H, G);
        else
            matvec_h_batch(work, G, bhh, h, H, whh, H, G, B, buf);
        for (int64_t b = 0; b < B; b++) {
            gru_gates(gi + ids[b * T + t] * G, work + b * G, h + b * H, H);
            if (logp == NULL) memcpy(hs + (b * T + t) * H, h + b * H, H * sizeof(float));
        }
        if (logp == NULL) continue;
        if (B == 1)
            matvec_h(logp + t * V, bout, h, wout, H, V);
        else
            matvec_h_batch(logp + t * V, T * V, bout, h, H, wout, H, V, B, buf);
        for (int64_t b = 0; b < B; b++) log_softmax(logp + (b * T + t) * V, V);
    }
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
 *   full [B, order-1+T] int64: the carried context, then the T symbols read
 *   logp [B, T, V] float32 output, V = 257; keys are packed in base `base` with lengths
 *   offset by len_offset, exactly as context_keys() packs them; slots [2^bits] is the index
 *   that ngram_index built from ctx.
 */
void ngram_forward(int64_t B, int64_t T, int64_t order, int64_t V, int64_t base,
                   int64_t len_offset, const int64_t *full, int64_t bits, const int32_t *slots,
                   const int64_t *ctx, const int64_t *start, const double *gamma,
                   const int64_t *sym, const double *disc, double *work, float *logp) {
    const int64_t k = order - 1, width = k + T;
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
}

/* Entropy-gated mixture of K components' log-probs lps [K, N, V] (float32) into out [N, V]:
 *   bucket = digits of each component's entropy bin (edges [E], bins E+1), most significant
 *   first; weights table [(E+1)^K, K] (float64). The arithmetic of Mix.forward, in float32
 *   as torch does it there; work [K, V] scratch. */
void mix_forward(int64_t K, int64_t N, int64_t V, const float *lps, int64_t E,
                 const double *edges, const double *table, float *work, float *out) {
    for (int64_t n = 0; n < N; n++) {
        int64_t bucket = 0;
        for (int64_t c = 0; c < K; c++) {
            const float *lp = lps + (c * N + n) * V;
            float *p = work + c * V;
            for (int64_t v = 0; v < V; v++) p[v] = expf(lp[v]);
            float ent = 0.0f;
            for (int64_t v = 0; v < V; v++) ent -= p[v] * fmaxf(lp[v], -1e4f);
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
 * arithmetic as lm/sampling.py's numpy path; work [V] scratch. */
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
