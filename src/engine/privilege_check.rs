//! The check of one statement against one role's privileges (see [`crate::access`] for the
//! model and `engine/access.rs` for where the engine asks): [`Checker`] walks a plan or a
//! statement's syntax and fails with 42501 at the first thing the role may not do;
//! [`RoleAuthorizer`] is the same for table functions, through [`tenure_udfs::access`].

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::catalog::CatalogProviderList;
use datafusion::common::TableReference;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::view::ViewTable;
use datafusion::logical_expr::{DdlStatement, Expr, LogicalPlan, Statement, WriteOp};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    self as ast, MergeAction, ObjectName, ObjectType, Statement as SqlStatement, Visit,
};
use futures::FutureExt;
use tenure_udfs::access::Authorizer;

use crate::access::{Object, Privilege};
use crate::catalog::SavedCatalog;
use crate::catalog::{CATALOG_NAME, CatalogState, DEFAULT_SCHEMA, QualifiedName, Relation};
use crate::error::{Error, Result};
use crate::model_store::ModelStore;
use crate::pg::sqlstate::SqlState;
use crate::qualified_name::fold_identifier;

/// What one role may do, from one version of the catalog.
pub(crate) struct Checker {
    pub(super) role: String,
    pub(super) roles: BTreeSet<String>,
    pub(super) state: Arc<CatalogState>,
    /// The session's schema for unqualified names.
    pub(super) default_schema: String,
    /// Built-in superusers (view owners among them pass).
    pub(super) builtin: Arc<[String]>,
    pub(super) models: Arc<ModelStore>,
    /// The session's catalogs, where a view's plan is looked up.
    pub(super) catalogs: Arc<dyn CatalogProviderList>,
}

pub(super) fn denied(object: &Object) -> Error {
    Error::state(
        SqlState::InsufficientPrivilege,
        format!("permission denied for {object}"),
    )
}

pub(super) fn must_own(object: &Object) -> Error {
    Error::state(
        SqlState::InsufficientPrivilege,
        format!("must be owner of {object}"),
    )
}

pub(super) fn superuser_only(what: &str) -> Error {
    Error::state(
        SqlState::InsufficientPrivilege,
        format!("permission denied: only a superuser may {what}"),
    )
}

impl Checker {
    fn is_superuser(&self, role: &str) -> bool {
        self.state.access.is_superuser(&self.builtin, role)
    }

    /// For a view's plan, inlined under the view's name: `Some(Some(owner))`, or
    /// `Some(None)` for a view of a superuser (or of no role), whose plan needs no check;
    /// `None` for any other node.
    pub(super) fn genuine_view_owner(&self, node: &LogicalPlan) -> Option<Option<String>> {
        let LogicalPlan::SubqueryAlias(alias) = node else {
            return None;
        };
        let view = self.qualify(&alias.alias)?;
        if !matches!(self.relation(&view), Some(Relation::View { .. }))
            || self.view_plan(&view).as_ref() != Some(alias.input.as_ref())
        {
            return None;
        }
        Some(
            self.state
                .access
                .owner(&Object::Table(view))
                .filter(|owner| !self.is_superuser(owner))
                .map(str::to_string),
        )
    }

    /// The catalog table a scan reads, if it is one.
    pub(super) fn scanned_table(&self, reference: &TableReference) -> Option<QualifiedName> {
        let name = self.qualify(reference)?;
        self.relation(&name).is_some().then_some(name)
    }

    /// A checker for `role` over the same catalog (a view's owner).
    pub(super) fn as_role(&self, role: &str) -> Checker {
        Checker {
            role: role.to_string(),
            roles: self.state.access.effective_roles(role),
            state: self.state.clone(),
            default_schema: self.default_schema.clone(),
            builtin: self.builtin.clone(),
            models: self.models.clone(),
            catalogs: self.catalogs.clone(),
        }
    }

    /// The plan of view `name` as the session's catalog holds it. DataFusion inlines a
    /// view's plan where a query names it (under an alias of the view's name); a plan equal
    /// to the view's is the view (a WITH query that merely shares its name is not).
    fn view_plan(&self, name: &QualifiedName) -> Option<LogicalPlan> {
        let schema = self.catalogs.catalog(CATALOG_NAME)?.schema(&name.schema)?;
        // tenure's schemas answer from memory; one that would wait is taken for no view,
        // which checks its plan as the caller's (stricter, never looser).
        let provider = schema.table(&name.name).now_or_never()?.ok()??;
        let view = (provider.as_ref() as &dyn std::any::Any).downcast_ref::<ViewTable>()?;
        Some(view.logical_plan().clone())
    }

    fn qualify(&self, reference: &TableReference) -> Option<QualifiedName> {
        let resolved = reference
            .clone()
            .resolve(CATALOG_NAME, self.default_schema.as_str());
        (resolved.catalog.as_ref() == CATALOG_NAME)
            .then(|| QualifiedName::new(resolved.schema.as_ref(), resolved.table.as_ref()))
    }

    pub(super) fn qualify_object_name(&self, name: &ObjectName) -> Option<QualifiedName> {
        let parts: Vec<String> = name
            .0
            .iter()
            .filter_map(|p| p.as_ident())
            .map(fold_identifier)
            .collect();
        match parts.as_slice() {
            [table] => Some(QualifiedName::new(
                self.default_schema.as_str(),
                table.as_str(),
            )),
            [schema, table] => Some(QualifiedName::new(schema.as_str(), table.as_str())),
            [catalog, schema, table] if catalog == CATALOG_NAME => {
                Some(QualifiedName::new(schema.as_str(), table.as_str()))
            }
            _ => None,
        }
    }

    fn relation(&self, name: &QualifiedName) -> Option<&Relation> {
        self.state
            .relations
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, r)| r)
    }

    pub(crate) fn require(&self, object: &Object, privilege: Privilege) -> Result<()> {
        if self.state.access.allows(&self.roles, object, privilege) {
            Ok(())
        } else {
            Err(denied(object))
        }
    }

    pub(super) fn require_owner(&self, object: &Object) -> Result<()> {
        if self.state.access.owns(&self.roles, object) {
            Ok(())
        } else {
            Err(must_own(object))
        }
    }

    /// `privilege` on table `name` and USAGE on its schema; nothing for names that are not
    /// tables of the catalog (system tables, temporary tables, table functions: everyone
    /// may read those, as in PostgreSQL).
    fn require_table(&self, name: &QualifiedName, privilege: Privilege) -> Result<()> {
        if self.relation(name).is_none() {
            return Ok(());
        }
        if privilege != Privilege::Select {
            self.refuse_limited_write(name)?;
        }
        self.require(&Object::Schema(name.schema.clone()), Privilege::Usage)?;
        self.require(&Object::Table(name.clone()), privilege)
    }

    /// CREATE on the schema of a new relation `name`.
    fn require_create_in(&self, name: &QualifiedName) -> Result<()> {
        self.require(&Object::Schema(name.schema.clone()), Privilege::Create)
    }

    /// Ownership of relation `name`, if it exists.
    pub(super) fn require_table_owner(&self, name: &QualifiedName) -> Result<()> {
        if self.relation(name).is_none() {
            return Ok(());
        }
        self.require_owner(&Object::Table(name.clone()))
    }

    /// USAGE on the model `reference` (`name` or `name@version`) names.
    pub(crate) fn require_model(&self, reference: &str) -> Result<()> {
        self.require(&Object::Model(model_name(reference)), Privilege::Usage)
    }

    /// Everything `plan` reads, writes, creates or drops, and every model it scores with.
    pub(crate) fn check_plan(&self, plan: &LogicalPlan) -> Result<()> {
        let mut result = Ok(());
        // Tables the role reads by column privileges only: their columns are checked after.
        let mut by_column = BTreeSet::new();
        plan.apply_with_subqueries(|node| {
            match self.check_node(node, &mut by_column) {
                Err(e) => {
                    result = Err(e);
                    return Ok(TreeNodeRecursion::Stop);
                }
                // A view's plan was checked as its owner.
                Ok(true) => return Ok(TreeNodeRecursion::Jump),
                Ok(false) => {}
            }
            node.apply_expressions(|e| {
                e.apply(|e| {
                    result = self.check_expression(e);
                    Ok(if result.is_err() {
                        TreeNodeRecursion::Stop
                    } else {
                        TreeNodeRecursion::Continue
                    })
                })
            })
        })?;
        result?;
        if by_column.is_empty() {
            return Ok(());
        }
        self.check_columns(plan, &by_column)
    }

    /// SELECT on a scanned table, or on some of its columns (then `by_column` gets it).
    fn require_select(
        &self,
        name: &QualifiedName,
        by_column: &mut BTreeSet<QualifiedName>,
    ) -> Result<()> {
        match self.require_table(name, Privilege::Select) {
            Err(e)
                if self
                    .state
                    .access
                    .has_column_grants(&self.roles, name, Privilege::Select) =>
            {
                // The schema's USAGE is needed all the same.
                if !self.state.access.allows(
                    &self.roles,
                    &Object::Schema(name.schema.clone()),
                    Privilege::Usage,
                ) {
                    return Err(e);
                }
                by_column.insert(name.clone());
                Ok(())
            }
            other => other,
        }
    }

    /// Fails unless every column `plan` reads of `tables` is one the role may SELECT. The
    /// columns read are those left in each scan once projections are pushed down (as the
    /// optimizer would), with the columns of filters pushed into the scan; a scan that
    /// cannot be pruned reads all its columns.
    fn check_columns(&self, plan: &LogicalPlan, tables: &BTreeSet<QualifiedName>) -> Result<()> {
        use datafusion::optimizer::optimize_projections::OptimizeProjections;
        use datafusion::optimizer::{OptimizerContext, OptimizerRule};
        let pruned = OptimizeProjections::new()
            .rewrite(plan.clone(), &OptimizerContext::new())
            .map_or_else(|_| plan.clone(), |t| t.data);
        let mut result = Ok(());
        pruned.apply_with_subqueries(|node| {
            let LogicalPlan::TableScan(scan) = node else {
                return Ok(TreeNodeRecursion::Continue);
            };
            let Some(name) = self
                .qualify(&scan.table_name)
                .filter(|n| tables.contains(n))
            else {
                return Ok(TreeNodeRecursion::Continue);
            };
            let schema = scan.source.schema();
            let mut read: Vec<String> = match &scan.projection {
                Some(indices) => indices
                    .iter()
                    .map(|&i| schema.field(i).name().clone())
                    .collect(),
                None => schema.fields().iter().map(|f| f.name().clone()).collect(),
            };
            for filter in &scan.filters {
                read.extend(filter.column_refs().into_iter().map(|c| c.name.clone()));
            }
            if let Some(column) = read.iter().find(|c| {
                !self
                    .state
                    .access
                    .allows_column(&self.roles, &name, c, Privilege::Select)
            }) {
                result = Err(Error::state(
                    SqlState::InsufficientPrivilege,
                    format!("permission denied for column {column} of table {name}"),
                ));
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        result
    }

    /// Checks one node; whether it was a view's plan, checked whole as the view's owner.
    fn check_node(
        &self,
        node: &LogicalPlan,
        by_column: &mut BTreeSet<QualifiedName>,
    ) -> Result<bool> {
        match node {
            LogicalPlan::SubqueryAlias(alias) => {
                let Some(owner) = self.genuine_view_owner(node) else {
                    return Ok(false);
                };
                if let Some(view) = self.qualify(&alias.alias) {
                    self.require_table(&view, Privilege::Select)?;
                }
                // A view reads its tables with its owner's privileges.
                if let Some(owner) = owner {
                    self.as_role(&owner).check_plan(&alias.input)?;
                }
                Ok(true)
            }
            LogicalPlan::TableScan(scan) => {
                if let Some(name) = self.qualify(&scan.table_name) {
                    self.require_select(&name, by_column)?;
                }
                Ok(false)
            }
            LogicalPlan::Dml(dml) => {
                let privilege = match dml.op {
                    WriteOp::Insert(_) => Privilege::Insert,
                    WriteOp::Update => Privilege::Update,
                    WriteOp::Delete => Privilege::Delete,
                    WriteOp::Truncate => Privilege::Truncate,
                    // CREATE TABLE AS: checked as the DDL that makes the table.
                    _ => return Ok(false),
                };
                if let Some(name) = self.qualify(&dml.table_name) {
                    self.require_table(&name, privilege)?;
                }
                Ok(false)
            }
            LogicalPlan::Ddl(ddl) => self.check_ddl(ddl).map(|()| false),
            // Names resolve in the default schema the engine uses, and the runtime holds the
            // session's memory pool (its memory_limit) and where it spills: a role may
            // change neither.
            LogicalPlan::Statement(Statement::SetVariable(set))
                if reserved_variable(&set.variable) =>
            {
                Err(superuser_only(&format!("change {}", set.variable)))
            }
            LogicalPlan::Statement(Statement::ResetVariable(reset))
                if reserved_variable(&reset.variable) =>
            {
                Err(superuser_only(&format!("change {}", reset.variable)))
            }
            // SQL EXECUTE runs a plan DataFusion kept without checking it again; roles use
            // the protocol's prepared statements, which are planned again after any GRANT.
            LogicalPlan::Statement(Statement::Execute(_)) => Err(superuser_only(
                "EXECUTE a statement prepared with SQL PREPARE",
            )),
            LogicalPlan::Copy(_) => Err(superuser_only("COPY to or from a file")),
            _ => Ok(false),
        }
    }

    fn check_ddl(&self, ddl: &DdlStatement) -> Result<()> {
        // Making a relation needs CREATE on its schema; replacing one, its ownership too.
        let created = |reference: &TableReference| match self.qualify(reference) {
            Some(name) => {
                self.require_create_in(&name)?;
                self.require_table_owner(&name)
            }
            None => Ok(()),
        };
        let dropped = |reference: &TableReference| match self.qualify(reference) {
            Some(name) => self.require_table_owner(&name),
            None => Ok(()),
        };
        match ddl {
            DdlStatement::CreateMemoryTable(create) => created(&create.name),
            DdlStatement::CreateView(create) => created(&create.name),
            DdlStatement::DropTable(drop) => dropped(&drop.name),
            DdlStatement::DropView(drop) => dropped(&drop.name),
            DdlStatement::CreateCatalogSchema(_) => Err(superuser_only("create a schema")),
            DdlStatement::DropCatalogSchema(drop) => {
                let schema = drop.name.schema_name().to_string();
                self.require_owner(&Object::Schema(schema))
            }
            _ => Err(superuser_only(&format!(
                "run {}",
                LogicalPlan::Ddl(ddl.clone()).display()
            ))),
        }
    }

    fn check_expression(&self, expr: &Expr) -> Result<()> {
        let Expr::ScalarFunction(call) = expr else {
            return Ok(());
        };
        if !tenure_udfs::MODEL_FUNCTIONS.contains(&call.func.name()) {
            return Ok(());
        }
        // The leading text literals that name existing models (the BTYD functions take
        // several); a literal after them is data.
        for arg in &call.args {
            let Expr::Literal(value, _) = arg else { break };
            let Some(Some(reference)) = value.try_as_str() else {
                break;
            };
            if !self.models.contains(&model_name(reference)) {
                break;
            }
            self.require_model(reference)?;
        }
        Ok(())
    }

    /// USAGE on the models that calls of the scoring functions in `statement` (carried out
    /// from its syntax: UPDATE ... SET s = churn_score('m', ...)) name.
    fn require_models_in(&self, statement: &SqlStatement) -> Result<()> {
        use datafusion::sql::sqlparser::ast::{
            Expr as SqlExpr, FunctionArg, FunctionArgExpr, FunctionArguments, Value,
        };
        let mut result = Ok(());
        let _ = ast::visit_expressions(statement, |expr| {
            if let SqlExpr::Function(function) = expr
                && tenure_udfs::MODEL_FUNCTIONS
                    .contains(&function.name.to_string().to_lowercase().as_str())
                && let FunctionArguments::List(list) = &function.args
            {
                for arg in &list.args {
                    let FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Value(value))) = arg
                    else {
                        break;
                    };
                    let Value::SingleQuotedString(reference) = &value.value else {
                        break;
                    };
                    if !self.models.contains(&model_name(reference)) {
                        break;
                    }
                    if let Err(e) = self.require_model(reference) {
                        result = Err(e);
                        return std::ops::ControlFlow::Break(());
                    }
                }
            }
            std::ops::ControlFlow::Continue(())
        });
        result
    }

    /// A statement carried out from its syntax.
    pub(super) fn check_syntax(&self, statement: &DFStatement) -> Result<()> {
        let inner = match statement {
            DFStatement::CreateExternalTable(_) => {
                return Err(superuser_only(
                    "create an external table (it reads server files or object storage)",
                ));
            }
            DFStatement::CopyTo(_) => return Err(superuser_only("COPY to a file")),
            DFStatement::Statement(inner) => inner.as_ref(),
            _ => return Ok(()),
        };
        match inner {
            SqlStatement::Update(update) => {
                let target = self.table_factor_name(&update.table.relation);
                self.require_write(target.as_ref(), &[Privilege::Update], true)?;
                self.require_reads(inner, target.as_ref())
            }
            SqlStatement::Delete(delete) => {
                let targets: Vec<&ObjectName> = if delete.tables.is_empty() {
                    match &delete.from {
                        ast::FromTable::WithFromKeyword(from)
                        | ast::FromTable::WithoutKeyword(from) => from
                            .iter()
                            .filter_map(|t| match &t.relation {
                                ast::TableFactor::Table { name, .. } => Some(name),
                                _ => None,
                            })
                            .collect(),
                    }
                } else {
                    delete.tables.iter().collect()
                };
                let target = targets.first().and_then(|n| self.qualify_object_name(n));
                let reads = delete.selection.is_some() || delete.returning.is_some();
                self.require_write(target.as_ref(), &[Privilege::Delete], reads)?;
                self.require_reads(inner, target.as_ref())
            }
            SqlStatement::Merge(merge) => {
                let target = self.table_factor_name(&merge.table);
                let mut privileges = Vec::new();
                for clause in &merge.clauses {
                    privileges.push(match &clause.action {
                        MergeAction::Insert(_) => Privilege::Insert,
                        MergeAction::Update { .. } => Privilege::Update,
                        MergeAction::Delete { .. } => Privilege::Delete,
                    });
                }
                self.require_write(target.as_ref(), &privileges, true)?;
                self.require_reads(inner, target.as_ref())
            }
            SqlStatement::Truncate(truncate) => {
                for table in &truncate.table_names {
                    if let Some(name) = self.qualify_object_name(&table.name) {
                        self.require_table(&name, Privilege::Truncate)?;
                    }
                }
                Ok(())
            }
            SqlStatement::AlterTable(alter) => match self.qualify_object_name(&alter.name) {
                Some(name) => self.require_table_owner(&name),
                None => Ok(()),
            },
            SqlStatement::CreateIndex(create) => {
                match self.qualify_object_name(&create.table_name) {
                    Some(name) => self.require_table_owner(&name),
                    None => Ok(()),
                }
            }
            SqlStatement::Comment {
                object_name,
                object_type,
                ..
            } => {
                let table = match object_type {
                    ast::CommentObject::Column => {
                        let mut parts = object_name.clone();
                        parts.0.pop();
                        parts
                    }
                    _ => object_name.clone(),
                };
                match self.qualify_object_name(&table) {
                    Some(name) => self.require_table_owner(&name),
                    None => Ok(()),
                }
            }
            SqlStatement::Drop {
                object_type: ObjectType::Index,
                ..
            } => Err(superuser_only("drop an index")),
            SqlStatement::CreateTable(create) if create.temporary => {
                self.require_reads(inner, None)
            }
            SqlStatement::CreateTable(create) => {
                if let Some(name) = self.qualify_object_name(&create.name) {
                    self.require_create_in(&name)?;
                    // Replacing a table is its owner's.
                    self.require_table_owner(&name)?;
                }
                self.require_reads(inner, self.qualify_object_name(&create.name).as_ref())
            }
            _ => Ok(()),
        }
    }

    fn table_factor_name(&self, factor: &ast::TableFactor) -> Option<QualifiedName> {
        match factor {
            ast::TableFactor::Table { name, .. } => self.qualify_object_name(name),
            _ => None,
        }
    }

    /// The write privileges on `target`, and SELECT when the statement reads its rows.
    fn require_write(
        &self,
        target: Option<&QualifiedName>,
        privileges: &[Privilege],
        reads: bool,
    ) -> Result<()> {
        let Some(target) = target else {
            return Ok(());
        };
        for &privilege in privileges {
            self.require_table(target, privilege)?;
        }
        if reads {
            self.require_table(target, Privilege::Select)?;
        }
        Ok(())
    }

    /// SELECT on every relation `statement` names besides `target` (a WITH query's name
    /// that is also a table's asks for the table's, erring on the safe side).
    fn require_reads(
        &self,
        statement: &SqlStatement,
        target: Option<&QualifiedName>,
    ) -> Result<()> {
        let mut result = Ok(());
        let _ = statement.visit(&mut RelationVisitor(|name: &ObjectName| {
            if let Some(name) = self.qualify_object_name(name)
                && result.is_ok()
            {
                if Some(&name) != target {
                    result = self.require_table(&name, Privilege::Select);
                }
                // These statements read outside the plan row policies filter.
                if result.is_ok() && self.state.access.rows_limited(&self.roles, &name) {
                    result = Err(Error::unsupported(format!(
                        "table {name} has row-level security: roles its policies apply to may \
                         read it only in queries (SELECT, COPY ... TO STDOUT, cursors)"
                    )));
                }
            }
        }));
        result?;
        self.require_models_in(statement)
    }
}

/// The model a reference (`name` or `name@version`) names, as the model store spells it.
/// DataFusion settings only a superuser may change.
fn reserved_variable(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.starts_with("datafusion.catalog") || name.starts_with("datafusion.runtime")
}

fn model_name(reference: &str) -> String {
    reference
        .split('@')
        .next()
        .unwrap_or(reference)
        .trim()
        .to_lowercase()
}

/// Calls a function on every relation a statement names.
struct RelationVisitor<F: FnMut(&ObjectName)>(F);

impl<F: FnMut(&ObjectName)> ast::Visitor for RelationVisitor<F> {
    type Break = ();

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> std::ops::ControlFlow<()> {
        (self.0)(relation);
        std::ops::ControlFlow::Continue(())
    }
}

/// The [`Authorizer`] table functions of a client session ask.
#[derive(Debug)]
pub(super) struct RoleAuthorizer {
    pub(super) role: String,
    pub(super) saved: SavedCatalog,
    pub(super) builtin: Arc<[String]>,
    pub(super) models: Arc<ModelStore>,
}

impl RoleAuthorizer {
    fn checker(
        &self,
        default_schema: &str,
        catalogs: Arc<dyn CatalogProviderList>,
    ) -> Option<Checker> {
        let state = self.saved.get();
        if state.access.is_superuser(&self.builtin, &self.role) {
            return None;
        }
        Some(Checker {
            role: self.role.clone(),
            roles: state.access.effective_roles(&self.role),
            state,
            default_schema: default_schema.to_string(),
            builtin: self.builtin.clone(),
            models: self.models.clone(),
            catalogs,
        })
    }
}

fn external(e: Error) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::External(Box::new(e))
}

impl Authorizer for RoleAuthorizer {
    fn check_plan(
        &self,
        state: &datafusion::execution::SessionState,
        plan: LogicalPlan,
    ) -> datafusion::common::Result<LogicalPlan> {
        let schema = state.config().options().catalog.default_schema.clone();
        match self.checker(&schema, state.catalog_list().clone()) {
            Some(checker) => {
                checker.check_plan(&plan).map_err(external)?;
                checker.secure(state, plan).map_err(external)
            }
            None => Ok(plan),
        }
    }

    fn check_model(&self, reference: &str) -> datafusion::common::Result<()> {
        // No plan, so no views to look up.
        let none = Arc::new(datafusion::catalog::MemoryCatalogProviderList::new());
        match self.checker(DEFAULT_SCHEMA, none) {
            Some(checker) => checker.require_model(reference).map_err(external),
            None => Ok(()),
        }
    }
}
