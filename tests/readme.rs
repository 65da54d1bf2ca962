//! README.md as executable documentation: every SQL example in it runs, in order, through
//! the `tenure sql` binary against one demo world, as a reader would run them one after
//! another; where README shows an example's output, the output must match.
//!
//! What counts as an example:
//! - a fenced ```sql block (run with `tenure sql -f`);
//! - in a fenced ```sh block, each `sql -c "..."` (the SQL between the double quotes) and
//!   `sql -f FILE` (a file of this repository), with whatever `tenure` or `cargo run --`
//!   and options come before it.
//!
//! Markers, HTML comments that GitHub does not show, on the line before a block:
//! - `<!-- readme-test: skip: REASON -->`: not run (the reason is required: data the demo
//!   world does not have, a service that is not there);
//! - `<!-- readme-test: output -->` before a ```text block: the output of the example just
//!   above it, compared exactly with what `tenure sql` prints.
//!
//! The demo world here is small (scale 0.02, a fiftieth of README's default), so only outputs
//! that do not depend on the data's size can be shown; every example still runs.

use std::path::Path;

use crate::support::{project_file, tenure, tenure_ok};

/// One example from README: where it is, what runs, and the output README shows for it.
#[derive(Debug)]
struct Example {
    line: usize,
    run: Run,
    expected_output: Option<String>,
}

#[derive(Debug)]
enum Run {
    Sql(String),
    File(String),
}

const MARKER: &str = "<!-- readme-test:";

/// The examples of `readme`, in order.
fn examples(readme: &str) -> Vec<Example> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut examples: Vec<Example> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(language) = lines[i].trim_start().strip_prefix("```") else {
            i += 1;
            continue;
        };
        let start = i + 1;
        let end = (start..lines.len())
            .find(|&j| lines[j].trim_start().starts_with("```"))
            .unwrap_or_else(|| panic!("README line {}: the block is not closed", i + 1));
        let body = lines[start..end].join("\n");
        let marker = i
            .checked_sub(1)
            .map(|j| lines[j].trim())
            .filter(|l| l.starts_with(MARKER));
        match (language.trim(), marker) {
            (_, Some(marker)) if marker.contains("skip:") => {
                let reason = marker.split("skip:").nth(1).unwrap_or("").trim();
                assert!(
                    reason.len() > "-->".len(),
                    "README line {i}: a skip marker needs its reason: {marker}"
                );
            }
            ("text", Some(marker)) if marker.contains("output") => {
                let example = examples.last_mut().unwrap_or_else(|| {
                    panic!(
                        "README line {}: an output marker with no example above",
                        i + 1
                    )
                });
                example.expected_output = Some(format!("{body}\n"));
            }
            ("sql", _) => examples.push(Example {
                line: start + 1,
                run: Run::Sql(body),
                expected_output: None,
            }),
            ("sh", _) => examples.extend(shell_examples(&body, start + 1)),
            _ => {}
        }
        i = end + 1;
    }
    examples
}

/// The `sql -c "..."` and `sql -f FILE` commands of a shell block.
fn shell_examples(body: &str, first_line: usize) -> Vec<Example> {
    let mut found = Vec::new();
    let mut rest = body;
    while let Some(at) = rest.find(" sql ") {
        let line = first_line + body[..body.len() - rest.len() + at].matches('\n').count();
        let after = rest[at + " sql ".len()..].trim_start();
        if let Some(quoted) = after.strip_prefix("-c \"") {
            // Up to the closing quote; `\"` and `\\` as the shell reads them.
            let mut sql = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((index, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, next)) = chars.next() {
                            if !matches!(next, '"' | '\\' | '$' | '`') {
                                sql.push('\\');
                            }
                            sql.push(next);
                        }
                    }
                    '"' => {
                        end = index + 1;
                        break;
                    }
                    c => sql.push(c),
                }
            }
            found.push(Example {
                line,
                run: Run::Sql(sql),
                expected_output: None,
            });
            rest = &quoted[end..];
        } else if let Some(file) = after.strip_prefix("-f ") {
            let file = file.split_whitespace().next().unwrap_or("");
            found.push(Example {
                line,
                run: Run::File(file.to_string()),
                expected_output: None,
            });
            rest = after;
        } else {
            rest = after;
        }
    }
    found
}

fn run(data_dir: &Path, example: &Example) -> (bool, String, String) {
    let file = match &example.run {
        Run::Sql(sql) => {
            let file = data_dir.with_extension(format!("line{}.sql", example.line));
            std::fs::write(&file, sql).unwrap();
            file
        }
        Run::File(path) => project_file(path),
    };
    let out = tenure(data_dir, &["sql", "-f", file.to_str().unwrap()]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_readme_example_runs() {
    let readme = std::fs::read_to_string(project_file("README.md")).unwrap();
    let examples = examples(&readme);
    // The parser finds the examples it should (a guard against a README reshuffle, or a
    // parser change, silently testing nothing).
    assert!(
        examples.len() >= 15,
        "only {} examples found: {examples:#?}",
        examples.len()
    );
    assert!(examples.iter().any(|e| e.expected_output.is_some()));

    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    tenure_ok(&data_dir, &["demo", "--scale", "0.02"]);
    let mut failures = Vec::new();
    for example in &examples {
        let started = std::time::Instant::now();
        let (ok, stdout, stderr) = run(&data_dir, example);
        eprintln!(
            "README line {}: {} in {:.1} s",
            example.line,
            if ok { "ran" } else { "FAILED" },
            started.elapsed().as_secs_f64()
        );
        if !ok {
            failures.push(format!(
                "README line {}: {:?} failed:\n{stderr}",
                example.line, example.run
            ));
        } else if let Some(expected) = &example.expected_output
            && stdout != *expected
        {
            failures.push(format!(
                "README line {}: the output differs from README's.\nREADME:\n{expected}\ntenure sql:\n{stdout}",
                example.line
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The parser reads both kinds of block and the markers, and a wrong output fails.
#[test]
fn the_readme_parser_finds_examples_and_markers() {
    let readme = "intro\n\
        ```sh\n\
        cargo run -- sql -c \"SELECT 1\" && tenure --data-dir x sql -f sql/lifecycle_mart.sql\n\
        tenure sql -c \"CREATE MODEL m AS\n    SELECT \\\"a\\\" FROM t\"\n\
        cargo run -- serve\n\
        ```\n\
        <!-- readme-test: skip: needs S3 -->\n\
        ```sql\nSELECT * FROM s3_table;\n```\n\
        ```sql\nSELECT 2 AS two;\n```\n\
        <!-- readme-test: output -->\n\
        ```text\n two\n-----\n   2\n(1 row)\n\n```\n";
    let found = examples(readme);
    let runs: Vec<String> = found
        .iter()
        .map(|e| match &e.run {
            Run::Sql(sql) => format!("sql {sql}"),
            Run::File(file) => format!("file {file}"),
        })
        .collect();
    assert_eq!(
        runs,
        [
            "sql SELECT 1",
            "file sql/lifecycle_mart.sql",
            "sql CREATE MODEL m AS\n    SELECT \"a\" FROM t",
            "sql SELECT 2 AS two;",
        ]
    );
    assert_eq!(found[0].line, 3);
    assert_eq!(
        found[3].expected_output.as_deref(),
        Some(" two\n-----\n   2\n(1 row)\n\n")
    );
    // An example whose output differs from the one shown is caught.
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    std::fs::create_dir(&data_dir).unwrap();
    let (ok, stdout, _) = run(&data_dir, &found[3]);
    assert!(ok);
    assert_eq!(Some(stdout.as_str()), found[3].expected_output.as_deref());
    let wrong = Example {
        line: 1,
        run: Run::Sql("SELECT 3 AS two;".into()),
        expected_output: None,
    };
    let (_, stdout, _) = run(&data_dir, &wrong);
    assert_ne!(Some(stdout.as_str()), found[3].expected_output.as_deref());
}
