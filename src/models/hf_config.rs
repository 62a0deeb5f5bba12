//! `config.json` of a Hugging Face-layout model directory: reading it and
//! checking its `model_type` (T5, BERT), and turning a user's `--layer` into a
//! hidden-state index (ESM, T5, BERT); weights are [`super::weights`]' job.

use std::path::Path;

use super::ModelError;

fn file_error(path: &Path, message: impl Into<String>) -> ModelError {
    ModelError::File {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Reads and parses `dir/config.json`.
pub(crate) fn read_config<T: serde::de::DeserializeOwned>(dir: &Path) -> Result<T, ModelError> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|err| file_error(&path, format!("cannot read: {err}")))?;
    serde_json::from_str(&text).map_err(|err| file_error(&path, format!("invalid config: {err}")))
}

/// Fails unless `dir/config.json`'s `model_type` is `expected` (a missing key is accepted:
/// old Rostlab configs predate it).
pub(crate) fn check_model_type(dir: &Path, expected: &str) -> Result<(), ModelError> {
    let path = dir.join("config.json");
    let value: serde_json::Value = read_config(dir)?;
    match value.get("model_type").and_then(|v| v.as_str()) {
        Some(found) if found != expected => Err(file_error(
            &path,
            format!("model_type is {found:?}, expected {expected:?}"),
        )),
        _ => Ok(()),
    }
}

/// Index of the hidden state to return among `n_states` (embeddings + one per
/// layer), from a user's layer choice (negative counts from the end).
pub(crate) fn hidden_state_index(layer: Option<i64>, n_states: usize, config: &Path) -> Result<usize, ModelError> {
    let Some(layer) = layer else {
        return Ok(n_states - 1);
    };
    let n = n_states as i64;
    let index = if layer < 0 { n + layer } else { layer };
    if !(0..n).contains(&index) {
        return Err(file_error(
            config,
            format!(
                "layer {layer} out of range: this model has layers 0 (embeddings) to {} (last), or -1 to -{n}",
                n - 1
            ),
        ));
    }
    Ok(index as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_index_counts_from_both_ends() {
        let cfg = Path::new("config.json");
        assert_eq!(hidden_state_index(None, 7, cfg).unwrap(), 6);
        assert_eq!(hidden_state_index(Some(0), 7, cfg).unwrap(), 0);
        assert_eq!(hidden_state_index(Some(-1), 7, cfg).unwrap(), 6);
        assert_eq!(hidden_state_index(Some(-7), 7, cfg).unwrap(), 0);
        assert!(hidden_state_index(Some(7), 7, cfg).is_err());
        assert!(hidden_state_index(Some(-8), 7, cfg).is_err());
        // fair-esm's numbering for a 33-layer model: 0..=33, -1 = 33, -34 = 0.
        assert_eq!(hidden_state_index(Some(-2), 34, cfg).unwrap(), 32);
        assert_eq!(hidden_state_index(Some(-34), 34, cfg).unwrap(), 0);
        assert!(hidden_state_index(Some(34), 34, cfg).is_err());
        assert!(hidden_state_index(Some(-35), 34, cfg).is_err());
    }
}
