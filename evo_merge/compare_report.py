"""The outputs of ``evo-merge compare``: a CSV of every run, a Markdown table of means, a bar chart."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evo_merge.report.png import png_bytes, pyplot
from evo_merge.weights_io import atomic_write_bytes, atomic_write_text


@dataclass
class Score:
    target: str
    method: str
    seed: int
    fitness: float
    test: float
    heldout: float | None
    run_dir: str
    evaluations: int = 0


def write_outputs(summary: list[dict], scores: list[Score], out: Path, stem: str, title: str) -> dict[str, Path]:
    """CSV of every run, a Markdown table of means and a bar chart."""
    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(Score.__dataclass_fields__))
    writer.writeheader()
    writer.writerows([vars(s) for s in scores])
    paths = {"csv": out / f"{stem}.csv", "md": out / f"{stem}.md", "png": out / f"{stem}.png"}
    atomic_write_text(paths["csv"], buf.getvalue())
    atomic_write_text(paths["md"], markdown(summary))
    atomic_write_bytes(paths["png"], chart(summary, title))
    return paths


def markdown(summary: list[dict]) -> str:
    targets = list(dict.fromkeys(r["target"] for r in summary))
    methods = list(dict.fromkeys(r["method"] for r in summary))
    cell = {(r["target"], r["method"]): r for r in summary}
    lines = ["| method | " + " | ".join(targets) + " | mean | evaluations |", "|---" * (len(targets) + 3) + "|"]
    for m in methods:
        vals = [cell[(t, m)] for t in targets if (t, m) in cell]
        cells = [f"{cell[(t, m)]['test_mean']:.3f} ± {cell[(t, m)]['test_std']:.3f}" if (t, m) in cell else ""
                 for t in targets]
        evals = np.mean([v.get("evaluations_mean", 0) for v in vals])
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {np.mean([v['test_mean'] for v in vals]):.3f} | "
                     f"{evals:.0f} |")
    return "\n".join(lines) + "\n"


def chart(summary: list[dict], title: str) -> bytes:
    plt = pyplot()
    targets = list(dict.fromkeys(r["target"] for r in summary))
    methods = list(dict.fromkeys(r["method"] for r in summary))
    cell = {(r["target"], r["method"]): r for r in summary}
    width = 0.8 / max(1, len(targets))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.8 * len(methods) + 2), 3.8), dpi=120)
    x = np.arange(len(methods))
    for k, t in enumerate(targets):
        means = [cell[(t, m)]["test_mean"] if (t, m) in cell else np.nan for m in methods]
        stds = [cell[(t, m)]["test_std"] if (t, m) in cell else 0.0 for m in methods]
        ax.bar(x + (k - (len(targets) - 1) / 2) * width, means, width, yerr=stds, capsize=2, label=t)
    ax.set_xticks(x, methods, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("held-out test score")
    ax.set_ylim(0, 1.05)
    ax.set_title(title, fontsize=9)
    if len(targets) > 1:
        ax.legend(fontsize=7, ncol=min(4, len(targets)))
    return png_bytes(fig)
