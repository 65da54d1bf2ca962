//! The demo world as tables, and the lifecycle views that ship in `sql/lifecycle.sql`.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use datafusion::catalog::MemTable;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::LogicalPlanBuilder;

use crate::catalog::QualifiedName;
use crate::demo::{DemoOptions, DemoTable, generate};
use crate::engine::Engine;
use crate::error::Result;

/// The lifecycle views: RFM, monthly cohort retention, the view -> cart -> purchase funnel and
/// the repeat-purchase rate, over the demo world's tables.
pub const LIFECYCLE_SQL: &str = include_str!("../sql/lifecycle.sql");

/// Generates the demo world, writes each table as a managed Delta table (replacing tables of
/// the same name), creates the lifecycle views and, with `parquet_dir`, writes each table as
/// `parquet_dir/[schema/]table.parquet` too.
pub async fn load_demo(
    engine: &Engine,
    options: &DemoOptions,
    parquet_dir: Option<&Path>,
) -> Result<()> {
    let started = Instant::now();
    let world = generate(options).map_err(|e| crate::Error::invalid(e.to_string()))?;
    eprintln!(
        "generated the demo world (scale {}, seed {}) in {:.1}s",
        options.scale,
        options.seed,
        started.elapsed().as_secs_f64()
    );
    for table in &world.tables {
        if table.schema != crate::engine::DEFAULT_SCHEMA {
            engine
                .run(&format!("CREATE SCHEMA IF NOT EXISTS {}", table.schema))
                .await?;
        }
    }
    for table in world.tables {
        let started = Instant::now();
        let rows: usize = table.batches.iter().map(|b| b.num_rows()).sum();
        write_table(engine, &table, parquet_dir).await?;
        eprintln!(
            "  {}.{}: {rows} rows in {:.1}s",
            table.schema,
            table.name,
            started.elapsed().as_secs_f64()
        );
    }
    create_lifecycle_views(engine).await?;
    Ok(())
}

async fn write_table(engine: &Engine, table: &DemoTable, parquet_dir: Option<&Path>) -> Result<()> {
    let Some(first) = table.batches.first() else {
        return Err(crate::Error::invalid(format!(
            "demo table {} has no batches",
            table.name
        )));
    };
    let memory = Arc::new(MemTable::try_new(
        first.schema(),
        vec![table.batches.clone()],
    )?);
    let plan =
        LogicalPlanBuilder::scan(table.name, provider_as_source(memory.clone()), None)?.build()?;
    let name = QualifiedName::new(table.schema, table.name);
    engine
        .create_managed_table(
            engine.context(),
            &name,
            plan,
            false,
            true,
            Default::default(),
        )
        .await?;
    if let Some(dir) = parquet_dir {
        let dir = if table.schema == crate::engine::DEFAULT_SCHEMA {
            dir.to_path_buf()
        } else {
            dir.join(table.schema)
        };
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{}.parquet", table.name));
        let frame = engine.context().read_table(memory)?;
        frame
            .write_parquet(
                &path.to_string_lossy(),
                DataFrameWriteOptions::new().with_single_file_output(true),
                None,
            )
            .await?;
    }
    Ok(())
}

/// Creates (or replaces) the lifecycle views.
pub async fn create_lifecycle_views(engine: &Engine) -> Result<()> {
    engine.run(LIFECYCLE_SQL).await?;
    Ok(())
}
