// P/Invoke declarations of include/axl.h and the structs it passes, mirrored field for field.
// Only blittable types cross the boundary (ints, doubles, IntPtr, pointers, SafeHandles), so
// the same declarations marshal identically on Mono and .NET. Strings go in as NUL-terminated
// UTF-8 byte arrays (see Utf8) and come back as IntPtr.
using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

[assembly: InternalsVisibleTo("Axl.Tests")]

namespace Axl
{
    [StructLayout(LayoutKind.Sequential)]
    internal struct axl_progress
    {
        public uint struct_size;
        public int stage;
        public long done;
        public long total;
        public IntPtr what;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct axl_host_allocator
    {
        public uint struct_size;
        public IntPtr user_data;
        public IntPtr allocate;
        public IntPtr deallocate;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct axl_context_options
    {
        public uint struct_size;
        public int backend;
        public int device;
        public IntPtr cuda_stream;
        public int num_threads;
        public int log_level;
        public IntPtr log_fn;
        public IntPtr log_user_data;
        public IntPtr host_allocator;
        public ulong device_memory_budget;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct axl_memory_stats
    {
        public uint struct_size;
        public ulong host_current_bytes;
        public ulong host_peak_bytes;
        public ulong device_current_bytes;
        public ulong device_peak_bytes;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct axl_model_options
    {
        public uint struct_size;
        public IntPtr quant;
        public IntPtr progress_fn;
        public IntPtr progress_user_data;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct axl_model_info
    {
        public uint struct_size;
        public int vocab_size;
        public int hidden_size;
        public int intermediate_size;
        public int num_layers;
        public int num_heads;
        public int num_kv_heads;
        public int head_dim;
        public int max_position_embeddings;
        public long num_parameters;
        public ulong weight_bytes;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct axl_batch
    {
        public uint struct_size;
        public int batch_size;
        public int seq_len;
        public IntPtr tokens;
        public IntPtr labels;
        public IntPtr loss_mask;
        public IntPtr segment_ids;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct axl_lora_options
    {
        public uint struct_size;
        public int rank;
        public double alpha;
        public double dropout;
        public int use_rslora;
        public int use_dora;
        public IntPtr target_modules;
        public ulong seed;
        public int init;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct axl_eval_result
    {
        public uint struct_size;
        public double loss;
        public long num_tokens;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct axl_optimizer_options
    {
        public uint struct_size;
        public int type;
        public double lr;
        public double beta1;
        public double beta2;
        public double eps;
        public double weight_decay;
        public int schedule;
        public long warmup_steps;
        public long total_steps;
        public double min_lr_ratio;
        public double max_grad_norm;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct axl_trainer_options
    {
        public uint struct_size;
        public int grad_accum_steps;
        public int gradient_checkpointing;
        public IntPtr progress_fn;
        public IntPtr progress_user_data;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct axl_step_result
    {
        public uint struct_size;
        public double loss;
        public double grad_norm;
        public double lr;
        public long num_tokens;
        public long optimizer_step;
        public int updated;
    }

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    internal delegate int axl_progress_fn(IntPtr userData, IntPtr progress);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    internal delegate void axl_log_fn(IntPtr userData, int level, IntPtr message);

    internal static class Native
    {
        private const string Lib = "axl";
        private const CallingConvention Cdecl = CallingConvention.Cdecl;

        internal static UIntPtr SizeOf<T>() where T : struct
        {
            return (UIntPtr)Marshal.SizeOf(typeof(T));
        }

        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern uint axl_version();
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern IntPtr axl_version_string();
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern IntPtr axl_status_string(int status);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern IntPtr axl_last_error();
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern int axl_last_error_code();

        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern int axl_context_options_init(ref axl_context_options opts, UIntPtr structSize);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern int axl_context_create(ref axl_context_options opts, out ContextHandle ctx);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern void axl_context_destroy(IntPtr ctx);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern int axl_context_backend(ContextHandle ctx, out int backend);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern int axl_context_memory_stats(ContextHandle ctx, ref axl_memory_stats stats);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern int axl_context_reset_peak_memory(ContextHandle ctx);

        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern int axl_quant_config_create(out QuantConfigHandle config);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern void axl_quant_config_destroy(IntPtr config);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern int axl_quant_config_set_format(QuantConfigHandle config, int format);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern int axl_quant_config_set_block_size(QuantConfigHandle config, int blockSize);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern int axl_quant_config_set_double_quant(QuantConfigHandle config, int enabled);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern int axl_quant_config_add_skip_module(QuantConfigHandle config, byte[] moduleName);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern int axl_quant_config_set_weight_dtype(QuantConfigHandle config, int dtype);

        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern int axl_model_options_init(ref axl_model_options opts, UIntPtr structSize);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern int axl_model_load(ContextHandle ctx, byte[] modelDir, ref axl_model_options opts, out ModelHandle model);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern void axl_model_destroy(IntPtr model);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern int axl_model_get_info(ModelHandle model, ref axl_model_info info);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern IntPtr axl_model_architecture(ModelHandle model);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern int axl_model_weight_bytes(ModelHandle model, int format, out ulong bytes);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern int axl_model_save_cache(ModelHandle model, byte[] path);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern int axl_model_load_cache(ContextHandle ctx, byte[] path, ref axl_model_options opts, out ModelHandle model);

        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern int axl_batch_init(ref axl_batch batch, UIntPtr structSize);

        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern int axl_lora_options_init(ref axl_lora_options opts, UIntPtr structSize);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern int axl_lora_create(ModelHandle model, ref axl_lora_options opts, out LoraHandle lora);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern int axl_lora_load(ModelHandle model, byte[] adapterDir, out LoraHandle lora);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern int axl_lora_save(LoraHandle lora, byte[] adapterDir);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern void axl_lora_destroy(IntPtr lora);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern int axl_lora_num_parameters(LoraHandle lora, out long count);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern int axl_lora_copy_from(LoraHandle dst, LoraHandle src);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern int axl_lora_merge_and_export(LoraHandle lora, byte[] outDir);

        // forward/evaluate take an optional adapter: one overload with a handle, one with NULL.
        [DllImport(Lib, CallingConvention = Cdecl)]
        internal static extern int axl_model_forward(ModelHandle model, LoraHandle lora, ref axl_batch batch, long[] positions,
                                                     long numPositions, float[] logits, UIntPtr logitsLen);
        [DllImport(Lib, CallingConvention = Cdecl)]
        internal static extern int axl_model_forward(ModelHandle model, IntPtr noLora, ref axl_batch batch, long[] positions,
                                                     long numPositions, float[] logits, UIntPtr logitsLen);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern int axl_model_evaluate(ModelHandle model, LoraHandle lora, ref axl_batch batch, ref axl_eval_result result);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern int axl_model_evaluate(ModelHandle model, IntPtr noLora, ref axl_batch batch, ref axl_eval_result result);

        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern int axl_optimizer_options_init(ref axl_optimizer_options opts, UIntPtr structSize);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern int axl_optimizer_create(LoraHandle lora, ref axl_optimizer_options opts, out OptimizerHandle optimizer);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern void axl_optimizer_destroy(IntPtr optimizer);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern int axl_optimizer_set_param(OptimizerHandle optimizer, int param, double value);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern int axl_optimizer_get_param(OptimizerHandle optimizer, int param, out double value);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern int axl_optimizer_lr_at(OptimizerHandle optimizer, long step, out double lr);

        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern int axl_trainer_options_init(ref axl_trainer_options opts, UIntPtr structSize);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern int axl_trainer_create(OptimizerHandle optimizer, ref axl_trainer_options opts, out TrainerHandle trainer);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern void axl_trainer_destroy(IntPtr trainer);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern int axl_trainer_step(TrainerHandle trainer, ref axl_batch batch, ref axl_step_result result);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern int axl_trainer_discard_gradients(TrainerHandle trainer);

        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern int axl_step_result_init(ref axl_step_result result, UIntPtr structSize);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern int axl_eval_result_init(ref axl_eval_result result, UIntPtr structSize);
    }
}
