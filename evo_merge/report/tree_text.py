"""Text renderings of a family tree: an indented tree, a Mermaid flowchart, Graphviz DOT."""

from __future__ import annotations

from evo_merge.report.tree import Node, Tree, operator_of, layers


# -- text --------------------------------------------------------------------------------------------

def describe(node: Node) -> str:
    """One line: id, name or operator, method, generation, coefficients, scores."""
    if node.missing:
        return node.title
    parts = [node.title, f"gen {node.generation}"]
    coeffs = operator_of(node.operator).coefficients_text(node.ind)
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
        attrs = [f'label="{_dot_escape(n.label)}"', f'fillcolor="{n.color}"']
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


