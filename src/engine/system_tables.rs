//! The `tenure` schema: read-only tables that describe the database itself.
//! `tenure.models` has one row per model version, read from the model cards; `tenure.keys`
//! one row per key of a managed table; `tenure.table_sizes` and `tenure.table_storage` one
//! per managed table; `tenure.column_types` one per column of a type that is text underneath
//! (`json`, `jsonb`, `varchar(n)`).

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int16Builder, Int32Array, Int64Array, ListBuilder,
    RecordBatch, StringArray, StringBuilder, TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use tenure_udfs::ModelRegistry;

use crate::catalog::{KeyConstraint, KeyKind, QualifiedName, SavedCatalog};
use crate::model_store::ModelStore;
use crate::storage::ManagedTable;

/// The schema that holds tenure's system tables.
pub const SYSTEM_SCHEMA: &str = "tenure";

/// Schemas clients may not create or drop: tenure's system tables and PostgreSQL's.
pub const RESERVED_SCHEMAS: &[&str] = &[SYSTEM_SCHEMA, "pg_catalog", "information_schema"];

/// What a system table lists, computed afresh at each scan.
pub trait SystemRows: std::fmt::Debug + Send + Sync + 'static {
    fn schema(&self) -> SchemaRef;
    fn columns(&self) -> Vec<ArrayRef>;

    /// The rows as `session`, the one scanning, sees them; the same for every session unless
    /// a table says otherwise.
    fn columns_in(&self, _session: &dyn Session) -> Vec<ArrayRef> {
        self.columns()
    }
}

/// A read-only table of `tenure` whose rows come from a [`SystemRows`].
#[derive(Debug)]
pub struct SystemTable<R>(pub R);

#[async_trait]
impl<R: SystemRows> TableProvider for SystemTable<R> {
    fn schema(&self) -> SchemaRef {
        self.0.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let batch = RecordBatch::try_new(self.0.schema(), self.0.columns_in(state))?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.0.schema(),
            projection.cloned(),
        )?)
    }
}

/// `tenure.models`.
#[derive(Debug)]
pub struct ModelsTable {
    pub store: Arc<ModelStore>,
}

fn models_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("model", DataType::Utf8, false),
        Field::new("version", DataType::Int32, false),
        Field::new("latest", DataType::Boolean, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("target", DataType::Utf8, true),
        Field::new("features", DataType::Utf8, false),
        Field::new("rows", DataType::Int64, false),
        Field::new("seconds", DataType::Float64, false),
        Field::new("roc_auc", DataType::Float64, true),
        Field::new("metrics", DataType::Utf8, false),
        Field::new("options", DataType::Utf8, false),
        Field::new("fingerprint", DataType::Utf8, false),
        Field::new(
            "created_at",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        ),
        Field::new("family", DataType::Utf8, true),
    ]))
}

/// A classifier's model family ('gbdt', 'logistic', 'mlp'), or the candidate `model = 'auto'`
/// chose ('blend_logistic_gbdt_7_leaves', ...); None for the other kinds.
fn model_family(card: &tenure_models::ModelCard) -> Option<String> {
    match &card.spec {
        tenure_models::ModelSpec::Classifier(spec) => Some(
            spec.selection
                .iter()
                .find(|candidate| candidate.chosen)
                .map_or_else(|| spec.family().name().to_string(), |c| c.name.clone()),
        ),
        _ => None,
    }
}

impl SystemRows for ModelsTable {
    fn schema(&self) -> SchemaRef {
        models_schema()
    }

    fn columns(&self) -> Vec<ArrayRef> {
        let cards = self.store.cards();
        let latest: Vec<bool> = cards
            .iter()
            .enumerate()
            .map(|(i, c)| cards.get(i + 1).is_none_or(|next| next.name != c.name))
            .collect();
        let metric = |c: &tenure_models::ModelCard, name: &str| {
            c.metrics
                .iter()
                .find(|(m, _)| m == name)
                .map(|(_, v)| *v)
                .filter(|v| !v.is_nan())
        };
        let json = |value: serde_json::Value| value.to_string();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(cards.iter().map(|c| &c.name))),
            Arc::new(Int32Array::from_iter_values(
                cards.iter().map(|c| c.version as i32),
            )),
            Arc::new(BooleanArray::from(latest)),
            Arc::new(StringArray::from_iter_values(
                cards.iter().map(|c| c.kind.name()),
            )),
            Arc::new(StringArray::from_iter(
                cards.iter().map(|c| c.target.as_deref()),
            )),
            Arc::new(StringArray::from_iter_values(cards.iter().map(|c| {
                c.features
                    .iter()
                    .map(|f| format!("{} {}", f.name, f.sql_type))
                    .collect::<Vec<_>>()
                    .join(", ")
            }))),
            Arc::new(Int64Array::from_iter_values(
                cards.iter().map(|c| c.rows as i64),
            )),
            Arc::new(Float64Array::from_iter_values(
                cards.iter().map(|c| c.seconds),
            )),
            Arc::new(Float64Array::from_iter(
                cards.iter().map(|c| metric(c, "roc_auc")),
            )),
            Arc::new(StringArray::from_iter_values(cards.iter().map(|c| {
                json(serde_json::Value::Object(
                    c.metrics
                        .iter()
                        .map(|(k, v)| (k.clone(), serde_json::json!(v)))
                        .collect(),
                ))
            }))),
            Arc::new(StringArray::from_iter_values(
                cards.iter().map(|c| json(serde_json::json!(c.options))),
            )),
            Arc::new(StringArray::from_iter_values(
                cards.iter().map(|c| &c.fingerprint),
            )),
            Arc::new(
                TimestampMillisecondArray::from_iter(cards.iter().map(|c| {
                    chrono::DateTime::parse_from_rfc3339(&c.created_at)
                        .ok()
                        .map(|t| t.timestamp_millis())
                }))
                .with_timezone("UTC"),
            ),
            Arc::new(StringArray::from_iter(cards.iter().map(model_family))),
        ];
        columns
    }
}

/// `tenure.keys`: one row per primary, unique or foreign key or index of a managed table, as last
/// committed (see [`crate::catalog::KeyConstraint`]). pg_catalog's pg_constraint, pg_index
/// and the index rows of pg_class are views over it.
#[derive(Debug)]
pub struct KeysTable {
    pub catalog: SavedCatalog,
}

fn keys_schema() -> SchemaRef {
    let list = |item: DataType| DataType::List(Arc::new(Field::new("item", item, true)));
    Arc::new(Schema::new(vec![
        Field::new("table_schema", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("constraint_name", DataType::Utf8, false),
        Field::new("constraint_type", DataType::Utf8, false),
        Field::new("columns", list(DataType::Utf8), false),
        // 1-based column numbers, as pg_attribute.attnum.
        Field::new("positions", list(DataType::Int16), false),
        Field::new("references_schema", DataType::Utf8, true),
        Field::new("references_table", DataType::Utf8, true),
        // The referenced table's primary or unique key.
        Field::new("references_key", DataType::Utf8, true),
        Field::new("references_columns", list(DataType::Utf8), true),
        Field::new("references_positions", list(DataType::Int16), true),
    ]))
}

impl SystemRows for KeysTable {
    fn schema(&self) -> SchemaRef {
        keys_schema()
    }

    fn columns(&self) -> Vec<ArrayRef> {
        let catalog = self.catalog.get();
        let keys = &catalog.keys;
        fn referenced(key: &KeyConstraint) -> Option<(&QualifiedName, &Vec<String>, &Vec<u16>)> {
            match &key.kind {
                KeyKind::ForeignKey {
                    references,
                    columns,
                    positions,
                } => Some((references, columns, positions)),
                _ => None,
            }
        }
        let mut strings = ListBuilder::new(StringBuilder::new());
        let mut positions = ListBuilder::new(Int16Builder::new());
        let mut referenced_strings = ListBuilder::new(StringBuilder::new());
        let mut referenced_positions = ListBuilder::new(Int16Builder::new());
        for key in keys {
            strings.append_value(key.columns.iter().map(Some));
            positions.append_value(key.positions.iter().map(|&p| Some(p as i16)));
            match referenced(key) {
                Some((_, columns, numbers)) => {
                    referenced_strings.append_value(columns.iter().map(Some));
                    referenced_positions.append_value(numbers.iter().map(|&p| Some(p as i16)));
                }
                None => {
                    referenced_strings.append_null();
                    referenced_positions.append_null();
                }
            }
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                keys.iter().map(|k| &k.table.schema),
            )),
            Arc::new(StringArray::from_iter_values(
                keys.iter().map(|k| &k.table.name),
            )),
            Arc::new(StringArray::from_iter_values(keys.iter().map(|k| &k.name))),
            Arc::new(StringArray::from_iter_values(
                keys.iter().map(|k| k.kind.name()),
            )),
            Arc::new(strings.finish()),
            Arc::new(positions.finish()),
            Arc::new(StringArray::from_iter(
                keys.iter()
                    .map(|k| referenced(k).map(|(r, _, _)| r.schema.as_str())),
            )),
            Arc::new(StringArray::from_iter(
                keys.iter()
                    .map(|k| referenced(k).map(|(r, _, _)| r.name.as_str())),
            )),
            Arc::new(StringArray::from_iter(keys.iter().map(|k| {
                let (table, columns, _) = referenced(k)?;
                keys.iter()
                    .find(|r| r.table == *table && r.kind.is_unique() && r.columns == *columns)
                    .map(|r| r.name.as_str())
            }))),
            Arc::new(referenced_strings.finish()),
            Arc::new(referenced_positions.finish()),
        ];
        columns
    }
}

/// `tenure.comments`: the comments of `COMMENT ON TABLE / VIEW / COLUMN`, as last committed.
/// pg_description shows them.
#[derive(Debug)]
pub struct CommentsTable {
    pub catalog: SavedCatalog,
}

fn comments_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("table_schema", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, true),
        Field::new("comment", DataType::Utf8, false),
    ]))
}

impl SystemRows for CommentsTable {
    fn schema(&self) -> SchemaRef {
        comments_schema()
    }

    fn columns(&self) -> Vec<ArrayRef> {
        let catalog = self.catalog.get();
        let comments = &catalog.comments;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                comments.iter().map(|c| &c.relation.schema),
            )),
            Arc::new(StringArray::from_iter_values(
                comments.iter().map(|c| &c.relation.name),
            )),
            Arc::new(StringArray::from_iter(
                comments.iter().map(|c| c.column.as_deref()),
            )),
            Arc::new(StringArray::from_iter_values(
                comments.iter().map(|c| &c.text),
            )),
        ];
        columns
    }
}

/// `tenure.defaults`: the column defaults of managed tables (`DEFAULT expr` as written), as
/// last committed. pg_attrdef shows them.
#[derive(Debug)]
pub struct DefaultsTable {
    pub catalog: SavedCatalog,
}

fn defaults_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("table_schema", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("column_default", DataType::Utf8, false),
    ]))
}

impl SystemRows for DefaultsTable {
    fn schema(&self) -> SchemaRef {
        defaults_schema()
    }

    fn columns(&self) -> Vec<ArrayRef> {
        let catalog = self.catalog.get();
        let defaults = &catalog.defaults;
        vec![
            Arc::new(StringArray::from_iter_values(
                defaults.iter().map(|d| &d.table.schema),
            )),
            Arc::new(StringArray::from_iter_values(
                defaults.iter().map(|d| &d.table.name),
            )),
            Arc::new(StringArray::from_iter_values(
                defaults.iter().map(|d| &d.column),
            )),
            Arc::new(StringArray::from_iter_values(
                defaults.iter().map(|d| &d.sql),
            )),
        ]
    }
}

/// `tenure.table_sizes`: each managed table's files and bytes on disk, as last committed:
/// its Delta log and every data file still in its directory, as PostgreSQL's
/// `pg_table_size` counts dead rows too. External tables, which may live in object
/// storage, are not listed. `pg_table_size(oid)` and friends read it (through
/// pg_catalog.tenure_relation_sizes).
#[derive(Debug)]
pub struct TableSizesTable {
    pub catalog: SavedCatalog,
    pub tables_dir: std::path::PathBuf,
}

fn table_sizes_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("table_schema", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("files", DataType::Int64, false),
        Field::new("bytes", DataType::Int64, false),
    ]))
}

impl SystemRows for TableSizesTable {
    fn schema(&self) -> SchemaRef {
        table_sizes_schema()
    }

    fn columns(&self) -> Vec<ArrayRef> {
        let catalog = self.catalog.get();
        let sizes: Vec<(&QualifiedName, (i64, i64))> = catalog
            .relations
            .iter()
            .filter_map(|(name, relation)| match relation {
                crate::catalog::Relation::Managed { dir } => {
                    Some((name, disk_usage(&self.tables_dir.join(dir))))
                }
                _ => None,
            })
            .collect();
        vec![
            Arc::new(StringArray::from_iter_values(
                sizes.iter().map(|(n, _)| &n.schema),
            )),
            Arc::new(StringArray::from_iter_values(
                sizes.iter().map(|(n, _)| &n.name),
            )),
            Arc::new(Int64Array::from_iter_values(
                sizes.iter().map(|(_, (files, _))| *files),
            )),
            Arc::new(Int64Array::from_iter_values(
                sizes.iter().map(|(_, (_, bytes))| *bytes),
            )),
        ]
    }
}

/// The open managed tables by directory name (the engine's map).
pub type OpenTables = Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<ManagedTable>>>>;

/// Each managed table of the saved catalog that is open, with its name.
fn open_managed_tables(
    catalog: &SavedCatalog,
    tables: &OpenTables,
) -> Vec<(crate::catalog::QualifiedName, Arc<ManagedTable>)> {
    let catalog = catalog.get();
    let open = tables.lock().expect("lock poisoned by a panic");
    catalog
        .relations
        .iter()
        .filter_map(|(name, relation)| match relation {
            crate::catalog::Relation::Managed { dir } => {
                Some((name.clone(), open.get(dir)?.clone()))
            }
            _ => None,
        })
        .collect()
}

/// `tenure.table_storage`: how each managed table is stored now: its Delta version, its live
/// data files (and how many are small, see [`crate::storage::maintenance`]) and the rows in
/// its write buffer (acknowledged appends not yet in a Delta commit).
#[derive(Debug)]
pub struct TableStorageTable {
    pub catalog: SavedCatalog,
    pub tables: OpenTables,
}

impl SystemRows for TableStorageTable {
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("table_schema", DataType::Utf8, false),
            Field::new("table_name", DataType::Utf8, false),
            Field::new("version", DataType::Int64, true),
            Field::new("data_files", DataType::Int64, false),
            Field::new("small_files", DataType::Int64, false),
            Field::new("buffered_rows", DataType::Int64, false),
        ]))
    }

    fn columns(&self) -> Vec<ArrayRef> {
        let mut names = Vec::new();
        let mut versions = Vec::new();
        let (mut files, mut small, mut buffered) = (Vec::new(), Vec::new(), Vec::new());
        for (name, table) in open_managed_tables(&self.catalog, &self.tables) {
            let (all, few) = table.data_files();
            names.push(name);
            versions.push(table.current().0.map(|v| v as i64));
            files.push(all as i64);
            small.push(few as i64);
            buffered.push(table.buffered().0 as i64);
        }
        vec![
            Arc::new(StringArray::from_iter_values(
                names.iter().map(|n| &n.schema),
            )),
            Arc::new(StringArray::from_iter_values(names.iter().map(|n| &n.name))),
            Arc::new(Int64Array::from(versions)),
            Arc::new(Int64Array::from(files)),
            Arc::new(Int64Array::from(small)),
            Arc::new(Int64Array::from(buffered)),
        ]
    }
}

/// `tenure.column_types`: the managed tables' columns whose PostgreSQL type their Arrow type
/// does not tell (`json`, `jsonb`, `varchar(20)`; see [`crate::pg::types`]), which
/// `information_schema.columns` reports (pg_catalog.tenure_columns).
#[derive(Debug)]
pub struct ColumnTypesTable {
    pub catalog: SavedCatalog,
    pub tables: OpenTables,
}

impl SystemRows for ColumnTypesTable {
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("table_schema", DataType::Utf8, false),
            Field::new("table_name", DataType::Utf8, false),
            Field::new("column_name", DataType::Utf8, false),
            Field::new("pg_type", DataType::Utf8, false),
        ]))
    }

    fn columns(&self) -> Vec<ArrayRef> {
        let mut rows: Vec<[String; 4]> = Vec::new();
        for (name, table) in open_managed_tables(&self.catalog, &self.tables) {
            let schema = datafusion::catalog::TableProvider::schema(table.as_ref());
            for field in schema.fields() {
                if let Some(pg_type) = field.metadata().get(crate::pg::types::PG_TYPE_KEY) {
                    rows.push([
                        name.schema.clone(),
                        name.name.clone(),
                        field.name().clone(),
                        pg_type.clone(),
                    ]);
                }
            }
        }
        (0..4)
            .map(|i| {
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r[i]))) as ArrayRef
            })
            .collect()
    }
}

/// Files and bytes under `dir`, recursively. What cannot be read (a directory a concurrent
/// DROP removed) counts as nothing.
fn disk_usage(dir: &std::path::Path) -> (i64, i64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    let (mut files, mut bytes) = (0, 0);
    for entry in entries.flatten() {
        match entry.metadata() {
            Ok(m) if m.is_dir() => {
                let (f, b) = disk_usage(&entry.path());
                files += f;
                bytes += b;
            }
            Ok(m) => {
                files += 1;
                bytes += m.len() as i64;
            }
            Err(_) => {}
        }
    }
    (files, bytes)
}
