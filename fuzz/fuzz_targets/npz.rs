//! NumPy `.npz` weight loader (NEAR, UniRep): any bytes give arrays or an error.
#![no_main]
use libfuzzer_sys::fuzz_target;
use protfam::models::npz::NpzWeights;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weights.npz");
    std::fs::write(&path, data).unwrap();
    if let Ok(w) = NpzWeights::open(&path) {
        for name in ["w", "b", "layer0", "embedding"] {
            let _ = w.get_any(name);
            let _ = w.get(name, &[2, 2]);
        }
    }
});
