// Max and average pooling, forward and backward, over P = N*C contiguous planes: x (P, H, W),
// y (P, Ho, Wo). Both memory layouts of an (N, C, H, W) map are such planes, in (n, c) or (c, n)
// order (kernels/_layout.py's to_planes), and a plane's output keeps its index, so the kernels never
// look at the layout. Geometry as kernels/pooling.py: tap (i, j) of output (oy, ox) reads row
// oy*sh - ph + i*dh, column ox*sw - pw + j*dw; taps outside the input are skipped, which is the
// reference's padding with -inf (max) or 0 (average). The caller computes Ho, Wo (ceil_mode
// included) and, for average pooling, the divisor (Ho, Wo) (kernels/pooling.py's avgpool_divisor).
//
// All four are one thread per output element (forward) or input element (backward: a gather, no
// atomics), over a 1-D grid-stride loop across all planes; consecutive threads write consecutive
// elements (coalesced).
#include "common.cuh"

// The first output (oy or ox) whose window's tap t (stride s, padding p, dilation d) is input
// position v, with a flag whether there is one: o*s = v + p - t*d.
__device__ __forceinline__ bool tap_output(int v, int t, int s, int p, int d, int count, int& o)
{
    const int u = v + p - t * d;
    o = u / s;
    return u >= 0 && u % s == 0 && o < count;
}

// Equals kernels/pooling.py's maxpool_forward (NumPy reference), bit for bit: y = the window's
// maximum, arg its tap i*kw + j (int32). Taps are visited in window order and a tap replaces the
// best only if greater, so the first maximum wins ties (PyTorch's rule); a NaN always replaces it
// (NaN is the maximum; the window's last NaN wins, as in the reference). An empty or all -inf
// window gives -inf and tap 0.
template <typename T>
__global__ void maxpool_forward(const T* __restrict__ x, T* __restrict__ y, int* __restrict__ arg,
                                long long P, int H, int W, int Ho, int Wo, int kh, int kw, int sh,
                                int sw, int ph, int pw, int dh, int dw)
{
    const long long total = P * Ho * Wo;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
         e += (long long)blockDim.x * gridDim.x) {
        const long long p = e / (Ho * Wo);
        const int oy = (int)(e / Wo % Ho), ox = (int)(e % Wo);
        const T* plane = x + p * H * W;
        T best = -T(INFINITY);
        int k = 0;
        for (int i = 0; i < kh; ++i) {
            const int iy = oy * sh - ph + i * dh;
            if (iy < 0 || iy >= H)
                continue;
            for (int j = 0; j < kw; ++j) {
                const int ix = ox * sw - pw + j * dw;
                if (ix < 0 || ix >= W)
                    continue;
                const T v = plane[iy * W + ix];
                if (v > best || isnan(v)) {
                    best = v;
                    k = i * kw + j;
                }
            }
        }
        y[e] = best;
        arg[e] = k;
    }
}

// Equals kernels/pooling.py's maxpool_backward (NumPy reference), bit for bit: gx (P, H, W) from
// gy, arg (P, Ho, Wo). gx[p, iy, ix] = the sum, over taps (i, j) in order, of gy at the one output
// whose tap (i, j) is (iy, ix), where that output's arg names tap (i, j). The reference adds tap
// by tap (its zero terms change no sum), so the order and the results are the same.
template <typename T>
__global__ void maxpool_backward(const T* __restrict__ gy, const int* __restrict__ arg, T* __restrict__ gx,
                                 long long P, int H, int W, int Ho, int Wo, int kh, int kw, int sh,
                                 int sw, int ph, int pw, int dh, int dw)
{
    const long long total = P * H * W;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
         e += (long long)blockDim.x * gridDim.x) {
        const long long p = e / (H * W);
        const int iy = (int)(e / W % H), ix = (int)(e % W);
        T acc = T(0);
        for (int i = 0; i < kh; ++i) {
            int oy;
            if (!tap_output(iy, i, sh, ph, dh, Ho, oy))
                continue;
            const long long row = (p * Ho + oy) * Wo;
            for (int j = 0; j < kw; ++j) {
                int ox;
                if (tap_output(ix, j, sw, pw, dw, Wo, ox) && arg[row + ox] == i * kw + j)
                    acc += gy[row + ox];
            }
        }
        gx[e] = acc;
    }
}

// Equals kernels/pooling.py's avgpool_forward (NumPy reference), bit for bit: y = (the sum of the
// window's taps inside the input, in tap order) / divisor[oy, ox] (the reference adds the padding's
// zeros too, which changes no sum).
template <typename T>
__global__ void avgpool_forward(const T* __restrict__ x, const T* __restrict__ divisor, T* __restrict__ y,
                                long long P, int H, int W, int Ho, int Wo, int kh, int kw, int sh,
                                int sw, int ph, int pw)
{
    const long long total = P * Ho * Wo;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
         e += (long long)blockDim.x * gridDim.x) {
        const long long p = e / (Ho * Wo);
        const int oy = (int)(e / Wo % Ho), ox = (int)(e % Wo);
        const T* plane = x + p * H * W;
        T sum = T(0);
        for (int i = 0; i < kh; ++i) {
            const int iy = oy * sh - ph + i;
            for (int j = 0; j < kw && 0 <= iy && iy < H; ++j) {
                const int ix = ox * sw - pw + j;
                if (0 <= ix && ix < W)
                    sum += plane[iy * W + ix];
            }
        }
        y[e] = sum / divisor[oy * Wo + ox];
    }
}

// Equals kernels/pooling.py's avgpool_backward (NumPy reference), bit for bit: gx[p, iy, ix] = the
// sum, over taps (i, j) in order, of gy / divisor at the one output whose tap (i, j) is (iy, ix).
template <typename T>
__global__ void avgpool_backward(const T* __restrict__ gy, const T* __restrict__ divisor, T* __restrict__ gx,
                                 long long P, int H, int W, int Ho, int Wo, int kh, int kw, int sh,
                                 int sw, int ph, int pw)
{
    const long long total = P * H * W;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
         e += (long long)blockDim.x * gridDim.x) {
        const long long p = e / (H * W);
        const int iy = (int)(e / W % H), ix = (int)(e % W);
        T acc = T(0);
        for (int i = 0; i < kh; ++i) {
            int oy;
            if (!tap_output(iy, i, sh, ph, 1, Ho, oy))
                continue;
            for (int j = 0; j < kw; ++j) {
                int ox;
                if (tap_output(ix, j, sw, pw, 1, Wo, ox))
                    acc += gy[(p * Ho + oy) * Wo + ox] / divisor[oy * Wo + ox];
            }
        }
        gx[e] = acc;
    }
}
