//! Domain calls as TSV, JSON or GFF3, one protein at a time in input order
//! (a [`DomainWriter`] streams; the caller makes the file atomic).
//!
//! TSV columns follow `pfam_scan`'s order where a column has a counterpart
//! (sequence, envelope, accession, name, match span and length, score,
//! significance): `sequence_id start end family_accession family_id
//! best_match match_start match_end match_length score evalue confidence
//! confident sequence_length note`. A protein without a reported call gets one
//! row with `-` in the call columns and the reason in `note`.

use std::io::Write;

use super::{DomainCall, ProteinDomains};

/// Output format of domain calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainFormat {
    Tsv,
    Json,
    Gff3,
}

impl std::str::FromStr for DomainFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tsv" => Ok(DomainFormat::Tsv),
            "json" => Ok(DomainFormat::Json),
            "gff3" | "gff" => Ok(DomainFormat::Gff3),
            other => Err(format!("unknown domain output format {other:?} (tsv, json or gff3)")),
        }
    }
}

impl DomainFormat {
    /// The name `--format` takes.
    pub fn name(self) -> &'static str {
        match self {
            DomainFormat::Tsv => "tsv",
            DomainFormat::Json => "json",
            DomainFormat::Gff3 => "gff3",
        }
    }
}

pub const TSV_HEADER: &str = "sequence_id\tstart\tend\tfamily_accession\tfamily_id\tbest_match\tmatch_start\tmatch_end\tmatch_length\tscore\tevalue\tconfidence\tconfident\tsequence_length\tnote";

/// One protein's calls as a [`DomainWriter`] writes them (JSON's separator
/// aside), with its count of confident calls: the row of a `domains scan
/// --shard` part, so that the merge writes the very bytes of one process.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FormattedProtein {
    pub text: String,
    pub confident: usize,
}

/// Writes proteins one at a time; [`Self::finish`] closes the document.
pub struct DomainWriter<W: Write> {
    out: W,
    format: DomainFormat,
    /// Also write calls below the confidence cut (flagged `confident = false`).
    pub all_calls: bool,
    written: usize,
}

impl<W: Write> DomainWriter<W> {
    pub fn new(mut out: W, format: DomainFormat, all_calls: bool) -> std::io::Result<Self> {
        match format {
            DomainFormat::Tsv => writeln!(out, "{TSV_HEADER}")?,
            DomainFormat::Json => write!(out, "[")?,
            DomainFormat::Gff3 => writeln!(out, "##gff-version 3")?,
        }
        Ok(DomainWriter {
            out,
            format,
            all_calls,
            written: 0,
        })
    }

    fn shown<'p>(&self, p: &'p ProteinDomains) -> Vec<&'p DomainCall> {
        p.calls.iter().filter(|c| self.all_calls || c.confident).collect()
    }

    /// The reason a protein has no shown call.
    fn empty_note(p: &ProteinDomains) -> String {
        match &p.note {
            Some(note) => format!("no confident domain: {note}"),
            None => "no confident domain".into(),
        }
    }

    pub fn write(&mut self, p: &ProteinDomains) -> std::io::Result<()> {
        let text = self.format_protein(p);
        self.write_formatted(&FormattedProtein {
            text,
            confident: p.confident().count(),
        })
    }

    /// Writes one protein formatted by [`Self::format_protein`] of a writer with
    /// the same format and `all_calls` (a `domains scan --shard` part's row).
    pub fn write_formatted(&mut self, p: &FormattedProtein) -> std::io::Result<()> {
        if self.format == DomainFormat::Json {
            write!(self.out, "{}", if self.written == 0 { "\n" } else { ",\n" })?;
        }
        self.out.write_all(p.text.as_bytes())?;
        self.written += 1;
        Ok(())
    }

    /// The bytes [`Self::write`] adds for `p`, less the separator JSON puts between proteins.
    pub fn format_protein(&self, p: &ProteinDomains) -> String {
        let mut out = Vec::new();
        self.format_into(&mut out, p).expect("writing to a Vec cannot fail");
        String::from_utf8(out).expect("formatted from strings")
    }

    fn format_into(&self, out: &mut Vec<u8>, p: &ProteinDomains) -> std::io::Result<()> {
        let calls = self.shown(p);
        match self.format {
            DomainFormat::Tsv => {
                if calls.is_empty() {
                    writeln!(
                        out,
                        "{}\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\tfalse\t{}\t{}",
                        p.sequence_id,
                        p.length,
                        Self::empty_note(p)
                    )?;
                }
                for c in calls {
                    writeln!(
                        out,
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{:.2}\t{}\t{}\t{}\t{}\t",
                        p.sequence_id,
                        c.start,
                        c.end,
                        c.family.accession,
                        c.family.family_id,
                        c.best_match,
                        c.match_start,
                        c.match_end,
                        c.match_len,
                        c.score,
                        c.evalue.map_or("-".to_string(), |e| format!("{e:.2e}")),
                        c.confidence.map_or("-".to_string(), |p| format!("{p:.3}")),
                        c.confident,
                        p.length
                    )?;
                }
            }
            DomainFormat::Json => {
                let calls: Vec<serde_json::Value> = calls
                    .iter()
                    .map(|c| {
                        serde_json::json!({
                            "start": c.start,
                            "end": c.end,
                            "family_id": c.family.family_id,
                            "family_accession": c.family.accession,
                            "score": c.score,
                            "evalue": c.evalue,
                            "confidence": c.confidence,
                            "confident": c.confident,
                            "best_match": {"id": c.best_match, "start": c.match_start, "end": c.match_end, "length": c.match_len},
                        })
                    })
                    .collect();
                let note = if calls.is_empty() {
                    Some(Self::empty_note(p))
                } else {
                    None
                };
                let value = serde_json::json!({
                    "sequence_id": p.sequence_id,
                    "length": p.length,
                    "domains": calls,
                    "note": note,
                });
                write!(out, "{value}")?;
            }
            DomainFormat::Gff3 => {
                let seqid = gff_escape(&p.sequence_id, false);
                writeln!(out, "##sequence-region {seqid} 1 {}", p.length.max(1))?;
                for (i, c) in calls.iter().enumerate() {
                    let mut attributes = format!(
                        "ID={}.d{};Name={};Dbxref=Pfam:{};best_match={};match_span={}-{}/{};confident={}",
                        gff_escape(&p.sequence_id, true),
                        i + 1,
                        gff_escape(&c.family.family_id, true),
                        gff_escape(&c.family.accession, true),
                        gff_escape(&c.best_match, true),
                        c.match_start,
                        c.match_end,
                        c.match_len,
                        c.confident
                    );
                    if let Some(p) = c.confidence {
                        attributes.push_str(&format!(";confidence={p:.3}"));
                    }
                    if let Some(e) = c.evalue {
                        attributes.push_str(&format!(";evalue={e:.2e}"));
                    }
                    writeln!(
                        out,
                        "{seqid}\tprotfam\tprotein_domain\t{}\t{}\t{:.2}\t.\t.\t{attributes}",
                        c.start, c.end, c.score
                    )?;
                }
                if calls.is_empty() {
                    writeln!(out, "# {seqid}: {}", Self::empty_note(p))?;
                }
            }
        }
        Ok(())
    }

    /// Closes the document and returns the writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        if self.format == DomainFormat::Json {
            writeln!(self.out, "{}]", if self.written == 0 { "" } else { "\n" })?;
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Percent-encodes what GFF3 reserves: tabs, newlines, `%` and control
/// characters everywhere, and `; = & ,` inside attribute values.
fn gff_escape(s: &str, attribute: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        let reserved = ch.is_control() || ch == '%' || (attribute && matches!(ch, ';' | '=' | '&' | ','));
        if reserved {
            let mut buf = [0u8; 4];
            for b in ch.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(ch);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domains::call;

    fn proteins() -> Vec<ProteinDomains> {
        let mut weak = call(200, 260, "PF2", 3.0);
        weak.confident = false;
        vec![
            ProteinDomains {
                sequence_id: "sp|P1|A;B".into(),
                length: 300,
                calls: vec![call(10, 120, "PF1", 42.5), weak],
                note: None,
            },
            ProteinDomains {
                sequence_id: "p2".into(),
                length: 0,
                calls: vec![],
                note: Some("no searchable residue".into()),
            },
        ]
    }

    fn render(format: DomainFormat, all: bool) -> String {
        let mut w = DomainWriter::new(Vec::new(), format, all).unwrap();
        for p in proteins() {
            w.write(&p).unwrap();
        }
        String::from_utf8(w.finish().unwrap()).unwrap()
    }

    #[test]
    fn tsv_has_one_row_per_confident_call_and_one_for_a_protein_without() {
        let text = render(DomainFormat::Tsv, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], TSV_HEADER);
        assert_eq!(lines.len(), 3, "{text}");
        let first: Vec<&str> = lines[1].split('\t').collect();
        assert_eq!(first.len(), TSV_HEADER.split('\t').count());
        assert_eq!(&first[..5], ["sp|P1|A;B", "10", "120", "PF1", "fam_PF1"]);
        assert_eq!(first[9], "42.50");
        let none: Vec<&str> = lines[2].split('\t').collect();
        assert_eq!(none.len(), first.len());
        assert_eq!(none[14], "no confident domain: no searchable residue");
        assert_eq!(render(DomainFormat::Tsv, true).lines().count(), 4);
    }

    #[test]
    fn json_is_one_valid_array_in_input_order() {
        let v: serde_json::Value = serde_json::from_str(&render(DomainFormat::Json, false)).unwrap();
        let arr = v.as_array().unwrap();
        assert_eq!(arr.len(), 2);
        assert_eq!(arr[0]["domains"][0]["family_accession"], "PF1");
        assert_eq!(arr[0]["domains"].as_array().unwrap().len(), 1);
        assert!(arr[1]["note"].as_str().unwrap().starts_with("no confident domain"));
        let empty = DomainWriter::new(Vec::new(), DomainFormat::Json, false).unwrap();
        let text = String::from_utf8(empty.finish().unwrap()).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            serde_json::json!([])
        );
    }

    #[test]
    fn gff3_features_escape_reserved_characters() {
        let text = render(DomainFormat::Gff3, false);
        assert!(text.starts_with("##gff-version 3\n"));
        let feature: Vec<&str> = text
            .lines()
            .find(|l| !l.starts_with('#'))
            .unwrap()
            .split('\t')
            .collect();
        assert_eq!(feature.len(), 9);
        assert_eq!(&feature[..5], ["sp|P1|A;B", "protfam", "protein_domain", "10", "120"]);
        assert!(
            feature[8].starts_with("ID=sp|P1|A%3BB.d1;Name=fam_PF1;Dbxref=Pfam:PF1;"),
            "{}",
            feature[8]
        );
    }
}
