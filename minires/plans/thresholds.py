"""The numbers behind the plans' rules (choose() and the GPU's, minires/cuda), in one table. Each
speed threshold was measured against the plan it replaces on the development machine:
benchmarks/RESULTS.md, "Convolution plans". A memory threshold is a choice, not a measurement."""

THRESHOLDS = {
    # Winograd F(4x4, 3x3) pays only with enough tiles to amortize its transforms, and tiles mostly
    # inside the map: (least output side, least tile slots in the batch, least tile slots x input
    # channels, least fraction of the tiles' outputs inside the map)
    "winograd_inference": (4, 64, 0, 0.5),
    "winograd_training": (4, 64, 0, 0.5),
    # ... in training where the 36 GEMMs are one call per matrix (no batched BLAS GEMM here)
    "winograd_training_per_matrix": (8, 0, 160 * 256, 0),
    # the blocked im2col's most bytes of col per block of images (about an L2 cache or two)
    "im2col_block_bytes": 16 << 20,
    # a memory rule, on a GPU: above this many bytes of col for the batch, implicit GEMM (no col kept
    # from the forward to the backward) rather than im2col + GEMM
    "implicit_gemm_col_bytes": 256 << 20,
}
