"""Fitness that cannot silently read zero: after the members are scored, a task on which every
member scores the same (all zero, say) gets a warning with its first predictions next to the
answers, since such a task gives selection nothing to go on (a wrong prompt, answer regex,
BOS setting or decoding is the usual cause; ``evo-merge eval`` shows more)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from evo_merge.fitness.tasks import Task

SHOWN = 3


def shown(task: Task, row: dict[str, Any], prediction: Any) -> str:
    """A prediction as text: the chosen choice for multiple choice, the generated answer, a score."""
    choices = row.get(task.spec.choices_field) if task.spec.choices_field else None
    if choices is not None and np.ndim(prediction) == 1 and len(prediction) == len(choices):
        return repr(str(choices[int(np.argmax(prediction))]))
    if isinstance(prediction, (float, np.floating)):
        return f"{float(prediction):.4f}"
    return repr(prediction)


def row_view(task: Task, row: dict[str, Any], prediction: Any) -> tuple[str, str, str]:
    """A row as users see it: the prompt, the prediction as text, the answer."""
    if task.spec.lm_eval is not None:
        from evo_merge.fitness.lm_eval_task import lm_eval_view

        return lm_eval_view(task.spec.lm_eval, row, prediction)
    return task.spec.prompt.format(**row), shown(task, row, prediction), str(row[task.spec.answer_field])


def flat_task_warnings(tasks: Sequence[Task], evaluations: Sequence[Any]) -> list[str]:
    """One warning per task on which every member scored the same (members' fitness evaluations,
    with predictions)."""
    out = []
    for task in tasks:
        scores = [ev.task_scores.get(task.name) for ev in evaluations]
        if len(scores) < 2 or len(set(scores)) > 1:
            continue
        predictions = evaluations[0].predictions.get(task.name) or []
        rows = task.fitness[:SHOWN]
        samples = "; ".join(f"{prompt!r} -> {pred} (answer {answer!r})"
                            for prompt, pred, answer in (row_view(task, row, p) for row, p in zip(rows, predictions)))
        out.append(f"task {task.name}: every member scores {scores[0]:.3f} on the fitness set, so selection has "
                   f"nothing to go on; check the prompt, answer_regex, add_bos and metric "
                   f"(evo-merge eval shows predictions). First predictions: {samples}")
    return out
