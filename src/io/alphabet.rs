//! Residue policy: which letters a protein sequence may contain.
//!
//! The 20 standard amino acids and `X` are accepted; the ambiguous or rare
//! `B`, `Z`, `U`, `O`, `J` are accepted too and each model maps them as its
//! reference implementation does. Anything else is an error naming the file
//! and record (or, leniently, a counted warning and the record skipped).

/// Letters every model accepts (after upper-casing).
pub const ACCEPTED: &[u8] = b"ACDEFGHIKLMNPQRSTVWYXBZUOJ";

/// Checks a sequence; on failure returns a message naming the first bad residue.
pub fn check(sequence: &str) -> Result<(), String> {
    if sequence.is_empty() {
        return Err("empty sequence".to_string());
    }
    for (i, b) in sequence.bytes().enumerate() {
        if !ACCEPTED.contains(&b.to_ascii_uppercase()) {
            let shown = if b.is_ascii_graphic() { format!("{:?}", b as char) } else { format!("byte 0x{b:02x}") };
            return Err(format!("invalid residue {shown} at position {}", i + 1));
        }
    }
    Ok(())
}
