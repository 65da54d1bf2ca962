//! Physical plans kept for the next execution of a prepared statement.
//!
//! Planning is most of what a small query costs: a prepared `SELECT 1` took about 400 us of
//! the server's user CPU time while DataFusion's optimisers and physical planner ran for
//! every execution, and 55 us with its plan kept. A prepared statement without parameters
//! plans to the same physical plan each time as long as nothing it depends on changes, so
//! its plan is kept and, reset, run again. It depends on:
//! - the tables it scans: only tables tenure owns qualify, and the plan is kept only while
//!   each still reads the snapshot it was planned on (any commit installs a new one);
//! - its functions: only immutable ones (`now()`, `random()` and the model functions are
//!   folded or evaluated per execution, so a plan with them is never kept);
//! - the session: its DataFusion settings and transaction block (the caller's key);
//! - plan state: DataFusion re-runs a plan after `reset_plan_states`, except one with
//!   dynamic filters (joins, top-k sorts), so plans with those are not kept.

use std::any::Any;
use std::sync::{Arc, Mutex};

use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::source_as_provider;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::execution_plan::reset_plan_states;

use crate::storage::ManagedTable;

/// What a kept plan was made for: the session context it was planned in and that session's
/// settings generation (see `Session::generation`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanKey {
    pub session: String,
    pub generation: u64,
}

/// One prepared statement's kept plan.
#[derive(Debug, Default)]
pub struct PlanCache {
    entry: Mutex<Option<Entry>>,
}

#[derive(Debug)]
struct Entry {
    key: PlanKey,
    plan: Arc<dyn ExecutionPlan>,
    task: Arc<TaskContext>,
    /// Each scanned table (a [`ManagedTable`]) and the snapshot it was planned on.
    tables: Vec<(Arc<dyn TableProvider>, Arc<dyn TableProvider>)>,
}

/// Each table a plan scans, with the snapshot it scanned.
pub type Snapshots = Vec<(Arc<dyn TableProvider>, Arc<dyn TableProvider>)>;

/// The snapshots a logical plan reads, when a physical plan made from it may be kept:
/// `None` when it scans anything but tables tenure owns, calls a function that is not
/// immutable, or is not a plain query.
pub fn snapshots(plan: &LogicalPlan) -> Option<Snapshots> {
    let mut tables = Vec::new();
    let mut keep = true;
    let _ = plan.apply_with_subqueries(|node| {
        keep &= match node {
            LogicalPlan::Projection(_)
            | LogicalPlan::Filter(_)
            | LogicalPlan::Aggregate(_)
            | LogicalPlan::Sort(_)
            | LogicalPlan::Limit(_)
            | LogicalPlan::Union(_)
            | LogicalPlan::Distinct(_)
            | LogicalPlan::SubqueryAlias(_)
            | LogicalPlan::EmptyRelation(_)
            | LogicalPlan::Values(_) => true,
            LogicalPlan::TableScan(scan) => {
                match source_as_provider(&scan.source).ok().and_then(|table| {
                    let snapshot = stable_snapshot(&table)?;
                    Some((table, snapshot))
                }) {
                    Some(scanned) => {
                        tables.push(scanned);
                        true
                    }
                    None => false,
                }
            }
            _ => false,
        };
        if keep {
            let _ = node.apply_expressions(|expr| {
                let _ = expr.apply(|e| {
                    keep &= immutable(e);
                    Ok(if keep {
                        TreeNodeRecursion::Continue
                    } else {
                        TreeNodeRecursion::Stop
                    })
                });
                Ok(TreeNodeRecursion::Continue)
            });
        }
        Ok(if keep {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    keep.then_some(tables)
}

/// The snapshot a table tenure owns reads now (see [`ManagedTable::stable_snapshot`]).
fn stable_snapshot(table: &Arc<dyn TableProvider>) -> Option<Arc<dyn TableProvider>> {
    let table: &dyn Any = table.as_ref();
    table.downcast_ref::<ManagedTable>()?.stable_snapshot()
}

fn immutable(expr: &Expr) -> bool {
    match expr {
        Expr::ScalarFunction(f) => f.func.signature().volatility == Volatility::Immutable,
        Expr::AggregateFunction(f) => f.func.signature().volatility == Volatility::Immutable,
        Expr::WindowFunction(_) => false,
        Expr::Placeholder(_) => false,
        _ => true,
    }
}

/// Whether DataFusion can run `plan` again after resetting it: no operator in it carries
/// dynamic filters or other state that `reset_plan_states` leaves behind.
pub fn rerunnable(plan: &Arc<dyn ExecutionPlan>) -> bool {
    const RERUNNABLE: [&str; 13] = [
        "ProjectionExec",
        "FilterExec",
        "CoalesceBatchesExec",
        "CoalescePartitionsExec",
        "RepartitionExec",
        "DataSourceExec",
        "PlaceholderRowExec",
        "EmptyExec",
        "AggregateExec",
        "GlobalLimitExec",
        "LocalLimitExec",
        "UnionExec",
        "SortPreservingMergeExec",
    ];
    let mut ok = true;
    let _ = plan.apply(|node| {
        let name = node.name();
        // A sort with a limit is a top-k, which filters its input dynamically.
        ok &= RERUNNABLE.contains(&name) || (name == "SortExec" && node.fetch().is_none());
        Ok(if ok {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    ok
}

impl PlanCache {
    /// The kept plan, reset for another run, if it was made for `key` and every table it
    /// scans still reads the same snapshot.
    pub fn get(&self, key: &PlanKey) -> Option<(Arc<dyn ExecutionPlan>, Arc<TaskContext>)> {
        let entry = self.entry.lock().expect("plan cache lock poisoned");
        let entry = entry.as_ref()?;
        let current = entry.key == *key
            && entry.tables.iter().all(|(table, snapshot)| {
                stable_snapshot(table).is_some_and(|now| Arc::ptr_eq(&now, snapshot))
            });
        if !current {
            return None;
        }
        let plan = reset_plan_states(entry.plan.clone()).ok()?;
        Some((plan, entry.task.clone()))
    }

    /// Keeps `plan` (not yet run) for the next execution under `key`.
    pub fn put(
        &self,
        key: PlanKey,
        plan: Arc<dyn ExecutionPlan>,
        task: Arc<TaskContext>,
        tables: Vec<(Arc<dyn TableProvider>, Arc<dyn TableProvider>)>,
    ) {
        *self.entry.lock().expect("plan cache lock poisoned") = Some(Entry {
            key,
            plan,
            task,
            tables,
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::MemTable;
    use datafusion::physical_plan::collect;
    use datafusion::prelude::{SessionConfig, SessionContext};

    use super::*;

    async fn logical(ctx: &SessionContext, sql: &str) -> LogicalPlan {
        ctx.state().create_logical_plan(sql).await.unwrap()
    }

    #[tokio::test]
    async fn only_plans_of_owned_tables_and_immutable_functions_are_kept() {
        let ctx = SessionContext::new();
        let batch =
            RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from(vec![1, 2, 3])) as _)])
                .unwrap();
        let memory = MemTable::try_new(batch.schema(), vec![vec![batch]]).unwrap();
        ctx.register_table("memory", Arc::new(memory)).unwrap();
        for (sql, kept) in [
            ("SELECT 1", true),
            ("SELECT abs(-2) + 1 AS y", true),
            ("SELECT x FROM (VALUES (1), (2)) AS t(x) WHERE x > 1", true),
            ("SELECT now()", false),
            ("SELECT random()", false),
            ("SELECT $1 + 1", false),
            // A table tenure does not own (here in memory; pg_catalog and external files
            // alike) can change without a new snapshot.
            ("SELECT x FROM memory", false),
        ] {
            assert_eq!(
                snapshots(&logical(&ctx, sql).await).is_some(),
                kept,
                "{sql}"
            );
        }
    }

    #[tokio::test]
    async fn a_kept_plan_runs_again_after_a_reset_and_top_k_plans_are_not_kept() {
        // Two partitions, so that the plan has a RepartitionExec, whose state a run uses up.
        let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2));
        let rows: Vec<String> = (1..=1000).map(|x| format!("({x})")).collect();
        let sql = format!(
            "SELECT x % 3 AS k, sum(x) AS total FROM (VALUES {}) AS t(x) GROUP BY x % 3 ORDER BY k",
            rows.join(", ")
        );
        let state = ctx.state();
        let plan = state
            .create_physical_plan(&logical(&ctx, &sql).await)
            .await
            .unwrap();
        let shown = datafusion::physical_plan::displayable(plan.as_ref())
            .indent(true)
            .to_string();
        assert!(shown.contains("RepartitionExec"), "{shown}");
        assert!(rerunnable(&plan), "{shown}");
        let first = collect(plan.clone(), ctx.task_ctx()).await.unwrap();
        for _ in 0..3 {
            let again = collect(reset_plan_states(plan.clone()).unwrap(), ctx.task_ctx())
                .await
                .unwrap();
            assert_eq!(
                pretty_format_batches(&again).unwrap().to_string(),
                pretty_format_batches(&first).unwrap().to_string()
            );
        }

        let top = state
            .create_physical_plan(
                &logical(
                    &ctx,
                    "SELECT x FROM (VALUES (1), (5), (3), (4)) AS t(x) ORDER BY x DESC LIMIT 2",
                )
                .await,
            )
            .await
            .unwrap();
        assert!(!rerunnable(&top));
    }
}
