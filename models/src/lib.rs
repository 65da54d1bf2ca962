//! tenure-models: the machine learning behind tenure's SQL functions, on candle.
//!
//! Preprocessing, model families (churn classifiers, BG/NBD, Gamma-Gamma, k-means,
//! recommenders, sequence models), training loops, metrics and artifact save/load. It knows
//! nothing of Arrow record batches or SQL; the `tenure-udfs` crate adapts it to DataFusion.
//! The model families arrive with the in-engine ML issue.
