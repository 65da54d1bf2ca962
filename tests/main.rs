//! tenure's integration tests, one binary (link time on small machines) with a module per
//! area. They use the real binary, real files and real Delta tables; nothing is mocked.

mod access;
mod access_columns;
mod btyd;
mod cli;
mod dbt;
mod experiments;
mod external;
mod fuzz;
mod hardening;
mod layout;
mod lifecycle_mart;
mod models;
mod persistence;
mod readme;
mod real_data;
mod recommender;
mod risk;
mod s3;
mod sequence;
mod server;
mod slt;
mod support;
mod temporary;
mod text_encoder;
mod transactions;
mod writes;
