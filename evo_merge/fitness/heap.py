"""Keep freed activation memory in the process heap while scoring on a CPU (glibc's malloc).

torch's CPU allocator is plain ``malloc``/``free``. With glibc's defaults, the activations of
a forward (a few MB to tens of MB each, allocated and freed in every layer) keep going back
to the operating system and coming back as fresh pages: about 580,000 page faults (2.3 GB
zeroed) per evaluation of 200 prompts on a 134 M model, 6-8 % of its time on this
project's CPU benchmark (``benchmarks/lm_eval_speed.py``). Two ``mallopt`` settings stop it:
blocks under ``KEEP_BELOW`` come from the heap (glibc's own upper bound for the threshold
it adapts by itself), and free memory at the heap's top goes back only above ``TRIM_ABOVE``.
Peak memory does not change (the freed blocks are the next forward's).

Process-wide and once per process; called by ``ModelHost`` for a CPU device. Nothing is
done off Linux/glibc, where the user has set malloc's own variables (``MALLOC_*_``,
``GLIBC_TUNABLES``), or with ``EVO_MERGE_KEEP_HEAP=0``.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys

KEEP_BELOW = 32 << 20  # bytes: smaller blocks are served from the heap
TRIM_ABOVE = 512 << 20  # bytes: free memory at the heap's top returned to the OS only above this
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h


def _user_tuned() -> bool:
    return (os.environ.get("EVO_MERGE_KEEP_HEAP") == "0" or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "")
            or any(k.startswith("MALLOC_") and k.endswith("_") for k in os.environ))


@functools.cache
def keep_freed_memory() -> bool:
    """Set glibc's thresholds as above, once; whether they are in effect."""
    if not sys.platform.startswith("linux") or _user_tuned():
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt(_M_MMAP_THRESHOLD, KEEP_BELOW) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_ABOVE) == 1
