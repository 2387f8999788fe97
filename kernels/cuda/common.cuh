// Helpers shared by the kernel families: block reductions with warp shuffles.
//
// Every .cu file includes this header; the loader (kernels/cuda/__init__.py) pastes it in before
// compiling, so NVRTC, CuPy's compile cache and the CPU shim all see one self-contained text.
//
// Conventions of all kernels here:
// - arrays are C-contiguous; integer geometry comes as int (32-bit index arithmetic is several
//   times cheaper on the GPU than 64-bit), element counts and strides that can pass 2^31 as
//   long long;
// - every kernel is a template over the element type T (float or double); a reduction
//   accumulates in double, as the Numba kernels do;
// - loops are grid-stride loops, so any grid covers any size; the launcher picks the grid.

#define WARP_SIZE 32
#define MAX_BLOCK 1024

#ifndef INFINITY  // NVRTC has no <cmath>
#define INFINITY __int_as_float(0x7f800000)
#endif

// SHFL_DOWN(v, delta, lanes): lane l of the warp gets v of lane l + delta (its own v where
// l + delta is past the warp), as __shfl_down_sync over the full warp. On the GPU a register
// exchange; `lanes` (a __shared__ array of blockDim.x values) is unused. The CPU shim runs a
// block's threads as OS threads and has no warps, so there the exchange goes through `lanes`
// with a barrier on either side; every thread of the block must call it (as it must call
// __syncthreads). Both give the same values, so a reduction adds in the same order on both.
// SHUFFLE_LANES(A, name) declares that array where it is needed (MAX_BLOCK values on the CPU, none
// on the GPU, where it would cost shared memory and so occupancy).
#ifdef __CUDACC__
#define SHFL_DOWN(v, delta, lanes) __shfl_down_sync(0xffffffffu, (v), (delta))
#define SHUFFLE_LANES(A, name) A* const name = nullptr
#else
#define SHFL_DOWN(v, delta, lanes) shfl_down_through_shared((v), (delta), (lanes))
#define SHUFFLE_LANES(A, name) __shared__ A name[MAX_BLOCK]

template <typename A>
__device__ A shfl_down_through_shared(A v, int delta, A* lanes)
{
    lanes[threadIdx.x] = v;
    __syncthreads();
    const bool inside = threadIdx.x % WARP_SIZE + delta < WARP_SIZE;
    const A r = inside ? lanes[threadIdx.x + delta] : v;
    __syncthreads();
    return r;
}
#endif

// The sum of v over the 32 lanes of each warp, in lane 0: a tree, offsets 16, 8, 4, 2, 1.
template <typename A>
__device__ A warp_sum(A v, A* lanes)
{
    for (int delta = WARP_SIZE / 2; delta > 0; delta /= 2)
        v += SHFL_DOWN(v, delta, lanes);
    return v;
}

// The sum of v over the block, returned to every thread. blockDim.x must be a multiple of 32, at
// most 1024; every thread must call it. Each warp sums its lanes, lane 0 puts the warp's sum in
// `partial` (32 slots), then warp 0 sums those. The order of additions depends only on blockDim.x,
// so the result is deterministic. `lanes` (SHUFFLE_LANES) serves SHFL_DOWN's CPU fallback.
template <typename A>
__device__ A block_sum(A v, A* partial, A* lanes)
{
    const int lane = threadIdx.x % WARP_SIZE, warp = threadIdx.x / WARP_SIZE;
    v = warp_sum(v, lanes);
    if (lane == 0)
        partial[warp] = v;
    __syncthreads();
    v = threadIdx.x < blockDim.x / WARP_SIZE ? partial[threadIdx.x] : A(0);
    v = warp_sum(v, lanes);  // all warps, though only warp 0's sum counts: the CPU fallback's barriers need every thread
    if (threadIdx.x == 0)
        partial[0] = v;
    __syncthreads();
    v = partial[0];
    __syncthreads();  // partial may be reused by the next call
    return v;
}
