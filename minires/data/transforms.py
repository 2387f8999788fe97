"""Batch transforms: each is a callable t(images, rng) -> images on a whole batch (N, C, H, W).

Each works on the whole batch in NumPy, never with a Python call per image, whose overhead would
outweigh the work on a small image. The random ones draw from the generator the DataLoader hands
them (one per pass, so a seed fixes the augmentation). Crop and flip work on the stored uint8
pixels, ToFloat then maps them to [0, 1] and Normalize standardizes each channel: the usual order,
as torchvision's RandomCrop, RandomHorizontalFlip, ToTensor, Normalize.
"""
import numpy as np


class Compose:
    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, images, rng=None):
        for t in self.transforms:
            images = t(images, rng)
        return images

    def __repr__(self):
        return f"Compose({', '.join(map(repr, self.transforms))})"


class RandomCrop:
    """Zero-pad each side by ``padding``, then cut a size x size window at a random place per image."""

    def __init__(self, size, padding=0):
        if size < 1 or padding < 0:
            raise ValueError(f"RandomCrop: needs size >= 1 and padding >= 0, got size={size}, padding={padding}")
        self.size, self.padding = size, padding

    def __call__(self, images, rng):
        n, _, h, w = images.shape
        p, s = self.padding, self.size
        if h + 2 * p < s or w + 2 * p < s:
            raise ValueError(f"RandomCrop: a {s}x{s} crop does not fit images {h}x{w} padded by {p}")
        padded = np.pad(images, ((0, 0), (0, 0), (p, p), (p, p)))
        top = rng.integers(0, h + 2 * p - s + 1, size=n)
        left = rng.integers(0, w + 2 * p - s + 1, size=n)
        rows = (top[:, None] + np.arange(s))[:, None, :, None]  # (N, 1, s, 1)
        cols = (left[:, None] + np.arange(s))[:, None, None, :]  # (N, 1, 1, s)
        return padded[np.arange(n)[:, None, None, None], np.arange(images.shape[1])[None, :, None, None], rows, cols]

    def __repr__(self):
        return f"RandomCrop({self.size}, padding={self.padding})"


class RandomHorizontalFlip:
    """Mirror each image left-right with probability p."""

    def __init__(self, p=0.5):
        self.p = p

    def __call__(self, images, rng):
        flip = rng.random(len(images)) < self.p
        images = images.copy()
        images[flip] = images[flip, :, :, ::-1]
        return images

    def __repr__(self):
        return f"RandomHorizontalFlip(p={self.p})"


class ToFloat:
    """uint8 pixels 0..255 -> float32 in [0, 1]."""

    def __call__(self, images, rng=None):
        return images.astype(np.float32) / np.float32(255)

    def __repr__(self):
        return "ToFloat()"


class Normalize:
    """(x - mean[c]) / std[c] for each channel c."""

    def __init__(self, mean, std):
        self.mean = np.asarray(mean, dtype=np.float32).reshape(-1, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(-1, 1, 1)
        if self.mean.shape != self.std.shape or not np.all(self.std > 0):
            raise ValueError(f"Normalize: mean and std need one value per channel and std > 0, got {mean}, {std}")

    def __call__(self, images, rng=None):
        if images.shape[1] != len(self.mean):
            raise ValueError(f"Normalize: {len(self.mean)} channel statistics for images of shape {images.shape}")
        return (images - self.mean) / self.std

    def __repr__(self):
        return f"Normalize(mean={self.mean.ravel().tolist()}, std={self.std.ravel().tolist()})"


def channel_stats(images, chunk=4096):
    """Per-channel mean and standard deviation of uint8 images (N, C, H, W), on the [0, 1] scale
    of ToFloat; summed in float64 chunks, so a large set needs no float copy of itself."""
    total, squares, count = 0.0, 0.0, 0
    for start in range(0, len(images), chunk):
        x = images[start:start + chunk].astype(np.float64) / 255
        total, squares = total + x.sum(axis=(0, 2, 3)), squares + (x * x).sum(axis=(0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    return mean, np.sqrt(np.maximum(squares / count - mean * mean, 0))


def resize(images, size):
    """Bilinear resize of images (N, C, H, W) to (N, C, size, size), as PyTorch's
    F.interpolate(mode="bilinear", align_corners=False): output pixel i samples the input at
    (i + 0.5) * in / out - 0.5, clamped to the image."""
    def weights(n_in):
        pos = np.clip((np.arange(size) + 0.5) * n_in / size - 0.5, 0, n_in - 1)
        lo = np.floor(pos).astype(np.intp)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, (pos - lo).astype(np.float32)

    x = images.astype(np.float32)
    lo, hi, t = weights(x.shape[2])
    x = x[:, :, lo] * (1 - t)[:, None] + x[:, :, hi] * t[:, None]
    lo, hi, t = weights(x.shape[3])
    return x[..., lo] * (1 - t) + x[..., hi] * t
