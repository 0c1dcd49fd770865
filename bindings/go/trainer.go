package axl

// #include "axl.h"
// extern int32_t axlgoProgress(void *userData, axl_progress *p);
import "C"

import (
	"runtime"
	"unsafe"
)

// Checkpointing names the values of the C option gradient_checkpointing: what a step keeps of
// each layer between its forward and its backward.
type Checkpointing int32

const (
	CheckpointNone          Checkpointing = C.AXL_CHECKPOINT_NONE           // every activation, no recomputation
	CheckpointLayers        Checkpointing = C.AXL_CHECKPOINT_LAYERS         // each layer's input; the layer recomputed
	CheckpointLayersOffload Checkpointing = C.AXL_CHECKPOINT_LAYERS_OFFLOAD // as Layers, the inputs in pinned host memory (CUDA)
)

// TrainerOptions configures NewTrainer. Start from DefaultTrainerOptions.
type TrainerOptions struct {
	GradAccumSteps        int32 // micro-batches per optimizer step
	GradientCheckpointing bool  // recompute layer activations in backward
	// With GradientCheckpointing, keep the checkpointed layer inputs in pinned host memory
	// (CheckpointLayersOffload; the CUDA backend, plain checkpointing on the CPU).
	OffloadActivations bool
	Progress              ProgressFunc
}

// DefaultTrainerOptions returns the library's defaults.
func DefaultTrainerOptions() TrainerOptions {
	var raw C.axl_trainer_options
	C.axl_trainer_options_init(&raw, C.size_t(unsafe.Sizeof(raw)))
	return TrainerOptions{
		GradAccumSteps:        int32(raw.grad_accum_steps),
		GradientCheckpointing: raw.gradient_checkpointing != 0,
		OffloadActivations:    Checkpointing(raw.gradient_checkpointing) == CheckpointLayersOffload,
	}
}

// checkpointing is the C option's value for GradientCheckpointing and OffloadActivations.
func (opts *TrainerOptions) checkpointing() Checkpointing {
	switch {
	case !opts.GradientCheckpointing:
		return CheckpointNone
	case opts.OffloadActivations:
		return CheckpointLayersOffload
	default:
		return CheckpointLayers
	}
}

// StepResult is what one Trainer.Step did.
type StepResult struct {
	Loss          float64 // mean loss over this micro-batch's target tokens
	GradNorm      float64 // global norm before clipping (NaN if no update)
	LR            float64 // learning rate of the update (NaN if no update)
	NumTokens     int64
	OptimizerStep int64 // optimizer steps taken so far, after this call
	Updated       bool  // whether this call applied an optimizer update
}

// Trainer runs training steps of its optimizer's adapter, used by one goroutine at a time.
// While it lives, the adapter must not be used by other goroutines.
type Trainer struct {
	ptr      *C.axl_trainer
	progress *progressState
	slot     *callbackSlot
	log      *logSink
}

// NewTrainer creates a trainer; opts nil means the defaults.
func NewTrainer(optimizer *Optimizer, opts *TrainerOptions) (*Trainer, error) {
	if opts == nil {
		defaults := DefaultTrainerOptions()
		opts = &defaults
	}
	var raw C.axl_trainer_options
	C.axl_trainer_options_init(&raw, C.size_t(unsafe.Sizeof(raw)))
	raw.grad_accum_steps = C.int32_t(opts.GradAccumSteps)
	raw.gradient_checkpointing = C.int32_t(opts.checkpointing())
	t := &Trainer{}
	if opts.Progress != nil {
		t.progress = &progressState{fn: opts.Progress}
		t.slot = newCallbackSlot(t.progress)
		raw.progress_fn = C.axl_progress_fn(C.axlgoProgress)
		raw.progress_user_data = t.slot.ptr
	}
	var ptr *C.axl_trainer
	err := call(func() C.axl_status { return C.axl_trainer_create(optimizer.ptr, &raw, &ptr) })
	runtime.KeepAlive(optimizer)
	if err != nil {
		if t.slot != nil {
			t.slot.free()
		}
		return nil, err
	}
	t.ptr, t.log = ptr, optimizer.log.retain()
	runtime.SetFinalizer(t, (*Trainer).Close)
	return t, nil
}

// Close releases the trainer and, after it, its progress callback.
func (t *Trainer) Close() {
	if t.ptr == nil {
		return
	}
	C.axl_trainer_destroy(t.ptr)
	t.ptr = nil
	if t.slot != nil {
		t.slot.free()
	}
	t.log.release()
	runtime.SetFinalizer(t, nil)
}

// Step runs forward and backward of one micro-batch; every GradAccumSteps-th call also
// applies the optimizer update. Non-finite loss or gradients fail with ErrNumeric and leave
// adapter and optimizer unchanged.
func (t *Trainer) Step(batch *Batch) (StepResult, error) {
	cb, err := batch.toC()
	if err != nil {
		return StepResult{}, err
	}
	defer cb.free()
	var raw C.axl_step_result
	C.axl_step_result_init(&raw, C.size_t(unsafe.Sizeof(raw)))
	err = call(func() C.axl_status { return C.axl_trainer_step(t.ptr, cb.raw, &raw) })
	runtime.KeepAlive(t)
	if t.progress != nil {
		err = t.progress.finish(err)
	}
	if err != nil {
		return StepResult{}, err
	}
	return StepResult{
		Loss:          float64(raw.loss),
		GradNorm:      float64(raw.grad_norm),
		LR:            float64(raw.lr),
		NumTokens:     int64(raw.num_tokens),
		OptimizerStep: int64(raw.optimizer_step),
		Updated:       raw.updated != 0,
	}, nil
}

// DiscardGradients zeroes the gradients of micro-batches not yet applied.
func (t *Trainer) DiscardGradients() error {
	err := call(func() C.axl_status { return C.axl_trainer_discard_gradients(t.ptr) })
	runtime.KeepAlive(t)
	return err
}
