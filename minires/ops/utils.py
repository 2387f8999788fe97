"""Small helpers shared by the ops."""


def shape_of(x):
    """The shape of an array argument; None for a Python scalar (which gets no gradient)."""
    return getattr(x, "shape", None)


def unbroadcast(g, shape):
    """Sum a broadcast gradient back down to ``shape`` (the reverse of NumPy broadcasting)."""
    if shape is None or g.shape == shape:
        return None if shape is None else g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1)
    return g.sum(axis=axes).reshape(shape)
