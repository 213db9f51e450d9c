"""The ``actionlib`` command: one sub-command per task, each defined in its own module.

Each module named in ``COMMANDS`` provides ``HELP`` (one line), ``add_arguments(parser)`` and
``main(args) -> int``; it is imported only when its sub-command runs (or for ``--help``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

COMMANDS = {
    "profile": "actionlib.profiling",
    "train": "actionlib.engine.train_cmd",
    "eval": "actionlib.engine.eval_cmd",
    "runs": "actionlib.engine.runs_cmd",
    "reproduce": "actionlib.reproduce",
    "synth": "actionlib.data.synthetic",
    "cam": "actionlib.cam.cli",
}
# the long-running commands: glibc keeps freed memory in them and their child processes
KEEP_HEAP = ("train", "eval", "reproduce", "cam")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="actionlib",
        description="ACTION-Net reproducibility suite: models, data, training, profiling, CAMs.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help="(run 'actionlib %s --help')" % name)
            continue
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((a for a in argv if a in COMMANDS), None)
    # import every command's module only for the top-level help
    parser = build_parser(only=chosen if chosen else None)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command is None:
        parser.print_help()
        return 2
    if args.command in KEEP_HEAP:  # steps stop page-faulting their buffers in again (actionlib._heap)
        from . import _heap

        _heap.keep_heap()
        os.environ.update(_heap.child_env())
    return int(args._module.main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
