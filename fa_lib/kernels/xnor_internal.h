/* Internal helpers shared by the kernel files xnor.c and xnor_amx.c (not part of the API of xnor.h). */
#ifndef FA_XNOR_INTERNAL_H
#define FA_XNOR_INTERNAL_H
#include "xnor.h"

#define FA_INLINE static inline __attribute__((always_inline))

/* Address of the 32-bit half-word of the next layer's packed buffer that holds the sign bits of output
 * channels [32*cb, 32*cb + 32) of pixel (n, y, x). */
FA_INLINE uint32_t *bits_slot(const fa_conv_args *a, uint64_t *bits, int64_t bits_cw, int64_t pad, int64_t offset,
                               int64_t cb, int64_t n, int64_t y, int64_t x) {
    const int64_t c = offset + cb * FA_BLOCK; /* multiple of 32 */
    uint64_t *word = bits + ((n * (a->h + 2 * pad) + y + pad) * (a->w + 2 * pad) + x + pad) * bits_cw + c / 64;
    return (uint32_t *)word + (c % 64) / 32; /* little-endian: low half = channels 0..31 of the word */
}

FA_INLINE uint32_t *next_bits_slot(const fa_conv_args *a, int64_t cb, int64_t n, int64_t y, int64_t x) {
    return bits_slot(a, a->next_bits, a->next_cw, a->next_pad, a->next_channel_offset, cb, n, y, x);
}

/* The same for final_bits (the sign bits of the stored values under the next block's thresholds). */
FA_INLINE uint32_t *final_bits_slot(const fa_conv_args *a, int64_t cb, int64_t n, int64_t y, int64_t x) {
    return bits_slot(a, a->final_bits, a->final_cw, a->final_pad, a->final_channel_offset, cb, n, y, x);
}

/* FA_XNOR_NO_SIMD builds the portable path only, as on non-x86 targets (used to test that build). */
#if !defined(FA_XNOR_NO_SIMD) && (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define FA_X86 1
#include <immintrin.h>
/* the AVX-512 subset the epilogue needs; the popcount and AMX paths' targets both include it */
#define FA_TEPI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))

/* The per-channel constants of the epilogue of 16 output channels [c, c + 16): alpha and the two threshold
 * sets (next layer's, and final_* of the stored value), loaded once for all the pixels of a tile. */
typedef struct {
    __m512 alpha, next_lo, next_hi, final_lo, final_hi;
} epilogue_consts;

FA_TEPI FA_INLINE epilogue_consts epilogue_load(const fa_conv_args *a, int64_t c, __mmask16 m) {
    epilogue_consts k;
    const __m512 zero = _mm512_setzero_ps();
    k.alpha = a->alpha ? _mm512_maskz_loadu_ps(m, a->alpha + c) : zero;
    k.next_lo = a->next_bits ? _mm512_maskz_loadu_ps(m, a->next_lo + c) : zero;
    k.next_hi = a->next_bits ? _mm512_maskz_loadu_ps(m, a->next_hi + c) : zero;
    k.final_lo = a->final_bits ? _mm512_maskz_loadu_ps(m, a->final_lo + c) : zero;
    k.final_hi = a->final_bits ? _mm512_maskz_loadu_ps(m, a->final_hi + c) : zero;
    return k;
}

/* Epilogue of 16 output channels [c, c + 16) of one pixel (lanes beyond mask m untouched): the int32 dot
 * products times alpha (eq. 5.2), ReLU, the next layer's sign bits (returned: bit i set = channel c+i is -1),
 * then the residual added to what is stored, and (final non-NULL) the stored values' sign bits under the
 * final_* thresholds in *final; k from epilogue_load(a, c, m).  Every SIMD path ends here, so all give the
 * same floats. */
FA_TEPI FA_INLINE uint32_t epilogue16_with(const fa_conv_args *a, int64_t c, int64_t pixel, __m512i dot, __mmask16 m,
                                           const epilogue_consts *k, uint32_t *final) {
    __m512 f = _mm512_cvtepi32_ps(dot);
    if (a->alpha) f = _mm512_mul_ps(f, k->alpha);
    if (a->relu) f = _mm512_max_ps(f, _mm512_setzero_ps()); /* max(v, 0): v >= 0 kept, else (NaN too) 0 */
    uint32_t negative = 0;
    if (a->next_bits) {
        const __mmask16 pos = _mm512_mask_cmp_ps_mask(m, f, k->next_lo, _CMP_GE_OQ) &
                              _mm512_mask_cmp_ps_mask(m, f, k->next_hi, _CMP_LE_OQ);
        negative = (uint32_t)(uint16_t)(~pos & m);
    }
    if (a->residual) f = _mm512_add_ps(f, _mm512_maskz_loadu_ps(m, a->residual + pixel * a->residual_pixel_stride + c));
    _mm512_mask_storeu_ps(a->out + pixel * a->out_pixel_stride + c, m, f);
    if (final) {
        const __mmask16 pos = _mm512_mask_cmp_ps_mask(m, f, k->final_lo, _CMP_GE_OQ) &
                              _mm512_mask_cmp_ps_mask(m, f, k->final_hi, _CMP_LE_OQ);
        *final = (uint32_t)(uint16_t)(~pos & m);
    }
    return negative;
}

/* epilogue16_with, loading the constants itself (one pixel at a time). */
FA_TEPI FA_INLINE uint32_t epilogue16(const fa_conv_args *a, int64_t c, int64_t pixel, __m512i dot, __mmask16 m,
                                      uint32_t *final) {
    const epilogue_consts k = epilogue_load(a, c, m);
    return epilogue16_with(a, c, pixel, dot, m, &k, final);
}

FA_INLINE __mmask16 lanes16(int64_t left) {
    return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
}
#endif

#endif
