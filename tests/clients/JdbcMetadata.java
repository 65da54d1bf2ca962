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

    /// getTypeInfo lists every type: print how many (at least 20 or the count) and the
    /// row of `name`.
    static void typeInfo(DatabaseMetaData md, String name) {
        try (ResultSet rs = md.getTypeInfo()) {
            int total = 0;
            String row = "missing";
            while (rs.next()) {
                total++;
                if (name.equals(rs.getString("TYPE_NAME")))
                    row = name + "|" + rs.getInt("DATA_TYPE");
            }
            System.out.println("getTypeInfo: " + (total >= 20 ? "20 or more" : String.valueOf(total)) + " types; " + row);
        } catch (SQLException e) {
            failures++;
            System.out.println("getTypeInfo: FAILED: " + e.getMessage().split("\n")[0]);
        }
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/tenure?user=tenure";
        try (Connection c = DriverManager.getConnection(url)) {
            DatabaseMetaData md = c.getMetaData();
            System.out.println("product: " + md.getDatabaseProductName() + " " + md.getDatabaseProductVersion());
            try (Statement s = c.createStatement()) {
                s.execute("CREATE TABLE jdbc_customers (id BIGINT PRIMARY KEY, email TEXT UNIQUE)");
                s.execute("CREATE TABLE jdbc_orders (id BIGINT NOT NULL, customer BIGINT REFERENCES jdbc_customers, "
                        + "amount DOUBLE PRECISION, at TIMESTAMP, CONSTRAINT jdbc_orders_key PRIMARY KEY (id, at))");
                s.execute("CREATE VIEW jdbc_big AS SELECT id FROM jdbc_orders WHERE amount > 100");
            }
            show("getCatalogs", 1, md::getCatalogs);
            show("getSchemas", 1, md::getSchemas);
            show("getTables", 4, () -> md.getTables(null, "public", "jdbc%", new String[] {"TABLE", "VIEW"}));
            show("getColumns", 7, () -> md.getColumns(null, "public", "jdbc_orders", "%"));
            // Metabase's and DBeaver's sync: keys, indexes and types.
            show("getPrimaryKeys", 6, () -> md.getPrimaryKeys(null, "public", "jdbc_orders"));
            show("getImportedKeys", 12, () -> md.getImportedKeys(null, "public", "jdbc_orders"));
            show("getExportedKeys", 8, () -> md.getExportedKeys(null, "public", "jdbc_customers"));
            show("getIndexInfo", 9, () -> md.getIndexInfo(null, "public", "jdbc_customers", false, false));
            typeInfo(md, "int8");
            try (PreparedStatement ps = c.prepareStatement("SELECT count(*) FROM jdbc_orders WHERE id > ?")) {
                ps.setLong(1, 0);
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    System.out.println("prepared: " + rs.getLong(1));
                }
            }
            // A result column's table and column (the RowDescription's table oid and column
            // number, looked up in pg_catalog), as grid editors read them.
            try (Statement s = c.createStatement();
                 ResultSet rs = s.executeQuery("SELECT o.amount, o.id AS order_id, k.email, "
                         + "o.amount * 2 AS doubled FROM jdbc_orders o "
                         + "JOIN jdbc_customers k ON k.id = o.customer")) {
                org.postgresql.PGResultSetMetaData m =
                        rs.getMetaData().unwrap(org.postgresql.PGResultSetMetaData.class);
                ResultSetMetaData plain = rs.getMetaData();
                List<String> columns = new ArrayList<>();
                for (int i = 1; i <= plain.getColumnCount(); i++)
                    columns.add(plain.getColumnLabel(i) + "=" + m.getBaseSchemaName(i) + "."
                            + plain.getTableName(i) + "." + m.getBaseColumnName(i) + ":"
                            + plain.isNullable(i));
                System.out.println("resultSetMetaData: " + String.join(";", columns));
            } catch (SQLException e) {
                failures++;
                System.out.println("resultSetMetaData: FAILED: " + e.getMessage().split("\n")[0]);
            }
        }
        System.exit(failures);
    }
}
