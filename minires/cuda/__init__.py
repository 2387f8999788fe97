"""minires on the GPU (CuPy and our CUDA kernels). Placeholder: its content comes with issue 15."""
