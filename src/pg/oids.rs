//! Relation and schema oids that survive a restart. datafusion-pg-catalog numbers relations
//! and schemas from a counter in memory, in the order it first lists them, so an oid a
//! client kept (pgjdbc's field metadata, a BI tool's schema cache) named another table after
//! a restart. tenure's pg_class, pg_namespace and pg_attribute (pg/catalog.rs) show these
//! instead, and the server sends them as a result column's table oid:
//!
//! - a relation or schema of the catalog: the oid the catalog keeps for it
//!   ([`crate::catalog::Oids`]); `public` is PostgreSQL's 2200, `pg_catalog` 11;
//! - anything else (system tables, information_schema, pg_catalog's tables, temporary
//!   tables): an oid derived from its names, in [2e9, 2^31), above the kept oids and the
//!   oids of keys.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int32Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{Result, internal_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use datafusion_pg_catalog::pg_catalog::oid_field::{OID_ALIAS_TYPE_NAMES, oid_field};

use super::udf_args::like_arguments;
use crate::catalog::{CatalogState, QualifiedName, SavedCatalog, name_hash};

/// `tenure_relation_oid(schema, name)`: a relation's oid.
pub const RELATION_OID: &str = "tenure_relation_oid";
/// `tenure_namespace_oid(schema)`: a schema's oid.
pub const NAMESPACE_OID: &str = "tenure_namespace_oid";
/// `tenure_oid(value)`: an int4 as an oid (a view's computed `atttypid`).
pub const AS_OID: &str = "tenure_oid";

/// The oid of pg_catalog in every PostgreSQL database (datafusion-pg-catalog's static rows
/// refer to it).
const PG_CATALOG_NAMESPACE_OID: i32 = 11;

/// The oid of the relation `schema.name`.
pub fn relation_oid(state: &CatalogState, schema: &str, name: &str) -> i32 {
    match state.oids.relation(&QualifiedName::new(schema, name)) {
        Some(oid) => oid as i32,
        None => derived_oid(&["relation", schema, name]),
    }
}

/// The oid of the schema `schema`.
pub fn namespace_oid(state: &CatalogState, schema: &str) -> i32 {
    if schema == "pg_catalog" {
        return PG_CATALOG_NAMESPACE_OID;
    }
    match state.oids.schema(schema) {
        Some(oid) => oid as i32,
        None => derived_oid(&["namespace", schema]),
    }
}

/// An oid in [2e9, 2^31) from names. Among the built-in relations there is no collision
/// (tested below); a temporary table collides with one of them with odds of about one in a
/// million.
fn derived_oid(parts: &[&str]) -> i32 {
    const FIRST: u64 = 2_000_000_000;
    (FIRST + name_hash(parts) % (i32::MAX as u64 + 1 - FIRST)) as i32
}

/// Registers [`RELATION_OID`], [`NAMESPACE_OID`] and [`AS_OID`] over the saved catalog.
pub fn register(ctx: &SessionContext, catalog: SavedCatalog) {
    for of in [Of::Relation, Of::Namespace, Of::Value] {
        ctx.register_udf(ScalarUDF::new_from_impl(OidFunction {
            of,
            catalog: catalog.clone(),
            signature: Signature::variadic_any(Volatility::Stable),
        }));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Of {
    /// `tenure_relation_oid(schema, name, kind)`.
    Relation,
    /// `tenure_namespace_oid(schema, kind)`.
    Namespace,
    /// `tenure_oid(int4, kind)`.
    Value,
}

/// The last argument, a constant, is the oid kind the result is marked with as
/// datafusion-pg-catalog marks its columns (`oid`, `regclass`, `regnamespace`), so that
/// the server describes pg_class.oid as an `oid` as before.
#[derive(Debug)]
struct OidFunction {
    of: Of,
    catalog: SavedCatalog,
    signature: Signature,
}

impl PartialEq for OidFunction {
    fn eq(&self, other: &Self) -> bool {
        self.of == other.of
    }
}

impl Eq for OidFunction {}

impl std::hash::Hash for OidFunction {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.of.hash(state);
    }
}

impl OidFunction {
    /// The number of arguments before the kind.
    fn names(&self) -> usize {
        match self.of {
            Of::Relation => 2,
            Of::Namespace | Of::Value => 1,
        }
    }
}

impl ScalarUDFImpl for OidFunction {
    fn name(&self) -> &str {
        match self.of {
            Of::Relation => RELATION_OID,
            Of::Namespace => NAMESPACE_OID,
            Of::Value => AS_OID,
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        internal_err!("{} has its return field from its arguments", self.name())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let kind = match args.scalar_arguments.get(self.names()) {
            Some(Some(ScalarValue::Utf8(Some(kind))))
                if OID_ALIAS_TYPE_NAMES.contains(&kind.as_str()) =>
            {
                kind.as_str()
            }
            _ => {
                return plan_err!(
                    "{} takes {} names and an oid kind ('oid', 'regclass', ...)",
                    self.name(),
                    self.names()
                );
            }
        };
        if args.scalar_arguments.len() != self.names() + 1 {
            return plan_err!("{} takes {} arguments", self.name(), self.names() + 1);
        }
        Ok(Arc::new(oid_field(self.name(), kind, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        if self.of == Of::Value {
            let value = cast(&args.args[0].to_array(rows)?, &DataType::Int32)?;
            return like_arguments(&args.args, value);
        }
        let text: Vec<ArrayRef> = args.args[..self.names()]
            .iter()
            .map(|a| Ok(cast(&a.to_array(rows)?, &DataType::Utf8)?))
            .collect::<Result<_>>()?;
        let state = self.catalog.get();
        let oids: Int32Array = match self.of {
            Of::Relation => {
                let (schemas, names) = (text[0].as_string::<i32>(), text[1].as_string::<i32>());
                // One lookup table per batch: pg_class asks for every relation at once.
                let kept: HashMap<(&str, &str), u32> = state
                    .oids
                    .relations()
                    .map(|(n, oid)| ((n.schema.as_str(), n.name.as_str()), oid))
                    .collect();
                (0..rows)
                    .map(|row| {
                        if schemas.is_null(row) || names.is_null(row) {
                            return None;
                        }
                        let (schema, name) = (schemas.value(row), names.value(row));
                        Some(match kept.get(&(schema, name)) {
                            Some(oid) => *oid as i32,
                            None => derived_oid(&["relation", schema, name]),
                        })
                    })
                    .collect()
            }
            Of::Value => unreachable!("answered above"),
            Of::Namespace => {
                let schemas = text[0].as_string::<i32>();
                (0..rows)
                    .map(|row| {
                        (!schemas.is_null(row)).then(|| namespace_oid(&state, schemas.value(row)))
                    })
                    .collect()
            }
        };
        like_arguments(&args.args, Arc::new(oids))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Relation;

    #[test]
    fn kept_oids_survive_renames_and_derived_ones_stay_out_of_their_range() {
        let mut state = CatalogState::default();
        state.schemas.push("marts".into());
        state.put(
            QualifiedName::new("public", "orders"),
            Relation::View {
                sql: "SELECT 1".into(),
            },
        );
        state.assign_oids();
        let orders = relation_oid(&state, "public", "orders");
        assert_eq!(namespace_oid(&state, "marts"), 16384);
        assert_eq!(orders, 16385);
        assert_eq!(namespace_oid(&state, "public"), 2200);
        assert_eq!(namespace_oid(&state, "pg_catalog"), 11);

        let (from, to) = (
            QualifiedName::new("public", "orders"),
            QualifiedName::new("marts", "orders"),
        );
        let relation = state.remove(&from).unwrap();
        state.put(to.clone(), relation);
        state.rename_metadata(&from, &to);
        state.assign_oids();
        assert_eq!(relation_oid(&state, "marts", "orders"), orders);

        // Dropped and created again: a new oid, as in PostgreSQL.
        let relation = state.remove(&to).unwrap();
        state.assign_oids();
        state.put(to, relation);
        state.assign_oids();
        assert_eq!(relation_oid(&state, "marts", "orders"), 16386);

        let derived = relation_oid(&state, "tenure", "models");
        let mut built_in: Vec<(&str, &str)> = datafusion_pg_catalog::pg_catalog::PG_CATALOG_TABLES
            .iter()
            .map(|table| ("pg_catalog", *table))
            .collect();
        for table in [
            "models",
            "keys",
            "comments",
            "defaults",
            "table_sizes",
            "table_storage",
            "column_types",
            "temporary_columns",
        ] {
            built_in.push(("tenure", table));
        }
        for table in [
            "tables",
            "views",
            "columns",
            "df_settings",
            "schemata",
            "routines",
            "parameters",
        ] {
            built_in.push(("information_schema", table));
        }
        let distinct: std::collections::HashSet<i32> = built_in
            .iter()
            .map(|(schema, table)| relation_oid(&state, schema, table))
            .collect();
        assert_eq!(distinct.len(), built_in.len(), "built-in relations collide");
        assert!(derived >= 2_000_000_000, "{derived}");
        assert_eq!(derived, relation_oid(&state, "tenure", "models"));
        assert_ne!(derived, relation_oid(&state, "tenure", "model"));
    }
}
