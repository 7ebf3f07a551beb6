"""The ask/tell loop of a coefficient search, recorded candidate by candidate.

``num_workers`` candidates are in flight at once through the executor (the Ray pool
where there is one) and are told back as they finish (``tell_order: completion``) or in
the order they were asked (``tell_order: ask``, identical for any number of workers).

The optimizer's state is its event log: every asked candidate and, after each tell, the
tell's position and objective, each written in one SQLite transaction. A Nevergrad
optimizer rebuilt with the same settings and seed and told the same results in the same
order is in the same state, so resuming replays the log (no evaluation, no pickle) and
then proposes exactly the candidates an uninterrupted search would have. Replayed asks
are checked against the recorded ones.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable

from evo_merge.config import SearchConfig
from evo_merge.errors import EvoMergeError
from evo_merge.operators.recipe import Recipe
from evo_merge.pool.jobs import Job, JobResult
from evo_merge.racing import Partial, Racer
from evo_merge.search.space import Candidate, CoefficientSpace, make_optimizer
from evo_merge.store.lineage import LineageDB

# Nevergrad's sub-optimizers (scipy's COBYLA under NGOpt at small budgets) warn about their
# own settings; nothing a user can act on
warnings.filterwarnings("ignore", category=UserWarning, module=r"scipy\..*")


@dataclass
class SearchBest:
    index: int
    candidate: Candidate
    objective: float
    fitness: float


class CoefficientSearch:
    """Searches the coefficients of one merge of ``parents`` (individual ids)."""

    def __init__(self, search_id: int, cfg: SearchConfig, space: CoefficientSpace, parents: list[int],
                 digests: dict[int, str], seed: int, db: LineageDB, executor: Any, lora_mode: str | None,
                 on_told: Callable[[int, float], None] | None = None, racer: Racer | None = None):
        """``racer``: candidates race against the best candidate scored on every row (fitness
        objective only)."""
        self.id, self.cfg, self.space, self.parents = search_id, cfg, space, parents
        self.racer = racer if cfg.objective == "fitness" else None
        self.splits = racer.splits() if self.racer else ["fitness"]
        if self.racer and self.racer.cfg.search == "first_stage":
            self.splits = self.splits[:1]
        self.digests, self.seed, self.db, self.executor, self.lora_mode = digests, seed, db, executor, lora_mode
        self.on_told = on_told or (lambda told, best: None)

    # -- recipes ------------------------------------------------------------------------------
    def recipe(self, cand: Candidate) -> Recipe:
        """The composition recipe of a candidate: enough to rebuild it anywhere."""
        params: dict[str, Any] = dict(cand.params)
        params["groups"] = self.cfg.groups_spec()
        params["group_labels"] = list(self.space.groups.labels)
        params["origin"] = "search"
        if self.lora_mode:
            params["lora_mode"] = self.lora_mode
        return Recipe("composition", list(self.parents), self.cfg.method, cand.coefficients, params, self.seed)

    def _job(self, cand: Candidate, stage: int = 0) -> Job:
        return Job(recipe=self.recipe(cand), inputs={p: self.digests[p] for p in self.parents},
                   persist=False, loss=self.cfg.objective == "loss", split=self.splits[stage])

    def _goes_on(self, scored: Partial) -> bool:
        """Racing: a candidate goes on to more rows while it can still beat the best candidate
        scored on every row (there is none yet: it goes on)."""
        if self.racer is None or scored.stages == len(self.splits):
            return False
        full = [r["fitness"] for r in self.db.search_candidates(self.id) if r["told"] is not None and r["rows"] is None]
        return not full or self.racer.goes_on(scored, max(full))

    def _objective(self, cand: Candidate, res: JobResult) -> float:
        ev = res.evaluation
        base = -ev.score if self.cfg.objective == "fitness" else float(ev.loss)
        return base + self.space.penalty(cand)

    # -- the loop -----------------------------------------------------------------------------
    def run(self) -> SearchBest:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Nevergrad's advisory warnings (e.g. budget vs dimension)
            return self._run()

    def _run(self) -> SearchBest:
        opt = make_optimizer(self.cfg, self.space)
        log = {row["idx"]: row for row in self.db.search_candidates(self.id)}
        asked: dict[int, Any] = {}   # index -> Nevergrad candidate, until told
        decoded: dict[int, Candidate] = {}

        def ask() -> None:
            idx = len(decoded)
            cand = opt.ask()
            dec = self.space.decode(cand.value)
            if idx in log:
                if log[idx]["value"] != dec.to_json():
                    raise EvoMergeError(f"search {self.id}: replaying the recorded log, candidate {idx} differs "
                                        "from the one recorded (different Nevergrad version?); cannot resume")
            else:
                self.db.record_ask(self.id, idx, dec.to_json())
            asked[idx], decoded[idx] = cand, dec

        def top_up() -> None:
            while len(decoded) < self.cfg.budget and len(asked) < self.cfg.num_workers:
                ask()

        # replay what was told before an interruption
        top_up()
        told = sorted((r for r in log.values() if r["told"] is not None), key=lambda r: r["told"])
        for n, row in enumerate(told):
            opt.tell(asked.pop(row["idx"]), row["objective"])
            self.on_told(n + 1, self._best_objective(told[: n + 1]))
            top_up()
        n_told = len(told)

        # evaluate the rest (with racing, stage by stage: a candidate's next stage is decided
        # at its turn to be told, so with tell_order 'ask' the decisions do not depend on timing)
        tickets: dict[int, int] = {}
        scored: dict[int, Partial] = {}
        finished: dict[int, Partial] = {}

        def submit(idx: int) -> None:
            tickets[self.executor.submit(self._job(decoded[idx], scored[idx].stages if idx in scored else 0))] = idx

        def submit_pending() -> None:
            for idx in sorted(asked):
                if idx not in tickets.values() and idx not in finished and idx not in scored:
                    submit(idx)

        submit_pending()
        while asked:
            ticket, res = self.executor.next_done()
            idx = tickets.pop(ticket)
            part = scored.setdefault(idx, Partial(res))
            part.add(res.evaluation, self.racer.stage_rows(part.stages) if self.racer else None)
            finished[idx] = scored[idx]
            while finished:
                idx = min(finished) if self.cfg.tell_order == "ask" else next(iter(finished))
                if self.cfg.tell_order == "ask" and idx != min(asked):
                    break  # wait for the earliest asked candidate
                part = finished.pop(idx)
                if self._goes_on(part):
                    submit(idx)
                    continue
                del scored[idx]
                res = part.result(self.racer.weights) if self.racer and part.stages > 1 else part.first
                rows = None if self.racer is None or self.racer.complete(part) else part.rows()
                cand = decoded[idx]
                objective = self._objective(cand, res)
                opt.tell(asked.pop(idx), objective)
                ev = res.evaluation
                self.db.record_tell(self.id, idx, told=n_told, objective=objective, fitness=ev.score,
                                    loss=ev.loss, l1=self.space.penalty(cand), task_scores=ev.task_scores,
                                    seconds=res.build_seconds + part.seconds, worker=res.worker, rows=rows)
                n_told += 1
                self.on_told(n_told, self._best_objective(self.db.search_candidates(self.id)))
                top_up()
                submit_pending()
        return self.best()

    @staticmethod
    def _best_objective(rows: list[dict]) -> float:
        """The best told objective, of candidates scored on every row where there are any."""
        return min((r["objective"] for r in _ranked_pool(rows)), default=float("inf"))

    def best(self) -> SearchBest:
        """The candidate scored on every row with the lowest objective (the earliest among equals)."""
        rows = _ranked_pool(self.db.search_candidates(self.id))
        if not rows:
            raise EvoMergeError(f"search {self.id}: no candidate was evaluated")
        row = min(rows, key=lambda r: (r["objective"], r["idx"]))
        value = row["value"]
        return SearchBest(row["idx"], Candidate(value["coefficients"], value["params"]), row["objective"],
                          row["fitness"])


def _ranked_pool(rows: list[dict]) -> list[dict]:
    """The told candidates a search's best comes from: those scored on every row, or all of
    them where racing scored none on every row (``search: first_stage``)."""
    told = [r for r in rows if r["told"] is not None and r["objective"] is not None]
    return [r for r in told if r["rows"] is None] or told
