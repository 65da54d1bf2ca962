//! Joins that yield. DataFusion makes its plans cooperative by wrapping the leaves (scans)
//! so that they spend tokio's task budget; a statement's task then returns to the runtime
//! every so many batches, which is when an abort (CancelRequest, statement_timeout, a
//! dropped connection) takes effect and other statements get the thread. A join can turn
//! one input batch into millions of output batches without polling its inputs again (a
//! cross join over two `range(1e9)`), so nothing below it spends budget and the task never
//! yields: the statement can be neither stopped nor shared with. This rule, the last of the
//! physical optimizer's, wraps every join and unnest in a `CooperativeExec`, which spends
//! budget for each batch they produce.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::joins::{
    CrossJoinExec, HashJoinExec, NestedLoopJoinExec, SortMergeJoinExec, SymmetricHashJoinExec,
};
use datafusion::physical_plan::unnest::UnnestExec;

#[derive(Debug, Default)]
pub struct YieldingJoins;

/// Operators that can produce many batches per batch they read.
fn multiplies_batches(plan: &dyn ExecutionPlan) -> bool {
    plan.is::<CrossJoinExec>()
        || plan.is::<NestedLoopJoinExec>()
        || plan.is::<HashJoinExec>()
        || plan.is::<SortMergeJoinExec>()
        || plan.is::<SymmetricHashJoinExec>()
        || plan.is::<UnnestExec>()
}

impl PhysicalOptimizerRule for YieldingJoins {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            if multiplies_batches(node.as_ref()) {
                let wrapped: Arc<dyn ExecutionPlan> = Arc::new(CooperativeExec::new(node));
                Ok(Transformed::yes(wrapped))
            } else {
                Ok(Transformed::no(node))
            }
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "yielding_joins"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
