//! Access control as PostgreSQL has it: roles that log in or group others, membership with
//! inheritance, owners, and privileges granted on tables, views, schemas and models.
//!
//! The state is part of the catalog ([`crate::catalog::CatalogState::access`]), so it is
//! saved atomically with the objects it protects, survives restarts and changes inside a
//! transaction block like any other DDL. Passwords are kept only as SCRAM-SHA-256 verifiers
//! ([`scram`]). Superusers pass every check; the users of tenure.toml (or, without any, the
//! trusted local user `tenure`) are built-in superusers, and so is the local shell, which
//! runs as the data directory's owner.
//!
//! What each statement needs is decided in `engine/access.rs`; this module answers "may this
//! role do this to that object" from the state alone.

pub mod scram;
pub mod secrets;
pub mod statement;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::qualified_name::{DEFAULT_SCHEMA, QualifiedName};

/// The pseudo-role every role is a member of (`GRANT ... TO PUBLIC`).
pub const PUBLIC: &str = "public";

/// The first oid of a role made by CREATE ROLE, far above the relations' and schemas'
/// (pg/oids.rs), so that an oid names one thing only.
const FIRST_ROLE_OID: u32 = 1_000_000;

/// Roles, memberships, owners and grants.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AccessState {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<Role>,
    /// `GRANT role TO member`: the member may act with the role's privileges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<Membership>,
    /// Owners of objects made by a role. An object without an entry (made before access
    /// control, or by the local shell) belongs to the built-in superuser.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<(Object, String)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<Grant>,
    /// The next role's oid; oids are never reused.
    #[serde(default)]
    pub next_role_oid: u32,
    /// Tables with row-level security enabled (`ALTER TABLE ... ENABLE ROW LEVEL
    /// SECURITY`): roles other than the owner and superusers see only the rows a policy
    /// lets them, none without one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub row_security: Vec<QualifiedName>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<Policy>,
    /// `ALTER DEFAULT PRIVILEGES`: what is granted on each object a role makes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub default_privileges: Vec<DefaultPrivilege>,
}

/// `ALTER DEFAULT PRIVILEGES FOR ROLE role [IN SCHEMA schema] GRANT privilege ON
/// {TABLES | MODELS} TO grantee`: granted on every such object `role` makes from then on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultPrivilege {
    /// The role whose new objects get the grant.
    pub role: String,
    /// Only objects made in this schema; `None` for every schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    pub objects: DefaultObjects,
    pub privilege: Privilege,
    /// A role, or [`PUBLIC`].
    pub grantee: String,
}

/// What kind of new object a default privilege is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefaultObjects {
    /// Tables and views.
    Tables,
    Models,
}

impl DefaultObjects {
    /// pg_default_acl's defaclobjtype: `r` for relations; models, which PostgreSQL lacks,
    /// take `m`.
    pub fn letter(self) -> char {
        match self {
            DefaultObjects::Tables => 'r',
            DefaultObjects::Models => 'm',
        }
    }

    pub fn privileges(self) -> &'static [Privilege] {
        match self {
            DefaultObjects::Tables => &Privilege::TABLE,
            DefaultObjects::Models => &Privilege::MODEL,
        }
    }
}

/// `CREATE POLICY name ON table [AS RESTRICTIVE] [TO roles] USING (expr)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub name: String,
    pub table: QualifiedName,
    /// The roles it applies to; empty for PUBLIC.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// The USING expression as SQL; `current_user` in it is the querying role.
    pub using: String,
    /// Restrictive policies must all pass; of the permissive ones, one must.
    #[serde(default)]
    pub restrictive: bool,
}

/// A role of `CREATE ROLE` / `CREATE USER`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Role {
    pub name: String,
    /// pg_roles.oid.
    #[serde(default)]
    pub oid: u32,
    pub login: bool,
    pub superuser: bool,
    /// May train and import models (`CREATEMODEL`), as CREATEDB lets a role make databases.
    pub create_model: bool,
    /// Uses the privileges of the roles it is a member of without `SET ROLE`.
    pub inherit: bool,
    /// The SCRAM-SHA-256 verifier in PostgreSQL's form; never the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// `CONNECTION LIMIT`: the most sessions the role may hold at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_limit: Option<u32>,
    /// `ALTER ROLE ... SET`: settings its sessions start with (a client's startup options
    /// and SET override them, as in PostgreSQL).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<(String, String)>,
}

impl Role {
    pub fn new(name: &str) -> Role {
        Role {
            name: name.to_string(),
            oid: 0,
            login: false,
            superuser: false,
            create_model: false,
            inherit: true,
            password: None,
            connection_limit: None,
            settings: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub role: String,
    pub member: String,
}

/// Something privileges are granted on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Object {
    /// A table, view or external table.
    Table(QualifiedName),
    Schema(String),
    Model(String),
}

impl std::fmt::Display for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Object::Table(name) => write!(f, "table {name}"),
            Object::Schema(name) => write!(f, "schema {name}"),
            Object::Model(name) => write!(f, "model {name}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Privilege {
    Select,
    Insert,
    Update,
    Delete,
    Truncate,
    /// On a schema: find objects in it; on a model: score, explain and read its card.
    Usage,
    /// On a schema: make objects in it.
    Create,
}

impl Privilege {
    /// In aclitem order (`arwdD`).
    pub const TABLE: [Privilege; 5] = [
        Privilege::Insert,
        Privilege::Select,
        Privilege::Update,
        Privilege::Delete,
        Privilege::Truncate,
    ];
    pub const SCHEMA: [Privilege; 2] = [Privilege::Usage, Privilege::Create];
    pub const MODEL: [Privilege; 1] = [Privilege::Usage];

    /// The privileges `object` can have (what `ALL` means for it).
    pub fn all_for(object: &Object) -> &'static [Privilege] {
        match object {
            Object::Table(_) => &Self::TABLE,
            Object::Schema(_) => &Self::SCHEMA,
            Object::Model(_) => &Self::MODEL,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Privilege::Select => "SELECT",
            Privilege::Insert => "INSERT",
            Privilege::Update => "UPDATE",
            Privilege::Delete => "DELETE",
            Privilege::Truncate => "TRUNCATE",
            Privilege::Usage => "USAGE",
            Privilege::Create => "CREATE",
        }
    }

    pub fn parse(word: &str) -> Option<Privilege> {
        [Self::TABLE.as_slice(), &Self::SCHEMA]
            .concat()
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(word))
    }

    /// The letter of an aclitem (`r` SELECT, `a` INSERT, ...), as psql's `\dp` shows it.
    pub fn acl_letter(self) -> char {
        match self {
            Privilege::Select => 'r',
            Privilege::Insert => 'a',
            Privilege::Update => 'w',
            Privilege::Delete => 'd',
            Privilege::Truncate => 'D',
            Privilege::Usage => 'U',
            Privilege::Create => 'C',
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub object: Object,
    pub privilege: Privilege,
    /// A role, or [`PUBLIC`].
    pub grantee: String,
    pub grantor: String,
    /// A column privilege (`GRANT SELECT (email) ON customers`): on this column of the
    /// table only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
}

impl AccessState {
    /// An oid for a new role.
    pub fn allocate_role_oid(&mut self) -> u32 {
        let oid = self.next_role_oid.max(FIRST_ROLE_OID);
        self.next_role_oid = oid + 1;
        oid
    }

    /// Whether `role` is a superuser: one of the `builtin` superusers (tenure.toml's users,
    /// or the trusted local user), or a role made one with SUPERUSER.
    pub fn is_superuser(&self, builtin: &[String], role: &str) -> bool {
        builtin.iter().any(|b| b == role) || self.role(role).is_some_and(|r| r.superuser)
    }

    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.iter().find(|r| r.name == name)
    }

    pub fn role_mut(&mut self, name: &str) -> Option<&mut Role> {
        self.roles.iter_mut().find(|r| r.name == name)
    }

    /// The recorded owner of `object`, if a role made it.
    pub fn owner(&self, object: &Object) -> Option<&str> {
        self.owners
            .iter()
            .find(|(o, _)| o == object)
            .map(|(_, owner)| owner.as_str())
    }

    /// `role` and every role whose privileges it uses: those it is a member of, through
    /// members that inherit, and PUBLIC.
    pub fn effective_roles(&self, role: &str) -> BTreeSet<String> {
        let mut found = BTreeSet::from([role.to_string(), PUBLIC.to_string()]);
        let mut pending = vec![role.to_string()];
        while let Some(member) = pending.pop() {
            let inherits = self.role(&member).is_none_or(|r| r.inherit);
            if !inherits {
                continue;
            }
            for m in self.members.iter().filter(|m| m.member == member) {
                if found.insert(m.role.clone()) {
                    pending.push(m.role.clone());
                }
            }
        }
        found
    }

    /// Whether `role` is a member of `group`, directly or through other roles (whatever
    /// their INHERIT), as `pg_has_role(..., 'MEMBER')`.
    pub fn is_member_of(&self, role: &str, group: &str) -> bool {
        let mut seen = BTreeSet::from([role.to_string()]);
        let mut pending = vec![role.to_string()];
        while let Some(member) = pending.pop() {
            if member == group {
                return true;
            }
            for m in self.members.iter().filter(|m| m.member == member) {
                if seen.insert(m.role.clone()) {
                    pending.push(m.role.clone());
                }
            }
        }
        false
    }

    /// Whether any of `roles` (from [`AccessState::effective_roles`]) owns `object`.
    pub fn owns(&self, roles: &BTreeSet<String>, object: &Object) -> bool {
        self.owner(object)
            .is_some_and(|owner| roles.contains(owner))
    }

    /// Whether `roles` hold `privilege` on `object`: as its owner or through a grant. The
    /// schema `public` may be used by everyone, as in PostgreSQL.
    pub fn allows(&self, roles: &BTreeSet<String>, object: &Object, privilege: Privilege) -> bool {
        if matches!(object, Object::Schema(s) if s == DEFAULT_SCHEMA)
            && privilege == Privilege::Usage
        {
            return true;
        }
        self.owns(roles, object)
            || self.grants.iter().any(|g| {
                g.column.is_none()
                    && g.privilege == privilege
                    && &g.object == object
                    && roles.contains(&g.grantee)
            })
    }

    /// Whether `roles` hold `privilege` on `column` of `table`: on the table, or on the
    /// column by a column grant.
    pub fn allows_column(
        &self,
        roles: &BTreeSet<String>,
        table: &QualifiedName,
        column: &str,
        privilege: Privilege,
    ) -> bool {
        let object = Object::Table(table.clone());
        self.allows(roles, &object, privilege)
            || self.grants.iter().any(|g| {
                g.column.as_deref() == Some(column)
                    && g.privilege == privilege
                    && g.object == object
                    && roles.contains(&g.grantee)
            })
    }

    /// Whether `roles` hold `privilege` on some column of `table` by a column grant.
    pub fn has_column_grants(
        &self,
        roles: &BTreeSet<String>,
        table: &QualifiedName,
        privilege: Privilege,
    ) -> bool {
        self.grants.iter().any(|g| {
            g.column.is_some()
                && g.privilege == privilege
                && matches!(&g.object, Object::Table(t) if t == table)
                && roles.contains(&g.grantee)
        })
    }

    /// Makes `owner` the owner of a new `object`, forgetting any grants left on an earlier
    /// object of the same name.
    pub fn set_owner(&mut self, object: Object, owner: &str) {
        self.forget(&object);
        self.owners.push((object, owner.to_string()));
    }

    /// Grants on `object`, just made by `creator`, what the default privileges of
    /// `creator` say.
    pub fn apply_default_privileges(&mut self, object: &Object, creator: &str) {
        let (objects, schema) = match object {
            Object::Table(name) => (DefaultObjects::Tables, Some(name.schema.as_str())),
            Object::Model(_) => (DefaultObjects::Models, None),
            Object::Schema(_) => return,
        };
        let grants: Vec<Grant> = self
            .default_privileges
            .iter()
            .filter(|d| {
                d.role == creator
                    && d.objects == objects
                    && (d.schema.is_none() || d.schema.as_deref() == schema)
            })
            .map(|d| Grant {
                object: object.clone(),
                privilege: d.privilege,
                grantee: d.grantee.clone(),
                grantor: creator.to_string(),
                column: None,
            })
            .collect();
        for grant in grants {
            self.grant(grant);
        }
    }

    /// Forgets the owner, grants, policies and row security of a dropped object.
    pub fn forget(&mut self, object: &Object) {
        self.owners.retain(|(o, _)| o != object);
        self.grants.retain(|g| &g.object != object);
        if let Object::Table(table) = object {
            self.row_security.retain(|t| t != table);
            self.policies.retain(|p| &p.table != table);
        }
        if let Object::Schema(schema) = object {
            self.default_privileges
                .retain(|d| d.schema.as_ref() != Some(schema));
        }
    }

    /// Whether `table` has row-level security and `roles` do not own it: then they see
    /// only the rows its policies let them.
    pub fn rows_limited(&self, roles: &BTreeSet<String>, table: &QualifiedName) -> bool {
        self.row_security.contains(table) && !self.owns(roles, &Object::Table(table.clone()))
    }

    /// The policies of `table` that apply to `roles`.
    pub fn policies_for<'a>(
        &'a self,
        roles: &'a BTreeSet<String>,
        table: &'a QualifiedName,
    ) -> impl Iterator<Item = &'a Policy> {
        self.policies.iter().filter(move |p| {
            &p.table == table && (p.roles.is_empty() || p.roles.iter().any(|r| roles.contains(r)))
        })
    }

    /// Moves the owner and grants of a renamed object.
    pub fn rename(&mut self, from: &Object, to: &Object) {
        for (o, _) in &mut self.owners {
            if o == from {
                *o = to.clone();
            }
        }
        for g in &mut self.grants {
            if &g.object == from {
                g.object = to.clone();
            }
        }
        if let (Object::Table(from), Object::Table(to)) = (from, to) {
            for t in &mut self.row_security {
                if t == from {
                    *t = to.clone();
                }
            }
            for p in &mut self.policies {
                if &p.table == from {
                    p.table = to.clone();
                }
            }
        }
    }

    /// Adds a grant unless it is already there.
    pub fn grant(&mut self, grant: Grant) {
        let exists = self.grants.iter().any(|g| {
            g.object == grant.object
                && g.privilege == grant.privilege
                && g.grantee == grant.grantee
                && g.column == grant.column
        });
        if !exists {
            self.grants.push(grant);
        }
    }

    /// Removes `privilege` on `object` from `grantee`: on `column` only, or (`None`) on the
    /// object and, as in PostgreSQL, on each of its columns. Whether there was such a grant.
    pub fn revoke(
        &mut self,
        object: &Object,
        privilege: Privilege,
        grantee: &str,
        column: Option<&str>,
    ) -> bool {
        let before = self.grants.len();
        self.grants.retain(|g| {
            !(&g.object == object
                && g.privilege == privilege
                && g.grantee == grantee
                && (column.is_none() || g.column.as_deref() == column))
        });
        self.grants.len() != before
    }

    /// The aclitems of `object` as PostgreSQL prints them (`alice=rw/owner`), owner first;
    /// `None` when nothing was granted (PostgreSQL's NULL: the owner's default rights).
    pub fn acl(&self, object: &Object, default_owner: &str) -> Option<Vec<String>> {
        let grants: Vec<&Grant> = self
            .grants
            .iter()
            .filter(|g| &g.object == object && g.column.is_none())
            .collect();
        if grants.is_empty() {
            return None;
        }
        let owner = self.owner(object).unwrap_or(default_owner);
        let mut items = vec![format!(
            "{owner}={}/{owner}",
            Privilege::all_for(object)
                .iter()
                .map(|p| p.acl_letter())
                .collect::<String>()
        )];
        let mut grantees: Vec<(&str, &str)> = Vec::new();
        for g in &grants {
            if !grantees.contains(&(g.grantee.as_str(), g.grantor.as_str())) {
                grantees.push((&g.grantee, &g.grantor));
            }
        }
        for (grantee, grantor) in grantees {
            let letters: String = Privilege::all_for(object)
                .iter()
                .filter(|p| {
                    grants
                        .iter()
                        .any(|g| g.grantee == grantee && g.grantor == grantor && g.privilege == **p)
                })
                .map(|p| p.acl_letter())
                .collect();
            let shown = if grantee == PUBLIC { "" } else { grantee };
            items.push(format!("{shown}={letters}/{grantor}"));
        }
        Some(items)
    }

    /// Removes a role, its memberships and the privileges granted to it; the caller has
    /// checked that nothing depends on it ([`AccessState::depending_on`]).
    pub fn drop_role(&mut self, name: &str) {
        self.roles.retain(|r| r.name != name);
        self.members.retain(|m| m.role != name && m.member != name);
        self.grants
            .retain(|g| g.grantee != name && g.grantor != name);
        self.default_privileges
            .retain(|d| d.role != name && d.grantee != name);
    }

    /// What depends on role `name` (what it owns, the policies naming it, what it granted
    /// to others), for DROP ROLE's error.
    pub fn depending_on(&self, name: &str) -> Vec<String> {
        let owned = self
            .owners
            .iter()
            .filter(|(_, owner)| owner == name)
            .map(|(o, _)| format!("owner of {o}"));
        let policies = self
            .policies
            .iter()
            .filter(|p| p.roles.iter().any(|r| r == name))
            .map(|p| format!("target of policy {} on table {}", p.name, p.table));
        // Dropping the grantor would take away what others were granted.
        let mut granted: Vec<String> = self
            .grants
            .iter()
            .filter(|g| g.grantor == name && g.grantee != name)
            .map(|g| format!("privileges granted on {} to {}", g.object, g.grantee))
            .collect();
        granted.dedup();
        let defaults = self
            .default_privileges
            .iter()
            .filter(|d| d.role == name || d.grantee == name)
            .map(|d| {
                format!(
                    "default privileges of {} on new {}",
                    d.role,
                    match d.objects {
                        DefaultObjects::Tables => "tables",
                        DefaultObjects::Models => "models",
                    }
                )
            });
        let mut all: Vec<String> = owned
            .chain(policies)
            .chain(granted)
            .chain(defaults)
            .collect();
        all.dedup();
        all
    }
}

/// The oid of a role: a built-in superuser's is its position (the first is 0, which
/// pg_class gives as the owner of what no role made); a catalog role's is its own.
pub fn role_oid(builtin: &[String], access: &AccessState, name: &str) -> Option<i32> {
    match builtin.iter().position(|b| b == name) {
        Some(i) => Some(i as i32),
        None => access.role(name).map(|r| r.oid as i32),
    }
}

/// The name of the role with `oid`.
pub fn role_name(builtin: &[String], access: &AccessState, oid: i64) -> Option<String> {
    if let Ok(i) = usize::try_from(oid)
        && i < builtin.len()
    {
        return Some(builtin[i].clone());
    }
    access
        .roles
        .iter()
        .find(|r| i64::from(r.oid) == oid)
        .map(|r| r.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str) -> Object {
        Object::Table(QualifiedName::new("public", name))
    }

    fn grant(state: &mut AccessState, object: Object, privilege: Privilege, grantee: &str) {
        state.grant(Grant {
            object,
            privilege,
            grantee: grantee.to_string(),
            grantor: "admin".to_string(),
            column: None,
        });
    }

    #[test]
    fn column_grants_allow_their_columns_only() {
        let mut state = AccessState::default();
        state.roles.push(Role::new("bi"));
        let customers = QualifiedName::new("public", "customers");
        for column in ["id", "region"] {
            state.grant(Grant {
                object: Object::Table(customers.clone()),
                privilege: Privilege::Select,
                grantee: "bi".into(),
                grantor: "admin".into(),
                column: Some(column.into()),
            });
        }
        let bi = state.effective_roles("bi");
        assert!(!state.allows(&bi, &Object::Table(customers.clone()), Privilege::Select));
        assert!(state.has_column_grants(&bi, &customers, Privilege::Select));
        assert!(state.allows_column(&bi, &customers, "region", Privilege::Select));
        assert!(!state.allows_column(&bi, &customers, "email", Privilege::Select));
        assert_eq!(state.acl(&Object::Table(customers.clone()), "admin"), None);
        // Revoking a column's privilege leaves the others; revoking the table's, all.
        let object = Object::Table(customers.clone());
        assert!(state.revoke(&object, Privilege::Select, "bi", Some("region")));
        assert!(!state.allows_column(&bi, &customers, "region", Privilege::Select));
        assert!(state.allows_column(&bi, &customers, "id", Privilege::Select));
        assert!(state.revoke(&object, Privilege::Select, "bi", None));
        assert!(!state.has_column_grants(&bi, &customers, Privilege::Select));
    }

    #[test]
    fn privileges_come_from_grants_ownership_membership_and_public() {
        let mut state = AccessState::default();
        for name in ["analyst", "bi", "intern"] {
            state.roles.push(Role::new(name));
        }
        state.role_mut("intern").unwrap().inherit = false;
        state.members.push(Membership {
            role: "analyst".into(),
            member: "bi".into(),
        });
        state.members.push(Membership {
            role: "analyst".into(),
            member: "intern".into(),
        });
        grant(&mut state, table("orders"), Privilege::Select, "analyst");
        grant(&mut state, table("events"), Privilege::Select, PUBLIC);
        state.set_owner(table("mine"), "bi");

        let bi = state.effective_roles("bi");
        assert!(state.allows(&bi, &table("orders"), Privilege::Select));
        assert!(!state.allows(&bi, &table("orders"), Privilege::Insert));
        assert!(state.allows(&bi, &table("events"), Privilege::Select));
        assert!(state.allows(&bi, &table("mine"), Privilege::Truncate));
        let intern = state.effective_roles("intern");
        assert!(
            !state.allows(&intern, &table("orders"), Privilege::Select),
            "NOINHERIT members do not use the group's privileges"
        );
        assert!(state.is_member_of("intern", "analyst"));
        assert!(state.allows(&intern, &Object::Schema("public".into()), Privilege::Usage));
        assert!(!state.allows(&intern, &Object::Schema("crm".into()), Privilege::Usage));

        assert!(state.revoke(&table("orders"), Privilege::Select, "analyst", None));
        assert!(!state.allows(&bi, &table("orders"), Privilege::Select));
        assert!(!state.revoke(&table("orders"), Privilege::Select, "analyst", None));
    }

    #[test]
    fn a_new_object_of_an_old_name_has_no_old_grants() {
        let mut state = AccessState::default();
        grant(&mut state, table("t"), Privilege::Select, "bi");
        state.set_owner(table("t"), "alice");
        let bi = state.effective_roles("bi");
        assert!(!state.allows(&bi, &table("t"), Privilege::Select));
        grant(&mut state, table("t"), Privilege::Select, "bi");
        state.rename(&table("t"), &table("u"));
        assert!(state.allows(&bi, &table("u"), Privilege::Select));
        assert_eq!(state.owner(&table("u")), Some("alice"));
        state.forget(&table("u"));
        assert!(!state.allows(&bi, &table("u"), Privilege::Select));
    }

    #[test]
    fn acl_items_read_as_postgres_prints_them() {
        let mut state = AccessState::default();
        assert_eq!(state.acl(&table("t"), "tenure"), None);
        grant(&mut state, table("t"), Privilege::Select, "bi");
        grant(&mut state, table("t"), Privilege::Insert, "bi");
        grant(&mut state, table("t"), Privilege::Select, PUBLIC);
        assert_eq!(
            state.acl(&table("t"), "tenure").unwrap(),
            ["tenure=arwdD/tenure", "bi=ar/admin", "=r/admin"]
        );
    }
}
