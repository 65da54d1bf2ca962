//! Where tenure's functions appear in generated documentation.

use datafusion::logical_expr::DocSection;

/// The documentation section of every function in this crate.
pub(crate) const DOC_SECTION: DocSection = DocSection {
    include: true,
    label: "Model functions",
    description: Some(
        "Scoring and explaining models trained with CREATE MODEL, and the lifecycle functions",
    ),
};
