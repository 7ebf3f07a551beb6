"""The final results of a run as plain records: which model each row is (ids, member names),
what the scores measure, what the top-k ensemble is, and what to run next.

``evo-merge run`` (from the report's rows) and ``evo-merge status`` (from the lineage's
results table) render the same records; ``--format json|csv`` writes them as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import yaml

METRICS = {
    "mc_loglik": "accuracy: share of questions whose right choice gets the highest log-likelihood",
    "exact_match": "exact match: share of generated answers equal to the reference",
    "neg_loss": "minus the mean per-token loss of the answers (higher is better)",
    "lm_eval": "the lm-eval task's metric",
}
ORDER = ("best initial member", "uniform merge", "relevant average", "evolved best", "searched composition")


def metric_text(config: dict | None) -> str:
    """What the scores are: each task's name and metric (and weight when there are several)."""
    tasks = (config or {}).get("tasks") or []
    parts = []
    for t in tasks:
        spec = _spec(t)
        name = spec.get("name") or Path(str(t.get("spec", "task"))).stem
        metric = "lm_eval" if spec.get("lm_eval") else spec.get("metric", "mc_loglik")
        if metric == "lm_eval":
            metric_name = (spec.get("lm_eval") or {}).get("metric") or "its first metric"
            what = f"lm-eval task {(spec.get('lm_eval') or {}).get('task', '?')}, {metric_name}"
        else:
            what = METRICS.get(metric, f"metric {metric}")
        weight = f", weight {t.get('weight', 1.0):g}" if len(tasks) > 1 else ""
        parts.append(f"{name} ({what}{weight})")
    if not parts:
        return "fitness score"
    return ("weighted mean of " if len(parts) > 1 else "") + "; ".join(parts)


def run_metric_text(store: Any) -> str:
    """``metric_text`` of a run's stored config, its task specs read from the run's own copies
    (``inputs/``) where it has them; "fitness score" when the config cannot be read."""
    from evo_merge.errors import EvoMergeError
    from evo_merge.run_inputs import redirect_config

    try:
        return metric_text(redirect_config(store.root, store.config()))
    except EvoMergeError:  # an old or partial run
        return metric_text(None)


def _spec(task: dict) -> dict:
    """A task spec file's fields (with the entry's overrides); {} when it cannot be read."""
    try:
        spec = yaml.safe_load(Path(str(task.get("spec"))).read_text()) or {}
    except (OSError, yaml.YAMLError, TypeError):
        spec = {}
    if not isinstance(spec, dict):
        spec = {}
    return {**spec, **(task.get("overrides") or {})}


def _who(ind: Any) -> str:
    if ind is None:
        return "?"
    if ind.operator == "member":
        return f"#{ind.id} member {ind.name}" if ind.name else f"#{ind.id} member"
    return f"#{ind.id} {ind.operator}" + (f" {ind.method}" if ind.method else "")


def result_records(results: Sequence[dict], db) -> list[dict[str, Any]]:
    """One record per results row, in the report's order: name, ids, individual, kind, scores.

    ``results``: the report's rows (``name``, ``ids``, ``fitness``, ``test``, maybe ``heldout``)
    or the lineage's results table (``name``, ``fitness``, ``test_score``, ``detail``)."""
    out = []
    for r in results:
        detail = r.get("detail") or {}
        ids = list(r.get("ids") or detail.get("ids") or ([detail["id"]] if "id" in detail else []))
        test = r.get("test", r.get("test_score"))
        heldout = r.get("heldout", detail.get("heldout"))
        ensemble = r["name"].endswith("ensemble")
        inds = [db.get(i) for i in ids]
        if ensemble:
            individual = "output ensemble of " + ", ".join(f"#{i}" for i in ids)
        else:
            individual = "; ".join(_who(ind) for ind in inds)
        rec = {"name": r["name"], "ids": ids, "individual": individual,
               "member": inds[0].name if len(inds) == 1 and inds[0] is not None and inds[0].operator == "member"
               else None,
               "kind": "output ensemble" if ensemble else "model",
               "fitness": r.get("fitness"), "test": test}
        if heldout is not None:
            rec["heldout"] = heldout
        out.append(rec)
    rank = {n: k for k, n in enumerate(ORDER)}
    return sorted(out, key=lambda rec: (rank.get(rec["name"], len(ORDER)), rec["name"]))


def ensemble_note(records: Sequence[dict]) -> str | None:
    """What the top-k ensemble row is (None when there is none)."""
    for rec in records:
        if rec["kind"] == "output ensemble":
            ids = ", ".join(f"#{i}" for i in rec["ids"])
            return (f"{rec['name']}: an output ensemble of {ids} (their predictions combined per example), "
                    "not one model: export one of its ids, or --best")
    return None


def next_steps(run_dir: Path | str, best: int | None = None) -> list[tuple[str, str]]:
    """(command, what it gives) for the commands to run after a run."""
    d = str(run_dir)
    steps = [(f"evo-merge status {d}", "this table again, with fitness per generation"),
             (f"evo-merge plot {d}", "fitness per generation as a PNG"),
             (f"evo-merge export {d} OUT --best", "the evolved best as a Hugging Face model or adapter")]
    if best is not None:
        steps.append((f"evo-merge lineage {d} {best} --composition", "the evolved best as weights of the members"))
    return steps
