// The CPU shim: just enough of CUDA's C++ dialect for kernels/cuda/*.cu to compile with g++ and run
// on the CPU, for testing them without a GPU (tests/cuda_cpu/launch.py includes it first).
//
// Execution model. A launch runs its blocks one after another. A block's threads are real OS
// threads (blockDim of them, from a pool kept for the next launch of that block size, and reused
// for every block), so that __syncthreads can be a real barrier (std::barrier) and a kernel that
// forgets one shows it as a wrong result. Each thread sees its own
// threadIdx and blockIdx (thread_local); blockDim and gridDim are the launch's. __shared__ becomes
// static: one copy per kernel, which is per block because blocks run one at a time (a barrier
// ends each block before the next starts). There are no warps: warp shuffles go through
// common.cuh's SHFL_DOWN, whose CPU form exchanges through shared memory.
//
// Rules this imposes (all also CUDA's): every thread of a block reaches each __syncthreads (no
// early return before one), and shared memory is sized statically (no dynamic shared memory).
#pragma once

#include <barrier>
#include <cmath>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static

struct uint3 { unsigned x, y, z; };
struct dim3 { unsigned x, y, z; };

inline thread_local uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

using std::isnan;
using std::sqrt;

namespace shim {

inline std::barrier<>* block_barrier;

// The kernel parameter types as characters (NumPy's type codes), so that the launcher can check
// each argument it passes against the parameter it lands in.
template <typename A>
constexpr char type_code()
{
    if constexpr (std::is_pointer_v<A>) return 'p';
    else if constexpr (std::is_same_v<A, bool>) return '?';
    else if constexpr (std::is_same_v<A, int>) return 'i';
    else if constexpr (std::is_same_v<A, long long>) return 'q';
    else if constexpr (std::is_same_v<A, float>) return 'f';
    else if constexpr (std::is_same_v<A, double>) return 'd';
    else static_assert(!sizeof(A), "kernel parameter of a type the shim cannot pass");
}

template <typename... Args>
const char* signature(void (*)(Args...))
{
    static constexpr char codes[] = {type_code<Args>()..., '\0'};
    return codes;
}

// The OS threads of one block size, kept from launch to launch (starting threads for every launch
// cost more than most kernels here). run(job) has worker t call job(t), and returns when all have.
class Pool {
public:
    explicit Pool(unsigned threads) : gate_(threads + 1), block(threads)
    {
        for (unsigned t = 0; t < threads; ++t)
            workers_.emplace_back([this, t] {
                for (gate_.arrive_and_wait(); !closing_; gate_.arrive_and_wait()) {  // a launch starts
                    job_(t);
                    gate_.arrive_and_wait();  // and ends
                }
            });
    }
    ~Pool()
    {
        closing_ = true;
        gate_.arrive_and_wait();  // the workers wake, see closing_, and return
    }
    void run(std::function<void(unsigned)> job)
    {
        job_ = std::move(job);
        gate_.arrive_and_wait();
        gate_.arrive_and_wait();
    }

private:
    std::barrier<> gate_;
    std::function<void(unsigned)> job_;
    bool closing_ = false;
    std::vector<std::jthread> workers_;

public:
    std::barrier<> block;  // the block's threads, for __syncthreads and the end of each block
};

inline Pool& pool(unsigned threads)
{
    static std::map<unsigned, std::unique_ptr<Pool>> pools;
    auto& p = pools[threads];
    if (!p)
        p = std::make_unique<Pool>(threads);
    return *p;
}

// kernel<<<grid, block>>>(args) with args as cuLaunchKernel takes them: args[k] points to the
// value of parameter k.
template <typename... Args>
void launch(void (*kernel)(Args...), const unsigned* grid, const unsigned* block, void** args)
{
    auto values = [&]<std::size_t... K>(std::index_sequence<K...>) {
        return std::tuple<Args...>(*static_cast<Args*>(args[K])...);
    }(std::index_sequence_for<Args...>{});
    gridDim = {grid[0], grid[1], grid[2]};
    blockDim = {block[0], block[1], block[2]};
    Pool& threads = pool(block[0] * block[1] * block[2]);
    block_barrier = &threads.block;
    threads.run([&](unsigned t) {
        threadIdx = {t % block[0], t / block[0] % block[1], t / (block[0] * block[1])};
        for (unsigned z = 0; z < grid[2]; ++z)
            for (unsigned y = 0; y < grid[1]; ++y)
                for (unsigned x = 0; x < grid[0]; ++x) {
                    blockIdx = {x, y, z};
                    std::apply(kernel, values);
                    block_barrier->arrive_and_wait();  // the block ends: its shared memory is free
                }
    });
}

}  // namespace shim

inline void __syncthreads() { shim::block_barrier->arrive_and_wait(); }
