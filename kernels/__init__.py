"""Compute kernels: plain array-in/array-out functions, no autograd.

Installed as ``minires.kernels``. Every kernel has a NumPy reference (array-module generic) and may
have faster versions registered beside it; see ``_dispatch`` for how one is picked.
"""
from ._dispatch import Kernel
from .batchnorm import bn_backward, bn_forward, bn_stats, bn_train_forward
from .elementwise import add_relu, relu_backward
from .gemm import batched_matmul
from .optim import adamw_update, sgd_update
from .taps import taps_crop, taps_pad
from .toeplitz import toeplitz_taps, toeplitz_weight, toeplitz_weight_grad
from .im2col import col2im, conv_out_size, im2col
from .pooling import avgpool_backward, avgpool_forward, maxpool_backward, maxpool_forward
from ._scratch import pooled, recycle, release_scratch, scratch
from .winograd import (winograd_conv3x3, winograd_grad_output, winograd_grad_weights, winograd_input, winograd_output,
                       winograd_slots, winograd_tiles, winograd_weight_grad, winograd_weights)

__all__ = [
    "Kernel", "batched_matmul",
    "im2col", "col2im", "conv_out_size",
    "maxpool_forward", "maxpool_backward", "avgpool_forward", "avgpool_backward",
    "bn_stats", "bn_forward", "bn_train_forward", "bn_backward", "add_relu", "relu_backward", "sgd_update", "adamw_update",
    "taps_crop", "taps_pad", "toeplitz_taps", "toeplitz_weight", "toeplitz_weight_grad",
    "scratch", "pooled", "recycle", "release_scratch",
    "winograd_conv3x3", "winograd_weight_grad", "winograd_weights", "winograd_input", "winograd_output",
    "winograd_grad_output", "winograd_grad_weights", "winograd_tiles", "winograd_slots",
]
