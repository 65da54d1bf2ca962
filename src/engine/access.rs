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

use std::sync::Arc;

use datafusion::common::TableReference;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::ObjectName;
use tenure_udfs::access::SessionAccess;

use super::privilege_check::{Checker, RoleAuthorizer, denied, superuser_only};
use super::{Engine, Output};
use crate::access::statement::{AccessStatement, Objects, RoleOptions};
use crate::access::{
    AccessState, DefaultObjects, DefaultPrivilege, Grant, Membership, Object, PUBLIC, Privilege,
    Role, scram,
};
use crate::catalog::{CatalogState, DEFAULT_SCHEMA, QualifiedName};
use crate::error::{Error, Result};
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

impl Engine {
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
        if saved.access.is_superuser(&self.builtin_roles, &role) {
            return None;
        }
        let state = self.visible_catalog(session).await;
        if state.access.is_superuser(&self.builtin_roles, &role) {
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
                        if checker.reads_limited_rows(&plan) {
                            return Err(Error::unsupported(format!(
                                "model {name} would train on rows that row-level security \
                                 hides from role {}: train it as the table's owner",
                                checker.role
                            )));
                        }
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
        self.change_access(session, |access| {
            access.set_owner(object.clone(), &role);
            access.apply_default_privileges(&object, &role);
        })
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
            None => {
                self.forget_object(session, object.clone(), None).await?;
                let owner = self.builtin_roles[0].clone();
                self.change_access(session, |access| {
                    access.apply_default_privileges(&object, &owner);
                })
                .await
            }
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
                let row_security = access
                    .row_security
                    .iter()
                    .chain(access.policies.iter().map(|p| &p.table))
                    .map(|t| Object::Table(t.clone()));
                let inside: Vec<Object> = access
                    .owners
                    .iter()
                    .map(|(o, _)| o.clone())
                    .chain(access.grants.iter().map(|g| g.object.clone()))
                    .chain(row_security)
                    .filter(|o| matches!(o, Object::Table(t) if &t.schema == schema))
                    .collect();
                for table in inside {
                    access.forget(&table);
                }
            }
            (_, None) => access.forget(&object),
        })
        .await
    }

    pub(super) async fn change_access(
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
            .is_none_or(|r| next.access.is_superuser(&self.builtin_roles, r));
        let acting = role.unwrap_or_else(|| self.builtin_roles[0].clone());
        match statement {
            secret
            @ (AccessStatement::CreateSecret { .. } | AccessStatement::DropSecret { .. }) => {
                require_superuser(superuser, "create or drop secrets")?;
                return self.execute_secret(&mut catalog, secret, &acting).await;
            }
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
            AccessStatement::AlterRoleSet {
                name,
                setting,
                value,
            } => {
                require_superuser(superuser, "alter roles")?;
                let role = next.access.role_mut(&name).ok_or_else(|| Error::NotFound {
                    kind: "role",
                    name: name.clone(),
                })?;
                match value {
                    None if setting == "all" => role.settings.clear(),
                    None => role.settings.retain(|(n, _)| *n != setting),
                    Some(value) => {
                        // Checked as a session would take it.
                        let mut probe = crate::pg::settings::Settings::new(&name, []);
                        probe
                            .set(&setting, &value)
                            .map_err(|e| Error::state(e.state, e.message))?;
                        role.settings.retain(|(n, _)| *n != setting);
                        role.settings.push((setting, value));
                    }
                }
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
                    let depending = next.access.depending_on(&name);
                    if !depending.is_empty() {
                        return Err(Error::state(
                            SqlState::DependentObjectsStillExist,
                            format!(
                                "role {name} cannot be dropped because some objects depend on \
                                 it: {}",
                                depending.join(", ")
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
            AccessStatement::DefaultPrivileges {
                grant,
                roles,
                schemas,
                privileges,
                objects,
                grantees,
            } => {
                let roles = if roles.is_empty() {
                    vec![acting.clone()]
                } else {
                    roles
                };
                for role in &roles {
                    self.require_role(&next.access, role)?;
                    // As the role's privileges go: a NOINHERIT member may not.
                    if !superuser && !next.access.effective_roles(&acting).contains(role) {
                        return Err(Error::state(
                            SqlState::InsufficientPrivilege,
                            format!("permission denied to change default privileges of {role}"),
                        ));
                    }
                }
                for grantee in &grantees {
                    if grantee != PUBLIC {
                        self.require_role(&next.access, grantee)?;
                    }
                }
                if objects == DefaultObjects::Models && !schemas.is_empty() {
                    return Err(Error::invalid(
                        "models are not in schemas: leave out IN SCHEMA",
                    ));
                }
                for schema in &schemas {
                    if schema != DEFAULT_SCHEMA && !next.schemas.contains(schema) {
                        return Err(Error::NotFound {
                            kind: "schema",
                            name: schema.clone(),
                        });
                    }
                }
                let all = objects.privileges();
                let wanted = privileges.as_deref().unwrap_or(all);
                if let Some(p) = wanted.iter().find(|p| !all.contains(p)) {
                    return Err(Error::state(
                        SqlState::InvalidGrantOperation,
                        format!("invalid privilege type {} for new {objects:?}", p.name()),
                    ));
                }
                let scopes: Vec<Option<String>> = if schemas.is_empty() {
                    vec![None]
                } else {
                    schemas.into_iter().map(Some).collect()
                };
                for role in &roles {
                    for schema in &scopes {
                        for &privilege in wanted {
                            for grantee in &grantees {
                                let default = DefaultPrivilege {
                                    role: role.clone(),
                                    schema: schema.clone(),
                                    objects,
                                    privilege,
                                    grantee: grantee.clone(),
                                };
                                let defaults = &mut next.access.default_privileges;
                                if !grant {
                                    defaults.retain(|d| d != &default);
                                } else if !defaults.contains(&default) {
                                    defaults.push(default);
                                }
                            }
                        }
                    }
                }
            }
            AccessStatement::Privileges {
                grant,
                privileges,
                objects,
                grantees,
                columns,
            } => {
                if !columns.is_empty() {
                    if !matches!(objects, Objects::Tables(_)) {
                        return Err(Error::invalid("column privileges are on tables and views"));
                    }
                    if privileges.as_deref() != Some(&[Privilege::Select]) {
                        return Err(Error::unsupported(
                            "column privileges other than SELECT are not supported",
                        ));
                    }
                }
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
                    let targets: Vec<Option<&str>> = if columns.is_empty() {
                        vec![None]
                    } else {
                        if let Object::Table(t) = &object
                            && matches!(next.get(t), Some(crate::catalog::Relation::View { .. }))
                        {
                            return Err(Error::unsupported(
                                "column privileges on views are not supported; grant SELECT \
                                 on a view of the columns instead",
                            ));
                        }
                        require_columns(catalog.ctx(), &object, &columns).await?;
                        columns.iter().map(|c| Some(c.as_str())).collect()
                    };
                    for grantee in &grantees {
                        for &privilege in wanted {
                            for &column in &targets {
                                if grant {
                                    next.access.grant(Grant {
                                        object: object.clone(),
                                        privilege,
                                        grantee: grantee.clone(),
                                        grantor: acting.clone(),
                                        column: column.map(str::to_string),
                                    });
                                } else {
                                    next.access.revoke(&object, privilege, grantee, column);
                                }
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

/// Fails unless table `object` has each of `columns` (42703 names the first that it lacks).
async fn require_columns(ctx: &SessionContext, object: &Object, columns: &[String]) -> Result<()> {
    let Object::Table(table) = object else {
        return Err(Error::invalid("column privileges are on tables and views"));
    };
    let provider = ctx
        .table_provider(TableReference::full(
            crate::catalog::CATALOG_NAME,
            table.schema.as_str(),
            table.name.as_str(),
        ))
        .await?;
    let schema = provider.schema();
    match columns.iter().find(|c| schema.field_with_name(c).is_err()) {
        Some(missing) => Err(Error::NotFound {
            kind: "column",
            name: format!("{missing} of relation {table}"),
        }),
        None => Ok(()),
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
    if let Some(limit) = options.connection_limit {
        role.connection_limit = u32::try_from(limit).ok();
    }
    if let Some(password) = &options.password {
        role.password = match password {
            Some(text) => Some(scram::stored_form(text)?),
            None => None,
        };
    }
    Ok(())
}
