using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Text;

namespace Axl.Tests
{
    /// <summary>Writes a tiny random Llama checkpoint the way transformers writes one: config.json and
    /// model.safetensors with F32 tensors.</summary>
    internal sealed class TinyLlama
    {
        public int Vocab = 64, Hidden = 32, Intermediate = 64, Layers = 2, Heads = 4, KvHeads = 2;
        public bool TieWordEmbeddings;

        public static readonly TinyLlama Train = new TinyLlama();

        /// <summary>Every linear weight's rows split into whole 64-element blocks (NF4's default block size).</summary>
        public static readonly TinyLlama Quant = new TinyLlama { Hidden = 64, Intermediate = 128 };

        /// <summary>Small enough to load a thousand times quickly, large enough (~350 KB of weights) that a leaked
        /// model shows in resident memory.</summary>
        public static readonly TinyLlama Memory =
            new TinyLlama { Vocab = 256, Hidden = 64, Intermediate = 128, TieWordEmbeddings = true };

        private struct TensorSpec
        {
            public string Name;
            public int[] Shape;
            public float Scale; // 0: all ones (norm weights); else uniform in [-Scale, Scale]

            public TensorSpec(string name, float scale, params int[] shape)
            {
                Name = name;
                Shape = shape;
                Scale = scale;
            }

            public int Elements
            {
                get
                {
                    int n = 1;
                    foreach (int d in Shape) n *= d;
                    return n;
                }
            }
        }

        public void Write(string dir)
        {
            int headDim = Hidden / Heads;
            float proj = (float)(1 / Math.Sqrt(Hidden));
            var tensors = new List<TensorSpec>
            {
                new TensorSpec("model.embed_tokens.weight", 1, Vocab, Hidden),
                new TensorSpec("model.norm.weight", 0, Hidden),
            };
            for (int l = 0; l < Layers; l++)
            {
                string p = "model.layers." + l + ".";
                tensors.Add(new TensorSpec(p + "input_layernorm.weight", 0, Hidden));
                tensors.Add(new TensorSpec(p + "post_attention_layernorm.weight", 0, Hidden));
                tensors.Add(new TensorSpec(p + "self_attn.q_proj.weight", proj, Heads * headDim, Hidden));
                tensors.Add(new TensorSpec(p + "self_attn.k_proj.weight", proj, KvHeads * headDim, Hidden));
                tensors.Add(new TensorSpec(p + "self_attn.v_proj.weight", proj, KvHeads * headDim, Hidden));
                tensors.Add(new TensorSpec(p + "self_attn.o_proj.weight", proj, Hidden, Heads * headDim));
                tensors.Add(new TensorSpec(p + "mlp.gate_proj.weight", proj, Intermediate, Hidden));
                tensors.Add(new TensorSpec(p + "mlp.up_proj.weight", proj, Intermediate, Hidden));
                tensors.Add(new TensorSpec(p + "mlp.down_proj.weight", (float)(1 / Math.Sqrt(Intermediate)), Hidden, Intermediate));
            }
            if (!TieWordEmbeddings) tensors.Add(new TensorSpec("lm_head.weight", proj, Vocab, Hidden));

            // safetensors: u64 little-endian header length, JSON header padded to 8 bytes, raw data.
            var header = new StringBuilder("{");
            long offset = 0;
            for (int i = 0; i < tensors.Count; i++)
            {
                long bytes = tensors[i].Elements * 4L;
                header.AppendFormat(CultureInfo.InvariantCulture,
                                    "{0}\"{1}\":{{\"dtype\":\"F32\",\"shape\":[{2}],\"data_offsets\":[{3},{4}]}}",
                                    i > 0 ? "," : "", tensors[i].Name, string.Join(",", tensors[i].Shape), offset, offset + bytes);
                offset += bytes;
            }
            header.Append('}');
            while (header.Length % 8 != 0) header.Append(' ');
            ulong rng = 0x9e3779b97f4a7c15;
            using (var writer = new BinaryWriter(File.Create(Path.Combine(dir, "model.safetensors"))))
            {
                if (!BitConverter.IsLittleEndian) throw new NotSupportedException("the fixture writes little-endian hosts only");
                writer.Write((ulong)header.Length);
                writer.Write(Encoding.ASCII.GetBytes(header.ToString()));
                foreach (TensorSpec tensor in tensors)
                {
                    for (int e = 0; e < tensor.Elements; e++)
                    {
                        float v = 1;
                        if (tensor.Scale != 0)
                        {
                            rng ^= rng << 13;
                            rng ^= rng >> 7;
                            rng ^= rng << 17;
                            v = tensor.Scale * (float)((rng >> 11) / 9007199254740992.0 * 2 - 1);
                        }
                        writer.Write(v);
                    }
                }
            }

            string config = string.Format(CultureInfo.InvariantCulture,
                "{{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n" +
                "  \"vocab_size\": {0},\n  \"hidden_size\": {1},\n  \"intermediate_size\": {2},\n" +
                "  \"num_hidden_layers\": {3},\n  \"num_attention_heads\": {4},\n  \"num_key_value_heads\": {5},\n" +
                "  \"max_position_embeddings\": 128,\n  \"rms_norm_eps\": 1e-05,\n  \"rope_theta\": 10000.0,\n" +
                "  \"tie_word_embeddings\": {6},\n  \"hidden_act\": \"silu\",\n  \"torch_dtype\": \"float32\"\n}}\n",
                Vocab, Hidden, Intermediate, Layers, Heads, KvHeads, TieWordEmbeddings ? "true" : "false");
            File.WriteAllText(Path.Combine(dir, "config.json"), config);
        }

        /// <summary>Arithmetic sequences modulo the vocabulary: learnable after two tokens.</summary>
        public static int[] ArithmeticTokens(int batch, int seqLen, int vocab)
        {
            var tokens = new int[batch * seqLen];
            for (int b = 0; b < batch; b++)
                for (int t = 0; t < seqLen; t++)
                    tokens[b * seqLen + t] = (b * 7 + t * (1 + b % 3)) % vocab;
            return tokens;
        }
    }

    /// <summary>A directory under the temp dir, deleted on Dispose.</summary>
    internal sealed class ScratchDir : IDisposable
    {
        public ScratchDir()
        {
            Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "axl-cs-" + Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(Path);
        }

        public string Path { get; private set; }

        public void Dispose()
        {
            try { Directory.Delete(Path, true); } catch (IOException) { }
        }
    }
}
