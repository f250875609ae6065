"""Adaptive batching inside the serving process: requests that arrive while the model is busy
run together as one batch (up to ``max_batch_size`` images, which is also the most the model
runs at once: a larger request runs in slices); a lone request runs at once. After
``idle_seconds`` with nothing to do it calls ``on_idle`` (the service gives back the memory
of a large batch there).

The API threads decode and resize their uploads in parallel and hand only the resized arrays
to one model thread, so nothing is pickled between processes and no request waits for a
latency window to fill.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np


class Batcher:
    def __init__(
        self,
        predict: Callable[[np.ndarray], np.ndarray],
        max_batch_size: int,
        on_idle: Callable[[], object] | None = None,
        idle_seconds: float = 5.0,
    ):
        self._predict = predict
        self.max_batch_size = max(1, int(max_batch_size))
        self._on_idle, self._idle_seconds = on_idle, idle_seconds
        self._queue: queue.SimpleQueue[tuple[np.ndarray, Future]] = queue.SimpleQueue()
        self.batch_sizes: list[int] = []  # recent batch sizes, for the benchmark and tests
        threading.Thread(target=self._run, name="wastesort-batcher", daemon=True).start()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities for ``batch``, computed together with whatever else is waiting."""
        if len(batch) == 0:
            return self._predict(batch)
        future: Future = Future()
        self._queue.put((batch, future))
        return future.result()

    def _next(self) -> tuple[np.ndarray, Future]:
        if self._on_idle is not None:
            try:
                return self._queue.get(timeout=self._idle_seconds)
            except queue.Empty:
                with contextlib.suppress(Exception):  # a failed clean-up must not stop serving
                    self._on_idle()
        return self._queue.get()

    def _take(self) -> list[tuple[np.ndarray, Future]]:
        jobs = [self._next()]
        size = len(jobs[0][0])
        while size < self.max_batch_size:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            jobs.append(job)
            size += len(job[0])
        return jobs

    def _run(self) -> None:
        while True:
            jobs = self._take()
            try:
                batch = np.concatenate([b for b, _ in jobs])
                m = self.max_batch_size  # the model never sees more at once
                out = np.concatenate(
                    [self._predict(batch[i : i + m]) for i in range(0, len(batch), m)]
                )
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                for _, future in jobs:
                    future.set_exception(exc)
                continue
            self.batch_sizes = (self.batch_sizes + [len(batch)])[-1000:]
            start = 0
            for b, future in jobs:
                future.set_result(out[start : start + len(b)])
                start += len(b)
