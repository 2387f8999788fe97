"""Write the golden files ops_float64.npz and ops_float32.npz beside this script: PyTorch's outputs
and input gradients for every case of tests/op_cases.py, for machines without PyTorch.

Run from the repository root, with PyTorch installed (pip install -e ".[test]"):

    python tests/reference/make_reference.py

Rerun it whenever a case in op_cases.py is added or changed (test_ops_vs_torch.py fails until then),
and commit both files. Inputs are not stored: they are redrawn from each case's seed. Per case the
files hold "<case>/out<k>" (the output, then any state such as batch norm's running statistics),
"<case>/grad<i>" (the gradient of input i for the case's upstream gradient) and "<case>/inputs"
(a fingerprint of the drawn inputs, to tell a changed random stream from a wrong op).
"""
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # tests/, for op_cases

from op_cases import CASES, input_fingerprint, run_torch  # noqa: E402

DTYPES = (np.float64, np.float32)


def golden_path(dtype):
    return os.path.join(HERE, f"ops_{np.dtype(dtype).name}.npz")


def reference(dtype):
    """{"<case>/<key>": array} from PyTorch for every case, plus the torch version."""
    import torch
    arrays = {"torch_version": np.array(torch.__version__)}
    for case in CASES:
        for key, value in run_torch(case, dtype).items():
            if value is None:
                raise RuntimeError(f"{case.name}: torch computed no gradient for {key}")
            arrays[f"{case.name}/{key}"] = value
        arrays[f"{case.name}/inputs"] = np.array(input_fingerprint(case, dtype))
    return arrays


def write_atomically(path, arrays):
    """np.savez_compressed to a temporary file in the same folder, then os.replace."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.chmod(tmp, 0o644)  # mkstemp makes it private
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main():
    for dtype in DTYPES:
        path = golden_path(dtype)
        write_atomically(path, reference(dtype))
        print(f"wrote {os.path.relpath(path)} ({os.path.getsize(path) / 1024:.0f} KiB, {len(CASES)} cases)")


if __name__ == "__main__":
    main()
