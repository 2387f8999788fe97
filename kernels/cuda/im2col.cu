// im2col and col2im: the unfold of a convolution's sliding windows into one GEMM operand, and its
// adjoint. Geometry as kernels/im2col.py: tap (i, j) of output (y, x) reads input row
// y*sh - ph + i*dh, column x*sw - pw + j*dw (zero outside the image).
//
// The image x (N, C, H, W) is addressed through two element strides, sn between images and sc
// between channels, with each H x W plane contiguous: sn = C*H*W, sc = H*W for NCHW memory,
// sn = H*W, sc = N*H*W for channel-major (C, N, H, W) memory (kernels/_layout.py). Any other
// strides are made contiguous by the caller.
//
// Groups need nothing here: col's rows are ordered (c, i, j), so group g's rows are the
// contiguous block [g*Cg*kh*kw, (g+1)*Cg*kh*kw) and its GEMM takes that slice.
#include "common.cuh"

// Equals kernels/im2col.py's im2col (NumPy reference), bit for bit: a copy.
// x as above -> col (C*kh*kw, N*Ho*Wo), C-contiguous: col[(c, i, j), (n, y, x)] = x[n, c, tap].
// One thread per col element; grid (columns / blockDim.x, rows), both grid-stride. Performance:
// consecutive threads write consecutive col columns (coalesced writes, the larger stream: col is
// kh*kw times x) and read consecutive input columns when sw == 1; the row index comes from
// blockIdx.y, so a thread divides only its column index.
template <typename T>
__global__ void im2col(const T* __restrict__ x, T* __restrict__ col, int N, int C, int H, int W,
                       long long sn, long long sc, int kh, int kw, int sh, int sw, int ph, int pw,
                       int dh, int dw, int Ho, int Wo)
{
    const int rows = C * kh * kw, cols = N * Ho * Wo;
    for (int r = blockIdx.y; r < rows; r += gridDim.y) {
        const int c = r / (kh * kw), i = r / kw % kh, j = r % kw;
        const T* plane = x + c * sc;
        T* out = col + (long long)r * cols;
        for (int k = blockIdx.x * blockDim.x + threadIdx.x; k < cols; k += blockDim.x * gridDim.x) {
            const int n = k / (Ho * Wo), y = k / Wo % Ho, xo = k % Wo;
            const int iy = y * sh - ph + i * dh, ix = xo * sw - pw + j * dw;
            const bool inside = 0 <= iy && iy < H && 0 <= ix && ix < W;
            out[k] = inside ? plane[n * sn + (long long)iy * W + ix] : T(0);
        }
    }
}

// Equals kernels/im2col.py's col2im (NumPy reference), bit for bit: col (C*kh*kw, N*Ho*Wo) ->
// gx (N, C, H, W) through strides sn, sc as x above (the reference returns channel-major memory).
// gx[n, c, iy, ix] = the sum over taps (i, j), in order, of col[(c, i, j), (n, y, x)] for the one
// output (y, x) (if any) whose tap (i, j) reads (iy, ix): y*sh = iy + ph - i*dh, likewise x.
// The reference adds tap by tap into zeros, so each element gets its terms in this same order.
// A gather: one thread per gx element, grid (plane elements / blockDim.x, planes), grid-stride.
// Performance: no two threads write one element, so no atomics; writes are coalesced; each thread
// reads kh*kw scattered col elements (consecutive threads read consecutive ones when sw == 1).
template <typename T>
__global__ void col2im(const T* __restrict__ col, T* __restrict__ gx, int N, int C, int H, int W,
                       long long sn, long long sc, int kh, int kw, int sh, int sw, int ph, int pw,
                       int dh, int dw, int Ho, int Wo)
{
    const int cols = N * Ho * Wo;
    for (int plane = blockIdx.y; plane < N * C; plane += gridDim.y) {
        const int c = plane / N, n = plane % N;
        T* out = gx + n * sn + c * sc;
        for (int k = blockIdx.x * blockDim.x + threadIdx.x; k < H * W; k += blockDim.x * gridDim.x) {
            const int ty0 = k / W + ph, tx0 = k % W + pw;  // input position in padded coordinates
            T acc = T(0);
            for (int i = 0; i < kh; ++i) {
                const int ty = ty0 - i * dh, y = ty / sh;
                if (ty < 0 || ty % sh != 0 || y >= Ho)
                    continue;
                for (int j = 0; j < kw; ++j) {
                    const int tx = tx0 - j * dw, xo = tx / sw;
                    if (tx < 0 || tx % sw != 0 || xo >= Wo)
                        continue;
                    const long long row = (long long)(c * kh + i) * kw + j;
                    acc += col[row * cols + (n * Ho + y) * Wo + xo];
                }
            }
            out[k] = acc;
        }
    }
}
