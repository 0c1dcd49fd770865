package axl

// #include <stdlib.h>
// #include "axl.h"
import "C"

import "runtime"

// QuantFormat is how the frozen base weights are stored.
type QuantFormat int32

const (
	QuantNone      QuantFormat = C.AXL_QUANT_NONE // keep the checkpoint's dtype
	QuantNF4       QuantFormat = C.AXL_QUANT_NF4
	QuantFP4       QuantFormat = C.AXL_QUANT_FP4
	QuantInt8Row   QuantFormat = C.AXL_QUANT_INT8_ROW
	QuantInt4Group QuantFormat = C.AXL_QUANT_INT4_GROUP
	QuantInt8Chan  QuantFormat = C.AXL_QUANT_INT8_CHAN
	QuantFP8E4M3   QuantFormat = C.AXL_QUANT_FP8_E4M3
	QuantNVFP4     QuantFormat = C.AXL_QUANT_NVFP4
	QuantMXFP4     QuantFormat = C.AXL_QUANT_MXFP4
)

// QuantConfig says how LoadModel stores the base weights (read during the load only).
type QuantConfig struct {
	ptr *C.axl_quant_config
}

// NewQuantConfig creates an empty configuration (QuantNone).
func NewQuantConfig() (*QuantConfig, error) {
	var ptr *C.axl_quant_config
	if err := call(func() C.axl_status { return C.axl_quant_config_create(&ptr) }); err != nil {
		return nil, err
	}
	q := &QuantConfig{ptr: ptr}
	runtime.SetFinalizer(q, (*QuantConfig).Close)
	return q, nil
}

// Close releases the configuration.
func (q *QuantConfig) Close() {
	if q.ptr == nil {
		return
	}
	C.axl_quant_config_destroy(q.ptr)
	q.ptr = nil
	runtime.SetFinalizer(q, nil)
}

// SetFormat selects the format.
func (q *QuantConfig) SetFormat(format QuantFormat) error {
	err := call(func() C.axl_status { return C.axl_quant_config_set_format(q.ptr, C.int32_t(format)) })
	runtime.KeepAlive(q)
	return err
}

// SetBlockSize sets the block or group size; 0 selects the format's default.
func (q *QuantConfig) SetBlockSize(blockSize int32) error {
	err := call(func() C.axl_status { return C.axl_quant_config_set_block_size(q.ptr, C.int32_t(blockSize)) })
	runtime.KeepAlive(q)
	return err
}

// SetDoubleQuant enables double quantization of the block statistics (nf4/fp4).
func (q *QuantConfig) SetDoubleQuant(enabled bool) error {
	err := call(func() C.axl_status { return C.axl_quant_config_set_double_quant(q.ptr, cBool(enabled)) })
	runtime.KeepAlive(q)
	return err
}

// AddSkipModule keeps modules whose name contains moduleName in full precision.
func (q *QuantConfig) AddSkipModule(moduleName string) error {
	name, err := cString(moduleName, "moduleName")
	if err != nil {
		return err
	}
	defer freeCString(name)
	err = call(func() C.axl_status { return C.axl_quant_config_add_skip_module(q.ptr, name) })
	runtime.KeepAlive(q)
	return err
}

// WeightDtype is the dtype weights are rounded through before they are quantized.
type WeightDtype int32

const (
	WeightDtypeAuto WeightDtype = C.AXL_WEIGHT_DTYPE_AUTO // each tensor's checkpoint dtype
	WeightDtypeF32  WeightDtype = C.AXL_WEIGHT_DTYPE_F32
	WeightDtypeBF16 WeightDtype = C.AXL_WEIGHT_DTYPE_BF16
	WeightDtypeF16  WeightDtype = C.AXL_WEIGHT_DTYPE_F16
)

// SetWeightDtype sets the dtype weights are rounded through before they are quantized, as if
// the model had been loaded in it first (transformers' dtype= at from_pretrained).
func (q *QuantConfig) SetWeightDtype(dtype WeightDtype) error {
	err := call(func() C.axl_status { return C.axl_quant_config_set_weight_dtype(q.ptr, C.int32_t(dtype)) })
	runtime.KeepAlive(q)
	return err
}

func cBool(b bool) C.int32_t {
	if b {
		return 1
	}
	return 0
}
