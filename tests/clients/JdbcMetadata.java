// pgjdbc's DatabaseMetaData against tenure, as Metabase and DBeaver use it to sync: run by
// tests/server.rs as `java -cp postgresql.jar JdbcMetadata.java PORT` (Java 11+ runs a
// single source file). Prints one line per call; exits non-zero if any call fails.
import java.sql.*;
import java.util.*;

public class JdbcMetadata {
    static int failures = 0;

    interface Call { ResultSet run() throws SQLException; }

    /// Prints `name: N rows: first values of each row (up to `columns` columns)`.
    static void show(String name, int columns, Call call) {
        try (ResultSet rs = call.run()) {
            List<String> rows = new ArrayList<>();
            while (rs.next()) {
                List<String> values = new ArrayList<>();
                for (int i = 1; i <= columns; i++) values.add(String.valueOf(rs.getString(i)));
                rows.add(String.join("|", values));
            }
            System.out.println(name + ": " + rows.size() + " rows: " + String.join(";", rows));
        } catch (SQLException e) {
            failures++;
            System.out.println(name + ": FAILED: " + e.getMessage().split("\n")[0]);
        }
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/tenure?user=tenure";
        try (Connection c = DriverManager.getConnection(url)) {
            DatabaseMetaData md = c.getMetaData();
            System.out.println("product: " + md.getDatabaseProductName() + " " + md.getDatabaseProductVersion());
            try (Statement s = c.createStatement()) {
                s.execute("CREATE TABLE jdbc_orders (id BIGINT NOT NULL, customer TEXT, amount DOUBLE PRECISION, at TIMESTAMP)");
                s.execute("CREATE VIEW jdbc_big AS SELECT id FROM jdbc_orders WHERE amount > 100");
            }
            show("getCatalogs", 1, md::getCatalogs);
            show("getSchemas", 1, md::getSchemas);
            show("getTables", 4, () -> md.getTables(null, "public", "jdbc%", new String[] {"TABLE", "VIEW"}));
            show("getColumns", 7, () -> md.getColumns(null, "public", "jdbc_orders", "%"));
            // Not yet: getPrimaryKeys and getIndexInfo (information_schema._pg_expandarray),
            // getImportedKeys (array subscripts on a text column), getTypeInfo (regproc
            // comparisons); see README, Server.
            try (PreparedStatement ps = c.prepareStatement("SELECT count(*) FROM jdbc_orders WHERE id > ?")) {
                ps.setLong(1, 0);
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    System.out.println("prepared: " + rs.getLong(1));
                }
            }
        }
        System.exit(failures);
    }
}
