//! `rfm_summary(transactions, observation_end [, time_unit])`: one row per customer with
//! frequency, recency, t and monetary_value, as the BTYD literature and lifetimes'
//! `summary_data_from_transaction_data` define them:
//!
//! - a purchase occasion is a calendar day: a customer's purchases on one day are one
//!   occasion, their amounts summed;
//! - frequency: occasions after the first (repeat purchases);
//! - recency: time from the first to the last occasion; t: from the first occasion to
//!   observation_end; both in `time_unit` (day, or week = 7 days, or month = 30 days) and
//!   fractional, as in Fader, Hardie & Lee's CDNOW data;
//! - monetary_value: the mean amount of the repeat occasions, 0 without any;
//! - purchases after observation_end are ignored, and so are customers whose first purchase
//!   is after it.
//!
//! `transactions` is a query or a table name whose first columns are the customer, the
//! purchase date or timestamp and (optionally) the amount. The summary is planned as SQL over
//! it, so it runs as a parallel DataFusion aggregation and streams. recency and t carry their
//! time unit in the column metadata, which CREATE MODEL ... KIND bgnbd reads.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::metadata::FieldMetadata;
use datafusion::common::{DataFusionError, Result, ScalarValue, plan_err};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, col};
use tenure_models::btyd::TimeUnit;

use crate::features::sql_type_name;
use crate::table_args::plan_read_only;

const FUNCTION: &str = "rfm_summary";

/// Field metadata key recording the time unit of recency and t.
pub const TIME_UNIT_METADATA: &str = "tenure.time_unit";

#[derive(Debug)]
pub struct RfmSummary;

impl TableFunctionImpl for RfmSummary {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        if !(2..=3).contains(&exprs.len()) {
            return plan_err!(
                "{FUNCTION} expects 2 or 3 arguments (transactions, observation_end [, time_unit]), \
                 got {}",
                exprs.len()
            );
        }
        let Some(transactions) = text_literal(&exprs[0]) else {
            return plan_err!(
                "{FUNCTION}: argument 1 (transactions) must be a text literal: a query or a table \
                 name whose first columns are customer, purchase date and amount"
            );
        };
        let end_day = observation_end(&exprs[1])?;
        let unit = match exprs.get(2) {
            None => TimeUnit::Day,
            Some(expr) => match text_literal(expr) {
                Some(text) => {
                    TimeUnit::parse(&text).map_err(|e| plan_error(format!("{FUNCTION}: {e}")))?
                }
                None => {
                    return plan_err!("{FUNCTION}: argument 3 (time_unit) must be a text literal");
                }
            },
        };
        let Some(state) = args.session().as_any().downcast_ref::<SessionState>() else {
            return plan_err!("{FUNCTION} needs a DataFusion session");
        };
        let source = source_query(&transactions);
        let source_plan = plan_read_only(FUNCTION, "the transactions", state, &source)?;
        let fields = source_plan.schema().fields();
        if fields.len() < 2 {
            return plan_err!(
                "{FUNCTION}: the transactions must have at least two columns (customer, purchase \
                 date [, amount]); got {}",
                fields.len()
            );
        }
        let date_type = fields[1].data_type();
        if !is_purchase_date(date_type) {
            return plan_err!(
                "{FUNCTION}: the second column of the transactions ({}) must be the purchase \
                 date or timestamp, got {}",
                fields[1].name(),
                sql_type_name(date_type)
            );
        }
        if let Some(amount) = fields.get(2)
            && !amount.data_type().is_numeric()
        {
            return plan_err!(
                "{FUNCTION}: the third column of the transactions ({}) must be the amount, a \
                 number; got {}",
                amount.name(),
                sql_type_name(amount.data_type())
            );
        }
        let names: Vec<String> = fields.iter().map(|f| quote(f.name())).collect();
        let has_amount = fields.len() >= 3;
        let sql = summary_sql(&source, &names, has_amount, end_day, unit.days());
        let plan = plan_read_only(FUNCTION, "the transactions", state, &sql)?;
        let plan = with_time_unit(plan, unit, fields[0].name(), has_amount)?;
        Ok(Arc::new(ViewTable::new(plan, Some(sql))))
    }
}

/// Types that cast to a date: dates, timestamps and ISO text.
fn is_purchase_date(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Date32
            | DataType::Date64
            | DataType::Timestamp(..)
            | DataType::Utf8
            | DataType::Utf8View
            | DataType::LargeUtf8
            | DataType::Null
    )
}

fn plan_error(message: String) -> DataFusionError {
    DataFusionError::Plan(message)
}

fn text_literal(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)),
            _,
        ) => Some(s.clone()),
        _ => None,
    }
}

/// The day number (days since 1970-01-01) of the last day observed: a date or timestamp
/// literal, or text such as '1997-09-30', as SQL text for the summary query.
fn observation_end(expr: &Expr) -> Result<String> {
    let text = match expr {
        Expr::Literal(ScalarValue::Date32(Some(days)), _) => return Ok(days.to_string()),
        Expr::Cast(cast) => text_literal(&cast.expr),
        other => text_literal(other),
    };
    match text {
        Some(text) => Ok(format!(
            "CAST(CAST('{}' AS DATE) AS INT)",
            text.replace('\'', "''")
        )),
        None => plan_err!(
            "{FUNCTION}: argument 2 (observation_end) must be a date literal such as '1997-09-30'"
        ),
    }
}

/// A table name becomes `SELECT * FROM name`; anything else is taken as a query.
fn source_query(transactions: &str) -> String {
    let trimmed = transactions.trim().trim_end_matches(';');
    let is_name = !trimmed.is_empty()
        && trimmed
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '.' || c == '"');
    if is_name {
        format!("SELECT * FROM {trimmed}")
    } else {
        trimmed.to_string()
    }
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn summary_sql(
    source: &str,
    names: &[String],
    has_amount: bool,
    end_day: String,
    unit_days: f64,
) -> String {
    let (customer, when) = (&names[0], &names[1]);
    let amount = if has_amount {
        format!("CAST({} AS DOUBLE)", names[2])
    } else {
        "CAST(NULL AS DOUBLE)".to_string()
    };
    let monetary = if has_amount {
        ",\n  CASE WHEN count(*) > 1 \
         THEN (sum(amount) - first_value(amount ORDER BY day)) / (count(*) - 1) \
         ELSE 0.0 END AS monetary_value"
    } else {
        ""
    };
    format!(
        "WITH purchases AS (\n\
           SELECT {customer} AS customer, CAST(CAST({when} AS DATE) AS INT) AS day, {amount} AS amount\n\
           FROM ({source}) AS transactions\n\
           WHERE {customer} IS NOT NULL AND {when} IS NOT NULL\n\
         ), occasions AS (\n\
           SELECT customer, day, sum(amount) AS amount FROM purchases\n\
           WHERE day <= {end_day} GROUP BY customer, day\n\
         )\n\
         SELECT customer AS {customer},\n\
           count(*) - 1 AS frequency,\n\
           CAST(max(day) - min(day) AS DOUBLE) / {unit_days:?} AS recency,\n\
           CAST({end_day} - min(day) AS DOUBLE) / {unit_days:?} AS t{monetary}\n\
         FROM occasions GROUP BY customer"
    )
}

/// Labels recency and t with the time unit (see [`TIME_UNIT_METADATA`]).
fn with_time_unit(
    plan: LogicalPlan,
    unit: TimeUnit,
    customer: &str,
    has_amount: bool,
) -> Result<LogicalPlan> {
    let metadata = FieldMetadata::from(HashMap::from([(
        TIME_UNIT_METADATA.to_string(),
        unit.name().to_string(),
    )]));
    let mut exprs = vec![
        Expr::Column(datafusion::common::Column::from_name(customer)),
        col("frequency"),
        col("recency").alias_with_metadata("recency", Some(metadata.clone())),
        col("t").alias_with_metadata("t", Some(metadata)),
    ];
    if has_amount {
        exprs.push(col("monetary_value"));
    }
    LogicalPlanBuilder::from(plan).project(exprs)?.build()
}
