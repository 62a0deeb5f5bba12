//! The run cache: every evaluated row kept under
//! `<report_dir>/<split>/runs/<embedder_key>__<classifier>.json`, keyed by the
//! embedder spec key (name + digest of weights and settings), the classifier
//! label, the split and the digest of its data, so a later `evaluate` or
//! `compare` reuses what did not change.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{clean_name, write_file, ReportError, ReportRow};

/// One cached evaluation: the row plus what identifies it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedRun {
    /// Embedder spec key ([`crate::embedder::EmbedderSpec::key`]) or `none` for baselines.
    pub embedder_key: String,
    /// Classifier label (`knn`, `mlp`, `knn-k3-distance`, `hmm`, ...).
    pub classifier: String,
    pub split: String,
    /// Digest of the training data the row was measured with (empty when unknown).
    pub training_digest: String,
    pub row: ReportRow,
}

/// Evaluation rows cached per embedder spec + classifier + split under
/// `<report_dir>/<split>/runs/<embedder_key>__<classifier>.json`.
#[derive(Debug, Clone)]
pub struct RunCache {
    pub dir: PathBuf,
}

impl RunCache {
    pub fn new(report_dir: &Path, split: &str) -> Self {
        RunCache {
            dir: report_dir.join(clean_name(split)).join("runs"),
        }
    }

    pub fn path(&self, embedder_key: &str, classifier: &str) -> PathBuf {
        self.dir
            .join(format!("{}__{}.json", clean_name(embedder_key), clean_name(classifier)))
    }

    /// The cached run, if present, readable and for the same key, split and
    /// (when `training_digest` is given) training data; anything else is a miss.
    pub fn get(
        &self,
        embedder_key: &str,
        classifier: &str,
        split: &str,
        training_digest: Option<&str>,
    ) -> Option<CachedRun> {
        let path = self.path(embedder_key, classifier);
        let text = std::fs::read_to_string(&path).ok()?;
        let run: CachedRun = match serde_json::from_str(&text) {
            Ok(run) => run,
            Err(e) => {
                tracing::warn!("{}: unreadable cached run ({e}); it will be recomputed", path.display());
                return None;
            }
        };
        let same = run.embedder_key == embedder_key
            && run.classifier == classifier
            && run.split == split
            && training_digest.is_none_or(|d| d == run.training_digest);
        same.then_some(run)
    }

    /// Records one evaluation row (what `evaluate` does for every pair it runs,
    /// so a later `compare` reuses it instead of training again).
    pub fn record(
        &self,
        embedder_key: &str,
        split: &str,
        data_digest: &str,
        row: &ReportRow,
    ) -> Result<PathBuf, ReportError> {
        self.put(&CachedRun {
            embedder_key: embedder_key.to_string(),
            classifier: row.classifier.clone(),
            split: split.to_string(),
            training_digest: data_digest.to_string(),
            row: row.clone(),
        })
    }

    pub fn put(&self, run: &CachedRun) -> Result<PathBuf, ReportError> {
                let path = self.path(&run.embedder_key, &run.classifier);
        write_file(&path, serde_json::to_string_pretty(run).expect("run serialises").as_bytes())?;
        Ok(path)
    }
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::rows;

    #[test]
    fn run_cache_round_trips_and_misses_on_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        let cache = RunCache::new(dir.path(), "clustered_split");
        let run = CachedRun {
            embedder_key: "onehot-0123456789ab".into(),
            classifier: "knn".into(),
            split: "clustered_split".into(),
            training_digest: "abc".into(),
            row: rows()[2].clone(),
        };
        cache.put(&run).unwrap();
        // serde_json may round a float's last bit, so compare what identifies the run and the counts.
        let hit = cache
            .get("onehot-0123456789ab", "knn", "clustered_split", Some("abc"))
            .expect("cached");
        assert_eq!(
            (&hit.embedder_key, &hit.classifier, hit.row.errors, hit.row.n),
            (&run.embedder_key, &run.classifier, run.row.errors, run.row.n)
        );
        assert!((hit.row.error_rate - run.row.error_rate).abs() < 1e-12);
        assert!(cache
            .get("onehot-0123456789ab", "knn", "clustered_split", None)
            .is_some());
        assert_eq!(
            cache.get("onehot-0123456789ab", "knn", "clustered_split", Some("abd")),
            None
        );
        assert_eq!(cache.get("onehot-ffffffffffff", "knn", "clustered_split", None), None);
        assert_eq!(cache.get("onehot-0123456789ab", "mlp", "clustered_split", None), None);
        std::fs::write(cache.path("onehot-0123456789ab", "knn"), "{not json").unwrap();
        assert_eq!(cache.get("onehot-0123456789ab", "knn", "clustered_split", None), None);
    }
}
