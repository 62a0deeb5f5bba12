//! `protfam data`: inspect Pfam split datasets.
//!
//! `protfam data stats <ROOT> [--split clustered_split]` reads every shard of
//! the train, dev and test parts and prints, per part, the number of records
//! and families, the length range and median, the largest families, and how
//! many dev/test families have fewer than five training examples (the
//! few-shot families the method is about), including those absent from
//! training altogether.
//!
//! `protfam data check <FILE>...` reads FASTA, Stockholm or Pfam CSV files
//! (plain, gzip, or `-` for standard input) through the residue policy and
//! prints a one-line summary per file, so bad input is found before a long
//! embedding run rather than in the middle of it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use serde::Serialize;

use super::context::DataArgs;
use protfam::io::alphabet::{self, SkipReport};
use protfam::io::input::{Format, SequenceReader};
use protfam::io::pfam_csv::{self, PARTS};
use protfam::io::{Family, ReadError, Record};

#[derive(Debug, clap::Subcommand)]
pub enum DataCommand {
    /// Summarise a Pfam split: records, families, lengths, largest families, few-shot families.
    Stats(StatsArgs),
    /// Check sequence files (FASTA, Stockholm, Pfam CSV; plain, gzip or `-` for stdin) and summarise them.
    Check(CheckArgs),
}

/// Raw arguments of `protfam data check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Files to check; `-` reads standard input.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Input format; detected from the content when not given.
    #[arg(help_heading = "Input", long, value_enum)]
    pub format: Option<Format>,
    /// Skip records with invalid residues, empty sequences or empty ids (counted and reported) instead of failing.
    #[arg(help_heading = "Input", long)]
    pub lenient: bool,
    /// Treat a repeated FASTA id as an invalid record instead of a warning.
    #[arg(help_heading = "Input", long)]
    pub reject_duplicates: bool,
    /// Print the summaries as JSON lines instead of text.
    #[arg(help_heading = "Output", long)]
    pub json: bool,
}

/// Summary of one checked file.
#[derive(Debug, Clone, Serialize)]
pub struct FileSummary {
    pub file: String,
    pub format: Format,
    pub records: usize,
    pub residues: usize,
    pub length_min: usize,
    pub length_median: f64,
    pub length_max: usize,
    /// Distinct families (Stockholm, Pfam CSV).
    pub families: usize,
    /// Ids seen more than once (FASTA).
    pub duplicate_ids: Vec<String>,
    pub skipped: SkipReport,
}

/// Reads a whole file through the residue policy and summarises it.
pub fn check_file(
    path: &std::path::Path,
    format: Option<Format>,
    lenient: bool,
    reject_duplicates: bool,
) -> anyhow::Result<FileSummary> {
    let reader = SequenceReader::open(path, format)?.reject_duplicates(reject_duplicates);
    let format = reader.format();
    let mut records = alphabet::checked(reader, lenient);
    let stats = part_stats("file", records.by_ref(), 0)?;
    let duplicate_ids = records.get_ref().duplicates().iter().map(|d| d.id.clone()).collect();
    let skipped = records.into_report();
    let file = if path.as_os_str() == "-" {
        "<stdin>".to_string()
    } else {
        path.display().to_string()
    };
    Ok(FileSummary {
        file,
        format,
        records: stats.records,
        residues: stats.residues,
        length_min: stats.length_min,
        length_median: stats.length_median,
        length_max: stats.length_max,
        families: stats.families,
        duplicate_ids,
        skipped,
    })
}

/// Raw arguments of `protfam data stats`.
#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// The dataset root as a positional argument: the old spelling of --data.
    #[arg(hide = true, conflicts_with = "data")]
    pub root: Option<PathBuf>,
    /// Skip records with invalid residues or empty fields (counted and reported) instead of failing.
    #[arg(help_heading = "Input", long)]
    pub lenient: bool,
    /// How many of the largest families to list per part.
    #[arg(help_heading = "Output", long, default_value_t = 10)]
    pub top: usize,
    /// Families with fewer training examples than this are counted as few-shot.
    #[arg(help_heading = "Output", long, default_value_t = 5)]
    pub few_shot: usize,
    /// Print the statistics as JSON instead of tables.
    #[arg(help_heading = "Output", long)]
    pub json: bool,
}

/// Validated configuration of `protfam data stats`.
#[derive(Debug, Clone)]
pub struct StatsConfig {
    pub root: PathBuf,
    pub split: String,
    pub lenient: bool,
    pub top: usize,
    pub few_shot: usize,
    pub json: bool,
}

impl TryFrom<StatsArgs> for StatsConfig {
    type Error = anyhow::Error;

    fn try_from(args: StatsArgs) -> anyhow::Result<Self> {
        let root = match args.root {
            Some(root) => {
                tracing::warn!(
                    "the positional dataset root is the old spelling of `--data {}`; it will be removed in the next release",
                    root.display()
                );
                root
            }
            None => args.data.root()?,
        };
        if !root.is_dir() {
            bail!(
                "dataset root {} is not a directory (run `make data` or pass --data with the path to pfam35-uniprot20k)",
                std::path::absolute(&root).unwrap_or_else(|_| root.clone()).display()
            );
        }
        let split = args.data.split;
        if split.is_empty() || split.contains(['/', '\\']) {
            bail!("--split must be a split directory name such as clustered_split, not {split:?}");
        }
        if args.few_shot == 0 {
            bail!("--few-shot must be at least 1");
        }
        Ok(StatsConfig {
            root,
            split,
            lenient: args.lenient,
            top: args.top,
            few_shot: args.few_shot,
            json: args.json,
        })
    }
}

/// A family and how many records it has in a part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FamilyCount {
    pub family_id: String,
    pub accession: String,
    pub records: usize,
}

/// Statistics of one part of a split.
#[derive(Debug, Clone, Serialize)]
pub struct PartStats {
    pub part: String,
    pub records: usize,
    pub families: usize,
    pub residues: usize,
    pub length_min: usize,
    pub length_median: f64,
    pub length_max: usize,
    /// The largest families, largest first (ties by accession).
    pub largest: Vec<FamilyCount>,
    pub skipped: SkipReport,
    #[serde(skip)]
    pub counts: HashMap<Family, usize>,
}

/// How a dev/test part's families are covered by training data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FewShot {
    pub part: String,
    pub families: usize,
    /// Families with fewer than `threshold` training records (absent ones included).
    pub few_shot_families: usize,
    /// Families with no training record at all.
    pub absent_from_train: usize,
    /// Records of the part that belong to few-shot families.
    pub few_shot_records: usize,
    pub threshold: usize,
}

/// Everything `protfam data stats` reports.
#[derive(Debug, Clone, Serialize)]
pub struct SplitStats {
    pub root: String,
    pub split: String,
    pub parts: Vec<PartStats>,
    pub few_shot: Vec<FewShot>,
}

/// Summarises one part's records; stops at the first error.
pub fn part_stats(
    part: &str,
    records: impl IntoIterator<Item = Result<Record, ReadError>>,
    top: usize,
) -> Result<PartStats, ReadError> {
    let mut counts: HashMap<Family, usize> = HashMap::new();
    let mut lengths: Vec<usize> = Vec::new();
    for record in records {
        let record = record?;
        lengths.push(record.sequence.len());
        if let Some(family) = record.family {
            *counts.entry(family).or_default() += 1;
        }
    }
    lengths.sort_unstable();
    let length_median = match lengths.len() {
        0 => 0.0,
        n if n % 2 == 1 => lengths[n / 2] as f64,
        n => (lengths[n / 2 - 1] + lengths[n / 2]) as f64 / 2.0,
    };
    let mut largest: Vec<FamilyCount> = counts
        .iter()
        .map(|(f, &n)| FamilyCount {
            family_id: f.family_id.clone(),
            accession: f.accession.clone(),
            records: n,
        })
        .collect();
    largest.sort_by(|a, b| b.records.cmp(&a.records).then_with(|| a.accession.cmp(&b.accession)));
    largest.truncate(top);
    Ok(PartStats {
        part: part.to_string(),
        records: lengths.len(),
        families: counts.len(),
        residues: lengths.iter().sum(),
        length_min: lengths.first().copied().unwrap_or(0),
        length_median,
        length_max: lengths.last().copied().unwrap_or(0),
        largest,
        skipped: SkipReport::default(),
        counts,
    })
}

/// Counts the families of `part` with fewer than `threshold` records in `train`.
pub fn few_shot(part: &PartStats, train: &PartStats, threshold: usize) -> FewShot {
    let mut result = FewShot {
        part: part.part.clone(),
        families: part.families,
        few_shot_families: 0,
        absent_from_train: 0,
        few_shot_records: 0,
        threshold,
    };
    for (family, &n) in &part.counts {
        let in_train = train.counts.get(family).copied().unwrap_or(0);
        if in_train == 0 {
            result.absent_from_train += 1;
        }
        if in_train < threshold {
            result.few_shot_families += 1;
            result.few_shot_records += n;
        }
    }
    result
}

/// Reads all parts of the configured split.
pub fn split_stats(config: &StatsConfig) -> anyhow::Result<SplitStats> {
    let mut parts = Vec::new();
    for part in PARTS {
        let reader = pfam_csv::read_part(&config.root, &config.split, part)?;
        let bar = spinner(&format!("reading {}/{part}", config.split));
        let mut records = alphabet::checked(reader.inspect(|_| bar.inc(1)), config.lenient);
        let mut stats = part_stats(part, records.by_ref(), config.top)
            .with_context(|| format!("reading the {part} part of {}", config.split))?;
        stats.skipped = records.into_report();
        bar.finish_and_clear();
        if stats.skipped.skipped > 0 {
            tracing::warn!("{part}: {}", stats.skipped);
        }
        parts.push(stats);
    }
    let train = &parts[0];
    let few_shot = parts[1..].iter().map(|p| few_shot(p, train, config.few_shot)).collect();
    Ok(SplitStats {
        root: config.root.display().to_string(),
        split: config.split.clone(),
        parts,
        few_shot,
    })
}

/// A record counter on stderr, hidden when stderr is not a terminal (the full
/// Pfam 32 training part has 1.3M records).
fn spinner(message: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg}: {human_pos} records ({per_sec})") {
        bar.set_style(style);
    }
    bar.set_message(message.to_string());
    bar
}

/// `1234567` -> `1,234,567`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The human-readable report.
pub fn render(stats: &SplitStats) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} of {}", stats.split, stats.root);
    let _ = writeln!(
        out,
        "{:<6} {:>10} {:>9} {:>8} {:>8} {:>8} {:>8}",
        "part", "records", "families", "min len", "median", "max len", "skipped"
    );
    for p in &stats.parts {
        let _ = writeln!(
            out,
            "{:<6} {:>10} {:>9} {:>8} {:>8} {:>8} {:>8}",
            p.part,
            thousands(p.records),
            thousands(p.families),
            thousands(p.length_min),
            p.length_median,
            thousands(p.length_max),
            thousands(p.skipped.skipped)
        );
    }
    for p in &stats.parts {
        let _ = writeln!(out, "\n{}: {} largest families", p.part, p.largest.len());
        for (rank, f) in p.largest.iter().enumerate() {
            let label = format!("{} ({})", f.family_id, f.accession);
            let _ = writeln!(out, "  {:>2}. {label:<40} {:>8}", rank + 1, thousands(f.records));
        }
    }
    if let Some(first) = stats.few_shot.first() {
        let _ = writeln!(out, "\nFamilies with fewer than {} training examples:", first.threshold);
    }
    for f in &stats.few_shot {
        let _ = writeln!(
            out,
            "  {:<5} {} of {} families ({} absent from training), {} of its records",
            format!("{}:", f.part),
            thousands(f.few_shot_families),
            thousands(f.families),
            thousands(f.absent_from_train),
            thousands(f.few_shot_records)
        );
    }
    out
}

pub fn run(cmd: DataCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DataCommand::Stats(args) => {
            let config = StatsConfig::try_from(args)?;
            let stats = split_stats(&config)?;
            if config.json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                print!("{}", render(&stats));
            }
            Ok(ExitCode::SUCCESS)
        }
        DataCommand::Check(args) => {
            for path in &args.files {
                let summary = check_file(path, args.format, args.lenient, args.reject_duplicates)
                    .with_context(|| format!("checking {}", path.display()))?;
                if args.json {
                    println!("{}", serde_json::to_string(&summary)?);
                } else {
                    print!("{}", render_check(&summary));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The human-readable summary of one checked file.
pub fn render_check(s: &FileSummary) -> String {
    let mut out = format!(
        "{}: {} records ({}), {} residues, length {}/{}/{} (min/median/max)",
        s.file,
        thousands(s.records),
        s.format,
        thousands(s.residues),
        thousands(s.length_min),
        s.length_median,
        thousands(s.length_max)
    );
    if s.families > 0 {
        let _ = write!(out, ", {} families", thousands(s.families));
    }
    if !s.duplicate_ids.is_empty() {
        let shown: Vec<&str> = s.duplicate_ids.iter().take(5).map(String::as_str).collect();
        let _ = write!(out, ", {} duplicate id(s): {}", s.duplicate_ids.len(), shown.join(" "));
    }
    if s.skipped.skipped > 0 {
        let _ = write!(out, ", {}", s.skipped);
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(family: &str, len: usize) -> Result<Record, ReadError> {
        let mut r = Record::new(format!("{family}/{len}"), "M".repeat(len));
        r.family = Some(Family::new(family, &format!("PF_{family}")));
        Ok(r)
    }

    #[test]
    fn part_statistics() {
        let stats = part_stats("train", vec![rec("a", 4), rec("b", 10), rec("a", 2), rec("c", 7)], 2).unwrap();
        assert_eq!((stats.records, stats.families), (4, 3));
        assert_eq!((stats.length_min, stats.length_median, stats.length_max), (2, 5.5, 10));
        assert_eq!(stats.largest.len(), 2);
        assert_eq!(
            (stats.largest[0].family_id.as_str(), stats.largest[0].records),
            ("a", 2)
        );
        assert_eq!(stats.largest[1].family_id, "b");
        let odd = part_stats("dev", vec![rec("a", 4), rec("b", 10), rec("a", 2)], 10).unwrap();
        assert_eq!(odd.length_median, 4.0);
    }

    #[test]
    fn few_shot_counts_absent_families_too() {
        let train: Vec<_> = (0..5).map(|_| rec("big", 3)).chain([rec("small", 3)]).collect();
        let train = part_stats("train", train, 10).unwrap();
        let test = part_stats(
            "test",
            vec![rec("big", 3), rec("small", 3), rec("small", 3), rec("new", 3)],
            10,
        )
        .unwrap();
        let f = few_shot(&test, &train, 5);
        assert_eq!(
            (f.families, f.few_shot_families, f.absent_from_train, f.few_shot_records),
            (3, 2, 1, 3)
        );
    }

    #[test]
    fn errors_propagate() {
        let err = part_stats("x", vec![rec("a", 3), Err(ReadError::new("f", "boom").at_line(2))], 1).unwrap_err();
        assert_eq!(err.to_string(), "f:2: boom");
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(16114), "16,114");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
