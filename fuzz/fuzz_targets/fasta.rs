//! FASTA reader: any bytes give records or an error naming the line, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use protfam::io::fasta::Reader;

fuzz_target!(|data: &[u8]| {
    let mut reader = Reader::with_name(data, "fuzz.fa").reject_duplicates(data.first() == Some(&b'>'));
    for record in reader.records() {
        match record {
            Ok(r) => {
                let _ = protfam::io::alphabet::check(&r.sequence);
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
    let _ = reader.duplicates().len();
});
