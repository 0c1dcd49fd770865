package axl

import (
	"errors"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

const (
	testBatch  = 2
	testSeqLen = 16
)

func newTestContext(t *testing.T, log LogFunc) *Context {
	t.Helper()
	opts := DefaultContextOptions()
	opts.NumThreads = 1
	if log != nil {
		opts.Log, opts.LogLevel = log, LogInfo
	}
	ctx, err := NewContext(&opts)
	if err != nil {
		t.Fatal(err)
	}
	return ctx
}

func loadTestModel(t *testing.T, ctx *Context) *Model {
	t.Helper()
	dir := t.TempDir()
	writeTinyLlama(t, dir, trainModel)
	model, err := LoadModel(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return model
}

func testBatchOf(t *testing.T) *Batch {
	return &Batch{BatchSize: testBatch, SeqLen: testSeqLen, Tokens: arithmeticTokens(testBatch, testSeqLen, trainModel.vocab)}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestTrainSaveAndReload(t *testing.T) {
	dir := t.TempDir()
	writeTinyLlama(t, dir, trainModel)
	ctx := newTestContext(t, nil)
	defer ctx.Close()

	tensorsLoaded := 0
	model, err := LoadModel(ctx, dir, &ModelOptions{Progress: func(p Progress) error {
		if p.Stage != StageLoad {
			t.Errorf("load reported stage %d", p.Stage)
		}
		tensorsLoaded++
		return nil
	}})
	must(t, err)
	defer model.Close()
	if tensorsLoaded == 0 {
		t.Fatal("the load progress callback was never called")
	}
	if arch := model.Architecture(); arch != "llama" {
		t.Fatalf("architecture %q", arch)
	}
	if info := model.Info(); info.VocabSize != trainModel.vocab || info.NumLayers != trainModel.layers {
		t.Fatalf("info %+v", info)
	}

	batch := testBatchOf(t)
	baseLogits, err := model.Forward(nil, batch, nil)
	must(t, err)
	if len(baseLogits) != testBatch*testSeqLen*trainModel.vocab {
		t.Fatalf("%d logits", len(baseLogits))
	}

	loraOpts := DefaultLoraOptions()
	loraOpts.Rank, loraOpts.Alpha, loraOpts.Seed = 4, 8, 7
	lora, err := NewLora(model, &loraOpts)
	must(t, err)
	defer lora.Close()
	optOpts := DefaultOptimizerOptions()
	optOpts.LR = 1e-2
	optimizer, err := NewOptimizer(lora, &optOpts)
	must(t, err)
	defer optimizer.Close()
	if lr, err := optimizer.Param(ParamLR); err != nil || lr != 1e-2 {
		t.Fatalf("lr %v, %v", lr, err)
	}

	reports := 0
	trainerOpts := DefaultTrainerOptions()
	trainerOpts.Progress = func(p Progress) error {
		if p.Stage != StageForward && p.Stage != StageBackward {
			t.Errorf("training reported stage %d", p.Stage)
		}
		reports++
		return nil
	}
	trainer, err := NewTrainer(optimizer, &trainerOpts)
	must(t, err)
	first, err := trainer.Step(batch)
	must(t, err)
	last := first
	for i := 0; i < 4; i++ {
		last, err = trainer.Step(batch)
		must(t, err)
	}
	trainer.Close()
	if reports == 0 {
		t.Fatal("the training progress callback was never called")
	}
	if math.IsNaN(first.Loss) || !(last.Loss < first.Loss) {
		t.Fatalf("loss %v -> %v", first.Loss, last.Loss)
	}
	if !last.Updated || last.OptimizerStep != 5 {
		t.Fatalf("last step %+v", last)
	}

	trainedLogits, err := model.Forward(lora, batch, nil)
	must(t, err)
	if reflect.DeepEqual(trainedLogits, baseLogits) {
		t.Fatal("training did not change the adapter's output")
	}
	adapterDir := filepath.Join(dir, "adapter")
	must(t, lora.Save(adapterDir))
	reloaded, err := LoadLora(model, adapterDir)
	must(t, err)
	defer reloaded.Close()
	reloadedLogits, err := model.Forward(reloaded, batch, nil)
	must(t, err)
	if !reflect.DeepEqual(reloadedLogits, trainedLogits) {
		t.Fatal("logits differ after save and reload")
	}
	eval, err := model.Evaluate(reloaded, batch)
	must(t, err)
	if eval.NumTokens != testBatch*(testSeqLen-1) || math.IsNaN(eval.Loss) {
		t.Fatalf("eval %+v", eval)
	}
}

func TestErrorsCarryCodeAndMessage(t *testing.T) {
	ctx := newTestContext(t, nil)
	defer ctx.Close()
	missing := filepath.Join(t.TempDir(), "no-such-model")
	_, err := LoadModel(ctx, missing, nil)
	var axlErr *Error
	if !errors.As(err, &axlErr) || !errors.Is(err, ErrNotFound) {
		t.Fatalf("loading a missing directory: %v", err)
	}
	if !strings.HasPrefix(axlErr.Message, "axl_model_load") || !strings.Contains(axlErr.Message, "no-such-model") {
		t.Fatalf("message %q", axlErr.Message)
	}

	model := loadTestModel(t, ctx)
	defer model.Close()
	opts := DefaultLoraOptions()
	opts.Rank = 0
	_, err = NewLora(model, &opts)
	if !errors.Is(err, ErrInvalidArgument) || !errors.As(err, &axlErr) || !strings.Contains(axlErr.Message, "rank") {
		t.Fatalf("rank 0: %v", err)
	}
	if !strings.Contains(err.Error(), "invalid argument") {
		t.Fatalf("Error() = %q", err.Error())
	}
	opts = DefaultLoraOptions()
	opts.TargetModules = "no_such_proj"
	if _, err = NewLora(model, &opts); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "no_such_proj") {
		t.Fatalf("unknown target: %v", err)
	}
	if _, err = model.Forward(nil, &Batch{BatchSize: 2, SeqLen: 2, Tokens: []int32{1, 2, 3}}, nil); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("short tokens: %v", err)
	}

	lora, err := NewLora(model, nil)
	must(t, err)
	lora.Close()
	if _, err = lora.NumParameters(); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("a closed handle: %v", err)
	}
}

func TestProgressCallbackCancelsAndPanics(t *testing.T) {
	ctx := newTestContext(t, nil)
	defer ctx.Close()
	model := loadTestModel(t, ctx)
	defer model.Close()
	batch := testBatchOf(t)
	lora, err := NewLora(model, nil)
	must(t, err)
	defer lora.Close()
	before, err := model.Forward(lora, batch, []int64{0, 5})
	must(t, err)
	optimizer, err := NewOptimizer(lora, nil)
	must(t, err)
	defer optimizer.Close()

	stop := errors.New("stop from the callback")
	opts := DefaultTrainerOptions()
	opts.Progress = func(Progress) error { return stop }
	trainer, err := NewTrainer(optimizer, &opts)
	must(t, err)
	_, err = trainer.Step(batch)
	trainer.Close()
	if !errors.Is(err, ErrCancelled) || !errors.Is(err, stop) {
		t.Fatalf("cancelled step: %v", err)
	}

	opts.Progress = func(Progress) error { panic("panic from the callback") }
	trainer, err = NewTrainer(optimizer, &opts)
	must(t, err)
	func() {
		defer func() {
			if r := recover(); r != "panic from the callback" {
				t.Fatalf("recovered %v", r)
			}
		}()
		_, _ = trainer.Step(batch)
	}()
	trainer.Close()

	after, err := model.Forward(lora, batch, []int64{0, 5})
	must(t, err)
	if !reflect.DeepEqual(before, after) {
		t.Fatal("a cancelled step changed the adapter")
	}
}

func TestModelSharedAcrossGoroutines(t *testing.T) {
	ctx := newTestContext(t, nil)
	defer ctx.Close()
	model := loadTestModel(t, ctx)
	defer model.Close()
	batch := testBatchOf(t)
	opts := DefaultLoraOptions()
	opts.Rank, opts.Seed = 2, 3
	forward := func() ([]float32, error) {
		lora, err := NewLora(model, &opts)
		if err != nil {
			return nil, err
		}
		defer lora.Close()
		return model.Forward(lora, batch, nil)
	}
	expected, err := forward()
	must(t, err)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			logits, err := forward()
			if err != nil || !reflect.DeepEqual(logits, expected) {
				t.Errorf("concurrent forward: %v", err)
			}
		}()
	}
	wg.Wait()
}

func TestLogReachesTheFunctionWhileAnyHandleLives(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	ctx := newTestContext(t, func(level LogLevel, message string) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, message)
	})
	model := loadTestModel(t, ctx)
	ctx.Close() // the model keeps the context, and so the log function, alive
	lora, err := NewLora(model, nil)
	must(t, err)
	model.Close()
	lora.Close()
	mu.Lock()
	defer mu.Unlock()
	for _, line := range lines {
		if strings.Contains(line, "loaded llama model") {
			return
		}
	}
	t.Fatalf("log lines: %q", lines)
}

// Offload (CheckpointLayersOffload) is accepted everywhere; on the CPU it trains exactly as
// plain checkpointing.
func TestOffloadOptionTrainsAsCheckpointingOnTheCPU(t *testing.T) {
	ctx := newTestContext(t, nil)
	defer ctx.Close()
	model := loadTestModel(t, ctx)
	defer model.Close()
	batch := testBatchOf(t)
	defaults := DefaultTrainerOptions()
	if !defaults.GradientCheckpointing || defaults.OffloadActivations {
		t.Fatalf("defaults %+v", defaults)
	}
	losses := make([]float64, 2)
	for i, offload := range []bool{false, true} {
		loraOpts := DefaultLoraOptions()
		loraOpts.Seed = 3
		lora, err := NewLora(model, &loraOpts)
		must(t, err)
		optimizer, err := NewOptimizer(lora, nil)
		must(t, err)
		opts := DefaultTrainerOptions()
		opts.OffloadActivations = offload
		trainer, err := NewTrainer(optimizer, &opts)
		must(t, err)
		for step := 0; step < 2; step++ {
			result, err := trainer.Step(batch)
			must(t, err)
			losses[i] = result.Loss
		}
		trainer.Close()
		optimizer.Close()
		lora.Close()
	}
	if losses[0] != losses[1] {
		t.Fatalf("offload changed the CPU step: loss %v vs %v", losses[1], losses[0])
	}
}
