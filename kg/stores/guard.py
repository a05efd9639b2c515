"""The read-only guard of ``store.cypher()``: one statement that only reads the graph.

Read-only ``cypher()`` (``write=False``, the default) is enforced twice on both stores:

1. by the database itself -- Neo4j runs the statement in a managed *read* transaction
   (session in READ access mode), so any write, schema or system-database change fails
   with ``Neo.ClientError.Statement.AccessMode``; the test server also refuses LOAD CSV
   ``file:///`` URLs and blocks every IP address for remote ones (see
   ``scripts/neo4j-server/src/main/java/kgrec/Neo4jServer.java``). The embedded store
   (ladybug) runs it as a *prepared* statement (which takes exactly one statement) inside
   ``BEGIN TRANSACTION READ ONLY`` (which refuses writes, DDL, COPY FROM, INSTALL, ATTACH);
2. by :func:`check_read_only` here, before the query reaches the database, for what the
   databases let through in a read-only transaction: ending it (``COMMIT``, ``ROLLBACK``),
   files (``LOAD CSV``, ``LOAD FROM``, ``COPY … TO``, ``EXPORT``/``IMPORT DATABASE``, ladybug's
   ``CALL read_csv_serial(…)``, which even crashes the process), settings (ladybug
   ``CALL threads=…``, ``ANALYZE``), administration (``TERMINATE TRANSACTIONS``,
   ``SHOW TRANSACTIONS/SETTINGS/USERS/DATABASES``, ``dbms.*`` procedures) and more than
   one statement (ladybug's ``Connection.execute(str)`` without parameters runs every
   ``;``-separated statement, so ``COMMIT; <write>`` ended the read-only transaction).

The check reads the query as the databases' lexers do: string literals (``'…'``, ``"…"``,
backslash escapes), backtick identifiers (doubled backticks), ``$parameters`` and comments
(``//`` to the end of the line, ``/* … */``, not nested) are never searched, so a string
containing ``'delete'`` or a property ``n.load`` is fine. Where the lexers differ it takes
the side that shows more of the query: a ``//`` comment ends at any line break (Neo4j ends
it at ``\r`` too). It then refuses, case-insensitively:

* a second statement: anything but whitespace or comments after a ``;``;
* the keywords in :data:`REFUSED_KEYWORDS` (every statement- or clause-starting keyword
  of Neo4j 5 and of ladybug that is not a read), used as keywords: a word right after
  ``.`` (property access), ``:`` (label or type) or ``AS`` (an alias), or right before
  ``:`` or ``.`` (a map key, a variable), is a name, not a keyword;
* ``START``/``STOP DATABASE``, ``ENABLE SERVER``, ``COMMENT ON``;
* ``SHOW …`` unless it shows indexes, constraints, functions or procedures;
* ``CALL name(…)`` of any procedure or table function not in
  :data:`READ_PROCEDURES` (``CALL { … }`` and ``CALL (x) { … }`` subqueries are fine:
  what they contain is checked like the rest);
* a query it cannot read to the end (an unterminated string, identifier or comment).

The same rules apply on both stores, so a refused query raises the same
:class:`~kg.errors.ReadOnlyError` on both. ``write=True`` skips the guard (and the
read-only transaction): writes, files and administration are then the caller's intent.

For benchmarks and tests, :func:`attack_suite` lists named write / file / admin attempts
and :func:`run_attack_suite` counts how many a store blocks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from kg.errors import ReadOnlyError

#: keyword -> what it is, for the error message
REFUSED_KEYWORDS: dict[str, str] = {
    **dict.fromkeys(("CREATE", "MERGE", "SET", "REMOVE", "DELETE", "DETACH", "NODETACH", "INSERT", "FOREACH",
                     "DROP", "ALTER", "RENAME"), "a write or schema clause"),
    **dict.fromkeys(("LOAD", "COPY", "EXPORT", "IMPORT"), "file or data import/export"),
    **dict.fromkeys(("ATTACH", "USE", "INSTALL", "UNINSTALL", "UPDATE", "FORCE"),
                    "a database or extension command"),
    **dict.fromkeys(("BEGIN", "COMMIT", "ROLLBACK", "CHECKPOINT", "TRANSACTION", "TRANSACTIONS"),
                    "transaction control"),
    **dict.fromkeys(("TERMINATE", "GRANT", "DENY", "REVOKE", "DEALLOCATE", "REALLOCATE", "DRYRUN", "ANALYZE"),
                    "an administration command"),
}

#: keyword -> the next word that makes it an administration command
_REFUSED_PAIRS: dict[str, tuple[str, ...]] = {
    "START": ("DATABASE", "DATABASES"), "STOP": ("DATABASE", "DATABASES"),
    "ENABLE": ("SERVER",), "COMMENT": ("ON",),
}

#: what ``SHOW`` may show (Neo4j schema and catalogue listings), and the words before it
_SHOW_NOUNS = frozenset(("INDEX", "INDEXES", "CONSTRAINT", "CONSTRAINTS", "FUNCTION", "FUNCTIONS",
                         "PROCEDURE", "PROCEDURES"))
_SHOW_MODIFIERS = frozenset(("ALL", "RANGE", "TEXT", "POINT", "LOOKUP", "FULLTEXT", "VECTOR", "BTREE", "NODE",
                             "RELATIONSHIP", "REL", "UNIQUE", "UNIQUENESS", "EXIST", "EXISTS", "EXISTENCE", "KEY",
                             "PROPERTY", "PROP", "TYPE", "NOT", "NULL", "BUILT", "IN", "USER", "DEFINED"))

#: procedures and table functions a read-only ``CALL`` may run (lower case; both stores)
READ_PROCEDURES: frozenset[str] = frozenset((
    # Neo4j: schema introspection, index queries (read-only procedures)
    "db.labels", "db.relationshiptypes", "db.propertykeys", "db.schema.visualization",
    "db.schema.nodetypeproperties", "db.schema.reltypeproperties",
    "db.index.vector.querynodes", "db.index.vector.queryrelationships",
    "db.index.fulltext.querynodes", "db.index.fulltext.queryrelationships",
    "db.index.fulltext.listavailableanalyzers", "db.ping", "dbms.components",
    # ladybug: catalogue table functions
    "show_tables", "table_info", "show_connection", "db_version", "show_functions", "show_indexes",
    "show_macros", "show_sequences", "show_graphs", "show_projected_graphs", "projected_graph_info",
    "show_loaded_extensions", "catalog_version", "storage_version", "query_vector_index", "query_fts_index",
))

_LINE_BREAKS = "\n\r\x0b\x0c\x85\u2028\u2029"  # a // comment ends at any (ending early is the safe side)


@dataclass(frozen=True)
class Token:
    kind: str  # "word" | "name" (backtick-quoted) | "string" | "param" | "number" | "punct"
    text: str
    pos: int


def tokenize(query: str) -> list[Token]:
    """The significant tokens of ``query`` (no whitespace, no comments); raises
    :class:`ReadOnlyError` for an unterminated string, backtick identifier or comment."""
    out: list[Token] = []
    i, n = 0, len(query)
    while i < n:
        ch = query[i]
        if ch.isspace():
            i += 1
        elif query.startswith("//", i):
            while i < n and query[i] not in _LINE_BREAKS:
                i += 1
        elif query.startswith("/*", i):
            end = query.find("*/", i + 2)
            if end < 0:
                raise _refuse("an unterminated /* comment", i)
            i = end + 2
        elif ch in "'\"":
            j = i + 1
            while j < n and query[j] != ch:
                j += 2 if query[j] == "\\" else 1
            if j >= n:
                raise _refuse("an unterminated string literal", i)
            out.append(Token("string", query[i : j + 1], i))
            i = j + 1
        elif ch == "`":
            j = i + 1
            while True:
                end = query.find("`", j)
                if end < 0:
                    raise _refuse("an unterminated `identifier`", i)
                if query.startswith("``", end):
                    j = end + 2
                    continue
                break
            out.append(Token("name", query[i + 1 : end].replace("``", "`"), i))
            i = end + 1
        elif ch == "$":  # $name is a parameter, never a keyword; $`name` goes on as a quoted name
            j = i + 1
            while j < n and (query[j].isalnum() or query[j] == "_"):
                j += 1
            out.append(Token("param", query[i:j], i))
            i = j
        elif ch.isdigit():
            j = i
            while j < n and (query[j].isalnum() or query[j] == "_"):
                j += 1
            if j + 1 < n and query[j] == "." and query[j + 1].isdigit():  # 1.5, 1.5e3
                j += 1
                while j < n and (query[j].isalnum() or query[j] == "_"):
                    j += 1
            out.append(Token("number", query[i:j], i))
            i = j
        elif ch.isalpha() or ch == "_":
            j = i
            while j < n and (query[j].isalnum() or query[j] == "_"):
                j += 1
            out.append(Token("word", query[i:j], i))
            i = j
        else:
            out.append(Token("punct", ch, i))
            i += 1
    return out


def refusal(query: str) -> str | None:
    """Why read-only ``cypher()`` refuses ``query``, or None when it may run."""
    try:
        check_read_only(query)
    except ReadOnlyError as exc:
        return str(exc)
    return None


def check_read_only(query: str) -> None:
    """Raise :class:`ReadOnlyError` unless ``query`` is one statement that only reads
    (the rules are in this module's docstring)."""
    tokens = tokenize(query)
    for k, tok in enumerate(tokens):  # the first problem, left to right
        if tok.kind == "punct" and tok.text == ";" and k + 1 < len(tokens):
            raise _refuse("a second statement after ';' (it runs exactly one)", tokens[k + 1].pos)
        if tok.kind != "word" or _is_name(tokens, k):
            continue
        word = tok.text.upper()
        if word in REFUSED_KEYWORDS:
            raise _refuse(f"{_phrase(tokens, k)} ({REFUSED_KEYWORDS[word]})", tok.pos)
        if word in _REFUSED_PAIRS and _next_word(tokens, k) in _REFUSED_PAIRS[word]:
            raise _refuse(f"'{tok.text} {tokens[k + 1].text}' (an administration command)", tok.pos)
        if word == "SHOW":
            _check_show(tokens, k)
        elif word == "CALL":
            _check_call(tokens, k)


# ------------------------------------------------------------------------- helpers


def _refuse(what: str, pos: int) -> ReadOnlyError:
    return ReadOnlyError(f"read-only cypher() refused {what} at offset {pos}: it runs one statement that "
                         "only reads the graph; pass write=True to allow writes")


def _is_name(tokens: list[Token], k: int) -> bool:
    """A word used as a name here, not as a keyword: ``n.load``, ``(n:Set)``, ``AS copy``,
    ``{delete: 1}``, ``load.x`` (no clause keyword ever stands in those places)."""
    prev = tokens[k - 1] if k else None
    before = tokens[k - 2] if k >= 2 else None
    nxt = tokens[k + 1] if k + 1 < len(tokens) else None
    if prev is not None and prev.kind == "punct":
        if prev.text == ":":
            return True  # a label or relationship type
        if prev.text == "." and before is not None and (
                before.kind in ("word", "name", "param") or before.text in (")", "]", "}")):
            return True  # a property (not the '.' after a number)
    if prev is not None and prev.kind == "word" and prev.text.upper() == "AS":
        return True  # an alias
    return nxt is not None and nxt.kind == "punct" and nxt.text in (":", ".")  # a map key, a variable


def _next_word(tokens: list[Token], k: int) -> str | None:
    nxt = tokens[k + 1] if k + 1 < len(tokens) else None
    return nxt.text.upper() if nxt is not None and nxt.kind == "word" else None


def _phrase(tokens: list[Token], k: int) -> str:
    """The refused keyword with the word after it when that names the command (``LOAD CSV``)."""
    tok = tokens[k]
    after = tokens[k + 1] if k + 1 < len(tokens) else None
    if after is not None and after.kind == "word" and after.text.upper() in (
            "CSV", "FROM", "EXTENSION", "DATABASE", "TRANSACTION", "TRANSACTIONS", "DELETE", "TABLE", "INDEX",
            "CONSTRAINT", "NODE", "REL"):
        return f"'{tok.text} {after.text}'"
    return f"'{tok.text}'"


def _check_show(tokens: list[Token], k: int) -> None:
    for tok in tokens[k + 1 :]:
        word = tok.text.upper() if tok.kind == "word" else None
        if word in _SHOW_NOUNS:
            return
        if word not in _SHOW_MODIFIERS:
            break
    shown = " ".join(t.text for t in tokens[k : k + 3] if t.kind == "word")
    raise _refuse(f"'{shown}' (an administration command; only SHOW INDEXES/CONSTRAINTS/FUNCTIONS/"
                  "PROCEDURES are read-only)", tokens[k].pos)


def _check_call(tokens: list[Token], k: int) -> None:
    j = k + 1
    if j < len(tokens) and tokens[j].kind == "punct" and tokens[j].text in "{(":
        return  # CALL { … } / CALL (x) { … }: a subquery, checked with the rest
    parts: list[str] = []
    while j < len(tokens) and tokens[j].kind in ("word", "name"):
        parts.append(tokens[j].text)
        if j + 1 < len(tokens) and tokens[j + 1].kind == "punct" and tokens[j + 1].text == ".":
            j += 2
        else:
            break
    name = ".".join(parts)
    if name.lower() in READ_PROCEDURES:
        return
    what = f"procedure '{name}'" if name else "this CALL"
    raise _refuse(f"CALL of {what} (not one of the read-only procedures of kg.stores.guard.READ_PROCEDURES)",
                  tokens[k].pos)


# -------------------------------------------------------------- the attack suite


def attack_suite(tmp_dir: str | os.PathLike) -> list[tuple[str, str]]:
    """Named write, file-access and administration attempts that read-only ``cypher()``
    must refuse, on both stores. Files they would write go under ``tmp_dir`` (as
    :func:`attack_targets` names them) and must not exist afterwards."""
    t = {k: str(v) for k, v in attack_targets(tmp_dir).items()}
    delete_u = "MATCH (u:User {id: 'u0002'}) DETACH DELETE u"
    suite = [
        # the bypass of the issue: end the read-only transaction, then write
        ("commit_create", "COMMIT; CREATE (:User {id: 'evil'})"),
        ("commit_merge", "COMMIT; MERGE (:User {id: 'evil'})"),
        ("commit_set", "COMMIT; MATCH (u:User) SET u.name = 'evil'"),
        ("commit_remove", "COMMIT; MATCH (u:User) REMOVE u.name"),
        ("commit_delete", "COMMIT; MATCH (r:Review) DELETE r"),
        ("commit_detach_delete", f"COMMIT; {delete_u}"),
        ("commit_drop_table", "COMMIT; DROP TABLE RELEVANT"),
        ("commit_copy_from", f"COMMIT; COPY User FROM '{t['csv_in']}'"),
        ("commit_lower_case", f"commit; {delete_u.lower()}"),
        ("commit_mixed_case", "CoMmIt; mAtCh (u:User) DeTaCh DeLeTe u"),
        ("commit_lower_create", "commit; create (:User {id: 'evil'})"),
        ("commit_block_comment", f"COMMIT /* x */; {delete_u}"),
        ("commit_comment_inside", f"COMMIT; /* hidden */ {delete_u}"),
        ("line_comment_then_commit", f"// just a comment\nCOMMIT; {delete_u}"),
        ("commit_line_comment_cr", f"RETURN 1 // x\rCOMMIT; {delete_u}"),
        ("commit_no_space", f"COMMIT;{delete_u}"),
        ("backtick_then_write", f"RETURN 1 AS `a``;b`; {delete_u}"),
        ("rollback_then_write", f"ROLLBACK; {delete_u}"),
        ("two_reads", "MATCH (u:User) RETURN count(u) AS c; MATCH (p:Product) RETURN count(p) AS c"),
        ("read_then_write", f"MATCH (u:User) RETURN count(u) AS c; {delete_u}"),
        ("string_then_write", f"RETURN 'a;b' AS x; {delete_u}"),
        ("escaped_quote_then_write", f"RETURN 'it\\'s' AS x; {delete_u}"),
        ("begin_transaction", "BEGIN TRANSACTION"),
        ("begin_then_write", f"BEGIN TRANSACTION; {delete_u}; COMMIT"),
        ("commit_alone", "COMMIT"),
        ("checkpoint", "CHECKPOINT"),
        # plain writes (the database's read-only transaction refuses these too)
        ("create", "CREATE (:User {id: 'evil'})"),
        ("merge", "MERGE (:Brand {id: 'evil'})"),
        ("set", "MATCH (p:Product) SET p.price = 0"),
        ("remove", "MATCH (p:Product) REMOVE p.title"),
        ("detach_delete", delete_u),
        ("call_subquery_create", "MATCH (u:User) CALL { CREATE (:Brand {id: 'evil'}) } RETURN count(u) AS c"),
        ("foreach_create", "FOREACH (x IN [1, 2] | CREATE (:Brand {id: 'evil'}))"),
        ("with_then_set", "MATCH (u:User) WITH u LIMIT 1 SET u.name = 'evil' RETURN u.id"),
        # schema
        ("drop_table", "DROP TABLE RELEVANT"),
        ("create_node_table", "CREATE NODE TABLE Evil(id STRING, PRIMARY KEY(id))"),
        ("alter_table", "ALTER TABLE User ADD evil INT64"),
        ("create_index", "CREATE INDEX evil_idx FOR (n:User) ON (n.name)"),
        ("drop_index", "DROP INDEX kgrec_product_embedding IF EXISTS"),
        ("create_constraint", "CREATE CONSTRAINT evil_c IF NOT EXISTS FOR (n:Brand) REQUIRE n.name IS UNIQUE"),
        ("drop_constraint", "DROP CONSTRAINT kgrec_user_id IF EXISTS"),
        ("create_database", "CREATE DATABASE evil"),
        ("stop_database", "STOP DATABASE neo4j"),
        # files
        ("load_csv_file", "LOAD CSV FROM 'file:///etc/passwd' AS row RETURN row LIMIT 1"),
        ("load_csv_headers", "load csv with headers from 'file:///etc/hostname' as row return row"),
        ("load_csv_http", "LOAD CSV FROM 'http://127.0.0.1:9/x.csv' AS row RETURN row"),
        ("load_from_file", "LOAD FROM '/etc/passwd' (file_format='csv', header=false, delim=':') RETURN * LIMIT 1"),
        ("load_from_lower", "load from '/etc/passwd' (file_format='csv', header=false, delim=':') return *"),
        ("copy_to", f"COPY (MATCH (u:User) RETURN u.id) TO '{t['copy_to']}'"),
        ("copy_table_to", f"COPY User TO '{t['copy_table_to']}'"),
        ("copy_from", f"COPY User FROM '{t['csv_in']}'"),
        ("export_database", f"EXPORT DATABASE '{t['export_dir']}'"),
        ("import_database", f"IMPORT DATABASE '{t['import_dir']}'"),
        ("attach", f"ATTACH '{t['attach_db']}' AS evil (dbtype lbug)"),
        ("install_extension", "INSTALL json"),
        ("load_extension", "LOAD EXTENSION json"),
        ("read_csv_function", "CALL read_csv_serial('/etc/passwd') RETURN *"),
        ("file_info_function", "CALL file_info('/etc/passwd') RETURN *"),
        # administration
        ("terminate_transactions", "TERMINATE TRANSACTIONS 'neo4j-transaction-1'"),
        ("show_transactions", "SHOW TRANSACTIONS"),
        ("show_settings", "SHOW SETTINGS YIELD name RETURN name"),
        ("show_users", "SHOW USERS"),
        ("show_databases", "SHOW DATABASES"),
        ("use_system", "USE system SHOW USERS"),
        ("call_dbms_list_config", "CALL dbms.listConfig() YIELD name RETURN name"),
        ("call_dbms_kill_connections", "CALL dbms.killConnections(['bolt-1'])"),
        ("call_dbms_list_connections", "CALL dbms.listConnections() YIELD connectionId RETURN connectionId"),
        ("call_dbms_backtick", "CALL `dbms`.`listConfig`() YIELD name RETURN name"),
        ("call_db_clear_caches", "CALL db.clearQueryCaches()"),
        ("call_db_create_label", "CALL db.createLabel('Evil')"),
        ("call_db_set_vector", "MATCH (p:Product) CALL db.create.setNodeVectorProperty(p, 'embedding', [1.0])"),
        ("call_tx_metadata", "CALL tx.setMetaData({evil: true})"),
        ("call_setting", "CALL threads = 1"),
        ("call_in_transactions", "MATCH (u:User) CALL (u) { DETACH DELETE u } IN TRANSACTIONS"),
        ("create_user", "CREATE USER evil SET PASSWORD 'evil-password'"),
        ("grant", "GRANT ALL ON DATABASE * TO PUBLIC"),
        ("analyze", "ANALYZE"),
        ("create_macro", "CREATE MACRO evil(x) AS x + 1"),
        # hiding
        ("comments_between_keywords", "MATCH (u:User) /* a */ DETACH // b\n DELETE u"),
        ("unterminated_string", "RETURN 'abc AS x"),
        ("unterminated_comment", "RETURN 1 AS x /* COMMIT; MATCH (u:User) DETACH DELETE u"),
    ]
    names = [n for n, _ in suite]
    assert len(names) == len(set(names)), "attack names must be unique"
    return suite


def attack_targets(tmp_dir: str | os.PathLike) -> dict[str, Path]:
    """Paths under ``tmp_dir`` the file attacks of :func:`attack_suite` aim at; none may
    exist after the suite (``csv_in`` is created by :func:`run_attack_suite` as bait)."""
    root = Path(tmp_dir)
    return {"csv_in": root / "in.csv", "copy_to": root / "copy.csv", "copy_table_to": root / "table.csv",
            "export_dir": root / "export", "import_dir": root / "import", "attach_db": root / "attached.lbug"}


@dataclass
class SuiteResult:
    """What :func:`run_attack_suite` saw on one store."""

    store: str
    total: int = 0
    blocked: list[str] = field(default_factory=list)  # attack names refused with ReadOnlyError
    passed: dict[str, str] = field(default_factory=dict)  # name -> "ran" or the other error it raised

    def summary(self) -> str:
        return f"read-only guard: {len(self.blocked)}/{self.total} blocked on {self.store}"


def run_attack_suite(store, tmp_dir: str | os.PathLike) -> SuiteResult:
    """Send every :func:`attack_suite` query through ``store.cypher()`` (read-only) and
    count those refused with :class:`ReadOnlyError`. Paths under ``tmp_dir`` only."""
    targets = attack_targets(tmp_dir)
    Path(tmp_dir).mkdir(parents=True, exist_ok=True)
    targets["csv_in"].write_text("evil1,Evil\nevil2,Evil\n")
    result = SuiteResult(getattr(store, "kind", type(store).__name__))
    for name, query in attack_suite(tmp_dir):
        result.total += 1
        try:
            store.cypher(query)
        except ReadOnlyError:
            result.blocked.append(name)
        except Exception as exc:  # noqa: BLE001 - anything else counts as not blocked by the guard
            result.passed[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        else:
            result.passed[name] = "ran"
    return result


__all__ = ["READ_PROCEDURES", "REFUSED_KEYWORDS", "SuiteResult", "Token", "attack_suite", "attack_targets",
           "check_read_only", "refusal", "run_attack_suite", "tokenize"]
