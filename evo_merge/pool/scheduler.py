"""Which worker slot runs which jobs: a plain policy class, no Ray (the transports use it).

- Credits: each slot holds up to ``prefetch`` dispatches, so while a worker computes one,
  the next is already queued on it. Credits are interleaved over slots, so jobs spread
  over the workers first.
- Batches: up to ``batch`` consecutive queued jobs that can share one batched forward
  (``Job.batches_with``) go out together (batched multi-LoRA scoring).
- Failures: a dispatch lost with its worker goes back into the queue in submission order
  (ahead of every later job); the first news of a slot's death asks for a replacement (a
  new incarnation), later news of the same death does not; a slot replaced more than
  ``max_failures`` times is exhausted.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Iterator

from evo_merge.pool.jobs import Job


@dataclass
class Dispatch:
    """Jobs sent together to one slot's worker, of one incarnation of that worker."""

    slot: int
    incarnation: int
    items: list[tuple[int, Job]]

    @property
    def jobs(self) -> list[Job]:
        return [job for _, job in self.items]


class SlotScheduler:
    def __init__(self, slots: int, prefetch: int = 1, batch: int = 1, max_failures: int = 3):
        self.slots, self.prefetch, self.batch, self.max_failures = slots, prefetch, max(1, batch), max_failures
        self.incarnation = [0] * slots
        self.failures = [0] * slots
        self._free: deque[int] = deque(slot for _ in range(prefetch) for slot in range(slots))
        self._queue: deque[tuple[int, Job]] = deque()
        self._next_ticket = 0
        self.outstanding = 0

    @property
    def capacity(self) -> int:
        """Jobs that can be in flight at once."""
        return self.slots * self.prefetch * self.batch

    def submit(self, job: Job) -> int:
        ticket = self._next_ticket
        self._next_ticket += 1
        self._queue.append((ticket, job))
        return ticket

    @property
    def queued(self) -> int:
        return len(self._queue)

    def dispatches(self) -> Iterator[Dispatch]:
        """Dispatches to send now: one per free credit while jobs are queued."""
        while self._free and self._queue:
            slot = self._free.popleft()
            self.outstanding += 1
            yield Dispatch(slot, self.incarnation[slot], self._take_batch())

    def _take_batch(self) -> list[tuple[int, Job]]:
        items = [self._queue.popleft()]
        while len(items) < self.batch and self._queue and items[0][1].batches_with(self._queue[0][1]):
            items.append(self._queue.popleft())
        return items

    def finished(self, d: Dispatch) -> None:
        self.outstanding -= 1
        self._free.append(d.slot)

    def failed(self, d: Dispatch) -> bool:
        """Requeue a lost dispatch's jobs in front; True if the slot's worker is to be replaced."""
        self.outstanding -= 1
        replace = d.incarnation == self.incarnation[d.slot]
        if replace:
            self.failures[d.slot] += 1
            self.incarnation[d.slot] += 1
        self._queue = deque(sorted([*d.items, *self._queue], key=lambda item: item[0]))  # submission order
        self._free.append(d.slot)
        return replace

    def exhausted(self, slot: int) -> bool:
        return self.failures[slot] > self.max_failures
