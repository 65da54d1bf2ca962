//! The model registry on disk: every version of every model trained with CREATE MODEL.
//!
//! Layout: `DATA_DIR/models/<name>/v<N>/{weights.safetensors, card.json}`. A version exists
//! once its card is in place: the weights are written first and the card last, each
//! atomically, so a training that fails or is killed leaves at most a directory without a
//! card, which the next start removes. DROP MODEL renames the model's directory away (one
//! atomic step) before deleting it.
//!
//! Loaded models are cached by (name, version) and shared by every query; a new version is a
//! new cache entry, so a query already running keeps the model it started with. They are
//! loaded onto the configured device (`device` in tenure.toml), where every batch then scores.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use tenure_models::candle_core::Device;
use tenure_models::{Model, ModelCard};
use tenure_udfs::text_features::models_using;
use tenure_udfs::{LoadedModel, ModelError, ModelRegistry};

use crate::datadir::write_atomically;
use crate::error::{Error, Result};
use crate::pg::sqlstate::SqlState;

const CARD_FILE: &str = "card.json";
const WEIGHTS_FILE: &str = "weights.safetensors";

/// Models in the data directory, with a cache of loaded ones.
#[derive(Debug)]
pub struct ModelStore {
    root: PathBuf,
    /// Versions of each model, ascending.
    index: RwLock<BTreeMap<String, Vec<u32>>>,
    cache: Mutex<HashMap<(String, u32), Arc<LoadedModel>>>,
    /// Where loaded models live and score.
    device: Device,
}

impl ModelStore {
    /// Opens `root` (creating it), indexes complete versions and removes what an interrupted
    /// training or drop left behind. Models will load onto `device`.
    pub fn open(root: &Path, device: Device) -> Result<ModelStore> {
        std::fs::create_dir_all(root)?;
        let mut index = BTreeMap::new();
        for entry in std::fs::read_dir(root)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with('.') {
                tracing::info!("removing models/{name}, left by an interrupted DROP MODEL");
                std::fs::remove_dir_all(entry.path())?;
                continue;
            }
            if !entry.file_type()?.is_dir() || validate_name(&name).is_err() {
                continue;
            }
            let mut versions = Vec::new();
            for version_entry in std::fs::read_dir(entry.path())? {
                let version_entry = version_entry?;
                let dir_name = version_entry.file_name().to_string_lossy().to_string();
                let Some(version) = dir_name.strip_prefix('v').and_then(|v| v.parse().ok()) else {
                    continue;
                };
                if version_entry.path().join(CARD_FILE).exists() {
                    versions.push(version);
                } else {
                    tracing::info!(
                        "removing models/{name}/{dir_name}: its training did not finish"
                    );
                    std::fs::remove_dir_all(version_entry.path())?;
                }
            }
            versions.sort_unstable();
            if !versions.is_empty() {
                index.insert(name, versions);
            }
        }
        Ok(ModelStore {
            root: root.to_path_buf(),
            index: RwLock::new(index),
            cache: Mutex::default(),
            device,
        })
    }

    /// Whether a model called `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.index
            .read()
            .expect("index lock poisoned")
            .contains_key(name)
    }

    /// Stores a trained model as the next version of `card.name`; fills in and returns the
    /// version.
    pub fn save(&self, mut card: ModelCard, model: Model) -> Result<u32> {
        let weights = model
            .weights()
            .map_err(|e| Error::invalid(format!("cannot serialise the model: {e}")))?;
        card.weights_checksum = tenure_models::artifact::fnv1a_hex(&weights);
        // The write lock makes version numbers unique when two trainings finish together,
        // and keeps the text encoders the card pins from being dropped meanwhile.
        let mut index = self.index.write().expect("index lock poisoned");
        for feature in &card.features {
            let Some(pinned) = feature.text.as_ref().map(|t| t.encoder.as_str()) else {
                continue;
            };
            let exists = pinned.rsplit_once('@').is_some_and(|(name, version)| {
                version
                    .parse::<u32>()
                    .is_ok_and(|v| index.get(name).is_some_and(|vs| vs.contains(&v)))
            });
            if !exists {
                return Err(Error::state(
                    SqlState::UndefinedObject,
                    format!(
                        "the text encoder {pinned} of feature {} was dropped while {} trained; \
                         nothing was stored",
                        feature.name, card.name
                    ),
                ));
            }
        }
        let version = index
            .get(&card.name)
            .and_then(|v| v.last())
            .map_or(1, |last| last + 1);
        card.version = version;
        let dir = self.version_dir(&card.name, version);
        std::fs::create_dir_all(&dir)?;
        write_atomically(&dir.join(WEIGHTS_FILE), &weights)?;
        write_atomically(&dir.join(CARD_FILE), &card.to_json())?;
        index.entry(card.name.clone()).or_default().push(version);
        self.cache.lock().expect("cache lock poisoned").insert(
            (card.name.clone(), version),
            Arc::new(LoadedModel { card, model }),
        );
        Ok(version)
    }

    /// Removes every version of `name`; false if there was none. Refused while other models
    /// embed their text features with it.
    pub fn drop_model(&self, name: &str) -> Result<bool> {
        let mut index = self.index.write().expect("index lock poisoned");
        if !index.contains_key(name) {
            return Ok(false);
        }
        let others: BTreeMap<String, Vec<u32>> = index
            .iter()
            .filter(|(other, _)| other.as_str() != name)
            .map(|(other, versions)| (other.clone(), versions.clone()))
            .collect();
        let users = models_using(name, &self.cards_of(others));
        if !users.is_empty() {
            return Err(Error::state(
                SqlState::DependentObjectsStillExist,
                format!(
                    "cannot drop model {name} because models embed their text features with it: \
                     {}; drop those first",
                    users.join(", ")
                ),
            ));
        }
        // Renaming the directory away is the one step that drops the model on disk; the
        // registry forgets it only once that has happened.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let doomed = self.root.join(format!(".dropped-{name}-{nanos}"));
        match std::fs::rename(self.root.join(name), &doomed) {
            Ok(()) => {}
            // Deleted by hand already: nothing left to remove.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        index.remove(name);
        self.cache
            .lock()
            .expect("cache lock poisoned")
            .retain(|(n, _), _| n != name);
        if doomed.exists()
            && let Err(e) = std::fs::remove_dir_all(&doomed)
        {
            // The model is gone from the registry either way; the next start cleans up.
            tracing::warn!("cannot remove {}: {e}", doomed.display());
        }
        Ok(true)
    }

    fn version_dir(&self, name: &str, version: u32) -> PathBuf {
        self.root.join(name).join(format!("v{version}"))
    }

    /// One file of a version's artifact, with an error that names the model and the path.
    fn read_file(&self, name: &str, version: u32, file: &str) -> Result<Vec<u8>, ModelError> {
        let path = self.version_dir(name, version).join(file);
        std::fs::read(&path).map_err(|e| {
            ModelError::Unreadable(format!(
                "model '{name}' version {version}: cannot read {}: {e}",
                path.display()
            ))
        })
    }

    fn read_card(&self, name: &str, version: u32) -> Result<ModelCard, ModelError> {
        let bytes = self.read_file(name, version, CARD_FILE)?;
        ModelCard::from_json(&bytes)
            .map_err(|e| ModelError::Corrupt(format!("model '{name}' version {version}: {e}")))
    }

    fn load(&self, name: &str, version: u32) -> Result<Arc<LoadedModel>, ModelError> {
        let key = (name.to_string(), version);
        if let Some(model) = self.cache.lock().expect("cache lock poisoned").get(&key) {
            return Ok(model.clone());
        }
        let card = self.read_card(name, version)?;
        let weights = self.read_file(name, version, WEIGHTS_FILE)?;
        let model = Model::load(&card, &weights, &self.device)
            .map_err(|e| ModelError::Corrupt(format!("model '{name}' version {version}: {e}")))?;
        let loaded = Arc::new(LoadedModel { card, model });
        self.cache
            .lock()
            .expect("cache lock poisoned")
            .insert(key, loaded.clone());
        Ok(loaded)
    }

    fn names(&self) -> Vec<String> {
        self.index
            .read()
            .expect("index lock poisoned")
            .keys()
            .cloned()
            .collect()
    }
}

impl ModelRegistry for ModelStore {
    fn model(&self, reference: &str) -> Result<Arc<LoadedModel>, ModelError> {
        let reference = reference.trim().to_lowercase();
        let (name, version) = match reference.split_once('@') {
            Some((name, version)) => {
                let version: u32 = version.parse().map_err(|_| {
                    ModelError::InvalidReference(format!(
                        "'{reference}' is not a model reference; use name or name@version"
                    ))
                })?;
                (name, Some(version))
            }
            None => (reference.as_str(), None),
        };
        let versions = self
            .index
            .read()
            .expect("index lock poisoned")
            .get(name)
            .cloned();
        let Some(versions) = versions else {
            let names = self.names();
            return Err(ModelError::NotFound(if names.is_empty() {
                format!("model '{name}' does not exist; no models have been created (CREATE MODEL)")
            } else {
                format!(
                    "model '{name}' does not exist; models: {}",
                    names.join(", ")
                )
            }));
        };
        let version = match version {
            None => *versions.last().expect("indexed models have a version"),
            Some(v) if versions.contains(&v) => v,
            Some(v) => {
                let list: Vec<String> = versions.iter().map(u32::to_string).collect();
                return Err(ModelError::NotFound(format!(
                    "model '{name}' has no version {v}; versions: {}",
                    list.join(", ")
                )));
            }
        };
        self.load(name, version)
    }

    fn cards(&self) -> Vec<ModelCard> {
        let index = self.index.read().expect("index lock poisoned").clone();
        self.cards_of(index)
    }
}

impl ModelStore {
    /// The cards of the versions in `index`, from the cache or from disk (an unreadable one
    /// is logged and left out).
    fn cards_of(&self, index: BTreeMap<String, Vec<u32>>) -> Vec<ModelCard> {
        let mut cards = Vec::new();
        for (name, versions) in index {
            for version in versions {
                let cached = self
                    .cache
                    .lock()
                    .expect("cache lock poisoned")
                    .get(&(name.clone(), version))
                    .map(|m| m.card.clone());
                match cached.map_or_else(|| self.read_card(&name, version), Ok) {
                    Ok(card) => cards.push(card),
                    Err(e) => tracing::warn!("{e}"),
                }
            }
        }
        cards
    }
}

/// Model names become directory names: lower-case letters, digits and `_`, not starting
/// with a digit, at most 63 characters (PostgreSQL's identifier limit).
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid model name '{name}': use lower-case letters, digits and _, starting with a letter"
        )))
    }
}
