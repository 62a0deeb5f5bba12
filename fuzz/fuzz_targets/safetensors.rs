//! Hugging Face `model.safetensors` checkpoint loader: any bytes give a
//! checkpoint whose tensors can be read, or an error naming the file.
#![no_main]
use libfuzzer_sys::fuzz_target;
use protfam::models::weights::Checkpoint;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), "{}").unwrap();
    std::fs::write(dir.path().join("model.safetensors"), data).unwrap();
    let Ok(ckpt) = Checkpoint::open(dir.path()) else {
        return;
    };
    let names: Vec<String> = ckpt.names().iter().map(|s| s.to_string()).collect();
    let vb = ckpt.var_builder(candle_core::DType::F32, &candle_core::Device::Cpu);
    for name in names.iter().take(8) {
        if let Some(entry) = ckpt.entry(name) {
            let shape = entry.shape.clone();
            let _ = vb.get(shape, name);
        }
    }
});
