// The ReLU pieces of a residual block, as kernels/elementwise.py, over n elements of contiguous
// arrays of one layout (the caller flattens them in one memory order). One thread per element,
// flat grid-stride loop: coalesced, memory-bound (three streams each).
#include "common.cuh"

// Equals kernels/elementwise.py's add_relu (NumPy reference), bit for bit: out = a + b, 0 where that
// is < 0 (a NaN stays NaN, as np.maximum).
template <typename T>
__global__ void add_relu(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out, long long n)
{
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < n; e += (long long)blockDim.x * gridDim.x) {
        const T v = a[e] + b[e];
        out[e] = v < T(0) ? T(0) : v;
    }
}

// Equals kernels/elementwise.py's relu_backward (NumPy reference), bit for bit: gx = g where the
// ReLU's output out > 0, else 0 (also where g is inf or NaN).
template <typename T>
__global__ void relu_backward(const T* __restrict__ g, const T* __restrict__ out, T* __restrict__ gx, long long n)
{
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < n; e += (long long)blockDim.x * gridDim.x)
        gx[e] = out[e] > T(0) ? g[e] : T(0);
}
