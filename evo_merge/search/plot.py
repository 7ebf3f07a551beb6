"""Best-so-far curve of a coefficient search as a PNG (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

from evo_merge.report.png import pyplot, write_png


def best_so_far(rows: list[dict], key: str = "fitness") -> tuple[list[int], list[float]]:
    """(tell position, best ``key`` so far) over the told candidates, in tell order."""
    told = sorted((r for r in rows if r["told"] is not None), key=lambda r: r["told"])
    xs, ys, best = [], [], float("-inf")
    for r in told:
        best = max(best, r[key])
        xs.append(r["told"] + 1)
        ys.append(best)
    return xs, ys


def plot_search(rows: list[dict], path: Path, title: str, refs: dict[str, float] | None = None) -> Path:
    """Each candidate's fitness and the best so far against the number evaluated; ``refs``
    (e.g. the best member's and the uniform merge's fitness) as dashed horizontal lines."""
    plt = pyplot()

    told = sorted((r for r in rows if r["told"] is not None), key=lambda r: r["told"])
    xs, ys = best_so_far(rows)
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    ax.scatter([r["told"] + 1 for r in told], [r["fitness"] for r in told], s=8, alpha=0.4, label="candidate")
    ax.step(xs, ys, where="post", color="C1", label="best so far")
    for k, (name, value) in enumerate((refs or {}).items()):
        ax.axhline(value, color=f"C{k + 2}", linestyle="--", linewidth=1, label=name)
    ax.set_xlabel("candidates evaluated")
    ax.set_ylabel("fitness")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    return write_png(fig, path)
