"""Ordered read-ahead: run a function over items in a thread pool, a bounded window ahead of the consumer.

Used by the batch engine (:mod:`gdvision.runs.engine`) to load items while the previous batch computes. (The
edges folder mode has its own read-ahead, ``gdvision.tasks.edges._ReadAhead``: a feeder thread that starts
decoding before torch is imported, bounded by bytes.) Results come back
in the items' order; at most ``window`` calls are in flight or finished-but-unconsumed at any time, so memory stays
bounded on long lists.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def prefetch(pool: Executor, fn: Callable[[T], R], items: Iterable[T], window: int) -> Iterator[tuple[T, Future[R]]]:
    """Yield ``(item, future of fn(item))`` in the order of ``items``, keeping ``window`` (>= 1) calls submitted ahead.

    The caller takes each result with ``future.result()`` (which re-raises the call's exception).

    Example:
        >>> from concurrent.futures import ThreadPoolExecutor
        >>> with ThreadPoolExecutor(2) as pool:
        ...     [(x, f.result()) for x, f in prefetch(pool, lambda v: v * v, range(4), window=2)]
        [(0, 0), (1, 1), (2, 4), (3, 9)]
    """
    it = iter(items)
    pending: deque[tuple[T, Future[R]]] = deque()
    exhausted = False

    def fill() -> None:
        nonlocal exhausted
        while not exhausted and len(pending) < max(window, 1):
            try:
                item = next(it)
            except StopIteration:
                exhausted = True
                return
            pending.append((item, pool.submit(fn, item)))

    fill()
    while pending:
        item, fut = pending.popleft()
        fill()
        yield item, fut
