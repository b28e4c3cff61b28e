//! Random GPT-2 weights drawn as Hugging Face's `_init_weights` draws them, from a
//! seeded generator, for trying everything offline and for tests.

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use super::{parameter_shapes, Gpt2Config, Weights};

/// Named GPT-2 shapes (all with the real 50257-token vocabulary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// 2 layers, 2 heads, 64 wide, 128 positions.
    Tiny,
    /// 4 layers, 4 heads, 256 wide, 256 positions.
    Small,
    /// The real GPT-2 small shape: 12 layers, 12 heads, 768 wide, 1024 positions.
    Gpt2,
    /// distilgpt2's shape: 6 layers, 12 heads, 768 wide, 1024 positions.
    Distilgpt2,
}

impl Preset {
    /// The configuration of this preset with `num_labels` default labels.
    pub fn config(self) -> Gpt2Config {
        let (n_layer, n_head, n_embd, n_positions) = match self {
            Self::Tiny => (2, 2, 64, 128),
            Self::Small => (4, 4, 256, 256),
            Self::Gpt2 => (12, 12, 768, 1024),
            Self::Distilgpt2 => (6, 12, 768, 1024),
        };
        Gpt2Config::with_shape(n_layer, n_head, n_embd, n_positions)
    }
}

fn normal_tensor(
    shape: &[usize],
    std: f64,
    rng: &mut ChaCha8Rng,
    dev: &Device,
) -> candle_core::Result<Tensor> {
    let dist = Normal::new(0.0f32, std as f32).expect("a positive standard deviation");
    let n = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|_| dist.sample(rng)).collect();
    Tensor::from_vec(data, shape, dev)
}

/// A whole classifier with random weights: matrices and embeddings ~ N(0, σ),
/// residual projections ~ N(0, σ/√(2·n_layer)), biases 0, LayerNorm scales 1.
///
/// The body is drawn from `seed`; the head from [`init_score_head`] with the same
/// seed. The same seed always gives the same weights.
pub fn random_weights(cfg: &Gpt2Config, seed: u64, dev: &Device) -> candle_core::Result<Weights> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let std = cfg.initializer_range;
    let proj_std = std / (2.0 * cfg.n_layer as f64).sqrt();
    let mut weights = Weights::new();
    for (name, shape) in parameter_shapes(cfg) {
        let tensor = if name == "score.weight" {
            init_score_head(cfg, seed, dev)?
        } else if name.ends_with("ln_1.weight")
            || name.ends_with("ln_2.weight")
            || name.ends_with("ln_f.weight")
        {
            Tensor::ones(shape.as_slice(), candle_core::DType::F32, dev)?
        } else if name.ends_with(".bias") {
            Tensor::zeros(shape.as_slice(), candle_core::DType::F32, dev)?
        } else if name.ends_with("c_proj.weight") {
            normal_tensor(&shape, proj_std, &mut rng, dev)?
        } else {
            normal_tensor(&shape, std, &mut rng, dev)?
        };
        weights.insert(name, tensor);
    }
    Ok(weights)
}

/// A fresh `score.weight` `[num_labels, n_embd]` ~ N(0, initializer_range), seeded.
pub fn init_score_head(cfg: &Gpt2Config, seed: u64, dev: &Device) -> candle_core::Result<Tensor> {
    // A distinct stream so the head does not repeat the body's first numbers.
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(1);
    normal_tensor(
        &[cfg.num_labels(), cfg.n_embd],
        cfg.initializer_range,
        &mut rng,
        dev,
    )
}
