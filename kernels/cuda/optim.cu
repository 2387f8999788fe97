// Optimizer updates in place over n elements of a parameter and its state (contiguous; one
// parameter, or all of them flattened into one buffer: one launch for the whole model). Scalars
// come in the parameter's type T, computed by the caller from the hyperparameters as named below.
// One thread per element, flat grid-stride loop: each array read once and written once, coalesced.
#include "common.cuh"

// Equals kernels/optim.py's sgd_update (NumPy reference) within rounding (the GPU fuses
// multiply-adds), the same operations in the same order:
// d = grad + weight_decay * p; with momentum != 0: buf = d on the first step, else
// buf = momentum * buf + keep * d (keep = 1 - dampening), and d = d + momentum * buf (nesterov) or
// buf; then p -= lr * d. Without momentum buf is never touched (the caller may pass p).
template <typename T>
__global__ void sgd_update(T* p, const T* __restrict__ grad, T* buf, long long n, T lr, T momentum, T keep,
                           T weight_decay, bool nesterov, bool first)
{
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < n; e += (long long)blockDim.x * gridDim.x) {
        T d = weight_decay != T(0) ? grad[e] + weight_decay * p[e] : grad[e];
        if (momentum != T(0)) {
            const T b = first ? d : buf[e] * momentum + keep * d;
            buf[e] = b;
            d = nesterov ? d + momentum * b : b;
        }
        p[e] -= lr * d;
    }
}

// Equals minires/optim/adamw.py's AdamW.update (NumPy reference, torch.optim.AdamW) within
// rounding, step t counted from 1, the same operations in the same order:
// p *= decay (= 1 - lr * weight_decay); m = beta1 * m + (1 - beta1) * grad;
// v = beta2 * v + (1 - beta2) * grad * grad; with amsgrad vmax = max(vmax, v) (NaN wins, as
// np.maximum) takes v's place below (else vmax is unused: the caller may pass v);
// p -= step_size * m / (sqrt(v) / root2 + eps) with step_size = lr / (1 - beta1^t),
// root2 = sqrt(1 - beta2^t).
template <typename T>
__global__ void adamw_update(T* __restrict__ p, const T* __restrict__ grad, T* __restrict__ m, T* v, T* vmax,
                             long long n, T decay, T beta1, T one_minus_beta1, T beta2, T one_minus_beta2,
                             T step_size, T root2, T eps, bool amsgrad)
{
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < n; e += (long long)blockDim.x * gridDim.x) {
        const T g = grad[e];
        const T pe = p[e] * decay;
        const T me = m[e] * beta1 + one_minus_beta1 * g;
        T ve = v[e] * beta2 + one_minus_beta2 * g * g;
        m[e] = me;
        v[e] = ve;
        if (amsgrad) {
            const T w = vmax[e];
            ve = w > ve || isnan(w) ? w : ve;
            vmax[e] = ve;
        }
        p[e] = pe - step_size * me / (sqrt(ve) / root2 + eps);
    }
}
