//! Names of relations as the catalog stores them, and the catalog's fixed names: a leaf
//! module, so that the catalog and what it holds (access control's objects) can share them.

use datafusion::sql::sqlparser::ast::Ident;
use serde::{Deserialize, Serialize};

/// An identifier as PostgreSQL folds it: lower-case unless quoted.
pub fn fold_identifier(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

/// The catalog name tenure registers its schemas under.
pub const CATALOG_NAME: &str = "tenure";
/// The default schema.
pub const DEFAULT_SCHEMA: &str = "public";

/// A table or view name qualified by its schema, in normalised (as stored) spelling.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QualifiedName {
    pub schema: String,
    pub name: String,
}

impl QualifiedName {
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        QualifiedName {
            schema: schema.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}
