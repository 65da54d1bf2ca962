use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use arrow::array::AsArray;
use arrow::datatypes::{Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};

use super::*;

/// The world every test reads: scale 0.01 (1,000 customers), seed 42.
fn small() -> &'static DemoWorld {
    static WORLD: OnceLock<DemoWorld> = OnceLock::new();
    WORLD.get_or_init(|| {
        generate(&DemoOptions {
            scale: 0.01,
            seed: 42,
        })
        .expect("demo world")
    })
}

fn table<'w>(world: &'w DemoWorld, schema: &str, name: &str) -> &'w DemoTable {
    world
        .table(schema, name)
        .unwrap_or_else(|| panic!("no table {schema}.{name}"))
}

fn column<'w>(world: &'w DemoWorld, schema: &str, name: &str, column: &str) -> Vec<&'w ArrayRef> {
    table(world, schema, name)
        .batches
        .iter()
        .map(|b| {
            b.column_by_name(column)
                .unwrap_or_else(|| panic!("no column {column}"))
        })
        .collect()
}

fn i64s(world: &DemoWorld, schema: &str, name: &str, col: &str) -> Vec<i64> {
    column(world, schema, name, col)
        .into_iter()
        .flat_map(|a| a.as_primitive::<Int64Type>().values().to_vec())
        .collect()
}

fn i32s(world: &DemoWorld, schema: &str, name: &str, col: &str) -> Vec<i32> {
    column(world, schema, name, col)
        .into_iter()
        .flat_map(|a| a.as_primitive::<Int32Type>().values().to_vec())
        .collect()
}

fn f64s(world: &DemoWorld, schema: &str, name: &str, col: &str) -> Vec<Option<f64>> {
    column(world, schema, name, col)
        .into_iter()
        .flat_map(|a| a.as_primitive::<Float64Type>().iter().collect::<Vec<_>>())
        .collect()
}

fn times(world: &DemoWorld, schema: &str, name: &str, col: &str) -> Vec<i64> {
    column(world, schema, name, col)
        .into_iter()
        .flat_map(|a| {
            a.as_primitive::<TimestampMicrosecondType>()
                .values()
                .to_vec()
        })
        .collect()
}

fn bools(world: &DemoWorld, schema: &str, name: &str, col: &str) -> Vec<Option<bool>> {
    column(world, schema, name, col)
        .into_iter()
        .flat_map(|a| a.as_boolean().iter().collect::<Vec<_>>())
        .collect()
}

fn strings(world: &DemoWorld, schema: &str, name: &str, col: &str) -> Vec<Option<String>> {
    column(world, schema, name, col)
        .into_iter()
        .flat_map(|a| {
            a.as_string::<i32>()
                .iter()
                .map(|s| s.map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Area under the ROC curve of `scores` against `labels`, ties counted half.
fn auc(scores: &[f64], labels: &[bool]) -> f64 {
    let mut pairs: Vec<(f64, bool)> = scores.iter().copied().zip(labels.iter().copied()).collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let positives = labels.iter().filter(|l| **l).count() as f64;
    let negatives = labels.len() as f64 - positives;
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < pairs.len() {
        let mut j = i;
        while j < pairs.len() && pairs[j].0 == pairs[i].0 {
            j += 1;
        }
        let mean_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum += mean_rank * pairs[i..j].iter().filter(|p| p.1).count() as f64;
        i = j;
    }
    (rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives)
}

#[test]
fn same_seed_gives_the_same_world() {
    let again = generate(&DemoOptions {
        scale: 0.01,
        seed: 42,
    })
    .unwrap();
    let world = small();
    assert_eq!(world.tables.len(), again.tables.len());
    for (a, b) in world.tables.iter().zip(&again.tables) {
        assert_eq!((a.schema, a.name), (b.schema, b.name));
        assert!(
            a.batches == b.batches,
            "{}.{} differs between runs",
            a.schema,
            a.name
        );
    }
}

#[test]
fn thread_count_does_not_change_the_world() {
    // Five chunks of 100 customers: waves of two chunks and of all five.
    let options = DemoOptions {
        scale: 0.005,
        seed: 9,
    };
    let mut rng = StdRng::seed_from_u64(stream_seed(options.seed, CATALOG_STREAM));
    let catalog = Catalog::build(MIN_ITEMS, &mut rng).unwrap();
    let one = generate_with_threads(&options, 500, &catalog, 1, 100).unwrap();
    let three = generate_with_threads(&options, 500, &catalog, 3, 100).unwrap();
    for (a, b) in one.tables.iter().zip(&three.tables) {
        assert!(
            a.batches == b.batches,
            "{}.{} depends on the thread count",
            a.schema,
            a.name
        );
    }
}

#[test]
fn different_seeds_give_different_worlds() {
    let other = generate(&DemoOptions {
        scale: 0.01,
        seed: 7,
    })
    .unwrap();
    assert!(
        table(small(), "public", "orders").batches != table(&other, "public", "orders").batches
    );
    assert!(
        table(small(), "public", "events").batches != table(&other, "public", "events").batches
    );
}

#[test]
fn tables_and_schemas_are_the_documented_ones() {
    let world = small();
    let names: Vec<String> = world
        .tables
        .iter()
        .map(|t| format!("{}.{}", t.schema, t.name))
        .collect();
    assert_eq!(
        names,
        [
            "public.customers",
            "public.items",
            "public.events",
            "public.orders",
            "public.order_lines",
            "public.winback_campaign",
            "public.reviews",
            "public.searches",
            "truth.customers",
            "truth.orders",
            "truth.reviews",
            "truth.searches",
            "truth.parameters"
        ]
    );
    let orders = table(world, "public", "orders");
    let schema = orders.batches[0].schema();
    assert_eq!(
        schema.field_with_name("order_time").unwrap().data_type(),
        &timestamp()
    );
    let customers = table(world, "public", "customers");
    assert_eq!(
        customers.batches[0]
            .schema()
            .field_with_name("signup_date")
            .unwrap()
            .data_type(),
        &DataType::Date32
    );
    assert_eq!(customers.num_rows(), 1_000);
    assert!(table(world, "public", "items").num_rows() >= 200);
    for t in &world.tables {
        assert!(!t.batches.is_empty());
        assert!(t.batches.iter().all(|b| b.num_rows() <= MAX_BATCH_ROWS));
    }
}

#[test]
fn orders_lines_and_events_refer_to_existing_rows() {
    let world = small();
    let customers: HashSet<i64> = i64s(world, "public", "customers", "customer_id")
        .into_iter()
        .collect();
    let n_items = table(world, "public", "items").num_rows() as i64;

    let order_ids = i64s(world, "public", "orders", "order_id");
    let order_customers = i64s(world, "public", "orders", "customer_id");
    let amounts = f64s(world, "public", "orders", "amount");
    let discounts = f64s(world, "public", "orders", "discount");
    let item_counts = i32s(world, "public", "orders", "item_count");
    assert!(order_customers.iter().all(|c| customers.contains(c)));
    assert_eq!(order_ids, (1..=order_ids.len() as i64).collect::<Vec<_>>());

    let line_orders = i64s(world, "public", "order_lines", "order_id");
    let line_items = i64s(world, "public", "order_lines", "item_id");
    let quantities = i32s(world, "public", "order_lines", "quantity");
    let prices = f64s(world, "public", "order_lines", "unit_price");
    let mut gross: HashMap<i64, (f64, i32)> = HashMap::new();
    for ((order, item), (quantity, price)) in line_orders
        .iter()
        .zip(&line_items)
        .zip(quantities.iter().zip(&prices))
    {
        assert!((1..=n_items).contains(item));
        let entry = gross.entry(*order).or_default();
        entry.0 += *quantity as f64 * price.unwrap();
        entry.1 += *quantity;
    }
    for (i, id) in order_ids.iter().enumerate() {
        let (sum, count) = gross[id];
        let amount = amounts[i].unwrap();
        let expected = sum - discounts[i].unwrap();
        assert!(
            (amount - expected).abs() < 0.011,
            "order {id}: {amount} vs {expected}"
        );
        assert_eq!(count, item_counts[i]);
        assert!(amount > 0.0);
    }

    let event_customers = i64s(world, "public", "events", "customer_id");
    assert!(event_customers.iter().all(|c| customers.contains(c)));
    let event_items = column(world, "public", "events", "item_id");
    let kinds = strings(world, "public", "events", "event_type");
    let item_ids: Vec<Option<i64>> = event_items
        .into_iter()
        .flat_map(|a| a.as_primitive::<Int64Type>().iter().collect::<Vec<_>>())
        .collect();
    for (kind, item) in kinds.iter().zip(&item_ids) {
        assert_eq!(kind.as_deref() == Some("search"), item.is_none());
        if let Some(item) = item {
            assert!((1..=n_items).contains(item));
        }
    }
    let purchases = kinds
        .iter()
        .filter(|k| k.as_deref() == Some("purchase"))
        .count();
    assert_eq!(purchases, order_ids.len(), "one purchase event per order");

    let truth_orders = i64s(world, "truth", "orders", "order_id");
    assert_eq!(truth_orders, order_ids);
    let truth_customers = i64s(world, "truth", "customers", "customer_id");
    assert_eq!(truth_customers.len(), customers.len());
}

#[test]
fn every_review_event_has_a_text_whose_topic_follows_its_rating() {
    let world = small();
    let event_ids = i64s(world, "public", "events", "event_id");
    let kinds = strings(world, "public", "events", "event_type");
    let ratings = column(world, "public", "events", "rating")
        .into_iter()
        .flat_map(|a| a.as_primitive::<Int32Type>().iter().collect::<Vec<_>>());
    let review_events: HashMap<i64, i32> = event_ids
        .iter()
        .zip(kinds)
        .zip(ratings)
        .filter(|((_, kind), _)| kind.as_deref() == Some("review"))
        .map(|((id, _), rating)| (*id, rating.unwrap()))
        .collect();
    let ids = i64s(world, "public", "reviews", "review_id");
    let review_ratings = i32s(world, "public", "reviews", "rating");
    let bodies = strings(world, "public", "reviews", "body");
    let topics = strings(world, "truth", "reviews", "topic");
    assert_eq!(ids, i64s(world, "truth", "reviews", "review_id"));
    assert_eq!(ids.len(), review_events.len());
    assert!(ids.len() > 500, "{} reviews", ids.len());
    for (((id, rating), body), topic) in ids.iter().zip(&review_ratings).zip(&bodies).zip(&topics) {
        assert_eq!(review_events[id], *rating);
        assert!(body.as_deref().is_some_and(|b| b.len() > 10), "{body:?}");
        let topic = topic.as_deref().unwrap();
        let expected: &[&str] = match rating {
            1 | 2 => &["defect", "delivery", "support"],
            3 => &["mixed"],
            _ => &["praise"],
        };
        assert!(expected.contains(&topic), "rating {rating}: {topic}");
    }
}

#[test]
fn every_search_event_has_a_query_and_failed_searches_find_nothing() {
    let world = small();
    let event_ids = i64s(world, "public", "events", "event_id");
    let kinds = strings(world, "public", "events", "event_type");
    let searches: Vec<i64> = event_ids
        .iter()
        .zip(&kinds)
        .filter(|(_, kind)| kind.as_deref() == Some("search"))
        .map(|(id, _)| *id)
        .collect();
    let ids = i64s(world, "public", "searches", "search_id");
    assert_eq!(ids, searches);
    assert_eq!(ids, i64s(world, "truth", "searches", "search_id"));
    let queries = strings(world, "public", "searches", "query");
    let found = bools(world, "truth", "searches", "found");
    let categories = strings(world, "truth", "searches", "category");
    let failed = found.iter().filter(|f| **f == Some(false)).count();
    assert!(
        failed > 0 && failed < found.len(),
        "{failed} of {}",
        found.len()
    );
    for ((query, found), category) in queries.iter().zip(&found).zip(&categories) {
        assert!(query.as_deref().is_some_and(|q| !q.is_empty()));
        assert_eq!(*found == Some(true), category.is_some(), "{query:?}");
    }
}

#[test]
fn fraud_is_a_few_percent_of_orders() {
    let world = small();
    let fraud = bools(world, "truth", "orders", "is_fraud");
    let patterns = strings(world, "truth", "orders", "fraud_pattern");
    let rate = fraud.iter().filter(|f| **f == Some(true)).count() as f64 / fraud.len() as f64;
    assert!((0.01..=0.05).contains(&rate), "fraud rate {rate}");
    for (f, p) in fraud.iter().zip(&patterns) {
        assert_eq!(*f == Some(true), p.is_some());
    }
}

#[test]
fn customers_order_about_ten_times() {
    let world = small();
    let orders = table(world, "public", "orders").num_rows() as f64;
    let mean = orders / 1_000.0;
    assert!(
        (5.0..=16.0).contains(&mean),
        "mean orders per customer {mean}"
    );
    let events = table(world, "public", "events").num_rows() as f64 / 1_000.0;
    assert!(
        (15.0..=80.0).contains(&events),
        "mean events per customer {events}"
    );
}

#[test]
fn churn_label_matches_the_public_tables_and_the_hazard_ranks_it() {
    let world = small();
    let cutoff = clock::cutoff_us();
    let signups: HashMap<i64, i32> = i64s(world, "public", "customers", "customer_id")
        .into_iter()
        .zip(
            column(world, "public", "customers", "signup_date")
                .into_iter()
                .flat_map(|a| {
                    a.as_primitive::<arrow::datatypes::Date32Type>()
                        .values()
                        .to_vec()
                }),
        )
        .collect();
    let mut before: HashSet<i64> = HashSet::new();
    let mut after: HashSet<i64> = HashSet::new();
    for (c, t) in i64s(world, "public", "orders", "customer_id")
        .into_iter()
        .zip(times(world, "public", "orders", "order_time"))
    {
        if t < cutoff {
            before.insert(c)
        } else {
            after.insert(c)
        };
    }
    let cutoff_day = clock::epoch_day(clock::CUTOFF_T - 1.0);
    let ids = i64s(world, "truth", "customers", "customer_id");
    let hazard = f64s(world, "truth", "customers", "churn_hazard");
    let churned = bools(world, "truth", "customers", "churned");
    let (mut scores, mut labels) = (Vec::new(), Vec::new());
    for (i, id) in ids.iter().enumerate() {
        let active = signups[id] <= cutoff_day && before.contains(id);
        assert_eq!(churned[i].is_some(), active, "customer {id}");
        assert_eq!(hazard[i].is_some(), active);
        if let (Some(h), Some(c)) = (hazard[i], churned[i]) {
            assert!((0.0..=1.0).contains(&h));
            assert_eq!(c, !after.contains(id), "customer {id}");
            scores.push(h);
            labels.push(c);
        }
    }
    assert!(scores.len() > 300, "{} active customers", scores.len());
    let mean_hazard = scores.iter().sum::<f64>() / scores.len() as f64;
    let churn_rate = labels.iter().filter(|l| **l).count() as f64 / labels.len() as f64;
    assert!(
        (mean_hazard - churn_rate).abs() < 0.08,
        "hazard {mean_hazard} vs rate {churn_rate}"
    );
    let auc = auc(&scores, &labels);
    assert!(auc > 0.75, "hazard AUC {auc}");
}

#[test]
fn calendar_constants_agree() {
    let day = |s: &str| {
        let date: chrono::NaiveDate = s.parse().unwrap();
        (date - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days()
    };
    assert_eq!(day(OBSERVATION_START), clock::START_EPOCH_DAY);
    assert_eq!(
        day(OBSERVATION_END) + 1 - clock::START_EPOCH_DAY,
        clock::WINDOW_DAYS as i64
    );
    assert_eq!(
        day(FEATURE_CUTOFF) + 1 - clock::START_EPOCH_DAY,
        clock::CUTOFF_T as i64
    );
    assert_eq!(
        day(OBSERVATION_END) - day(FEATURE_CUTOFF),
        CHURN_HORIZON_DAYS
    );
}

#[test]
fn scale_must_be_positive_and_finite() {
    for scale in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e9] {
        assert!(
            generate(&DemoOptions { scale, seed: 1 }).is_err(),
            "scale {scale}"
        );
    }
}

#[test]
fn tiny_worlds_still_work() {
    let world = generate(&DemoOptions {
        scale: 0.001,
        seed: 3,
    })
    .unwrap();
    assert_eq!(table(&world, "public", "customers").num_rows(), 100);
    let one = generate(&DemoOptions {
        scale: 1e-7,
        seed: 3,
    })
    .unwrap();
    assert_eq!(table(&one, "public", "customers").num_rows(), 1);
    assert!(one.tables.iter().all(|t| !t.batches.is_empty()));
}

#[test]
fn parameters_report_the_population() {
    let world = small();
    let names = strings(world, "truth", "parameters", "name");
    let values = f64s(world, "truth", "parameters", "value");
    let get = |n: &str| {
        let i = names
            .iter()
            .position(|x| x.as_deref() == Some(n))
            .unwrap_or_else(|| panic!("no parameter {n}"));
        values[i].unwrap()
    };
    assert_eq!(get("bgnbd_r"), BGNBD_R);
    assert_eq!(get("n_taste_clusters"), 6.0);
    assert_eq!(get("n_customers"), 1_000.0);
    let rate = get("fraud_rate");
    assert!(rate > 0.0 && rate < 0.1);
}

/// The win-back campaign is randomised, its control arm is the world without it, and the
/// retention it measures differs between the arms by the average true effect.
#[test]
fn the_winback_campaign_is_randomised_and_its_effect_is_the_truth() {
    let world = small();
    let ids = i64s(world, "public", "winback_campaign", "customer_id");
    let arms = strings(world, "public", "winback_campaign", "arm");
    let retained = bools(world, "public", "winback_campaign", "retained");
    let truth_ids = i64s(world, "truth", "customers", "customer_id");
    let uplift = f64s(world, "truth", "customers", "coupon_uplift");
    let churned = bools(world, "truth", "customers", "churned");
    let index = |id: i64| truth_ids.iter().position(|t| *t == id).unwrap();
    assert!(ids.len() > 100, "{} customers at risk", ids.len());
    // coupon_uplift is set exactly for the campaign's customers.
    assert_eq!(uplift.iter().filter(|u| u.is_some()).count(), ids.len());
    let (mut coupons, mut sum) = (0usize, [0.0f64; 2]);
    let mut counts = [0usize; 2];
    let mut true_effect = 0.0;
    for ((id, arm), kept) in ids.iter().zip(&arms).zip(&retained) {
        let row = index(*id);
        let effect = uplift[row].expect("a campaign customer has a true effect");
        assert!((-0.4..=0.6).contains(&effect), "{effect}");
        true_effect += effect;
        let coupon = arm.as_deref() == Some("coupon");
        if coupon {
            coupons += 1;
        } else {
            assert_eq!(
                *kept,
                churned[row].map(|c| !c),
                "control is the world without it"
            );
        }
        counts[usize::from(coupon)] += 1;
        sum[usize::from(coupon)] += f64::from(u8::from(kept.unwrap()));
    }
    let n = ids.len() as f64;
    assert!(
        (coupons as f64 - n / 2.0).abs() < 5.0 * (n / 4.0).sqrt(),
        "{coupons} of {n}"
    );
    let rates = [sum[0] / counts[0] as f64, sum[1] / counts[1] as f64];
    let se = (rates[0] * (1.0 - rates[0]) / counts[0] as f64
        + rates[1] * (1.0 - rates[1]) / counts[1] as f64)
        .sqrt();
    let observed = rates[1] - rates[0];
    let expected = true_effect / n;
    assert!(
        (observed - expected).abs() < 4.0 * se,
        "observed {observed:.3}, true {expected:.3}, se {se:.3}"
    );
}
