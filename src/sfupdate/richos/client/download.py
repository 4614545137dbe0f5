"""Robust transfer over any `Source`: resume, bounded retries, size cap, minimum rate.

`fetch()` is a generator of chunks; the caller consumes them as they arrive (the client
streams them straight into the agent), so memory stays flat for any file size.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sfupdate.errors import DownloadError, TransferInterruptedError
from sfupdate.richos.client.sources import Source


@dataclass(frozen=True)
class TransferPolicy:
    """Limits for one download. Timeouts are applied by the source (see HttpSource).

    The download feeds an open agent install session, which the agent abandons after its
    per-message timeout (30 s by default) without a chunk. The defaults keep one stall or
    drop and its resume inside that: a stall is noticed after `read_timeout`, then the first
    pause, a new connection and its first bytes take at most
    `backoff + connect_timeout + read_timeout`: 10 + 0.5 + 5 + 10 s.
    """

    retries: int = 5                 # failed attempts retried (resuming) before giving up
    backoff: float = 0.5             # first pause between attempts, doubled each time ...
    backoff_max: float = 8.0         # ... up to this
    min_rate: float = 1024.0         # bytes/s a source must sustain over each window ...
    rate_window: float = 30.0        # ... of this many seconds spent waiting for data
    connect_timeout: float = 5.0
    read_timeout: float = 10.0


def fetch(source: Source, path: str, length: int | None, policy: TransferPolicy,
          log: Callable[[str], None] | None = None,
          sleep: Callable[[float], None] = time.sleep) -> Iterator[bytes]:
    """Yield the bytes of `path`; exactly `length` of them when it is given.

    Raises DownloadError when the source sends more than `length` (endless data), fewer
    once it ends, is slower than `policy.min_rate` (slow retrieval), or keeps failing after
    `policy.retries` resumed attempts.
    """
    received = 0
    failures = 0
    where = source.describe(path)
    while True:
        try:
            remaining = None if length is None else length - received
            for chunk in _rated(source.open(path, received), policy, where, remaining):
                received += len(chunk)
                if length is not None and received > length:
                    raise DownloadError(f"{where}: server sent more than the {length} bytes "
                                        "the signed index declares (endless data); "
                                        "transfer abandoned")
                yield chunk
        except TransferInterruptedError as exc:
            failures += 1
            if failures > policy.retries:
                raise DownloadError(f"{exc}; giving up after {failures} attempts "
                                    f"({received} bytes received)") from None
            pause = min(policy.backoff * 2 ** (failures - 1), policy.backoff_max)
            if log:
                log(f"{exc}; resuming at byte {received} in {pause:g} s "
                    f"(retry {failures} of {policy.retries})")
            sleep(pause)
            continue
        if length is not None and received < length:
            raise DownloadError(f"{where}: the transfer ended after {received} of {length} "
                                "bytes (truncated)")
        return


def _rated(chunks: Iterator[bytes], policy: TransferPolicy, where: str,
           remaining: int | None) -> Iterator[bytes]:
    """Pass chunks through, counting only the time spent waiting on the source (not the
    time the consumer spends with a chunk), and fail when a window's rate is too low. A
    chunk that completes the `remaining` bytes (when they are known) is never judged: a
    transfer that is done was not too slow."""
    waited = 0.0
    window_bytes = passed = 0
    try:
        while True:
            start = time.monotonic()
            try:
                chunk = next(chunks)
            except StopIteration:
                return
            waited += time.monotonic() - start
            window_bytes += len(chunk)
            passed += len(chunk)
            done = remaining is not None and passed >= remaining
            if waited >= policy.rate_window and not done:
                rate = window_bytes / waited
                if rate < policy.min_rate:
                    raise DownloadError(f"{where}: too slow: {rate:.0f} bytes/s over "
                                        f"{waited:.1f} s, below the minimum of "
                                        f"{policy.min_rate:.0f} (slow retrieval); "
                                        "transfer abandoned")
                waited, window_bytes = 0.0, 0
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()  # release the connection at once, whoever stopped first
