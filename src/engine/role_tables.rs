//! The roles as system tables, which pg_catalog's pg_roles, pg_authid and pg_auth_members
//! are views over (`pg/catalog.rs`): `tenure.roles` (the built-in superusers, then the
//! catalog's roles), `tenure.role_members` and `tenure.role_passwords`, whose verifiers only
//! a superuser's session sees (as pg_authid in PostgreSQL); and `tenure.table_grants`, which
//! information_schema's table_privileges and role_table_grants read.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Int32Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::Session;

use super::access::Identity;
use super::system_tables::SystemRows;
use crate::access::{Object, PUBLIC, Privilege, role_oid};
use crate::catalog::{QualifiedName, SavedCatalog};

/// `tenure.roles`.
#[derive(Debug)]
pub struct RolesTable {
    pub catalog: SavedCatalog,
    pub builtin: Arc<[String]>,
}

impl SystemRows for RolesTable {
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("oid", DataType::Int32, false),
            Field::new("rolname", DataType::Utf8, false),
            Field::new("rolsuper", DataType::Boolean, false),
            Field::new("rolinherit", DataType::Boolean, false),
            Field::new("rolcanlogin", DataType::Boolean, false),
            Field::new("rolcreatemodel", DataType::Boolean, false),
            Field::new("has_password", DataType::Boolean, false),
            Field::new("rolconnlimit", DataType::Int32, false),
        ]))
    }

    fn columns(&self) -> Vec<ArrayRef> {
        let state = self.catalog.get();
        let roles = &state.access.roles;
        let builtin = self.builtin.iter();
        let n = self.builtin.len();
        vec![
            Arc::new(Int32Array::from_iter_values(
                (0..n as i32).chain(roles.iter().map(|r| r.oid as i32)),
            )),
            Arc::new(StringArray::from_iter_values(
                builtin
                    .clone()
                    .map(String::as_str)
                    .chain(roles.iter().map(|r| r.name.as_str())),
            )),
            Arc::new(BooleanArray::from_iter(
                std::iter::repeat_n(true, n)
                    .chain(roles.iter().map(|r| r.superuser))
                    .map(Some),
            )),
            Arc::new(BooleanArray::from_iter(
                std::iter::repeat_n(true, n)
                    .chain(roles.iter().map(|r| r.inherit))
                    .map(Some),
            )),
            Arc::new(BooleanArray::from_iter(
                std::iter::repeat_n(true, n)
                    .chain(roles.iter().map(|r| r.login))
                    .map(Some),
            )),
            Arc::new(BooleanArray::from_iter(
                std::iter::repeat_n(true, n)
                    .chain(roles.iter().map(|r| r.create_model))
                    .map(Some),
            )),
            Arc::new(BooleanArray::from_iter(
                std::iter::repeat_n(false, n)
                    .chain(roles.iter().map(|r| r.password.is_some()))
                    .map(Some),
            )),
            Arc::new(Int32Array::from_iter_values(
                std::iter::repeat_n(-1, n).chain(roles.iter().map(|r| {
                    r.connection_limit
                        .map_or(-1, |l| i32::try_from(l).unwrap_or(i32::MAX))
                })),
            )),
        ]
    }
}

/// `tenure.role_members`: who is a member of which role, by oid.
#[derive(Debug)]
pub struct RoleMembersTable {
    pub catalog: SavedCatalog,
    pub builtin: Arc<[String]>,
}

impl SystemRows for RoleMembersTable {
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("roleid", DataType::Int32, false),
            Field::new("member", DataType::Int32, false),
        ]))
    }

    fn columns(&self) -> Vec<ArrayRef> {
        let state = self.catalog.get();
        let access = &state.access;
        let pairs: Vec<(i32, i32)> = access
            .members
            .iter()
            .filter_map(|m| {
                Some((
                    role_oid(&self.builtin, access, &m.role)?,
                    role_oid(&self.builtin, access, &m.member)?,
                ))
            })
            .collect();
        vec![
            Arc::new(Int32Array::from_iter_values(pairs.iter().map(|p| p.0))),
            Arc::new(Int32Array::from_iter_values(pairs.iter().map(|p| p.1))),
        ]
    }
}

/// `tenure.role_passwords`: the SCRAM verifiers, for a superuser's session only (other
/// sessions see no rows).
#[derive(Debug)]
pub struct RolePasswordsTable {
    pub catalog: SavedCatalog,
    pub builtin: Arc<[String]>,
}

impl SystemRows for RolePasswordsTable {
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("oid", DataType::Int32, false),
            Field::new("rolpassword", DataType::Utf8, false),
        ]))
    }

    fn columns(&self) -> Vec<ArrayRef> {
        let state = self.catalog.get();
        let with_password: Vec<(i32, &str)> = state
            .access
            .roles
            .iter()
            .filter_map(|r| Some((r.oid as i32, r.password.as_deref()?)))
            .collect();
        vec![
            Arc::new(Int32Array::from_iter_values(
                with_password.iter().map(|r| r.0),
            )),
            Arc::new(StringArray::from_iter_values(
                with_password.iter().map(|r| r.1),
            )),
        ]
    }

    fn columns_in(&self, session: &dyn Session) -> Vec<ArrayRef> {
        let superuser = match session.config().get_extension::<Identity>() {
            None => true,
            Some(identity) => self
                .catalog
                .get()
                .access
                .is_superuser(&self.builtin, &identity.role),
        };
        if superuser {
            self.columns()
        } else {
            vec![
                Arc::new(Int32Array::from(Vec::<i32>::new())),
                Arc::new(StringArray::from(Vec::<&str>::new())),
            ]
        }
    }
}

/// `tenure.table_grants`: the privileges on tables and views, as information_schema's
/// table_privileges, role_table_grants and (column privileges) column_privileges show them: each owner's own (grantable), then what
/// was granted. A session sees the rows whose grantor or grantee is one of its roles (or
/// PUBLIC); a superuser's, and the owner's shell, all of them.
#[derive(Debug)]
pub struct TableGrantsTable {
    pub catalog: SavedCatalog,
    pub builtin: Arc<[String]>,
}

impl TableGrantsTable {
    fn rows(&self, visible: Option<&BTreeSet<String>>) -> Vec<ArrayRef> {
        let state = self.catalog.get();
        let access = &state.access;
        #[allow(clippy::type_complexity)]
        let mut rows: Vec<(
            String,
            String,
            &QualifiedName,
            &'static str,
            &'static str,
            Option<&str>,
        )> = Vec::new();
        for (name, _) in &state.relations {
            let object = Object::Table(name.clone());
            let owner = access
                .owner(&object)
                .unwrap_or(self.builtin[0].as_str())
                .to_string();
            for privilege in Privilege::TABLE {
                rows.push((
                    owner.clone(),
                    owner.clone(),
                    name,
                    privilege.name(),
                    "YES",
                    None,
                ));
            }
            for grant in access.grants.iter().filter(|g| g.object == object) {
                let grantee = if grant.grantee == PUBLIC {
                    "PUBLIC".to_string()
                } else {
                    grant.grantee.clone()
                };
                rows.push((
                    grant.grantor.clone(),
                    grantee,
                    name,
                    grant.privilege.name(),
                    "NO",
                    grant.column.as_deref(),
                ));
            }
        }
        if let Some(roles) = visible {
            rows.retain(|(grantor, grantee, ..)| {
                roles.contains(grantor) || roles.contains(grantee) || grantee == "PUBLIC"
            });
        }
        vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.0.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.1.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.2.schema.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.2.name.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.3))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.4))),
            Arc::new(StringArray::from_iter(rows.iter().map(|r| r.5))),
        ]
    }
}

impl SystemRows for TableGrantsTable {
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("grantor", DataType::Utf8, false),
            Field::new("grantee", DataType::Utf8, false),
            Field::new("table_schema", DataType::Utf8, false),
            Field::new("table_name", DataType::Utf8, false),
            Field::new("privilege_type", DataType::Utf8, false),
            Field::new("is_grantable", DataType::Utf8, false),
            // A column privilege's column; NULL for a privilege on the table.
            Field::new("column_name", DataType::Utf8, true),
        ]))
    }

    fn columns(&self) -> Vec<ArrayRef> {
        self.rows(None)
    }

    fn columns_in(&self, session: &dyn Session) -> Vec<ArrayRef> {
        let Some(identity) = session.config().get_extension::<Identity>() else {
            return self.columns();
        };
        let state = self.catalog.get();
        if state.access.is_superuser(&self.builtin, &identity.role) {
            return self.columns();
        }
        self.rows(Some(&state.access.effective_roles(&identity.role)))
    }
}

/// `tenure.default_privileges`, which pg_catalog's pg_default_acl (psql's `\ddp`) is a view
/// over: per role, schema (0 for all) and kind of object, the aclitems granted on each new
/// object (`bi=r/etl`).
#[derive(Debug)]
pub struct DefaultPrivilegesTable {
    pub catalog: SavedCatalog,
    pub builtin: Arc<[String]>,
}

impl SystemRows for DefaultPrivilegesTable {
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("oid", DataType::Int32, false),
            Field::new("defaclrole", DataType::Int32, false),
            Field::new("defaclnamespace", DataType::Int32, false),
            Field::new("defaclobjtype", DataType::Utf8, false),
            Field::new(
                "defaclacl",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                false,
            ),
        ]))
    }

    fn columns(&self) -> Vec<ArrayRef> {
        use arrow::array::{ListBuilder, StringBuilder};
        let state = self.catalog.get();
        let access = &state.access;
        // One row per (role, schema, kind), in the order first given.
        let mut rows: Vec<(&str, Option<&str>, crate::access::DefaultObjects)> = Vec::new();
        for d in &access.default_privileges {
            let key = (d.role.as_str(), d.schema.as_deref(), d.objects);
            if !rows.contains(&key) {
                rows.push(key);
            }
        }
        let mut acl = ListBuilder::new(StringBuilder::new());
        for &(role, schema, objects) in &rows {
            let mut grantees: Vec<&str> = Vec::new();
            for d in &access.default_privileges {
                if (d.role.as_str(), d.schema.as_deref(), d.objects) == (role, schema, objects)
                    && !grantees.contains(&d.grantee.as_str())
                {
                    grantees.push(&d.grantee);
                }
            }
            for grantee in grantees {
                let letters: String = objects
                    .privileges()
                    .iter()
                    .filter(|p| {
                        access.default_privileges.iter().any(|d| {
                            (d.role.as_str(), d.schema.as_deref(), d.objects)
                                == (role, schema, objects)
                                && d.grantee == grantee
                                && d.privilege == **p
                        })
                    })
                    .map(|p| p.acl_letter())
                    .collect();
                let shown = if grantee == PUBLIC { "" } else { grantee };
                acl.values()
                    .append_value(format!("{shown}={letters}/{role}"));
            }
            acl.append(true);
        }
        let oid = |name: &str| role_oid(&self.builtin, access, name).unwrap_or(-1);
        vec![
            Arc::new(Int32Array::from_iter_values(
                (0..rows.len() as i32).map(|i| 900_000 + i),
            )),
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| oid(r.0)))),
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| {
                r.1.and_then(|s| state.oids.schema(s)).unwrap_or(0) as i32
            }))),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.2.letter().to_string()),
            )),
            Arc::new(acl.finish()),
        ]
    }
}

/// `tenure.policies`, which pg_catalog's pg_policy (psql's `\d` Policies footer) is a view
/// over: each row policy with its table's oid, its roles' oids (`{0}` for PUBLIC) and its
/// USING expression. Every policy is `FOR ALL` reading (polcmd `*`).
#[derive(Debug)]
pub struct PoliciesTable {
    pub catalog: SavedCatalog,
    pub builtin: Arc<[String]>,
}

impl SystemRows for PoliciesTable {
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("oid", DataType::Int32, false),
            Field::new("polname", DataType::Utf8, false),
            Field::new("polrelid", DataType::Int32, false),
            Field::new("polcmd", DataType::Utf8, false),
            Field::new("polpermissive", DataType::Boolean, false),
            Field::new(
                "polroles",
                DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
                false,
            ),
            Field::new("polqual", DataType::Utf8, false),
            Field::new("polwithcheck", DataType::Utf8, true),
        ]))
    }

    fn columns(&self) -> Vec<ArrayRef> {
        use arrow::array::{Int32Builder, ListBuilder};
        let state = self.catalog.get();
        let policies = &state.access.policies;
        let mut roles = ListBuilder::new(Int32Builder::new());
        for policy in policies {
            if policy.roles.is_empty() {
                roles.values().append_value(0);
            }
            for role in &policy.roles {
                roles
                    .values()
                    .append_value(role_oid(&self.builtin, &state.access, role).unwrap_or(-1));
            }
            roles.append(true);
        }
        vec![
            Arc::new(Int32Array::from_iter_values(
                (0..policies.len() as i32).map(|i| 910_000 + i),
            )),
            Arc::new(StringArray::from_iter_values(
                policies.iter().map(|p| p.name.as_str()),
            )),
            Arc::new(Int32Array::from_iter_values(
                policies
                    .iter()
                    .map(|p| state.oids.relation(&p.table).unwrap_or(0) as i32),
            )),
            Arc::new(StringArray::from_iter_values(policies.iter().map(|_| "*"))),
            Arc::new(BooleanArray::from_iter(
                policies.iter().map(|p| Some(!p.restrictive)),
            )),
            Arc::new(roles.finish()),
            Arc::new(StringArray::from_iter_values(
                policies.iter().map(|p| p.using.as_str()),
            )),
            Arc::new(StringArray::new_null(policies.len())),
        ]
    }
}
