"""networkx views of explanations and neighbourhoods, and a PNG drawing of them.

Nodes are keyed ``"Label:id"`` with attributes ``label``, ``id``, ``name``;
edges carry ``type`` (the relationship type) and, for explanation paths,
``template`` and ``score``.
"""

from __future__ import annotations

from pathlib import Path

from kg.explain import Explanation


def _key(label: str, node_id: str) -> str:
    return f"{label}:{node_id}"


def explanation_graph(explanation: Explanation):
    """The union of an explanation's paths as a ``networkx.MultiDiGraph``."""
    import networkx as nx

    g = nx.MultiDiGraph(user=explanation.user_id, item=explanation.item_id)
    for path in explanation.paths:
        for node in path.nodes:
            g.add_node(_key(node.label, node.id), label=node.label, id=node.id, name=node.name)
        for a, b, rel in zip(path.nodes, path.nodes[1:], path.rel_types):
            g.add_edge(_key(a.label, a.id), _key(b.label, b.id), type=rel,
                       template=path.template, score=path.score)
    return g


def neighbourhood_graph(store, label: str, node_id: str, limit: int = 25):
    """A node and its direct neighbours (at most ``limit`` per relationship type)."""
    import networkx as nx

    g = nx.MultiDiGraph()
    centre = _key(label, node_id)
    g.add_node(centre, label=label, id=node_id, name=node_id)
    for n in store.neighbours(label, node_id, limit):
        other = _key(n.label, n.id)
        g.add_node(other, label=n.label, id=n.id, name=n.name or n.id)
        src, dst = (centre, other) if n.outgoing else (other, centre)
        g.add_edge(src, dst, type=n.rel_type)
    return g


COLOURS = {"User": "#4e79a7", "Product": "#f28e2b", "Brand": "#e15759", "Category": "#76b7b2",
           "Entity": "#59a14f", "Review": "#edc948", "Query": "#b07aa1"}


def draw_png(graph, path: str | Path, title: str = "") -> Path:
    """Draw a graph from this module to a PNG (matplotlib, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import networkx as nx

    path = Path(path)
    fig, ax = plt.subplots(figsize=(10, 7))
    pos = nx.spring_layout(graph, seed=0)
    colours = [COLOURS.get(graph.nodes[n].get("label"), "#bab0ac") for n in graph.nodes]
    labels = {n: (graph.nodes[n].get("name") or graph.nodes[n].get("id", n))[:28] for n in graph.nodes}
    nx.draw_networkx_nodes(graph, pos, node_color=colours, node_size=900, ax=ax)
    nx.draw_networkx_labels(graph, pos, labels, font_size=8, ax=ax)
    nx.draw_networkx_edges(graph, pos, arrows=True, ax=ax, connectionstyle="arc3,rad=0.08")
    edge_labels = {(a, b): d["type"] for a, b, d in graph.edges(data=True)}
    nx.draw_networkx_edge_labels(graph, pos, edge_labels, font_size=7, ax=ax)
    ax.set_title(title)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
