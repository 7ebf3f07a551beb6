"""The family tree of one individual: its ancestry as nodes and labelled parent links.

``family_tree`` reads the lineage database once; the renderers (``tree_text``: text,
Mermaid, DOT; ``tree_png``: a PNG) only read the ``Tree``. Edges run parent -> child. A
parent listed more than once by the same child (a succession step whose own best or
global best is the moving individual itself, say) gives one edge whose label joins the
roles, e.g. ``moves, own best``. Labels, colours and coefficient texts come from each
individual's operator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from evo_merge.errors import EvoMergeError
from evo_merge.operators.base import OPERATORS, Operator, operator
from evo_merge.store.lineage import Individual


def operator_of(name: str) -> type[Operator]:
    """The operator class of a lineage row (the base class for names no module registers)."""
    return operator(name) if name in OPERATORS else Operator


@dataclass
class Node:
    """One individual of the tree: its lineage row, or a placeholder for a parent missing from it."""

    ind: Individual
    missing: bool = False
    hidden: int = 0  # ancestors left out of a pruned drawing (``prune``)

    @property
    def id(self) -> int:
        return self.ind.id

    @property
    def generation(self) -> int:
        return self.ind.generation

    @property
    def operator(self) -> str:
        return self.ind.operator

    @property
    def parents(self) -> list[int]:
        return list(self.ind.parents or [])

    @property
    def color(self) -> str:
        return "#ffffff" if self.missing else operator_of(self.operator).color

    @property
    def title(self) -> str:
        """``#id name-or-operator method``."""
        if self.missing:
            return f"#{self.id} (not in lineage)"
        parts = [f"#{self.id}", self.ind.name or self.operator]
        if self.ind.method:
            parts.append(self.ind.method)
        return " ".join(parts)

    @property
    def scores(self) -> str:
        """``fit 0.8350 test 0.8400`` (whichever is known)."""
        parts = []
        if self.ind.fitness is not None:
            parts.append(f"fit {self.ind.fitness:.4f}")
        if self.ind.test_score is not None:
            parts.append(f"test {self.ind.test_score:.4f}")
        return " ".join(parts) if parts else ("" if self.missing else "not scored")

    @property
    def label(self) -> str:
        """Two lines: ``#id name-or-operator method`` and ``fit 0.8350 test 0.8400`` (a third,
        ``+N older ancestors``, where a pruned drawing leaves some out)."""
        text = f"{self.title}\n{self.scores}" if self.scores else self.title
        return text + (f"\n+{self.hidden} older ancestors" if self.hidden else "")


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
    """The individual ``ind_id`` and all its ancestors, with one labelled edge per parent link;
    each link's label is the parent's role as the child's operator states it."""
    if db.get(ind_id) is None:
        raise EvoMergeError(f"no individual {ind_id} in the lineage")
    nodes: dict[int, Node] = {ind.id: Node(ind) for ind in db.ancestors(ind_id)}
    edges: dict[tuple[int, int], Edge] = {}
    for node in list(nodes.values()):
        roles = operator_of(node.operator).roles(node.ind) if not node.missing else []
        for i, p in enumerate(node.parents):
            if p not in nodes:  # a dangling parent id: show it (a generation above its child) rather than drop it
                nodes[p] = Node(Individual(id=p, generation=node.generation - 1, operator="?", weights=""), True)
            elif nodes[p].missing:
                nodes[p].ind.generation = min(nodes[p].generation, node.generation - 1)
            edges.setdefault((p, node.id), Edge(p, node.id)).roles.append(roles[i] if i < len(roles) else "")
    return Tree(root=ind_id, nodes=nodes, edges=list(edges.values()))


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


def depths(tree: Tree) -> dict[int, int]:
    """Parent steps from the root to each node (the shortest way)."""
    parents: dict[int, list[int]] = {}
    for e in tree.edges:
        parents.setdefault(e.child, []).append(e.parent)
    out, frontier = {tree.root: 0}, [tree.root]
    while frontier:
        nxt = []
        for n in frontier:
            for p in parents.get(n, []):
                if p not in out:
                    out[p] = out[n] + 1
                    nxt.append(p)
        frontier = nxt
    return out


def prune(tree: Tree, depth: int | None = None, max_nodes: int = 40) -> Tree:
    """The nodes at most ``depth`` parent steps above the root (``None``: the deepest cut with at
    most ``max_nodes`` nodes, everything when it fits). A node whose parents are cut off says how
    many ancestors the drawing leaves out."""
    far = depths(tree)
    if depth is None:
        depth = max(far.values(), default=0)
        while depth > 1 and sum(1 for d in far.values() if d <= depth) > max_nodes:
            depth -= 1
    keep = {i for i, d in far.items() if d <= depth}
    if len(keep) == len(tree.nodes):
        return tree
    parents: dict[int, list[int]] = {}
    for e in tree.edges:
        parents.setdefault(e.child, []).append(e.parent)
    nodes: dict[int, Node] = {}
    for i in tree.nodes:
        if i not in keep:
            continue
        node = tree.nodes[i]
        cut = [p for p in parents.get(i, []) if p not in keep]
        hidden = 0
        if cut:  # every ancestor of this node that the drawing leaves out
            seen, stack = set(), list(cut)
            while stack:
                p = stack.pop()
                if p in seen or p in keep:
                    continue
                seen.add(p)
                stack.extend(parents.get(p, []))
            hidden = len(seen)
        nodes[i] = Node(node.ind, node.missing, hidden)
    edges = [e for e in tree.edges if e.parent in keep and e.child in keep]
    return Tree(root=tree.root, nodes=nodes, edges=edges)

