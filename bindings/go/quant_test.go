package axl

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var allFormats = []QuantFormat{QuantNone, QuantNF4, QuantFP4, QuantInt8Row, QuantInt4Group,
	QuantInt8Chan, QuantFP8E4M3, QuantNVFP4, QuantMXFP4}

func TestQuantConfigSetters(t *testing.T) {
	q, err := NewQuantConfig()
	must(t, err)
	defer q.Close()
	for _, dtype := range []WeightDtype{WeightDtypeAuto, WeightDtypeF32, WeightDtypeBF16, WeightDtypeF16} {
		must(t, q.SetWeightDtype(dtype))
	}
	if err := q.SetWeightDtype(WeightDtype(99)); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("weight dtype 99: %v", err)
	}
	must(t, q.SetFormat(QuantInt8Row))
	if err := q.SetDoubleQuant(true); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("double quant with int8: %v", err)
	}
	must(t, q.AddSkipModule("lm_head"))
}

func TestNF4WeightBytesCacheAndExport(t *testing.T) {
	dir := t.TempDir()
	modelDir := filepath.Join(dir, "model")
	must(t, os.MkdirAll(modelDir, 0o755))
	writeTinyLlama(t, modelDir, quantModel)
	ctx := newTestContext(t, nil)
	defer ctx.Close()

	q, err := NewQuantConfig()
	must(t, err)
	must(t, q.SetFormat(QuantNF4))
	must(t, q.SetBlockSize(64))
	must(t, q.SetDoubleQuant(true))
	must(t, q.SetWeightDtype(WeightDtypeF32))
	model, err := LoadModel(ctx, modelDir, &ModelOptions{Quant: q})
	must(t, err)
	defer model.Close()
	q.Close() // read during the load only

	nf4, err := model.WeightBytes(QuantNF4)
	must(t, err)
	if nf4 == 0 {
		t.Fatal("no NF4 weights after an NF4 load")
	}
	var total uint64
	for _, f := range allFormats {
		n, err := model.WeightBytes(f)
		must(t, err)
		total += n
	}
	if total != model.Info().WeightBytes {
		t.Fatalf("weight bytes by format sum to %d, info says %d", total, model.Info().WeightBytes)
	}

	batch := &Batch{BatchSize: 2, SeqLen: 8, Tokens: arithmeticTokens(2, 8, quantModel.vocab)}
	logits, err := model.Forward(nil, batch, nil)
	must(t, err)

	cache := filepath.Join(dir, "model.axlcache")
	must(t, model.SaveCache(cache))
	cached, err := LoadModelCache(ctx, cache, nil)
	must(t, err)
	defer cached.Close()
	if cached.Info() != model.Info() {
		t.Fatalf("cached info %+v, loaded %+v", cached.Info(), model.Info())
	}
	cachedNF4, err := cached.WeightBytes(QuantNF4)
	must(t, err)
	if cachedNF4 != nf4 {
		t.Fatalf("cached NF4 bytes %d, loaded %d", cachedNF4, nf4)
	}
	cachedLogits, err := cached.Forward(nil, batch, nil)
	must(t, err)
	if !reflect.DeepEqual(cachedLogits, logits) {
		t.Fatal("logits of the cached model differ from the quantized model's")
	}

	fp4, err := NewQuantConfig()
	must(t, err)
	defer fp4.Close()
	must(t, fp4.SetFormat(QuantFP4))
	if _, err := LoadModelCache(ctx, cache, &ModelOptions{Quant: fp4}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("cache loaded with a contradicting format: %v", err)
	}

	opts := DefaultLoraOptions()
	opts.Rank, opts.Init, opts.Seed = 4, LoraInitRandomB, 3
	lora, err := NewLora(cached, &opts)
	must(t, err)
	defer lora.Close()
	export := filepath.Join(dir, "merged")
	must(t, lora.MergeAndExport(export))
	config, err := os.ReadFile(filepath.Join(export, "config.json"))
	must(t, err)
	if strings.Contains(string(config), "quantization_config") {
		t.Fatalf("exported config.json keeps quantization_config: %s", config)
	}
	shards, _ := filepath.Glob(filepath.Join(export, "*.safetensors"))
	if len(shards) == 0 {
		t.Fatal("no .safetensors file in the export")
	}
	merged, err := LoadModel(ctx, export, nil)
	must(t, err)
	defer merged.Close()
	if merged.Info().VocabSize != quantModel.vocab {
		t.Fatalf("exported vocab %d", merged.Info().VocabSize)
	}
}
