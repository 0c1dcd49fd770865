//! Test fixtures: a tiny random Llama checkpoint written the way transformers writes one, and
//! scratch directories.
#![allow(dead_code)] // each test binary uses a part of these fixtures

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Shape of a generated Llama checkpoint.
#[derive(Clone, Copy)]
pub struct TinyLlama {
    pub vocab: usize,
    pub hidden: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub tie_word_embeddings: bool,
}

pub const TRAIN_MODEL: TinyLlama = TinyLlama {
    vocab: 64,
    hidden: 32,
    intermediate: 64,
    layers: 2,
    heads: 4,
    kv_heads: 2,
    tie_word_embeddings: false,
};

/// Every linear weight's rows split into whole 64-element blocks (NF4's default block size).
pub const QUANT_MODEL: TinyLlama = TinyLlama {
    vocab: 64,
    hidden: 64,
    intermediate: 128,
    layers: 2,
    heads: 4,
    kv_heads: 2,
    tie_word_embeddings: false,
};

/// Small enough to load a thousand times quickly, large enough (~350 KB of weights) that a
/// leaked model would show in the process's resident memory.
pub const MEMORY_MODEL: TinyLlama = TinyLlama {
    vocab: 256,
    hidden: 64,
    intermediate: 128,
    layers: 2,
    heads: 4,
    kv_heads: 2,
    tie_word_embeddings: true,
};

/// A directory under the system temp dir, removed when dropped.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn new(name: &str) -> ScratchDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let unique =
            format!("axl-rust-{}-{}-{}", name, std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let path = std::env::temp_dir().join(unique);
        fs::create_dir_all(&path).unwrap();
        ScratchDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// xorshift64: deterministic weights without a rand crate.
struct Rng(u64);

impl Rng {
    fn uniform_pm1(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
    }
}

struct TensorSpec {
    name: String,
    shape: Vec<usize>,
    /// 0: all ones (norm weights); otherwise uniform in [-scale, scale].
    scale: f32,
}

/// Writes config.json and model.safetensors (F32) into `dir`.
pub fn write_tiny_llama(dir: &Path, m: TinyLlama) {
    let head_dim = m.hidden / m.heads;
    let proj = 1.0 / (m.hidden as f32).sqrt();
    let mut tensors = vec![
        TensorSpec { name: "model.embed_tokens.weight".into(), shape: vec![m.vocab, m.hidden], scale: 1.0 },
        TensorSpec { name: "model.norm.weight".into(), shape: vec![m.hidden], scale: 0.0 },
    ];
    for l in 0..m.layers {
        let layer = |suffix: &str, shape: Vec<usize>, scale: f32| TensorSpec {
            name: format!("model.layers.{l}.{suffix}"),
            shape,
            scale,
        };
        tensors.push(layer("input_layernorm.weight", vec![m.hidden], 0.0));
        tensors.push(layer("post_attention_layernorm.weight", vec![m.hidden], 0.0));
        tensors.push(layer("self_attn.q_proj.weight", vec![m.heads * head_dim, m.hidden], proj));
        tensors.push(layer("self_attn.k_proj.weight", vec![m.kv_heads * head_dim, m.hidden], proj));
        tensors.push(layer("self_attn.v_proj.weight", vec![m.kv_heads * head_dim, m.hidden], proj));
        tensors.push(layer("self_attn.o_proj.weight", vec![m.hidden, m.heads * head_dim], proj));
        tensors.push(layer("mlp.gate_proj.weight", vec![m.intermediate, m.hidden], proj));
        tensors.push(layer("mlp.up_proj.weight", vec![m.intermediate, m.hidden], proj));
        tensors.push(layer(
            "mlp.down_proj.weight",
            vec![m.hidden, m.intermediate],
            1.0 / (m.intermediate as f32).sqrt(),
        ));
    }
    if !m.tie_word_embeddings {
        tensors.push(TensorSpec {
            name: "lm_head.weight".into(),
            shape: vec![m.vocab, m.hidden],
            scale: proj,
        });
    }

    // safetensors: u64 little-endian header length, JSON header (padded to 8), raw data.
    let mut header = String::from("{");
    let mut offset = 0usize;
    for (i, t) in tensors.iter().enumerate() {
        let bytes = t.shape.iter().product::<usize>() * 4;
        let shape: Vec<String> = t.shape.iter().map(|d| d.to_string()).collect();
        header += &format!(
            "{}\"{}\":{{\"dtype\":\"F32\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
            if i > 0 { "," } else { "" },
            t.name,
            shape.join(","),
            offset,
            offset + bytes
        );
        offset += bytes;
    }
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut file = Vec::with_capacity(8 + header.len() + offset);
    file.extend_from_slice(&(header.len() as u64).to_le_bytes());
    file.extend_from_slice(header.as_bytes());
    let mut rng = Rng(0x9e3779b97f4a7c15);
    for t in &tensors {
        for _ in 0..t.shape.iter().product::<usize>() {
            let v = if t.scale == 0.0 { 1.0 } else { t.scale * rng.uniform_pm1() };
            file.extend_from_slice(&v.to_le_bytes());
        }
    }
    fs::write(dir.join("model.safetensors"), file).unwrap();

    let config = format!(
        r#"{{
  "architectures": ["LlamaForCausalLM"],
  "model_type": "llama",
  "vocab_size": {},
  "hidden_size": {},
  "intermediate_size": {},
  "num_hidden_layers": {},
  "num_attention_heads": {},
  "num_key_value_heads": {},
  "max_position_embeddings": 128,
  "rms_norm_eps": 1e-05,
  "rope_theta": 10000.0,
  "tie_word_embeddings": {},
  "hidden_act": "silu",
  "torch_dtype": "float32"
}}
"#,
        m.vocab, m.hidden, m.intermediate, m.layers, m.heads, m.kv_heads, m.tie_word_embeddings
    );
    fs::write(dir.join("config.json"), config).unwrap();
}

/// Arithmetic sequences modulo the vocabulary: learnable after two tokens.
pub fn arithmetic_tokens(batch: usize, seq_len: usize, vocab: usize) -> Vec<i32> {
    let mut tokens = Vec::with_capacity(batch * seq_len);
    for b in 0..batch {
        let step = 1 + b % 3;
        for t in 0..seq_len {
            tokens.push(((b * 7 + t * step) % vocab) as i32);
        }
    }
    tokens
}
