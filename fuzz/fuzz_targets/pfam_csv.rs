//! Pfam split CSV shard reader: any bytes give records or an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use protfam::io::pfam_csv::ShardReader;

fuzz_target!(|data: &[u8]| {
    let Ok(reader) = ShardReader::from_reader(data, "data-00000-of-00001") else {
        return;
    };
    for (i, record) in reader.enumerate() {
        if i > 100_000 {
            break;
        }
        if let Err(e) = record {
            let _ = e.to_string();
        }
    }
});
