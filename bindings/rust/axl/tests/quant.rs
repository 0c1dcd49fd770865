//! Quantize on load (NF4), weight accounting per format, the model cache and merge-and-export.

mod common;

use std::fs;

use axl::{
    Batch, Context, ContextOptions, ErrorCode, Lora, LoraInit, LoraOptions, Model, ModelOptions, QuantConfig,
    QuantFormat, WeightDtype,
};
use common::{arithmetic_tokens, write_tiny_llama, ScratchDir, QUANT_MODEL};

const BATCH: usize = 2;
const SEQ_LEN: usize = 8;

const ALL_FORMATS: [QuantFormat; 9] = [
    QuantFormat::None,
    QuantFormat::Nf4,
    QuantFormat::Fp4,
    QuantFormat::Int8Row,
    QuantFormat::Int4Group,
    QuantFormat::Int8Channel,
    QuantFormat::Fp8E4m3,
    QuantFormat::Nvfp4,
    QuantFormat::Mxfp4,
];

fn context() -> Context {
    Context::with_options(ContextOptions::new().num_threads(1)).unwrap()
}

fn nf4_config() -> QuantConfig {
    let mut quant = QuantConfig::new().unwrap();
    quant.set_format(QuantFormat::Nf4).unwrap();
    quant.set_block_size(64).unwrap();
    quant.set_double_quant(true).unwrap();
    quant.set_weight_dtype(WeightDtype::F32).unwrap();
    quant
}

#[test]
fn quant_config_setters_check_their_arguments() {
    let mut quant = QuantConfig::new().unwrap();
    for dtype in [WeightDtype::Auto, WeightDtype::F32, WeightDtype::Bf16, WeightDtype::F16] {
        quant.set_weight_dtype(dtype).unwrap();
    }
    quant.set_format(QuantFormat::Int8Row).unwrap();
    let err = quant.set_double_quant(true).unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument, "{err}");
    quant.add_skip_module("lm_head").unwrap();
}

#[test]
fn nf4_model_counts_caches_and_exports() {
    let dir = ScratchDir::new("quant");
    let model_dir = dir.path().join("model");
    fs::create_dir_all(&model_dir).unwrap();
    write_tiny_llama(&model_dir, QUANT_MODEL);
    let ctx = context();
    let quant = nf4_config();
    let model = Model::load_with(&ctx, &model_dir, ModelOptions::new().quant(&quant)).unwrap();
    drop(quant); // read during the load only

    let nf4_bytes = model.weight_bytes(QuantFormat::Nf4).unwrap();
    assert!(nf4_bytes > 0, "no NF4 weights after an NF4 load");
    assert!(model.weight_bytes(QuantFormat::None).unwrap() > 0, "embeddings and norms stay float");
    assert_eq!(model.weight_bytes(QuantFormat::Fp4).unwrap(), 0);
    let total: u64 = ALL_FORMATS.iter().map(|&f| model.weight_bytes(f).unwrap()).sum();
    assert_eq!(total, model.info().weight_bytes);

    let tokens = arithmetic_tokens(BATCH, SEQ_LEN, QUANT_MODEL.vocab);
    let batch = Batch::new(&tokens, BATCH, SEQ_LEN).unwrap();
    let logits = model.forward(None, &batch, None).unwrap();

    // The cache maps back to the same quantized model.
    let cache = dir.path().join("model.axlcache");
    model.save_cache(&cache).unwrap();
    assert!(cache.is_file());
    let cached = Model::load_cache(&ctx, &cache).unwrap();
    assert_eq!(cached.info(), model.info());
    assert_eq!(cached.weight_bytes(QuantFormat::Nf4).unwrap(), nf4_bytes);
    assert_eq!(cached.forward(None, &batch, None).unwrap(), logits);

    // A quant config naming another format contradicts the cache.
    let mut fp4 = QuantConfig::new().unwrap();
    fp4.set_format(QuantFormat::Fp4).unwrap();
    let err = Model::load_cache_with(&ctx, &cache, ModelOptions::new().quant(&fp4)).err().expect("loaded");
    assert_eq!(err.code(), ErrorCode::InvalidArgument, "{err}");
    let err = Model::load_cache(&ctx, dir.path().join("missing.axlcache")).err().expect("loaded");
    assert_ne!(err.code(), ErrorCode::InvalidArgument, "{err}");

    // Merge an adapter into the (dequantized) base and export a Hugging Face model.
    let lora = Lora::new(&cached, &LoraOptions::new().rank(4).init(LoraInit::RandomB).seed(3)).unwrap();
    let export = dir.path().join("merged");
    lora.merge_and_export(&export).unwrap();
    assert!(export.join("config.json").is_file());
    let safetensors = fs::read_dir(&export)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "safetensors"))
        .count();
    assert!(safetensors > 0, "no .safetensors file in the export");
    let config = fs::read_to_string(export.join("config.json")).unwrap();
    assert!(!config.contains("quantization_config"), "{config}");

    // The export is a plain checkpoint the library loads again.
    let merged = Model::load(&ctx, &export).unwrap();
    assert_eq!(merged.info().vocab_size, QUANT_MODEL.vocab as i32);
    assert_eq!(merged.weight_bytes(QuantFormat::Nf4).unwrap(), 0);
}
