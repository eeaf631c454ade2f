// Fused preprocessing for the TensorRT path: letterbox (bilinear resize + pad),
// colour conversion to RGB, x/255 and HWC->CHW for a whole batch in ONE launch.
//
// The arithmetic is the reference one (inspector/pipeline/preprocess.py: reference_tensor):
//   * OpenCV INTER_LINEAR geometry: half-pixel centres,
//       src = (dst + 0.5) * (src_size / dst_size) - 0.5,
//     left/top taps clamped to [0, size-1] with the weight set to 0 at the
//     borders (exactly what cv::resize does for INTER_LINEAR);
//   * bilinear blend in float32, rounded to the nearest integer (halves up),
//     i.e. the u8 value the CPU path produces, then divided by 255;
//   * pixels outside the letterboxed rectangle get pad_value / 255.
// OpenCV blends u8 with 11-bit fixed-point weights (INTER_RESIZE_COEF_BITS), so
// a value can land one level away from this float blend: the tolerance against
// reference_tensor is 1/255 per element (fp16 output: plus 2^-11, one fp16 step
// at 1.0, since k/255 is not representable). Integer-ratio resizes (640->320,
// 1920x1080->320x180) match OpenCV exactly. inspector/pipeline/gpu/emulate.py repeats this
// file's arithmetic in numpy, operation by operation; the tests hold it to the
// reference on the CPU, and check_kernel.py holds this kernel to both.
//
// Every float operation below is an explicit round-to-nearest intrinsic
// (__fadd_rn, __fmul_rn, ...): the compiler may not contract them into FMAs,
// so the result does not depend on -fmad or on the compiler (nvcc or NVRTC).
//
// Bayer frames are demosaiced on the host (cv2, the same call the reference
// makes) and arrive here as BGR8; this kernel never sees a mosaic.
//
// Keep in sync with inspector/pipeline/gpu/kernel.py: the LB_* defines, the LbItem
// layout and the kernel signature are parsed from this file by the host code
// and by tests/gpu/test_gpu_cpu_side.py.

// cuda_fp16.h when the compiler can find it (nvcc always; NVRTC only with the
// toolkit's include dir); otherwise the one instruction __float2half_rn is.
#if defined(__has_include)
#if __has_include(<cuda_fp16.h>)
#include <cuda_fp16.h>
#define LB_HAVE_CUDA_FP16 1
#endif
#endif

#define LB_FMT_GRAY 0
#define LB_FMT_RGB 1
#define LB_FMT_BGR 2
#define LB_FMT_RGBA 3
#define LB_FMT_BGRA 4
#define LB_ROUND_TO_U8 1
#define LB_BLOCK_X 32
#define LB_BLOCK_Y 8

// One batch item: where its pixels are in the staging buffer and how they map
// into the model input. 56 bytes, 8-byte aligned (numpy: kernel.ITEM_DTYPE).
struct LbItem {
    unsigned long long src_offset;  // bytes from src_base to the uploaded frame's first row
    int src_pitch;                  // bytes per row of the uploaded frame
    int src_w;                      // width of the region that is letterboxed (the tile, or the frame)
    int src_h;                      // height of that region
    int tile_x0;                    // region origin inside the uploaded frame
    int tile_y0;
    int format;                     // LB_FMT_*
    float scale_x;                  // src_w / new_w (OpenCV's per-axis scale, not Letterbox.scale)
    float scale_y;                  // src_h / new_h
    int pad_x;                      // letterboxed rectangle inside the model input
    int pad_y;
    int new_w;
    int new_h;
};

// One axis of OpenCV's INTER_LINEAR mapping: left tap, right tap, right weight.
__device__ __forceinline__ void lb_axis(int d, float scale, int size, int* i0, int* i1, float* w) {
    float f = __fsub_rn(__fmul_rn(__fadd_rn((float)d, 0.5f), scale), 0.5f);
    float fl = floorf(f);
    int s = (int)fl;
    float a = __fsub_rn(f, fl);
    if (s < 0) {
        s = 0;
        a = 0.0f;
    }
    if (s >= size - 1) {
        s = size - 1;
        a = 0.0f;
    }
    *i0 = s;
    *i1 = min(s + 1, size - 1);
    *w = a;
}

__device__ __forceinline__ float lb_lerp(float p0, float p1, float a) {
    return __fadd_rn(__fmul_rn(p0, __fsub_rn(1.0f, a)), __fmul_rn(p1, a));
}

__device__ __forceinline__ float lb_finish(float v) {
#if LB_ROUND_TO_U8
    // the nearest u8 level, halves up: what OpenCV's fixed-point "+ half, >> bits"
    // gives, so integer-ratio resizes (640->320, 1920->320) match it exactly
    v = floorf(__fadd_rn(v, 0.5f));
#endif
    return __fdiv_rn(fminf(fmaxf(v, 0.0f), 255.0f), 255.0f);
}

__device__ __forceinline__ void lb_store(void* out, size_t idx, float v, int out_fp16) {
    if (out_fp16) {
#ifdef LB_HAVE_CUDA_FP16
        reinterpret_cast<__half*>(out)[idx] = __float2half_rn(v);
#else
        unsigned short h;
        asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
        reinterpret_cast<unsigned short*>(out)[idx] = h;
#endif
    } else {
        reinterpret_cast<float*>(out)[idx] = v;
    }
}

// Grid: (ceil(out_w / LB_BLOCK_X), ceil(out_h / LB_BLOCK_Y), batch); block: (LB_BLOCK_X, LB_BLOCK_Y, 1).
// One thread per output pixel (b, y, x), writing its three channels at
// out + b*3*H*W + c*H*W + y*W + x (c = 0 R, 1 G, 2 B).
extern "C" __global__ void letterbox_batch(const unsigned char* __restrict__ src_base,
                                           const LbItem* __restrict__ items,
                                           void* __restrict__ out,
                                           int out_w,
                                           int out_h,
                                           int pad_value,
                                           int out_fp16) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    const int b = blockIdx.z;
    if (x >= out_w || y >= out_h) {
        return;
    }
    const LbItem it = items[b];
    const size_t plane = (size_t)out_w * (size_t)out_h;
    const size_t base = (size_t)b * 3 * plane + (size_t)y * out_w + x;

    const int dx = x - it.pad_x;
    const int dy = y - it.pad_y;
    if (dx < 0 || dy < 0 || dx >= it.new_w || dy >= it.new_h) {
        const float pad = __fdiv_rn((float)pad_value, 255.0f);
        lb_store(out, base, pad, out_fp16);
        lb_store(out, base + plane, pad, out_fp16);
        lb_store(out, base + 2 * plane, pad, out_fp16);
        return;
    }

    int x0, x1, y0, y1;
    float ax, ay;
    lb_axis(dx, it.scale_x, it.src_w, &x0, &x1, &ax);
    lb_axis(dy, it.scale_y, it.src_h, &y0, &y1, &ay);

    int ch;      // bytes per source pixel
    int r_idx;   // source channel holding R (B is 2 - r_idx, G is 1)
    switch (it.format) {
        case LB_FMT_GRAY: ch = 1; r_idx = 0; break;
        case LB_FMT_RGB: ch = 3; r_idx = 0; break;
        case LB_FMT_BGR: ch = 3; r_idx = 2; break;
        case LB_FMT_RGBA: ch = 4; r_idx = 0; break;
        default: ch = 4; r_idx = 2; break;  // LB_FMT_BGRA
    }

    const unsigned char* src = src_base + it.src_offset;
    const unsigned char* row0 = src + (size_t)(it.tile_y0 + y0) * it.src_pitch;
    const unsigned char* row1 = src + (size_t)(it.tile_y0 + y1) * it.src_pitch;
    const int c0 = (it.tile_x0 + x0) * ch;
    const int c1 = (it.tile_x0 + x1) * ch;

    if (ch == 1) {
        const float top = lb_lerp((float)row0[c0], (float)row0[c1], ax);
        const float bot = lb_lerp((float)row1[c0], (float)row1[c1], ax);
        const float v = lb_finish(lb_lerp(top, bot, ay));
        lb_store(out, base, v, out_fp16);
        lb_store(out, base + plane, v, out_fp16);
        lb_store(out, base + 2 * plane, v, out_fp16);
        return;
    }
#pragma unroll
    for (int c = 0; c < 3; ++c) {
        const int s = (c == 1) ? 1 : (c == 0 ? r_idx : 2 - r_idx);
        const float top = lb_lerp((float)row0[c0 + s], (float)row0[c1 + s], ax);
        const float bot = lb_lerp((float)row1[c0 + s], (float)row1[c1 + s], ax);
        lb_store(out, base + c * plane, lb_finish(lb_lerp(top, bot, ay)), out_fp16);
    }
}
