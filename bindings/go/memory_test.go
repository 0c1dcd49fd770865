package axl

import (
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
)

func residentBytes(t *testing.T) uint64 {
	runtime.GC()
	debug.FreeOSMemory()
	statm, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Fatal(err)
	}
	pages, err := strconv.ParseUint(strings.Fields(string(statm))[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return pages * uint64(os.Getpagesize())
}

// A thousand load/close cycles of a small model leave resident memory flat.
func TestModelHandlesDoNotLeak(t *testing.T) {
	dir := t.TempDir()
	writeTinyLlama(t, dir, memoryModel)
	ctx := newTestContext(t, nil)
	defer ctx.Close()
	cycle := func() {
		model, err := LoadModel(ctx, dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		model.Close()
	}
	for i := 0; i < 50; i++ {
		cycle() // warm up allocator pools and lazily initialised state
	}
	statsBefore, err := ctx.MemoryStats()
	must(t, err)
	rssBefore := residentBytes(t)
	for i := 0; i < 1000; i++ {
		cycle()
	}
	rssAfter := residentBytes(t)
	statsAfter, err := ctx.MemoryStats()
	must(t, err)
	if statsAfter.HostCurrentBytes != statsBefore.HostCurrentBytes {
		t.Fatalf("the context holds %d bytes, %d before the cycles", statsAfter.HostCurrentBytes, statsBefore.HostCurrentBytes)
	}
	if rssAfter > rssBefore+8<<20 {
		t.Fatalf("resident memory grew from %d to %d bytes over 1000 cycles", rssBefore, rssAfter)
	}
}
