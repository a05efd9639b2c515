"""The knowledge graph: schema, stores (Neo4j, embedded), batch build, export."""
