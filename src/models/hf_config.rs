//! `config.json` of a Hugging Face-layout model directory: reading it, checking
//! its `model_type`, and turning a user's `--layer` into a hidden-state index,
//! shared by the T5 and BERT loaders (weights are [`super::weights`]' job).

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
                "layer {layer} out of range: the model has hidden states 0..={} (or -{n}..=-1)",
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
    }
}
