"""The ops: each a Function with its forward and backward side by side, over plain arrays.
Heavy loops are not written here but called from minires.kernels, which dispatches by backend."""
