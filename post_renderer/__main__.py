"""The ``helm-egress`` console script and ``python -m post_renderer``.

The cyclic garbage collector is turned off before the CLI is imported: the imports
allocate tens of thousands of objects that live until the process exits, and the
collector's passes over them, several ms of every run, find nothing to free (see
``cli.main``). Only this entry point does it; importing the package leaves it alone.
"""

import gc
import os

from post_renderer import OUT_OF_MEMORY, starved


def main() -> None:
    gc.disable()
    try:
        from post_renderer.cli import main as run
    except Exception as e:
        # Under a tight `ulimit -v` the imports alone can fail: one line, as for a run.
        if not starved(e):
            raise
        try:
            os.write(2, OUT_OF_MEMORY.encode() + b"\n")
        finally:
            os._exit(1)
    run()


if __name__ == "__main__":
    main()
