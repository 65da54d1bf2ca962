//! What clients read about privileges: `has_table_privilege([user,] table, privilege)` and
//! `has_schema_privilege([user,] schema, privilege)` for the session's role (or the user
//! named), `pg_get_userbyid(oid)`, a relation's owner (`tenure_relation_owner`, pg_class's
//! relowner) and the aclitems psql's `\dp` and `\dn+` print (`tenure_relation_acl`,
//! `tenure_namespace_acl`, which `array_to_string(c.relacl, sep)` is rewritten to).
//!
//! They are registered on the engine's context, where they answer for the data directory's
//! owner, and again on each client session's, for its role ([`register`]).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int32Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::prelude::SessionContext;

use super::udf_args::{like_arguments, row_count};
use crate::access::{Object, Privilege, role_name, role_oid};
use crate::catalog::{CatalogState, DEFAULT_SCHEMA, QualifiedName, SavedCatalog};

/// Whose privileges the functions answer for.
#[derive(Debug, Clone)]
pub struct Oracle {
    pub catalog: SavedCatalog,
    /// The built-in superusers (the first owns what no role made).
    pub builtin: Arc<[String]>,
    /// The session's role; `None` for the owner's own sessions.
    pub role: Option<String>,
    /// Schemas of system tables, which everyone may read (the engine's reserved schemas).
    pub system_schemas: &'static [&'static str],
}

impl Oracle {
    fn is_system_schema(&self, schema: &str) -> bool {
        self.system_schemas.contains(&schema) || schema.starts_with("pg_")
    }

    /// Whether `role` (the session's if `None`) holds any of `privileges` on `object`, or
    /// with `column`, on that column of table `object` (by the table's or the column's
    /// grant).
    fn holds(
        &self,
        state: &CatalogState,
        role: Option<&str>,
        object: &Object,
        column: Option<&str>,
        privileges: &str,
    ) -> Result<bool> {
        let wanted = parse_privileges(privileges)?;
        let Some(role) = role.or(self.role.as_deref()) else {
            return Ok(true);
        };
        if state.access.is_superuser(&self.builtin, role) {
            return Ok(true);
        }
        let roles = state.access.effective_roles(role);
        // As PostgreSQL's: the object's own privileges (not its schema's USAGE); a grant
        // option only its owner holds (tenure grants none).
        Ok(wanted.iter().any(
            |&(privilege, grant_option)| match (grant_option, object, column) {
                (true, _, _) => state.access.owns(&roles, object),
                (false, Object::Table(table), Some(column)) => {
                    state.access.allows_column(&roles, table, column, privilege)
                }
                (false, _, _) => state.access.allows(&roles, object, privilege),
            },
        ))
    }
}

/// `'SELECT, INSERT WITH GRANT OPTION'`: each privilege, and whether its grant option is
/// asked for.
fn parse_privileges(text: &str) -> Result<Vec<(Privilege, bool)>> {
    text.split(',')
        .map(|item| {
            let word = item.trim();
            let lower = word.to_ascii_lowercase();
            let grant_option = lower.ends_with(" with grant option");
            let word = if grant_option {
                word[..word.len() - " with grant option".len()].trim()
            } else {
                word
            };
            match Privilege::parse(word) {
                Some(p) => Ok((p, grant_option)),
                None => exec_err!("unrecognized privilege type: \"{word}\""),
            }
        })
        .collect()
}

/// A relation named as text (`name`, `schema.name`, quoted parts kept as written).
fn relation_named(text: &str) -> QualifiedName {
    let unquote = |s: &str| {
        let s = s.trim();
        match s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
            Some(quoted) => quoted.to_string(),
            None => s.to_lowercase(),
        }
    };
    match text.rsplit_once('.') {
        Some((schema, name)) => QualifiedName::new(unquote(schema), unquote(name)),
        None => QualifiedName::new(DEFAULT_SCHEMA, unquote(text)),
    }
}

fn relation_by_oid(state: &CatalogState, oid: i64) -> Option<QualifiedName> {
    state
        .oids
        .relations()
        .find(|(_, o)| i64::from(*o) == oid)
        .map(|(name, _)| name.clone())
}

fn schema_by_oid(state: &CatalogState, oid: i64) -> Option<String> {
    std::iter::once(DEFAULT_SCHEMA.to_string())
        .chain(state.schemas.iter().cloned())
        .find(|s| state.oids.schema(s).is_some_and(|o| i64::from(o) == oid))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Which {
    Table,
    Schema,
    /// `has_column_privilege([user,] table, column, privilege)`.
    Column,
}

/// `has_table_privilege` and `has_schema_privilege`.
#[derive(Debug)]
struct HasPrivilege {
    which: Which,
    oracle: Oracle,
    signature: Signature,
}

impl PartialEq for HasPrivilege {
    fn eq(&self, other: &Self) -> bool {
        self.which == other.which && self.oracle.role == other.oracle.role
    }
}

impl Eq for HasPrivilege {}

impl std::hash::Hash for HasPrivilege {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.which.hash(state);
        self.oracle.role.hash(state);
    }
}

impl ScalarUDFImpl for HasPrivilege {
    fn name(&self) -> &str {
        match self.which {
            Which::Table => "has_table_privilege",
            Which::Schema => "has_schema_privilege",
            Which::Column => "has_column_privilege",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = row_count(&args.args);
        let arrays: Vec<ArrayRef> = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<_>>()?;
        let (user, object, column, privilege) = match (self.which, arrays.as_slice()) {
            (Which::Column, [object, column, privilege]) => (None, object, Some(column), privilege),
            (Which::Column, [user, object, column, privilege]) => (
                Some(cast(user, &DataType::Utf8)?),
                object,
                Some(column),
                privilege,
            ),
            (Which::Column, _) => return exec_err!("{} takes 3 or 4 arguments", self.name()),
            (_, [object, privilege]) => (None, object, None, privilege),
            (_, [user, object, privilege]) => {
                (Some(cast(user, &DataType::Utf8)?), object, None, privilege)
            }
            _ => return exec_err!("{} takes 2 or 3 arguments", self.name()),
        };
        let columns = column.map(|c| cast(c, &DataType::Utf8)).transpose()?;
        let by_oid = object.data_type().is_integer();
        let objects = if by_oid {
            cast(object, &DataType::Int64)?
        } else {
            cast(object, &DataType::Utf8)?
        };
        let privileges = cast(privilege, &DataType::Utf8)?;
        let privileges = privileges.as_string::<i32>();
        let state = self.oracle.catalog.get();
        let mut out = Vec::with_capacity(rows);
        for row in 0..rows {
            if objects.is_null(row) || privileges.is_null(row) {
                out.push(None);
                continue;
            }
            let user = match &user {
                Some(users) if users.is_null(row) => {
                    out.push(None);
                    continue;
                }
                Some(users) => Some(users.as_string::<i32>().value(row).to_string()),
                None => None,
            };
            if let Some(user) = &user
                && role_oid(&self.oracle.builtin, &state.access, user).is_none()
            {
                return exec_err!("role \"{user}\" does not exist");
            }
            let oid = by_oid.then(|| objects.as_primitive::<Int64Type>().value(row));
            let object = match (self.which, oid) {
                (Which::Table | Which::Column, Some(oid)) => {
                    relation_by_oid(&state, oid).map(Object::Table)
                }
                (Which::Table | Which::Column, None) => {
                    let name = relation_named(objects.as_string::<i32>().value(row));
                    if state.get(&name).is_none() && !self.oracle.is_system_schema(&name.schema) {
                        return exec_err!("relation \"{name}\" does not exist");
                    }
                    Some(Object::Table(name))
                }
                (Which::Schema, Some(oid)) => schema_by_oid(&state, oid).map(Object::Schema),
                (Which::Schema, None) => Some(Object::Schema(
                    objects.as_string::<i32>().value(row).to_string(),
                )),
            };
            // System tables and schemas: everyone reads them, as in PostgreSQL.
            let answer = match object {
                Some(Object::Table(name)) if self.oracle.is_system_schema(&name.schema) => {
                    Some(true)
                }
                Some(Object::Schema(name)) if self.oracle.is_system_schema(&name) => Some(true),
                Some(object) => {
                    let column = columns.as_ref().map(|c| c.as_string::<i32>());
                    match column {
                        Some(column) if column.is_null(row) => None,
                        column => Some(self.oracle.holds(
                            &state,
                            user.as_deref(),
                            &object,
                            column.map(|c| c.value(row)),
                            privileges.value(row),
                        )?),
                    }
                }
                None => None,
            };
            out.push(answer);
        }
        like_arguments(&args.args, Arc::new(BooleanArray::from(out)))
    }
}

/// Registers the functions on `ctx`, answering for `oracle.role`.
pub fn register(ctx: &SessionContext, oracle: &Oracle) {
    for which in [Which::Table, Which::Schema, Which::Column] {
        let arities = match which {
            Which::Column => [3, 4],
            _ => [2, 3],
        };
        ctx.register_udf(ScalarUDF::new_from_impl(HasPrivilege {
            which,
            oracle: oracle.clone(),
            signature: Signature::one_of(
                arities.into_iter().map(TypeSignature::Any).collect(),
                Volatility::Stable,
            ),
        }));
    }
}

/// Registers the functions that do not depend on the session: `pg_get_userbyid`,
/// `tenure_relation_owner`, `tenure_relation_row_security` (pg_class's relrowsecurity),
/// `tenure_role_names` (role oids to sorted names, for psql's `\d` Policies footer),
/// `tenure_relation_policies` (psql's `\dp` Policies column),
/// `tenure_relation_acl` and `tenure_namespace_acl`.
pub fn register_catalog_functions(ctx: &SessionContext, oracle: &Oracle) {
    use datafusion::logical_expr::create_udf;
    let owner = oracle.clone();
    ctx.register_udf(create_udf(
        "pg_get_userbyid",
        // Int64, which oid columns (Int32) and integer literals both coerce to.
        vec![DataType::Int64],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let rows = row_count(args);
            let oids = args[0].to_array(rows)?;
            let oids = oids.as_primitive::<Int64Type>();
            let state = owner.catalog.get();
            let names: StringArray = (0..rows)
                .map(|row| {
                    (!oids.is_null(row)).then(|| {
                        let oid = oids.value(row);
                        role_name(&owner.builtin, &state.access, oid).unwrap_or_else(|| {
                            if oid == 10 {
                                "postgres".to_string()
                            } else {
                                format!("unknown (OID={oid})")
                            }
                        })
                    })
                })
                .collect();
            like_arguments(args, Arc::new(names))
        }),
    ));
    let owners = oracle.clone();
    ctx.register_udf(create_udf(
        "tenure_relation_owner",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Int32,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let state = owners.catalog.get();
            let oids: Int32Array = relation_arguments(args)?
                .into_iter()
                .map(|table| {
                    let object = Object::Table(table);
                    Some(
                        state
                            .access
                            .owner(&object)
                            .and_then(|o| role_oid(&owners.builtin, &state.access, o))
                            .unwrap_or(0),
                    )
                })
                .collect();
            like_arguments(args, Arc::new(oids))
        }),
    ));
    let secured = oracle.clone();
    ctx.register_udf(create_udf(
        "tenure_relation_row_security",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Boolean,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let state = secured.catalog.get();
            let flags: BooleanArray = relation_arguments(args)?
                .iter()
                .map(|table| Some(state.access.row_security.contains(table)))
                .collect();
            like_arguments(args, Arc::new(flags))
        }),
    ));
    let named = oracle.clone();
    ctx.register_udf(create_udf(
        "tenure_role_names",
        vec![DataType::List(Arc::new(
            datafusion::arrow::datatypes::Field::new_list_field(DataType::Int32, true),
        ))],
        DataType::List(Arc::new(
            datafusion::arrow::datatypes::Field::new_list_field(DataType::Utf8, true),
        )),
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            use datafusion::arrow::array::{ListBuilder, StringBuilder};
            use datafusion::arrow::datatypes::Int32Type;
            let rows = row_count(args);
            let lists = args[0].to_array(rows)?;
            let lists = lists.as_list::<i32>();
            let state = named.catalog.get();
            let mut out = ListBuilder::new(StringBuilder::new());
            for row in 0..rows {
                if lists.is_null(row) {
                    out.append(false);
                    continue;
                }
                let oids = lists.value(row);
                let mut names: Vec<String> = oids
                    .as_primitive::<Int32Type>()
                    .iter()
                    .flatten()
                    .filter_map(|oid| role_name(&named.builtin, &state.access, i64::from(oid)))
                    .collect();
                names.sort();
                for name in names {
                    out.values().append_value(name);
                }
                out.append(true);
            }
            like_arguments(args, Arc::new(out.finish()))
        }),
    ));
    let policies = oracle.clone();
    ctx.register_udf(create_udf(
        "tenure_relation_policies",
        vec![DataType::Int64],
        DataType::List(Arc::new(
            datafusion::arrow::datatypes::Field::new_list_field(DataType::Utf8, true),
        )),
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            use datafusion::arrow::array::{ListBuilder, StringBuilder};
            let rows = row_count(args);
            let oids = args[0].to_array(rows)?;
            let oids = oids.as_primitive::<Int64Type>();
            let state = policies.catalog.get();
            let mut lists = ListBuilder::new(StringBuilder::new());
            for row in 0..rows {
                let table = (!oids.is_null(row))
                    .then(|| relation_by_oid(&state, oids.value(row)))
                    .flatten();
                if let Some(table) = table {
                    for policy in state.access.policies.iter().filter(|p| p.table == table) {
                        lists.values().append_value(policy_item(policy));
                    }
                }
                lists.append(true);
            }
            like_arguments(args, Arc::new(lists.finish()))
        }),
    ));
    for (name, by_schema) in [
        ("tenure_relation_acl", false),
        ("tenure_namespace_acl", true),
    ] {
        let acl = oracle.clone();
        ctx.register_udf(create_udf(
            name,
            vec![DataType::Int64, DataType::Utf8],
            DataType::Utf8,
            Volatility::Stable,
            Arc::new(move |args: &[ColumnarValue]| {
                let rows = row_count(args);
                let oids = args[0].to_array(rows)?;
                let oids = oids.as_primitive::<Int64Type>();
                let separators = cast(&args[1].to_array(rows)?, &DataType::Utf8)?;
                let separators = separators.as_string::<i32>();
                let state = acl.catalog.get();
                let owner = &acl.builtin[0];
                let texts: StringArray = (0..rows)
                    .map(|row| {
                        if oids.is_null(row) {
                            return None;
                        }
                        let oid = oids.value(row);
                        let object = if by_schema {
                            Object::Schema(schema_by_oid(&state, oid)?)
                        } else {
                            Object::Table(relation_by_oid(&state, oid)?)
                        };
                        let items = state.access.acl(&object, owner)?;
                        Some(items.join(separators.value(row)))
                    })
                    .collect();
                like_arguments(args, Arc::new(texts))
            }),
        ));
    }
}

/// The relations named by the (schema, name) arguments of a catalog function, row by row.
fn relation_arguments(args: &[ColumnarValue]) -> Result<Vec<QualifiedName>> {
    let rows = row_count(args);
    let schemas = cast(&args[0].to_array(rows)?, &DataType::Utf8)?;
    let names = cast(&args[1].to_array(rows)?, &DataType::Utf8)?;
    let (schemas, names) = (schemas.as_string::<i32>(), names.as_string::<i32>());
    Ok((0..rows)
        .map(|row| QualifiedName::new(schemas.value(row), names.value(row)))
        .collect())
}

/// A row policy as psql's `\dp` prints it: `name[ (RESTRICTIVE)]:`, then its USING
/// expression and the roles it applies to on lines of their own.
fn policy_item(policy: &crate::access::Policy) -> String {
    let mut item = policy.name.clone();
    if policy.restrictive {
        item.push_str(" (RESTRICTIVE)");
    }
    item.push_str(&format!(":\n  (u): ({})", policy.using));
    if !policy.roles.is_empty() {
        let mut roles = policy.roles.clone();
        roles.sort();
        item.push_str(&format!("\n  to: {}", roles.join(", ")));
    }
    item
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privilege_lists_and_relation_names() {
        assert_eq!(
            parse_privileges("select, INSERT WITH GRANT OPTION").unwrap(),
            [(Privilege::Select, false), (Privilege::Insert, true)]
        );
        assert!(parse_privileges("SELEKT").is_err());
        assert_eq!(
            relation_named("Customers"),
            QualifiedName::new("public", "customers")
        );
        assert_eq!(
            relation_named("crm.\"Orders\""),
            QualifiedName::new("crm", "Orders")
        );
    }
}
