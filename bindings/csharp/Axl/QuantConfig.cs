using System;

namespace Axl
{
    /// <summary>How the frozen base weights are stored.</summary>
    public enum QuantFormat
    {
        /// <summary>Keep the checkpoint's dtype.</summary>
        None = 0,
        Nf4 = 1,
        Fp4 = 2,
        Int8Row = 3,
        Int4Group = 4,
        Int8Channel = 5,
        Fp8E4M3 = 6,
        Nvfp4 = 7,
        Mxfp4 = 8,
    }

    /// <summary>The dtype weights are rounded through before they are quantized (transformers' dtype=).</summary>
    public enum WeightDtype
    {
        /// <summary>Each tensor's checkpoint dtype (default).</summary>
        Auto = 0,
        F32 = 1,
        Bf16 = 2,
        F16 = 3,
    }

    /// <summary>A quantization configuration, read by <see cref="Model.Load"/>. Used by one thread at a time.</summary>
    public sealed class QuantConfig : IDisposable
    {
        internal readonly QuantConfigHandle Handle;

        public QuantConfig()
        {
            AxlException.Check(Native.axl_quant_config_create(out Handle));
        }

        public void SetFormat(QuantFormat format)
        {
            AxlException.Check(Native.axl_quant_config_set_format(Handle, (int)format));
        }

        /// <summary>Block or group size; 0 selects the format's default.</summary>
        public void SetBlockSize(int blockSize)
        {
            AxlException.Check(Native.axl_quant_config_set_block_size(Handle, blockSize));
        }

        public void SetDoubleQuant(bool enabled)
        {
            AxlException.Check(Native.axl_quant_config_set_double_quant(Handle, enabled ? 1 : 0));
        }

        /// <summary>Keeps modules whose name contains <paramref name="moduleName"/> in full precision.</summary>
        public void AddSkipModule(string moduleName)
        {
            AxlException.Check(Native.axl_quant_config_add_skip_module(Handle, Utf8.ToNative(moduleName, "moduleName")));
        }

        /// <summary>The dtype weights are rounded through before they are quantized, as if the model had been
        /// loaded in it first.</summary>
        public void SetWeightDtype(WeightDtype dtype)
        {
            AxlException.Check(Native.axl_quant_config_set_weight_dtype(Handle, (int)dtype));
        }

        public void Dispose()
        {
            Handle.Dispose();
        }
    }
}
