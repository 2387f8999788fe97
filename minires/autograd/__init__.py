"""The autograd core: read in this order.

    tensor.py     Tensor (an array plus the node that made it), the graph walk of backward()
    function.py   Function: an op's contract (forward and backward over arrays) and its graph node
    gradcheck.py  backward checked against central differences
"""
