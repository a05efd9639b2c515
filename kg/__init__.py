"""The knowledge graph and the graph encoder.

* :mod:`kg.schema`, :mod:`kg.queries` -- labels, types, properties; all Cypher;
* :mod:`kg.stores` -- the ``GraphStore`` protocol, Neo4j and the embedded store;
* :mod:`kg.build` (with :mod:`kg.rows`) -- a Dataset into a store: batched, idempotent, resumable;
* :mod:`kg.catalogue` -- products, reviews and judgements read back from the store;
* :mod:`kg.export`, :mod:`kg.split`, :mod:`kg.sparse`, :mod:`kg.evaluation` -- to PyG,
  splits, CSR propagation, full-ranking metrics;
* :mod:`kg.models`, :mod:`kg.train`, :mod:`kg.pipeline` -- the GNN encoders, their training,
  the GNN stage of a run folder;
* :mod:`kg.run_dir` -- the run folder's one owner (paths, atomic writes, the split);
* :mod:`kg.explain`, :mod:`kg.explain_graph` -- Cypher explanations and their graphs;
* :mod:`kg.errors` -- every error kgrec raises on purpose.
"""
