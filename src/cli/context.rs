//! The flags every command shares, one definition each: which data
//! ([`DataArgs`]), which models directory, device and dtype ([`ModelArgs`]),
//! which embedding cache ([`CacheArgs`]). Each turns its raw flags into the
//! library's validated options once ([`DataArgs::open`], [`ModelArgs::load_options`]),
//! so every command finds the data, the weights and the device the same way.

use std::path::PathBuf;

use anyhow::Context as _;
use protfam::dataset::Split;
use protfam::models::LoadOptions;

/// Where a Pfam split lives.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Data")]
pub struct DataArgs {
    /// Dataset root holding `<split>/{train,dev,test}/data-*` shards
    /// [default: $PROTFAM_DATA, else the bundled pfam35-uniprot20k under data/ or ../shared/data/]
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Split directory name under the dataset root.
    #[arg(long, default_value = "clustered_split")]
    pub split: String,
}

impl DataArgs {
    /// The dataset root by the one rule ([`protfam::dataset::find_root`]).
    pub fn root(&self) -> anyhow::Result<PathBuf> {
        Ok(protfam::dataset::find_root(self.data.as_deref())?)
    }

    /// The split, checked to exist.
    pub fn open(&self) -> anyhow::Result<Split> {
        Ok(Split::open(self.root()?, &self.split)?)
    }
}

/// Where model weights are and what to compute on.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Model and device")]
pub struct ModelArgs {
    /// Directory of registry models [default: $PROTFAM_MODELS, else `models`].
    #[arg(long, value_name = "DIR")]
    pub models_dir: Option<PathBuf>,
    /// Compute device: `cpu`, `cuda` or `cuda:N` (CUDA needs the `cuda` feature)
    /// [default: the first CUDA device when there is one, else cpu].
    #[arg(long, value_name = "DEVICE")]
    pub device: Option<String>,
    /// Compute dtype of embedders: f32, f16 or bf16.
    #[arg(long, default_value = "f32", value_parser = ["f32", "f16", "bf16"])]
    pub dtype: String,
    /// Same as `--device cpu` (kept for old scripts).
    #[arg(long, hide = true)]
    pub cpu: bool,
}

impl ModelArgs {
    /// `--models-dir`, else `$PROTFAM_MODELS`, else `models`.
    pub fn models_dir(&self) -> PathBuf {
        self.models_dir
            .clone()
            .or_else(|| {
                std::env::var_os("PROTFAM_MODELS")
                    .filter(|d| !d.is_empty())
                    .map(PathBuf::from)
            })
            .unwrap_or_else(|| PathBuf::from("models"))
    }

    /// The device these flags name.
    pub fn device(&self) -> anyhow::Result<candle_core::Device> {
        if self.cpu {
            return Ok(candle_core::Device::Cpu);
        }
        match self.device.as_deref() {
            None => Ok(protfam::classify::default_device()),
            Some(spec) => protfam::models::parse_device(spec).with_context(|| format!("--device {spec}")),
        }
    }

    /// The library's model-loading options (layer: the model's default).
    pub fn load_options(&self) -> anyhow::Result<LoadOptions> {
        let device = self.device()?;
        let dtype = protfam::models::parse_dtype(&self.dtype, &device)?;
        Ok(LoadOptions {
            device,
            dtype,
            layer: None,
            models_dir: self.models_dir(),
        })
    }
}

/// The embedding cache.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Embedding cache")]
pub struct CacheArgs {
    /// Embedding cache directory (vectors already there are reused).
    #[arg(long, value_name = "DIR", default_value = protfam::cache::DEFAULT_DIR)]
    pub cache: PathBuf,
}

impl CacheArgs {
    pub fn open(&self) -> protfam::cache::Cache {
        protfam::cache::Cache::new(&self.cache)
    }
}
