/* Bit-packed binary convolution (thesis ch. 5, eq. 5.1-5.2) for fa_lib.kernels.
 *
 * Conventions shared by every function here (the "binary layer rule" of fa_lib):
 *   - sign(v) = +1 if v >= 0 else -1 (a comparison, so -0.0 -> +1; NaN -> -1).
 *   - A packed word holds 64 channels; bit j set <=> channel 64*w + j is -1.  Unused high bits of the last
 *     word are 0 in activations and weights, so they never count in the popcount.
 *   - Activations are packed channels-last into a zero-bit padded buffer
 *     uint64[N][H + 2*pad][W + 2*pad][CW], CW = ceil(C / 64).  The padding bits read as +1, and the
 *     convolution subtracts their contribution again (border correction), so the result equals a conv with
 *     ZERO padding applied after the sign.
 *   - Weights are blocked: uint64[CB][K*K][CW][32] (CB = ceil(Cout / 32), one output channel per 64-bit
 *     SIMD lane), with tapsum int64[CB][K*K][32] = sum over input channels of sign(W[c, :, tap]).
 *   - Output (float, channels-last): out[((n*H + y)*W + x)*out_pixel_stride + c] for c < Cout, i.e. the
 *     caller passes a pointer already advanced by the channel offset of a larger (concatenated) tensor.
 *     Value = alpha[c] * (K*K*Cin - 2*popcount - border_correction), or the plain integer if alpha == NULL.
 * All entry points return 0 on success and a negative code on bad arguments / unsupported ISA.
 */
#ifndef FA_XNOR_H
#define FA_XNOR_H
#include <stdint.h>

#define FA_ISA_SCALAR 0
#define FA_ISA_AVX2 1
#define FA_ISA_AVX512 2
#define FA_ISA_AMX 3 /* Intel AMX int8 tiles (xnor_amx.c): the +-1 products as an int8 matrix product */
#define FA_BLOCK 32

#define FA_OK 0
#define FA_ERR_ISA -1
#define FA_ERR_ARG -2

typedef struct {
    const uint64_t *act;     /* packed activations, [N][H+2*pad_in][W+2*pad_in][CW] */
    int64_t n, h, w;         /* batch and output spatial size (stride 1, "same" size) */
    int64_t cin, cw;         /* input channels and words per pixel */
    int64_t pad_in;          /* padding of the packed buffer, >= (k-1)/2 */
    const uint64_t *weights; /* blocked weights [CB][k*k][CW][32] */
    const int64_t *tapsum;   /* [CB][k*k][32] */
    const float *alpha;      /* [Cout] or NULL for the integer result */
    int64_t cout, k;         /* output channels, odd kernel size */
    float *out;              /* first output channel of pixel (0,0,0) */
    int64_t out_pixel_stride;/* floats between consecutive pixels of out */
    /* Optional fused epilogue (all may be 0/NULL).  Per output value v = alpha * dot:
     *   relu:     v = max(v, 0)                      (ReLU after the conv, thesis Table 5.9)
     *   next_*:   the sign bit of v under the next layer's thresholds (+1 iff next_lo <= v <= next_hi)
     *             is written into next_bits [N][H+2*next_pad][W+2*next_pad][next_cw] at channel
     *             next_channel_offset + c (a multiple of 32; the caller zeroes the buffer first)
     *   residual: out = v + residual[pixel * residual_pixel_stride + c] (may alias out: accumulate)
     * so that a hierarchical block's next layer needs no separate packing pass and its shortcut
     * no separate add. */
    int64_t relu;
    const float *residual;
    int64_t residual_pixel_stride;
    uint64_t *next_bits;
    int64_t next_cw, next_pad, next_channel_offset;
    const float *next_lo, *next_hi; /* indexed by the conv's output channel c */
    /* FA_ISA_AMX only (optional): the weights already expanded by fa_amx_pack_weights; when NULL they are
     * expanded from `weights` on every call. */
    const int8_t *weights_i8;
    /* Optional (0/NULL; not with FA_ISA_AMX): the sign bit of the value stored in out (after the residual)
     * under another threshold set, +1 iff final_lo <= out <= final_hi, written into final_bits laid out as
     * next_bits (final_cw, final_pad, final_channel_offset a multiple of 32), so that the block this block
     * feeds finds its input already packed. */
    uint64_t *final_bits;
    int64_t final_cw, final_pad, final_channel_offset;
    const float *final_lo, *final_hi; /* indexed by the conv's output channel c */
} fa_conv_args;

int fa_isa_supported(int isa);
int fa_best_isa(void);
int fa_has_openmp(void);
int fa_pack_activations(int isa, const float *x, int64_t n, int64_t h, int64_t w, int64_t c,
                        int64_t pixel_stride, const float *lo, const float *hi, int64_t pad,
                        uint64_t *out, int threads);
int fa_binary_conv(int isa, const fa_conv_args *args, int threads);

/* One hierarchical block (thesis Fig. 5.1b) in one call, so that no Python runs between its layers:
 * the block input x (channels-last, pixel_stride floats per pixel) is packed once under each of the
 * npacks threshold sets (the first convolution's BN + sign, and a 1x1 projection shortcut's), then the
 * nconvs convolutions run in order.  The caller wires the arguments: each conv's act is one of the
 * packs' bits or an earlier conv's next_bits (fused epilogue packing), its out is the block output's
 * channel slice, its residual the shortcut (or the slice the projection wrote: accumulate).  A pack's
 * bits buffer has its padding ring zeroed by the caller (once: only the interior is written). */
typedef struct {
    const float *lo, *hi; /* [c]; lo NULL: bits already hold the packed input (a previous block's final_bits) */
    uint64_t *bits;       /* [N][H+2*pad][W+2*pad][ceil(c/64)] */
    int64_t pad;
} fa_pack_target;

int fa_block_forward(int isa, const float *x, int64_t n, int64_t h, int64_t w, int64_t c, int64_t pixel_stride,
                     const fa_pack_target *packs, int64_t npacks, const fa_conv_args *convs, int64_t nconvs,
                     int threads);
/* With one thread fa_block_forward interleaves its convolutions row by row (a layer a few rows behind its
 * producer, so that the rows it reads are still in cache); 1 here runs them layer by layer instead (the
 * multi-threaded and AMX way; for tests and timing).  Returns the previous setting. */
extern int fa_block_layer_by_layer;
/* The AVX2 kernel splits each 32-channel block between the vector look-up (24 channels) and scalar POPCNT
 * (8) on AMD cores: -1 decides by the CPU (the default), 0 forces the look-up only, 1 the split.  Both give
 * the same integers.  Returns the previous setting. */
int fa_set_avx2_mixed(int setting);
int fa_set_block_layer_by_layer(int on);

/* AMX path (xnor_amx.c).  fa_amx_weights_size: bytes of the expanded weights of a (cout, cin, k, k) conv;
 * fa_amx_pack_weights expands the blocked bits (layout above) into them. */
int fa_amx_supported(void);
int fa_amx_weights_size(int64_t cout, int64_t cin, int64_t k);
int fa_amx_pack_weights(const uint64_t *blocked, int64_t cout, int64_t cin, int64_t k, int8_t *out);
int fa_amx_binary_conv(const fa_conv_args *args, int threads);
/* FA_ISA_AMX sends maps with fewer than this many pixels (N*H*W, default 32) to the AVX-512 kernel;
 * returns the previous value (tests set 0 to exercise the tile kernel on tiny shapes). */
extern int fa_amx_min_pixels;
/* Runs steps x 4 tile products (16x16x64 int8 MACs each) with no memory traffic, for timing the unit. */
int fa_amx_peak(int64_t steps);
int fa_amx_set_min_pixels(int pixels);

#endif
