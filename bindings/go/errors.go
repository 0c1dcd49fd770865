package axl

// #include "axl.h"
import "C"

// Code is one of the library's status codes. Codes are errors themselves, so that
// errors.Is(err, ErrNotFound) tests an *Error's code.
type Code int32

const (
	ErrInvalidArgument Code = C.AXL_ERR_INVALID_ARGUMENT
	ErrOutOfMemory     Code = C.AXL_ERR_OUT_OF_MEMORY
	ErrIO              Code = C.AXL_ERR_IO
	ErrFormat          Code = C.AXL_ERR_FORMAT
	ErrUnsupported     Code = C.AXL_ERR_UNSUPPORTED
	ErrNotFound        Code = C.AXL_ERR_NOT_FOUND
	ErrShape           Code = C.AXL_ERR_SHAPE
	ErrNumeric         Code = C.AXL_ERR_NUMERIC
	ErrCancelled       Code = C.AXL_ERR_CANCELLED
	ErrBackend         Code = C.AXL_ERR_BACKEND
	ErrState           Code = C.AXL_ERR_STATE
	ErrInternal        Code = C.AXL_ERR_INTERNAL
)

// Error returns the library's short description of the code ("not found", ...).
func (c Code) Error() string {
	return C.GoString(C.axl_status_string(C.axl_status(c)))
}

// Error is a failed call: the library's code and its message naming the problem
// ("axl_model_load: ..."). When a callback cancelled the call by returning an error,
// that error is the cause (errors.Is and errors.As reach it).
type Error struct {
	Code    Code
	Message string
	cause   error
}

func (e *Error) Error() string {
	return e.Message + " (" + e.Code.Error() + ")"
}

// Is reports whether target is this error's Code.
func (e *Error) Is(target error) bool {
	code, ok := target.(Code)
	return ok && code == e.Code
}

// Unwrap returns the error a callback returned to cancel the call, if any.
func (e *Error) Unwrap() error {
	return e.cause
}

// lastError builds the error of the call that just returned status; it must run on the OS
// thread of that call, before any other library call (see call).
func lastError(status C.axl_status) *Error {
	code := Code(status)
	message := C.GoString(C.axl_last_error())
	if message == "" {
		message = code.Error()
	}
	return &Error{Code: code, Message: message}
}

// invalidArgument is an argument the binding rejects before calling the library.
func invalidArgument(message string) *Error {
	return &Error{Code: ErrInvalidArgument, Message: message}
}
