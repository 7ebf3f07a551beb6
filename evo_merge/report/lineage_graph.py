"""The family tree of one individual: its ancestry as nodes and labelled parent links.

``family_tree`` reads the lineage database once; the renderers only read the ``Tree``:

- ``to_text``: an indented tree, descendant first; an ancestor reached twice is printed
  once and then referenced as ``(see #id)``.
- ``to_mermaid``: a Mermaid ``flowchart TD`` (ancestors on top).
- ``to_dot``: Graphviz DOT, one rank per generation.
- ``to_png``: matplotlib + networkx drawing with a layered layout (no graphviz binary).

Edges run parent -> child. A parent listed more than once by the same child (a succession
step whose own best or global best is the moving individual itself, say) gives one edge
whose label joins the roles, e.g. ``moves, own best``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean

from evo_merge.errors import EvoMergeError
from evo_merge.report.png import pyplot, write_png

SUCCESSION_ROLES = ("moves", "own best", "global best", "repel")
_COEFFICIENT_OPERATORS = ("crossover", "merge", "composition")


@dataclass
class Node:
    """One individual of the tree (or a placeholder for a parent missing from the lineage)."""

    id: int
    generation: int
    operator: str
    parents: list[int] = field(default_factory=list)
    name: str | None = None
    method: str | None = None
    coefficients: list[float] | None = None
    group_labels: list[str] | None = None
    fitness: float | None = None
    test_score: float | None = None
    missing: bool = False

    @property
    def title(self) -> str:
        """``#id name-or-operator method``."""
        if self.missing:
            return f"#{self.id} (not in lineage)"
        parts = [f"#{self.id}", self.name or self.operator]
        if self.method:
            parts.append(self.method)
        return " ".join(parts)

    @property
    def scores(self) -> str:
        """``fit 0.8350 test 0.8400`` (whichever is known)."""
        parts = []
        if self.fitness is not None:
            parts.append(f"fit {self.fitness:.4f}")
        if self.test_score is not None:
            parts.append(f"test {self.test_score:.4f}")
        return " ".join(parts) if parts else ("" if self.missing else "not scored")

    @property
    def label(self) -> str:
        """Two lines: ``#id name-or-operator method`` and ``fit 0.8350 test 0.8400``."""
        return f"{self.title}\n{self.scores}" if self.scores else self.title


@dataclass
class Edge:
    """A parent link; ``roles`` has one entry per time the child lists this parent."""

    parent: int
    child: int
    roles: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return ", ".join(r for r in self.roles if r)


@dataclass
class Tree:
    """The ancestry of ``root``: nodes in breadth-first order from the root, parent links."""

    root: int
    nodes: dict[int, Node]
    edges: list[Edge]

    def parent_edges(self, child: int) -> list[Edge]:
        return [e for e in self.edges if e.child == child]


# -- building ----------------------------------------------------------------------------------------

def family_tree(db, ind_id: int) -> Tree:
    """The individual ``ind_id`` and all its ancestors, with one labelled edge per parent link."""
    if db.get(ind_id) is None:
        raise EvoMergeError(f"no individual {ind_id} in the lineage")
    nodes: dict[int, Node] = {}
    for ind in db.ancestors(ind_id):
        params = ind.params or {}
        labels = params.get("group_labels") if ind.operator == "composition" else None
        nodes[ind.id] = Node(id=ind.id, generation=ind.generation, operator=ind.operator,
                             parents=list(ind.parents or []), name=ind.name, method=ind.method,
                             coefficients=list(ind.coefficients) if ind.coefficients else None,
                             group_labels=list(labels) if labels else None,
                             fitness=ind.fitness, test_score=ind.test_score)
    edges: dict[tuple[int, int], Edge] = {}
    for node in list(nodes.values()):
        for i, p in enumerate(node.parents):
            if p not in nodes:  # a dangling parent id: show it (a generation above its child) rather than drop it
                nodes[p] = Node(id=p, generation=node.generation - 1, operator="?", missing=True)
            elif nodes[p].missing:
                nodes[p].generation = min(nodes[p].generation, node.generation - 1)
            edges.setdefault((p, node.id), Edge(p, node.id)).roles.append(edge_label(node, i))
    return Tree(root=ind_id, nodes=nodes, edges=list(edges.values()))


def edge_label(node: Node, index: int) -> str:
    """The label of the link from ``node.parents[index]`` to ``node``."""
    if node.operator == "mutation":
        return "mutate"
    if node.operator == "succession":
        return SUCCESSION_ROLES[index] if index < len(SUCCESSION_ROLES) else ""
    if node.operator in _COEFFICIENT_OPERATORS:
        rows = _coefficient_rows(node)
        if rows is None:
            return ""
        values = [row[index] for row in rows]
        if len(values) == 1:
            return f"{values[0]:.3f}"
        shown = "/".join(f"{v:.2f}" for v in values) if len(values) <= 3 else \
            f"{min(values):.2f}..{max(values):.2f}"
        return f"mean {fmean(values):.3f}, per-group {shown}"
    return ""


def _coefficient_rows(node: Node) -> list[list[float]] | None:
    """Coefficients as one row per group (one row for crossover/merge); None if absent or malformed."""
    k, coeffs = len(node.parents), node.coefficients
    if not coeffs or not k or len(coeffs) % k:
        return None
    if node.operator != "composition" and len(coeffs) != k:
        return None
    return [coeffs[g * k:(g + 1) * k] for g in range(len(coeffs) // k)]


def _coefficients_text(node: Node) -> str:
    rows = _coefficient_rows(node)
    if rows is None:
        return ", ".join(f"{c:.3f}" for c in node.coefficients) if node.coefficients else ""
    if len(rows) == 1:
        return "[" + ", ".join(f"{c:.3f}" for c in rows[0]) + "]"
    labels = node.group_labels if node.group_labels and len(node.group_labels) == len(rows) else \
        [f"g{g}" for g in range(len(rows))]
    return " ".join(f"{lab}=[" + ", ".join(f"{c:.3f}" for c in row) + "]" for lab, row in zip(labels, rows))


def layers(tree: Tree) -> dict[int, int]:
    """A rank per node: generations in order, split where a parent is in its child's generation
    (succession steps and searches act within a generation)."""
    depth: dict[int, int] = {}
    for n in sorted(tree.nodes.values(), key=lambda n: (n.generation, n.id)):
        same = [depth[p] for p in n.parents if p in depth and tree.nodes[p].generation >= n.generation]
        depth[n.id] = 1 + max(same) if same else 0
    keys = sorted({(tree.nodes[i].generation, d) for i, d in depth.items()})
    rank = {k: r for r, k in enumerate(keys)}
    return {i: rank[(tree.nodes[i].generation, d)] for i, d in depth.items()}


# -- text --------------------------------------------------------------------------------------------

def describe(node: Node) -> str:
    """One line: id, name or operator, method, generation, coefficients, scores."""
    if node.missing:
        return node.title
    parts = [node.title, f"gen {node.generation}"]
    coeffs = _coefficients_text(node)
    if coeffs:
        parts.append(f"coeffs {coeffs}")
    parts.append(node.scores)
    return "  ".join(parts)


def to_text(tree: Tree) -> str:
    """An indented (ASCII) tree from the individual down through its parents."""
    lines: list[str] = []
    seen: set[int] = set()
    stack: list[tuple[int, str, str, str]] = [(tree.root, "", "", "")]  # node, prefix, connector, edge label
    while stack:
        node_id, prefix, connector, label = stack.pop()
        head = prefix + connector + (f"{label}: " if label else "")
        if node_id in seen:
            lines.append(head + f"(see #{node_id})")
            continue
        seen.add(node_id)
        lines.append(head + describe(tree.nodes[node_id]))
        child_prefix = prefix + {"": "", "|-- ": "|   ", "`-- ": "    "}[connector]
        parents = tree.parent_edges(node_id)
        for i in reversed(range(len(parents))):
            e = parents[i]
            stack.append((e.parent, child_prefix, "`-- " if i == len(parents) - 1 else "|-- ", e.label))
    return "\n".join(lines) + "\n"


# -- Mermaid -----------------------------------------------------------------------------------------

def _mermaid_escape(s: str) -> str:
    """Text safe inside a double-quoted Mermaid label (entity codes; newlines as <br/>)."""
    s = s.replace("#", "#35;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
    s = s.replace("`", "#96;").replace("\r", "")
    return s.replace("\n", "<br/>")


def to_mermaid(tree: Tree) -> str:
    """A Mermaid flowchart, ancestors on top, edges parent --> child labelled with their role."""
    out = ["flowchart TD"]
    for n in tree.nodes.values():
        out.append(f'    n{n.id}["{_mermaid_escape(n.label)}"]')
    for e in tree.edges:
        link = f'-->|"{_mermaid_escape(e.label)}"|' if e.label else "-->"
        out.append(f"    n{e.parent} {link} n{e.child}")
    out.append("    classDef root stroke-width:3px;")
    out.append(f"    class n{tree.root} root;")
    missing = [f"n{n.id}" for n in tree.nodes.values() if n.missing]
    if missing:
        out.append("    classDef missing stroke-dasharray: 5 5;")
        out.append(f"    class {','.join(missing)} missing;")
    return "\n".join(out) + "\n"


# -- DOT ---------------------------------------------------------------------------------------------

def _dot_escape(s: str) -> str:
    """Text safe inside a double-quoted DOT string; newlines become centred line breaks."""
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "").replace("\n", "\\n")


def to_dot(tree: Tree) -> str:
    """Graphviz DOT, one rank per generation (split where a parent is in its child's generation)."""
    out = ["digraph lineage {",
           "    rankdir=TB;",
           '    node [shape=box, style="rounded,filled", fillcolor="white", fontname="Helvetica", fontsize=10];',
           '    edge [fontname="Helvetica", fontsize=9];']
    for n in tree.nodes.values():
        attrs = [f'label="{_dot_escape(n.label)}"', f'fillcolor="{_COLORS.get(n.operator, "#eeeeee")}"']
        if n.id == tree.root:
            attrs.append("penwidth=2.5")
        if n.missing:
            attrs.append('style="rounded,dashed"')
        out.append(f"    n{n.id} [{', '.join(attrs)}];")
    for e in tree.edges:
        attr = f' [label="{_dot_escape(e.label)}"]' if e.label else ""
        out.append(f"    n{e.parent} -> n{e.child}{attr};")
    ranks: dict[int, list[int]] = {}
    for node_id, r in layers(tree).items():
        ranks.setdefault(r, []).append(node_id)
    for r in sorted(ranks):
        if len(ranks[r]) > 1:
            out.append("    { rank=same; " + " ".join(f"n{i};" for i in sorted(ranks[r])) + " }")
    out.append("}")
    return "\n".join(out) + "\n"


# -- PNG ---------------------------------------------------------------------------------------------

_COLORS = {"member": "#d9f2d9", "crossover": "#d6e6fa", "merge": "#e6e6e6", "mutation": "#fde5c8",
           "succession": "#e8dcf5", "composition": "#d3f0ee", "?": "#ffffff"}


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


def to_png(tree: Tree, path: Path, title: str | None = None) -> Path:
    """Draw the tree with matplotlib + networkx and write it atomically as a PNG."""
    plt = pyplot()
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_nodes_from(tree.nodes)
    graph.add_edges_from((e.parent, e.child) for e in tree.edges)
    pos = layout(tree)
    rank = layers(tree)
    n_ranks = max(rank.values()) + 1
    width = max(sum(1 for r in rank.values() if r == k) for k in range(n_ranks))
    fig_w = min(60.0, max(6.0, 2.6 * width))
    fig_h = min(60.0, max(3.0, 1.5 * n_ranks + 0.8))
    dpi = max(40, min(110, int(8000 / max(fig_w, fig_h))))
    fig, ax = plt.subplots(figsize=(fig_w, fig_h), dpi=dpi)

    nx.draw_networkx_edges(graph, pos, ax=ax, arrows=True, arrowstyle="-|>", arrowsize=12, edge_color="#666666",
                           node_size=0, min_source_margin=14, min_target_margin=16)
    for node_id, (x, y) in pos.items():
        n = tree.nodes[node_id]
        ax.text(x, y, n.label, ha="center", va="center", fontsize=7, zorder=3,
                bbox={"boxstyle": "round,pad=0.35", "facecolor": _COLORS.get(n.operator, "#eeeeee"),
                      "edgecolor": "black" if node_id == tree.root else "#888888",
                      "linewidth": 2.0 if node_id == tree.root else 0.8,
                      "linestyle": "--" if n.missing else "-"})
    incoming: dict[int, list[Edge]] = {}
    for e in tree.edges:
        if e.label:
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
    ax.set_ylim(-(n_ranks - 1) - 0.6, 0.6)
    ax.set_title(title or f"family tree of #{tree.root}", fontsize=10)
    return write_png(fig, path)
