//! Reading an A/B test in SQL:
//!
//! - `ab_test(query [, control_arm])`, a table function: the query returns each unit's arm
//!   (first column) and outcome (second column); the result has a row per arm with its n and
//!   mean, and for each arm but control the difference from control with its 95 % interval,
//!   the relative lift, the two-sided p-value (the two-proportion z-test for a boolean
//!   outcome, Welch's t-test for a number) and the Bayesian probability to beat control.
//!   The control arm is `'control'` unless named.
//! - `ab_sample_size(baseline, minimum_effect [, alpha [, power]])`: the units each of two
//!   arms needs to detect a change of a conversion rate.
//!
//! The statistics are `tenure_models::ab_test`'s. Rows whose arm or outcome is NULL are left
//! out, as aggregates leave out NULLs; a NaN or infinite outcome is an error.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Schema, SchemaRef};
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{DataFusionError, Result, exec_err, plan_err};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::execution::SessionState;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};
use datafusion::physical_plan::ExecutionPlan;
use futures::StreamExt;
use tenure_models::ab_test::{ArmStats, Outcome, compare, sample_size_per_arm};

use crate::docs::DOC_SECTION;
use crate::features::sql_type_name;
use crate::table_args::{call_schema, session_state, stream_read_only, text_arguments};

const FUNCTION: &str = "ab_test";

/// More arms than this is a unit id passed as the arm, not an experiment.
const MAX_ARMS: usize = 1000;

#[derive(Debug)]
pub struct AbTest;

impl TableFunctionImpl for AbTest {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let (query, control) = match args.exprs().len() {
            1 => {
                let [query] = text_arguments::<1>(FUNCTION, &["query"], args.exprs())?;
                (query, "control".to_string())
            }
            2 => {
                let [query, control] =
                    text_arguments::<2>(FUNCTION, &["query", "control_arm"], args.exprs())?;
                (query, control)
            }
            n => {
                return plan_err!(
                    "{FUNCTION} expects 1 or 2 arguments (query, control_arm), got {n}"
                );
            }
        };
        let schema = call_schema(
            result_schema(),
            format!("{FUNCTION}({query:?}, {control:?})"),
        );
        Ok(Arc::new(Experiment {
            query,
            control,
            schema,
        }))
    }
}

#[derive(Debug)]
struct Experiment {
    query: String,
    control: String,
    /// The result's schema, marked with this call (`table_args::call_schema`).
    schema: SchemaRef,
}

fn result_schema() -> Schema {
    let number = |name: &str| Field::new(name, DataType::Float64, true);
    Schema::new(vec![
        Field::new("arm", DataType::Utf8, false),
        Field::new("n", DataType::Int64, false),
        number("mean"),
        number("difference"),
        number("ci_low"),
        number("ci_high"),
        number("relative_lift"),
        number("p_value"),
        number("p_beat_control"),
        Field::new("test", DataType::Utf8, true),
    ])
}

impl Experiment {
    async fn arms(&self, state: &SessionState) -> Result<(Outcome, BTreeMap<String, ArmStats>)> {
        let (schema, mut batches) = stream_read_only(state, &self.query).await?;
        if schema.fields().len() < 2 {
            return plan_err!(
                "{FUNCTION}: the query must return the arm (first column) and the outcome \
                 (second column); it returns {} column(s)",
                schema.fields().len()
            );
        }
        let outcome_type = schema.field(1).data_type();
        let outcome = match outcome_type {
            DataType::Boolean => Outcome::Binary,
            t if t.is_numeric() => Outcome::Numeric,
            other => {
                return plan_err!(
                    "{FUNCTION}: the outcome (second column, {}) is {}; it must be a boolean \
                     (converted, retained) or a number (revenue, orders)",
                    schema.field(1).name(),
                    sql_type_name(other)
                );
            }
        };
        let mut arms: BTreeMap<String, ArmStats> = BTreeMap::new();
        while let Some(batch) = batches.next().await {
            let batch = batch?;
            let arm_column = cast(batch.column(0), &DataType::Utf8).map_err(|e| {
                DataFusionError::Plan(format!(
                    "{FUNCTION}: the arm (first column, {}) cannot be read as text: {e}",
                    schema.field(0).name()
                ))
            })?;
            let arm_names = arm_column.as_string::<i32>();
            let values = cast(batch.column(1), &DataType::Float64)?;
            let values = values.as_primitive::<Float64Type>();
            for row in 0..batch.num_rows() {
                if arm_names.is_null(row) || values.is_null(row) {
                    continue;
                }
                let value = values.value(row);
                if !value.is_finite() {
                    return exec_err!(
                        "{FUNCTION}: the outcome of a unit in arm '{}' is {value}; outcomes \
                         must be finite",
                        arm_names.value(row)
                    );
                }
                let name = arm_names.value(row);
                if let Some(stats) = arms.get_mut(name) {
                    stats.push(value);
                } else {
                    if arms.len() == MAX_ARMS {
                        return exec_err!(
                            "{FUNCTION}: the arm column has more than {MAX_ARMS} values; is \
                             the first column the arm?"
                        );
                    }
                    let mut stats = ArmStats::default();
                    stats.push(value);
                    arms.insert(name.to_string(), stats);
                }
            }
        }
        if !arms.contains_key(&self.control) {
            let seen: Vec<&str> = arms.keys().map(String::as_str).collect();
            return exec_err!(
                "{FUNCTION}: no units in the control arm '{}'; the arms are: {}. Name the \
                 control arm as the second argument: ab_test(query, 'arm')",
                self.control,
                if seen.is_empty() {
                    "(none: no rows with an arm and an outcome)".to_string()
                } else {
                    seen.join(", ")
                }
            );
        }
        if arms.len() < 2 {
            return exec_err!(
                "{FUNCTION}: every unit is in the control arm '{}'; there is nothing to compare",
                self.control
            );
        }
        Ok((outcome, arms))
    }

    fn report(&self, outcome: Outcome, arms: &BTreeMap<String, ArmStats>) -> Result<RecordBatch> {
        let control = &arms[&self.control];
        // Control first, then the other arms by name.
        let order = std::iter::once((&self.control, control))
            .chain(arms.iter().filter(|(name, _)| **name != self.control));
        let mut names = Vec::new();
        let mut sizes = Vec::new();
        let mut columns: [Vec<Option<f64>>; 7] = Default::default();
        let mut tests = Vec::new();
        for (name, stats) in order {
            names.push(name.as_str());
            sizes.push(stats.n as i64);
            columns[0].push(Some(stats.mean()));
            if name == &self.control {
                columns[1..].iter_mut().for_each(|c| c.push(None));
                tests.push(None);
                continue;
            }
            let c = compare(outcome, stats, control);
            let figures = [
                c.difference,
                c.ci_low,
                c.ci_high,
                c.relative_lift,
                c.p_value,
                c.p_beat_control,
            ];
            for (column, value) in columns[1..].iter_mut().zip(figures) {
                column.push(value.is_finite().then_some(value));
            }
            tests.push(Some(outcome.test_name()));
        }
        let mut arrays: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(names)),
            Arc::new(Int64Array::from(sizes)),
        ];
        arrays.extend(
            columns
                .into_iter()
                .map(|c| Arc::new(Float64Array::from(c)) as ArrayRef),
        );
        arrays.push(Arc::new(StringArray::from(tests)));
        Ok(RecordBatch::try_new(self.schema.clone(), arrays)?)
    }
}

#[async_trait]
impl TableProvider for Experiment {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (outcome, arms) = self.arms(session_state(FUNCTION, state)?).await?;
        let batch = self.report(outcome, &arms)?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.schema.clone(),
            projection.cloned(),
        )?)
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct AbSampleSize {
    signature: Signature,
}

pub fn ab_sample_size() -> ScalarUDF {
    let numbers = |n| TypeSignature::Exact(vec![DataType::Float64; n]);
    ScalarUDF::new_from_impl(AbSampleSize {
        signature: Signature::one_of(
            vec![numbers(2), numbers(3), numbers(4)],
            Volatility::Immutable,
        ),
    })
}

static AB_SAMPLE_SIZE_DOC: std::sync::LazyLock<Documentation> = std::sync::LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "The units each of two equal arms needs so that a two-sided test at `alpha` (default \
         0.05) detects a change of a conversion rate from `baseline` to `baseline + \
         minimum_effect` with probability `power` (default 0.8): statsmodels' \
         NormalIndPower on Cohen's h. Fractional; round it up. NULL if any argument is NULL.",
        "ab_sample_size(baseline, minimum_effect [, alpha [, power]])",
    )
    .with_sql_example("SELECT ceil(ab_sample_size(0.10, 0.02)) AS customers_per_arm")
    .build()
});

impl ScalarUDFImpl for AbSampleSize {
    fn name(&self) -> &str {
        "ab_sample_size"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<Vec<_>>>()?;
        let arrays: Vec<&Float64Array> = arrays.iter().map(|a| a.as_primitive()).collect();
        let value = |i: usize, row: usize, default: f64| match arrays.get(i) {
            None => Some(default),
            Some(a) if a.is_null(row) => None,
            Some(a) => Some(a.value(row)),
        };
        let mut out = Vec::with_capacity(rows);
        for row in 0..rows {
            let (Some(baseline), Some(effect), Some(alpha), Some(power)) = (
                value(0, row, 0.0),
                value(1, row, 0.0),
                value(2, row, 0.05),
                value(3, row, 0.8),
            ) else {
                out.push(None);
                continue;
            };
            match sample_size_per_arm(baseline, effect, alpha, power) {
                Ok(n) => out.push(Some(n)),
                Err(message) => return exec_err!("ab_sample_size: {message}"),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(Float64Array::from(out))))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&AB_SAMPLE_SIZE_DOC)
    }
}
