package axl

// #include <stdlib.h>
// #include "axl.h"
import "C"

import (
	"runtime"
	"unsafe"
)

// LoraInit selects how a new adapter's matrices start.
type LoraInit int32

const (
	LoraInitDefault  LoraInit = C.AXL_LORA_INIT_DEFAULT  // PEFT: A kaiming-uniform, B = 0
	LoraInitGaussian LoraInit = C.AXL_LORA_INIT_GAUSSIAN // A ~ N(0, 1/r), B = 0
	LoraInitRandomB  LoraInit = C.AXL_LORA_INIT_RANDOM_B // as Default, B also random
)

// LoraOptions configures NewLora. Start from DefaultLoraOptions: zero is not a default here.
type LoraOptions struct {
	Rank          int32
	Alpha         float64
	Dropout       float64
	UseRSLoRA     bool   // scaling alpha/sqrt(r) instead of alpha/r
	UseDoRA       bool   // a magnitude vector per output row
	TargetModules string // "q_proj,v_proj" or "all-linear"; "" means the default
	Seed          uint64
	Init          LoraInit
}

// DefaultLoraOptions returns the library's defaults (rank 8, alpha 8, all-linear).
func DefaultLoraOptions() LoraOptions {
	var raw C.axl_lora_options
	C.axl_lora_options_init(&raw, C.size_t(unsafe.Sizeof(raw)))
	return LoraOptions{
		Rank:      int32(raw.rank),
		Alpha:     float64(raw.alpha),
		Dropout:   float64(raw.dropout),
		UseRSLoRA: raw.use_rslora != 0,
		UseDoRA:   raw.use_dora != 0,
		Seed:      uint64(raw.seed),
		Init:      LoraInit(raw.init),
	}
}

// Lora is a LoRA adapter over a model, used by one goroutine at a time. While a Trainer
// trains it, only that trainer may use it.
type Lora struct {
	ptr *C.axl_lora
	log *logSink
}

// NewLora creates a freshly initialised adapter; opts nil means the defaults.
func NewLora(model *Model, opts *LoraOptions) (*Lora, error) {
	if opts == nil {
		defaults := DefaultLoraOptions()
		opts = &defaults
	}
	var raw C.axl_lora_options
	C.axl_lora_options_init(&raw, C.size_t(unsafe.Sizeof(raw)))
	raw.rank = C.int32_t(opts.Rank)
	raw.alpha = C.double(opts.Alpha)
	raw.dropout = C.double(opts.Dropout)
	raw.use_rslora = cBool(opts.UseRSLoRA)
	raw.use_dora = cBool(opts.UseDoRA)
	raw.seed = C.uint64_t(opts.Seed)
	raw.init = C.int32_t(opts.Init)
	if opts.TargetModules != "" {
		targets, err := cString(opts.TargetModules, "TargetModules")
		if err != nil {
			return nil, err
		}
		defer freeCString(targets)
		raw.target_modules = targets
	}
	var ptr *C.axl_lora
	err := call(func() C.axl_status { return C.axl_lora_create(model.ptr, &raw, &ptr) })
	runtime.KeepAlive(model)
	if err != nil {
		return nil, err
	}
	return newLoraHandle(ptr, model), nil
}

// LoadLora loads a PEFT adapter directory (adapter_config.json + adapter_model.safetensors).
func LoadLora(model *Model, adapterDir string) (*Lora, error) {
	dir, err := cString(adapterDir, "adapterDir")
	if err != nil {
		return nil, err
	}
	defer freeCString(dir)
	var ptr *C.axl_lora
	err = call(func() C.axl_status { return C.axl_lora_load(model.ptr, dir, &ptr) })
	runtime.KeepAlive(model)
	if err != nil {
		return nil, err
	}
	return newLoraHandle(ptr, model), nil
}

func newLoraHandle(ptr *C.axl_lora, model *Model) *Lora {
	l := &Lora{ptr: ptr, log: model.log.retain()}
	runtime.SetFinalizer(l, (*Lora).Close)
	return l
}

// Close releases the adapter.
func (l *Lora) Close() {
	if l.ptr == nil {
		return
	}
	C.axl_lora_destroy(l.ptr)
	l.ptr = nil
	l.log.release()
	runtime.SetFinalizer(l, nil)
}

// raw is the handle to pass to C; a nil *Lora is the bare base model.
func (l *Lora) raw() *C.axl_lora {
	if l == nil {
		return nil
	}
	return l.ptr
}

// Save writes the adapter in PEFT's format into adapterDir (created if missing).
func (l *Lora) Save(adapterDir string) error {
	dir, err := cString(adapterDir, "adapterDir")
	if err != nil {
		return err
	}
	defer freeCString(dir)
	err = call(func() C.axl_status { return C.axl_lora_save(l.ptr, dir) })
	runtime.KeepAlive(l)
	return err
}

// NumParameters returns the number of trainable parameters.
func (l *Lora) NumParameters() (int64, error) {
	var count C.int64_t
	err := call(func() C.axl_status { return C.axl_lora_num_parameters(l.ptr, &count) })
	runtime.KeepAlive(l)
	return int64(count), err
}

// CopyFrom copies src's values into l (same model, targets and rank): hot-swaps what a server
// serves with an adapter just trained.
func (l *Lora) CopyFrom(src *Lora) error {
	err := call(func() C.axl_status { return C.axl_lora_copy_from(l.ptr, src.ptr) })
	runtime.KeepAlive(l)
	runtime.KeepAlive(src)
	return err
}

// MergeAndExport merges the adapter into its base model and writes a full-precision (bf16)
// Hugging Face model into outDir (created if missing): config.json and model.safetensors (or
// shards with an index). Quantized base weights are dequantized first. No tokenizer files.
func (l *Lora) MergeAndExport(outDir string) error {
	dir, err := cString(outDir, "outDir")
	if err != nil {
		return err
	}
	defer freeCString(dir)
	err = call(func() C.axl_status { return C.axl_lora_merge_and_export(l.ptr, dir) })
	runtime.KeepAlive(l)
	return err
}
