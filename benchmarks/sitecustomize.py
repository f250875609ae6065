"""Logs each Python process's CPU seconds at exit, for `benchmarks/suite.py`: Python imports
this module at start-up when `benchmarks/` is on PYTHONPATH (as suite.py sets it for pytest and
everything pytest starts), and it logs only where WASTESORT_PROCESS_LOG names a file. A process
that is killed (a server stopped with SIGTERM or SIGKILL) is not logged."""

import os

if os.environ.get("WASTESORT_PROCESS_LOG"):
    import atexit
    import json
    import resource
    import sys

    def _log() -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        record = {
            "argv": sys.argv[:2],
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
            "tensorflow": "tensorflow" in sys.modules,
            "test": os.environ.get("PYTEST_CURRENT_TEST", ""),
        }
        with open(os.environ["WASTESORT_PROCESS_LOG"], "a") as f:
            f.write(json.dumps(record) + "\n")

    atexit.register(_log)
