/*
 * kgrec-neo4j: a real Neo4j Community 5.26 LTS server for kgrec's tests and CI.
 *
 * It runs the Neo4j database engine embedded in this JVM (DatabaseManagementServiceBuilder)
 * and exposes it over Bolt only, so clients use the ordinary Neo4j driver:
 *   bolt://127.0.0.1:PORT (or neo4j://), no authentication, HTTP/HTTPS off.
 * Memory is bounded for small machines: 512 MiB page cache (off-heap), 1 GiB for
 * all transactions together; run the JVM with -Xmx1g (see ../neo4j-server).
 * Cypher cannot reach the server's files or network: LOAD CSV file:/// URLs are off
 * (dbms.security.allow_csv_import_from_file_urls=false, import root confined to
 * HOME_DIR/import should it ever be turned on) and every IP address is blocked for
 * http(s)/ftp URLs (internal.dbms.cypher_ip_blocklist); kgrec never loads files
 * through Cypher (see kg/stores/guard.py for the read-only cypher() guard).
 *
 * Usage: java -cp target/classes:target/lib/* kgrec.Neo4jServer [HOME_DIR [PORT]]
 *   HOME_DIR defaults to $KGREC_NEO4J_HOME or ./.neo4j-data; PORT to $KGREC_NEO4J_PORT or 7687.
 * Prints "kgrec-neo4j ready on bolt://127.0.0.1:PORT" once started, then blocks until
 * killed; a shutdown hook (SIGTERM/SIGINT) shuts the database down cleanly.
 * Normally started via scripts/neo4j-server/neo4j-server {start|stop|status|build}.
 */
package kgrec;

import inet.ipaddr.IPAddressString;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import org.neo4j.configuration.GraphDatabaseInternalSettings;
import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.HttpConnector;
import org.neo4j.configuration.connectors.HttpsConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.io.ByteUnit;
import org.neo4j.logging.log4j.Log4jLogProvider;

public final class Neo4jServer {
    public static void main(String[] args) throws Exception {
        String home = args.length > 0 ? args[0] : env("KGREC_NEO4J_HOME", ".neo4j-data");
        int port = Integer.parseInt(args.length > 1 ? args[1] : env("KGREC_NEO4J_PORT", "7687"));
        Path homeDir = Path.of(home).toAbsolutePath();

        DatabaseManagementService service = new DatabaseManagementServiceBuilder(homeDir)
                .setUserLogProvider(new Log4jLogProvider(System.out)) // Neo4j's user log -> stdout
                .setConfig(BoltConnector.enabled, true)
                .setConfig(BoltConnector.listen_address, new SocketAddress("127.0.0.1", port))
                .setConfig(BoltConnector.advertised_address, new SocketAddress("127.0.0.1", port))
                .setConfig(HttpConnector.enabled, false)
                .setConfig(HttpsConnector.enabled, false)
                .setConfig(GraphDatabaseSettings.auth_enabled, false)
                .setConfig(GraphDatabaseSettings.udc_enabled, false)
                .setConfig(GraphDatabaseSettings.pagecache_memory, ByteUnit.mebiBytes(512))
                .setConfig(GraphDatabaseSettings.memory_transaction_global_max_size, ByteUnit.gibiBytes(1))
                // no server-side file or network access from Cypher (LOAD CSV)
                .setConfig(GraphDatabaseSettings.allow_file_urls, false)
                .setConfig(GraphDatabaseSettings.load_csv_file_url_root, homeDir.resolve("import"))
                .setConfig(GraphDatabaseInternalSettings.cypher_ip_blocklist,
                        List.of(new IPAddressString("0.0.0.0/0"), new IPAddressString("::/0")))
                // internal: Bolt's Netty loops otherwise idle 5 s on shutdown before exiting
                .setConfig(GraphDatabaseInternalSettings.netty_server_shutdown_quiet_period, 0)
                .build();

        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            System.out.println("kgrec-neo4j shutting down");
            service.shutdown();
            System.out.println("kgrec-neo4j stopped");
            stopped.countDown();
        }, "kgrec-neo4j-shutdown"));

        // build() starts Bolt and the databases; make sure the default one is usable.
        if (!service.database(GraphDatabaseSettings.DEFAULT_DATABASE_NAME).isAvailable(120_000)) {
            System.err.println("kgrec-neo4j: default database did not become available");
            System.exit(1);
        }
        System.out.println("kgrec-neo4j ready on bolt://127.0.0.1:" + port + " (home " + homeDir + ")");
        System.out.flush();
        stopped.await(); // block until the JVM is asked to exit
    }

    private static String env(String name, String fallback) {
        String value = System.getenv(name);
        return value == null || value.isEmpty() ? fallback : value;
    }
}
