"""``evo-merge compare``: every method on the same population and split, several seeds.

For each target task and seed, each method runs once (methods that share a run, like
GENOME and its ensemble, share it), its report row is scored on the held-out test
split, and the table gives the mean and standard deviation over seeds. Results go to
``OUT/compare.csv``, ``OUT/compare.md`` and ``OUT/compare.png``; with a sweep, also
``OUT/sweep.csv`` and ``OUT/sweep.png``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from evo_merge.baselines import DEFAULT_METHODS, METHODS, MethodPlan
from evo_merge.compare_report import Score, write_outputs
from evo_merge.config import CompareConfig, RunConfig, load_run_config
from evo_merge.errors import EvoMergeError
from evo_merge.runner import Prepared, RunOutcome, execute, execute_merge, execute_search, make_executor, prepare


def _row(outcome: RunOutcome, plan: MethodPlan) -> dict:
    for row in outcome.rows:
        if row["name"] == plan.row or (plan.row == "ensemble" and row["name"].endswith("ensemble")):
            return row
    raise EvoMergeError(f"report of {outcome.run_dir} has no row {plan.row!r}")


class Comparison:
    """Runs the methods; one prepared population and one executor per target task."""

    def __init__(self, cfg: CompareConfig, progress: Callable[[str], None] = lambda msg: None):
        self.cfg, self.progress = cfg, progress
        self.methods = cfg.methods or DEFAULT_METHODS
        self.base_task = load_run_config(cfg.base).tasks[0].spec  # also checks the base config early
        for name in self.methods + ([cfg.sweep.method] if cfg.sweep else []):
            METHODS.get(name)
        out = Path(cfg.out)
        if out.exists() and any(out.iterdir()):
            raise EvoMergeError(f"compare output directory {out} already exists and is not empty; choose another out")
        self.total, self.done = self._count(), 0

    def _count(self) -> int:
        """Runs the comparison makes: methods sharing a run count once; the sweep's runs too."""
        keys = {json.dumps([p.kind, p.overrides], sort_keys=True)
                for p in (METHODS.get(m)(self.cfg.budget) for m in self.methods)}
        sweep = len(self.cfg.sweep.fitness_samples) if self.cfg.sweep else 0
        return (len(self.cfg.targets or [None]) * len(keys) + sweep) * len(self.cfg.seeds)

    def _started(self, what: str) -> None:
        self.done += 1
        self.progress(f"run {self.done}/{self.total}: {what}")

    def _config(self, target: Path | None, plan: MethodPlan, seed: int, out: Path,
                task_overrides: dict | None = None) -> RunConfig:
        overrides = {**plan.overrides, "seed": seed, "out": str(out), "pool.backend": "local",
                     "pool.mode": "generational"}
        if target is not None or task_overrides:
            spec = target or self.base_task
            overrides["tasks"] = [{"spec": str(spec), "overrides": task_overrides or {}}]
        return load_run_config(self.cfg.base, overrides)

    def _run(self, cfg: RunConfig, plan: MethodPlan, prepared: Prepared, executor, tname: str) -> RunOutcome:
        if plan.kind == "merge":
            if tname not in self.cfg.relevant:
                raise EvoMergeError(f"method 'relevant average' needs the relevant members of target {tname} "
                                    f"in the compare config's 'relevant' (targets named: {sorted(self.cfg.relevant)})")
            return execute_merge(cfg, self.cfg.relevant[tname], prepared=prepared, executor=executor)
        run = execute_search if plan.kind == "search" else execute
        return run(cfg, prepared=prepared, executor=executor)

    def scores(self) -> list[Score]:
        targets = self.cfg.targets or [None]
        out = Path(self.cfg.out)
        scores: list[Score] = []
        for target in targets:
            tname = target.stem if target else "base"
            hosts = _Hosts()  # one prepared population and executor per LoRA representation
            try:
                for seed in self.cfg.seeds:
                    done: dict[str, RunOutcome] = {}
                    for method in self.methods:
                        plan = METHODS.get(method)(self.cfg.budget)
                        key = json.dumps([plan.kind, plan.overrides], sort_keys=True)
                        if key not in done:
                            run_dir = out / tname / _slug(method) / f"seed{seed}"
                            cfg = self._config(target, plan, seed, run_dir)
                            prepared, executor = hosts.get(cfg)
                            self._started(f"{tname}: {method}, seed {seed}")
                            done[key] = self._run(cfg, plan, prepared, executor, tname)
                        row = _row(done[key], plan)
                        scores.append(Score(tname, method, seed, row["fitness"], row["test"], row.get("heldout"),
                                            str(done[key].run_dir), evaluations(done[key].run_dir)))
            finally:
                hosts.close()
        return scores

    def sweep(self) -> list[Score]:
        """The sweep method with each fitness-set size; the test set is the same for all sizes."""
        sw = self.cfg.sweep
        assert sw is not None
        plan = METHODS.get(sw.method)(self.cfg.budget)
        target = self.cfg.targets[0] if self.cfg.targets else None
        tname = target.stem if target else "base"
        out, scores = Path(self.cfg.out) / "sweep", []
        for size in sw.fitness_samples:
            task_overrides = {"fitness_samples": size, "test_split": "last"}
            hosts = _Hosts()
            try:
                for seed in self.cfg.seeds:
                    cfg = self._config(target, plan, seed, out / f"fitness{size}" / f"seed{seed}", task_overrides)
                    prepared, executor = hosts.get(cfg)
                    self._started(f"sweep {sw.method}: {size} fitness examples, seed {seed}")
                    row = _row(self._run(cfg, plan, prepared, executor, tname), plan)
                    scores.append(Score(tname, f"{sw.method} @ {size}", seed, row["fitness"], row["test"],
                                        row.get("heldout"), str(cfg.out), evaluations(cfg.out)))
            finally:
                hosts.close()
        return scores


class _Hosts:
    """Prepared populations and executors, one per LoRA representation (their genomes differ)."""

    def __init__(self) -> None:
        self._items: dict[str, tuple[Prepared, object]] = {}

    def get(self, cfg: RunConfig) -> tuple[Prepared, object]:
        key = cfg.lora.model_dump_json()
        if key not in self._items:
            prepared = prepare(cfg)
            self._items[key] = (prepared, make_executor(cfg, prepared.spec))
        return self._items[key]

    def close(self) -> None:
        for _, executor in self._items.values():
            executor.close()


def evaluations(run_dir: Path) -> int:
    """Individuals scored and search candidates evaluated in a run: its fitness evaluations."""
    from evo_merge.store import RunStore

    with RunStore.open(run_dir) as store:
        told = sum(1 for s in store.lineage.searches() for c in store.lineage.search_candidates(s["id"])
                   if c["told"] is not None)
        return len(store.lineage.all()) + told


def _slug(name: str) -> str:
    name = name.replace("+", " plus")
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def summarise(scores: list[Score]) -> list[dict]:
    """Mean and standard deviation over seeds per (target, method), in first-seen order."""
    groups: dict[tuple[str, str], list[Score]] = {}
    for s in scores:
        groups.setdefault((s.target, s.method), []).append(s)
    rows = []
    for (target, method), group in groups.items():
        test = np.array([s.test for s in group])
        fit = np.array([s.fitness for s in group])
        held = [s.heldout for s in group if s.heldout is not None]
        rows.append({"target": target, "method": method, "seeds": len(group),
                     "test_mean": float(test.mean()), "test_std": float(test.std(ddof=1)) if len(group) > 1 else 0.0,
                     "fitness_mean": float(fit.mean()),
                     "evaluations_mean": float(np.mean([s.evaluations for s in group])),
                     "heldout_mean": float(np.mean(held)) if held else None})
    return rows


@dataclass
class ComparisonResult:
    """Every run's score, the per-method summaries, and the files written."""

    scores: list[Score]
    summary: list[dict]
    sweep: list[Score]
    sweep_summary: list[dict]
    paths: dict[str, Path]


def run_comparison(cfg: CompareConfig, dest: Path | None = None, progress: Callable[[str], None] = lambda m: None,
                   title: str | None = None) -> ComparisonResult:
    """``evo-merge compare``: run every method (and the sweep), write the CSV, Markdown and PNG to
    ``dest`` (default: the config's ``out``)."""
    comparison = Comparison(cfg, progress)
    scores = comparison.scores()
    sweep = comparison.sweep() if cfg.sweep else []
    dest = Path(dest or cfg.out)
    summary = summarise(scores)
    paths = write_outputs(summary, scores, dest, "compare",
                          title or f"held-out test score, mean ± std over seeds {cfg.seeds}")
    sweep_summary = summarise(sweep) if sweep else []
    if sweep:
        paths.update({f"sweep_{k}": v for k, v in write_outputs(
            sweep_summary, sweep, dest, "sweep", f"{cfg.sweep.method}: fitness-set size vs test score").items()})
    return ComparisonResult(scores, summary, sweep, sweep_summary, paths)
