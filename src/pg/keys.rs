//! pg_catalog's functions over keys (see `keys.rs`): `tenure_key_oid` gives the oids that
//! pg_class, pg_index and pg_constraint show for a key, and `pg_get_indexdef` /
//! `pg_get_constraintdef` turn those oids back into definitions, as pgjdbc's getIndexInfo,
//! psql and SQLAlchemy read them.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int32Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int32Type};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

use crate::catalog::{KeyConstraint, KeyKind, SavedCatalog, key_index_oid};

pub fn register(ctx: &SessionContext, catalog: SavedCatalog) {
    for function in [
        Function::KeyOid,
        Function::IndexDef,
        Function::ConstraintDef,
    ] {
        ctx.register_udf(ScalarUDF::new_from_impl(KeyFunction {
            function,
            catalog: catalog.clone(),
            signature: Signature::variadic_any(Volatility::Stable),
        }));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Function {
    /// `tenure_key_oid(schema, table, key name)`.
    KeyOid,
    /// `pg_get_indexdef(index oid [, column number [, pretty]])`: the `CREATE INDEX`, or the
    /// name of the column-th column (counting from 1).
    IndexDef,
    /// `pg_get_constraintdef(constraint oid [, pretty])`.
    ConstraintDef,
}

#[derive(Debug)]
struct KeyFunction {
    function: Function,
    catalog: SavedCatalog,
    signature: Signature,
}

impl PartialEq for KeyFunction {
    fn eq(&self, other: &Self) -> bool {
        self.function == other.function
    }
}

impl Eq for KeyFunction {}

impl std::hash::Hash for KeyFunction {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.function.hash(state);
    }
}

impl ScalarUDFImpl for KeyFunction {
    fn name(&self) -> &str {
        match self.function {
            Function::KeyOid => "tenure_key_oid",
            Function::IndexDef => "pg_get_indexdef",
            Function::ConstraintDef => "pg_get_constraintdef",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        let arity = match self.function {
            Function::KeyOid => 3..=3,
            Function::IndexDef => 1..=3,
            Function::ConstraintDef => 1..=2,
        };
        if !arity.contains(&args.len()) {
            return datafusion::common::plan_err!(
                "{} takes {} to {} arguments, not {}",
                self.name(),
                arity.start(),
                arity.end(),
                args.len()
            );
        }
        Ok(match self.function {
            Function::KeyOid => DataType::Int32,
            _ => DataType::Utf8,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays: Vec<ArrayRef> = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<_>>()?;
        let result: ArrayRef = match self.function {
            Function::KeyOid => {
                let text: Vec<ArrayRef> = arrays
                    .iter()
                    .map(|a| cast(a, &DataType::Utf8))
                    .collect::<std::result::Result<_, _>>()?;
                let [schema, table, name] = [0, 1, 2].map(|i| text[i].as_string::<i32>());
                Arc::new(Int32Array::from_iter((0..rows).map(|row| {
                    if schema.is_null(row) || table.is_null(row) || name.is_null(row) {
                        return None;
                    }
                    Some(key_index_oid(
                        schema.value(row),
                        table.value(row),
                        name.value(row),
                    ))
                })))
            }
            Function::IndexDef | Function::ConstraintDef => {
                let catalog = self.catalog.get();
                let keys = &catalog.keys;
                // Index oids are even; a constraint's is its index's plus one.
                let offset = i32::from(self.function != Function::IndexDef);
                let by_oid: HashMap<i32, &KeyConstraint> =
                    keys.iter().map(|k| (k.index_oid() + offset, k)).collect();
                let oids = cast(&arrays[0], &DataType::Int32)?;
                let oids = oids.as_primitive::<Int32Type>();
                let column = match arrays.get(1) {
                    Some(a) if self.function == Function::IndexDef => {
                        Some(cast(a, &DataType::Int32)?)
                    }
                    _ => None,
                };
                let column = column.as_ref().map(|c| c.as_primitive::<Int32Type>());
                Arc::new(StringArray::from_iter((0..rows).map(|row| {
                    if oids.is_null(row) {
                        return None;
                    }
                    let key = by_oid.get(&oids.value(row))?;
                    match self.function {
                        Function::IndexDef => match column.map_or(0, |c| c.value(row)) {
                            0 => Some(index_definition(key)),
                            n => key.columns.get(usize::try_from(n - 1).ok()?).cloned(),
                        },
                        _ => constraint_definition(key),
                    }
                })))
            }
        };
        Ok(ColumnarValue::Array(result))
    }
}

/// `CREATE UNIQUE INDEX orders_pkey ON public.orders USING btree (id)`.
fn index_definition(key: &KeyConstraint) -> String {
    format!(
        "CREATE {}INDEX {} ON {}.{} USING btree ({})",
        if key.kind.is_unique() { "UNIQUE " } else { "" },
        key.name,
        key.table.schema,
        key.table.name,
        key.columns.join(", ")
    )
}

/// `PRIMARY KEY (id)`, `UNIQUE (email)`, `FOREIGN KEY (customer_id) REFERENCES customers(id)`;
/// None for an index, which is no constraint.
fn constraint_definition(key: &KeyConstraint) -> Option<String> {
    let columns = key.columns.join(", ");
    Some(match &key.kind {
        KeyKind::PrimaryKey => format!("PRIMARY KEY ({columns})"),
        KeyKind::Unique => format!("UNIQUE ({columns})"),
        KeyKind::Index { .. } => return None,
        KeyKind::ForeignKey {
            references,
            columns: referenced,
            ..
        } => {
            let table = if references.schema == crate::catalog::DEFAULT_SCHEMA {
                references.name.clone()
            } else {
                references.to_string()
            };
            format!(
                "FOREIGN KEY ({columns}) REFERENCES {table}({})",
                referenced.join(", ")
            )
        }
    })
}
