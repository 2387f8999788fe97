"""Every kernels/cuda/*.cu compiles with NVRTC, without a GPU, to SASS for sm_80 (A100) and sm_90
(H100, H200), and no kernel spills registers to local memory (ptxas's -v report, parsed).

NVRTC comes from pip (the test extra: cuda-toolkit[nvrtc] pinned to CUDA 13.0, the version of the
GPU machines' driver; we build cubin, not PTX, so a newer NVRTC would also do) and is called through
CuPy's binding, cupy.cuda.nvrtc, which finds the pip package's libnvrtc itself. CuPy imports
without a GPU. The tests are skipped only where those wheels do not exist (not Linux on x86-64 or
aarch64); anywhere else a missing package is a failure, not a skip.
"""
import platform
import re
import sys

import numpy as np
import pytest

from minires.kernels import cuda

if not (sys.platform == "linux" and platform.machine() in ("x86_64", "aarch64")):
    pytest.skip("NVIDIA ships NVRTC and CuPy wheels for Linux x86-64 and aarch64 only", allow_module_level=True)

ARCHS = ["sm_80", "sm_90"]
PTXAS_ENTRY = re.compile(r"Compiling entry function '(\w+)' for '(\w+)'")
PTXAS_SPILLS = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
PTXAS_REGISTERS = re.compile(r"Used (\d+) registers")


def nvrtc():
    try:
        from cupy.cuda import nvrtc
    except ImportError as e:
        pytest.fail(f"CuPy is missing ({e}): pip install -e '.[test]'")
    return nvrtc


def compile_family(family, arch, source=None):
    """NVRTC on the family's source for ``arch``: (cubin bytes, {name expression: lowered name}, log)."""
    rtc = nvrtc()
    program = rtc.createProgram(source or cuda.source(family), f"{family}.cu", [], [])
    try:
        for e in cuda.name_expressions(family):
            rtc.addNameExpression(program, e)
        try:
            rtc.compileProgram(program, [f"-arch={arch}", "--ptxas-options=-v", *cuda.NVRTC_OPTIONS])
        except rtc.NVRTCError as e:
            raise AssertionError(f"{family}.cu does not compile for {arch}:\n{rtc.getProgramLog(program)}") from e
        names = {e: rtc.getLoweredName(program, e) for e in cuda.name_expressions(family)}
        return rtc.getCUBIN(program), names, rtc.getProgramLog(program)
    finally:
        rtc.destroyProgram(program)


def ptxas_report(log):
    """{mangled kernel name: (registers, stack frame bytes, spill store bytes, spill load bytes)}."""
    report, entry = {}, None
    for line in log.splitlines():
        if m := PTXAS_ENTRY.search(line):
            entry = m[1]
        elif (m := PTXAS_SPILLS.search(line)) and entry:
            report[entry] = tuple(map(int, m.groups()))
        elif (m := PTXAS_REGISTERS.search(line)) and entry:
            report[entry] = (int(m[1]), *report[entry])
    return report


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("family", cuda.FAMILIES)
def test_compiles_to_sass_without_spills(family, arch):
    cubin, names, log = compile_family(family, arch)
    assert cubin[:4] == b"\x7fELF", "NVRTC gave no cubin"
    assert "warning" not in log.lower(), log
    report = ptxas_report(log)
    for expression, mangled in names.items():
        assert mangled in report, f"ptxas reported nothing for {expression}:\n{log}"
        registers, stack, stores, loads = report[mangled]
        print(f"{arch} {expression}: {registers} registers, {stack} B stack, {stores}/{loads} B spilled")
        assert stores == loads == 0, f"{expression} spills registers on {arch}: {report[mangled]}"


def test_compile_errors_name_the_file_and_line():
    """A broken kernel is an error that points into its .cu file (the loader's #line markers)."""
    text = cuda.source("elementwise").replace("out[e] = v < T(0) ? T(0) : v;", "out[e] = v < T(0) ? T(0) : w;")
    line = next(n for n, s in enumerate((cuda.HERE / "elementwise.cu").read_text().splitlines(), 1) if "? T(0) : v;" in s)
    with pytest.raises(AssertionError, match=rf'kernels/cuda/elementwise\.cu\({line}\): error: identifier "w"'):
        compile_family("elementwise", "sm_90", text)


@pytest.mark.parametrize("family", cuda.FAMILIES)
def test_every_kernel_is_listed(family):
    """kernels.cuda.KERNELS names every __global__ function of the file (an unlisted one would never be
    compiled or tested), and every .cu file is a family."""
    text = (cuda.HERE / f"{family}.cu").read_text()
    assert tuple(re.findall(r"__global__\s+void\s+(\w+)", text)) == cuda.KERNELS[family]
    assert sorted(p.stem for p in cuda.HERE.glob("*.cu")) == sorted(cuda.FAMILIES)


def test_cupy_has_what_the_loader_uses():
    """kernels.cuda.load's CuPy calls exist in the installed CuPy, and a RawModule of our source can be
    made without a GPU (CuPy compiles it only when a kernel is first looked up, on the device)."""
    import cupy
    module = cupy.RawModule(code=cuda.source("im2col"), options=cuda.NVRTC_OPTIONS,
                            name_expressions=cuda.name_expressions("im2col"))
    assert callable(module.get_function)
    assert cuda.name_expression("col2im", np.float64) == "col2im<double>"
