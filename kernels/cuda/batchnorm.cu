// Batch norm over (N, C, L) maps (an NCHW map is (N, C, H*W)), as kernels/batchnorm.py:
// xhat = (x - mean) * invstd, y = weight * xhat + bias, per-channel vectors (C,).
//
// A map is addressed through element strides sn between images and sc between channels, with each
// image's L values of a channel contiguous: sn = C*L, sc = L for NCHW memory; sn = L, sc = N*L for
// channel-major (C, N, L) memory (kernels/_layout.py). Outputs (y, gx) share their input's layout.
// weight and bias are arrays (the caller passes ones and zeros for an affine-free norm).
#include "common.cuh"

// The value of channel c at its k-th position, k = n*L + l (images outer).
template <typename T>
__device__ __forceinline__ long long channel_offset(int c, int k, int L, long long sn, long long sc)
{
    return c * sc + (k / L) * sn + k % L;
}

// Equals kernels/batchnorm.py's bn_stats (NumPy reference) within rounding, plus invstd as in
// bn_train_forward: stats (3, C) = mean, biased var, invstd = 1 / sqrt(var + eps), in T; the sums
// in double, two passes (the mean, then the squared deviations from it) for accuracy.
// One block per channel (grid-stride over channels), blockDim.x a multiple of 32; its threads
// stride through the channel's N*L values (consecutive threads read consecutive values: coalesced)
// and block_sum adds their partial sums with warp shuffles. A channel's values must number < 2^31.
template <typename T>
__global__ void bn_stats(const T* __restrict__ x, T* __restrict__ stats, int N, int C, int L, long long sn,
                         long long sc, T eps)
{
    __shared__ double partial[WARP_SIZE];
    SHUFFLE_LANES(double, lanes);
    const int m = N * L;
    for (int c = blockIdx.x; c < C; c += gridDim.x) {
        double s = 0;
        for (int k = threadIdx.x; k < m; k += blockDim.x)
            s += x[channel_offset<T>(c, k, L, sn, sc)];
        const double mean = block_sum(s, partial, lanes) / m;
        double q = 0;
        for (int k = threadIdx.x; k < m; k += blockDim.x) {
            const double d = x[channel_offset<T>(c, k, L, sn, sc)] - mean;
            q += d * d;
        }
        const double var = block_sum(q, partial, lanes) / m;
        if (threadIdx.x == 0) {
            stats[c] = T(mean);
            stats[C + c] = T(var);
            stats[2 * C + c] = T(1) / sqrt(T(var) + eps);
        }
    }
}

// Equals kernels/batchnorm.py's bn_forward (NumPy reference) within rounding (the GPU fuses the
// multiply-add): y = x * scale + shift with scale = weight * invstd, shift = bias - mean * scale,
// plus residual (x's layout) if add, then max(y, 0) if relu (a NaN stays NaN, as np.maximum).
// One thread per element in memory order, flat grid-stride loop (coalesced reads and writes); the
// channel of element e is (e / sc) % C in either layout.
template <typename T>
__global__ void bn_forward(const T* __restrict__ x, const T* __restrict__ mean, const T* __restrict__ invstd,
                           const T* __restrict__ weight, const T* __restrict__ bias,
                           const T* __restrict__ residual, T* __restrict__ y, long long total, int C,
                           long long sc, bool add, bool relu)
{
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
         e += (long long)blockDim.x * gridDim.x) {
        const int c = (int)(e / sc % C);
        const T scale = weight[c] * invstd[c], shift = bias[c] - mean[c] * scale;
        T v = x[e] * scale + shift;
        if (add)
            v += residual[e];
        y[e] = relu && v < T(0) ? T(0) : v;
    }
}

// Equals kernels/batchnorm.py's bn_backward (NumPy reference) within rounding, with scale and shift
// as in bn_forward and g = gy, or (relu) gy where x * scale + shift > 0 else 0:
// gbias = sum(g), gweight = sum(g * (x - mean)) * invstd (sums over N and L, in double), and
// gx = scale * (g - gbias/m - (x - mean) * invstd^2 * sum(g * (x - mean))/m) in training,
// gx = scale * g in eval (the statistics are constants there).
// One block per channel, as bn_stats: a pass for the two sums (block_sum), a pass writing gx.
template <typename T>
__global__ void bn_backward(const T* __restrict__ gy, const T* __restrict__ x, const T* __restrict__ mean,
                            const T* __restrict__ invstd, const T* __restrict__ weight,
                            const T* __restrict__ bias, T* __restrict__ gx, T* __restrict__ gweight,
                            T* __restrict__ gbias, int N, int C, int L, long long sn, long long sc,
                            bool training, bool relu)
{
    __shared__ double partial[WARP_SIZE];
    SHUFFLE_LANES(double, lanes);
    const int m = N * L;
    for (int c = blockIdx.x; c < C; c += gridDim.x) {
        const T mu = mean[c], scale = weight[c] * invstd[c], shift = bias[c] - mu * scale;
        double sg = 0, sgx = 0;
        for (int k = threadIdx.x; k < m; k += blockDim.x) {
            const long long o = channel_offset<T>(c, k, L, sn, sc);
            const T g = !relu || x[o] * scale + shift > T(0) ? gy[o] : T(0);
            sg += g;
            sgx += g * double(x[o] - mu);
        }
        sg = block_sum(sg, partial, lanes);
        sgx = block_sum(sgx, partial, lanes);
        if (threadIdx.x == 0) {
            gbias[c] = T(sg);
            gweight[c] = T(sgx * invstd[c]);
        }
        const T k0 = T(-scale * sg / m), k1 = T(-scale * invstd[c] * invstd[c] * sgx / m);
        for (int k = threadIdx.x; k < m; k += blockDim.x) {
            const long long o = channel_offset<T>(c, k, L, sn, sc);
            const T g = !relu || x[o] * scale + shift > T(0) ? gy[o] : T(0);
            gx[o] = training ? scale * g + k0 + k1 * (x[o] - mu) : scale * g;
        }
    }
}
