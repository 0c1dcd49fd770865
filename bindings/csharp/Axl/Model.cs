using System;
using System.Runtime.InteropServices;

namespace Axl
{
    /// <summary>Options of <see cref="Model.Load"/>.</summary>
    public sealed class ModelOptions
    {
        /// <summary>How to store the base weights; null keeps the checkpoint's dtype.</summary>
        public QuantConfig Quant { get; set; }
        /// <summary>Called once per tensor loaded, on the loading thread. An exception it throws cancels the
        /// load and is rethrown by <see cref="Model.Load"/>.</summary>
        public Action<Progress> Progress { get; set; }
    }

    /// <summary>Dimensions of a loaded model.</summary>
    public struct ModelInfo
    {
        public int VocabSize;
        public int HiddenSize;
        public int IntermediateSize;
        public int NumLayers;
        public int NumHeads;
        public int NumKvHeads;
        public int HeadDim;
        public int MaxPositionEmbeddings;
        /// <summary>Base parameters (logical elements).</summary>
        public long NumParameters;
        /// <summary>Bytes the base weights occupy as stored.</summary>
        public ulong WeightBytes;
    }

    /// <summary>Mean causal-LM loss of a batch.</summary>
    public struct EvalResult
    {
        public double Loss;
        public long NumTokens;
    }

    /// <summary>A frozen base model, read-only after load. <see cref="Forward"/>, <see cref="Evaluate"/> and
    /// creating adapters may run on several threads at once, each with its own adapter (or one nobody is
    /// training).</summary>
    public sealed class Model : IDisposable
    {
        internal readonly ModelHandle Handle;
        private readonly ModelInfo info;

        private Model(ModelHandle handle)
        {
            Handle = handle;
            var raw = new axl_model_info { struct_size = (uint)Native.SizeOf<axl_model_info>() };
            AxlException.Check(Native.axl_model_get_info(Handle, ref raw));
            info = new ModelInfo
            {
                VocabSize = raw.vocab_size,
                HiddenSize = raw.hidden_size,
                IntermediateSize = raw.intermediate_size,
                NumLayers = raw.num_layers,
                NumHeads = raw.num_heads,
                NumKvHeads = raw.num_kv_heads,
                HeadDim = raw.head_dim,
                MaxPositionEmbeddings = raw.max_position_embeddings,
                NumParameters = raw.num_parameters,
                WeightBytes = raw.weight_bytes,
            };
        }

        /// <summary>Loads a Hugging Face model directory (config.json + safetensors).</summary>
        public static Model Load(Context context, string modelDir, ModelOptions options = null)
        {
            return Load(context, Utf8.ToNative(modelDir, "modelDir"), options, false);
        }

        /// <summary>Loads a model from a cache file written by <see cref="SaveCache"/>: the file is memory-mapped and
        /// used where it lies (no checkpoint read, no quantization); every tensor's checksum is verified. A quant
        /// config in <paramref name="options"/> must not contradict the cache's format.</summary>
        public static Model LoadCache(Context context, string path, ModelOptions options = null)
        {
            return Load(context, Utf8.ToNative(path, "path"), options, true);
        }

        private static Model Load(Context context, byte[] dir, ModelOptions options, bool cache)
        {
            var raw = new axl_model_options();
            AxlException.Check(Native.axl_model_options_init(ref raw, Native.SizeOf<axl_model_options>()));
            QuantConfigHandle quant = options != null && options.Quant != null ? options.Quant.Handle : null;
            ProgressRelay relay = options != null && options.Progress != null ? new ProgressRelay(options.Progress) : null;
            GCHandle relayHandle = relay != null ? GCHandle.Alloc(relay) : default(GCHandle);
            bool quantReferenced = false;
            try
            {
                if (quant != null)
                {
                    quant.DangerousAddRef(ref quantReferenced);
                    raw.quant = quant.DangerousGetHandle();
                }
                if (relay != null)
                {
                    raw.progress_fn = ProgressRelay.FunctionPointer;
                    raw.progress_user_data = GCHandle.ToIntPtr(relayHandle);
                }
                ModelHandle handle;
                AxlException failure = AxlException.FromStatus(cache
                    ? Native.axl_model_load_cache(context.Handle, dir, ref raw, out handle)
                    : Native.axl_model_load(context.Handle, dir, ref raw, out handle));
                if (relay != null) relay.RethrowFailure();
                if (failure != null) throw failure;
                handle.ShareLog(context.Handle.Log);
                try
                {
                    return new Model(handle);
                }
                catch
                {
                    handle.Dispose();
                    throw;
                }
            }
            finally
            {
                if (quantReferenced) quant.DangerousRelease();
                if (relayHandle.IsAllocated) relayHandle.Free();
            }
        }

        public ModelInfo Info { get { return info; } }

        /// <summary>Bytes of base weights held in <paramref name="format"/> (<see cref="QuantFormat.None"/> counts every
        /// tensor held in a float dtype). Summed over all formats this is <see cref="ModelInfo.WeightBytes"/>.</summary>
        public ulong WeightBytes(QuantFormat format)
        {
            ulong bytes;
            AxlException.Check(Native.axl_model_weight_bytes(Handle, (int)format, out bytes));
            return bytes;
        }

        /// <summary>Writes the loaded model (config and weights as held, quantized or not) to one cache file at
        /// <paramref name="path"/>, for <see cref="LoadCache"/>. A failure never leaves a partial file.</summary>
        public void SaveCache(string path)
        {
            AxlException.Check(Native.axl_model_save_cache(Handle, Utf8.ToNative(path, "path")));
        }

        /// <summary>The architecture name ("llama", "qwen3", ...).</summary>
        public string Architecture { get { return Utf8.FromNative(Native.axl_model_architecture(Handle)); } }

        /// <summary>The fp32 logits of the selected flat positions b*SeqLen+t (every position when null), row
        /// after row: positions.Length*VocabSize values. A null adapter runs the bare base model.</summary>
        public float[] Forward(Lora lora, Batch batch, long[] positions = null)
        {
            long rows = positions != null ? positions.Length : (long)batch.BatchSize * batch.SeqLen;
            var logits = new float[rows * info.VocabSize];
            ForwardInto(lora, batch, positions, logits);
            return logits;
        }

        /// <summary>As <see cref="Forward"/>, into <paramref name="logits"/> (at least rows*VocabSize values).</summary>
        public void ForwardInto(Lora lora, Batch batch, long[] positions, float[] logits)
        {
            if (batch == null) throw new ArgumentNullException("batch");
            if (logits == null) throw new ArgumentNullException("logits");
            if (positions != null && positions.Length == 0) throw new ArgumentException("positions is empty", "positions");
            long count = positions != null ? positions.Length : 0;
            var length = (UIntPtr)logits.Length;
            AxlException.Check(batch.Call((ref axl_batch b) => lora != null
                ? Native.axl_model_forward(Handle, lora.Handle, ref b, positions, count, logits, length)
                : Native.axl_model_forward(Handle, IntPtr.Zero, ref b, positions, count, logits, length)));
        }

        /// <summary>Mean cross-entropy over the batch's target tokens (dropout off).</summary>
        public EvalResult Evaluate(Lora lora, Batch batch)
        {
            if (batch == null) throw new ArgumentNullException("batch");
            var result = new axl_eval_result();
            AxlException.Check(Native.axl_eval_result_init(ref result, Native.SizeOf<axl_eval_result>()));
            AxlException.Check(batch.Call((ref axl_batch b) => lora != null
                ? Native.axl_model_evaluate(Handle, lora.Handle, ref b, ref result)
                : Native.axl_model_evaluate(Handle, IntPtr.Zero, ref b, ref result)));
            return new EvalResult { Loss = result.loss, NumTokens = result.num_tokens };
        }

        public void Dispose()
        {
            Handle.Dispose();
        }
    }
}
