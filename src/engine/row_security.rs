//! Row-level security: `ALTER TABLE t ENABLE ROW LEVEL SECURITY`, `CREATE POLICY` and
//! `DROP POLICY`, and the filter they put on every scan.
//!
//! For a role that is neither the table's owner nor a superuser, each scan of a protected
//! table becomes `Filter(policies) -> scan` in the statement's plan, before anything else
//! sees it: so every query, join, aggregate, scoring function, `COPY ... TO STDOUT`, cursor
//! and table-function query reads only the allowed rows, and the optimizer pushes the filter
//! down as if the user had written it. Permissive policies are OR-ed, restrictive ones
//! AND-ed on top, and a table with no policy for the role shows it no rows (PostgreSQL's
//! default deny). `current_user` in a policy is the querying role. A view reads its tables
//! as its owner, so the owner's policies apply inside it. Such a role may not write the
//! table, nor train a model on it (a training query reads outside the plan): both fail with
//! 0A000 rather than bypass the policies.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNodeRecursion};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Expr, Filter, LogicalPlan, lit};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    AlterTable, AlterTableOperation, CreatePolicy, CreatePolicyCommand, CreatePolicyType,
    DropPolicy, Expr as SqlExpr, Owner, Value, visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use super::privilege_check::Checker;
use super::{Engine, Output};
use crate::access::{Object, PUBLIC, Policy};
use crate::catalog::QualifiedName;
use crate::error::{Error, Result};
use crate::pg::sqlstate::SqlState;
use crate::qualified_name::fold_identifier;

/// `using` with `current_user` (and its synonyms) replaced by `role` as a string literal.
fn for_role(using: &str, role: &str) -> Result<String> {
    let mut expr = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(using)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| Error::invalid(format!("policy expression {using}: {e}")))?;
    let _ = visit_expressions_mut(&mut expr, |e| {
        let is_user = match e {
            SqlExpr::Function(f) => {
                let name = f.name.to_string().to_ascii_lowercase();
                matches!(
                    name.trim_start_matches("pg_catalog."),
                    "current_user" | "session_user" | "user" | "current_role"
                )
            }
            SqlExpr::Identifier(i) => {
                i.quote_style.is_none()
                    && matches!(
                        i.value.to_ascii_lowercase().as_str(),
                        "current_user" | "session_user" | "current_role"
                    )
            }
            _ => false,
        };
        if is_user {
            *e = SqlExpr::Value(Value::SingleQuotedString(role.to_string()).into());
        }
        ControlFlow::<()>::Continue(())
    });
    Ok(expr.to_string())
}

impl Checker {
    /// `plan` with the policies of every protected table it scans applied.
    pub(crate) fn secure(&self, state: &SessionState, plan: LogicalPlan) -> Result<LogicalPlan> {
        if self.state.access.row_security.is_empty() {
            return Ok(plan);
        }
        let mut failure = None;
        let secured = plan
            .transform_down_with_subqueries(|node| {
                if let Some(owner) = self.genuine_view_owner(&node) {
                    // A view reads its tables as its owner (a superuser sees every row).
                    if owner.is_none() {
                        return Ok(Transformed::new(node, false, TreeNodeRecursion::Jump));
                    }
                    let checker = self.as_role(owner.as_deref().unwrap_or_default());
                    let LogicalPlan::SubqueryAlias(mut alias) = node else {
                        unreachable!("genuine_view_owner answers for aliases only")
                    };
                    match checker.secure(state, alias.input.as_ref().clone()) {
                        Ok(input) => alias.input = Arc::new(input),
                        Err(e) => {
                            failure = Some(e);
                            return Ok(Transformed::new(
                                LogicalPlan::SubqueryAlias(alias),
                                false,
                                TreeNodeRecursion::Stop,
                            ));
                        }
                    }
                    return Ok(Transformed::new(
                        LogicalPlan::SubqueryAlias(alias),
                        true,
                        TreeNodeRecursion::Jump,
                    ));
                }
                let LogicalPlan::TableScan(scan) = &node else {
                    return Ok(Transformed::no(node));
                };
                let Some(table) = self.scanned_table(&scan.table_name) else {
                    return Ok(Transformed::no(node));
                };
                if !self.state.access.rows_limited(&self.roles, &table) {
                    return Ok(Transformed::no(node));
                }
                match self.policy_filter(state, &table, &node) {
                    Ok(predicate) => {
                        let filtered = Filter::try_new(predicate, Arc::new(node))?;
                        Ok(Transformed::new(
                            LogicalPlan::Filter(filtered),
                            true,
                            TreeNodeRecursion::Jump,
                        ))
                    }
                    Err(e) => {
                        failure = Some(e);
                        Ok(Transformed::new(node, false, TreeNodeRecursion::Stop))
                    }
                }
            })?
            .data;
        match failure {
            Some(e) => Err(e),
            None => Ok(secured),
        }
    }

    /// The predicate of the policies of `table` that apply to this role, over `scan`'s
    /// columns: permissive ones OR-ed, restrictive ones AND-ed, false without a permissive
    /// one.
    fn policy_filter(
        &self,
        state: &SessionState,
        table: &QualifiedName,
        scan: &LogicalPlan,
    ) -> Result<Expr> {
        let mut permissive: Option<Expr> = None;
        let mut restrictive: Option<Expr> = None;
        for policy in self.state.access.policies_for(&self.roles, table) {
            let text = for_role(&policy.using, &self.role)?;
            let expr = state.create_logical_expr(&text, scan.schema())?;
            let slot = if policy.restrictive {
                &mut restrictive
            } else {
                &mut permissive
            };
            *slot = Some(match slot.take() {
                None => expr,
                Some(so_far) if policy.restrictive => so_far.and(expr),
                Some(so_far) => so_far.or(expr),
            });
        }
        let allowed = permissive.unwrap_or_else(|| lit(false));
        // NULL is not true: a row the policy cannot decide is not shown.
        let predicate = match restrictive {
            Some(all) => allowed.and(all),
            None => allowed,
        };
        Ok(predicate.is_true())
    }

    /// Whether `plan` reads rows of a table whose policies limit this role.
    pub(crate) fn reads_limited_rows(&self, plan: &LogicalPlan) -> bool {
        let mut limited = false;
        let _ = plan.apply_with_subqueries(|node| {
            if let LogicalPlan::TableScan(scan) = node
                && let Some(table) = self.scanned_table(&scan.table_name)
                && self.state.access.rows_limited(&self.roles, &table)
            {
                limited = true;
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        });
        limited
    }

    /// The error for writing `table` when its policies limit this role.
    pub(crate) fn refuse_limited_write(&self, table: &QualifiedName) -> Result<()> {
        if self.state.access.rows_limited(&self.roles, table) {
            return Err(Error::unsupported(format!(
                "table {table} has row-level security: roles its policies apply to may read \
                 it, not write it (its owner may)"
            )));
        }
        Ok(())
    }
}

impl Engine {
    /// `plan` with the row policies that apply to the role of `session` (unchanged for
    /// the owner's sessions and superusers).
    pub(super) async fn secure_plan(
        &self,
        session: &SessionContext,
        plan: LogicalPlan,
    ) -> Result<LogicalPlan> {
        match self.checker(session).await {
            Some(checker) => {
                let state = session.state();
                checker.secure(&state, plan)
            }
            None => Ok(plan),
        }
    }

    /// `ALTER TABLE t ENABLE | DISABLE ROW LEVEL SECURITY`: the owner's.
    pub(super) async fn alter_row_security(
        &self,
        session: &SessionContext,
        alter: &AlterTable,
    ) -> Result<Output> {
        let table = self.qualify_object(&alter.name)?;
        let enable = match alter.operations.as_slice() {
            [AlterTableOperation::EnableRowLevelSecurity] => true,
            [AlterTableOperation::DisableRowLevelSecurity] => false,
            _ => {
                return Err(Error::invalid(
                    "ALTER TABLE ... ENABLE or DISABLE ROW LEVEL SECURITY takes no other action",
                ));
            }
        };
        self.require_table_owner(session, &table).await?;
        self.change_access(session, |access| {
            access.row_security.retain(|t| t != &table);
            if enable {
                access.row_security.push(table.clone());
            }
        })
        .await?;
        Ok(Output::command("ALTER TABLE"))
    }

    /// `CREATE POLICY`: the table's owner's. Only policies for reading (FOR ALL or FOR
    /// SELECT, USING) exist: roles the policies apply to may not write the table.
    pub(super) async fn create_policy(
        &self,
        session: &SessionContext,
        create: CreatePolicy,
    ) -> Result<Output> {
        let table = self.qualify_object(&create.table_name)?;
        self.require_table_owner(session, &table).await?;
        if !matches!(
            create.command,
            None | Some(CreatePolicyCommand::All | CreatePolicyCommand::Select)
        ) {
            return Err(Error::unsupported(
                "policies FOR INSERT, UPDATE or DELETE are not supported: roles a table's \
                 policies apply to may only read it",
            ));
        }
        if create.with_check.is_some() {
            return Err(Error::unsupported(
                "WITH CHECK is not supported: roles a table's policies apply to may only read it",
            ));
        }
        let Some(using) = create.using else {
            return Err(Error::invalid("a policy needs USING (expression)"));
        };
        let acting =
            super::access::session_role(session).unwrap_or_else(|| self.builtin_roles[0].clone());
        let mut roles = Vec::new();
        for owner in create.to.unwrap_or_default() {
            let name = match owner {
                Owner::Ident(ident) if ident.value.eq_ignore_ascii_case(PUBLIC) => continue,
                Owner::Ident(ident) => fold_identifier(&ident),
                Owner::CurrentUser | Owner::CurrentRole | Owner::SessionUser => acting.clone(),
            };
            roles.push(name);
        }
        let policy = Policy {
            name: fold_identifier(&create.name),
            table: table.clone(),
            roles,
            using: using.to_string(),
            restrictive: matches!(create.policy_type, Some(CreatePolicyType::Restrictive)),
        };
        // The expression must plan over the table's columns (as any role would see it).
        let provider = session
            .table_provider(Self::table_reference(&table))
            .await?;
        let schema = datafusion::common::DFSchema::try_from_qualified_schema(
            table.name.as_str(),
            &provider.schema(),
        )?;
        session
            .state()
            .create_logical_expr(&for_role(&policy.using, &acting)?, &schema)
            .map_err(|e| Error::invalid(format!("policy {}: {e}", policy.name)))?;
        let mut catalog = self.lock_catalog(session).await?;
        let mut next = catalog.clone();
        for role in &policy.roles {
            if !self.builtin_roles.contains(role) && next.access.role(role).is_none() {
                return Err(Error::NotFound {
                    kind: "role",
                    name: role.clone(),
                });
            }
        }
        if next
            .access
            .policies
            .iter()
            .any(|p| p.table == table && p.name == policy.name)
        {
            return Err(Error::AlreadyExists {
                kind: "policy",
                name: format!("{} for table {table}", policy.name),
            });
        }
        next.access.policies.push(policy);
        self.replace_catalog(&mut catalog, next)?;
        Ok(Output::command("CREATE POLICY"))
    }

    /// `DROP POLICY [IF EXISTS] name ON table`: the table's owner's.
    pub(super) async fn drop_policy(
        &self,
        session: &SessionContext,
        drop: DropPolicy,
    ) -> Result<Output> {
        let table = self.qualify_object(&drop.table_name)?;
        self.require_table_owner(session, &table).await?;
        let name = fold_identifier(&drop.name);
        let mut catalog = self.lock_catalog(session).await?;
        let mut next = catalog.clone();
        let before = next.access.policies.len();
        next.access
            .policies
            .retain(|p| !(p.table == table && p.name == name));
        if next.access.policies.len() == before {
            if drop.if_exists {
                return Ok(Output::command("DROP POLICY"));
            }
            return Err(Error::NotFound {
                kind: "policy",
                name: format!("{name} for table {table}"),
            });
        }
        self.replace_catalog(&mut catalog, next)?;
        Ok(Output::command("DROP POLICY"))
    }

    /// Fails unless the role of `session` owns `table` (which must exist).
    async fn require_table_owner(
        &self,
        session: &SessionContext,
        table: &QualifiedName,
    ) -> Result<()> {
        let state = self.catalog_version();
        if state.get(table).is_none() {
            return Err(Error::NotFound {
                kind: "relation",
                name: table.to_string(),
            });
        }
        match self.checker(session).await {
            Some(checker)
                if !checker
                    .state
                    .access
                    .owns(&checker.roles, &Object::Table(table.clone())) =>
            {
                Err(Error::state(
                    SqlState::InsufficientPrivilege,
                    format!("must be owner of table {table}"),
                ))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_user_becomes_the_querying_role() {
        assert_eq!(
            for_role("region = current_user OR owner = CURRENT_USER()", "alice").unwrap(),
            "region = 'alice' OR owner = 'alice'"
        );
        assert_eq!(
            for_role("manager = \"current_user\"", "bob").unwrap(),
            "manager = \"current_user\""
        );
        assert!(for_role("region = (", "x").is_err());
    }
}
