//! End to end through the safe API: load, train with a progress callback, save, reload,
//! compare logits; errors as Error values; panics and cancellation from callbacks.

mod common;

use std::ops::ControlFlow;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axl::{
    Batch, Context, ContextOptions, ErrorCode, LogLevel, Lora, LoraOptions, Model, ModelOptions, Optimizer,
    OptimizerOptions, OptimizerParam, Stage, Trainer, TrainerOptions,
};
use common::{arithmetic_tokens, write_tiny_llama, ScratchDir, TRAIN_MODEL};

const BATCH: usize = 2;
const SEQ_LEN: usize = 16;

fn context() -> Context {
    Context::with_options(ContextOptions::new().num_threads(1)).unwrap()
}

fn tiny_model(dir: &ScratchDir, ctx: &Context) -> Model {
    write_tiny_llama(dir.path(), TRAIN_MODEL);
    Model::load(ctx, dir.path()).unwrap()
}

#[test]
fn trains_saves_and_reloads_the_same_adapter() {
    let dir = ScratchDir::new("train");
    write_tiny_llama(dir.path(), TRAIN_MODEL);
    let ctx = context();
    let mut tensors_loaded = 0;
    let model = Model::load_with(
        &ctx,
        dir.path(),
        ModelOptions::new().on_progress(|p| {
            assert_eq!(p.stage, Stage::Load);
            tensors_loaded += 1;
            ControlFlow::Continue(())
        }),
    )
    .unwrap();
    assert!(tensors_loaded > 0, "the load progress callback was never called");
    assert_eq!(model.architecture(), "llama");
    let info = model.info();
    assert_eq!(info.vocab_size, TRAIN_MODEL.vocab as i32);
    assert_eq!(info.num_layers, TRAIN_MODEL.layers as i32);

    let tokens = arithmetic_tokens(BATCH, SEQ_LEN, TRAIN_MODEL.vocab);
    let batch = Batch::new(&tokens, BATCH, SEQ_LEN).unwrap();
    let base_logits = model.forward(None, &batch, None).unwrap();
    assert_eq!(base_logits.len(), BATCH * SEQ_LEN * TRAIN_MODEL.vocab);

    let mut lora = Lora::new(&model, &LoraOptions::new().rank(4).alpha(8.0).seed(7)).unwrap();
    assert!(lora.num_parameters().unwrap() > 0);
    let reports = Arc::new(AtomicUsize::new(0));
    let trained_logits;
    {
        let mut optimizer = Optimizer::new(&mut lora, &OptimizerOptions::new().lr(1e-2)).unwrap();
        assert_eq!(optimizer.param(OptimizerParam::LearningRate).unwrap(), 1e-2);
        let counter = Arc::clone(&reports);
        let mut trainer = Trainer::new(
            &mut optimizer,
            TrainerOptions::new().on_progress(move |p| {
                assert!(matches!(p.stage, Stage::Forward | Stage::Backward));
                counter.fetch_add(1, Ordering::Relaxed);
                ControlFlow::Continue(())
            }),
        )
        .unwrap();
        trainer.set_optimizer_param(OptimizerParam::LearningRate, 2e-2).unwrap();
        assert_eq!(trainer.optimizer().param(OptimizerParam::LearningRate).unwrap(), 2e-2);
        let first = trainer.step(&batch).unwrap();
        let mut last = first;
        for _ in 0..4 {
            last = trainer.step(&batch).unwrap();
        }
        assert!(first.loss.is_finite() && last.loss < first.loss, "loss {} -> {}", first.loss, last.loss);
        assert!(last.updated);
        assert_eq!(last.optimizer_step, 5);
        trained_logits = model.forward(Some(trainer.lora()), &batch, None).unwrap();
    }
    assert!(reports.load(Ordering::Relaxed) > 0, "the training progress callback was never called");
    assert_ne!(trained_logits, base_logits, "training did not change the adapter's output");

    let adapter_dir = dir.path().join("adapter");
    lora.save(&adapter_dir).unwrap();
    let reloaded = Lora::load(&model, &adapter_dir).unwrap();
    let reloaded_logits = model.forward(Some(&reloaded), &batch, None).unwrap();
    assert_eq!(reloaded_logits, trained_logits, "logits differ after save and reload");

    let eval = model.evaluate(Some(&reloaded), &batch).unwrap();
    assert_eq!(eval.num_tokens, (BATCH * (SEQ_LEN - 1)) as i64);
    assert!(eval.loss.is_finite());
}

#[test]
fn errors_carry_the_library_code_and_message() {
    let ctx = context();
    let missing = std::env::temp_dir().join("axl-rust-no-such-model");
    let error = Model::load(&ctx, &missing).err().expect("loading a missing directory succeeded");
    assert_eq!(error.code(), ErrorCode::NotFound);
    assert!(error.message().starts_with("axl_model_load"), "message: {}", error.message());
    assert!(error.message().contains("axl-rust-no-such-model"), "message: {}", error.message());

    let dir = ScratchDir::new("errors");
    let model = tiny_model(&dir, &ctx);
    let error = Lora::new(&model, &LoraOptions::new().rank(0)).err().expect("rank 0 was accepted");
    assert_eq!(error.code(), ErrorCode::InvalidArgument);
    assert!(error.message().contains("rank"), "message: {}", error.message());
    assert!(error.to_string().contains("invalid argument"));

    let error = Lora::new(&model, &LoraOptions::new().target_modules("no_such_proj")).err().unwrap();
    assert_eq!(error.code(), ErrorCode::NotFound);
    assert!(error.message().contains("no_such_proj"), "message: {}", error.message());

    let tokens = [1, 2, 3];
    let error = Batch::new(&tokens, 2, 2).expect_err("a short token slice was accepted");
    assert_eq!(error.code(), ErrorCode::InvalidArgument);
}

#[test]
fn progress_callback_cancels_and_panics_propagate() {
    let dir = ScratchDir::new("cancel");
    let ctx = context();
    let model = tiny_model(&dir, &ctx);
    let tokens = arithmetic_tokens(BATCH, SEQ_LEN, TRAIN_MODEL.vocab);
    let batch = Batch::new(&tokens, BATCH, SEQ_LEN).unwrap();
    let mut lora = Lora::new(&model, &LoraOptions::new().rank(2)).unwrap();
    let before = model.forward(Some(&lora), &batch, Some(&[0, 5])).unwrap();

    {
        let mut optimizer = Optimizer::new(&mut lora, &OptimizerOptions::new().lr(1e-2)).unwrap();
        let mut trainer =
            Trainer::new(&mut optimizer, TrainerOptions::new().on_progress(|_| ControlFlow::Break(())))
                .unwrap();
        let error = trainer.step(&batch).expect_err("a cancelled step succeeded");
        assert_eq!(error.code(), ErrorCode::Cancelled);
    }
    {
        let mut optimizer = Optimizer::new(&mut lora, &OptimizerOptions::new().lr(1e-2)).unwrap();
        let mut trainer = Trainer::new(
            &mut optimizer,
            TrainerOptions::new().on_progress(|_| panic!("stop from the callback")),
        )
        .unwrap();
        let payload = panic::catch_unwind(AssertUnwindSafe(|| trainer.step(&batch))).expect_err("no panic");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"stop from the callback"));
    }
    let after = model.forward(Some(&lora), &batch, Some(&[0, 5])).unwrap();
    assert_eq!(before, after, "a cancelled step changed the adapter");
}

#[test]
fn a_model_is_shared_across_threads() {
    let dir = ScratchDir::new("threads");
    let ctx = context();
    let model = tiny_model(&dir, &ctx);
    let tokens = arithmetic_tokens(BATCH, SEQ_LEN, TRAIN_MODEL.vocab);
    let expected = {
        let lora = Lora::new(&model, &LoraOptions::new().rank(2).seed(3)).unwrap();
        model.forward(Some(&lora), &Batch::new(&tokens, BATCH, SEQ_LEN).unwrap(), None).unwrap()
    };
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                let lora = Lora::new(&model, &LoraOptions::new().rank(2).seed(3)).unwrap();
                let batch = Batch::new(&tokens, BATCH, SEQ_LEN).unwrap();
                assert_eq!(model.forward(Some(&lora), &batch, None).unwrap(), expected);
            });
        }
    });
}

#[test]
fn log_messages_reach_the_closure_while_any_handle_lives() {
    let dir = ScratchDir::new("log");
    write_tiny_llama(dir.path(), TRAIN_MODEL);
    let lines = Arc::new(Mutex::new(Vec::<(LogLevel, String)>::new()));
    let sink = Arc::clone(&lines);
    let ctx = Context::with_options(
        ContextOptions::new().num_threads(1).on_log(LogLevel::Info, move |level, message| {
            sink.lock().unwrap().push((level, message.to_string()))
        }),
    )
    .unwrap();
    let model = Model::load(&ctx, dir.path()).unwrap();
    drop(ctx); // the model keeps the context, and so the log closure, alive
    let lora = Lora::new(&model, &LoraOptions::new()).unwrap();
    drop(model);
    drop(lora);
    let lines = lines.lock().unwrap();
    assert!(
        lines.iter().any(|(level, text)| *level == LogLevel::Info && text.contains("loaded llama model")),
        "log lines: {lines:?}"
    );
}

/// Offload (`AXL_CHECKPOINT_LAYERS_OFFLOAD`) is accepted everywhere; on the CPU it trains exactly
/// as plain checkpointing.
#[test]
fn offload_option_trains_as_checkpointing_on_the_cpu() {
    let dir = ScratchDir::new("offload");
    let ctx = context();
    let model = tiny_model(&dir, &ctx);
    let tokens = arithmetic_tokens(BATCH, SEQ_LEN, TRAIN_MODEL.vocab);
    let batch = Batch::new(&tokens, BATCH, SEQ_LEN).unwrap();
    let mut losses = Vec::new();
    for offload in [false, true] {
        let mut lora = Lora::new(&model, &LoraOptions::new().seed(3)).unwrap();
        let mut optimizer = Optimizer::new(&mut lora, &OptimizerOptions::new()).unwrap();
        let mut trainer =
            Trainer::new(&mut optimizer, TrainerOptions::new().offload_activations(offload)).unwrap();
        trainer.step(&batch).unwrap();
        losses.push(trainer.step(&batch).unwrap().loss);
    }
    assert_eq!(losses[0], losses[1], "offload changed the CPU step");
}
