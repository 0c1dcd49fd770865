package axl

// #include <stdlib.h>
// #include <string.h>
// #include "axl.h"
import "C"

import (
	"fmt"
	"unsafe"
)

// IgnoreIndex is the label value that contributes no loss.
const IgnoreIndex = C.AXL_IGNORE_INDEX

// Batch is BatchSize rows of SeqLen tokens, row-major. Position t is trained to predict the
// token at t+1. Labels (IgnoreIndex where no loss), LossMask (nonzero where a token is a
// target) and SegmentIDs (packed sequences) are optional; Labels and LossMask exclude each
// other. Every slice given must hold BatchSize*SeqLen values.
type Batch struct {
	BatchSize  int
	SeqLen     int
	Tokens     []int32
	Labels     []int32
	LossMask   []int32
	SegmentIDs []int32
}

// cBatch is a copy of a Batch in C memory: the library's batch struct holds pointers, and a
// Go struct passed to C may not hold Go pointers.
type cBatch struct {
	raw   *C.axl_batch
	block unsafe.Pointer
}

func (b *Batch) toC() (*cBatch, error) {
	if b.BatchSize <= 0 || b.SeqLen <= 0 || b.BatchSize > 1<<30 || b.SeqLen > 1<<30 {
		return nil, invalidArgument(fmt.Sprintf("batch shape %dx%d is not valid", b.BatchSize, b.SeqLen))
	}
	n := b.BatchSize * b.SeqLen
	arrays := []struct {
		name     string
		values   []int32
		optional bool
	}{{"Tokens", b.Tokens, false}, {"Labels", b.Labels, true}, {"LossMask", b.LossMask, true}, {"SegmentIDs", b.SegmentIDs, true}}
	present := 0
	for _, a := range arrays {
		if a.values == nil && a.optional {
			continue
		}
		if len(a.values) != n {
			return nil, invalidArgument(fmt.Sprintf("%s holds %d values but the batch is %dx%d = %d",
				a.name, len(a.values), b.BatchSize, b.SeqLen, n))
		}
		present++
	}

	header := C.size_t(unsafe.Sizeof(C.axl_batch{}))
	block := C.malloc(header + C.size_t(present*n*4))
	raw := (*C.axl_batch)(block)
	C.axl_batch_init(raw, header)
	raw.batch_size = C.int32_t(b.BatchSize)
	raw.seq_len = C.int32_t(b.SeqLen)
	next := unsafe.Add(block, header)
	place := func(values []int32) *C.int32_t {
		if values == nil {
			return nil
		}
		dst := next
		C.memcpy(dst, unsafe.Pointer(&values[0]), C.size_t(n*4))
		next = unsafe.Add(next, n*4)
		return (*C.int32_t)(dst)
	}
	raw.tokens = place(b.Tokens)
	raw.labels = place(b.Labels)
	raw.loss_mask = place(b.LossMask)
	raw.segment_ids = place(b.SegmentIDs)
	return &cBatch{raw: raw, block: block}, nil
}

func (c *cBatch) free() {
	C.free(c.block)
}
