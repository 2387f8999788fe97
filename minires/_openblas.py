"""OpenBLAS's idle threads, told to sleep at once after a GEMM (set before NumPy loads OpenBLAS).

After each GEMM, OpenBLAS's worker threads wait for the next one by spinning (yielding) for 2^28
cycles, about 0.1 s, before they sleep; a Numba kernel that runs in that time shares the cores
with them. With convolutions' GEMMs and Numba kernels taking turns, that was 12-17% of a ResNet-50
training step on the 2-core development machine (A/B, three runs each). OPENBLAS_THREAD_TIMEOUT=4
(2^4 cycles) makes them sleep at once. OpenBLAS reads the variable when it is loaded, so this works
only when minires is imported before NumPy; otherwise set it in the environment yourself. A value
already set is kept. Imports nothing that loads NumPy.
"""
import os
import sys

THREAD_TIMEOUT = "4"

if "numpy" not in sys.modules:
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", THREAD_TIMEOUT)
