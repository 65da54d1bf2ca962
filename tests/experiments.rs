//! Experiments: ab_test and ab_sample_size checked against scipy and statsmodels on the same
//! numbers (tests/clients/ab_test_reference.py, through psycopg). The SQL surface and its
//! errors are in sql/slt/experiments.slt.

use std::process::Command;

use crate::server::TestServer;
use crate::support::project_file;

/// Runs the reference script with the interpreter in TENURE_TEST_PYTHON. Without it the test
/// says so and passes, unless TENURE_REQUIRE_CLIENT_TESTS=1 (set by .ci/run) makes that a
/// failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ab_test_matches_scipy_and_statsmodels() {
    let Ok(python) = std::env::var("TENURE_TEST_PYTHON") else {
        assert!(
            std::env::var_os("TENURE_REQUIRE_CLIENT_TESTS").is_none(),
            "TENURE_REQUIRE_CLIENT_TESTS is set but TENURE_TEST_PYTHON is not"
        );
        eprintln!(
            "skipping the scipy/statsmodels comparison: set TENURE_TEST_PYTHON to a python \
             with tests/clients/requirements.txt installed"
        );
        return;
    };
    let server = TestServer::start().await;
    let port = server.addr.port().to_string();
    let script = project_file("tests/clients/ab_test_reference.py");
    let output =
        tokio::task::spawn_blocking(move || Command::new(python).arg(script).arg(port).output())
            .await
            .unwrap()
            .expect("python runs");
    assert!(
        output.status.success(),
        "ab_test against scipy/statsmodels:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    server.stop().await;
}
