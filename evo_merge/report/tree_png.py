"""A family tree as a PNG: matplotlib + networkx with a layered layout (no graphviz binary).

A large tree is cut to the ancestors within a few parent steps of the individual (``prune``;
a box at the cut says how many older ancestors it leaves out), edge labels are drawn only
while they fit, and a legend names the operators' colours."""

from __future__ import annotations

from pathlib import Path
from statistics import fmean

from evo_merge.report.png import pyplot, write_png
from evo_merge.report.tree import Edge, Tree, layers, operator_of, prune

EDGE_LABELS_UP_TO = 24  # nodes; above this the edge labels would cover each other


# -- PNG ---------------------------------------------------------------------------------------------

def layout(tree: Tree) -> dict[int, tuple[float, float]]:
    """Layered positions: y = -rank (oldest on top), x spread within a rank, ordered by the mean
    x of each node's parents (barycentre) to keep edges short."""
    rank = layers(tree)
    by_rank: dict[int, list[int]] = {}
    for node_id, r in rank.items():
        by_rank.setdefault(r, []).append(node_id)
    pos: dict[int, tuple[float, float]] = {}
    for r in sorted(by_rank):
        def key(i: int) -> tuple[float, int]:
            xs = [pos[p][0] for p in tree.nodes[i].parents if p in pos]
            return (fmean(xs) if xs else 0.0, i)
        ordered = sorted(by_rank[r], key=key)
        for k, node_id in enumerate(ordered):
            pos[node_id] = (k - (len(ordered) - 1) / 2, -float(r))
    return pos


def to_png(tree: Tree, path: Path, title: str | None = None, depth: int | None = None,
           max_nodes: int = 40) -> Path:
    """Draw the tree with matplotlib + networkx and write it atomically as a PNG. ``depth``:
    parent steps above the individual to draw (None: as many as keep it to ``max_nodes``)."""
    plt = pyplot()
    import networkx as nx
    from matplotlib.patches import Patch

    full = len(tree.nodes)
    tree = prune(tree, depth, max_nodes)
    notes = []
    if len(tree.nodes) < full:
        notes.append(f"{len(tree.nodes)} of {full} individuals drawn (--depth N for more)")
    edge_labels = len(tree.nodes) <= EDGE_LABELS_UP_TO
    if not edge_labels and any(e.label for e in tree.edges):
        notes.append("edge labels left out: see --format text")

    graph = nx.DiGraph()
    graph.add_nodes_from(tree.nodes)
    graph.add_edges_from((e.parent, e.child) for e in tree.edges)
    pos = layout(tree)
    rank = layers(tree)
    n_ranks = max(rank.values()) + 1
    width = max(sum(1 for r in rank.values() if r == k) for k in range(n_ranks))
    fig_w = min(60.0, max(6.0, 2.6 * width))
    fig_h = min(60.0, max(3.5, (1.5 if edge_labels else 1.1) * n_ranks + 1.6))  # labels need room
    dpi = max(40, min(110, int(8000 / max(fig_w, fig_h))))
    fig, ax = plt.subplots(figsize=(fig_w, fig_h), dpi=dpi)

    nx.draw_networkx_edges(graph, pos, ax=ax, arrows=True, arrowstyle="-|>", arrowsize=12, edge_color="#666666",
                           node_size=0, min_source_margin=14, min_target_margin=16)
    for node_id, (x, y) in pos.items():
        n = tree.nodes[node_id]
        ax.text(x, y, n.label, ha="center", va="center", fontsize=7, zorder=3,
                bbox={"boxstyle": "round,pad=0.35", "facecolor": n.color,
                      "edgecolor": "black" if node_id == tree.root else "#888888",
                      "linewidth": 2.0 if node_id == tree.root else 0.8,
                      "linestyle": "--" if n.missing else "-"})
    incoming: dict[int, list[Edge]] = {}
    for e in tree.edges:
        if e.label and edge_labels:
            incoming.setdefault(e.child, []).append(e)
    for child, edges in incoming.items():
        edges.sort(key=lambda e: pos[e.parent][0])
        for k, e in enumerate(edges):
            # the middle of the edge, moved half a rank toward the child where that is on a rank;
            # labels of edges into one child staggered in height (the edges converge there)
            (x0, y0), (x1, y1) = pos[e.parent], pos[child]
            span = max(1, round(abs(y1 - y0)))
            t = 0.5 if span % 2 else 0.5 - 0.5 / span
            if len(edges) > 1:
                t += (-0.15 + 0.4 * k / (len(edges) - 1)) / span
            ax.text(x1 + (x0 - x1) * t, y1 + (y0 - y1) * t, e.label, ha="center", va="center", fontsize=6,
                    zorder=2.5, bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none",
                                      "alpha": 0.85})
    gens: dict[int, int] = {}
    for node_id, r in rank.items():
        gens.setdefault(r, tree.nodes[node_id].generation)
    ax.set_yticks([-float(r) for r in sorted(gens)], [f"gen {gens[r]}" for r in sorted(gens)], fontsize=8)
    ax.tick_params(axis="y", length=0)
    ax.set_xticks([])
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    ax.set_xlim(-width / 2 - 0.2, width / 2 + 0.2)
    ops = list(dict.fromkeys(n.operator for n in sorted(tree.nodes.values(), key=lambda n: n.id)
                             if not n.missing))
    handles = [Patch(facecolor=operator_of(op).color, edgecolor="#888888", label=op) for op in ops]
    handles.append(Patch(facecolor="white", edgecolor="black", linewidth=2.0, label=f"#{tree.root}"))
    if any(n.missing for n in tree.nodes.values()):
        handles.append(Patch(facecolor="white", edgecolor="#888888", linestyle="--", label="not in lineage"))
    ax.set_ylim(-(n_ranks - 1) - 0.6, 1.1)  # headroom above the oldest rank for the legend
    ax.legend(handles=handles, loc="upper center", ncol=min(len(handles), 7), fontsize=7, frameon=False,
              handlelength=1.2, columnspacing=1.0)
    head = title or f"family tree of #{tree.root}"
    ax.set_title(head + ("\n" + "; ".join(notes) if notes else ""), fontsize=10)
    return write_png(fig, path)
