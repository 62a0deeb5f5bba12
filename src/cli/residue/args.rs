//! The flags of the `residue-knn` classifier, shared by `train`, `evaluate`,
//! `compare` and the `residue` subcommands (defaults: the dev-tuned settings).

use std::path::PathBuf;

use protfam::classifier::ResidueVariant;
use protfam::residue::index::Quantization;
use protfam::residue::{Aggregate, IndexKind, ResidueKnnParams};

/// Flags of the `residue-knn` classifier (defaults: the dev-tuned settings).
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "residue-knn")]
pub struct ResidueKnnArgs {
    #[arg(long, help = with_default("Keep every N-th training residue in the store", residue_defaults().stride))]
    pub residue_stride: Option<usize>,
    /// Search every N-th query residue (default 1, or --residue-stride when that is given).
    #[arg(long)]
    pub residue_query_stride: Option<usize>,
    #[arg(long, help = with_default("Nearest training residues per query residue that vote", residue_defaults().score.top_k))]
    pub residue_top_k: Option<usize>,
    #[arg(long, help = with_default("Ignore hits below this cosine similarity", residue_defaults().score.min_similarity))]
    pub min_similarity: Option<f32>,
    #[arg(long, help = with_default("Strength of the diagonal-consistency bonus (0 = plain similarity vote)", residue_defaults().score.diagonal_weight))]
    pub diagonal_weight: Option<f32>,
    #[arg(long, help = with_default("Offsets (query pos - target pos) within this many residues agree", residue_defaults().score.diagonal_band))]
    pub diagonal_band: Option<u32>,
    #[arg(long, help = with_default("Agreeing hits beyond this many add nothing more", residue_defaults().score.diagonal_cap))]
    pub diagonal_cap: Option<u32>,
    #[arg(long, help = with_default("Pool votes per family or per best training sequence (family|sequence)", residue_defaults().score.aggregate))]
    pub residue_aggregate: Option<Aggregate>,
    #[arg(long, help = with_default("Training sequences per query aligned to it in the second stage (0 = vote scores only)", residue_defaults().score.align.candidates))]
    pub align_candidates: Option<usize>,
    #[arg(long, help = with_default("Alignment match score: cosine similarity minus this", residue_defaults().score.align.shift))]
    pub align_shift: Option<f32>,
    #[arg(long, help = with_default("Alignment cost of the first residue of a gap", residue_defaults().score.align.gap_open))]
    pub align_gap_open: Option<f32>,
    #[arg(long, help = with_default("Alignment cost of each further residue of a gap", residue_defaults().score.align.gap_extend))]
    pub align_gap_extend: Option<f32>,
    #[arg(long, help = with_default("Weight of the alignment score beside the vote score", residue_defaults().score.align.weight))]
    pub align_weight: Option<f32>,
    #[arg(long, help = with_default("Predict no family when the best family score (share of the query explained) is below this", residue_defaults().min_score))]
    pub residue_min_score: Option<f32>,
    #[arg(long, help = with_default("Residue search: the IVF index saved beside the store (exact search of each residue's nearest k-means lists), exact search over the whole store (the reference), the usearch graph saved beside the store (memory-mapped, candidates rescored exactly), exact search over each query window's shortlist of training sequences, or the in-memory instant-distance graph (ivf|exact|usearch|shortlist|hnsw)", residue_defaults().index))]
    pub residue_index: Option<IndexKind>,
    #[arg(long, help = with_default("Shortlist search: training sequences (nearest by mean residue vector) each query window is searched against", residue_defaults().shortlist.sequences))]
    pub shortlist_sequences: Option<usize>,
    #[arg(long, help = with_default("Shortlist search: query residues per window (longer queries get one shortlist per window)", residue_defaults().shortlist.window))]
    pub shortlist_window: Option<usize>,
    #[arg(long, help = with_default("IVF index: k-means lists over the stored residues (at most one per 16 rows)", residue_defaults().ivf.lists))]
    pub ivf_lists: Option<usize>,
    #[arg(long, help = with_default("IVF index: nearest lists searched exactly per query residue", residue_defaults().ivf.probes))]
    pub ivf_probes: Option<usize>,
    #[arg(long, help = with_default("IVF index, second stage: training sequences per query window (those its first-stage hits point to most) searched exactly (0 = none)", residue_defaults().ivf.sequences))]
    pub ivf_sequences: Option<usize>,
    #[arg(long, help = with_default("IVF index, second stage: query residues per window", residue_defaults().ivf.window))]
    pub ivf_window: Option<usize>,
    #[arg(long, help = with_default("IVF index: arithmetic of the similarity products of both stages: bf16 operands with f32 sums (about 2x faster) or f32 (bf16|f32)", residue_defaults().ivf.products))]
    pub ivf_products: Option<protfam::residue::ivf::Products>,
    #[arg(long, help = with_default("How the usearch graph stores vectors (i8|bf16|f16|f32)", residue_defaults().usearch.quantization))]
    pub index_quantization: Option<Quantization>,
    #[arg(long, help = with_default("usearch graph links per node (HNSW M)", residue_defaults().usearch.connectivity))]
    pub index_connectivity: Option<usize>,
    #[arg(long, help = with_default("usearch candidate list length while building (ef_construction)", residue_defaults().usearch.expansion_add))]
    pub index_ef_build: Option<usize>,
    #[arg(long, help = with_default("usearch candidate list length while searching (ef)", residue_defaults().usearch.expansion_search))]
    pub index_ef: Option<usize>,
    #[arg(long, help = with_default("usearch hits per query residue rescored exactly", residue_defaults().usearch.candidates))]
    pub index_candidates: Option<usize>,
    /// The simple vote (`residue-knn-simple`): stride 2 both sides, top-1, no diagonal term (other flags still apply on top).
    #[arg(long)]
    pub simple_vote: bool,
    /// Root directory of residue stores.
    #[arg(long, default_value = "data/residue")]
    pub residue_store: PathBuf,
}

/// The dev-tuned defaults the flags' help shows.
fn residue_defaults() -> ResidueKnnParams {
    ResidueKnnParams::default()
}

/// `text` with clap's `[default: value]` suffix: the flags are `Option`s (unset
/// keeps the default, or the simple vote's), so clap cannot show the default itself.
fn with_default(text: &str, value: impl std::fmt::Display) -> String {
    format!("{text} [default: {value}]")
}

impl ResidueKnnArgs {
    /// Validated classifier parameters.
    pub fn params(&self) -> anyhow::Result<ResidueKnnParams> {
        let mut p = if self.simple_vote {
            ResidueKnnParams::simple_vote()
        } else {
            ResidueKnnParams::default()
        };
        if let Some(s) = self.residue_stride {
            p.stride = s;
            p.query_stride = s;
        }
        if let Some(s) = self.residue_query_stride {
            p.query_stride = s;
        }
        if let Some(k) = self.residue_top_k {
            p.score.top_k = k;
            p.search_k = k;
        }
        if let Some(v) = self.min_similarity {
            p.score.min_similarity = v;
        }
        if let Some(v) = self.diagonal_weight {
            p.score.diagonal_weight = v;
        }
        if let Some(v) = self.diagonal_band {
            p.score.diagonal_band = v;
        }
        if let Some(v) = self.diagonal_cap {
            p.score.diagonal_cap = v;
        }
        if let Some(v) = self.residue_aggregate {
            p.score.aggregate = v;
        }
        if let Some(v) = self.align_candidates {
            p.score.align.candidates = v;
        }
        if let Some(v) = self.align_shift {
            p.score.align.shift = v;
        }
        if let Some(v) = self.align_gap_open {
            p.score.align.gap_open = v;
        }
        if let Some(v) = self.align_gap_extend {
            p.score.align.gap_extend = v;
        }
        if let Some(v) = self.align_weight {
            p.score.align.weight = v;
        }
        if let Some(v) = self.residue_min_score {
            p.min_score = v;
        }
        if let Some(v) = self.residue_index {
            p.index = v;
        }
        if let Some(v) = self.shortlist_sequences {
            p.shortlist.sequences = v;
        }
        if let Some(v) = self.shortlist_window {
            p.shortlist.window = v;
        }
        if let Some(v) = self.ivf_lists {
            p.ivf.lists = v;
        }
        if let Some(v) = self.ivf_probes {
            p.ivf.probes = v;
        }
        if let Some(v) = self.ivf_sequences {
            p.ivf.sequences = v;
        }
        if let Some(v) = self.ivf_window {
            p.ivf.window = v;
        }
        if let Some(v) = self.ivf_products {
            p.ivf.products = v;
        }
        if let Some(v) = self.index_quantization {
            p.usearch.quantization = v;
        }
        if let Some(v) = self.index_connectivity {
            p.usearch.connectivity = v;
        }
        if let Some(v) = self.index_ef_build {
            p.usearch.expansion_add = v;
        }
        if let Some(v) = self.index_ef {
            p.usearch.expansion_search = v;
        }
        if let Some(v) = self.index_candidates {
            p.usearch.candidates = v;
        }
        p.validate()?;
        Ok(p)
    }
}

impl ResidueKnnArgs {
    /// Parameters for a residue classifier name (`residue-knn-simple` starts from the simple vote).
    pub fn params_for(&self, variant: ResidueVariant) -> anyhow::Result<ResidueKnnParams> {
        let mut args = self.clone();
        args.simple_vote |= variant == ResidueVariant::SimpleVote;
        args.params()
    }
}
