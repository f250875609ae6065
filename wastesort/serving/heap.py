"""glibc's malloc, set for a process that serves same-sized requests.

Every request allocates a few arrays of about 0.6-0.7 MB (the decoded photo, the resize's
rows and columns, the model's input). Above glibc's mmap threshold (128 KB, raised only when
such a block is freed) each one is a fresh ``mmap`` that the kernel zero-fills page by page and
unmaps again when it is freed: hundreds of page faults per photo. With the threshold at 16 MB
they come from the heap and its freed memory is reused; the heap keeps up to 64 MB of it (the
trim threshold) rather than returning it at once. Blocks above 16 MB (a large batch, the
LiteRT arena of one) are still mapped and given back when freed. Measured in BENCHMARKS.md
(Serving) and decision 0031.
"""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD = -1  # glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 16 << 20
TRIM_THRESHOLD = 64 << 20


def keep_request_buffers() -> bool:
    """Set this process's malloc as above; False where the C library has no ``mallopt`` or
    refuses it (not glibc: nothing changes)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and (
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    )
