//! The profile-HMM baseline ("TopHMM" of Bileschi et al.): one HMMER profile
//! per family built from the family's training alignment, every test
//! sequence scored against all profiles, the best full-sequence bit score
//! wins.
//!
//! Recipe and why:
//! - `hmmbuild --amino` with the default `--fast` construction (a column is a
//!   match state when at least half of the rows have a residue there,
//!   `--symfrac 0.5`). `--hand` would need a reference (`#=GC RF`) line saying
//!   which columns are the Pfam model's consensus columns; the split's
//!   `aligned_sequence` rows carry consensus and insert columns alike (upper
//!   case, `.` gaps), so that line cannot be recovered and `--fast` is what
//!   the rows support. Columns that are gaps in every training row become
//!   insert columns and drop out.
//! - Models are named by family accession and concatenated in accession
//!   order into `pfam.hmm`, which is `hmmpress`ed so the cached database also
//!   serves `hmmscan`.
//! - The search runs `hmmsearch` (models against the test set) rather than
//!   `hmmscan`: bit scores and therefore the top family are identical (checked
//!   on the bundled clustered split: the same top family for every test
//!   sequence), and `hmmsearch` is about seven times faster because it does not
//!   re-read the profile database for every query. The models are split into
//!   chunks searched in parallel, one single-threaded `hmmsearch` per chunk,
//!   with `-Z` unchanged (the whole test set), so E-values do not depend on
//!   the chunking.
//! - Reporting thresholds `-E 1000 --domE 1000`: nothing that passes HMMER's
//!   acceleration filters is dropped for a poor E-value. The filters stay on
//!   by default, as in HMMER's and Bileschi's standard use; a sequence that no
//!   profile passes has no hit and counts as an error. `--max` (opt-in) turns
//!   the filters off so that every sequence gets a best profile; it is much
//!   slower (every model-sequence pair gets a full Forward/Backward pass).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use rayon::prelude::*;

use super::data::{TestSet, TrainingSet};
use super::search;
use super::tools::Tool;
use super::{io_error, BaselineError, BaselineOptions, Hit};

/// The database file inside the cache directory.
pub const DATABASE: &str = "pfam.hmm";
/// Byte range of each model in [`DATABASE`]: `accession\tstart\tend`.
pub const MODEL_INDEX: &str = "models.tsv";

/// `hmmbuild` arguments (before output and input paths); part of the cache key.
pub const HMMBUILD_ARGS: [&str; 3] = ["--amino", "--cpu", "0"];

/// The recipe string that, with the training digest, keys the cache.
pub fn recipe() -> String {
    format!(
        "hmmbuild {} -n <accession> (fast, symfrac 0.5); Stockholm rows in file order",
        HMMBUILD_ARGS.join(" ")
    )
}

/// The programs the HMM baseline needs.
pub struct HmmerTools {
    pub hmmbuild: Tool,
    pub hmmpress: Tool,
    pub hmmsearch: Tool,
}

impl HmmerTools {
    pub fn find(tool_dir: Option<&Path>) -> Result<Self, BaselineError> {
        Ok(HmmerTools {
            hmmbuild: Tool::find("hmmbuild", tool_dir)?,
            hmmpress: Tool::find("hmmpress", tool_dir)?,
            hmmsearch: Tool::find("hmmsearch", tool_dir)?,
        })
    }
}

/// Builds one profile per family into `dir` (a partial cache directory):
/// per-family models first (kept across interrupted runs), then the
/// concatenated, pressed database and its model index.
pub fn build_database(
    train: &TrainingSet,
    dir: &Path,
    tools: &HmmerTools,
    opts: &BaselineOptions,
) -> Result<(), BaselineError> {
    // Check every alignment before spending minutes on hmmbuild.
    for family in &train.families {
        family.check_alignment()?;
    }
    let families_dir = dir.join("families");
    std::fs::create_dir_all(&families_dir).map_err(|e| io_error(&families_dir, e))?;
    let bar = opts.progress_bar(train.families.len() as u64, "families");
    bar.set_message("hmmbuild");
    opts.pool()?.install(|| {
        train.families.par_iter().try_for_each(|family| {
            let accession = &family.family.accession;
            let model = families_dir.join(format!("{accession}.hmm"));
            if !model.exists() {
                let sto = families_dir.join(format!("{accession}.sto"));
                std::fs::write(&sto, family.to_stockholm()).map_err(|e| io_error(&sto, e))?;
                let partial = families_dir.join(format!("{accession}.hmm.tmp"));
                let log = families_dir.join(format!("{accession}.log"));
                let mut args: Vec<String> = HMMBUILD_ARGS.iter().map(|s| s.to_string()).collect();
                args.extend(["-n".into(), accession.clone(), "-o".into(), "/dev/null".into()]);
                args.extend([partial.display().to_string(), sto.display().to_string()]);
                tools
                    .hmmbuild
                    .run(&args, None, None, &log)
                    .map_err(|e| BaselineError::Family {
                        family: family.family.family_id.clone(),
                        accession: accession.clone(),
                        source: Box::new(e),
                    })?;
                crate::atomic::rename_durable(&partial, &model).map_err(|e| io_error(&model, e))?;
                let _ = std::fs::remove_file(&sto);
                let _ = std::fs::remove_file(&log);
            }
            bar.inc(1);
            Ok::<(), BaselineError>(())
        })
    })?;
    bar.finish_and_clear();

    let database = dir.join(DATABASE);
    let mut index = String::new();
    let mut offset = 0u64;
    crate::atomic::write_atomic(&database, |out| {
        for family in &train.families {
            let accession = &family.family.accession;
            let model = families_dir.join(format!("{accession}.hmm"));
            let text = std::fs::read(&model)?;
            out.write_all(&text)?;
            index.push_str(&format!("{accession}\t{offset}\t{}\n", offset + text.len() as u64));
            offset += text.len() as u64;
        }
        Ok(())
    })
    .map_err(|e| io_error(&database, e))?;
    let index_path = dir.join(MODEL_INDEX);
    crate::atomic::write_bytes_atomic(&index_path, index.as_bytes()).map_err(|e| io_error(&index_path, e))?;
    tools.hmmpress.run(
        &["-f".to_string(), database.display().to_string()],
        None,
        None,
        &dir.join("hmmpress.log"),
    )?;
    let _ = std::fs::remove_file(dir.join("hmmpress.log"));
    std::fs::remove_dir_all(&families_dir).map_err(|e| io_error(&families_dir, e))?;
    Ok(())
}

/// Reads [`MODEL_INDEX`] of a built database.
pub fn read_model_index(dir: &Path) -> Result<Vec<(String, u64, u64)>, BaselineError> {
    let path = dir.join(MODEL_INDEX);
    let text = std::fs::read_to_string(&path).map_err(|e| io_error(&path, e))?;
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            let fields: Vec<&str> = line.split('\t').collect();
            let parsed = match fields.as_slice() {
                [acc, start, end] => start
                    .parse()
                    .ok()
                    .zip(end.parse().ok())
                    .map(|(s, e)| (acc.to_string(), s, e)),
                _ => None,
            };
            parsed.ok_or_else(|| BaselineError::Parse {
                path: path.display().to_string(),
                line: i + 1,
                message: format!("expected `accession<TAB>start<TAB>end`, found {line:?}"),
            })
        })
        .collect()
}

/// Searches every model of the database in `dir` against the test sequences;
/// returns the best hit per test sequence (`None`: no profile reported a hit).
pub fn search(
    dir: &Path,
    test: &TestSet,
    tools: &HmmerTools,
    opts: &BaselineOptions,
) -> Result<Vec<Option<Hit>>, BaselineError> {
    let ranked = search_ranked(dir, test, tools, opts, 1)?;
    Ok(ranked.into_iter().map(|hits| hits.into_iter().next()).collect())
}

/// [`search`], keeping the `per_query` best families of every test sequence
/// (best first; fewer where fewer profiles reported a hit): the evidence the
/// hybrid annotator weighs against `residue-knn`'s.
pub fn search_ranked(
    dir: &Path,
    test: &TestSet,
    tools: &HmmerTools,
    opts: &BaselineOptions,
    per_query: usize,
) -> Result<Vec<Vec<Hit>>, BaselineError> {
    let models = read_model_index(dir)?;
    let database = dir.join(DATABASE);
    let scratch = tempfile::Builder::new()
        .prefix("hmmsearch-")
        .tempdir_in(dir)
        .map_err(|e| io_error(dir, e))?;
    let queries = scratch.path().join("test.fasta");
    {
        let mut out = BufWriter::new(File::create(&queries).map_err(|e| io_error(&queries, e))?);
        test.write_fasta(&mut out)
            .and_then(|_| out.flush())
            .map_err(|e| io_error(&queries, e))?;
    }
    let rows = search::in_chunks(opts, &models, "models", "hmmsearch", |c, chunk| {
        let tbl = scratch.path().join(format!("chunk-{c:05}.tbl"));
        let mut args: Vec<String> = ["--cpu", "0", "--noali", "-E", "1000", "--domE", "1000"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if opts.hmm_max {
            args.push("--max".into());
        }
        args.extend([
            "-o".into(),
            "/dev/null".into(),
            "--tblout".into(),
            tbl.display().to_string(),
        ]);
        args.extend(["-".into(), queries.display().to_string()]);
        let (start, end) = (chunk[0].1, chunk[chunk.len() - 1].2);
        let mut feed = |w: &mut dyn Write| -> std::io::Result<()> {
            let mut file = File::open(&database)?;
            file.seek(SeekFrom::Start(start))?;
            std::io::copy(&mut file.take(end - start), w)?;
            Ok(())
        };
        tools.hmmsearch.run(
            &args,
            Some(&mut feed),
            None,
            &scratch.path().join(format!("chunk-{c:05}.log")),
        )?;
        let hits = read_tblout(&tbl)?;
        let _ = std::fs::remove_file(&tbl);
        Ok(hits)
    })?;
    ranked_hits(rows.iter(), test.names.len(), per_query, dir)
}

/// Best hit per test sequence from `hmmsearch` table rows (target = test
/// sequence `q<i>`, query = model accession): highest full-sequence bit score,
/// then lowest E-value, then smallest accession, so ties resolve the same way
/// however the models were chunked.
pub fn best_hits<'a>(
    rows: impl Iterator<Item = &'a TblHit>,
    n_queries: usize,
    context: &Path,
) -> Result<Vec<Option<Hit>>, BaselineError> {
    let ranked = ranked_hits(rows, n_queries, 1, context)?;
    Ok(ranked.into_iter().map(|hits| hits.into_iter().next()).collect())
}

/// The `per_query` best families of every test sequence, ordered as in
/// [`best_hits`]; a family appears once (its best row).
pub fn ranked_hits<'a>(
    rows: impl Iterator<Item = &'a TblHit>,
    n_queries: usize,
    per_query: usize,
    context: &Path,
) -> Result<Vec<Vec<Hit>>, BaselineError> {
    let mut ranked: Vec<Vec<Hit>> = vec![Vec::new(); n_queries];
    for row in rows {
        let i = search::test_index(&row.target_name, n_queries, context, "hmmsearch", "test sequence")?;
        let candidate = Hit {
            accession: row.query_name.clone(),
            score: row.score,
            evalue: row.evalue,
        };
        let hits = &mut ranked[i];
        match hits.iter().position(|h| h.accession == candidate.accession) {
            Some(j) if candidate.beats(&hits[j]) => hits[j] = candidate,
            Some(_) => continue,
            None => hits.push(candidate),
        }
        hits.sort_by(|a, b| {
            if a.beats(b) {
                std::cmp::Ordering::Less
            } else if b.beats(a) {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        });
        hits.truncate(per_query.max(1));
    }
    Ok(ranked)
}

/// One row of HMMER's `--tblout` (per-sequence hits table).
#[derive(Debug, Clone, PartialEq)]
pub struct TblHit {
    pub target_name: String,
    pub target_accession: String,
    pub query_name: String,
    pub query_accession: String,
    /// Full-sequence E-value.
    pub evalue: f64,
    /// Full-sequence bit score.
    pub score: f64,
    pub bias: f64,
    pub best_domain_evalue: f64,
    pub best_domain_score: f64,
    pub description: String,
}

/// Reads a `--tblout` file; see [`parse_tblout`].
pub fn read_tblout(path: &Path) -> Result<Vec<TblHit>, BaselineError> {
    let file = File::open(path).map_err(|e| io_error(path, e))?;
    parse_tblout(BufReader::new(file), path)
}

/// Parses HMMER's `--tblout` format (`hmmsearch` and `hmmscan` alike):
/// whitespace-separated columns, 18 fixed ones and a free-text description
/// that may contain spaces, `#` comment lines. Errors name the file and line.
pub fn parse_tblout(reader: impl BufRead, path: &Path) -> Result<Vec<TblHit>, BaselineError> {
    search::parse_table(reader, path, |line, at| {
        let columns: Vec<&str> = split_columns(line.trim(), 18);
        if columns.len() < 18 {
            return Err(at.error(format!("expected at least 18 columns, found {}", columns.len())));
        }
        let number = |k: usize, what: &str| at.parse::<f64>(&columns, k, what, "number");
        Ok(TblHit {
            target_name: columns[0].to_string(),
            target_accession: columns[1].to_string(),
            query_name: columns[2].to_string(),
            query_accession: columns[3].to_string(),
            evalue: number(4, "full E-value")?,
            score: number(5, "full score")?,
            bias: number(6, "full bias")?,
            best_domain_evalue: number(7, "best domain E-value")?,
            best_domain_score: number(8, "best domain score")?,
            description: columns.get(18).map(|s| s.to_string()).unwrap_or_default(),
        })
    })
}

/// Splits off `fixed` whitespace-separated columns; the rest of the line
/// (trimmed, inner spaces kept) is one more column if non-empty.
fn split_columns(line: &str, fixed: usize) -> Vec<&str> {
    let mut columns = Vec::with_capacity(fixed + 1);
    let mut rest = line.trim_start();
    while columns.len() < fixed && !rest.is_empty() {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        columns.push(&rest[..end]);
        rest = rest[end..].trim_start();
    }
    if !rest.is_empty() {
        columns.push(rest.trim_end());
    }
    columns
}

#[cfg(test)]
mod tests {
    use super::*;

    const TBL: &str = "\
#                                                               --- full sequence ---- --- best 1 domain ---- --- domain number estimation ----
# target name        accession  query name           accession    E-value  score  bias   E-value  score  bias   exp reg clu  ov env dom rep inc description of target
#------------------- ---------- -------------------- ---------- --------- ------ ----- --------- ------ -----   --- --- --- --- --- --- --- --- ---------------------
q3                   -          PF00005              -            1.3e-30  104.2   0.1   1.9e-30  103.6   0.1   1.3   1   0   0   1   1   1   1 ABC transporter, ATP binding
q7                   -          PF00005              -                2.1   -1.5   0.0       3.3   -2.1   0.0   1.0   1   0   0   1   1   0   0 -
#
# Program:         hmmsearch
";

    #[test]
    fn parses_rows_and_keeps_spaced_descriptions() {
        let hits = parse_tblout(TBL.as_bytes(), Path::new("x.tbl")).unwrap();
        assert_eq!(hits.len(), 2);
        assert_eq!(hits[0].target_name, "q3");
        assert_eq!(hits[0].query_name, "PF00005");
        assert_eq!(hits[0].evalue, 1.3e-30);
        assert_eq!(hits[0].score, 104.2);
        assert_eq!(hits[0].best_domain_score, 103.6);
        assert_eq!(hits[0].description, "ABC transporter, ATP binding");
        assert_eq!(hits[1].score, -1.5);
        assert_eq!(hits[1].description, "-");
    }

    #[test]
    fn malformed_rows_name_file_and_line() {
        let text = "# comment\nq1 - PF1 - 1e-5 notanumber 0.1 1e-5 20 0.1 1 1 0 0 1 1 1 1 -\n";
        let err = parse_tblout(text.as_bytes(), Path::new("bad.tbl"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.tbl:2") && err.contains("notanumber"), "{err}");
        let err = parse_tblout("q1 - PF1 -\n".as_bytes(), Path::new("short.tbl"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("short.tbl:1") && err.contains("18 columns"), "{err}");
    }

    #[test]
    fn best_hit_prefers_score_then_evalue_then_accession() {
        let row = |q: &str, acc: &str, score: f64, evalue: f64| TblHit {
            target_name: q.into(),
            target_accession: "-".into(),
            query_name: acc.into(),
            query_accession: "-".into(),
            evalue,
            score,
            bias: 0.0,
            best_domain_evalue: evalue,
            best_domain_score: score,
            description: String::new(),
        };
        let rows = [
            row("q0", "PF2", 50.0, 1e-10),
            row("q0", "PF3", 60.0, 1e-12),
            row("q1", "PF9", 30.0, 1e-5),
            row("q1", "PF1", 30.0, 1e-5),
            row("q2", "PF4", 30.0, 1e-4),
        ];
        let best = best_hits(rows.iter(), 4, Path::new("t")).unwrap();
        assert_eq!(best[0].as_ref().unwrap().accession, "PF3");
        assert_eq!(best[1].as_ref().unwrap().accession, "PF1");
        assert_eq!(best[2].as_ref().unwrap().accession, "PF4");
        assert!(best[3].is_none());
        assert!(best_hits([row("q9", "PF1", 1.0, 1.0)].iter(), 4, Path::new("t")).is_err());
        // Ranked: best first, each family once (its best row), at most `per_query`.
        let more = [
            row("q0", "PF2", 50.0, 1e-10),
            row("q0", "PF3", 60.0, 1e-12),
            row("q0", "PF2", 70.0, 1e-14),
            row("q0", "PF5", 10.0, 1.0),
            row("q0", "PF6", 20.0, 0.1),
        ];
        let ranked = ranked_hits(more.iter(), 1, 3, Path::new("t")).unwrap();
        let order: Vec<(&str, f64)> = ranked[0].iter().map(|h| (h.accession.as_str(), h.score)).collect();
        assert_eq!(order, [("PF2", 70.0), ("PF3", 60.0), ("PF6", 20.0)]);
    }
}
