package axl

// #include <stdlib.h>
// #include "axl.h"
// extern int32_t axlgoProgress(void *userData, axl_progress *p);
import "C"

import (
	"runtime"
	"unsafe"
)

// ModelOptions configures LoadModel.
type ModelOptions struct {
	Quant    *QuantConfig // nil: keep the checkpoint's dtype
	Progress ProgressFunc // called once per tensor loaded; nil: none
}

// ModelInfo gives the dimensions of a loaded model.
type ModelInfo struct {
	VocabSize             int
	HiddenSize            int
	IntermediateSize      int
	NumLayers             int
	NumHeads              int
	NumKVHeads            int
	HeadDim               int
	MaxPositionEmbeddings int
	NumParameters         int64  // base parameters (logical elements)
	WeightBytes           uint64 // bytes the base weights occupy as stored
}

// EvalResult is the mean causal-LM loss of a batch.
type EvalResult struct {
	Loss      float64
	NumTokens int64
}

// Model is a frozen base model, read-only after load. Its methods may be called from several
// goroutines at once, each passing its own adapter (or one nobody is training).
type Model struct {
	ptr  *C.axl_model
	info ModelInfo
	log  *logSink
}

// LoadModel loads a Hugging Face model directory (config.json + safetensors); opts may be nil.
func LoadModel(ctx *Context, modelDir string, opts *ModelOptions) (*Model, error) {
	return loadModel(ctx, modelDir, "modelDir", opts, false)
}

// LoadModelCache loads a model from a cache file written by Model.SaveCache. The file is
// memory-mapped and used where it lies (no checkpoint read, no quantization); every tensor's
// checksum is verified. opts may be nil; a Quant given must not contradict the cache's format.
func LoadModelCache(ctx *Context, path string, opts *ModelOptions) (*Model, error) {
	return loadModel(ctx, path, "path", opts, true)
}

func loadModel(ctx *Context, path, what string, opts *ModelOptions, cache bool) (*Model, error) {
	dir, err := cString(path, what)
	if err != nil {
		return nil, err
	}
	defer freeCString(dir)
	var raw C.axl_model_options
	C.axl_model_options_init(&raw, C.size_t(unsafe.Sizeof(raw)))
	var progress *progressState
	if opts != nil {
		if opts.Quant != nil {
			raw.quant = opts.Quant.ptr
		}
		if opts.Progress != nil {
			progress = &progressState{fn: opts.Progress}
			slot := newCallbackSlot(progress)
			defer slot.free()
			raw.progress_fn = C.axl_progress_fn(C.axlgoProgress)
			raw.progress_user_data = slot.ptr
		}
	}
	var ptr *C.axl_model
	err = call(func() C.axl_status {
		if cache {
			return C.axl_model_load_cache(ctx.ptr, dir, &raw, &ptr)
		}
		return C.axl_model_load(ctx.ptr, dir, &raw, &ptr)
	})
	runtime.KeepAlive(ctx)
	if opts != nil {
		runtime.KeepAlive(opts.Quant)
	}
	if progress != nil {
		err = progress.finish(err)
	}
	if err != nil {
		return nil, err
	}
	m := &Model{ptr: ptr, log: ctx.log.retain()}
	runtime.SetFinalizer(m, (*Model).Close)
	if m.info, err = m.readInfo(); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// WeightBytes returns the bytes of base weights the model holds in format (QuantNone counts
// every tensor held in a float dtype). Summed over all formats this is Info().WeightBytes.
func (m *Model) WeightBytes(format QuantFormat) (uint64, error) {
	var bytes C.uint64_t
	err := call(func() C.axl_status { return C.axl_model_weight_bytes(m.ptr, C.int32_t(format), &bytes) })
	runtime.KeepAlive(m)
	return uint64(bytes), err
}

// SaveCache writes the loaded model (config and weights as held, quantized or not) to one cache
// file at path, for LoadModelCache. A failure never leaves a partial file at path.
func (m *Model) SaveCache(path string) error {
	p, err := cString(path, "path")
	if err != nil {
		return err
	}
	defer freeCString(p)
	err = call(func() C.axl_status { return C.axl_model_save_cache(m.ptr, p) })
	runtime.KeepAlive(m)
	return err
}

// Close releases the model; adapters made from it keep it alive inside the library.
func (m *Model) Close() {
	if m.ptr == nil {
		return
	}
	C.axl_model_destroy(m.ptr)
	m.ptr = nil
	m.log.release()
	runtime.SetFinalizer(m, nil)
}

func (m *Model) readInfo() (ModelInfo, error) {
	var raw C.axl_model_info
	raw.struct_size = C.uint32_t(unsafe.Sizeof(raw))
	err := call(func() C.axl_status { return C.axl_model_get_info(m.ptr, &raw) })
	runtime.KeepAlive(m)
	return ModelInfo{
		VocabSize:             int(raw.vocab_size),
		HiddenSize:            int(raw.hidden_size),
		IntermediateSize:      int(raw.intermediate_size),
		NumLayers:             int(raw.num_layers),
		NumHeads:              int(raw.num_heads),
		NumKVHeads:            int(raw.num_kv_heads),
		HeadDim:               int(raw.head_dim),
		MaxPositionEmbeddings: int(raw.max_position_embeddings),
		NumParameters:         int64(raw.num_parameters),
		WeightBytes:           uint64(raw.weight_bytes),
	}, err
}

// Info returns the model's dimensions.
func (m *Model) Info() ModelInfo {
	return m.info
}

// Architecture returns the architecture name ("llama", "qwen3", ...).
func (m *Model) Architecture() string {
	name := C.GoString(C.axl_model_architecture(m.ptr))
	runtime.KeepAlive(m)
	return name
}

// Forward returns the fp32 logits of the selected flat positions b*SeqLen+t (every position
// when positions is nil), row after row: len(positions)*VocabSize values. lora nil runs the
// bare base model.
func (m *Model) Forward(lora *Lora, batch *Batch, positions []int64) ([]float32, error) {
	rows := batch.BatchSize * batch.SeqLen
	if positions != nil {
		rows = len(positions)
	}
	logits := make([]float32, rows*m.info.VocabSize)
	if err := m.ForwardInto(lora, batch, positions, logits); err != nil {
		return nil, err
	}
	return logits, nil
}

// ForwardInto is Forward writing into logits, which must hold rows*VocabSize values.
func (m *Model) ForwardInto(lora *Lora, batch *Batch, positions []int64, logits []float32) error {
	if positions != nil && len(positions) == 0 {
		return invalidArgument("positions is empty")
	}
	if len(logits) == 0 {
		return invalidArgument("logits is empty")
	}
	cb, err := batch.toC()
	if err != nil {
		return err
	}
	defer cb.free()
	var positionsPtr *C.int64_t
	if positions != nil {
		positionsPtr = (*C.int64_t)(unsafe.Pointer(&positions[0]))
	}
	err = call(func() C.axl_status {
		return C.axl_model_forward(m.ptr, lora.raw(), cb.raw, positionsPtr, C.int64_t(len(positions)),
			(*C.float)(unsafe.Pointer(&logits[0])), C.size_t(len(logits)))
	})
	runtime.KeepAlive(m)
	runtime.KeepAlive(lora)
	return err
}

// Evaluate returns the mean cross-entropy over the batch's target tokens (dropout off).
func (m *Model) Evaluate(lora *Lora, batch *Batch) (EvalResult, error) {
	cb, err := batch.toC()
	if err != nil {
		return EvalResult{}, err
	}
	defer cb.free()
	var raw C.axl_eval_result
	raw.struct_size = C.uint32_t(unsafe.Sizeof(raw))
	err = call(func() C.axl_status { return C.axl_model_evaluate(m.ptr, lora.raw(), cb.raw, &raw) })
	runtime.KeepAlive(m)
	runtime.KeepAlive(lora)
	return EvalResult{Loss: float64(raw.loss), NumTokens: int64(raw.num_tokens)}, err
}
