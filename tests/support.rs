//! Helpers shared by the integration tests.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use tenure::{Config, Engine, PathAccess};

/// A file of this checkout, e.g. `project_file("sql/slt")`. The directory is read at run time
/// (cargo sets CARGO_MANIFEST_DIR for tests): a test binary cargo reuses from a build in another
/// checkout that shares the target directory carries that checkout's path in `env!`.
pub fn project_file(relative: &str) -> PathBuf {
    let dir = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
    Path::new(&dir).join(relative)
}

/// The `tenure` binary cargo built for these tests.
pub fn tenure_bin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tenure"));
    command
        .env_remove("TENURE_DATA_DIR")
        .env("RUST_LOG", "warn");
    command
}

/// Runs `tenure --data-dir DIR args...` and returns its output.
pub fn tenure(data_dir: &Path, args: &[&str]) -> Output {
    tenure_bin()
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .expect("the tenure binary runs")
}

/// Stdout of a run that must succeed.
pub fn tenure_ok(data_dir: &Path, args: &[&str]) -> String {
    let output = tenure(data_dir, args);
    assert!(
        output.status.success(),
        "tenure {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// Opens an engine on `dir` with default settings and two threads.
pub async fn open_engine(dir: &Path) -> Engine {
    let config = Config {
        data_dir: dir.to_path_buf(),
        threads: 2,
        ..Config::default()
    };
    Engine::open(&config, PathAccess::Unrestricted)
        .await
        .expect("engine opens")
}

/// An engine on a fresh temporary data directory holding the demo world at `scale` (seed 42).
/// Keep the directory alive as long as the engine.
pub async fn demo_engine(scale: f64) -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path()).await;
    tenure::lifecycle::load_demo(
        &engine,
        &tenure::demo::DemoOptions { scale, seed: 42 },
        None,
    )
    .await
    .unwrap();
    (dir, engine)
}

/// The single value of a one-row, one-column query, formatted as text.
pub async fn scalar(engine: &Engine, sql: &str) -> String {
    let batches = engine
        .query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let rows: Vec<_> = batches.iter().filter(|b| b.num_rows() > 0).collect();
    assert_eq!(rows.len(), 1, "{sql}: expected one batch with rows");
    assert_eq!(
        (rows[0].num_rows(), rows[0].num_columns()),
        (1, 1),
        "{sql}: expected one value"
    );
    arrow::util::display::array_value_to_string(rows[0].column(0), 0).expect("displayable")
}

/// A self-signed certificate and its key (PEM) for localhost in `dir`, made with openssl.
pub fn self_signed_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success());
    (cert, key)
}

/// A `tenure serve` process with the configuration `toml`, its log in `log`.
pub struct Serve {
    pub child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
}

impl Serve {
    pub fn start(toml: &str) -> Serve {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data/import")).unwrap();
        Serve::start_in(dir, toml)
    }

    /// Starts the server again on the data directory `dir` of an earlier [`Serve`] (see
    /// [`Serve::kill`]).
    pub fn start_in(dir: tempfile::TempDir, toml: &str) -> Serve {
        let config = dir.path().join("tenure.toml");
        std::fs::write(&config, toml).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = dir.path().join("serve.log");
        let mut child = tenure_bin()
            .args(["serve", "--create"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--config")
            .arg(&config)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "info")
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        for _ in 0..300 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Serve {
                    child,
                    port,
                    dir,
                    log,
                };
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "tenure serve exited early ({status}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("tenure serve did not listen on {port}");
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn import(&self) -> PathBuf {
        self.data().join("import")
    }

    pub fn url(&self, user: &str, password: Option<&str>) -> String {
        let mut url = format!(
            "host=127.0.0.1 port={} user={user} dbname=tenure connect_timeout=10",
            self.port
        );
        if let Some(password) = password {
            url.push_str(&format!(" password='{password}'"));
        }
        url
    }

    pub async fn connect(&self, user: &str, password: Option<&str>) -> Client {
        let (client, connection) = tokio_postgres::connect(&self.url(user, password), NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect as {user}: {e}"));
        tokio::spawn(connection);
        client
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the server with SIGTERM and returns its log; it must exit cleanly.
    pub fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = self.child.wait().unwrap();
        let log = self.log();
        assert!(status.success(), "serve exits cleanly: {status}\n{log}");
        log
    }
}

impl Serve {
    /// SIGKILLs the server and returns its directory, for [`Serve::start_in`].
    pub fn kill(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let placeholder = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, placeholder)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `tests/clients/{script} PORT` with the interpreter in TENURE_TEST_PYTHON (a venv
/// with tests/clients/requirements.txt) against a server on `port`, and fails the test with
/// the script's output if the script fails. Without TENURE_TEST_PYTHON it says so and
/// returns, unless TENURE_REQUIRE_CLIENT_TESTS=1 (set by .ci/run) makes that a failure.
pub async fn python_client(script: &str, port: u16) {
    let Ok(python) = std::env::var("TENURE_TEST_PYTHON") else {
        assert!(
            std::env::var_os("TENURE_REQUIRE_CLIENT_TESTS").is_none(),
            "TENURE_REQUIRE_CLIENT_TESTS is set but TENURE_TEST_PYTHON is not"
        );
        eprintln!(
            "skipping tests/clients/{script}: set TENURE_TEST_PYTHON to a python with \
             tests/clients/requirements.txt installed"
        );
        return;
    };
    let path = project_file(&format!("tests/clients/{script}"));
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(path)
            .arg(port.to_string())
            .output()
    })
    .await
    .unwrap()
    .expect("python runs");
    assert!(
        output.status.success(),
        "tests/clients/{script}:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
