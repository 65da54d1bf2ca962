//! Property-based fuzzing (proptest) of what reads a client's bytes before anything else
//! does: pgwire's frontend-message decoders (startup, SSL negotiation and every message of
//! a session, from random bytes and from frames with a plausible type and a lying length),
//! and tenure's SQL front (statement splitting, tenure's own statements, the parse limits,
//! routing and the PostgreSQL-compatibility rewrites) on random token soups and random
//! text. The property is the same everywhere: an answer (a message, a statement or an
//! error), never a panic, a hang or a stack overflow. The COPY parser's target is beside
//! it in `src/server/copy.rs`.
//!
//! Each target runs a fixed number of cases (PROPTEST_CASES overrides it), a few seconds
//! in CI; a failure prints the smallest input proptest shrinks it to.

use bytes::BytesMut;
use pgwire::messages::{DecodeContext, PgWireFrontendMessage, ProtocolVersion};
use proptest::prelude::*;
use tenure::sql::{Route, Statement};

fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The decoder's three states: before the SSL request, before the startup message, and
/// in a session.
fn contexts() -> [DecodeContext; 3] {
    let context = |ssl: bool, startup: bool| {
        let mut context = DecodeContext::new(ProtocolVersion::PROTOCOL3_0);
        context.awaiting_frontend_ssl = ssl;
        context.awaiting_frontend_startup = startup;
        context
    };
    [
        context(true, true),
        context(false, true),
        context(false, false),
    ]
}

/// Decodes messages from `bytes` until it needs more or fails, in each state.
fn decode_all(bytes: &[u8]) {
    for context in contexts() {
        let mut buf = BytesMut::from(bytes);
        // Each decoded message consumes bytes, so this ends; the bound is a guard.
        for _ in 0..=bytes.len() {
            match PgWireFrontendMessage::decode(&mut buf, &context) {
                Ok(Some(_)) if !buf.is_empty() => {}
                _ => break,
            }
        }
    }
}

/// The bodies pgwire's decoders panic inside (and the vendored copy turns into
/// MalformedMessage) would print a panic message per case; they are expected here, so the
/// hook stays quiet for panics in the `bytes` crate's getters and nothing else.
fn quiet_decoder_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_decoder = info
                .location()
                .is_some_and(|l| l.file().contains("bytes-") || l.file().contains("pgwire"));
            if !in_decoder {
                previous(info);
            }
        }));
    });
}

/// A frame of a frontend message type with a length that may lie about its body.
fn frame() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(b"QPBEDSCHXcdfpF".to_vec()),
        prop::collection::vec(any::<u8>(), 0..64),
        prop_oneof![
            Just(0i32),
            -8i32..8,
            Just(i32::MIN),
            Just(-1),
            Just(1 << 30)
        ],
    )
        .prop_map(|(kind, body, lie)| {
            let length = i32::try_from(body.len() + 4).unwrap().wrapping_add(lie);
            let mut out = vec![kind];
            out.extend_from_slice(&length.to_be_bytes());
            out.extend_from_slice(&body);
            out
        })
}

/// A startup message with random parameters, possibly truncated or extended.
fn startup() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![
            Just(196_608i32),
            Just(80_877_103),
            Just(80_877_102),
            any::<i32>()
        ],
        prop::collection::vec(any::<u8>(), 0..48),
        -4i32..4,
    )
        .prop_map(|(code, body, lie)| {
            let length = i32::try_from(body.len() + 8).unwrap().wrapping_add(lie);
            let mut out = length.to_be_bytes().to_vec();
            out.extend_from_slice(&code.to_be_bytes());
            out.extend_from_slice(&body);
            out
        })
}

proptest! {
    #![proptest_config(cases(30_000))]

    #[test]
    fn random_bytes_never_panic_the_decoders(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        quiet_decoder_panics();
        decode_all(&bytes);
    }

    #[test]
    fn lying_frames_never_panic_the_decoders(
        start in startup(),
        frames in prop::collection::vec(frame(), 1..6),
    ) {
        quiet_decoder_panics();
        decode_all(&start);
        let session: Vec<u8> = frames.concat();
        decode_all(&session);
    }
}

/// Words SQL is made of, weighted towards what nests and what tenure parses itself.
const VOCABULARY: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "AND",
    "OR",
    "NOT",
    "(",
    ")",
    "(",
    ")",
    ",",
    ";",
    "*",
    "+",
    "-",
    "/",
    "=",
    "<>",
    "::",
    "$1",
    "$2",
    "1",
    "2.5",
    "'text'",
    "'it''s'",
    "E'\\n'",
    "$$d$$",
    "NULL",
    "abs",
    "count",
    "coalesce",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "t",
    "x",
    "\"Q\"",
    "CREATE",
    "MODEL",
    "KIND",
    "TARGET",
    "OPTIONS",
    "AS",
    "DROP",
    "IF",
    "EXISTS",
    "TABLE",
    "VIEW",
    "EXTERNAL",
    "STORED",
    "LOCATION",
    "COPY",
    "TO",
    "STDOUT",
    "STDIN",
    "FETCH",
    "MOVE",
    "NEXT",
    "ALL",
    "FORWARD",
    "BACKWARD",
    "IN",
    "CURSOR",
    "DECLARE",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SET",
    "SHOW",
    "INSERT",
    "INTO",
    "VALUES",
    "UPDATE",
    "DELETE",
    "WITH",
    "UNION",
    "JOIN",
    "ON",
    "GROUP",
    "BY",
    "ORDER",
    "LIMIT",
    "EXPLAIN",
    "COMMENT",
    "IS",
    "pg_catalog.pg_class",
    "::regclass",
    "ARRAY",
    "[",
    "]",
    "--c\n",
    "/*",
    "*/",
    "'",
    // Roles, privileges and row policies.
    "GRANT",
    "REVOKE",
    "ROLE",
    "USER",
    "ALTER",
    "PASSWORD",
    "LOGIN",
    "NOINHERIT",
    "SUPERUSER",
    "CREATEMODEL",
    "CONNECTION",
    "PUBLIC",
    "SCHEMA",
    "TABLES",
    "USAGE",
    "PRIVILEGES",
    "RESET",
    "POLICY",
    "USING",
    "RESTRICTIVE",
    "ROW",
    "LEVEL",
    "SECURITY",
    "ENABLE",
    // Default privileges, column privileges and secrets.
    "DEFAULT",
    "MODELS",
    "FOR",
    "SECRET",
    "PERSISTENT",
    "OR",
    "REPLACE",
    "TYPE",
    "s3",
    "KEY_ID",
    "'k'",
    "SCOPE",
    "'s3://b/p'",
    "ENDPOINT",
    "PROVIDER",
    "credential_chain",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(VOCABULARY), 0..80).prop_map(|w| w.join(" "))
}

/// Parses `sql` and, for what parses, routes and rewrites it as the server does.
fn front(sql: &str) {
    // What the audit log would write of it.
    let _ = tenure::server::audit::normalized(sql);
    let Ok(statements) = tenure::sql::parse(sql) else {
        return;
    };
    for statement in statements {
        let _ = Route::of(&statement);
        if let Statement::DataFusion(datafusion::sql::parser::Statement::Statement(mut inner)) =
            statement
        {
            tenure::pg::rewrite::for_datafusion(&mut inner, true);
        }
    }
}

proptest! {
    #![proptest_config(cases(5_000))]

    #[test]
    fn token_soups_never_panic_the_sql_front(sql in token_soup()) {
        front(&sql);
    }

    #[test]
    fn random_text_never_panics_the_sql_front(sql in "\\PC{0,200}") {
        front(&sql);
    }

}

proptest! {
    #![proptest_config(cases(300))]

    /// Deep nesting of every kind: refused with 54001 or parsed, never a stack overflow.
    #[test]
    #[allow(clippy::needless_pass_by_value)]
    fn deep_nesting_is_bounded(
        open in prop::sample::select(vec!["(", "abs(", "ARRAY[", "(SELECT ", "CASE WHEN "]),
        depth in prop_oneof![1usize..60, 60usize..3_000],
    ) {
        let close = match open {
            "ARRAY[" => "]",
            "CASE WHEN " => " THEN 1 END",
            _ => ")",
        };
        let sql = format!("SELECT {}1{}", open.repeat(depth), close.repeat(depth));
        std::thread::Builder::new()
            .stack_size(tenure::STATEMENT_STACK_SIZE)
            .spawn(move || front(&sql))
            .unwrap()
            .join()
            .unwrap();
    }
}
