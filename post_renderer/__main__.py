"""The ``helm-egress`` console script and ``python -m post_renderer``.

The cyclic garbage collector is turned off before the CLI is imported: the imports
allocate tens of thousands of objects that live until the process exits, and the
collector's passes over them, several ms of every run, find nothing to free (see
``cli.main``). Only this entry point does it; importing the package leaves it alone.
"""

import gc


def main() -> None:
    gc.disable()
    from post_renderer.cli import main as run

    run()


if __name__ == "__main__":
    main()
