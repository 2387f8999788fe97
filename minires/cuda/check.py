"""The GPU check, one command: ``python -m minires.cuda.check --out DIR`` (from a checkout: PYTHONPATH=.).

1. the tests marked ``gpu`` (tests/test_gpu.py ...): on the "cuda" device when a GPU is there, else
   on the test device that runs the same .cu kernels on the CPU (tests/cuda_cpu/), as CI does;
2. on a GPU only: the model benchmark against PyTorch (benchmarks/models.py --device cuda) and the
   kernels' bandwidth table (benchmarks/kernels.py --device cuda);
then a summary, also written to DIR/gpu-check.json with each step's output in DIR. Exit status 0
when every step passed. Without a GPU the timings are left out, and said to be.
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def steps(on_gpu, quick):
    """(name, argv) of the steps to run here."""
    found = [("gpu tests", [sys.executable, "-m", "pytest", "-q", "-m", "gpu", os.path.join(ROOT, "tests")])]
    if on_gpu:
        models = [sys.executable, os.path.join(ROOT, "benchmarks", "models.py"), "--device", "cuda", "--memory"]
        kernels = [sys.executable, os.path.join(ROOT, "benchmarks", "kernels.py"), "--device", "cuda"]
        found += [("model benchmark", models + (["--runs", "3"] if quick else [])),
                  ("kernel bandwidth", kernels + (["--quick"] if quick else []))]
    return found


def run_step(name, argv, out, env):
    start = time.perf_counter()
    log = os.path.join(out, name.replace(" ", "-") + ".log")
    with open(log, "w") as f:
        status = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=env).returncode
    with open(log) as f:
        tail = f.read().strip().splitlines()[-12:]
    return {"step": name, "status": status, "seconds": round(time.perf_counter() - start, 1), "log": log, "tail": tail}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m minires.cuda.check", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="folder for the logs and gpu-check.json")
    p.add_argument("--quick", action="store_true", help="fewer benchmark runs")
    args = p.parse_args(argv)
    if not os.path.isdir(os.path.join(ROOT, "tests")):
        print(f"minires.cuda.check: error: no tests/ beside {ROOT}: run it from a checkout of minires", file=sys.stderr)
        return 2
    from .. import cuda
    on_gpu = cuda.is_available()
    os.makedirs(args.out, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    results = [run_step(name, cmd, args.out, env) for name, cmd in steps(on_gpu, args.quick)]
    summary = {"device": "cuda" if on_gpu else "cudacpu (the .cu kernels on the CPU: no GPU here, no timings)",
               "steps": results, "passed": all(r["status"] == 0 for r in results)}
    tmp = os.path.join(args.out, "gpu-check.json.tmp")
    with open(tmp, "w") as f:
        json.dump(summary, f, indent=1)
    os.replace(tmp, os.path.join(args.out, "gpu-check.json"))
    print(f"minires GPU check on {summary['device']}")
    for r in results:
        print(f"  {r['step']:<18} {'passed' if r['status'] == 0 else 'FAILED'}  ({r['seconds']} s; {r['log']})")
        print("\n".join("      " + line for line in r["tail"][-3:]))
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
