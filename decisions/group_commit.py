"""The writer queue both decision-log backends share: a request queues its row and waits on a future;
one thread takes whatever is waiting (up to `max_group` rows) and commits it as one group."""

from __future__ import annotations

import queue
from abc import ABC, abstractmethod
from concurrent.futures import Future

from decisions.base import DecisionRecord, StoredResponse, SubsidyClaim

# What the writer thread is handed: the encoded row (caller and idempotency key inside it), the
# subsidy to reserve with it (if any) and who waits for it.
Pending = tuple[tuple[object, ...], SubsidyClaim | None, Future[StoredResponse | None]]


class GroupCommitQueue(ABC):
    """Queue, group and hand over: the backend only says how one group is committed (`_commit`)."""

    _queue: queue.Queue[Pending | None]
    _max_group: int

    def _open_queue(self, max_group: int) -> None:
        """Call in the writer's __init__, before its thread runs `_run`."""
        self._max_group = max_group
        self._queue = queue.Queue()

    def _stop_queue(self) -> None:
        """Ask the writer thread to commit what is queued, then return (join it afterwards)."""
        self._queue.put(None)

    def submit(self, record: DecisionRecord) -> Future[StoredResponse | None]:
        """Queue a record; the future resolves once it is durable.

        It resolves to None when the row was written, or to the response already stored under the
        same idempotency key (a concurrent duplicate), in which case nothing new was written.
        """
        future: Future[StoredResponse | None] = Future()
        self._queue.put((record.row(), record.subsidy, future))
        return future

    def submit_many(self, records: list[DecisionRecord]) -> list[Future[StoredResponse | None]]:
        """`submit` for several records; queued together, so they share as few commits as possible."""
        pending: list[Pending] = [(r.row(), r.subsidy, Future()) for r in records]
        for item in pending:
            self._queue.put(item)
        return [future for _, _, future in pending]

    def _run(self) -> None:
        """The writer thread: block for one row, take every row already waiting, commit them together."""
        while True:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            stop = False
            while len(group) < self._max_group:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                group.append(item)
            self._commit(group)
            if stop:
                return

    @abstractmethod
    def _commit(self, group: list[Pending]) -> None:
        """Commit the group in one transaction and resolve every future (with an exception on failure)."""
