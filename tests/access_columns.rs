//! Column and default privileges through real clients. `GRANT SELECT (columns)` lets a
//! role read those columns of a table and no other, in every clause; has_column_privilege
//! and information_schema.column_privileges say so; REVOKE of a column or of the table takes
//! them away; and they survive a restart. `ALTER DEFAULT PRIVILEGES` grants on the objects
//! a role makes from then on, as psql's `\ddp` shows.

use tokio_postgres::error::SqlState;

use crate::access::{CONFIG, assert_denied, count, denied, serve_psql};
use crate::support::Serve;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn column_privileges_limit_the_columns_a_role_reads() {
    let serve = Serve::start(CONFIG);
    let admin = serve.connect("admin", Some("admin-secret")).await;
    admin
        .batch_execute(
            "CREATE TABLE customers AS SELECT * FROM (VALUES \
               (1, 'north', 'ann@example.com', 120.0), (2, 'south', 'bo@example.com', 80.0), \
               (3, 'north', 'cy@example.com', 300.0)) AS t(id, region, email, spend); \
             CREATE USER bi PASSWORD 'bi-pw'; \
             GRANT SELECT (id, region) ON customers TO bi",
        )
        .await
        .unwrap();
    let bi = serve.connect("bi", Some("bi-pw")).await;
    assert_eq!(count(&bi, "SELECT count(*) FROM customers").await, 3);
    assert_eq!(
        count(
            &bi,
            "SELECT count(*) FROM (SELECT region, count(id) FROM customers GROUP BY region)"
        )
        .await,
        2
    );
    assert_eq!(
        count(
            &bi,
            "SELECT count(*) FROM customers c JOIN (SELECT id FROM customers WHERE region = 'north') n \
             ON c.id = n.id"
        )
        .await,
        2
    );
    for sql in [
        "SELECT * FROM customers",
        "SELECT id FROM customers WHERE email LIKE 'ann%'",
        "SELECT region FROM customers ORDER BY spend",
        "SELECT region, sum(spend) FROM customers GROUP BY region",
        "SELECT id FROM customers WHERE id IN (SELECT id FROM customers WHERE spend > 100)",
    ] {
        let (code, message) = denied(&bi, sql).await;
        assert_eq!(code, SqlState::INSUFFICIENT_PRIVILEGE, "{sql}: {message}");
        assert!(
            message.contains("permission denied for column")
                && message.contains("of table public.customers"),
            "{sql}: {message}"
        );
    }
    // Refused at Parse, as any privilege.
    let err = bi.prepare("SELECT email FROM customers").await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{err}");

    // What the catalog says, to the role and about it.
    let row = bi
        .query_one(
            "SELECT has_column_privilege('customers', 'region', 'SELECT'), \
                    has_column_privilege('customers', 'email', 'SELECT'), \
                    has_column_privilege('bi', 'public.customers', 'id', 'SELECT'), \
                    has_table_privilege('customers', 'SELECT')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, bool>(0),
            row.get::<_, bool>(1),
            row.get::<_, bool>(2),
            row.get::<_, bool>(3)
        ),
        (true, false, true, false)
    );
    let columns: Vec<String> = admin
        .query(
            "SELECT column_name FROM information_schema.column_privileges \
             WHERE grantee = 'bi' AND table_name = 'customers' ORDER BY column_name",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(columns, ["id", "region"]);
    assert_eq!(
        count(
            &admin,
            "SELECT count(*) FROM information_schema.table_privileges WHERE grantee = 'bi'"
        )
        .await,
        0
    );

    // Bad grants say what is wrong.
    let (code, message) = denied(&admin, "GRANT SELECT (nope) ON customers TO bi").await;
    assert_eq!(code, SqlState::UNDEFINED_COLUMN, "{message}");
    let (code, message) = denied(&admin, "GRANT UPDATE (region) ON customers TO bi").await;
    assert_eq!(code, SqlState::FEATURE_NOT_SUPPORTED, "{message}");
    assert_denied(
        &bi,
        "GRANT SELECT (id) ON customers TO PUBLIC",
        "permission denied for table public.customers",
    )
    .await;

    // Survives a restart.
    drop((bi, admin));
    let serve = Serve::start_in(serve.kill(), CONFIG);
    let admin = serve.connect("admin", Some("admin-secret")).await;
    let bi = serve.connect("bi", Some("bi-pw")).await;
    assert_eq!(
        count(&bi, "SELECT count(DISTINCT region) FROM customers").await,
        2
    );

    // Revoking a column takes that column; revoking the table takes every column.
    admin
        .batch_execute("REVOKE SELECT (region) ON customers FROM bi")
        .await
        .unwrap();
    denied(&bi, "SELECT region FROM customers").await;
    assert_eq!(count(&bi, "SELECT count(id) FROM customers").await, 3);
    admin
        .batch_execute("GRANT SELECT ON customers TO bi")
        .await
        .unwrap();
    assert_eq!(count(&bi, "SELECT count(email) FROM customers").await, 3);
    admin
        .batch_execute("REVOKE SELECT ON customers FROM bi")
        .await
        .unwrap();
    assert_denied(
        &bi,
        "SELECT count(id) FROM customers",
        "permission denied for table public.customers",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_privileges_grant_on_new_objects() {
    let serve = Serve::start(CONFIG);
    let admin = serve.connect("admin", Some("admin-secret")).await;
    admin
        .batch_execute(
            "CREATE SCHEMA mart; \
             CREATE USER etl PASSWORD 'etl-pw' CREATEMODEL; \
             CREATE USER bi PASSWORD 'bi-pw'; \
             GRANT USAGE, CREATE ON SCHEMA mart TO etl; \
             GRANT CREATE ON SCHEMA public TO etl; \
             GRANT USAGE ON SCHEMA mart TO bi",
        )
        .await
        .unwrap();
    let etl = serve.connect("etl", Some("etl-pw")).await;
    let bi = serve.connect("bi", Some("bi-pw")).await;
    etl.batch_execute(
        "ALTER DEFAULT PRIVILEGES IN SCHEMA mart GRANT SELECT ON TABLES TO bi; \
         ALTER DEFAULT PRIVILEGES GRANT USAGE ON MODELS TO bi",
    )
    .await
    .unwrap();
    assert_denied(
        &bi,
        "ALTER DEFAULT PRIVILEGES FOR ROLE etl GRANT SELECT ON TABLES TO bi",
        "default privileges of etl",
    )
    .await;
    etl.batch_execute(
        "CREATE TABLE mart.daily AS SELECT * FROM (VALUES (1.0, 2), (5.0, 9), (2.0, 3), (8.0, 7)) \
           AS t(spend, visits); \
         CREATE TABLE public.raw AS SELECT 1 AS n; \
         CREATE MODEL seg KIND kmeans OPTIONS (k = 2) AS SELECT spend, visits FROM mart.daily",
    )
    .await
    .unwrap();
    // Made in mart: readable by bi; made in public: not; the model: usable.
    assert_eq!(count(&bi, "SELECT count(*) FROM mart.daily").await, 4);
    assert_denied(
        &bi,
        "SELECT * FROM raw",
        "permission denied for table public.raw",
    )
    .await;
    assert_eq!(
        count(
            &bi,
            "SELECT count(DISTINCT segment('seg', spend, visits)) FROM mart.daily"
        )
        .await,
        2
    );
    // psql's \ddp.
    let ddp = serve_psql(&serve, "admin", "admin-secret", "\\ddp");
    assert!(
        ddp.lines().any(|l| l.contains("etl")
            && l.contains("mart")
            && l.contains("table")
            && l.contains("bi=r/etl")),
        "{ddp}"
    );
    // Revoked, the default no longer applies to new tables; old grants stay.
    etl.batch_execute(
        "ALTER DEFAULT PRIVILEGES IN SCHEMA mart REVOKE SELECT ON TABLES FROM bi; \
         CREATE TABLE mart.weekly AS SELECT 1 AS n",
    )
    .await
    .unwrap();
    assert_denied(
        &bi,
        "SELECT * FROM mart.weekly",
        "permission denied for table mart.weekly",
    )
    .await;
    assert_eq!(count(&bi, "SELECT count(*) FROM mart.daily").await, 4);
    // A role named by default privileges is not dropped from under them.
    let (code, message) = denied(&admin, "DROP ROLE bi").await;
    assert_eq!(code, SqlState::DEPENDENT_OBJECTS_STILL_EXIST, "{message}");
    assert!(
        message.contains("default privileges of etl on new models"),
        "{message}"
    );
}
