"""The next mini-batch's inputs loaded on a thread while the current one trains."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor


def prefetched(load, items: list):
    """``load(item)`` of each item in order, the next one loaded on a thread of its own while the
    caller works on the current one (the data path overlaps the network's compute, which releases
    the GIL). One loader thread, in order: the draws from a shared generator are the same as in a
    plain loop."""
    if len(items) < 2:
        yield from map(load, items)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="evsim-data") as pool:
        ahead = pool.submit(load, items[0])
        try:
            for item in items[1:]:
                current = ahead.result()
                ahead = pool.submit(load, item)
                yield current
            yield ahead.result()
        finally:
            ahead.cancel()
