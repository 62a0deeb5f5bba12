//! Embedding-cache shard loader: open, read every tensor, verify the checksums.
#![no_main]
use libfuzzer_sys::fuzz_target;
use protfam::cache::shard::ShardFile;

const DTYPES: [safetensors::Dtype; 4] = [
    safetensors::Dtype::F32,
    safetensors::Dtype::U8,
    safetensors::Dtype::U32,
    safetensors::Dtype::F16,
];

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shard.safetensors");
    std::fs::write(&path, data).unwrap();
    let Ok(file) = ShardFile::open(&path) else {
        return;
    };
    let names: Vec<String> = file.tensor_names().iter().map(|s| s.to_string()).collect();
    for name in &names {
        let _ = file.shape(name);
        for dtype in DTYPES {
            let _ = file.bytes(name, dtype);
        }
        for row in 0..3 {
            let _ = file.f32_row(name, row);
        }
    }
    let _ = file.verify();
});
