package axl

// #include "axl.h"
import "C"

import (
	"runtime"
	"unsafe"
)

// Schedule is the learning-rate schedule after warmup.
type Schedule int32

const (
	ScheduleConstant Schedule = C.AXL_SCHEDULE_CONSTANT
	ScheduleLinear   Schedule = C.AXL_SCHEDULE_LINEAR // linear decay to MinLRRatio*LR at TotalSteps
	ScheduleCosine   Schedule = C.AXL_SCHEDULE_COSINE // half-cosine decay to MinLRRatio*LR at TotalSteps
)

// OptimizerParam names a tunable that may change between steps.
type OptimizerParam int32

const (
	ParamLR          OptimizerParam = C.AXL_OPTIMIZER_PARAM_LR
	ParamWeightDecay OptimizerParam = C.AXL_OPTIMIZER_PARAM_WEIGHT_DECAY
	ParamMaxGradNorm OptimizerParam = C.AXL_OPTIMIZER_PARAM_MAX_GRAD_NORM
)

// OptimizerOptions configures NewOptimizer (AdamW). Start from DefaultOptimizerOptions.
type OptimizerOptions struct {
	LR          float64 // peak learning rate
	Beta1       float64
	Beta2       float64
	Eps         float64
	WeightDecay float64 // decoupled
	Schedule    Schedule
	WarmupSteps int64
	TotalSteps  int64 // needed by the decaying schedules
	MinLRRatio  float64
	MaxGradNorm float64 // global-norm clipping; 0 disables
}

// DefaultOptimizerOptions returns the library's defaults.
func DefaultOptimizerOptions() OptimizerOptions {
	var raw C.axl_optimizer_options
	C.axl_optimizer_options_init(&raw, C.size_t(unsafe.Sizeof(raw)))
	return OptimizerOptions{
		LR:          float64(raw.lr),
		Beta1:       float64(raw.beta1),
		Beta2:       float64(raw.beta2),
		Eps:         float64(raw.eps),
		WeightDecay: float64(raw.weight_decay),
		Schedule:    Schedule(raw.schedule),
		WarmupSteps: int64(raw.warmup_steps),
		TotalSteps:  int64(raw.total_steps),
		MinLRRatio:  float64(raw.min_lr_ratio),
		MaxGradNorm: float64(raw.max_grad_norm),
	}
}

// Optimizer is AdamW over an adapter's parameters; it keeps the adapter alive.
type Optimizer struct {
	ptr *C.axl_optimizer
	log *logSink
}

// NewOptimizer creates an optimizer over lora; opts nil means the defaults.
func NewOptimizer(lora *Lora, opts *OptimizerOptions) (*Optimizer, error) {
	if opts == nil {
		defaults := DefaultOptimizerOptions()
		opts = &defaults
	}
	var raw C.axl_optimizer_options
	C.axl_optimizer_options_init(&raw, C.size_t(unsafe.Sizeof(raw)))
	raw.lr = C.double(opts.LR)
	raw.beta1 = C.double(opts.Beta1)
	raw.beta2 = C.double(opts.Beta2)
	raw.eps = C.double(opts.Eps)
	raw.weight_decay = C.double(opts.WeightDecay)
	raw.schedule = C.int32_t(opts.Schedule)
	raw.warmup_steps = C.int64_t(opts.WarmupSteps)
	raw.total_steps = C.int64_t(opts.TotalSteps)
	raw.min_lr_ratio = C.double(opts.MinLRRatio)
	raw.max_grad_norm = C.double(opts.MaxGradNorm)
	var ptr *C.axl_optimizer
	err := call(func() C.axl_status { return C.axl_optimizer_create(lora.ptr, &raw, &ptr) })
	runtime.KeepAlive(lora)
	if err != nil {
		return nil, err
	}
	o := &Optimizer{ptr: ptr, log: lora.log.retain()}
	runtime.SetFinalizer(o, (*Optimizer).Close)
	return o, nil
}

// Close releases the optimizer.
func (o *Optimizer) Close() {
	if o.ptr == nil {
		return
	}
	C.axl_optimizer_destroy(o.ptr)
	o.ptr = nil
	o.log.release()
	runtime.SetFinalizer(o, nil)
}

// SetParam changes a tunable for the following steps.
func (o *Optimizer) SetParam(param OptimizerParam, value float64) error {
	err := call(func() C.axl_status { return C.axl_optimizer_set_param(o.ptr, C.int32_t(param), C.double(value)) })
	runtime.KeepAlive(o)
	return err
}

// Param returns a tunable's current value.
func (o *Optimizer) Param(param OptimizerParam) (float64, error) {
	var value C.double
	err := call(func() C.axl_status { return C.axl_optimizer_get_param(o.ptr, C.int32_t(param), &value) })
	runtime.KeepAlive(o)
	return float64(value), err
}

// LRAt returns the learning rate the schedule gives at optimizer step step (0-based).
func (o *Optimizer) LRAt(step int64) (float64, error) {
	var lr C.double
	err := call(func() C.axl_status { return C.axl_optimizer_lr_at(o.ptr, C.int64_t(step), &lr) })
	runtime.KeepAlive(o)
	return float64(lr), err
}
