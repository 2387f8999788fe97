// Implicit GEMM: a convolution's forward as im2col + GEMM computes it, without the column matrix.
// im2col + GEMM (minires/plans/im2col_gemm.py) writes col (C*kh*kw, N*Ho*Wo), kh*kw times x's
// memory, then multiplies w (Cout, C/G*kh*kw) by it per group. Here each block stages slices of
// both GEMM operands in shared memory, the slice of col gathered from x as it is staged (the
// im2col index computed on the fly), so col never exists in global memory.
//
// Geometry and the image's strides sn, sc (NCHW or channel-major memory) as in im2col.cu.
#include "common.cuh"

#define CONV_TILE_N 64                                     // output positions per tile: 16 threads x CONV_MICRO
#define CONV_TILE_K 8                                      // GEMM depth staged in shared memory per step
#define CONV_MICRO 4                                       // a thread's outputs: CONV_MICRO x CONV_MICRO, in registers
#define CONV_TILE_M_MAX (MAX_BLOCK / 16 * CONV_MICRO)      // output channels per tile at most (blockDim.x / 16 * CONV_MICRO)

// Equals plans/im2col_gemm.py's forward before its bias (NumPy reference: kernels/im2col.py's im2col,
// then one matmul per group) to rounding: the sums are in another order.
// x (N, C, H, W) as in im2col.cu, w (Cout, C/G, kh, kw) C-contiguous -> y (Cout, N*Ho*Wo)
// C-contiguous (channel-major, as the reference's GEMM writes it), G = groups:
//     y[co, (n, oy, ox)] = sum over (c, i, j) of w[co, c, i, j] * x[n, g*C/G + c, tap (i, j) of (oy, ox)]
// for co in group g. Tiles: blockDim.x / 16 * CONV_MICRO output channels (of one group) x
// CONV_TILE_N output positions; grid (position tiles, groups x channel tiles), both grid-stride.
// blockDim.x: a multiple of 32 up to MAX_BLOCK. Each step stages a CONV_TILE_K-deep slice of w and
// of col in shared memory, then every thread adds its CONV_MICRO x CONV_MICRO products per k.
// Performance: the staged slices are read CONV_MICRO times less from global memory than a thread
// per output would; consecutive threads gather consecutive positions of x (coalesced when sw == 1)
// and write consecutive positions of y; a thread's outputs are CONV_MICRO apart in shared memory's
// rows, so a warp reads 16 consecutive values and one broadcast per k (no bank conflicts).
template <typename T>
__global__ void conv_implicit(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y, int N, int C,
                              int H, int W, long long sn, long long sc, int Cout, int groups, int kh, int kw,
                              int sh, int sw, int ph, int pw, int dh, int dw, int Ho, int Wo)
{
    __shared__ T ws[CONV_TILE_K][CONV_TILE_M_MAX];  // ws[k][m] = w[m0 + m, k0 + k]
    __shared__ T cs[CONV_TILE_K][CONV_TILE_N];      // cs[k][p] = col[k0 + k, p0 + p], gathered from x
    const int cg = C / groups, coutg = Cout / groups, taps = kh * kw, K = cg * taps, P = N * Ho * Wo;
    const int rows = blockDim.x / 16, tile_m = rows * CONV_MICRO;  // threads per column, channels per tile
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;        // the thread's outputs: tx + 16 v, ty + rows u
    const int m_tiles = (coutg + tile_m - 1) / tile_m;
    for (int t = blockIdx.y; t < groups * m_tiles; t += gridDim.y) {
        const int g = t / m_tiles, m0 = t % m_tiles * tile_m;
        const T* wg = w + (long long)(g * coutg + m0) * K;  // the tile's first weight row
        for (int p0 = blockIdx.x * CONV_TILE_N; p0 < P; p0 += gridDim.x * CONV_TILE_N) {
            T acc[CONV_MICRO][CONV_MICRO] = {};
            for (int k0 = 0; k0 < K; k0 += CONV_TILE_K) {
                for (int e = threadIdx.x; e < CONV_TILE_K * tile_m; e += blockDim.x) {
                    const int k = e % CONV_TILE_K, m = e / CONV_TILE_K;  // along a weight row: coalesced
                    ws[k][m] = k0 + k < K && m0 + m < coutg ? wg[(long long)m * K + k0 + k] : T(0);
                }
                for (int e = threadIdx.x; e < CONV_TILE_K * CONV_TILE_N; e += blockDim.x) {
                    const int k = e / CONV_TILE_N, q = e % CONV_TILE_N, r = k0 + k, pos = p0 + q;
                    T v = T(0);
                    if (r < K && pos < P) {  // im2col's element (r, pos): channel c, tap (i, j), output (n, oy, ox)
                        const int c = g * cg + r / taps, i = r / kw % kh, j = r % kw;
                        const int n = pos / (Ho * Wo), oy = pos / Wo % Ho, ox = pos % Wo;
                        const int iy = oy * sh - ph + i * dh, ix = ox * sw - pw + j * dw;
                        if (0 <= iy && iy < H && 0 <= ix && ix < W)
                            v = x[n * sn + c * sc + (long long)iy * W + ix];
                    }
                    cs[k][q] = v;
                }
                __syncthreads();
                for (int k = 0; k < CONV_TILE_K; ++k) {
                    T a[CONV_MICRO], b[CONV_MICRO];
                    for (int u = 0; u < CONV_MICRO; ++u) {
                        a[u] = ws[k][ty + u * rows];
                        b[u] = cs[k][tx + u * 16];
                    }
                    for (int u = 0; u < CONV_MICRO; ++u)
                        for (int v = 0; v < CONV_MICRO; ++v)
                            acc[u][v] += a[u] * b[v];
                }
                __syncthreads();  // the next step overwrites the slices
            }
            for (int u = 0; u < CONV_MICRO; ++u) {
                const int m = m0 + ty + u * rows;
                for (int v = 0; v < CONV_MICRO; ++v) {
                    const int pos = p0 + tx + v * 16;
                    if (m < coutg && pos < P)
                        y[(long long)(g * coutg + m) * P + pos] = acc[u][v];
                }
            }
        }
    }
}
