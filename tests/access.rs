//! Access control through real clients against `tenure serve`: roles that log in with
//! SCRAM passwords, privileges on tables, views, schemas and models granted, revoked and
//! inherited, owners, what the catalog shows, and all of it after a restart.

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use crate::support::{Serve, python_client};

pub(crate) const CONFIG: &str = "[[users]]\nname = \"admin\"\npassword = \"admin-secret\"\n";

/// The SQLSTATE and message of a statement that must fail.
pub(crate) async fn denied(client: &Client, sql: &str) -> (SqlState, String) {
    let err = client
        .batch_execute(sql)
        .await
        .expect_err(&format!("{sql} must fail"));
    let db = err.as_db_error().unwrap_or_else(|| panic!("{sql}: {err}"));
    (db.code().clone(), db.message().to_string())
}

pub(crate) async fn assert_denied(client: &Client, sql: &str, message: &str) {
    let (code, text) = denied(client, sql).await;
    assert_eq!(code, SqlState::INSUFFICIENT_PRIVILEGE, "{sql}: {text}");
    assert!(text.contains(message), "{sql}: {text}");
}

pub(crate) async fn count(client: &Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {:?}", e.as_db_error().map(|d| d.message())))
        .get(0)
}

/// The admin's setup: a customer table in `public`, orders in a schema of their own, a
/// segmentation model, and roles: a group `analysts`, `alice` (a member) and `bob` (who
/// may train models).
async fn setup(admin: &Client) {
    admin
        .batch_execute(
            "CREATE TABLE customers AS SELECT * FROM (VALUES \
               (1, 'north', 120.0, 3), (2, 'south', 80.0, 1), (3, 'north', 300.0, 9), \
               (4, 'south', 15.0, 1), (5, 'east', 210.0, 6), (6, 'east', 40.0, 2)) \
               AS t(id, region, spend, visits); \
             CREATE SCHEMA crm; \
             CREATE TABLE crm.orders AS SELECT id AS customer_id, spend FROM customers; \
             CREATE MODEL seg KIND kmeans OPTIONS (k = 2) AS SELECT spend, visits FROM customers; \
             CREATE ROLE analysts; \
             CREATE USER alice WITH PASSWORD 'alice-pw'; \
             CREATE USER bob PASSWORD 'bob-pw' CREATEMODEL; \
             GRANT analysts TO alice",
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_privileges_and_owners_through_real_clients() {
    let serve = Serve::start(CONFIG);
    let admin = serve.connect("admin", Some("admin-secret")).await;
    setup(&admin).await;

    // Logins: SCRAM against the stored verifier; a wrong password and a role without LOGIN
    // are refused alike; nowhere in the data directory is a password in clear.
    let alice = serve.connect("alice", Some("alice-pw")).await;
    let bob = serve.connect("bob", Some("bob-pw")).await;
    for (user, password) in [("alice", "wrong"), ("analysts", "x"), ("nobody", "x")] {
        let err = tokio_postgres::connect(&serve.url(user, Some(password)), tokio_postgres::NoTls)
            .await
            .err()
            .unwrap_or_else(|| panic!("{user} logs in with a wrong password"));
        assert_eq!(
            err.as_db_error().map(|e| e.code().clone()),
            Some(SqlState::INVALID_PASSWORD),
            "{user}: {err}"
        );
    }
    for secret in ["alice-pw", "bob-pw"] {
        assert_no_file_contains(&serve.data(), secret);
    }

    // Nothing granted: reading, writing and scoring are refused, naming the object.
    assert_denied(
        &alice,
        "SELECT * FROM customers",
        "permission denied for table public.customers",
    )
    .await;
    assert_denied(
        &alice,
        "SELECT count(*) FROM crm.orders",
        "permission denied for schema crm",
    )
    .await;
    // A prepared statement fails at Parse: the model is checked when planned.
    let err = alice
        .prepare("SELECT segment('seg', 1.0, 2) AS s")
        .await
        .expect_err("no USAGE on the model");
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{err}");
    let message = err
        .as_db_error()
        .map(|e| e.message().to_string())
        .unwrap_or_default();
    assert!(
        message.contains("permission denied for model seg"),
        "{message}"
    );
    assert_denied(&alice, "SELECT * FROM model_features('seg')", "model seg").await;
    // A GRANT inside a transaction block is undone by ROLLBACK, like other DDL.
    admin
        .batch_execute("BEGIN; GRANT SELECT ON customers TO alice; ROLLBACK")
        .await
        .unwrap();
    assert_denied(
        &alice,
        "SELECT * FROM customers",
        "permission denied for table public.customers",
    )
    .await;
    // Model names are case-insensitive, and so is the check.
    assert_denied(
        &alice,
        "SELECT segment('SEG', 1.0, 2)",
        "permission denied for model seg",
    )
    .await;
    // A role may not move the schema bare names resolve in (the check and the engine must
    // agree on which table a name is).
    assert_denied(
        &alice,
        "SET datafusion.catalog.default_schema = 'crm'",
        "only a superuser",
    )
    .await;

    // Granted to the group: alice reads through membership; writes stay refused.
    admin
        .batch_execute(
            "GRANT SELECT ON customers TO analysts; GRANT USAGE ON MODEL seg TO analysts; \
             GRANT USAGE ON SCHEMA crm TO analysts; GRANT SELECT ON ALL TABLES IN SCHEMA crm TO analysts",
        )
        .await
        .unwrap();
    assert_eq!(count(&alice, "SELECT count(*) FROM customers").await, 6);
    assert_eq!(
        count(
            &alice,
            "SELECT count(*) FROM crm.orders o JOIN customers c ON c.id = o.customer_id"
        )
        .await,
        6
    );
    let segments = count(
        &alice,
        "SELECT count(DISTINCT segment('seg', spend, visits)) FROM customers",
    )
    .await;
    assert_eq!(segments, 2);
    for sql in [
        "INSERT INTO customers VALUES (7, 'west', 1.0, 1)",
        "UPDATE customers SET spend = 0",
        "DELETE FROM customers WHERE id = 1",
        "TRUNCATE customers",
    ] {
        assert_denied(&alice, sql, "permission denied for table public.customers").await;
    }
    assert_denied(
        &alice,
        "DROP TABLE customers",
        "must be owner of table public.customers",
    )
    .await;
    assert_denied(
        &alice,
        "CREATE TABLE mine (a INT)",
        "permission denied for schema public",
    )
    .await;
    assert_denied(
        &alice,
        "CREATE MODEL m2 KIND kmeans OPTIONS (k = 2) AS SELECT spend FROM customers",
        "lacks CREATEMODEL",
    )
    .await;
    assert_denied(&alice, "CREATE ROLE eve", "only a superuser").await;
    assert_denied(
        &alice,
        "GRANT SELECT ON customers TO alice",
        "permission denied for table public.customers",
    )
    .await;
    // NOINHERIT: a member who does not inherit uses only its own privileges.
    admin
        .batch_execute("ALTER ROLE alice NOINHERIT")
        .await
        .unwrap();
    assert_denied(
        &alice,
        "SELECT * FROM customers",
        "permission denied for table public.customers",
    )
    .await;
    admin
        .batch_execute("ALTER ROLE alice INHERIT")
        .await
        .unwrap();

    // A view reads its tables with its owner's privileges: bob owns a view over customers
    // that alice may read without reading customers; when bob loses customers, so does
    // the view.
    admin
        .batch_execute(
            "GRANT CREATE ON SCHEMA public TO bob; GRANT SELECT ON customers TO bob; \
             REVOKE SELECT ON customers FROM analysts",
        )
        .await
        .unwrap();
    bob.batch_execute(
        "CREATE VIEW spend_by_region AS SELECT region, sum(spend) AS spend FROM customers GROUP BY region; \
         GRANT SELECT ON spend_by_region TO alice",
    )
    .await
    .unwrap();
    assert_denied(
        &alice,
        "SELECT * FROM customers",
        "permission denied for table public.customers",
    )
    .await;
    assert_eq!(
        count(&alice, "SELECT count(*) FROM spend_by_region").await,
        3
    );
    admin
        .batch_execute("REVOKE SELECT ON customers FROM bob")
        .await
        .unwrap();
    assert_denied(
        &alice,
        "SELECT * FROM spend_by_region",
        "permission denied for table public.customers",
    )
    .await;
    admin
        .batch_execute("GRANT SELECT ON customers TO bob")
        .await
        .unwrap();

    // Owners: bob owns what he makes, may grant on it and drop it; alice may not.
    bob.batch_execute(
        "CREATE TABLE bob_notes AS SELECT id, region FROM customers; \
         CREATE MODEL bob_seg KIND kmeans OPTIONS (k = 2) AS SELECT spend, visits FROM customers",
    )
    .await
    .unwrap();
    assert_denied(
        &alice,
        "SELECT * FROM bob_notes",
        "permission denied for table public.bob_notes",
    )
    .await;
    assert_denied(
        &alice,
        "DROP TABLE bob_notes",
        "must be owner of table public.bob_notes",
    )
    .await;
    assert_denied(
        &alice,
        "DROP MODEL bob_seg",
        "must be owner of model bob_seg",
    )
    .await;
    assert_denied(&bob, "DROP MODEL seg", "must be owner of model seg").await;
    // A model trained on a table bob cannot read cannot be made.
    assert_denied(
        &bob,
        "CREATE MODEL sneaky KIND kmeans OPTIONS (k = 2) AS SELECT spend FROM crm.orders",
        "permission denied for schema crm",
    )
    .await;
    // information_schema shows a role the grants it is part of, not the others'.
    let privileges: Vec<(String, String, String, String)> = alice
        .query(
            "SELECT grantor, grantee, table_name, privilege_type \
             FROM information_schema.table_privileges ORDER BY 3, 4",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let expected = ("bob", "alice", "spend_by_region", "SELECT");
    assert!(
        privileges
            .iter()
            .any(|p| (p.0.as_str(), p.1.as_str(), p.2.as_str(), p.3.as_str()) == expected),
        "{privileges:?}"
    );
    assert!(
        !privileges.iter().any(|p| p.2 == "bob_notes"),
        "{privileges:?}"
    );
    let owner_rows: i64 = count(
        &bob,
        "SELECT count(*) FROM information_schema.role_table_grants \
         WHERE table_name = 'bob_notes' AND grantee = 'bob' AND is_grantable = 'YES'",
    )
    .await;
    assert_eq!(owner_rows, 5, "an owner holds the five table privileges");
    // Training runs as the role: the verifiers stay hidden from it.
    let (_, text) = denied(&bob, "CREATE MODEL leak KIND kmeans OPTIONS (k = 2) AS SELECT CAST(rolpassword AS INT) AS x FROM tenure.role_passwords").await;
    assert!(!text.contains("SCRAM-SHA-256"), "{text}");
    // Replacing a table is its owner's, keys or not.
    assert_denied(
        &bob,
        "CREATE OR REPLACE TABLE customers (id INT PRIMARY KEY)",
        "must be owner of table public.customers",
    )
    .await;
    // Table functions check the tables their queries read.
    assert_denied(
        &bob,
        "SELECT * FROM rfm_summary('SELECT customer_id, DATE ''2025-01-01'' AS day, spend FROM crm.orders', '2025-12-31')",
        "permission denied for schema crm",
    )
    .await;

    // The catalog shows roles, membership and grants as PostgreSQL does.
    let roles: Vec<String> = admin
        .query("SELECT rolname FROM pg_roles ORDER BY rolname", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(roles, ["admin", "alice", "analysts", "bob"]);
    let alice_row = admin
        .query_one(
            "SELECT rolsuper, rolcanlogin FROM pg_roles WHERE rolname = 'alice'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (alice_row.get::<_, bool>(0), alice_row.get::<_, bool>(1)),
        (false, true)
    );
    assert_eq!(
        count(
            &admin,
            "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid \
             JOIN pg_roles u ON u.oid = m.member WHERE r.rolname = 'analysts' AND u.rolname = 'alice'"
        )
        .await,
        1
    );
    let may: Vec<bool> = alice
        .query_one(
            "SELECT has_table_privilege('spend_by_region', 'SELECT'), \
                    has_table_privilege('customers', 'SELECT'), \
                    has_table_privilege('bob', 'public.customers', 'select'), \
                    has_schema_privilege('crm', 'USAGE'), \
                    has_table_privilege('spend_by_region', 'SELECT WITH GRANT OPTION'), \
                    has_table_privilege('bob', 'spend_by_region', 'SELECT WITH GRANT OPTION')",
            &[],
        )
        .await
        .map(|r| (0..6).map(|i| r.get(i)).collect())
        .unwrap();
    assert_eq!(may, [true, false, true, true, false, true]);

    // Dropping roles: not while they own something; a role's grants go with it.
    let (code, text) = denied(&admin, "DROP ROLE bob").await;
    assert_eq!(code, SqlState::DEPENDENT_OBJECTS_STILL_EXIST, "{text}");
    assert!(text.contains("owner of"), "{text}");
    admin
        .batch_execute(
            "CREATE ROLE temp_role; GRANT SELECT ON customers TO temp_role; DROP ROLE temp_role",
        )
        .await
        .unwrap();

    // psycopg as another client: the same answers, and a client may change its own password.
    python_client("access.py", serve.port).await;

    // The audit log: logins (refused ones too), denials and DDL, by role and fingerprint,
    // with no value a client sent: no password, no literal.
    let log = serve.log();
    let audit: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("tenure::audit"))
        .collect();
    let has = |words: &[&str]| audit.iter().any(|l| words.iter().all(|w| l.contains(w)));
    assert!(has(&["event=\"login\"", "user=\"alice\""]), "{log}");
    assert!(has(&["event=\"login refused\"", "user=\"alice\""]), "{log}");
    assert!(
        has(&[
            "event=\"denied\"",
            "user=\"alice\"",
            "SELECT * FROM customers",
            "fingerprint="
        ]),
        "{log}"
    );
    assert!(
        has(&[
            "event=\"statement\"",
            "user=\"admin\"",
            "class=\"ddl\"",
            "CREATE USER alice WITH PASSWORD ?"
        ]),
        "{log}"
    );
    assert!(
        has(&[
            "event=\"statement\"",
            "user=\"bob\"",
            "CREATE MODEL bob_seg"
        ]),
        "{log}"
    );
    for secret in ["alice-pw", "bob-pw", "admin-secret", "'mine'"] {
        assert!(!log.contains(secret), "the log has {secret}");
    }

    // Everything survives a restart.
    drop((alice, bob, admin));
    let dir = serve.kill();
    let serve = Serve::start_in(dir, CONFIG);
    let alice = serve.connect("alice", Some("alice-pw2")).await;
    assert_eq!(
        count(&alice, "SELECT count(*) FROM spend_by_region").await,
        3
    );
    assert_denied(
        &alice,
        "SELECT * FROM customers",
        "permission denied for table public.customers",
    )
    .await;
    assert_denied(
        &alice,
        "DROP TABLE bob_notes",
        "must be owner of table public.bob_notes",
    )
    .await;
    let admin = serve.connect("admin", Some("admin-secret")).await;
    admin
        .batch_execute(
            "DROP TABLE bob_notes; DROP MODEL bob_seg; DROP VIEW spend_by_region; DROP ROLE bob",
        )
        .await
        .unwrap();
    assert_no_file_contains(&serve.data(), "alice-pw");
}

/// Fails if any file under `dir` contains `needle` (passwords must never be stored).
fn assert_no_file_contains(dir: &std::path::Path, needle: &str) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            assert_no_file_contains(&path, needle);
        } else if let Ok(bytes) = std::fs::read(&path) {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{} contains a password in clear",
                path.display()
            );
        }
    }
}

/// Row-level security: alice sees the northern accounts she manages (a permissive and a
/// restrictive policy), carol (no policy for her) none, the owner all; in every way of
/// reading, and after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_policies_limit_every_way_of_reading() {
    let serve = Serve::start(CONFIG);
    let admin = serve.connect("admin", Some("admin-secret")).await;
    admin
        .batch_execute(
            "CREATE TABLE accounts AS SELECT value AS id, \
               CASE WHEN value % 2 = 0 THEN 'north' ELSE 'south' END AS region, \
               CASE WHEN value % 3 = 0 THEN 'alice' ELSE 'dave' END AS manager, \
               CAST(value % 17 AS DOUBLE) AS spend, CAST(value % 5 AS DOUBLE) AS visits, \
               value % 7 < 3 AS churned \
             FROM generate_series(1, 300) AS t(value); \
             CREATE TABLE regions AS SELECT * FROM (VALUES ('north', 'N'), ('south', 'S')) AS r(region, label); \
             CREATE MODEL churn KIND churn_classifier TARGET churned AS SELECT spend, visits, churned FROM accounts; \
             CREATE USER alice PASSWORD 'alice-pw' CREATEMODEL; \
             CREATE USER carol PASSWORD 'carol-pw'; \
             GRANT SELECT, INSERT ON accounts TO alice, carol; GRANT SELECT ON regions TO alice, carol; \
             GRANT USAGE ON MODEL churn TO alice, carol; \
             ALTER TABLE accounts ENABLE ROW LEVEL SECURITY; \
             CREATE POLICY north ON accounts TO alice USING (region = 'north'); \
             CREATE POLICY mine ON accounts AS RESTRICTIVE TO alice USING (manager = current_user)",
        )
        .await
        .unwrap();
    // psql's \dp lists the policies as PostgreSQL prints them.
    let listed = serve_psql(&serve, "admin", "admin-secret", "\\dp accounts");
    for line in [
        "north:",
        "(u): (region = 'north')",
        "to: alice",
        "mine (RESTRICTIVE):",
        "admin=arwdD/admin",
    ] {
        assert!(listed.contains(line), "{line} in {listed}");
    }
    // And psql's \d its Policies footer.
    let described = serve_psql(&serve, "admin", "admin-secret", "\\d accounts");
    let footer = described
        .split_once("Policies:\n")
        .unwrap_or_else(|| panic!("no Policies footer in {described}"))
        .1;
    for line in [
        "    POLICY \"mine\" AS RESTRICTIVE\n      TO alice\n      USING (manager = ",
        "    POLICY \"north\"\n      TO alice\n      USING (region = 'north')",
    ] {
        assert!(footer.contains(line), "{line} in {described}");
    }
    let regions = serve_psql(&serve, "admin", "admin-secret", "\\d regions");
    assert!(!regions.contains("Policies"), "{regions}");
    // id even (north) and a multiple of 3 (alice's): the multiples of 6 up to 300.
    let visible = 50;
    let alice = serve.connect("alice", Some("alice-pw")).await;
    let carol = serve.connect("carol", Some("carol-pw")).await;
    for (client, rows) in [(&alice, visible), (&carol, 0), (&admin, 300)] {
        assert_eq!(count(client, "SELECT count(*) FROM accounts").await, rows);
        assert_eq!(
            count(
                client,
                "SELECT count(*) FROM accounts a JOIN regions r ON r.region = a.region"
            )
            .await,
            rows
        );
        assert_eq!(
            count(
                client,
                "SELECT count(*) FROM (SELECT region, count(*) FROM accounts GROUP BY region) g \
                           WHERE region = 'south'"
            )
            .await,
            i64::from(rows == 300)
        );
        assert_eq!(
            count(
                client,
                "SELECT count(*) FROM accounts WHERE churn_score('churn', spend, visits) >= 0"
            )
            .await,
            rows
        );
        let evaluated = client
            .query_one(
                "SELECT value FROM model_evaluate('churn', 'SELECT spend, visits, churned FROM accounts') \
                 WHERE metric = 'rows'",
                &[],
            )
            .await;
        match evaluated {
            Ok(row) => assert_eq!(row.get::<_, f64>(0) as i64, rows, "model_evaluate's rows"),
            // With no rows to evaluate on, model_evaluate says so.
            Err(e) => assert_eq!(
                rows,
                0,
                "model_evaluate: {:?}",
                e.as_db_error().map(|d| d.message())
            ),
        }
    }
    let ids: Vec<i64> = alice
        .query("SELECT id FROM accounts ORDER BY id LIMIT 3", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, [6, 12, 18]);
    // COPY TO STDOUT and a cursor see the same rows (psql, as a user would).
    let copied = serve_psql(&serve, "alice", "alice-pw", "\\copy accounts TO STDOUT");
    assert_eq!(copied.lines().count(), visible as usize, "{copied}");
    let fetched = serve_psql(
        &serve,
        "alice",
        "alice-pw",
        "BEGIN; DECLARE c CURSOR FOR SELECT id FROM accounts WHERE region = 'south'; FETCH ALL FROM c; COMMIT;",
    );
    assert!(fetched.contains("(0 rows)"), "{fetched}");

    // Writing or training past the policies is refused, not done unfiltered.
    for sql in [
        "INSERT INTO accounts VALUES (999, 'south', 'dave', 1.0, 1.0, false)",
        "CREATE MODEL peek KIND churn_classifier TARGET churned AS SELECT spend, visits, churned FROM accounts",
    ] {
        let (code, text) = denied(&alice, sql).await;
        assert_eq!(code, SqlState::FEATURE_NOT_SUPPORTED, "{sql}: {text}");
        assert!(text.contains("row-level security"), "{sql}: {text}");
    }
    // Statements that read outside a query's plan (a temporary table's CREATE ... AS,
    // MERGE) are refused on a table the policies limit, not run unfiltered.
    for sql in [
        "CREATE TEMP TABLE loot AS SELECT * FROM accounts",
        "CREATE TEMP TABLE mine (id BIGINT); MERGE INTO mine USING accounts a ON false WHEN NOT MATCHED THEN INSERT VALUES (a.id)",
    ] {
        let (code, text) = denied(&alice, sql).await;
        assert_eq!(code, SqlState::FEATURE_NOT_SUPPORTED, "{sql}: {text}");
        assert!(text.contains("row-level security"), "{sql}: {text}");
    }
    assert_denied(
        &alice,
        "DROP POLICY north ON accounts",
        "must be owner of table public.accounts",
    )
    .await;

    // Policies survive a restart; disabling row security shows alice every row.
    drop((alice, carol, admin));
    let serve = Serve::start_in(serve.kill(), CONFIG);
    let alice = serve.connect("alice", Some("alice-pw")).await;
    assert_eq!(
        count(&alice, "SELECT count(*) FROM accounts").await,
        visible
    );
    let admin = serve.connect("admin", Some("admin-secret")).await;
    admin
        .batch_execute("ALTER TABLE accounts DISABLE ROW LEVEL SECURITY")
        .await
        .unwrap();
    assert_eq!(count(&alice, "SELECT count(*) FROM accounts").await, 300);
}

/// Runs psql as `user` with `command` against `serve`; its standard output (it must succeed).
pub(crate) fn serve_psql(serve: &Serve, user: &str, password: &str, command: &str) -> String {
    let output = std::process::Command::new("psql")
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &serve.url(user, None),
            "-c",
            command,
        ])
        .env("PGPASSWORD", password)
        .output()
        .expect("psql runs");
    assert!(
        output.status.success(),
        "psql {command}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Per-role limits: CONNECTION LIMIT refuses the session past it (53300) and frees its place
/// when a session ends; ALTER ROLE ... SET gives the role's sessions their defaults, which
/// a client's own SET still overrides (as in PostgreSQL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_limits_apply_at_login() {
    let serve = Serve::start(CONFIG);
    let admin = serve.connect("admin", Some("admin-secret")).await;
    admin
        .batch_execute(
            "CREATE USER bi PASSWORD 'bi-pw' CONNECTION LIMIT 1; \
             ALTER ROLE bi SET statement_timeout = '250ms'; \
             ALTER ROLE bi SET DateStyle TO 'ISO, DMY'",
        )
        .await
        .unwrap();
    let (code, text) = denied(&admin, "ALTER ROLE bi SET no_such_setting = 1").await;
    assert_eq!(code, SqlState::UNDEFINED_OBJECT, "{text}");
    let limit: i32 = admin
        .query_one(
            "SELECT rolconnlimit FROM pg_roles WHERE rolname = 'bi'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(limit, 1);

    let bi = serve.connect("bi", Some("bi-pw")).await;
    assert_eq!(show_setting(&bi, "statement_timeout").await, "250");
    assert_eq!(show_setting(&bi, "DateStyle").await, "ISO, DMY");
    let err = bi
        .batch_execute("SELECT count(*) FROM range(10000000000) a")
        .await
        .expect_err("the role's statement_timeout stops it");
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err}");
    bi.batch_execute("SET statement_timeout = 0").await.unwrap();
    assert_eq!(show_setting(&bi, "statement_timeout").await, "0");

    let second =
        tokio_postgres::connect(&serve.url("bi", Some("bi-pw")), tokio_postgres::NoTls).await;
    let err = second.err().expect("a second session of bi is refused");
    assert_eq!(
        err.as_db_error().map(|e| e.code().clone()),
        Some(SqlState::TOO_MANY_CONNECTIONS),
        "{err}"
    );
    drop(bi);
    // The place is given back once the first session has gone.
    let mut again = None;
    for _ in 0..50 {
        if let Ok((client, connection)) =
            tokio_postgres::connect(&serve.url("bi", Some("bi-pw")), tokio_postgres::NoTls).await
        {
            tokio::spawn(connection);
            again = Some(client);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        again.is_some(),
        "bi may log in again after the first session ended"
    );
    admin
        .batch_execute("ALTER ROLE bi RESET ALL; ALTER ROLE bi CONNECTION LIMIT -1")
        .await
        .unwrap();
}

/// The value `SHOW name` gives in `client`'s session.
async fn show_setting(client: &Client, name: &str) -> String {
    let rows = client.simple_query(&format!("SHOW {name}")).await.unwrap();
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        })
        .unwrap()
}

/// Secrets through a real client: only a superuser makes or drops one, and their
/// credentials appear in clear nowhere: not in a catalog view, an error, the server's log
/// (with every statement logged) or any file of the data directory, before or after a
/// restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_appear_nowhere_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data/import")).unwrap();
    let key = dir.path().join("secret.key");
    std::fs::write(&key, format!("{}\n", "5e".repeat(32))).unwrap();
    let config = format!(
        "secret_key_file = {:?}\nlog_statement = \"all\"\n{CONFIG}",
        key.display().to_string()
    );
    let serve = Serve::start_in(dir, &config);
    let admin = serve.connect("admin", Some("admin-secret")).await;
    admin
        .batch_execute(
            "CREATE SECRET lake (TYPE s3, KEY_ID 'AKIAWIRE0001', SECRET 'wire-secret-0042', \
             REGION 'eu-west-1', SCOPE 's3://shop-lake/orders'); \
             CREATE USER alice PASSWORD 'alice-pw'",
        )
        .await
        .unwrap();
    let (code, message) = denied(
        &admin,
        "CREATE SECRET bad (TYPE s3, KEY_ID 'AKIAWIRE0001', SECRET 'wire-secret-0042', COLOUR 'red')",
    )
    .await;
    assert_eq!(code, SqlState::INVALID_PARAMETER_VALUE, "{message}");
    assert!(
        message.contains("unknown secret option COLOUR"),
        "{message}"
    );
    let (code, _) = denied(&admin, "CREATE SECRET lake (TYPE s3)").await;
    assert_eq!(code, SqlState::DUPLICATE_OBJECT);
    // A credential written bare is refused without echoing it (and not logged).
    let (code, message) = denied(&admin, "CREATE SECRET bare (TYPE s3, SECRET wJalrBare77)").await;
    assert_eq!(code, SqlState::SYNTAX_ERROR, "{message}");
    assert!(
        message.contains("SECRET takes a quoted string"),
        "{message}"
    );
    // Not in a transaction block: the stores it changes are shared by every session.
    let (code, message) = denied(&admin, "BEGIN; CREATE SECRET inblock (TYPE s3)").await;
    assert_eq!(code, SqlState::ACTIVE_SQL_TRANSACTION, "{message}");
    admin.batch_execute("ROLLBACK").await.unwrap();
    let alice = serve.connect("alice", Some("alice-pw")).await;
    assert_denied(
        &alice,
        "CREATE SECRET mine (TYPE s3, KEY_ID 'a', SECRET 'b')",
        "create or drop secrets",
    )
    .await;
    assert_denied(&alice, "DROP SECRET lake", "create or drop secrets").await;
    let row = alice
        .query_one(
            "SELECT name, type, provider, scope, region, has_credentials, owner FROM tenure.secrets",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, String>(0),
            row.get::<_, String>(3),
            row.get::<_, String>(4),
            row.get::<_, bool>(5),
            row.get::<_, String>(6)
        ),
        (
            "lake".to_string(),
            "s3://shop-lake/orders".to_string(),
            "eu-west-1".to_string(),
            true,
            "admin".to_string()
        )
    );
    // Every table of the tenure schema, pg_catalog's and information_schema's, read whole.
    let clear = ["wire-secret-0042", "AKIAWIRE0001", "wJalrBare77"];
    let tables = admin
        .query(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables \
             WHERE table_schema IN ('tenure', 'pg_catalog', 'information_schema')",
            &[],
        )
        .await
        .unwrap();
    let mut read = 0;
    for table in &tables {
        let table: String = table.get(0);
        let Ok(rows) = admin.simple_query(&format!("SELECT * FROM {table}")).await else {
            continue;
        };
        read += 1;
        for row in rows {
            if let tokio_postgres::SimpleQueryMessage::Row(row) = row {
                for i in 0..row.len() {
                    let value = row.get(i).unwrap_or_default();
                    for secret in clear {
                        assert!(!value.contains(secret), "{table} shows {secret}");
                    }
                }
            }
        }
    }
    assert!(read > 50, "only {read} catalog tables could be read");

    drop((alice, admin));
    let dir = serve.kill();
    let serve = Serve::start_in(dir, &config);
    let admin = serve.connect("admin", Some("admin-secret")).await;
    assert_eq!(
        count(&admin, "SELECT count(*) FROM tenure.secrets").await,
        1
    );
    admin.batch_execute("DROP SECRET lake").await.unwrap();
    assert_eq!(
        count(&admin, "SELECT count(*) FROM tenure.secrets").await,
        0
    );
    let log = serve.log();
    assert!(log.contains("CREATE SECRET lake"), "{log}");
    for secret in clear {
        assert!(!log.contains(secret), "the log has {secret}");
        assert_no_file_contains(&serve.data(), secret);
    }
}

/// `ALTER ROLE ... SET memory_limit`: the role's statements stop at it (53200) while other
/// sessions run the same statement, and its sessions may lower it, not raise it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roles_memory_limit_bounds_its_statements() {
    let serve = Serve::start(CONFIG);
    let admin = serve.connect("admin", Some("admin-secret")).await;
    admin
        .batch_execute("CREATE USER bi PASSWORD 'bi-pw'; ALTER ROLE bi SET memory_limit = '4MiB'")
        .await
        .unwrap();
    // A hash join's build side cannot spill: 2 million keys need far more than 4 MiB.
    let join = "SELECT count(*) FROM generate_series(1, 2000000) a \
                JOIN generate_series(1, 2000000) b ON a.value = b.value";
    let bi = serve.connect("bi", Some("bi-pw")).await;
    assert_eq!(show_setting(&bi, "memory_limit").await, "4MiB");
    let err = bi
        .batch_execute(join)
        .await
        .expect_err("past the role's limit");
    assert_eq!(err.code(), Some(&SqlState::OUT_OF_MEMORY), "{err}");
    assert!(
        err.as_db_error()
            .unwrap()
            .message()
            .contains("memory_limit"),
        "{err}"
    );
    assert_eq!(count(&admin, join).await, 2_000_000);
    let (code, text) = denied(&bi, "SET memory_limit = '1GiB'").await;
    assert_eq!(code, SqlState::INSUFFICIENT_PRIVILEGE, "{text}");
    // Nor around it, through DataFusion's runtime settings, which would replace the pool.
    assert_denied(
        &bi,
        "SET datafusion.runtime.memory_limit = '1TB'",
        "datafusion.runtime.memory_limit",
    )
    .await;
    // set_config is SET by another name.
    denied(&bi, "SELECT set_config('memory_limit', '1GiB', false)").await;
    let limited: String = bi
        .query_one("SELECT set_config('memory_limit', '2MiB', false)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(limited, "2MiB");
    let err = bi.batch_execute("SELECT count(*) FROM generate_series(1, 300000) a JOIN generate_series(1, 300000) b ON a.value = b.value")
        .await
        .expect_err("past the 2MiB set_config gave");
    assert_eq!(err.code(), Some(&SqlState::OUT_OF_MEMORY), "{err}");
    denied(&bi, "SET memory_limit = 0").await;
    bi.batch_execute("SET memory_limit = '1MiB'").await.unwrap();
    assert_eq!(show_setting(&bi, "memory_limit").await, "1MiB");
    bi.batch_execute("RESET memory_limit").await.unwrap();
    assert_eq!(show_setting(&bi, "memory_limit").await, "4MiB");
    // Lifted by the administrator, the next session runs it.
    admin
        .batch_execute("ALTER ROLE bi RESET memory_limit")
        .await
        .unwrap();
    let bi = serve.connect("bi", Some("bi-pw")).await;
    assert_eq!(count(&bi, join).await, 2_000_000);
}
