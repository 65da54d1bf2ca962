use super::*;
use crate::card::ModelCard;
use crate::data::Column;
use crate::kind::Kind;
use crate::model::Model;
use crate::options::Options;
use crate::preprocess::FeatureColumn;
use candle_nn::optim::ParamsAdamW;
use rand_distr_free::normal;

/// Standard normals from a seeded generator (Box-Muller), so tests need no extra crate.
mod rand_distr_free {
    use rand::Rng;
    pub fn normal(rng: &mut impl Rng) -> f64 {
        let u1: f64 = rng.random_range(f64::EPSILON..1.0);
        let u2: f64 = rng.random();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// y ~ Bernoulli(σ(1.5·x1 − x2 + 1.0·[plan = pro] − 1)), with NULLs in x2 meaning "high".
fn synthetic(rows: usize, seed: u64) -> (TrainingData, Vec<f64>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut x1, mut x2, mut plan, mut y, mut truth) = (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..rows {
        let a = normal(&mut rng);
        let b = normal(&mut rng);
        let pro = rng.random::<f64>() < 0.4;
        let missing = rng.random::<f64>() < 0.1;
        let b_effect = if missing { 1.5 } else { b };
        let z = 1.5 * a - b_effect + if pro { 1.0 } else { 0.0 } - 1.0;
        let p = 1.0 / (1.0 + (-z).exp());
        x1.push(a);
        x2.push(if missing { f64::NAN } else { b });
        plan.push(Some(if pro { "pro" } else { "basic" }.to_string()));
        y.push(rng.random::<f64>() < p);
        truth.push(p);
    }
    let data = TrainingData {
        features: vec![
            ("x1".into(), FeatureColumn::Numeric(x1)),
            ("x2".into(), FeatureColumn::Numeric(x2)),
            ("plan".into(), FeatureColumn::Categorical(plan)),
        ],
        target: y,
    };
    (data, truth)
}

fn train(data: &TrainingData, pairs: &[(&str, &str)]) -> Result<Model> {
    let mut options = Options::new(pairs.iter().copied());
    Model::train(
        Kind::ChurnClassifier,
        data,
        &mut options,
        &mut |_| {},
        &AtomicBool::new(false),
    )
}

/// Calls `f` with the model's view of `data`'s feature columns.
fn with_views<T>(data: &TrainingData, f: impl FnOnce(&[FeatureValues<'_>]) -> T) -> T {
    let columns: Vec<Column<'_>> = data
        .features
        .iter()
        .map(|(_, c)| Column::borrow(c))
        .collect();
    let views: Vec<FeatureValues<'_>> = columns.iter().map(Column::view).collect();
    f(&views)
}

fn predict(model: &Model, data: &TrainingData) -> Vec<f64> {
    with_views(data, |views| model.predict(views).unwrap())
}

#[test]
fn learns_a_known_logistic_rule_close_to_the_truth() {
    let (data, truth) = synthetic(8000, 1);
    let truth_auc = roc_auc(&truth, &data.target);
    for options in [
        &[("model", "logistic")][..],
        &[("hidden", "16,8"), ("epochs", "40")][..],
    ] {
        let model = train(&data, options).unwrap();
        let Model::Classifier(c) = &model else {
            panic!("a classifier")
        };
        let auc = c.spec.training.validation.roc_auc;
        // The validation split is a fifth of the rows; the truth's AUC on all rows is the
        // ceiling the model can approach.
        assert!(
            auc > truth_auc - 0.03,
            "{options:?}: auc {auc} vs truth {truth_auc}"
        );
        let importance: HashMap<_, _> = c.spec.training.importance.iter().cloned().collect();
        assert!(importance["x1"] > importance["plan"], "{importance:?}");
    }
}

/// `model` saved (card JSON and safetensors) and loaded again.
fn reloaded(model: &Model, data: &TrainingData) -> Model {
    let weights = model.weights().unwrap();
    let card = ModelCard {
        format: crate::card::CARD_FORMAT,
        name: "m".into(),
        version: 1,
        kind: Kind::ChurnClassifier,
        target: Some("y".into()),
        features: vec![],
        options: Default::default(),
        metrics: model.metrics(),
        rows: data.rows() as u64,
        seconds: 0.0,
        fingerprint: crate::weights::fingerprint(data),
        created_at: String::new(),
        weights_checksum: crate::weights::fnv1a_hex(&weights),
        spec: model.spec(),
    };
    let card = ModelCard::from_json(&card.to_json()).unwrap();
    Model::load(&card, &weights, &Device::Cpu).unwrap()
}

#[test]
fn same_seed_same_model_and_save_load_is_bit_identical() {
    let (data, _) = synthetic(2000, 2);
    let options = [
        ("hidden", "8"),
        ("epochs", "5"),
        ("dropout", "0.1"),
        ("seed", "7"),
    ];
    let a = train(&data, &options).unwrap();
    let b = train(&data, &options).unwrap();
    let (pa, pb) = (predict(&a, &data), predict(&b, &data));
    assert_eq!(pa, pb);

    let loaded = reloaded(&a, &data);
    let pl = predict(&loaded, &data);
    assert!(pa.iter().zip(&pl).all(|(x, y)| x.to_bits() == y.to_bits()));
}

#[test]
fn logistic_explanations_add_up_to_the_prediction() {
    let (data, _) = synthetic(2000, 3);
    let model = train(&data, &[("hidden", "")]).unwrap();
    let Model::Classifier(c) = &model else {
        panic!("a classifier")
    };
    let (p, explanation) = with_views(&data, |v| (c.predict(v).unwrap(), c.explain(v).unwrap()));
    for row in [0, 1, 17] {
        let total = explanation.baseline + explanation.contributions[row].iter().sum::<f64>();
        assert!(
            (total - logit(p[row])).abs() < 1e-4,
            "row {row}: {total} vs {}",
            logit(p[row])
        );
    }
    // Integrated gradients nearly add up too (completeness), within the Riemann error.
    let mlp = train(&data, &[("hidden", "8"), ("epochs", "3")]).unwrap();
    let Model::Classifier(c) = &mlp else {
        panic!("a classifier")
    };
    let (p, explanation) = with_views(&data, |v| (c.predict(v).unwrap(), c.explain(v).unwrap()));
    let total = explanation.baseline + explanation.contributions[0].iter().sum::<f64>();
    assert!(
        (total - logit(p[0])).abs() < 0.05,
        "{total} vs {}",
        logit(p[0])
    );
}

#[test]
fn the_fused_cpu_path_matches_candle() {
    let (data, _) = synthetic(1500, 6);
    let model = train(&data, &[("hidden", "24,12"), ("epochs", "2")]).unwrap();
    let Model::Classifier(c) = &model else {
        panic!("a classifier")
    };
    // 1500 rows: two full blocks and a partial one.
    let matrix = with_views(&data, |v| c.spec.preprocessor.transform(v).unwrap());
    let fused = c.predict_encoded(&matrix).unwrap();
    let reference = predict_matrix(&c.layers, &matrix, &Device::Cpu).unwrap();
    assert_eq!(fused.len(), 1500);
    // Scoring columns encodes them a block at a time: the same inputs, the same answers.
    let by_columns = with_views(&data, |v| c.predict(v).unwrap());
    assert_eq!(by_columns, fused);
    for (a, b) in fused.iter().zip(&reference) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
}

#[test]
fn the_cpu_trainer_takes_candles_steps() {
    // 24 -> 20 -> 9 -> 1 from the same start, three AdamW steps on 200- and 37-row
    // batches with weighted rows: the hand-written backward pass and update against
    // candle's autograd and AdamW.
    let mut rng = StdRng::seed_from_u64(3);
    let sizes = [24, 20, 9, 1];
    let vars = init_layers(&sizes, &mut rng, &Device::Cpu).unwrap();
    let x = Matrix {
        rows: 200,
        cols: 24,
        data: (0..200 * 24).map(|_| rng.random_range(-2.0..2.0)).collect(),
    };
    let params = ParamsAdamW {
        lr: 0.01,
        weight_decay: 0.01,
        ..ParamsAdamW::default()
    };
    let mut cpu = CpuTrainer::new(unfold_layers(&vars).unwrap(), params.clone());
    let mut optimizer = AdamW::new(vars.clone(), params).unwrap();
    for batch in [
        (0..200).collect::<Vec<_>>(),
        (50..87).collect(),
        (0..200).rev().collect(),
    ] {
        let y: Vec<f32> = batch.iter().map(|&i| (i % 3 == 0) as u8 as f32).collect();
        let w: Vec<f32> = y.iter().map(|&y| if y > 0.0 { 2.0 } else { 1.0 }).collect();
        let total: f32 = w.iter().sum();
        let cpu_loss = cpu.step(&x, &batch, &y, &w, 0.0, &mut rng);

        let xt = Tensor::from_vec(x.gather_rows(&batch), (batch.len(), 24), &Device::Cpu).unwrap();
        let (yt, wt) = (
            Tensor::new(y.as_slice(), &Device::Cpu).unwrap(),
            Tensor::new(w.as_slice(), &Device::Cpu).unwrap(),
        );
        let weights: Vec<&Tensor> = vars.iter().map(Var::as_tensor).collect();
        let logits = forward_folded(&weights, &xt, 0.0, &mut rng).unwrap();
        let loss = (weighted_bce_with_logits(&logits, &yt, &wt).unwrap() / total as f64).unwrap();
        optimizer.backward_step(&loss).unwrap();
        let candle_loss = loss.to_scalar::<f32>().unwrap() as f64;
        assert!(
            (cpu_loss - candle_loss).abs() < 1e-5,
            "{cpu_loss} vs {candle_loss}"
        );

        for ((cw, cb), (kw, kb)) in cpu
            .layers()
            .unwrap()
            .iter()
            .zip(split_layers(&vars).unwrap())
        {
            for (a, b) in [(cw, &kw), (cb, &kb)] {
                let (a, b) = (
                    a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                    b.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                );
                for (a, b) in a.iter().zip(&b) {
                    assert!((a - b).abs() < 1e-5, "{a} vs {b}");
                }
            }
        }
    }
}

#[test]
fn bad_training_data_is_refused_clearly() {
    let (mut data, _) = synthetic(100, 4);
    data.target = vec![false; 100];
    let err = train(&data, &[]).unwrap_err().to_string();
    assert!(err.contains("single class"), "{err}");
    let empty = TrainingData {
        features: vec![("x".into(), FeatureColumn::Numeric(vec![]))],
        target: vec![],
    };
    assert_eq!(
        train(&empty, &[]).unwrap_err().to_string(),
        "the training query returned no rows"
    );
    let (data, _) = synthetic(100, 5);
    let err = train(&data, &[("hidden", "64,x")]).unwrap_err().to_string();
    assert!(err.starts_with("option hidden must be"), "{err}");
    let err = train(&data, &[("device", "cuda:0")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("cuda"), "{err}");
    let cancelled = Model::train(
        Kind::ChurnClassifier,
        &data,
        &mut Options::default(),
        &mut |_| {},
        &AtomicBool::new(true),
    );
    assert!(matches!(cancelled, Err(Error::Cancelled)));
}

fn classifier(model: &Model) -> &Classifier {
    match model {
        Model::Classifier(c) => c,
        other => panic!("not a classifier: {other:?}"),
    }
}

#[test]
fn auto_cross_validates_every_family_and_refits_the_best() {
    // A linear rule: logistic regression is as good as anything, and cheapest.
    let (data, truth) = synthetic(3000, 11);
    let model = train(&data, &[("seed", "3")]).unwrap();
    let spec = &classifier(&model).spec;
    let names: Vec<&str> = spec.selection.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names[..4],
        ["logistic", "gbdt_7_leaves", "gbdt_31_leaves", "mlp_64_32"]
    );
    // Last, the blend of the best network and the best trees.
    assert!(
        names[4].starts_with("blend_") && names[4].contains("_gbdt_"),
        "{names:?}"
    );
    assert_eq!(spec.selection.iter().filter(|c| c.chosen).count(), 1);
    for candidate in &spec.selection {
        assert_eq!(candidate.fold_auc.len(), 5);
        assert!(
            candidate.sd_auc > 0.0 && candidate.sd_auc < 0.05,
            "{candidate:?}"
        );
    }
    let chosen = spec.selection.iter().find(|c| c.chosen).unwrap();
    let best = spec
        .selection
        .iter()
        .map(|c| c.mean_auc)
        .fold(f64::MIN, f64::max);
    assert_eq!(chosen.mean_auc, best);
    // Refitted on every row; the validation figures are the out-of-fold predictions'.
    assert_eq!(spec.training.train_rows, 3000);
    assert_eq!(spec.training.validation_rows, 3000);
    assert!(spec.training.validation.roc_auc > roc_auc(&truth, &data.target) - 0.03);
    let metrics: Vec<String> = model.metrics().into_iter().map(|(n, _)| n).collect();
    assert!(
        metrics.contains(&"cv_auc_gbdt_31_leaves".to_string()),
        "{metrics:?}"
    );
    assert!(
        metrics.contains(&"cv_auc_sd_logistic".to_string()),
        "{metrics:?}"
    );
    // Whatever was chosen reloads with its selection and scores bit for bit the same.
    let back = reloaded(&model, &data);
    assert_eq!(back.metrics().len(), model.metrics().len());
    let loaded = predict(&back, &data);
    let scores = predict(&model, &data);
    assert!(
        scores
            .iter()
            .zip(&loaded)
            .all(|(x, y)| x.to_bits() == y.to_bits())
    );
    // The card keeps the selection.
    let card_json = serde_json::to_string(&model.spec()).unwrap();
    let back: crate::card::ModelSpec = serde_json::from_str(&card_json).unwrap();
    let crate::card::ModelSpec::Classifier(back) = back else {
        panic!("a classifier's spec")
    };
    let chosen_back: Vec<(String, bool)> = back
        .selection
        .iter()
        .map(|c| (c.name.clone(), c.chosen))
        .collect();
    let chosen_now: Vec<(String, bool)> = spec
        .selection
        .iter()
        .map(|c| (c.name.clone(), c.chosen))
        .collect();
    assert_eq!(chosen_back, chosen_now);
}

#[test]
fn auto_prefers_trees_where_the_rule_is_not_linear() {
    // y depends on |x1| > 1: no linear model can rank that.
    let (mut data, _) = synthetic(3000, 12);
    let x1 = match &data.features[0].1 {
        FeatureColumn::Numeric(v) => v.clone(),
        _ => unreachable!(),
    };
    let mut rng = StdRng::seed_from_u64(5);
    data.target = x1
        .iter()
        .map(|x| rng.random::<f64>() < if x.abs() > 1.0 { 0.8 } else { 0.2 })
        .collect();
    let model = train(&data, &[]).unwrap();
    let spec = &classifier(&model).spec;
    let chosen = spec.selection.iter().find(|c| c.chosen).unwrap();
    assert!(
        chosen.name.starts_with("gbdt") || chosen.name.starts_with("mlp"),
        "{chosen:?}"
    );
    let logistic = &spec.selection[0];
    assert!(
        chosen.mean_auc > logistic.mean_auc + 0.1,
        "{:?}",
        spec.selection
    );
    // Exact explanations for trees: baseline plus contributions is the log-odds.
    if spec.booster.is_some() {
        let explanation = with_views(&data, |v| classifier(&model).explain(v).unwrap());
        let p = predict(&model, &data);
        for (row, contributions) in explanation.contributions.iter().enumerate().take(200) {
            let total = explanation.baseline + contributions.iter().sum::<f64>();
            assert!((total - logit(p[row])).abs() < 1e-6);
        }
    }
}

#[test]
fn model_options_are_checked_against_the_family() {
    let (data, _) = synthetic(400, 13);
    let error = |pairs: &[(&str, &str)]| train(&data, pairs).unwrap_err().to_string();
    assert!(error(&[("model", "forest")]).contains("'logistic', 'mlp', 'gbdt' or 'auto'"));
    assert!(error(&[("model", "gbdt"), ("hidden", "8")]).contains("hidden does not apply"));
    assert!(error(&[("model", "logistic"), ("num_leaves", "8")]).contains("boosted-tree option"));
    assert!(error(&[("model", "auto"), ("epochs", "3")]).contains("choose a model"));
    assert!(error(&[("model", "logistic"), ("hidden", "8")]).contains("no hidden layers"));
    assert!(error(&[("model", "gbdt"), ("device", "cuda:0")]).contains("on the CPU"));
    // More folds than the rarer class can fill.
    let mut rare = data.clone();
    rare.target = (0..400).map(|i| i % 50 == 0).collect();
    let message = train(&rare, &[("folds", "5")]).unwrap_err().to_string();
    assert!(
        message.contains("folds = 5 needs at least 10 rows of each class"),
        "{message}"
    );
    // A time budget that cannot fit one candidate's first fold.
    let message = train(&data, &[("time_budget", "0.000001")])
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("too short to cross-validate one candidate"),
        "{message}"
    );
    // Tree options alone choose the trees; network options alone the network.
    let trees = train(&data, &[("num_leaves", "4")]).unwrap();
    assert!(classifier(&trees).spec.booster.is_some());
    let logistic = train(&data, &[("hidden", "")]).unwrap();
    assert!(
        error(&[("hidden", ""), ("epochs", "3")]).contains("Newton's method"),
        "descent options with logistic regression"
    );
    assert_eq!(classifier(&logistic).spec.family(), Family::Logistic);
}

#[test]
fn a_blend_averages_log_odds_explains_exactly_and_reloads_bit_identical() {
    let (data, _) = synthetic(2000, 14);
    let network = train(&data, &[("model", "logistic")]).unwrap();
    let trees = train(&data, &[("model", "gbdt"), ("trees", "30")]).unwrap();
    let members = vec![classifier(&network).clone(), classifier(&trees).clone()];
    let training = members[0].spec.training.clone();
    let blend = Model::Classifier(Classifier::blend(members, training));
    let (p, q, b) = (
        predict(&network, &data),
        predict(&trees, &data),
        predict(&blend, &data),
    );
    for i in 0..data.rows() {
        let expected = crate::gbdt::sigmoid((logit(p[i]) + logit(q[i])) / 2.0);
        assert!((b[i] - expected).abs() < 1e-12);
    }
    let explanation = with_views(&data, |v| classifier(&blend).explain(v).unwrap());
    for (row, contributions) in explanation.contributions.iter().enumerate().take(100) {
        let total = explanation.baseline + contributions.iter().sum::<f64>();
        assert!(
            (total - logit(b[row])).abs() < 1e-5,
            "{total} {}",
            logit(b[row])
        );
    }
    let loaded = predict(&reloaded(&blend, &data), &data);
    assert!(
        b.iter()
            .zip(&loaded)
            .all(|(x, y)| x.to_bits() == y.to_bits())
    );
}
