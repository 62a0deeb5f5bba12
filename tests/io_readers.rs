//! Integration tests of the readers on real data (the bundled Pfam split,
//! the Pfam Stockholm files of Debian's `hmmer-examples`) and on bad input
//! (fixtures in `tests/data/io/`).

mod common;

use common::data_root;
use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use protfam::io::{alphabet, fasta, pfam_csv, stockholm, ReadError, Record};
use rand::{Rng, SeedableRng};


fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/io").join(name)
}

const HMMER_EXAMPLES: &str = "/usr/share/doc/hmmer/examples";

/// `(records, families)` per `(split, part)` from the table in the dataset's README.
fn readme_table(root: &Path) -> HashMap<(String, String), (usize, usize)> {
    let readme = std::fs::read_to_string(root.join("README.md")).expect("dataset README.md");
    let mut table = HashMap::new();
    for line in readme.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).filter(|c| !c.is_empty()).collect();
        if cells.len() == 4 && cells[0].ends_with("_split") {
            let number = |s: &str| {
                s.replace(',', "")
                    .parse::<usize>()
                    .expect("a number in the README table")
            };
            table.insert(
                (cells[0].to_string(), cells[1].to_string()),
                (number(cells[2]), number(cells[3])),
            );
        }
    }
    table
}

#[test]
fn every_shard_of_the_bundled_dataset_parses_and_totals_match_the_readme() {
    let root = data_root();
    let table = readme_table(&root);
    assert_eq!(table.len(), 6, "README table should list 2 splits x 3 parts");
    for split in pfam_csv::SPLITS {
        for part in pfam_csv::PARTS {
            let shards = pfam_csv::shard_paths(&root, split, part).unwrap();
            assert!(shards.len() > 1, "{split}/{part} should have several shards");
            let mut per_shard_total = 0;
            for shard in &shards {
                let reader = pfam_csv::ShardReader::open(shard).unwrap();
                let mut n = 0;
                for record in reader {
                    let record = record.unwrap_or_else(|e| panic!("{e}"));
                    assert!(alphabet::check(&record.sequence).is_ok());
                    assert!(record.aligned.is_some());
                    n += 1;
                }
                assert!(n > 0, "{} is empty", shard.display());
                per_shard_total += n;
            }
            let mut families = BTreeSet::new();
            let mut records = 0;
            for record in pfam_csv::read_part(&root, split, part).unwrap() {
                let record = record.unwrap();
                let family = record.family.expect("Pfam CSV rows are labelled");
                assert!(
                    family.accession.starts_with("PF") && !family.accession.contains('.'),
                    "{family:?}"
                );
                // The raw sequence is the aligned one without gaps, upper-cased.
                let ungapped: String = record
                    .aligned
                    .unwrap()
                    .chars()
                    .filter(|c| *c != '.' && *c != '-')
                    .collect();
                assert_eq!(ungapped.to_ascii_uppercase(), record.sequence, "{}", record.id);
                families.insert(family);
                records += 1;
            }
            assert_eq!(records, per_shard_total);
            let expected = table[&(split.to_string(), part.to_string())];
            assert_eq!((records, families.len()), expected, "{split}/{part}");
        }
    }
}

/// Sequences per alignment counted independently of the reader: distinct
/// names on sequence lines between `# STOCKHOLM` and `//`.
fn count_names(text: &str) -> Vec<usize> {
    let mut counts = Vec::new();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim();
        if line == "//" {
            counts.push(std::mem::take(&mut names).len());
        } else if !line.is_empty() && !line.starts_with('#') {
            names.insert(line.split_whitespace().next().unwrap().to_string());
        }
    }
    counts
}

fn read_maybe_gz(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .unwrap();
        text
    } else {
        String::from_utf8(bytes).unwrap()
    }
}

fn stockholm_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            stockholm_files(&path, found);
        } else {
            let name = path.file_name().unwrap().to_string_lossy();
            if [".sto", ".sto.gz", ".stk", ".stk.gz"]
                .iter()
                .any(|ext| name.ends_with(ext))
                || name.starts_with("stockholm.good")
            {
                found.push(path);
            }
        }
    }
}

/// `(path under the examples directory, sequences per alignment, (ID, accession) of the first)`.
type KnownAlignmentFile = (&'static str, &'static [usize], Option<(&'static str, &'static str)>);

#[test]
fn every_stockholm_file_of_hmmer_examples_parses_with_the_right_counts() {
    let examples = Path::new(HMMER_EXAMPLES);
    assert!(
        examples.is_dir(),
        "{HMMER_EXAMPLES} is missing: install Debian's hmmer-examples (`make test` does: apt-get install hmmer-examples)"
    );
    // Sequences per alignment, as reported by `hmmbuild` (nseq) on each file,
    // and the family of Pfam files (ID, accession without version).
    let known: &[KnownAlignmentFile] = &[
        ("tutorial/fn3.sto", &[98], Some(("fn3", "PF00041"))),
        ("tutorial/Pkinase.sto", &[38], Some(("Pkinase", "PF00069"))),
        ("tutorial/globins4.sto", &[4], None),
        ("tutorial/MADE1.sto", &[100], Some(("MADE1", "DF0000629"))),
        ("testsuite/20aa-alitest.sto", &[4], None),
        ("testsuite/20aa.sto", &[10], Some(("test", "test"))),
        ("testsuite/3box.sto", &[22], None),
        ("testsuite/M1.sto", &[2], None),
        ("testsuite/PSE.sto", &[20], None),
        ("testsuite/XYPPX.sto", &[7], Some(("XYPPX", "PF02162"))),
        ("testsuite/ecori.sto", &[2], None),
        ("testsuite/Caudal_act.sto.gz", &[9], Some(("Caudal_act", "PF04731"))),
        ("testsuite/LuxC.sto.gz", &[13], Some(("LuxC", "PF05893"))),
        ("testsuite/Patched.sto.gz", &[10], Some(("Patched", "PF02460"))),
        ("testsuite/RRM_1.sto.gz", &[79], Some(("RRM_1", "PF00076"))),
        ("testsuite/SMC_N.sto.gz", &[29], Some(("SMC_N", "PF02463"))),
        (
            "easel/demotic/examples/example-single.sto.gz",
            &[158],
            Some(("SecY", "PF00344")),
        ),
        (
            "easel/demotic/examples/example.sto.gz",
            &[105, 122],
            Some(("Orn_DAP_Arg_deC", "PF00278")),
        ),
        ("easel/testsuite/trna-5.stk", &[5], None),
        (
            "easel/esl_msa_testfiles/stockholm/stockholm.good.1",
            &[7],
            Some(("14-3-3", "PF00244")),
        ),
    ];
    let mut found = Vec::new();
    stockholm_files(examples, &mut found);
    found.sort();
    assert!(found.len() >= 3, "no Stockholm files under {HMMER_EXAMPLES}");
    let mut checked = 0;
    for path in &found {
        let relative = path.strip_prefix(examples).unwrap().to_string_lossy().into_owned();
        let text = read_maybe_gz(path);
        let independent = count_names(&text);
        let mut reader = stockholm::open(path).unwrap();
        let mut counts = Vec::new();
        let mut families = Vec::new();
        while let Some(alignment) = reader.next_alignment() {
            let alignment = alignment.unwrap_or_else(|e| panic!("{e}"));
            let width = alignment
                .records
                .first()
                .and_then(|r| r.as_ref().ok())
                .and_then(|r| r.aligned.as_ref())
                .map(String::len);
            for record in &alignment.records {
                let record = record.as_ref().unwrap_or_else(|e| panic!("{e}"));
                assert!(!record.sequence.is_empty());
                assert!(
                    record.sequence.bytes().all(|b| b.is_ascii_uppercase()),
                    "{relative}: {}",
                    record.id
                );
                assert_eq!(
                    record.aligned.as_ref().map(String::len),
                    width,
                    "{relative}: ragged row {}",
                    record.id
                );
            }
            counts.push(alignment.records.len());
            families.push(alignment.family);
        }
        assert_eq!(counts, independent, "{relative}: reader vs independent name count");
        let entry = known.iter().find(|(name, _, _)| *name == relative);
        let (_, expected, family) = entry.unwrap_or_else(|| {
            panic!("{relative}: a Stockholm file this test does not know yet ({counts:?} sequences); add it to `known`")
        });
        assert_eq!(&counts[..], *expected, "{relative}");
        let first = families[0]
            .as_ref()
            .map(|f| (f.family_id.as_str(), f.accession.as_str()));
        assert_eq!(first, *family, "{relative}");
        checked += 1;
    }
    // The tutorial's Pfam files, named in the issue, must be among them.
    for must in ["tutorial/fn3.sto", "tutorial/Pkinase.sto", "tutorial/globins4.sto"] {
        assert!(found.iter().any(|p| p.ends_with(must)), "{must} not found");
    }
    assert!(checked >= 3);
}

#[test]
fn easels_bad_stockholm_files_are_all_rejected() {
    let dir = Path::new(HMMER_EXAMPLES).join("easel/esl_msa_testfiles/stockholm");
    assert!(dir.is_dir(), "{} is missing: install hmmer-examples", dir.display());
    let mut bad = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.file_name().unwrap().to_string_lossy().starts_with("stockholm.bad") {
            continue;
        }
        let results: Vec<_> = stockholm::open(&path).unwrap().collect();
        let error = results.iter().find_map(|r| r.as_ref().err());
        let error = error.unwrap_or_else(|| panic!("{} was accepted", path.display()));
        assert!(
            error.to_string().starts_with(&format!("{}:", path.display())),
            "{error}"
        );
        assert!(error.line.is_some(), "{error}");
        bad += 1;
    }
    assert!(bad >= 8, "expected Easel's 8 bad Stockholm files, found {bad}");
}

fn first_error(results: impl IntoIterator<Item = Result<Record, ReadError>>) -> ReadError {
    results.into_iter().find_map(Result::err).expect("an error")
}

#[test]
fn truncated_csv_row_names_file_and_line() {
    let path = fixture("truncated.csv");
    let error = first_error(pfam_csv::ShardReader::open(&path).unwrap());
    assert_eq!(
        error.to_string(),
        format!("{}:3: expected 5 fields, found 4 (truncated row?)", path.display())
    );
}

#[test]
fn csv_with_wrong_header_names_file_and_line() {
    let path = fixture("wrong_header.csv");
    let error = pfam_csv::ShardReader::open(&path).err().expect("wrong header rejected");
    assert!(
        error
            .to_string()
            .starts_with(&format!("{}:1: wrong CSV header", path.display())),
        "{error}"
    );
}

#[test]
fn fasta_with_digits_names_file_line_and_record() {
    let path = fixture("digits.fa");
    let error = first_error(fasta::open(&path).unwrap());
    assert_eq!(
        error.to_string(),
        format!(
            "{}:6 (record sp|P2|B_HUMAN): invalid residue digit '3' at position 8",
            path.display()
        )
    );
}

#[test]
fn empty_fasta_record_and_empty_id_name_file_and_line() {
    let path = fixture("empty_record.fa");
    let error = first_error(fasta::open(&path).unwrap());
    assert_eq!(
        error.to_string(),
        format!("{}:3 (record sp|P2|EMPTY_HUMAN): empty sequence", path.display())
    );
    let path = fixture("empty_id.fa");
    let error = first_error(fasta::open(&path).unwrap());
    assert!(
        error
            .to_string()
            .starts_with(&format!("{}:1: header has no id", path.display())),
        "{error}"
    );
}

#[test]
fn stockholm_block_with_mismatched_name_names_file_and_line() {
    let path = fixture("mismatched_block.sto");
    let error = first_error(stockholm::open(&path).unwrap());
    assert_eq!(
        error.to_string(),
        format!(
            "{}:9: unknown name: found `B_RAT/2-9` where `B_MOUSE/2-9` was expected (same order in every block)",
            path.display()
        )
    );
}

#[test]
fn lenient_reading_skips_bad_records_and_counts_them() {
    let path = fixture("empty_record.fa");
    let mut records = alphabet::checked(fasta::open(&path).unwrap(), true);
    let ids: Vec<String> = records.by_ref().map(|r| r.unwrap().id).collect();
    assert_eq!(ids, ["sp|P1|A_HUMAN", "sp|P3|C_HUMAN"]);
    assert_eq!(records.report().skipped, 1);
    let strict: Vec<_> = alphabet::checked(fasta::open(&path).unwrap(), false).collect();
    assert_eq!(strict.len(), 2, "strict reading stops at the first error");
    assert!(strict[1].is_err());
}

#[test]
fn fasta_quirks_plain_and_gzip_give_the_same_records() {
    let plain = fasta::open(&fixture("quirks.fa")).unwrap();
    let mut gz = fasta::open(&fixture("quirks.fa.gz")).unwrap();
    let from_gz: Vec<Record> = gz.records().map(|r| r.unwrap()).collect();
    let records: Vec<Record> = plain.map(|r| r.unwrap()).collect();
    assert_eq!(records, from_gz);
    assert_eq!(records.len(), 4);
    let hba = &records[0];
    assert_eq!(hba.id, "sp|P69905|HBA_HUMAN");
    assert_eq!(hba.description, "Hemoglobin subunit alpha OS=Homo sapiens");
    // Human haemoglobin alpha: 142 residues with the initiator Met.
    assert_eq!(hba.len(), 142);
    assert!(hba.sequence.starts_with("MVLSPADKTN") && hba.sequence.ends_with("LTSKYR"));
    assert_eq!(records[1].len(), 147);
    assert_eq!(records[3].sequence, "MKBZUOJX");
    assert_eq!(gz.duplicates().len(), 1);
    assert_eq!(gz.duplicates()[0].id, "sp|P69905|HBA_HUMAN");
    assert_eq!((gz.duplicates()[0].first_line, gz.duplicates()[0].line), (3, 9));
}

#[test]
fn fasta_files_of_hmmer_examples_parse() {
    let examples = Path::new(HMMER_EXAMPLES);
    assert!(examples.is_dir(), "{HMMER_EXAMPLES} is missing: install hmmer-examples");
    for name in [
        "tutorial/globins45.fa",
        "tutorial/HBB_HUMAN",
        "testsuite/PAX8_HUMAN",
        "testsuite/20aa-alitest.fa",
        "easel/demotic/examples/example.fa",
    ] {
        let path = examples.join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        let headers = text.lines().filter(|l| l.starts_with('>')).count();
        let residues: usize = text
            .lines()
            .filter(|l| !l.starts_with('>'))
            .map(|l| l.trim().len())
            .sum();
        let mut reader = fasta::open(&path).unwrap();
        let records: Vec<Record> = reader.records().map(|r| r.unwrap_or_else(|e| panic!("{e}"))).collect();
        assert_eq!(records.len(), headers, "{name}");
        assert_eq!(records.iter().map(Record::len).sum::<usize>(), residues, "{name}");
        assert!(reader.duplicates().is_empty(), "{name}");
    }
    // A UniProt flat file is not FASTA: rejected at its first line.
    let path = examples.join("tutorial/7LESS_DROME");
    let error = first_error(fasta::open(&path).unwrap());
    assert_eq!(error.line, Some(1));
    assert!(error.message.contains("before the first '>'"), "{error}");
}

/// Every reader on random bytes and on randomly mutated valid input: errors
/// allowed, panics and endless iteration not.
#[test]
fn random_and_mutated_input_never_panics() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(20_24);
    let seeds = [
        std::fs::read(fixture("quirks.fa")).unwrap(),
        std::fs::read(fixture("mismatched_block.sto")).unwrap(),
        std::fs::read(fixture("mini/clustered_split/train/data-00000-of-00002")).unwrap(),
        b"# STOCKHOLM 1.0\n#=GF ID x\n#=GS a DE d\na MK.\nb M-K\n\na LL\nb LL\n//\n".to_vec(),
    ];
    const ALPHABET: &[u8] = b">#=GFSRC/ \n\r\t,\".-*ACDEFGHIKLMNPQRSTVWYacgt0123456789STOCKHOLM1.0";
    for round in 0..3000 {
        let input: Vec<u8> = match round % 3 {
            0 => (0..rng.gen_range(0..400)).map(|_| rng.gen()).collect(),
            1 => (0..rng.gen_range(0..400))
                .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())])
                .collect(),
            _ => {
                let mut bytes = seeds[rng.gen_range(0..seeds.len())].clone();
                for _ in 0..rng.gen_range(1..8) {
                    let at = rng.gen_range(0..bytes.len());
                    match rng.gen_range(0..3) {
                        0 => bytes[at] = ALPHABET[rng.gen_range(0..ALPHABET.len())],
                        1 => {
                            bytes.remove(at);
                        }
                        _ => bytes.truncate(at),
                    }
                    if bytes.is_empty() {
                        break;
                    }
                }
                bytes
            }
        };
        let limit = input.len() + 2;
        assert!(fasta::Reader::new(&input[..]).take(limit + 1).count() <= limit);
        assert!(stockholm::Reader::new(&input[..]).take(limit + 1).count() <= limit);
        if let Ok(shard) = pfam_csv::ShardReader::from_reader(&input[..], "random") {
            assert!(shard.take(limit + 1).count() <= limit);
        }
        for lenient in [false, true] {
            let _ = alphabet::checked(fasta::Reader::new(&input[..]), lenient)
                .take(limit + 1)
                .count();
        }
    }
}

#[test]
fn corrupt_gzip_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.fa.gz");
    let mut bytes = std::fs::read(fixture("quirks.fa.gz")).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&path, &bytes).unwrap();
    let results: Vec<_> = fasta::open(&path).unwrap().collect();
    let error = results
        .iter()
        .find_map(|r| r.as_ref().err())
        .expect("truncated gzip is an error");
    assert!(error.to_string().starts_with(&path.display().to_string()), "{error}");
    assert!(!error.is_skippable());
}
