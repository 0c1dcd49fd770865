// Package axl fine-tunes language models with LoRA through libaxl's C API (include/axl.h).
//
// Handles (Context, QuantConfig, Model, Lora, Optimizer, Trainer) own a library handle each.
// Close releases it; a finalizer does so for handles that become unreachable unclosed, but
// Close is the way to free memory promptly. The library keeps parents alive for their
// children, so handles may be closed in any order. A closed handle makes every call on it
// fail with ErrInvalidArgument.
//
// Threading follows the header: a Model may be used by several goroutines at once for
// Forward, Evaluate and creating adapters; every other handle is used by one goroutine at a
// time. Close must not race with calls on the same handle.
//
// Errors are *Error values carrying the library's code and message; compare codes with
// errors.Is(err, axl.ErrNotFound).
//
// Build against libaxl with CGO_LDFLAGS="-L<dir> -Wl,-rpath,<dir>" naming the directory that
// holds libaxl.so (see docs/bindings/go.md).
package axl

// #cgo CFLAGS: -I${SRCDIR}/../../include
// #cgo LDFLAGS: -laxl
// #include <stdlib.h>
// #include "axl.h"
import "C"

import (
	"runtime"
	"unsafe"
)

// Version returns the loaded library's version as "MAJOR.MINOR.PATCH".
func Version() string {
	return C.GoString(C.axl_version_string())
}

// VersionNumber returns the loaded library's version as MAJOR*10000 + MINOR*100 + PATCH.
func VersionNumber() uint32 {
	return uint32(C.axl_version())
}

// call runs f, one cgo call that returns an axl_status, and on failure reads the library's
// thread-local message. The goroutine is locked to its OS thread so that the message is read
// on the thread that failed.
func call(f func() C.axl_status) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if status := f(); status != C.AXL_OK {
		return lastError(status)
	}
	return nil
}

// cString copies s into C memory; free it with C.free.
func cString(s string, what string) (*C.char, error) {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return nil, invalidArgument(what + " contains a NUL byte")
		}
	}
	return C.CString(s), nil
}

func freeCString(s *C.char) {
	C.free(unsafe.Pointer(s))
}
