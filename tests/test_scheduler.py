"""The scheduling policy of every executor, without Ray: credits, batches, re-runs, limits;
and the in-process executor built on it."""

from __future__ import annotations

import pytest

from evo_merge.pool.jobs import Job
from evo_merge.pool.scheduler import SlotScheduler


def jobs(n: int, **kw) -> list[Job]:
    return [Job(weights=f"h{i}", **kw) for i in range(n)]


def test_credits_spread_jobs_over_slots_first_then_prefetch():
    s = SlotScheduler(slots=2, prefetch=2)
    tickets = [s.submit(j) for j in jobs(5)]
    sent = list(s.dispatches())
    assert tickets == [0, 1, 2, 3, 4]
    assert [(d.slot, [t for t, _ in d.items]) for d in sent] == [(0, [0]), (1, [1]), (0, [2]), (1, [3])]
    assert s.queued == 1 and s.outstanding == 4 and list(s.dispatches()) == []  # no credit left
    s.finished(sent[1])
    assert [(d.slot, [t for t, _ in d.items]) for d in s.dispatches()] == [(1, [4])]


def test_batches_take_consecutive_compatible_jobs_only():
    s = SlotScheduler(slots=1, prefetch=1, batch=3)
    for j in jobs(4) + jobs(1, split="test") + jobs(2, loss=True):
        s.submit(j)
    sizes = []
    while s.queued:
        (d,) = list(s.dispatches())
        sizes.append([t for t, _ in d.items])
        s.finished(d)
    # 3 fitness jobs, then the 4th alone (the next is another split), the test job, and loss jobs one by one
    assert sizes == [[0, 1, 2], [3], [4], [5], [6]]
    assert s.capacity == 3


def test_a_lost_dispatch_is_rerun_first_and_its_slot_replaced_once():
    s = SlotScheduler(slots=2, prefetch=2, max_failures=1)
    for j in jobs(4):
        s.submit(j)
    d0, d1, d2, d3 = s.dispatches()  # slots 0, 1, 0, 1
    assert s.failed(d0) is True       # first news of slot 0's death: replace it
    assert s.failed(d2) is False      # the same death, heard again
    assert s.incarnation == [1, 0] and s.failures == [1, 0] and not s.exhausted(0)
    again = list(s.dispatches())
    assert [(d.slot, d.incarnation, [t for t, _ in d.items]) for d in again] == [(0, 1, [0]), (0, 1, [2])]
    assert s.failed(again[0]) is True and s.exhausted(0)  # a second death: over max_failures=1


def test_local_executor_batches_and_returns_every_ticket(monkeypatch):
    from evo_merge.pool.local import LocalExecutor

    class FakeWorker:
        calls: list[int] = []

        def run(self, job):
            self.calls.append(1)
            return f"r-{job.weights}"

        def run_many(self, batch, slots):
            self.calls.append(len(batch))
            return [f"r-{j.weights}" for j in batch]

    ex = LocalExecutor(FakeWorker(), batch=2)
    tickets = [ex.submit(j) for j in jobs(5)]
    got = dict(ex.next_done() for _ in tickets)
    assert got == {t: f"r-h{t}" for t in tickets} and FakeWorker.calls == [2, 2, 1]
    with pytest.raises(RuntimeError, match="nothing submitted"):
        ex.next_done()
