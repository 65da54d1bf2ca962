//! `CREATE MODEL name KIND text_encoder [OPTIONS (...)] FROM 'directory'`: a pretrained
//! encoder's files read from a directory the statement may read (the server's allowed
//! roots), checked and stored as the model's next version like a trained one.
//!
//! Every file is confined on its own path (a symbolic link inside the directory that leads
//! out of the roots is refused), and nothing is stored unless the whole import succeeds.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use tenure_models::artifact::{CARD_FORMAT, fnv1a_hex};
use tenure_models::text_encoder::{TextEncoder, TextEncoderOptions};
use tenure_models::{FeatureKind, FeatureSpec, Kind, Model, ModelCard, Options};

use super::model_statements::created_model_row;
use super::paths::{Location, PathAccess};
use super::{Engine, Output};
use crate::error::{Error, Result};
use crate::sql::CreateModel;

/// Import refuses a weights file when this many times its size is more than the memory
/// available: the file, its tensors in f32 (twice the file for f16 weights) and the stored
/// copy are in memory together while it imports.
const MEMORY_PER_WEIGHT_BYTE: u64 = 5;

/// Files larger than this are not part of any encoder directory (the weights have their
/// own check against memory).
const MAX_SMALL_FILE: u64 = 64 << 20;

impl Engine {
    pub(super) async fn import_model(
        &self,
        create: CreateModel,
        kind: Kind,
        directory: &str,
    ) -> Result<Output> {
        if create.target.is_some() {
            return Err(Error::invalid(format!("KIND {kind} takes no TARGET")));
        }
        if create.if_not_exists && self.models.contains(&create.name) {
            return Ok(Output::command("CREATE MODEL"));
        }
        let root = match self.access.confine(directory)? {
            Location::Local(path) => path,
            Location::S3(_) => {
                return Err(Error::unsupported(
                    "KIND text_encoder imports from a local directory; copy the model's files \
                     to one the server may read",
                ));
            }
        };
        if !root.is_dir() {
            return Err(Error::invalid(format!(
                "{} is not a directory; FROM names a sentence-transformers model directory",
                root.display()
            )));
        }
        let started = Instant::now();
        let access = self.access.clone();
        let source = root.display().to_string();
        let options = create.options.clone();
        let (model, fingerprint, options) = tokio::task::spawn_blocking(move || {
            let mut options = Options::new(options);
            let parsed = TextEncoderOptions::from_options(&mut options, kind.name())?;
            let device = tenure_models::device(&parsed.device)?;
            let mut digests = Vec::new();
            let mut read = |name: &str| {
                let bytes = read_model_file(&access, &root, name)?;
                if let Some(bytes) = &bytes {
                    digests.push(format!("{name}:{}", fnv1a_hex(bytes)));
                }
                Ok(bytes)
            };
            let encoder = TextEncoder::import(&source, &parsed, &device, &mut read)?;
            let fingerprint = fnv1a_hex(digests.join(",").as_bytes());
            Ok::<_, Error>((
                Model::TextEncoder(encoder),
                fingerprint,
                options.as_map().clone(),
            ))
        })
        .await
        .map_err(|e| Error::invalid(format!("import failed: {e}")))??;

        let metrics = model.metrics();
        let seconds = started.elapsed().as_secs_f64();
        let card = ModelCard {
            format: CARD_FORMAT,
            name: create.name.clone(),
            version: 0,
            kind,
            target: None,
            features: vec![FeatureSpec {
                name: "text".to_string(),
                kind: FeatureKind::Categorical,
                sql_type: "text".to_string(),
                text: None,
            }],
            options,
            metrics: metrics.clone(),
            rows: 0,
            seconds,
            fingerprint,
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            weights_checksum: String::new(),
            spec: model.spec(),
        };
        let version = self.models.save(card, model)?;
        tracing::info!(model = %create.name, version, seconds, source = directory, "imported");
        created_model_row(&create.name, version, kind, 0, seconds, &metrics)
    }
}

/// One file of the directory being imported: None when it does not exist; an error when it
/// lies outside the roots (through a link), is not a plain file, or is too large.
fn read_model_file(
    access: &PathAccess,
    root: &Path,
    name: &str,
) -> std::result::Result<Option<Vec<u8>>, String> {
    let path: PathBuf = root.join(name);
    // Confined before anything about the file is looked at, so that a link cannot tell
    // whether a path outside the roots exists.
    access.check(&path).map_err(|e| e.to_string())?;
    let metadata = match std::fs::metadata(&path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    if !metadata.is_file() {
        return Err(format!("{} is not a file", path.display()));
    }
    let size = metadata.len();
    if name.ends_with(".safetensors") {
        if let Some(available) = available_memory()
            && size.saturating_mul(MEMORY_PER_WEIGHT_BYTE) > available
        {
            return Err(format!(
                "{} is {} MB; importing it needs about {} MB of memory and {} MB are \
                 available",
                path.display(),
                size >> 20,
                size.saturating_mul(MEMORY_PER_WEIGHT_BYTE) >> 20,
                available >> 20
            ));
        }
    } else if size > MAX_SMALL_FILE {
        return Err(format!(
            "{} is {} MB; an encoder's {name} is never more than {} MB",
            path.display(),
            size >> 20,
            MAX_SMALL_FILE >> 20
        ));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    std::fs::File::open(&path)
        .and_then(|file| file.take(size).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(Some(bytes))
}

/// Bytes of memory the system has available (Linux's MemAvailable); None where unknown.
fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
