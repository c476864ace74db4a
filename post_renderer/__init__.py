"""helm-egress: a Helm post-renderer that adds correct Istio egress configuration."""

import errno

__version__ = "0.1.0"

# Said when the run cannot get memory (`ulimit -v`): a limit the user sets, not a bug, so
# exit 1 and no crash log. Here, since the entry point may fail before anything else loads.
OUT_OF_MEMORY = "helm-egress: out of memory; raise the memory limit (ulimit -v) and run it again"


def starved(error: BaseException) -> bool:
    """Whether ``error`` is how running out of memory shows: a MemoryError, a module the
    loader could not map into memory, or the import machinery failing an allocation
    without a MemoryError (CPython's "returned NULL without setting an exception", "error
    return without exception set")."""
    if isinstance(error, MemoryError) or (isinstance(error, OSError) and error.errno == errno.ENOMEM):
        return True
    if not isinstance(error, (ImportError, SystemError)):
        return False
    why = str(error)
    if any(sign in why for sign in ("failed to map segment", "Cannot allocate memory", "without setting an exception",
                                    "without exception set")):
        return True
    try:
        bytearray(32 << 20)  # about what mapping one more shared library takes
    except MemoryError:
        return True
    return False
