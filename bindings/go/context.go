package axl

// #include "axl.h"
// extern void axlgoLog(void *userData, int32_t level, char *message);
import "C"

import (
	"runtime"
	"unsafe"
)

// Backend is the compute backend of a context.
type Backend int32

const (
	BackendAuto Backend = C.AXL_BACKEND_AUTO // CUDA when built with it and a device is present, else CPU
	BackendCPU  Backend = C.AXL_BACKEND_CPU
	BackendCUDA Backend = C.AXL_BACKEND_CUDA
)

// ContextOptions configures NewContext. Start from DefaultContextOptions.
type ContextOptions struct {
	Backend            Backend
	Device             int32  // CUDA device index
	NumThreads         int32  // CPU threads; 0 = all cores
	DeviceMemoryBudget uint64 // bytes; 0 = no limit
	LogLevel           LogLevel
	Log                LogFunc // nil: no logging
}

// DefaultContextOptions returns the library's defaults.
func DefaultContextOptions() ContextOptions {
	var raw C.axl_context_options
	C.axl_context_options_init(&raw, C.size_t(unsafe.Sizeof(raw)))
	return ContextOptions{
		Backend:            Backend(raw.backend),
		Device:             int32(raw.device),
		NumThreads:         int32(raw.num_threads),
		DeviceMemoryBudget: uint64(raw.device_memory_budget),
		LogLevel:           LogLevel(raw.log_level),
	}
}

// Context owns the compute backend, threads and logging. Every other handle is made from one
// and keeps it alive.
type Context struct {
	ptr *C.axl_context
	log *logSink
}

// NewContext creates a context; opts nil means the defaults.
func NewContext(opts *ContextOptions) (*Context, error) {
	if opts == nil {
		defaults := DefaultContextOptions()
		opts = &defaults
	}
	var raw C.axl_context_options
	C.axl_context_options_init(&raw, C.size_t(unsafe.Sizeof(raw)))
	raw.backend = C.int32_t(opts.Backend)
	raw.device = C.int32_t(opts.Device)
	raw.num_threads = C.int32_t(opts.NumThreads)
	raw.device_memory_budget = C.uint64_t(opts.DeviceMemoryBudget)
	raw.log_level = C.int32_t(opts.LogLevel)
	var sink *logSink
	if opts.Log != nil {
		sink = newLogSink(opts.Log)
		raw.log_fn = C.axl_log_fn(C.axlgoLog)
		raw.log_user_data = sink.slot.ptr
	}
	var ptr *C.axl_context
	if err := call(func() C.axl_status { return C.axl_context_create(&raw, &ptr) }); err != nil {
		sink.release()
		return nil, err
	}
	ctx := &Context{ptr: ptr, log: sink}
	runtime.SetFinalizer(ctx, (*Context).Close)
	return ctx, nil
}

// Close releases the context; it lives on inside the library while handles made from it do.
func (c *Context) Close() {
	if c.ptr == nil {
		return
	}
	C.axl_context_destroy(c.ptr)
	c.ptr = nil
	c.log.release()
	runtime.SetFinalizer(c, nil)
}

// Backend returns the backend in use (BackendCPU or BackendCUDA).
func (c *Context) Backend() (Backend, error) {
	var backend C.int32_t
	err := call(func() C.axl_status { return C.axl_context_backend(c.ptr, &backend) })
	runtime.KeepAlive(c)
	return Backend(backend), err
}

// MemoryStats is the memory in use through a context.
type MemoryStats struct {
	HostCurrentBytes   uint64
	HostPeakBytes      uint64
	DeviceCurrentBytes uint64
	DevicePeakBytes    uint64
}

// MemoryStats reports the memory held through the context now and at its peak.
func (c *Context) MemoryStats() (MemoryStats, error) {
	var raw C.axl_memory_stats
	raw.struct_size = C.uint32_t(unsafe.Sizeof(raw))
	err := call(func() C.axl_status { return C.axl_context_memory_stats(c.ptr, &raw) })
	runtime.KeepAlive(c)
	return MemoryStats{
		HostCurrentBytes:   uint64(raw.host_current_bytes),
		HostPeakBytes:      uint64(raw.host_peak_bytes),
		DeviceCurrentBytes: uint64(raw.device_current_bytes),
		DevicePeakBytes:    uint64(raw.device_peak_bytes),
	}, err
}

// ResetPeakMemory sets the peak counters to the current values.
func (c *Context) ResetPeakMemory() error {
	err := call(func() C.axl_status { return C.axl_context_reset_peak_memory(c.ptr) })
	runtime.KeepAlive(c)
	return err
}
