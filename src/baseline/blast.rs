//! The BLAST baseline: the training sequences as a BLAST+ protein database,
//! every test sequence searched with `blastp`, the family of the top hit
//! wins.
//!
//! Recipe and why:
//! - `makeblastdb -dbtype prot` over the raw training `sequence`s, named
//!   `t<index>` in file order (so hits map back to families without parsing
//!   user ids; the cache is keyed by the training digest, so the indices are
//!   stable).
//! - `blastp` with its defaults (BLOSUM62, composition-based statistics,
//!   E-value threshold 10) and `-max_target_seqs 50`: we only need the top
//!   hit, but very small values change which hits BLAST keeps during its
//!   heuristic stages, so a margin is kept.
//! - The top hit is the row with the highest bit score, then the lowest
//!   E-value, then the first in BLAST's own output order (BLAST is
//!   deterministic), so ties resolve the same way on every run. Queries are
//!   split into chunks searched in parallel, one single-threaded `blastp` per
//!   chunk; every query is searched on its own, so the answer does not depend
//!   on the chunking.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use super::data::{parse_index, TestSet, TrainingSet};
use super::search;
use super::tools::Tool;
use super::{io_error, BaselineError, BaselineOptions, Hit};

/// Database name (prefix of the BLAST index files) inside the cache directory.
pub const DATABASE: &str = "train";

/// `blastp` arguments besides query, database and threads; part of the cache key through [`recipe`].
pub const BLASTP_ARGS: [&str; 4] = ["-outfmt", "6", "-max_target_seqs", "50"];

/// The recipe string that, with the training digest, keys the cache.
pub fn recipe() -> String {
    "makeblastdb -dbtype prot; ids t<index> in file order".to_string()
}

/// The programs the BLAST baseline needs.
pub struct BlastTools {
    pub makeblastdb: Tool,
    pub blastp: Tool,
}

impl BlastTools {
    pub fn find(tool_dir: Option<&Path>) -> Result<Self, BaselineError> {
        Ok(BlastTools {
            makeblastdb: Tool::find("makeblastdb", tool_dir)?,
            blastp: Tool::find("blastp", tool_dir)?,
        })
    }
}

/// Builds the protein database of the training sequences into `dir`.
pub fn build_database(train: &TrainingSet, dir: &Path, tools: &BlastTools) -> Result<(), BaselineError> {
    let fasta = dir.join("train.fasta");
    {
        let mut out = BufWriter::new(File::create(&fasta).map_err(|e| io_error(&fasta, e))?);
        for (i, (seq, _)) in train.sequences.iter().enumerate() {
            writeln!(out, ">t{i}\n{seq}").map_err(|e| io_error(&fasta, e))?;
        }
        out.flush().map_err(|e| io_error(&fasta, e))?;
    }
    let args = [
        "-dbtype".to_string(),
        "prot".to_string(),
        "-in".to_string(),
        fasta.display().to_string(),
        "-out".to_string(),
        dir.join(DATABASE).display().to_string(),
        "-title".to_string(),
        "protfam training sequences".to_string(),
    ];
    tools.makeblastdb.run(&args, None, None, &dir.join("makeblastdb.log"))?;
    let _ = std::fs::remove_file(dir.join("makeblastdb.log"));
    std::fs::remove_file(&fasta).map_err(|e| io_error(&fasta, e))?;
    Ok(())
}

/// Searches every test sequence against the database in `dir`; returns the
/// top hit per test sequence labelled with the hit's training family.
pub fn search(
    dir: &Path,
    train: &TrainingSet,
    test: &TestSet,
    tools: &BlastTools,
    opts: &BaselineOptions,
) -> Result<Vec<Option<Hit>>, BaselineError> {
    let scratch = tempfile::Builder::new()
        .prefix("blastp-")
        .tempdir_in(dir)
        .map_err(|e| io_error(dir, e))?;
    let database = dir.join(DATABASE).display().to_string();
    let indices: Vec<usize> = (0..test.names.len()).collect();
    let rows = search::in_chunks(opts, &indices, "sequences", "blastp", |c, chunk| {
        let out = scratch.path().join(format!("chunk-{c:05}.tsv"));
        let mut args: Vec<String> = BLASTP_ARGS.iter().map(|s| s.to_string()).collect();
        args.extend(
            ["-num_threads", "1", "-query", "-", "-db"]
                .iter()
                .map(|s| s.to_string()),
        );
        args.push(database.clone());
        let mut feed = |w: &mut dyn Write| -> std::io::Result<()> {
            for &i in chunk.iter() {
                writeln!(w, ">q{i}\n{}", test.sequences[i])?;
            }
            Ok(())
        };
        tools.blastp.run(
            &args,
            Some(&mut feed),
            Some(&out),
            &scratch.path().join(format!("chunk-{c:05}.log")),
        )?;
        let hits = read_outfmt6(&out)?;
        let _ = std::fs::remove_file(&out);
        Ok(hits)
    })?;
    best_hits(rows.iter(), train, test.names.len(), dir)
}

/// Top hit per query: highest bit score, then lowest E-value, then the first
/// row in output order; the subject's family becomes the hit's label.
pub fn best_hits<'a>(
    rows: impl Iterator<Item = &'a BlastHit>,
    train: &TrainingSet,
    n_queries: usize,
    context: &Path,
) -> Result<Vec<Option<Hit>>, BaselineError> {
    let mut best: Vec<Option<Hit>> = vec![None; n_queries];
    for row in rows {
        let q = search::test_index(&row.query, n_queries, context, "blastp", "query")?;
        let s = subject_index(&row.subject)
            .filter(|&i| i < train.sequences.len())
            .ok_or_else(|| BaselineError::Parse {
                path: context.display().to_string(),
                line: 0,
                message: format!("blastp reported unknown subject {:?}", row.subject),
            })?;
        let family = &train.families[train.sequences[s].1].family;
        let candidate = Hit {
            accession: family.accession.clone(),
            score: row.bitscore,
            evalue: row.evalue,
        };
        // Strictly better only: an equal row later in BLAST's order does not replace the earlier one.
        let better = match &best[q] {
            None => true,
            Some(b) => candidate.score > b.score || (candidate.score == b.score && candidate.evalue < b.evalue),
        };
        if better {
            best[q] = Some(candidate);
        }
    }
    Ok(best)
}

/// `t<index>`, or `gnl|BL_ORD_ID|<index>` where BLAST replaces local ids with database ordinals.
fn subject_index(id: &str) -> Option<usize> {
    parse_index(id, 't').or_else(|| id.strip_prefix("gnl|BL_ORD_ID|")?.parse().ok())
}

/// One row of BLAST's tabular output (`-outfmt 6`, the 12 standard columns).
#[derive(Debug, Clone, PartialEq)]
pub struct BlastHit {
    pub query: String,
    pub subject: String,
    pub percent_identity: f64,
    pub length: u64,
    pub mismatches: u64,
    pub gap_opens: u64,
    pub query_start: u64,
    pub query_end: u64,
    pub subject_start: u64,
    pub subject_end: u64,
    pub evalue: f64,
    pub bitscore: f64,
}

/// Reads an `-outfmt 6` file; see [`parse_outfmt6`].
pub fn read_outfmt6(path: &Path) -> Result<Vec<BlastHit>, BaselineError> {
    let file = File::open(path).map_err(|e| io_error(path, e))?;
    parse_outfmt6(BufReader::new(file), path)
}

/// Parses BLAST's `-outfmt 6` (tab-separated, 12 columns; `#` lines of
/// `-outfmt 7` are skipped). Errors name the file and line.
pub fn parse_outfmt6(reader: impl BufRead, path: &Path) -> Result<Vec<BlastHit>, BaselineError> {
    search::parse_table(reader, path, |line, at| {
        let f: Vec<&str> = line.trim_end_matches('\r').split('\t').collect();
        if f.len() != 12 {
            return Err(at.error(format!("expected 12 tab-separated columns, found {}", f.len())));
        }
        let real = |k: usize, what: &str| at.parse::<f64>(&f, k, what, "number");
        let int = |k: usize, what: &str| at.parse::<u64>(&f, k, what, "count");
        Ok(BlastHit {
            query: f[0].to_string(),
            subject: f[1].to_string(),
            percent_identity: real(2, "pident")?,
            length: int(3, "length")?,
            mismatches: int(4, "mismatch")?,
            gap_opens: int(5, "gapopen")?,
            query_start: int(6, "qstart")?,
            query_end: int(7, "qend")?,
            subject_start: int(8, "sstart")?,
            subject_end: int(9, "send")?,
            evalue: real(10, "evalue")?,
            bitscore: real(11, "bitscore")?,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::data::FamilyRows;
    use crate::io::Family;

    #[test]
    fn parses_rows_and_rejects_malformed_ones() {
        let text = "# BLASTP 2.12.0+\nq0\tt6810\t100.000\t34\t0\t0\t1\t34\t34\t67\t3.87e-16\t63.5\n";
        let hits = parse_outfmt6(text.as_bytes(), Path::new("x.tsv")).unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!((hits[0].query.as_str(), hits[0].subject.as_str()), ("q0", "t6810"));
        assert_eq!((hits[0].evalue, hits[0].bitscore, hits[0].length), (3.87e-16, 63.5, 34));
        let err = parse_outfmt6("q0\tt1\t1\n".as_bytes(), Path::new("x.tsv"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("x.tsv:1") && err.contains("12"), "{err}");
        let err = parse_outfmt6(
            "q0\tt1\t9\t3\t0\t0\t1\t3\t1\t3\tlow\t5.0\n".as_bytes(),
            Path::new("y.tsv"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("y.tsv:1") && err.contains("evalue"), "{err}");
    }

    #[test]
    fn top_hit_is_highest_bitscore_and_first_among_equals() {
        let fam = |id: &str, acc: &str| FamilyRows {
            family: Family::new(id, acc),
            rows: vec![],
        };
        let train = TrainingSet {
            families: vec![fam("A", "PF1"), fam("B", "PF2"), fam("C", "PF3")],
            sequences: vec![("M".into(), 0), ("M".into(), 1), ("M".into(), 2)],
            digest: String::new(),
        };
        let row = |q: &str, s: &str, evalue: f64, bitscore: f64| BlastHit {
            query: q.into(),
            subject: s.into(),
            percent_identity: 50.0,
            length: 10,
            mismatches: 5,
            gap_opens: 0,
            query_start: 1,
            query_end: 10,
            subject_start: 1,
            subject_end: 10,
            evalue,
            bitscore,
        };
        let rows = [
            row("q0", "t0", 1e-5, 40.0),
            row("q0", "t2", 1e-6, 42.0),
            row("q1", "t2", 1e-5, 40.0),
            row("q1", "t0", 1e-5, 40.0),
            row("q1", "gnl|BL_ORD_ID|1", 1e-6, 40.0),
        ];
        let best = best_hits(rows.iter(), &train, 3, Path::new("t")).unwrap();
        assert_eq!(best[0].as_ref().unwrap().accession, "PF3");
        assert_eq!(best[1].as_ref().unwrap().accession, "PF2");
        assert!(best[2].is_none());
        assert!(best_hits([row("q0", "t7", 1.0, 1.0)].iter(), &train, 3, Path::new("t")).is_err());
    }
}
