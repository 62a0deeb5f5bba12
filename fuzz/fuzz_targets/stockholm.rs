//! Stockholm reader: any bytes give alignments or an error naming the line, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use protfam::io::stockholm::Reader;

fuzz_target!(|data: &[u8]| {
    let mut reader = Reader::with_name(data, "fuzz.sto");
    // A reader yields errors then ends; the bound stops a reader that never ends.
    for _ in 0..10_000 {
        match reader.next_alignment() {
            None => break,
            Some(Ok(a)) => {
                let _ = format!("{a:?}").len();
            }
            Some(Err(e)) => {
                let _ = e.to_string();
            }
        }
    }
});
