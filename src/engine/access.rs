//! Privilege checks and the access-control statements (see [`crate::access`] for the model).
//!
//! A client session carries its role as an [`Identity`]; the engine's own session and the
//! local shell have none and may do everything. Every statement is checked before it runs:
//! - statements DataFusion plans, on their plan in [`Engine::statement_to_plan`] (so a
//!   prepared statement fails at Parse, and a kept plan is made again after any GRANT or
//!   REVOKE, which change the catalog): SELECT on every table and view scanned (a view's
//!   own tables with its owner's privileges, as PostgreSQL's views), INSERT on an INSERT's
//!   table, USAGE on every model a scoring function names, CREATE on the schema of a new
//!   table or view, ownership to drop one;
//! - statements carried out from their syntax, from it ([`Engine::authorize_syntax`]);
//! - models, table upkeep and the access statements themselves in [`Engine::execute_in`];
//! - table functions ask through [`tenure_udfs::access`].
//!
//! Superusers pass every check without one being computed, so the check costs a queried
//! `SELECT 1` of a superuser one catalog snapshot.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::catalog::CatalogProviderList;
use datafusion::common::TableReference;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::view::ViewTable;
use datafusion::logical_expr::{DdlStatement, Expr, LogicalPlan, WriteOp};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    self as ast, MergeAction, ObjectName, ObjectType, Statement as SqlStatement, Visit,
};
use futures::FutureExt;
use tenure_udfs::access::{Authorizer, SessionAccess};

use super::{Engine, Output};
use crate::access::statement::{AccessStatement, Objects, RoleOptions};
use crate::access::{AccessState, Grant, Membership, Object, PUBLIC, Privilege, Role, scram};
use crate::catalog::SavedCatalog;
use crate::catalog::{CATALOG_NAME, CatalogState, DEFAULT_SCHEMA, QualifiedName, Relation};
use crate::error::{Error, Result};
use crate::model_store::ModelStore;
use crate::pg::sqlstate::SqlState;

/// The role a client session runs as (a session config extension).
#[derive(Debug, Clone)]
pub struct Identity {
    pub role: String,
}

/// The role of `session`; `None` for the engine's own session and the local shell, which
/// run as the data directory's owner.
pub fn session_role(session: &SessionContext) -> Option<String> {
    session
        .state_ref()
        .read()
        .config()
        .get_extension::<Identity>()
        .map(|identity| identity.role.clone())
}

/// What one role may do, from one version of the catalog.
pub(crate) struct Checker {
    role: String,
    roles: BTreeSet<String>,
    state: Arc<CatalogState>,
    /// The session's schema for unqualified names.
    default_schema: String,
    /// Built-in superusers (view owners among them pass).
    builtin: Arc<[String]>,
    models: Arc<ModelStore>,
    /// The session's catalogs, where a view's plan is looked up.
    catalogs: Arc<dyn CatalogProviderList>,
}

fn denied(object: &Object) -> Error {
    Error::state(
        SqlState::InsufficientPrivilege,
        format!("permission denied for {object}"),
    )
}

fn must_own(object: &Object) -> Error {
    Error::state(
        SqlState::InsufficientPrivilege,
        format!("must be owner of {object}"),
    )
}

fn superuser_only(what: &str) -> Error {
    Error::state(
        SqlState::InsufficientPrivilege,
        format!("permission denied: only a superuser may {what}"),
    )
}

impl Checker {
    fn is_superuser(&self, role: &str) -> bool {
        is_superuser(&self.builtin, &self.state.access, role)
    }

    /// A checker for `role` over the same catalog (a view's owner).
    fn as_role(&self, role: &str) -> Checker {
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

    fn qualify_object_name(&self, name: &ObjectName) -> Option<QualifiedName> {
        let parts: Vec<String> = name
            .0
            .iter()
            .filter_map(|p| p.as_ident())
            .map(|i| {
                if i.quote_style.is_some() {
                    i.value.clone()
                } else {
                    i.value.to_lowercase()
                }
            })
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

    fn require_owner(&self, object: &Object) -> Result<()> {
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
        self.require(&Object::Schema(name.schema.clone()), Privilege::Usage)?;
        self.require(&Object::Table(name.clone()), privilege)
    }

    /// CREATE on the schema of a new relation `name`.
    fn require_create_in(&self, name: &QualifiedName) -> Result<()> {
        self.require(&Object::Schema(name.schema.clone()), Privilege::Create)
    }

    /// Ownership of relation `name`, if it exists.
    fn require_table_owner(&self, name: &QualifiedName) -> Result<()> {
        if self.relation(name).is_none() {
            return Ok(());
        }
        self.require_owner(&Object::Table(name.clone()))
    }

    /// USAGE on the model `reference` (`name` or `name@version`) names.
    pub(crate) fn require_model(&self, reference: &str) -> Result<()> {
        let name = reference.split('@').next().unwrap_or(reference).trim();
        self.require(&Object::Model(name.to_string()), Privilege::Usage)
    }

    /// Everything `plan` reads, writes, creates or drops, and every model it scores with.
    pub(crate) fn check_plan(&self, plan: &LogicalPlan) -> Result<()> {
        let mut result = Ok(());
        plan.apply_with_subqueries(|node| {
            match self.check_node(node) {
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
        result
    }

    /// Checks one node; whether it was a view's plan, checked whole as the view's owner.
    fn check_node(&self, node: &LogicalPlan) -> Result<bool> {
        match node {
            LogicalPlan::SubqueryAlias(alias) => {
                let Some(view) = self.qualify(&alias.alias) else {
                    return Ok(false);
                };
                if !matches!(self.relation(&view), Some(Relation::View { .. }))
                    || self.view_plan(&view).as_ref() != Some(alias.input.as_ref())
                {
                    return Ok(false);
                }
                self.require_table(&view, Privilege::Select)?;
                // A view reads its tables with its owner's privileges.
                match self.state.access.owner(&Object::Table(view)) {
                    Some(owner) if !self.is_superuser(owner) => {
                        self.as_role(owner).check_plan(&alias.input)?;
                    }
                    _ => {}
                }
                Ok(true)
            }
            LogicalPlan::TableScan(scan) => {
                if let Some(name) = self.qualify(&scan.table_name) {
                    self.require_table(&name, Privilege::Select)?;
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
            let name = reference.split('@').next().unwrap_or(reference).trim();
            if !self.models.contains(name) {
                break;
            }
            self.require_model(reference)?;
        }
        Ok(())
    }

    /// A statement carried out from its syntax.
    fn check_syntax(&self, statement: &DFStatement) -> Result<()> {
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
                && Some(&name) != target
                && result.is_ok()
            {
                result = self.require_table(&name, Privilege::Select);
            }
        }));
        result
    }
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

/// Whether `role` is a superuser: built in, or made one with SUPERUSER.
fn is_superuser(builtin: &[String], access: &AccessState, role: &str) -> bool {
    builtin.iter().any(|b| b == role) || access.role(role).is_some_and(|r| r.superuser)
}

/// The [`Authorizer`] table functions of a client session ask.
#[derive(Debug)]
struct RoleAuthorizer {
    role: String,
    saved: SavedCatalog,
    builtin: Arc<[String]>,
    models: Arc<ModelStore>,
}

impl RoleAuthorizer {
    fn checker(
        &self,
        default_schema: &str,
        catalogs: Arc<dyn CatalogProviderList>,
    ) -> Option<Checker> {
        let state = self.saved.get();
        if is_superuser(&self.builtin, &state.access, &self.role) {
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
        plan: &LogicalPlan,
    ) -> datafusion::common::Result<()> {
        let schema = state.config().options().catalog.default_schema.clone();
        match self.checker(&schema, state.catalog_list().clone()) {
            Some(checker) => checker.check_plan(plan).map_err(external),
            None => Ok(()),
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

impl Engine {
    /// The built-in superusers: tenure.toml's users, or without any the trusted local user.
    pub fn builtin_superusers(&self) -> &[String] {
        &self.builtin_roles
    }

    /// The session config extensions of a client session that runs as `role`.
    pub(super) fn identity_extensions(&self, role: &str) -> (Arc<Identity>, Arc<SessionAccess>) {
        let authorizer = RoleAuthorizer {
            role: role.to_string(),
            saved: self.store.saved(),
            builtin: self.builtin_roles.clone(),
            models: self.models.clone(),
        };
        (
            Arc::new(Identity {
                role: role.to_string(),
            }),
            Arc::new(SessionAccess(Arc::new(authorizer))),
        )
    }

    /// The catalog statements of `session` see: its block's, or the saved one.
    async fn visible_catalog(&self, session: &SessionContext) -> Arc<CatalogState> {
        match super::transaction::transaction_of(session) {
            Some(transaction) => Arc::new(transaction.block.lock().await.state.clone()),
            None => self.store.saved().get(),
        }
    }

    /// What the role of `session` may do; `None` when it may do everything (the owner's
    /// sessions and superusers).
    pub(crate) async fn checker(&self, session: &SessionContext) -> Option<Checker> {
        let role = session_role(session)?;
        let saved = self.store.saved().get();
        if is_superuser(&self.builtin_roles, &saved.access, &role) {
            return None;
        }
        let state = self.visible_catalog(session).await;
        if is_superuser(&self.builtin_roles, &state.access, &role) {
            return None;
        }
        let (default_schema, catalogs) = {
            let session = session.state_ref();
            let session = session.read();
            (
                session.config().options().catalog.default_schema.clone(),
                session.catalog_list().clone(),
            )
        };
        Some(Checker {
            roles: state.access.effective_roles(&role),
            role,
            state,
            default_schema,
            builtin: self.builtin_roles.clone(),
            models: self.models.clone(),
            catalogs,
        })
    }

    /// Fails unless the role of `session` may run `plan`.
    pub async fn authorize_plan(&self, session: &SessionContext, plan: &LogicalPlan) -> Result<()> {
        match self.checker(session).await {
            Some(checker) => checker.check_plan(plan),
            None => Ok(()),
        }
    }

    /// Fails unless the role of `session` may run `statement`, carried out from its syntax.
    pub(super) async fn authorize_syntax(
        &self,
        session: &SessionContext,
        statement: &DFStatement,
    ) -> Result<()> {
        match self.checker(session).await {
            Some(checker) => checker.check_syntax(statement),
            None => Ok(()),
        }
    }

    /// CREATE MODEL needs CREATEMODEL (and ownership to replace a model), SELECT on what
    /// its query reads and USAGE on a text encoder it uses; DROP MODEL needs ownership.
    pub(super) async fn authorize_model(
        &self,
        session: &SessionContext,
        name: &str,
        creates: bool,
        query: Option<&str>,
        encoder: Option<&str>,
    ) -> Result<()> {
        let Some(checker) = self.checker(session).await else {
            return Ok(());
        };
        let object = Object::Model(name.to_string());
        let exists = self.models.contains(name);
        if creates {
            let may_create = checker
                .state
                .access
                .role(&checker.role)
                .is_some_and(|r| r.create_model);
            if !may_create {
                return Err(Error::state(
                    SqlState::InsufficientPrivilege,
                    format!(
                        "permission denied to create model {name}: role {} lacks CREATEMODEL",
                        checker.role
                    ),
                ));
            }
            if let Some(encoder) = encoder {
                checker.require_model(encoder)?;
            }
            if let Some(query) = query {
                for statement in crate::sql::parse(query)? {
                    if let crate::sql::Statement::DataFusion(statement) = statement {
                        let plan = self.statement_to_plan(session, statement).await?;
                        checker.check_plan(&plan)?;
                    }
                }
            }
        }
        if exists && (!creates || query.is_some()) {
            checker.require_owner(&object)?;
        }
        Ok(())
    }

    /// VACUUM and OPTIMIZE: the owner's (all tables: a superuser's).
    pub(super) async fn authorize_maintenance(
        &self,
        session: &SessionContext,
        tables: &[ObjectName],
    ) -> Result<()> {
        let Some(checker) = self.checker(session).await else {
            return Ok(());
        };
        if tables.is_empty() {
            return Err(superuser_only("VACUUM or OPTIMIZE every table"));
        }
        for table in tables {
            if let Some(name) = checker.qualify_object_name(table) {
                checker.require_table_owner(&name)?;
            }
        }
        Ok(())
    }

    /// Records that the role of `session` owns `object`, just made (with no grants left
    /// from an earlier object of its name); nothing for the owner's own sessions.
    pub(super) async fn record_owner(
        &self,
        session: &SessionContext,
        object: Object,
    ) -> Result<()> {
        let Some(role) = session_role(session) else {
            return Ok(());
        };
        self.change_access(session, |access| access.set_owner(object, &role))
            .await
    }

    /// Before a statement that may make `object`: the object, if it does not exist yet (so
    /// that [`Engine::record_created`] can tell it was made, not found by IF NOT EXISTS).
    pub(super) async fn to_be_created(
        &self,
        session: &SessionContext,
        object: Object,
    ) -> Option<Object> {
        let state = self.visible_catalog(session).await;
        let exists = match &object {
            Object::Table(name) => state.relations.iter().any(|(n, _)| n == name),
            Object::Schema(name) => name == DEFAULT_SCHEMA || state.schemas.contains(name),
            Object::Model(name) => self.models.contains(name),
        };
        (!exists).then_some(object)
    }

    /// After a statement that may have made `object` (from [`Engine::to_be_created`]):
    /// the role of `session` owns it, with no grants left from an earlier object of its
    /// name. The owner's own sessions record no owner.
    pub(super) async fn record_created(
        &self,
        session: &SessionContext,
        object: Option<Object>,
    ) -> Result<()> {
        let Some(object) = object else {
            return Ok(());
        };
        match session_role(session) {
            Some(_) => self.record_owner(session, object).await,
            None => self.forget_object(session, object, None).await,
        }
    }

    /// The relation `reference` names, qualified as the engine stores it.
    pub(super) fn relation_object(&self, reference: &TableReference) -> Option<Object> {
        self.qualify(reference).ok().map(Object::Table)
    }

    /// Records the role of `session` as the owner of model `name` unless it has one (a new
    /// version of a model keeps its owner and grants).
    pub(super) async fn record_model_owner(
        &self,
        session: &SessionContext,
        name: &str,
    ) -> Result<()> {
        let object = Object::Model(name.to_string());
        if self.store.saved().get().access.owner(&object).is_some() {
            return Ok(());
        }
        self.record_owner(session, object).await
    }

    /// Forgets the owner and grants of a dropped or renamed object.
    pub(super) async fn forget_object(
        &self,
        session: &SessionContext,
        object: Object,
        renamed_to: Option<Object>,
    ) -> Result<()> {
        self.change_access(session, |access| match (&object, &renamed_to) {
            (_, Some(to)) => access.rename(&object, to),
            (Object::Schema(schema), None) => {
                access.forget(&object);
                let inside: Vec<Object> = access
                    .owners
                    .iter()
                    .map(|(o, _)| o)
                    .chain(access.grants.iter().map(|g| &g.object))
                    .filter(|o| matches!(o, Object::Table(t) if &t.schema == schema))
                    .cloned()
                    .collect();
                for table in inside {
                    access.forget(&table);
                }
            }
            (_, None) => access.forget(&object),
        })
        .await
    }

    async fn change_access(
        &self,
        session: &SessionContext,
        change: impl FnOnce(&mut AccessState),
    ) -> Result<()> {
        let mut catalog = self.lock_catalog(session).await?;
        let mut next = catalog.clone();
        change(&mut next.access);
        if next.access != catalog.access {
            self.replace_catalog(&mut catalog, next)?;
        }
        Ok(())
    }

    /// CREATE / ALTER / DROP ROLE, GRANT and REVOKE.
    pub(super) async fn execute_access(
        &self,
        session: &SessionContext,
        statement: AccessStatement,
    ) -> Result<Output> {
        let tag = statement.tag();
        let role = session_role(session);
        let mut catalog = self.lock_catalog(session).await?;
        let mut next = catalog.clone();
        let superuser = role
            .as_deref()
            .is_none_or(|r| is_superuser(&self.builtin_roles, &next.access, r));
        let acting = role.unwrap_or_else(|| self.builtin_roles[0].clone());
        match statement {
            AccessStatement::CreateRole {
                name,
                if_not_exists,
                options,
            } => {
                require_superuser(superuser, "create roles")?;
                if self.role_exists(&next.access, &name) {
                    if if_not_exists {
                        return Ok(Output::command(tag));
                    }
                    return Err(Error::AlreadyExists { kind: "role", name });
                }
                check_role_name(&name)?;
                let mut role = Role::new(&name);
                role.oid = next.access.allocate_role_oid();
                apply_options(&mut role, &options)?;
                for group in &options.in_roles {
                    self.require_role(&next.access, group)?;
                    next.access.members.push(Membership {
                        role: group.clone(),
                        member: name.clone(),
                    });
                }
                next.access.roles.push(role);
            }
            AccessStatement::AlterRole { name, options } => {
                if self.builtin_roles.contains(&name) {
                    return Err(Error::state(
                        SqlState::InsufficientPrivilege,
                        format!("role {name} is configured in tenure.toml; change it there"),
                    ));
                }
                // A role may change its own password, as in PostgreSQL.
                let own_password = options.password.is_some()
                    && options
                        == (RoleOptions {
                            password: options.password.clone(),
                            ..RoleOptions::default()
                        })
                    && name == acting;
                require_superuser(superuser || own_password, "alter roles")?;
                if !options.in_roles.is_empty() {
                    return Err(Error::unsupported(
                        "ALTER ROLE ... IN ROLE; use GRANT role TO member",
                    ));
                }
                let role = next.access.role_mut(&name).ok_or_else(|| Error::NotFound {
                    kind: "role",
                    name: name.clone(),
                })?;
                apply_options(role, &options)?;
            }
            AccessStatement::DropRole { names, if_exists } => {
                require_superuser(superuser, "drop roles")?;
                for name in names {
                    if self.builtin_roles.contains(&name) || name == acting {
                        return Err(Error::state(
                            SqlState::ObjectInUse,
                            format!(
                                "role {name} cannot be dropped: it is the current user or configured in tenure.toml"
                            ),
                        ));
                    }
                    if next.access.role(&name).is_none() {
                        if if_exists {
                            continue;
                        }
                        return Err(Error::NotFound { kind: "role", name });
                    }
                    let owned = next.access.owned_by(&name);
                    if !owned.is_empty() {
                        let listed: Vec<String> = owned.iter().map(ToString::to_string).collect();
                        return Err(Error::state(
                            SqlState::DependentObjectsStillExist,
                            format!(
                                "role {name} cannot be dropped because some objects depend on it: owner of {}",
                                listed.join(", ")
                            ),
                        ));
                    }
                    next.access.drop_role(&name);
                }
            }
            AccessStatement::Membership {
                grant,
                roles,
                members,
            } => {
                require_superuser(superuser, "grant or revoke role membership")?;
                for group in &roles {
                    self.require_role(&next.access, group)?;
                    for member in &members {
                        self.require_role(&next.access, member)?;
                        if grant {
                            if next.access.is_member_of(group, member) {
                                return Err(Error::state(
                                    SqlState::InvalidGrantOperation,
                                    format!(
                                        "role \"{member}\" is a member of role \"{group}\": granting would make a loop"
                                    ),
                                ));
                            }
                            let membership = Membership {
                                role: group.clone(),
                                member: member.clone(),
                            };
                            if !next.access.members.contains(&membership) {
                                next.access.members.push(membership);
                            }
                        } else {
                            next.access
                                .members
                                .retain(|m| !(m.role == *group && m.member == *member));
                        }
                    }
                }
            }
            AccessStatement::Privileges {
                grant,
                privileges,
                objects,
                grantees,
            } => {
                for grantee in &grantees {
                    if grantee != PUBLIC {
                        self.require_role(&next.access, grantee)?;
                    }
                }
                let roles = next.access.effective_roles(&acting);
                for object in self.objects(&next, &objects)? {
                    if !superuser && !next.access.owns(&roles, &object) {
                        return Err(denied(&object));
                    }
                    let all = Privilege::all_for(&object);
                    let wanted = privileges.as_deref().unwrap_or(all);
                    if let Some(p) = wanted.iter().find(|p| !all.contains(p)) {
                        return Err(Error::state(
                            SqlState::InvalidGrantOperation,
                            format!("invalid privilege type {} for {object}", p.name()),
                        ));
                    }
                    for grantee in &grantees {
                        for &privilege in wanted {
                            if grant {
                                next.access.grant(Grant {
                                    object: object.clone(),
                                    privilege,
                                    grantee: grantee.clone(),
                                    grantor: acting.clone(),
                                });
                            } else {
                                next.access.revoke(&object, privilege, grantee);
                            }
                        }
                    }
                }
            }
        }
        self.replace_catalog(&mut catalog, next)?;
        Ok(Output::command(tag))
    }

    fn role_exists(&self, access: &AccessState, name: &str) -> bool {
        self.builtin_roles.iter().any(|b| b == name) || access.role(name).is_some()
    }

    fn require_role(&self, access: &AccessState, name: &str) -> Result<()> {
        if self.role_exists(access, name) {
            Ok(())
        } else {
            Err(Error::NotFound {
                kind: "role",
                name: name.to_string(),
            })
        }
    }

    /// The objects a GRANT or REVOKE names, each checked to exist.
    fn objects(&self, state: &CatalogState, objects: &Objects) -> Result<Vec<Object>> {
        let schema_exists = |s: &str| s == DEFAULT_SCHEMA || state.schemas.iter().any(|x| x == s);
        let schema = |s: &String| {
            if schema_exists(s) {
                Ok(s.clone())
            } else {
                Err(Error::NotFound {
                    kind: "schema",
                    name: s.clone(),
                })
            }
        };
        Ok(match objects {
            Objects::Tables(names) => names
                .iter()
                .map(|parts| {
                    let name = match parts.as_slice() {
                        [table] => QualifiedName::new(DEFAULT_SCHEMA, table.as_str()),
                        [schema, table] => QualifiedName::new(schema.as_str(), table.as_str()),
                        _ => {
                            return Err(Error::invalid(format!(
                                "bad table name {}",
                                parts.join(".")
                            )));
                        }
                    };
                    if state.relations.iter().any(|(n, _)| *n == name) {
                        Ok(Object::Table(name))
                    } else {
                        Err(Error::NotFound {
                            kind: "relation",
                            name: name.to_string(),
                        })
                    }
                })
                .collect::<Result<_>>()?,
            Objects::AllTablesInSchema(schemas) => {
                let mut tables = Vec::new();
                for s in schemas {
                    let s = schema(s)?;
                    tables.extend(
                        state
                            .relations
                            .iter()
                            .filter(|(n, _)| n.schema == s)
                            .map(|(n, _)| Object::Table(n.clone())),
                    );
                }
                tables
            }
            Objects::Schemas(schemas) => schemas
                .iter()
                .map(|s| schema(s).map(Object::Schema))
                .collect::<Result<_>>()?,
            Objects::Models(models) => models
                .iter()
                .map(|m| {
                    if self.models.contains(m) {
                        Ok(Object::Model(m.clone()))
                    } else {
                        Err(Error::NotFound {
                            kind: "model",
                            name: m.clone(),
                        })
                    }
                })
                .collect::<Result<_>>()?,
        })
    }
}

fn require_superuser(allowed: bool, what: &str) -> Result<()> {
    if allowed {
        Ok(())
    } else {
        Err(superuser_only(what))
    }
}

fn check_role_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 63 || name == PUBLIC || name.starts_with("pg_") {
        return Err(Error::state(
            SqlState::ReservedName,
            format!("role name \"{name}\" is reserved or not valid"),
        ));
    }
    Ok(())
}

fn apply_options(role: &mut Role, options: &RoleOptions) -> Result<()> {
    if let Some(login) = options.login {
        role.login = login;
    }
    if let Some(superuser) = options.superuser {
        role.superuser = superuser;
    }
    if let Some(create_model) = options.create_model {
        role.create_model = create_model;
    }
    if let Some(inherit) = options.inherit {
        role.inherit = inherit;
    }
    if let Some(password) = &options.password {
        role.password = match password {
            Some(text) => Some(scram::stored_form(text)?),
            None => None,
        };
    }
    Ok(())
}
