"""Running kernels/cuda/*.cu on the CPU: shim.h (CUDA's dialect for g++), launch.py (compile and call
with cupy.RawKernel's convention) and worker.py (the same in a child process under AddressSanitizer)."""
