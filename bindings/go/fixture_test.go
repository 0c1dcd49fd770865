package axl

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tinyLlama is the shape of a generated Llama checkpoint.
type tinyLlama struct {
	vocab, hidden, intermediate, layers, heads, kvHeads int
	tieWordEmbeddings                                   bool
}

var trainModel = tinyLlama{vocab: 64, hidden: 32, intermediate: 64, layers: 2, heads: 4, kvHeads: 2}

// quantModel's linear weights split into whole 64-element blocks (NF4's default block size).
var quantModel = tinyLlama{vocab: 64, hidden: 64, intermediate: 128, layers: 2, heads: 4, kvHeads: 2}

// memoryModel is small enough to load a thousand times quickly and large enough (~350 KB of
// weights) that a leaked model shows in resident memory.
var memoryModel = tinyLlama{vocab: 256, hidden: 64, intermediate: 128, layers: 2, heads: 4, kvHeads: 2,
	tieWordEmbeddings: true}

type tensorSpec struct {
	name  string
	shape []int
	scale float32 // 0: all ones (norm weights); else uniform in [-scale, scale]
}

// writeTinyLlama writes config.json and model.safetensors (F32, tensor names as transformers
// writes them) into dir.
func writeTinyLlama(t *testing.T, dir string, m tinyLlama) {
	t.Helper()
	headDim := m.hidden / m.heads
	proj := float32(1 / math.Sqrt(float64(m.hidden)))
	tensors := []tensorSpec{
		{"model.embed_tokens.weight", []int{m.vocab, m.hidden}, 1},
		{"model.norm.weight", []int{m.hidden}, 0},
	}
	for l := 0; l < m.layers; l++ {
		layer := func(suffix string, shape []int, scale float32) tensorSpec {
			return tensorSpec{fmt.Sprintf("model.layers.%d.%s", l, suffix), shape, scale}
		}
		tensors = append(tensors,
			layer("input_layernorm.weight", []int{m.hidden}, 0),
			layer("post_attention_layernorm.weight", []int{m.hidden}, 0),
			layer("self_attn.q_proj.weight", []int{m.heads * headDim, m.hidden}, proj),
			layer("self_attn.k_proj.weight", []int{m.kvHeads * headDim, m.hidden}, proj),
			layer("self_attn.v_proj.weight", []int{m.kvHeads * headDim, m.hidden}, proj),
			layer("self_attn.o_proj.weight", []int{m.hidden, m.heads * headDim}, proj),
			layer("mlp.gate_proj.weight", []int{m.intermediate, m.hidden}, proj),
			layer("mlp.up_proj.weight", []int{m.intermediate, m.hidden}, proj),
			layer("mlp.down_proj.weight", []int{m.hidden, m.intermediate}, float32(1/math.Sqrt(float64(m.intermediate)))),
		)
	}
	if !m.tieWordEmbeddings {
		tensors = append(tensors, tensorSpec{"lm_head.weight", []int{m.vocab, m.hidden}, proj})
	}

	// safetensors: u64 little-endian header length, JSON header padded to 8 bytes, raw data.
	var entries []string
	offset := 0
	for _, tensor := range tensors {
		elems := 1
		dims := make([]string, len(tensor.shape))
		for i, d := range tensor.shape {
			elems *= d
			dims[i] = fmt.Sprint(d)
		}
		entries = append(entries, fmt.Sprintf(`"%s":{"dtype":"F32","shape":[%s],"data_offsets":[%d,%d]}`,
			tensor.name, strings.Join(dims, ","), offset, offset+elems*4))
		offset += elems * 4
	}
	header := "{" + strings.Join(entries, ",") + "}"
	for len(header)%8 != 0 {
		header += " "
	}
	file := make([]byte, 8, 8+len(header)+offset)
	binary.LittleEndian.PutUint64(file, uint64(len(header)))
	file = append(file, header...)
	rng := uint64(0x9e3779b97f4a7c15)
	for _, tensor := range tensors {
		elems := 1
		for _, d := range tensor.shape {
			elems *= d
		}
		for i := 0; i < elems; i++ {
			v := float32(1)
			if tensor.scale != 0 {
				rng ^= rng << 13
				rng ^= rng >> 7
				rng ^= rng << 17
				v = tensor.scale * float32(float64(rng>>11)/float64(uint64(1)<<53)*2-1)
			}
			file = binary.LittleEndian.AppendUint32(file, math.Float32bits(v))
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "model.safetensors"), file, 0o644); err != nil {
		t.Fatal(err)
	}

	config, err := json.MarshalIndent(map[string]interface{}{
		"architectures":           []string{"LlamaForCausalLM"},
		"model_type":              "llama",
		"vocab_size":              m.vocab,
		"hidden_size":             m.hidden,
		"intermediate_size":       m.intermediate,
		"num_hidden_layers":       m.layers,
		"num_attention_heads":     m.heads,
		"num_key_value_heads":     m.kvHeads,
		"max_position_embeddings": 128,
		"rms_norm_eps":            1e-5,
		"rope_theta":              10000.0,
		"tie_word_embeddings":     m.tieWordEmbeddings,
		"hidden_act":              "silu",
		"torch_dtype":             "float32",
	}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), config, 0o644); err != nil {
		t.Fatal(err)
	}
}

// arithmeticTokens are sequences modulo the vocabulary, learnable after two tokens.
func arithmeticTokens(batch, seqLen, vocab int) []int32 {
	tokens := make([]int32, 0, batch*seqLen)
	for b := 0; b < batch; b++ {
		step := 1 + b%3
		for t := 0; t < seqLen; t++ {
			tokens = append(tokens, int32((b*7+t*step)%vocab))
		}
	}
	return tokens
}
