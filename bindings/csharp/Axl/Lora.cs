using System;

namespace Axl
{
    /// <summary>Initialisation of a new adapter's matrices.</summary>
    public enum LoraInit
    {
        /// <summary>PEFT's default: A kaiming-uniform, B = 0.</summary>
        Default = 0,
        /// <summary>A ~ N(0, 1/r), B = 0.</summary>
        Gaussian = 1,
        /// <summary>As Default but B also random (tests, warm starts).</summary>
        RandomB = 2,
    }

    /// <summary>Options of a new <see cref="Lora"/>, initialised to the library's defaults (rank 8, alpha 8,
    /// all-linear).</summary>
    public sealed class LoraOptions
    {
        public LoraOptions()
        {
            var raw = new axl_lora_options();
            AxlException.Check(Native.axl_lora_options_init(ref raw, Native.SizeOf<axl_lora_options>()));
            Rank = raw.rank;
            Alpha = raw.alpha;
            Dropout = raw.dropout;
            UseRsLora = raw.use_rslora != 0;
            UseDora = raw.use_dora != 0;
            Seed = raw.seed;
            Init = (LoraInit)raw.init;
        }

        public int Rank { get; set; }
        public double Alpha { get; set; }
        public double Dropout { get; set; }
        /// <summary>scaling = alpha/sqrt(r) instead of alpha/r.</summary>
        public bool UseRsLora { get; set; }
        public bool UseDora { get; set; }
        /// <summary>Comma-separated module name suffixes ("q_proj,v_proj") or "all-linear"; null: the default.</summary>
        public string TargetModules { get; set; }
        public ulong Seed { get; set; }
        public LoraInit Init { get; set; }
    }

    /// <summary>A LoRA adapter over a model; it keeps its model alive. Used by one thread at a time; while a
    /// <see cref="Trainer"/> trains it, only that trainer may use it.</summary>
    public sealed class Lora : IDisposable
    {
        internal readonly LoraHandle Handle;

        /// <summary>A freshly initialised adapter.</summary>
        public Lora(Model model, LoraOptions options = null)
        {
            options = options ?? new LoraOptions();
            var raw = new axl_lora_options();
            AxlException.Check(Native.axl_lora_options_init(ref raw, Native.SizeOf<axl_lora_options>()));
            raw.rank = options.Rank;
            raw.alpha = options.Alpha;
            raw.dropout = options.Dropout;
            raw.use_rslora = options.UseRsLora ? 1 : 0;
            raw.use_dora = options.UseDora ? 1 : 0;
            raw.seed = options.Seed;
            raw.init = (int)options.Init;
            byte[] targets = options.TargetModules != null ? Utf8.ToNative(options.TargetModules, "TargetModules") : null;
            unsafe
            {
                fixed (byte* targetsPtr = targets)
                {
                    raw.target_modules = (IntPtr)targetsPtr;
                    AxlException.Check(Native.axl_lora_create(model.Handle, ref raw, out Handle));
                }
            }
            Handle.ShareLog(model.Handle.Log);
        }

        private Lora(LoraHandle handle)
        {
            Handle = handle;
        }

        /// <summary>Loads a PEFT adapter directory (adapter_config.json + adapter_model.safetensors).</summary>
        public static Lora Load(Model model, string adapterDir)
        {
            LoraHandle handle;
            AxlException.Check(Native.axl_lora_load(model.Handle, Utf8.ToNative(adapterDir, "adapterDir"), out handle));
            handle.ShareLog(model.Handle.Log);
            return new Lora(handle);
        }

        /// <summary>Writes the adapter in PEFT's format into <paramref name="adapterDir"/> (created if missing).</summary>
        public void Save(string adapterDir)
        {
            AxlException.Check(Native.axl_lora_save(Handle, Utf8.ToNative(adapterDir, "adapterDir")));
        }

        /// <summary>Number of trainable parameters.</summary>
        public long NumParameters
        {
            get
            {
                long count;
                AxlException.Check(Native.axl_lora_num_parameters(Handle, out count));
                return count;
            }
        }

        /// <summary>Copies <paramref name="source"/>'s values into this adapter (same model, targets and rank):
        /// hot-swaps what a server serves with an adapter just trained.</summary>
        public void CopyFrom(Lora source)
        {
            AxlException.Check(Native.axl_lora_copy_from(Handle, source.Handle));
        }

        /// <summary>Merges the adapter into its base model and writes a full-precision (bf16) Hugging Face model into
        /// <paramref name="outDir"/> (created if missing): config.json and model.safetensors (or shards with an
        /// index). Quantized base weights are dequantized first. No tokenizer files.</summary>
        public void MergeAndExport(string outDir)
        {
            AxlException.Check(Native.axl_lora_merge_and_export(Handle, Utf8.ToNative(outDir, "outDir")));
        }

        public void Dispose()
        {
            Handle.Dispose();
        }
    }
}
