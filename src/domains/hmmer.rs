//! The profile-HMM baseline for domain annotation: `hmmscan --domtblout` of
//! whole proteins against the HMM baseline's database (one profile per family,
//! built from the training alignments only: [`crate::baseline::hmm_database`]).
//!
//! Every reported domain becomes a call on its envelope (`env from`..`env to`)
//! with the domain bit score as its score and the independent E-value; calls
//! are resolved by score as Pfam resolves overlaps, and the bit-score cut is
//! fitted on the tuning set exactly as protfam's own ([`super::eval`]).
//! The proteins are split into chunks scanned by parallel single-threaded
//! `hmmscan` processes; E-values do not depend on the chunking (`hmmscan`'s
//! database size is the number of profiles).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use super::{resolve_overlaps, DomainCall, DomainError, ProteinDomains};
use crate::baseline::search::{in_chunks, parse_table, test_index};
use crate::baseline::tools::Tool;
use crate::baseline::{io_error, BaselineError, BaselineOptions, TrainingSet};
use crate::io::{Family, Record};

/// Reporting thresholds: weak domains are kept (the cut is fitted later), hopeless ones not.
pub const HMMSCAN_ARGS: [&str; 7] = ["--cpu", "1", "--noali", "-E", "10", "--domE", "10"];

/// Scans `proteins` against the pressed database in `db_dir`; one entry per protein, input order.
/// The proteins are chunked and scanned by single-threaded `hmmscan` processes on the worker
/// pool, as the HMM baseline's `hmmsearch` runs are ([`crate::baseline::search::in_chunks`]).
pub fn scan(
    db_dir: &Path,
    train: &TrainingSet,
    proteins: &[Record],
    opts: &BaselineOptions,
) -> Result<Vec<ProteinDomains>, DomainError> {
    let hmmscan = Tool::find("hmmscan", opts.tool_dir.as_deref())?;
    let database = db_dir.join(crate::baseline::hmm::DATABASE);
    let families: HashMap<&str, &Family> = train
        .families
        .iter()
        .map(|f| (f.family.accession.as_str(), &f.family))
        .collect();
    let scratch = tempfile::Builder::new()
        .prefix("hmmscan-")
        .tempdir_in(db_dir)
        .map_err(|e| DomainError::io(db_dir, "cannot make a scratch directory", e))?;
    let indexed: Vec<(usize, &Record)> = proteins.iter().enumerate().collect();
    let rows = in_chunks(opts, &indexed, "proteins", "hmmscan", |c, chunk| {
        let fasta = scratch.path().join(format!("chunk-{c:05}.fasta"));
        let tbl = scratch.path().join(format!("chunk-{c:05}.domtbl"));
        let file = std::fs::File::create(&fasta).map_err(|e| io_error(&fasta, e))?;
        let mut out = BufWriter::new(file);
        for (i, record) in chunk {
            // Ids of any shape (spaces, `|`) never reach HMMER: proteins are `q<index>`.
            writeln!(out, ">q{i}\n{}", record.sequence).map_err(|e| io_error(&fasta, e))?;
        }
        out.flush().map_err(|e| io_error(&fasta, e))?;
        drop(out);
        let mut args: Vec<String> = HMMSCAN_ARGS.iter().map(|s| s.to_string()).collect();
        args.extend([
            "-o".into(),
            "/dev/null".into(),
            "--domtblout".into(),
            tbl.display().to_string(),
        ]);
        args.extend([database.display().to_string(), fasta.display().to_string()]);
        hmmscan.run(&args, None, None, &scratch.path().join(format!("chunk-{c:05}.log")))?;
        let file = std::fs::File::open(&tbl).map_err(|e| io_error(&tbl, e))?;
        parse_domtblout(BufReader::new(file), &tbl, &families, proteins.len())
    })?;
    let mut per_protein: Vec<Vec<DomainCall>> = vec![Vec::new(); proteins.len()];
    for (i, call) in rows {
        per_protein[i].push(call);
    }
    Ok(per_protein
        .into_iter()
        .zip(proteins)
        .map(|(calls, r)| {
            let calls = resolve_overlaps(calls);
            ProteinDomains {
                sequence_id: r.id.clone(),
                length: r.sequence.len(),
                note: calls.is_empty().then(|| "no profile reported a domain".to_string()),
                calls,
            }
        })
        .collect())
}

/// Parses `hmmscan --domtblout` rows (target = profile named by accession, query = `q<index>`
/// below `n_queries`) with the baseline's table reader.
fn parse_domtblout(
    reader: impl BufRead,
    path: &Path,
    families: &HashMap<&str, &Family>,
    n_queries: usize,
) -> Result<Vec<(usize, DomainCall)>, BaselineError> {
    parse_table(reader, path, |line, at| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 22 {
            return Err(at.error(format!("expected at least 22 columns, found {}", f.len())));
        }
        let number = |k: usize, what: &str| at.parse::<f64>(&f, k, what, "number");
        let position = |k: usize, what: &str| at.parse::<usize>(&f, k, what, "position");
        let query = test_index(f[3], n_queries, path, "hmmscan", "protein")?;
        let accession = f[0];
        let family = families
            .get(accession)
            .map(|f| (*f).clone())
            .unwrap_or_else(|| Family::new("", accession));
        Ok((
            query,
            DomainCall {
                start: position(19, "env from")?,
                end: position(20, "env to")?,
                family,
                score: number(13, "domain score")?,
                evalue: Some(number(12, "i-Evalue")?),
                confidence: None,
                confident: false,
                best_match: accession.to_string(),
                match_start: position(15, "hmm from")?,
                match_end: position(16, "hmm to")?,
                match_len: position(2, "tlen")?,
            },
        ))
    })
}

/// Reads a `hmmscan --domtblout` file of up to `n_queries` proteins; errors name the file and line.
pub fn read_domtblout(
    path: &Path,
    families: &HashMap<&str, &Family>,
    n_queries: usize,
) -> Result<Vec<(usize, DomainCall)>, DomainError> {
    let file = std::fs::File::open(path).map_err(|e| DomainError::io(path, "cannot open", e))?;
    parse_domtblout(BufReader::new(file), path, families, n_queries).map_err(|e| match e {
        BaselineError::Parse { path, line, message } => DomainError::Parse { path, line, message },
        other => DomainError::Baseline(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_domtblout_envelopes_scores_and_evalues() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.domtbl");
        std::fs::write(
            &path,
            "# comment\n\
             PF00009              -            187 q3                   -            600   1.2e-50  170.1   0.1   1   2   1e-30   2.5e-48  160.0   0.1     2   186     5   190     3   192 0.95 -\n",
        )
        .unwrap();
        let fam = Family::new("GTP_EFTU", "PF00009");
        let families: HashMap<&str, &Family> = [("PF00009", &fam)].into_iter().collect();
        let rows = read_domtblout(&path, &families, 4).unwrap();
        assert_eq!(rows.len(), 1);
        let (q, c) = &rows[0];
        assert_eq!(*q, 3);
        assert_eq!(
            (c.start, c.end, c.match_start, c.match_end, c.match_len),
            (3, 192, 2, 186, 187)
        );
        assert_eq!(c.score, 160.0);
        assert_eq!(c.evalue, Some(2.5e-48));
        assert_eq!(c.family.family_id, "GTP_EFTU");
        std::fs::write(&path, "PF00009 - 187 q3 - 600 x\n").unwrap();
        let err = read_domtblout(&path, &families, 4).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }
}
