"""The engine's final report: the test split for the best member, the uniform merge, the
evolved (or searched) best and the top-k ensemble. A mixin of ``Engine``: it reads the
engine's fitness, weights and member ids."""

from __future__ import annotations

from evo_merge.operators.recipes import Recipe
from evo_merge.pool.jobs import Job


class EngineReport:
    heldout: bool = False  # the run has held-out tasks: report their scores too
    def report(self, population: list[int]) -> list[dict]:
        """Score on the test split: best initial member, uniform merge, evolved best, top-k ensemble."""
        uniform_id = self._uniform_merge(self.db.last_generation() or 0)
        best_member = max(self.member_ids, key=self.fitness.__getitem__)
        ranked = sorted(population, key=lambda i: (-self.fitness[i], i))
        top_k = ranked[: self.evo.ensemble.top_k]
        rows = []
        entries = [("best initial member", best_member), ("uniform merge", uniform_id), ("evolved best", ranked[0])]
        self.hooks.phase("test split", len(entries) + 2 * len(top_k))
        rows.extend(self._test_rows(entries))
        hashes = [self.digest[i] for i in top_k]
        ens_fit = self.executor.ensemble(hashes, "fitness")
        ens_test = self.executor.ensemble(hashes, "test")
        for _ in range(2 * len(top_k)):
            self.hooks.advance()
        label = f"top-{len(top_k)} ensemble"
        detail = {"ids": top_k, "test_task_scores": ens_test.task_scores}
        row = {"name": label, "ids": top_k, "fitness": ens_fit.score, "test": ens_test.score,
               "test_tasks": ens_test.task_scores}
        if self.heldout:
            ens_held = self.executor.ensemble(hashes, "heldout")
            detail.update(heldout=ens_held.score, heldout_task_scores=ens_held.task_scores)
            row.update(heldout=ens_held.score, heldout_tasks=ens_held.task_scores)
        self.db.set_result(label, ens_fit.score, ens_test.score, detail)
        rows.append(row)
        return rows

    def _uniform_merge(self, generation: int) -> int:
        uniform = Recipe("merge", list(self.member_ids), "linear", [1.0] * len(self.member_ids), {}, self._seed())
        if self.evo_is_lora:
            uniform.params["lora_mode"] = self.evo.crossover.lora_mode
        return self._execute("uniform merge", generation, [uniform])[0]

    def _test_rows(self, entries: list[tuple[str, int]]) -> list[dict]:
        """Score individuals on the test split and record them as report rows."""
        splits = ["test", "heldout"] if self.heldout else ["test"]
        jobs = [Job(weights=self.digest[ind], split=split) for _, ind in entries for split in splits]
        results = iter(self.executor.run(jobs, on_done=lambda _: self.hooks.advance()))
        rows = []
        for label, ind in entries:
            ev = next(results).evaluation
            detail = {"id": ind, "test_task_scores": ev.task_scores}
            row = {"name": label, "ids": [ind], "fitness": self.fitness[ind], "test": ev.score,
                   "test_tasks": ev.task_scores}
            if self.heldout:
                held = next(results).evaluation
                detail.update(heldout=held.score, heldout_task_scores=held.task_scores)
                row.update(heldout=held.score, heldout_tasks=held.task_scores)
            self.db.set_test(ind, ev.score, ev.task_scores)
            self.db.set_result(label, self.fitness[ind], ev.score, detail)
            rows.append(row)
        return rows

    def search_report(self, result: int) -> list[dict]:
        """Test split: best member, uniform merge of all members, the searched composition."""
        uniform_id = self._uniform_merge(self.db.last_generation() or 0)
        best_member = max(self.member_ids, key=self.fitness.__getitem__)
        entries = [("best initial member", best_member), ("uniform merge", uniform_id),
                   ("searched composition", result)]
        self.hooks.phase("test split", len(entries))
        return self._test_rows(entries)
