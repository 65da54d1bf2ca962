//! `COMMENT ON TABLE / VIEW / COLUMN ... IS '...'`: kept in the catalog, shown in
//! `tenure.comments` and pg_description (psql's `\d+`, pgjdbc's REMARKS, dbt's
//! `persist_docs`, SQLAlchemy's comment reflection).

use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{CommentObject, ObjectName};

use super::keys::normalise;
use super::{Engine, Output};
use crate::catalog::Relation;
use crate::error::{Error, Result};

impl Engine {
    /// Sets, or with `text` None or empty removes, a comment. `IF EXISTS` makes a missing
    /// object a no-op.
    pub(super) async fn comment_on(
        &self,
        session: &SessionContext,
        object: CommentObject,
        name: &ObjectName,
        text: Option<String>,
        if_exists: bool,
    ) -> Result<Output> {
        let (relation_name, column) = match object {
            CommentObject::Table | CommentObject::View => (name.clone(), None),
            CommentObject::Column => {
                let mut parts = name.0.clone();
                let column = parts
                    .pop()
                    .and_then(|p| p.as_ident().cloned())
                    .filter(|_| !parts.is_empty())
                    .ok_or_else(|| {
                        Error::invalid(format!("COMMENT ON COLUMN needs table.column, not {name}"))
                    })?;
                (ObjectName(parts), Some(column))
            }
            other => {
                return Err(Error::unsupported(format!(
                    "COMMENT ON {other} is not supported; tables, views and columns are"
                )));
            }
        };
        let relation = self.qualify_object(&relation_name)?;
        let mut catalog = self.lock_catalog(session).await?;
        let kind_matches = match (catalog.get(&relation), object) {
            (None, _) if if_exists => return Ok(Output::command("COMMENT")),
            (None, _) => {
                return Err(Error::NotFound {
                    kind: "relation",
                    name: relation.to_string(),
                });
            }
            (Some(Relation::View { .. }), CommentObject::Table) => false,
            (Some(Relation::Managed { .. } | Relation::External(_)), CommentObject::View) => false,
            _ => true,
        };
        if !kind_matches {
            return Err(Error::invalid(format!(
                "{relation} is not a {}",
                if object == CommentObject::View {
                    "view"
                } else {
                    "table"
                }
            )));
        }
        let column = match column {
            None => None,
            Some(ident) => {
                let column = normalise(&ident);
                let provider = catalog
                    .ctx()
                    .table_provider(Self::table_reference(&relation))
                    .await?;
                if provider.schema().index_of(&column).is_err() {
                    if if_exists {
                        return Ok(Output::command("COMMENT"));
                    }
                    return Err(Error::NotFound {
                        kind: "column",
                        name: format!("{column} of relation {relation}"),
                    });
                }
                Some(column)
            }
        };
        let mut next = catalog.clone();
        next.set_comment(&relation, column, text.filter(|t| !t.is_empty()));
        self.replace_catalog(&mut catalog, next)?;
        Ok(Output::command("COMMENT"))
    }
}
