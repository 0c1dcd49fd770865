package axl

// Go functions the library calls. The library receives, as user_data, a pointer to C memory
// holding a runtime/cgo.Handle of the Go state (never a Go pointer, which C may not keep).
// A panic in a callback is recovered here, cancels the running operation and is re-raised
// on the calling goroutine once the C call has returned.

// #include <stdlib.h>
// #include "axl.h"
import "C"

import (
	"runtime/cgo"
	"sync/atomic"
	"unsafe"
)

// callbackSlot is C memory holding a cgo.Handle, passed to the library as user_data.
type callbackSlot struct {
	handle cgo.Handle
	ptr    unsafe.Pointer
}

func newCallbackSlot(value interface{}) *callbackSlot {
	slot := &callbackSlot{handle: cgo.NewHandle(value), ptr: C.malloc(C.size_t(unsafe.Sizeof(C.uintptr_t(0))))}
	*(*C.uintptr_t)(slot.ptr) = C.uintptr_t(slot.handle)
	return slot
}

// free releases the slot; the library must no longer be able to call with it.
func (s *callbackSlot) free() {
	s.handle.Delete()
	C.free(s.ptr)
}

func slotValue(userData unsafe.Pointer) interface{} {
	return cgo.Handle(*(*C.uintptr_t)(userData)).Value()
}

// Stage says which long operation a Progress report is about.
type Stage int32

const (
	StageLoad     Stage = C.AXL_STAGE_LOAD     // reading model tensors, one report per tensor
	StageForward  Stage = C.AXL_STAGE_FORWARD  // forward pass of a training step, per layer
	StageBackward Stage = C.AXL_STAGE_BACKWARD // backward pass of a training step, per layer
)

// Progress is one progress report.
type Progress struct {
	Stage Stage
	Done  int64
	Total int64
	What  string // the unit being worked on (a tensor name...)
}

// ProgressFunc receives progress reports on the goroutine running the operation. Returning
// a non-nil error cancels the operation, which then fails with an *Error of code
// ErrCancelled whose cause is that error. It must not call into axl with the handles of the
// running operation.
type ProgressFunc func(Progress) error

type progressState struct {
	fn       ProgressFunc
	err      error
	panicked bool
	panicVal interface{}
}

func (s *progressState) report(p *C.axl_progress) (result C.int32_t) {
	if s.err != nil || s.panicked {
		return 1
	}
	defer func() {
		if r := recover(); r != nil {
			s.panicked, s.panicVal, result = true, r, 1
		}
	}()
	report := Progress{Stage: Stage(p.stage), Done: int64(p.done), Total: int64(p.total)}
	if p.what != nil {
		report.What = C.GoString(p.what)
	}
	if err := s.fn(report); err != nil {
		s.err = err
		return 1
	}
	return 0
}

// finish runs after the C call: re-raises a callback's panic, or attaches the error a
// callback cancelled with.
func (s *progressState) finish(err error) error {
	if s.panicked {
		value := s.panicVal
		s.panicked, s.panicVal = false, nil
		panic(value)
	}
	if s.err != nil {
		cause := s.err
		s.err = nil
		if e, ok := err.(*Error); ok {
			e.cause = cause
		}
	}
	return err
}

//export axlgoProgress
func axlgoProgress(userData unsafe.Pointer, p *C.axl_progress) C.int32_t {
	return slotValue(userData).(*progressState).report(p)
}

// LogLevel is the severity of a log message.
type LogLevel int32

const (
	LogError LogLevel = C.AXL_LOG_ERROR
	LogWarn  LogLevel = C.AXL_LOG_WARN
	LogInfo  LogLevel = C.AXL_LOG_INFO
	LogDebug LogLevel = C.AXL_LOG_DEBUG
)

// LogFunc receives log messages, possibly from several goroutines at once; it must not call
// into axl. A panic in it is recovered and dropped.
type LogFunc func(level LogLevel, message string)

// logSink is shared by a context and every handle made from it: the library may log through
// the context as long as any of them lives, so the slot is freed when the last one closes.
type logSink struct {
	fn   LogFunc
	refs int32
	slot *callbackSlot
}

func newLogSink(fn LogFunc) *logSink {
	sink := &logSink{fn: fn, refs: 1}
	sink.slot = newCallbackSlot(sink)
	return sink
}

func (s *logSink) retain() *logSink {
	if s != nil {
		atomic.AddInt32(&s.refs, 1)
	}
	return s
}

func (s *logSink) release() {
	if s != nil && atomic.AddInt32(&s.refs, -1) == 0 {
		s.slot.free()
	}
}

//export axlgoLog
func axlgoLog(userData unsafe.Pointer, level C.int32_t, message *C.char) {
	sink := slotValue(userData).(*logSink)
	defer func() { _ = recover() }()
	sink.fn(LogLevel(level), C.GoString(message))
}
