/* Bit-packed binary convolution kernels: XNOR/popcount implementation of eq. 5.1 of the thesis.
 *
 * One shared library holds four code paths selected at run time (the fourth, Intel AMX, lives in xnor_amx.c):
 *   - AVX-512 (F, BW, VL, DQ, VPOPCNTDQ): one output channel per 64-bit lane, a tile of 4 pixels x 32
 *     output channels held in 16 zmm accumulators; XOR with an embedded broadcast + VPOPCNTQ + add.
 *   - AVX2: the same layout in ymm registers; popcount by the nibble look-up table (VPSHUFB), bytes summed
 *     with VPSADBW every 31 steps (a byte can hold 31 * 8 = 248 ones before it overflows).
 *   - portable scalar C (built for every target; a hardware POPCNT variant is used where available).
 * SIMD paths use per-function target attributes, so the file compiles with the compiler's default flags on
 * any x86-64 and only the scalar path exists on other architectures.  See xnor.h for the data layouts.
 */
#include "xnor_internal.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#ifdef FA_X86 /* (xnor_internal.h) */
#define FA_T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vpopcntdq,popcnt")))
#define FA_T256 __attribute__((target("avx2,popcnt")))
#define FA_TPOP __attribute__((target("popcnt")))
#endif

/* ------------------------------------------------------------------------------------------------ */
/* ISA detection                                                                                      */
/* ------------------------------------------------------------------------------------------------ */

int fa_isa_supported(int isa) {
    if (isa == FA_ISA_SCALAR) return 1;
    if (isa == FA_ISA_AMX) return fa_amx_supported();
#ifdef FA_X86
    __builtin_cpu_init();
    if (isa == FA_ISA_AVX2)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt");
    if (isa == FA_ISA_AVX512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512vpopcntdq") && __builtin_cpu_supports("popcnt");
#endif
    return 0;
}

int fa_amx_min_pixels = 32;

int fa_amx_set_min_pixels(int pixels) {
    const int previous = fa_amx_min_pixels;
    fa_amx_min_pixels = pixels < 0 ? 0 : pixels;
    return previous;
}

int fa_best_isa(void) {
    if (fa_isa_supported(FA_ISA_AMX)) return FA_ISA_AMX;
    if (fa_isa_supported(FA_ISA_AVX512)) return FA_ISA_AVX512;
    if (fa_isa_supported(FA_ISA_AVX2)) return FA_ISA_AVX2;
    return FA_ISA_SCALAR;
}

int fa_has_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

#ifdef FA_X86
static int has_scalar_popcnt(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("popcnt");
}
#endif

/* ------------------------------------------------------------------------------------------------ */
/* Activation packing fused with BN + sign: channel c is +1 iff lo[c] <= v <= hi[c].                 */
/* A BN with gamma > 0 gives [t, +inf], gamma < 0 gives [-inf, t], gamma == 0 gives everything or   */
/* nothing (the thresholds are computed in Python from the BN module itself).                        */
/* ------------------------------------------------------------------------------------------------ */

FA_INLINE uint64_t pack_word_scalar(const float *x, const float *lo, const float *hi, int64_t nch) {
    uint64_t word = 0;
    for (int64_t j = 0; j < nch; j++) {
        float v = x[j];
        int positive = (v >= lo[j]) & (v <= hi[j]);
        word |= (uint64_t)(!positive) << j;
    }
    return word;
}

#ifdef FA_X86
FA_T512 FA_INLINE uint64_t pack_word_avx512(const float *x, const float *lo, const float *hi, int64_t nch) {
    uint64_t word = 0;
    if (nch == 64) { /* full word: unmasked loads */
        for (int q = 0; q < 4; q++) {
            const __m512 v = _mm512_loadu_ps(x + 16 * q);
            const __mmask16 pos = _mm512_cmp_ps_mask(v, _mm512_loadu_ps(lo + 16 * q), _CMP_GE_OQ) &
                                  _mm512_cmp_ps_mask(v, _mm512_loadu_ps(hi + 16 * q), _CMP_LE_OQ);
            word |= (uint64_t)(uint16_t)~pos << (16 * q);
        }
        return word;
    }
    for (int q = 0; q < 4 && 16 * q < nch; q++) {
        int64_t left = nch - 16 * q;
        __mmask16 m = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
        __m512 v = _mm512_maskz_loadu_ps(m, x + 16 * q);
        __m512 l = _mm512_maskz_loadu_ps(m, lo + 16 * q);
        __m512 h = _mm512_maskz_loadu_ps(m, hi + 16 * q);
        __mmask16 pos = _mm512_cmp_ps_mask(v, l, _CMP_GE_OQ) & _mm512_cmp_ps_mask(v, h, _CMP_LE_OQ);
        word |= (uint64_t)(uint16_t)(~pos & m) << (16 * q);
    }
    return word;
}

FA_T256 FA_INLINE uint64_t pack_word_avx2(const float *x, const float *lo, const float *hi, int64_t nch) {
    uint64_t word = 0;
    int64_t j = 0;
    for (; j + 8 <= nch; j += 8) {
        __m256 v = _mm256_loadu_ps(x + j);
        __m256 pos = _mm256_and_ps(_mm256_cmp_ps(v, _mm256_loadu_ps(lo + j), _CMP_GE_OQ),
                                   _mm256_cmp_ps(v, _mm256_loadu_ps(hi + j), _CMP_LE_OQ));
        word |= (uint64_t)(uint8_t)~_mm256_movemask_ps(pos) << j;
    }
    if (j < nch) word |= pack_word_scalar(x + j, lo + j, hi + j, nch - j) << j;
    return word;
}
#endif

/* Packs one image row (w pixels) into d (pixel stride cw words); one function per ISA so that the word
 * packer is inlined and the ISA test is made once per row. */
#define FA_PACK_ROW_BODY(word_fn)                                                                   \
    for (int64_t xx = 0; xx < w; xx++) {                                                            \
        const float *src = x + xx * pixel_stride;                                                   \
        uint64_t *dw = d + xx * cw;                                                                 \
        for (int64_t j = 0; j < cw; j++) {                                                          \
            const int64_t c0 = 64 * j, nch = c - c0 < 64 ? c - c0 : 64;                             \
            dw[j] = word_fn(src + c0, lo + c0, hi + c0, nch);                                        \
        }                                                                                           \
    }

static void pack_row_scalar(const float *x, int64_t w, int64_t c, int64_t pixel_stride, const float *lo,
                            const float *hi, uint64_t *d, int64_t cw) {
    FA_PACK_ROW_BODY(pack_word_scalar)
}

#ifdef FA_X86
FA_T512 static void pack_row_avx512(const float *x, int64_t w, int64_t c, int64_t pixel_stride, const float *lo,
                                    const float *hi, uint64_t *d, int64_t cw) {
    FA_PACK_ROW_BODY(pack_word_avx512)
}

FA_T256 static void pack_row_avx2(const float *x, int64_t w, int64_t c, int64_t pixel_stride, const float *lo,
                                  const float *hi, uint64_t *d, int64_t cw) {
    FA_PACK_ROW_BODY(pack_word_avx2)
}
#endif

int fa_pack_activations(int isa, const float *x, int64_t n, int64_t h, int64_t w, int64_t c,
                        int64_t pixel_stride, const float *lo, const float *hi, int64_t pad,
                        uint64_t *out, int threads) {
    if (!fa_isa_supported(isa)) return FA_ERR_ISA;
    if (!x || !lo || !hi || !out || n < 1 || h < 1 || w < 1 || c < 1 || pad < 0 || pixel_stride < c)
        return FA_ERR_ARG;
    const int64_t cw = (c + 63) / 64, hp = h + 2 * pad, wp = w + 2 * pad;
    const int64_t rows = n * hp;
    if (threads < 1) threads = 1;
    (void)threads;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(threads)
#endif
    for (int64_t r = 0; r < rows; r++) {
        const int64_t b = r / hp, yp = r % hp, y = yp - pad;
        uint64_t *dst = out + r * wp * cw;
        if (y < 0 || y >= h) {
            memset(dst, 0, (size_t)(wp * cw) * sizeof(uint64_t));
            continue;
        }
        memset(dst, 0, (size_t)(pad * cw) * sizeof(uint64_t));
        memset(dst + (pad + w) * cw, 0, (size_t)(pad * cw) * sizeof(uint64_t));
        const float *src = x + (b * h + y) * w * pixel_stride;
        uint64_t *d = dst + pad * cw;
#ifdef FA_X86
        if (isa == FA_ISA_AVX512 || isa == FA_ISA_AMX)
            pack_row_avx512(src, w, c, pixel_stride, lo, hi, d, cw);
        else if (isa == FA_ISA_AVX2)
            pack_row_avx2(src, w, c, pixel_stride, lo, hi, d, cw);
        else
#endif
            pack_row_scalar(src, w, c, pixel_stride, lo, hi, d, cw);
    }
    return FA_OK;
}

/* ------------------------------------------------------------------------------------------------ */
/* Convolution                                                                                         */
/* ------------------------------------------------------------------------------------------------ */

/* Everything a row kernel needs, derived once per call. */
typedef struct {
    const fa_conv_args *a;
    int64_t kk, kpad, wp, cb, full_k;
    int64_t tap_offset[49]; /* word offset of tap t relative to the tap-(0,0) pixel, k <= 7 */
} conv_plan;

/* Sum of tapsum over the taps of output pixel (y, x) that fall in the zero padding: the packed buffer
 * read them as +1, the zero-padded convolution must count them as 0. */
FA_INLINE void border_correction(const conv_plan *pl, int64_t y, int64_t x, const int64_t *tapsum_block,
                                 int64_t corr[FA_BLOCK]) {
    const int64_t k = pl->a->k, kpad = pl->kpad, h = pl->a->h, w = pl->a->w;
    memset(corr, 0, FA_BLOCK * sizeof(int64_t));
    for (int64_t ky = 0; ky < k; ky++) {
        const int64_t yy = y + ky - kpad;
        for (int64_t kx = 0; kx < k; kx++) {
            const int64_t xx = x + kx - kpad;
            if (yy >= 0 && yy < h && xx >= 0 && xx < w) continue;
            const int64_t *ts = tapsum_block + (ky * k + kx) * FA_BLOCK;
            for (int r = 0; r < FA_BLOCK; r++) corr[r] += ts[r];
        }
    }
}

FA_INLINE int is_border(const conv_plan *pl, int64_t y, int64_t x) {
    return pl->kpad > 0 && (y < pl->kpad || y >= pl->a->h - pl->kpad || x < pl->kpad || x >= pl->a->w - pl->kpad);
}

/* Writes one pixel's 32 (or fewer) output channels from popcounts cnt[r] (r < 32). */
FA_INLINE void store_scalar(const conv_plan *pl, int64_t cb, int64_t n, int64_t y, int64_t x,
                            const int64_t cnt[FA_BLOCK]) {
    const fa_conv_args *a = pl->a;
    int64_t corr[FA_BLOCK];
    if (is_border(pl, y, x))
        border_correction(pl, y, x, a->tapsum + cb * pl->kk * FA_BLOCK, corr);
    else
        memset(corr, 0, sizeof(corr));
    const int64_t pixel = (n * a->h + y) * a->w + x;
    float *o = a->out + pixel * a->out_pixel_stride;
    const float *res = a->residual ? a->residual + pixel * a->residual_pixel_stride : NULL;
    const int64_t c0 = cb * FA_BLOCK;
    uint32_t negative = 0, final = 0;
    for (int r = 0; r < FA_BLOCK && c0 + r < a->cout; r++) {
        const float dot = (float)(pl->full_k - 2 * cnt[r] - corr[r]);
        float v = a->alpha ? a->alpha[c0 + r] * dot : dot;
        if (a->relu && !(v >= 0.0f)) v = 0.0f;
        if (a->next_bits) negative |= (uint32_t)!(v >= a->next_lo[c0 + r] && v <= a->next_hi[c0 + r]) << r;
        const float stored = res ? v + res[c0 + r] : v;
        o[c0 + r] = stored;
        if (a->final_bits) final |= (uint32_t)!(stored >= a->final_lo[c0 + r] && stored <= a->final_hi[c0 + r]) << r;
    }
    if (a->next_bits) *next_bits_slot(a, cb, n, y, x) = negative;
    if (a->final_bits) *final_bits_slot(a, cb, n, y, x) = final;
}

/* --- portable scalar path ------------------------------------------------------------------------ */

FA_INLINE void row_scalar_body(const conv_plan *pl, int64_t n, int64_t cb, int64_t y) {
    const fa_conv_args *a = pl->a;
    const int64_t cw = a->cw, off = a->pad_in - pl->kpad;
    const uint64_t *wblock = a->weights + cb * pl->kk * cw * FA_BLOCK;
    for (int64_t x = 0; x < a->w; x++) {
        const uint64_t *src = a->act + ((n * (a->h + 2 * a->pad_in) + y + off) * pl->wp + x + off) * cw;
        int64_t cnt[FA_BLOCK] = {0};
        for (int64_t t = 0; t < pl->kk; t++) {
            const uint64_t *s = src + pl->tap_offset[t];
            const uint64_t *wt = wblock + t * cw * FA_BLOCK;
            for (int64_t j = 0; j < cw; j++) {
                const uint64_t v = s[j];
                for (int r = 0; r < FA_BLOCK; r++) cnt[r] += __builtin_popcountll(v ^ wt[j * FA_BLOCK + r]);
            }
        }
        store_scalar(pl, cb, n, y, x, cnt);
    }
}

static void row_scalar(const conv_plan *pl, int64_t n, int64_t cb, int64_t y) { row_scalar_body(pl, n, cb, y); }

#ifdef FA_X86
/* Same C, compiled with the POPCNT instruction (every x86-64 of the last 15 years has it). */
FA_TPOP static void row_scalar_popcnt(const conv_plan *pl, int64_t n, int64_t cb, int64_t y) {
    row_scalar_body(pl, n, cb, y);
}

/* --- AVX-512 path ---------------------------------------------------------------------------------- */

/* Writes P pixels x 32 channels from int64 popcount accumulators (acc[p][r] = channels 8r .. 8r+7). */
FA_T512 FA_INLINE void store_avx512(const conv_plan *pl, int64_t cb, int64_t n, int64_t y, int64_t x0, int P,
                                    __m512i acc[][4]) {
    const fa_conv_args *a = pl->a;
    const int64_t c0 = cb * FA_BLOCK;
    const __m512i full_k = _mm512_set1_epi64(pl->full_k);
    epilogue_consts k[2];
    for (int h = 0; h < 2 && a->cout - c0 - 16 * h > 0; h++) k[h] = epilogue_load(a, c0 + 16 * h, lanes16(a->cout - c0 - 16 * h));
    for (int p = 0; p < P; p++) {
        const int64_t x = x0 + p, pixel = (n * a->h + y) * a->w + x;
        int64_t corr[FA_BLOCK];
        const int border = is_border(pl, y, x);
        if (border) border_correction(pl, y, x, a->tapsum + cb * pl->kk * FA_BLOCK, corr);
        uint32_t negative = 0, final = 0;
        for (int h = 0; h < 2; h++) {
            const int64_t left = a->cout - c0 - 16 * h;
            if (left <= 0) break;
            __m256i dots[2];
            for (int q = 0; q < 2; q++) {
                __m512i v = _mm512_sub_epi64(full_k, _mm512_slli_epi64(acc[p][2 * h + q], 1));
                if (border) v = _mm512_sub_epi64(v, _mm512_loadu_si512((const void *)(corr + 16 * h + 8 * q)));
                dots[q] = _mm512_cvtepi64_epi32(v);
            }
            const __m512i dot = _mm512_inserti64x4(_mm512_castsi256_si512(dots[0]), dots[1], 1);
            uint32_t half = 0;
            negative |= epilogue16_with(a, c0 + 16 * h, pixel, dot, lanes16(left), &k[h], a->final_bits ? &half : NULL)
                        << (16 * h);
            final |= half << (16 * h);
        }
        if (a->next_bits) *next_bits_slot(a, cb, n, y, x) = negative;
        if (a->final_bits) *final_bits_slot(a, cb, n, y, x) = final;
    }
}

/* One tile: P consecutive pixels of a row x 32 output channels.  P is a compile-time constant after
 * inlining, so the 4*P accumulators live in registers. */
FA_T512 FA_INLINE void tile_avx512(const conv_plan *pl, const uint64_t *src, const uint64_t *wblock, int64_t n,
                                   int64_t cb, int64_t y, int64_t x0, const int P) {
    const int64_t cw = pl->a->cw;
    __m512i acc[4][4];
    for (int p = 0; p < P; p++)
        for (int r = 0; r < 4; r++) acc[p][r] = _mm512_setzero_si512();
    for (int64_t t = 0; t < pl->kk; t++) {
        const uint64_t *s = src + pl->tap_offset[t];
        const uint64_t *wt = wblock + t * cw * FA_BLOCK;
        for (int64_t j = 0; j < cw; j++) {
            const __m512i w0 = _mm512_loadu_si512((const void *)(wt + j * FA_BLOCK));
            const __m512i w1 = _mm512_loadu_si512((const void *)(wt + j * FA_BLOCK + 8));
            const __m512i w2 = _mm512_loadu_si512((const void *)(wt + j * FA_BLOCK + 16));
            const __m512i w3 = _mm512_loadu_si512((const void *)(wt + j * FA_BLOCK + 24));
            for (int p = 0; p < P; p++) {
                const __m512i v = _mm512_set1_epi64((long long)s[p * cw + j]);
                acc[p][0] = _mm512_add_epi64(acc[p][0], _mm512_popcnt_epi64(_mm512_xor_si512(v, w0)));
                acc[p][1] = _mm512_add_epi64(acc[p][1], _mm512_popcnt_epi64(_mm512_xor_si512(v, w1)));
                acc[p][2] = _mm512_add_epi64(acc[p][2], _mm512_popcnt_epi64(_mm512_xor_si512(v, w2)));
                acc[p][3] = _mm512_add_epi64(acc[p][3], _mm512_popcnt_epi64(_mm512_xor_si512(v, w3)));
            }
        }
    }
    store_avx512(pl, cb, n, y, x0, P, acc);
}

FA_T512 static void row_avx512(const conv_plan *pl, int64_t n, int64_t cb, int64_t y) {
    const fa_conv_args *a = pl->a;
    const int64_t cw = a->cw, off = a->pad_in - pl->kpad;
    const uint64_t *wblock = a->weights + cb * pl->kk * cw * FA_BLOCK;
    const uint64_t *row = a->act + ((n * (a->h + 2 * a->pad_in) + y + off) * pl->wp + off) * cw;
    int64_t x = 0;
    for (; x + 4 <= a->w; x += 4) tile_avx512(pl, row + x * cw, wblock, n, cb, y, x, 4);
    for (; x < a->w; x++) tile_avx512(pl, row + x * cw, wblock, n, cb, y, x, 1);
}

/* --- AVX2 path ------------------------------------------------------------------------------------- */

/* Four int64 lanes (values < 2^31) of a and of b -> eight int32 lanes [a0..a3, b0..b3]. */
FA_T256 FA_INLINE __m256i narrow_pair(__m256i a, __m256i b) {
    const __m256i even = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    return _mm256_permute2x128_si256(_mm256_permutevar8x32_epi32(a, even), _mm256_permutevar8x32_epi32(b, even), 0x20);
}

/* The epilogue of store_scalar, vectorised: 8 channels per step from the int64 popcount totals
 * (total[2r] = channels 8r..8r+3, total[2r+1] = 8r+4..8r+7); same arithmetic as store_avx512. */
FA_T256 FA_INLINE void store_avx2(const conv_plan *pl, int64_t cb, int64_t n, int64_t y, int64_t x,
                                  const __m256i total[8]) {
    const fa_conv_args *a = pl->a;
    const int64_t c0 = cb * FA_BLOCK, pixel = (n * a->h + y) * a->w + x;
    int64_t corr[FA_BLOCK];
    const int border = is_border(pl, y, x);
    if (border) border_correction(pl, y, x, a->tapsum + cb * pl->kk * FA_BLOCK, corr);
    float *o = a->out + pixel * a->out_pixel_stride + c0;
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i full_k = _mm256_set1_epi32((int)pl->full_k);
    uint32_t negative = 0, final = 0;
    for (int r = 0; r < 4; r++) {
        const int64_t left = a->cout - c0 - 8 * r;
        if (left <= 0) break;
        const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(left < 8 ? left : 8)), lane);
        __m256i dot = _mm256_sub_epi32(full_k, _mm256_slli_epi32(narrow_pair(total[2 * r], total[2 * r + 1]), 1));
        if (border)
            dot = _mm256_sub_epi32(dot, narrow_pair(_mm256_loadu_si256((const __m256i *)(corr + 8 * r)),
                                                    _mm256_loadu_si256((const __m256i *)(corr + 8 * r + 4))));
        __m256 f = _mm256_cvtepi32_ps(dot);
        if (a->alpha) f = _mm256_mul_ps(f, _mm256_maskload_ps(a->alpha + c0 + 8 * r, m));
        if (a->relu) f = _mm256_max_ps(f, _mm256_setzero_ps());
        if (a->next_bits) {
            const __m256 pos = _mm256_and_ps(_mm256_cmp_ps(f, _mm256_maskload_ps(a->next_lo + c0 + 8 * r, m), _CMP_GE_OQ),
                                             _mm256_cmp_ps(f, _mm256_maskload_ps(a->next_hi + c0 + 8 * r, m), _CMP_LE_OQ));
            const uint32_t valid = left >= 8 ? 0xFFu : (1u << left) - 1u;
            negative |= (~(uint32_t)_mm256_movemask_ps(pos) & valid) << (8 * r);
        }
        if (a->residual)
            f = _mm256_add_ps(f, _mm256_maskload_ps(a->residual + pixel * a->residual_pixel_stride + c0 + 8 * r, m));
        _mm256_maskstore_ps(o + 8 * r, m, f);
        if (a->final_bits) {
            const __m256 pos = _mm256_and_ps(_mm256_cmp_ps(f, _mm256_maskload_ps(a->final_lo + c0 + 8 * r, m), _CMP_GE_OQ),
                                             _mm256_cmp_ps(f, _mm256_maskload_ps(a->final_hi + c0 + 8 * r, m), _CMP_LE_OQ));
            const uint32_t valid = left >= 8 ? 0xFFu : (1u << left) - 1u;
            final |= (~(uint32_t)_mm256_movemask_ps(pos) & valid) << (8 * r);
        }
    }
    if (a->next_bits) *next_bits_slot(a, cb, n, y, x) = negative;
    if (a->final_bits) *final_bits_slot(a, cb, n, y, x) = final;
}

/* One output row, one pixel at a time, the 32 channels of a block counted by the nibble look-up table
 * (VPSHUFB) in ymm registers, 4 channels per register; with G < 8 only the first 4*G channels are, and the
 * others by scalar POPCNT at the same time: an AVX2 core has no vector popcount, and where its integer
 * ALUs all have POPCNT (AMD Zen) they would otherwise idle beside the busy vector ports (see
 * fa_avx2_scalar_channels). */
FA_T256 FA_INLINE void row_avx2_body(const conv_plan *pl, int64_t n, int64_t cb, int64_t y, const int G) {
    const fa_conv_args *a = pl->a;
    const int64_t cw = a->cw, off = a->pad_in - pl->kpad;
    const int scalar = FA_BLOCK - 4 * G;
    const uint64_t *wblock = a->weights + cb * pl->kk * cw * FA_BLOCK;
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    for (int64_t x = 0; x < a->w; x++) {
        const uint64_t *src = a->act + ((n * (a->h + 2 * a->pad_in) + y + off) * pl->wp + x + off) * cw;
        __m256i bytes[8], total[8];
        int64_t counts[FA_BLOCK];
        for (int r = 0; r < 8; r++) bytes[r] = total[r] = _mm256_setzero_si256();
        for (int r = 0; r < scalar; r++) counts[r] = 0;
        int steps = 0;
        for (int64_t t = 0; t < pl->kk; t++) {
            const uint64_t *s = src + pl->tap_offset[t];
            const uint64_t *wt = wblock + t * cw * FA_BLOCK;
            for (int64_t j = 0; j < cw; j++) {
                const uint64_t word = s[j];
                const __m256i v = _mm256_set1_epi64x((long long)word);
                for (int r = 0; r < G; r++) {
                    const __m256i d = _mm256_xor_si256(v, _mm256_loadu_si256((const __m256i *)(wt + j * FA_BLOCK + 4 * r)));
                    const __m256i lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(d, low4));
                    const __m256i hi = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(d, 4), low4));
                    bytes[r] = _mm256_add_epi8(bytes[r], _mm256_add_epi8(lo, hi));
                }
                for (int r = 0; r < scalar; r++)
                    counts[r] += __builtin_popcountll(word ^ wt[j * FA_BLOCK + 4 * G + r]);
                if (++steps == 31) { /* flush before a byte can overflow */
                    for (int r = 0; r < G; r++) {
                        total[r] = _mm256_add_epi64(total[r], _mm256_sad_epu8(bytes[r], _mm256_setzero_si256()));
                        bytes[r] = _mm256_setzero_si256();
                    }
                    steps = 0;
                }
            }
        }
        for (int r = 0; r < G; r++)
            total[r] = _mm256_add_epi64(total[r], _mm256_sad_epu8(bytes[r], _mm256_setzero_si256()));
        for (int r = 0; r < scalar / 4; r++)
            total[G + r] = _mm256_loadu_si256((const __m256i *)(counts + 4 * r));
        store_avx2(pl, cb, n, y, x, total);
    }
}

FA_T256 static void row_avx2(const conv_plan *pl, int64_t n, int64_t cb, int64_t y) {
    row_avx2_body(pl, n, cb, y, 8);
}

/* 24 channels by the look-up, 8 by scalar POPCNT: of the splits tried on an AMD core (32/0, 24/8, 20/12,
 * 16/16) the fastest; more scalar channels make the integer ALUs the bottleneck. */
FA_T256 static void row_avx2_mixed(const conv_plan *pl, int64_t n, int64_t cb, int64_t y) {
    row_avx2_body(pl, n, cb, y, 6);
}

/* -1: decide by the CPU (AMD: the mixed kernel; others, e.g. Intel cores with one POPCNT port shared with
 * the vector shuffles: the look-up only); 0 / 1: force.  Returns the previous setting. */
static int avx2_mixed_setting = -1;

int fa_set_avx2_mixed(int setting) {
    const int previous = avx2_mixed_setting;
    avx2_mixed_setting = setting < 0 ? -1 : setting != 0;
    return previous;
}

static int use_avx2_mixed(void) {
    if (avx2_mixed_setting >= 0) return avx2_mixed_setting;
    __builtin_cpu_init();
    return __builtin_cpu_is("amd");
}
#endif /* FA_X86 */

typedef void (*row_fn)(const conv_plan *, int64_t, int64_t, int64_t);

/* Checks a convolution's arguments and prepares its plan and row kernel; *whole_amx is set when the AMX
 * tile kernel takes the convolution as a whole (it has no row kernel). */
static int prepare_conv(int isa, const fa_conv_args *a, conv_plan *pl, row_fn *row, int *whole_amx) {
    if (!a || !a->act || !a->weights || !a->tapsum || !a->out) return FA_ERR_ARG;
    if (a->n < 1 || a->h < 1 || a->w < 1 || a->cin < 1 || a->cout < 1 || a->cw != (a->cin + 63) / 64)
        return FA_ERR_ARG;
    if (a->k < 1 || a->k > 7 || a->k % 2 == 0 || a->pad_in < (a->k - 1) / 2 || a->out_pixel_stride < a->cout)
        return FA_ERR_ARG;
    if (a->residual && a->residual_pixel_stride < a->cout) return FA_ERR_ARG;
    if (a->next_bits && (!a->next_lo || !a->next_hi || a->next_pad < 0 || a->next_channel_offset % FA_BLOCK != 0 ||
                         a->next_channel_offset < 0 ||
                         a->next_cw < (a->next_channel_offset + a->cout + 63) / 64))
        return FA_ERR_ARG;
    if (a->final_bits && (isa == FA_ISA_AMX || !a->final_lo || !a->final_hi || a->final_pad < 0 ||
                          a->final_channel_offset % FA_BLOCK != 0 || a->final_channel_offset < 0 ||
                          a->final_cw < (a->final_channel_offset + a->cout + 63) / 64))
        return FA_ERR_ARG;
    *whole_amx = 0;
    if (isa == FA_ISA_AMX) {
        /* below one 32-pixel block the tile set-up and drain cost more than the products (measured:
         * 4x4 maps run faster on the popcount kernel), so small maps take the AVX-512 path */
        if (a->n * a->h * a->w >= fa_amx_min_pixels) {
            *whole_amx = 1;
            return FA_OK;
        }
        isa = FA_ISA_AVX512;
    }
    pl->a = a;
    pl->kk = a->k * a->k;
    pl->kpad = (a->k - 1) / 2;
    pl->wp = a->w + 2 * a->pad_in;
    pl->cb = (a->cout + FA_BLOCK - 1) / FA_BLOCK;
    pl->full_k = pl->kk * a->cin;
    for (int64_t ky = 0; ky < a->k; ky++)
        for (int64_t kx = 0; kx < a->k; kx++) pl->tap_offset[ky * a->k + kx] = (ky * pl->wp + kx) * a->cw;
    *row = row_scalar;
#ifdef FA_X86
    if (isa == FA_ISA_AVX512)
        *row = row_avx512;
    else if (isa == FA_ISA_AVX2)
        *row = use_avx2_mixed() ? row_avx2_mixed : row_avx2;
    else if (has_scalar_popcnt())
        *row = row_scalar_popcnt;
#endif
    return FA_OK;
}

int fa_binary_conv(int isa, const fa_conv_args *a, int threads) {
    if (!fa_isa_supported(isa)) return FA_ERR_ISA;
    conv_plan pl;
    row_fn row = row_scalar;
    int whole_amx = 0;
    const int code = prepare_conv(isa, a, &pl, &row, &whole_amx);
    if (code != FA_OK) return code;
    if (whole_amx) return fa_amx_binary_conv(a, threads);
    /* Work items: (image, 32-channel block, output row); rows innermost so that a thread's static chunk
     * reuses the same weight block from L1. */
    const int64_t items = a->n * pl.cb * a->h;
    if (threads < 1) threads = 1;
    (void)threads;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(threads)
#endif
    for (int64_t i = 0; i < items; i++) {
        const int64_t y = i % a->h, cb = (i / a->h) % pl.cb, n = i / (a->h * pl.cb);
        row(&pl, n, cb, y);
    }
    return FA_OK;
}

#define FA_MAX_BANDED_CONVS 16

/* The block's convolutions one output row at a time, each lagging its producer by the rows its kernel
 * reaches (conv i at row y - lag[i]), so that the rows a layer reads (its producer's packed rows, the
 * shortcut and output rows it adds into) were just written and are still in L1/L2, instead of whole
 * 4-8 MB maps written by one layer and read back from L3 by the next.  Returns 1 when it ran, 0 when the
 * block must run layer by layer (AMX tile kernel, mixed sizes, too many layers), < 0 on bad arguments. */
static int block_rows(int isa, const fa_conv_args *convs, int64_t nconvs) {
    if (nconvs > FA_MAX_BANDED_CONVS) return 0;
    conv_plan plans[FA_MAX_BANDED_CONVS];
    row_fn rows[FA_MAX_BANDED_CONVS];
    int64_t lag[FA_MAX_BANDED_CONVS];
    for (int64_t i = 0; i < nconvs; i++) {
        int whole_amx = 0;
        rows[i] = row_scalar;
        const int code = prepare_conv(isa, &convs[i], &plans[i], &rows[i], &whole_amx);
        if (code != FA_OK) return code;
        if (whole_amx || convs[i].n != convs[0].n || convs[i].h != convs[0].h || convs[i].w != convs[0].w) return 0;
        /* after every earlier layer (it may add into what they wrote), and kpad rows after its producer */
        lag[i] = i ? lag[i - 1] : 0;
        for (int64_t j = 0; j < i; j++)
            if (convs[j].next_bits && convs[j].next_bits == convs[i].act && lag[j] + plans[i].kpad > lag[i])
                lag[i] = lag[j] + plans[i].kpad;
    }
    const int64_t h = convs[0].h, last = lag[nconvs - 1];
    for (int64_t n = 0; n < convs[0].n; n++)
        for (int64_t y = 0; y < h + last; y++)
            for (int64_t i = 0; i < nconvs; i++) {
                const int64_t yy = y - lag[i];
                if (yy < 0 || yy >= h) continue;
                for (int64_t cb = 0; cb < plans[i].cb; cb++) rows[i](&plans[i], n, cb, yy);
            }
    return 1;
}

int fa_block_forward(int isa, const float *x, int64_t n, int64_t h, int64_t w, int64_t c, int64_t pixel_stride,
                     const fa_pack_target *packs, int64_t npacks, const fa_conv_args *convs, int64_t nconvs,
                     int threads) {
    if (!fa_isa_supported(isa)) return FA_ERR_ISA;
    if (!packs || !convs || npacks < 1 || nconvs < 1) return FA_ERR_ARG;
    for (int64_t i = 0; i < npacks; i++) {
        if (!packs[i].lo) { /* packed already (a previous block's final_bits) */
            if (packs[i].hi || !packs[i].bits) return FA_ERR_ARG;
            continue;
        }
        const int code = fa_pack_activations(isa, x, n, h, w, c, pixel_stride, packs[i].lo, packs[i].hi,
                                             packs[i].pad, packs[i].bits, threads);
        if (code != FA_OK) return code;
    }
    if (threads <= 1 && !fa_block_layer_by_layer) { /* row-interleaved: one thread (see block_rows) */
        const int done = block_rows(isa, convs, nconvs);
        if (done < 0) return done;
        if (done) return FA_OK;
    }
    for (int64_t i = 0; i < nconvs; i++) {
        const int code = fa_binary_conv(isa, &convs[i], threads);
        if (code != FA_OK) return code;
    }
    return FA_OK;
}

int fa_block_layer_by_layer = 0;

int fa_set_block_layer_by_layer(int on) {
    const int previous = fa_block_layer_by_layer;
    fa_block_layer_by_layer = on != 0;
    return previous;
}
