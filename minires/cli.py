"""The ``minires`` command line: ``minires COMMAND [options]`` (also ``python -m minires``).

Each command lives in its own module, named in COMMANDS, which provides ``add_arguments(parser)``
and ``run(args) -> exit status``; its docstring's first line is the command's help.
"""
import argparse
import importlib
import sys

COMMANDS = {
    "check": "minires.check",
    "compare": "minires.compare",
    "explain": "minires.explain",
    "graph": "minires.graph",
    "profile": "minires.profiler",
    "study": "minires.study",
    "summary": "minires.summary",
    "train": "minires.train",
}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="minires", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    modules = {}
    for name, path in COMMANDS.items():
        module = modules[name] = importlib.import_module(path)
        p = sub.add_parser(name, help=module.__doc__.splitlines()[0], description=module.__doc__)
        module.add_arguments(p)
    args = parser.parse_args(argv)
    return modules[args.command].run(args)


if __name__ == "__main__":
    sys.exit(main())
