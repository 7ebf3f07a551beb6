"""Fitness per generation of a run as a PNG (matplotlib Agg, no display needed)."""

from __future__ import annotations

from pathlib import Path

from evo_merge.errors import EvoMergeError
from evo_merge.report.png import pyplot, write_png


def plot_fitness(db, path: Path, title: str) -> Path:
    """Best and mean fitness per generation with a mean +/- std band; the final results'
    fitness-set scores (best initial member, uniform merge, evolved best, ensemble) as markers
    after the last generation when the run has finished. Written atomically."""
    rows = db.generations()
    if not rows:
        run = Path(db.path).parent if getattr(db, "path", None) else "the run"
        raise EvoMergeError(f"no generations recorded in {run} yet")
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    gens = [r["generation"] for r in rows]
    best = [r["best"] for r in rows]
    mean = [r["mean"] for r in rows]
    std = [r["std"] or 0.0 for r in rows]
    lo, hi = [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)]
    if min(best + mean) >= 0 and max(best + mean) <= 1:  # a share (accuracy): the band stays in [0, 1]
        lo, hi = [max(0.0, x) for x in lo], [min(1.0, x) for x in hi]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    ax.fill_between(gens, lo, hi,
                    color="C0", alpha=0.2, linewidth=0, label="mean \u00b1 std")
    ax.plot(gens, mean, color="C0", marker="o", markersize=3, label="mean")
    ax.plot(gens, best, color="C1", marker="o", markersize=3, label="best")
    results = [r for r in db.results() if r.get("fitness") is not None]
    if results:
        x = gens[-1] + 0.35
        for k, r in enumerate(results):
            ax.scatter([x], [r["fitness"]], marker="D", s=22, color=f"C{(k + 2) % 10}", zorder=3,
                       label=f"final: {r['name']}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("generation")
    ax.set_ylabel("fitness (fitness set)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=7)
    return write_png(fig, path)
