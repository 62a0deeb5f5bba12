//! Checksummed safetensors shard files: the unit every protfam store writes.
//!
//! A shard is a standard safetensors file (readable with Python's
//! `safetensors.numpy.load_file`) whose `__metadata__` carries, for each
//! tensor `T`, the key `sha256.T` = hex SHA-256 of `T`'s raw little-endian
//! bytes. [`write_shard`] writes it atomically (see [`crate::atomic`]);
//! [`ShardFile::open`] memory-maps it and rejects truncated files and broken
//! headers at once; [`ShardFile::verify`] recomputes the checksums, so a file
//! damaged after it was written is detected before a single value is used.
//!
//! Tensors are stored in the order given, each aligned to its element size
//! (callers list wide types first, as safetensors itself does), so data can
//! be read in place from the memory map.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::Dtype;
use sha2::{Digest, Sha256};

use crate::atomic;

/// Metadata key prefix of a tensor checksum: `sha256.<tensor name>`.
pub const CHECKSUM_PREFIX: &str = "sha256.";

/// A shard that cannot be read or does not match its checksums.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct ShardError {
    pub path: PathBuf,
    pub message: String,
}

impl ShardError {
    pub fn new(path: &Path, message: impl Into<String>) -> Self {
        ShardError {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}

/// One tensor to write: name, dtype, shape and raw little-endian bytes.
#[derive(Debug, Clone)]
pub struct TensorData<'a> {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: std::borrow::Cow<'a, [u8]>,
}

impl<'a> TensorData<'a> {
    /// An f32 tensor from host values (stored little-endian).
    pub fn f32(name: &str, shape: Vec<usize>, values: &[f32]) -> Self {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        TensorData {
            name: name.to_string(),
            dtype: Dtype::F32,
            shape,
            bytes: bytes.into(),
        }
    }

    /// An f16 tensor (stored little-endian).
    pub fn f16(name: &str, shape: Vec<usize>, values: &[half::f16]) -> Self {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        TensorData {
            name: name.to_string(),
            dtype: Dtype::F16,
            shape,
            bytes: bytes.into(),
        }
    }

    /// A u8 tensor borrowing its bytes.
    pub fn u8(name: &str, shape: Vec<usize>, values: &'a [u8]) -> Self {
        TensorData {
            name: name.to_string(),
            dtype: Dtype::U8,
            shape,
            bytes: values.into(),
        }
    }

    /// A u32 tensor (stored little-endian).
    pub fn u32(name: &str, shape: Vec<usize>, values: &[u32]) -> Self {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        TensorData {
            name: name.to_string(),
            dtype: Dtype::U32,
            shape,
            bytes: bytes.into(),
        }
    }

    /// A u64 tensor (stored little-endian).
    pub fn u64(name: &str, shape: Vec<usize>, values: &[u64]) -> Self {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        TensorData {
            name: name.to_string(),
            dtype: Dtype::U64,
            shape,
            bytes: bytes.into(),
        }
    }
}

/// Hex SHA-256 of a byte slice.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What was written: the file, its size and the checksum of every tensor.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShardInfo {
    /// File name inside its directory.
    pub file: String,
    pub bytes: u64,
    /// Tensor name -> hex SHA-256 of its bytes.
    pub sha256: BTreeMap<String, String>,
}

/// Builds the safetensors header (JSON padded with spaces to a multiple of 8)
/// for `tensors` in the given order, with per-tensor checksums added to `metadata`.
fn header_for(
    tensors: &[TensorData<'_>],
    metadata: &BTreeMap<String, String>,
) -> Result<(Vec<u8>, BTreeMap<String, String>), String> {
    let mut meta = metadata.clone();
    let mut sums = BTreeMap::new();
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for t in tensors {
        let elements: usize = t.shape.iter().product();
        let expected = elements * t.dtype.bitsize() / 8;
        if expected != t.bytes.len() {
            return Err(format!(
                "tensor {}: shape {:?} of {:?} needs {expected} bytes, got {}",
                t.name,
                t.shape,
                t.dtype,
                t.bytes.len()
            ));
        }
        if header.contains_key(&t.name) || t.name == "__metadata__" {
            return Err(format!("duplicate or reserved tensor name {}", t.name));
        }
        let sum = sha256_hex(&t.bytes);
        meta.insert(format!("{CHECKSUM_PREFIX}{}", t.name), sum.clone());
        sums.insert(t.name.clone(), sum);
        // Keep every tensor aligned to its element size (the data section starts
        // 8-byte aligned); safetensors offsets are contiguous, so a misaligned
        // tensor would need padding the format cannot express.
        let align = (t.dtype.bitsize() / 8).max(1);
        if !offset.is_multiple_of(align) {
            return Err(format!(
                "tensor {} would start at unaligned offset {offset}; list wider dtypes first",
                t.name
            ));
        }
        header.insert(
            t.name.clone(),
            serde_json::json!({
                "dtype": format!("{:?}", t.dtype).to_uppercase(),
                "shape": t.shape,
                "data_offsets": [offset, offset + t.bytes.len()],
            }),
        );
        offset += t.bytes.len();
    }
    header.insert(
        "__metadata__".to_string(),
        serde_json::to_value(&meta).expect("string map serialises"),
    );
    let mut bytes = serde_json::to_vec(&serde_json::Value::Object(header)).expect("header serialises");
    bytes.resize(bytes.len().next_multiple_of(8), b' ');
    Ok((bytes, sums))
}

/// Writes a checksummed safetensors shard atomically at `path`.
///
/// `metadata` goes into `__metadata__` together with a `sha256.<name>` entry
/// per tensor. Tensors are written in the order given; list wider dtypes
/// first so that every tensor stays 8-byte aligned.
pub fn write_shard(
    path: &Path,
    tensors: &[TensorData<'_>],
    metadata: &BTreeMap<String, String>,
) -> Result<ShardInfo, ShardError> {
    let (header, sums) = header_for(tensors, metadata).map_err(|m| ShardError::new(path, m))?;
    atomic::write_atomic(path, |w| {
        w.write_all(&(header.len() as u64).to_le_bytes())?;
        w.write_all(&header)?;
        for t in tensors {
            w.write_all(&t.bytes)?;
        }
        Ok(())
    })
    .map_err(|e| ShardError::new(path, format!("cannot write (nothing was replaced): {e}")))?;
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(ShardInfo {
        file,
        bytes,
        sha256: sums,
    })
}

#[derive(Debug, Clone)]
struct TensorEntry {
    dtype: Dtype,
    shape: Vec<usize>,
    /// Absolute byte range in the file.
    start: usize,
    end: usize,
}

/// A memory-mapped shard whose header has been validated.
pub struct ShardFile {
    path: PathBuf,
    map: memmap2::Mmap,
    tensors: HashMap<String, TensorEntry>,
    metadata: HashMap<String, String>,
}

impl std::fmt::Debug for ShardFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardFile")
            .field("path", &self.path)
            .field("bytes", &self.map.len())
            .finish()
    }
}

impl ShardFile {
    /// Maps `path` and parses its header; a truncated file, a file with extra
    /// bytes or a broken header is an error naming the path.
    pub fn open(path: &Path) -> Result<Self, ShardError> {
        let file = File::open(path).map_err(|e| ShardError::new(path, format!("cannot open shard: {e}")))?;
        // SAFETY: shards are never modified in place (they are replaced by
        // rename or moved aside), so the mapping stays valid while we hold it.
        let map = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|e| ShardError::new(path, format!("cannot map shard: {e}")))?;
        let (n, meta) = safetensors::SafeTensors::read_metadata(&map).map_err(|e| {
            ShardError::new(
                path,
                format!("not a complete safetensors file (truncated or damaged header): {e:?}"),
            )
        })?;
        let data_start = 8 + n;
        let mut tensors = HashMap::new();
        for (name, info) in meta.tensors() {
            tensors.insert(
                name,
                TensorEntry {
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    start: data_start + info.data_offsets.0,
                    end: data_start + info.data_offsets.1,
                },
            );
        }
        let metadata = meta.metadata().clone().unwrap_or_default();
        Ok(ShardFile {
            path: path.to_path_buf(),
            map,
            tensors,
            metadata,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the file in bytes.
    pub fn len_bytes(&self) -> u64 {
        self.map.len() as u64
    }

    /// The `__metadata__` map.
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// Names of the tensors in the file.
    pub fn tensor_names(&self) -> Vec<&str> {
        self.tensors.keys().map(String::as_str).collect()
    }

    fn entry(&self, name: &str) -> Result<&TensorEntry, ShardError> {
        self.tensors
            .get(name)
            .ok_or_else(|| ShardError::new(&self.path, format!("missing tensor {name:?}")))
    }

    /// Shape of a tensor.
    pub fn shape(&self, name: &str) -> Result<&[usize], ShardError> {
        Ok(&self.entry(name)?.shape)
    }

    /// Raw bytes of a tensor after checking its dtype.
    pub fn bytes(&self, name: &str, dtype: Dtype) -> Result<&[u8], ShardError> {
        let e = self.entry(name)?;
        if e.dtype != dtype {
            return Err(ShardError::new(
                &self.path,
                format!("tensor {name:?} is {:?}, expected {dtype:?}", e.dtype),
            ));
        }
        Ok(&self.map[e.start..e.end])
    }

    /// Whether the file carries per-tensor checksums (files written before
    /// protfam added them do not; their owner must guard them another way).
    pub fn has_checksums(&self) -> bool {
        self.metadata.keys().any(|k| k.starts_with(CHECKSUM_PREFIX))
    }

    /// Every value of a U32 tensor (row-major), after checking its dtype.
    pub fn u32_values(&self, name: &str) -> Result<Vec<u32>, ShardError> {
        Ok(self
            .bytes(name, Dtype::U32)?
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// Every value of an F32 tensor (row-major), after checking its dtype.
    pub fn f32_values(&self, name: &str) -> Result<Vec<f32>, ShardError> {
        Ok(self
            .bytes(name, Dtype::F32)?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// Row `row` of a 2-D f32 tensor, copied out.
    pub fn f32_row(&self, name: &str, row: usize) -> Result<Vec<f32>, ShardError> {
        let e = self.entry(name)?;
        let bytes = self.bytes(name, Dtype::F32)?;
        let [rows, cols] = e.shape[..] else {
            return Err(ShardError::new(
                &self.path,
                format!("tensor {name:?} is not 2-D: {:?}", e.shape),
            ));
        };
        if row >= rows {
            return Err(ShardError::new(
                &self.path,
                format!("row {row} out of range for {name:?} with {rows} rows"),
            ));
        }
        let slice = &bytes[row * cols * 4..(row + 1) * cols * 4];
        Ok(slice
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// Recomputes every tensor's SHA-256 and compares it with the
    /// `sha256.<name>` metadata; a tensor without a checksum is an error too.
    pub fn verify(&self) -> Result<(), ShardError> {
        let mut names: Vec<&String> = self.tensors.keys().collect();
        names.sort();
        for name in names {
            let key = format!("{CHECKSUM_PREFIX}{name}");
            let expected = self
                .metadata
                .get(&key)
                .ok_or_else(|| ShardError::new(&self.path, format!("no checksum ({key}) for tensor {name:?}")))?;
            let e = &self.tensors[name];
            let actual = sha256_hex(&self.map[e.start..e.end]);
            if &actual != expected {
                return Err(ShardError::new(
                    &self.path,
                    format!(
                        "checksum mismatch in tensor {name:?}: stored {expected}, computed {actual} (file damaged)"
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(dir: &Path) -> PathBuf {
        let path = dir.join("s.safetensors");
        let values: Vec<f32> = (0..12).map(|i| i as f32 * 0.5).collect();
        let ids: Vec<u8> = (0..3 * 32).map(|i| i as u8).collect();
        let mut meta = BTreeMap::new();
        meta.insert("format".to_string(), "test".to_string());
        write_shard(
            &path,
            &[
                TensorData::f32("embeddings", vec![3, 4], &values),
                TensorData::u8("hashes", vec![3, 32], &ids),
            ],
            &meta,
        )
        .unwrap();
        path
    }

    #[test]
    fn round_trip_is_standard_safetensors() {
        let dir = tempfile::tempdir().unwrap();
        let path = sample(dir.path());
        let bytes = std::fs::read(&path).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.tensor("embeddings").unwrap().shape(), &[3, 4]);
        let shard = ShardFile::open(&path).unwrap();
        shard.verify().unwrap();
        assert_eq!(shard.f32_row("embeddings", 1).unwrap(), vec![2.0, 2.5, 3.0, 3.5]);
        assert_eq!(shard.metadata()["format"], "test");
        assert_eq!(shard.bytes("hashes", Dtype::U8).unwrap()[32], 32);
    }

    #[test]
    fn truncation_and_bit_flips_are_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = sample(dir.path());
        let bytes = std::fs::read(&path).unwrap();

        std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
        let err = ShardFile::open(&path).unwrap_err();
        assert!(err.to_string().contains("s.safetensors"), "{err}");

        let mut flipped = bytes.clone();
        let n = flipped.len();
        flipped[n - 40] ^= 0x10;
        std::fs::write(&path, &flipped).unwrap();
        let shard = ShardFile::open(&path).unwrap();
        let err = shard.verify().unwrap_err();
        assert!(err.message.contains("checksum mismatch"), "{err}");

        std::fs::write(&path, b"").unwrap();
        assert!(ShardFile::open(&path).is_err());
    }

    #[test]
    fn wrong_sizes_are_refused_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.safetensors");
        let err = write_shard(&path, &[TensorData::f32("x", vec![2, 2], &[1.0])], &BTreeMap::new()).unwrap_err();
        assert!(err.message.contains("needs 16 bytes"));
        assert!(!path.exists());
    }
}
