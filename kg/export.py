"""GraphStore -> PyTorch Geometric ``HeteroData``, with stable id maps.

The store is the source of truth: :func:`export_graph` reads every relationship
type back with :meth:`GraphStore.export_edges` (integer index arrays, no per-row
Python) and assembles a ``HeteroData``:

* node types ``user``, ``product``, ``brand``, ``category``, ``entity`` (reviews
  and queries stay in the store; they feed the text encoder, not the GNN);
  ``data[t].num_nodes`` is the number of nodes of that label in the store;
* edge types ``(src, rel_type.lower(), dst)``, e.g. ``('user', 'purchased', 'product')``,
  each with ``edge_index`` (LongTensor [2, E]); interaction types also carry
  ``time`` (LongTensor [E], Unix seconds), ``value`` (FloatTensor [E]) and
  ``split`` (LongTensor [E]: 0 = none, 1 = train, 2 = test, 3 = valid, from the source);
  ``('entity', 'related', 'entity')`` carries ``relation`` (LongTensor [E]) indexing
  :attr:`GraphExport.relations`.

Index ``i`` of node type ``t`` is the node whose id is ``id_maps[t][i]``; ids are
sorted, so the same graph always gives the same indices (on either store).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kg.errors import DataError
from kg.run_dir import save_torch, write_text
from kg.schema import EVENT_TYPES, RELS
from kg.stores import GraphStore

NODE_TYPES: dict[str, str] = {  # store label -> PyG node type
    "User": "user", "Product": "product", "Brand": "brand", "Category": "category", "Entity": "entity",
}
INTERACTION_TYPES = tuple(EVENT_TYPES.values())
SPLIT_CODES = {"": 0, "train": 1, "test": 2, "valid": 3}


@dataclass(frozen=True)
class KnowledgeTriples:
    """Item–attribute/entity knowledge as triples over one entity index space.

    ``head``, ``relation``, ``tail``: LongTensor [T]. Entity ``i < offsets['brand']``
    is product ``i``; ``offsets[t]`` is where node type ``t`` starts.
    """

    num_entities: int
    relation_names: list[str]
    head: object  # LongTensor [T]
    relation: object  # LongTensor [T]
    tail: object  # LongTensor [T]
    offsets: dict[str, int]

    @property
    def num_relations(self) -> int:
        return len(self.relation_names)


@dataclass
class GraphExport:
    """A ``HeteroData`` plus the id maps and relation vocabulary that give it meaning."""

    data: object  # torch_geometric.data.HeteroData
    id_maps: dict[str, np.ndarray]
    relations: list[str] = field(default_factory=list)

    def index_of(self, node_type: str, ids) -> np.ndarray:
        """Positions of external ``ids`` (-1 where unknown)."""
        known = self.id_maps[node_type]
        ids = np.asarray(ids, dtype=object)
        if not len(known):
            return np.full(len(ids), -1, dtype=np.int64)
        pos = np.searchsorted(known, ids).clip(0, len(known) - 1)
        return np.where(known[pos] == ids, pos, -1)

    def knowledge_triples(self) -> KnowledgeTriples:
        """Every non-user edge as (head, relation, tail) over one entity index space.

        Products take entity indices ``0 .. num_products-1`` (so item ``i`` is
        entity ``i``, as in KGAT), then brands, categories and external entities
        follow in that order. Relations are the edge types (``has_brand``,
        ``in_category``, ``also_bought`` …) and, for ``related`` edges, each
        external relation name (``related:film.film.director``).
        """
        import torch

        data = self.data
        order = ["product", "brand", "category", "entity"]
        offset, total = {}, 0
        for t in order:
            offset[t] = total
            total += data[t].num_nodes
        names: list[str] = []
        heads, rels, tails = [], [], []
        for src, rel, dst in data.edge_types:
            if src == "user" or dst == "user":
                continue
            ei = data[src, rel, dst].edge_index
            h, t = ei[0] + offset[src], ei[1] + offset[dst]
            if rel == "related":
                codes = data[src, rel, dst].relation
                r = codes + len(names)
                names += [f"related:{n}" for n in self.relations]
            else:
                r = torch.full_like(h, len(names))
                names.append(rel)
            heads.append(h)
            rels.append(r)
            tails.append(t)
        cat = lambda xs: torch.cat(xs) if xs else torch.zeros(0, dtype=torch.long)  # noqa: E731
        return KnowledgeTriples(total, names, cat(heads), cat(rels), cat(tails), offset)

    def save(self, folder: str | Path) -> Path:
        """``graph.pt`` (the HeteroData) and ``id_maps.json``, each written atomically."""
        folder = Path(folder)
        save_torch(self.data, folder / "graph.pt")
        self.write_id_maps(folder, self.id_maps, self.relations)
        return folder

    @staticmethod
    def write_id_maps(folder: str | Path, id_maps: dict[str, np.ndarray], relations: list[str]) -> Path:
        """Only ``id_maps.json`` (what serving reads; a run version writes no graph)."""
        maps = {"id_maps": {t: list(map(str, ids)) for t, ids in id_maps.items()}, "relations": list(relations)}
        return write_text(Path(folder) / "id_maps.json", json.dumps(maps))

    @classmethod
    def load(cls, folder: str | Path) -> GraphExport:
        import torch

        folder = Path(folder)
        data = torch.load(folder / "graph.pt", weights_only=False)
        ids, relations = cls.read_id_maps(folder)
        return cls(data, ids, relations)

    @staticmethod
    def read_id_maps(folder: str | Path) -> tuple[dict[str, np.ndarray], list[str]]:
        """Only the id maps (node type -> sorted ids) and relation names of a saved export:
        what serving needs, without loading the graph itself."""
        maps = json.loads((Path(folder) / "id_maps.json").read_text())
        return {t: np.asarray(v, dtype=object) for t, v in maps["id_maps"].items()}, maps["relations"]


def export_graph(store: GraphStore) -> GraphExport:
    """Read the whole GNN-relevant graph out of a connected ``store``."""
    import torch
    from torch_geometric.data import HeteroData

    data = HeteroData()
    id_maps = {t: store.node_ids(label) for label, t in NODE_TYPES.items()}
    for t, ids in id_maps.items():
        data[t].num_nodes = len(ids)
    relations: list[str] = []
    for spec in RELS:
        if spec.src not in NODE_TYPES or spec.dst not in NODE_TYPES:
            continue
        props: tuple[str, ...] = ()
        if spec.type in INTERACTION_TYPES:
            props = ("ts", "value", "split")
        elif spec.type == "RELATED":
            props = ("relation",)
        edges = store.export_edges(spec.type, props)
        if edges.num_edges == 0:
            continue
        key = (NODE_TYPES[spec.src], spec.type.lower(), NODE_TYPES[spec.dst])
        store_ = data[key]
        store_.edge_index = torch.from_numpy(np.stack([edges.src_index, edges.dst_index]))
        if spec.type in INTERACTION_TYPES:
            store_.time = torch.from_numpy(np.asarray(edges.props["ts"], dtype=np.int64))
            store_.value = torch.from_numpy(np.asarray(edges.props["value"], dtype=np.float32))
            names, codes = _unique_map(edges.props["split"])
            unknown = [str(n) for n in names if n not in SPLIT_CODES]
            if unknown:  # never read as "no split": a given part would silently become train
                raise DataError(f"{spec.type} relationships carry split {unknown[0]!r} "
                                f"(known: {', '.join(k for k in SPLIT_CODES if k)})")
            lookup = np.array([SPLIT_CODES[n] for n in names], dtype=np.int64)
            store_.split = torch.from_numpy(lookup[codes])
        elif spec.type == "RELATED":
            names, codes = _unique_map(edges.props["relation"])
            relations = [str(n) for n in names]
            store_.relation = torch.from_numpy(codes.astype(np.int64))
    return GraphExport(data, id_maps, relations)


def _unique_map(values) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct values, code of each value) without per-element Python."""
    arr = np.asarray(values, dtype=object)
    arr = np.where(arr == None, "", arr).astype(str)  # noqa: E711 - elementwise null test
    names, codes = np.unique(arr, return_inverse=True)
    return names, codes
