using System;

namespace Axl
{
    /// <summary>The compute backend of a context.</summary>
    public enum Backend
    {
        /// <summary>CUDA when built with it and a device is present, else CPU.</summary>
        Auto = 0,
        Cpu = 1,
        Cuda = 2,
    }

    /// <summary>Options of a <see cref="Context"/>, initialised to the library's defaults.</summary>
    public sealed class ContextOptions
    {
        public ContextOptions()
        {
            var raw = new axl_context_options();
            AxlException.Check(Native.axl_context_options_init(ref raw, Native.SizeOf<axl_context_options>()));
            Backend = (Backend)raw.backend;
            Device = raw.device;
            NumThreads = raw.num_threads;
            LogLevel = (LogLevel)raw.log_level;
            DeviceMemoryBudget = raw.device_memory_budget;
        }

        public Backend Backend { get; set; }
        /// <summary>CUDA device index.</summary>
        public int Device { get; set; }
        /// <summary>CPU threads; 0 = all cores.</summary>
        public int NumThreads { get; set; }
        /// <summary>Bytes; 0 = no limit.</summary>
        public ulong DeviceMemoryBudget { get; set; }
        /// <summary>Highest level passed to <see cref="Log"/>.</summary>
        public LogLevel LogLevel { get; set; }
        /// <summary>Receives log messages, possibly from several threads at once, for as long as any handle
        /// of the context lives. Must not call into axl; exceptions it throws are dropped.</summary>
        public Action<LogLevel, string> Log { get; set; }
    }

    /// <summary>Host and device memory in use through a context.</summary>
    public struct MemoryStats
    {
        public ulong HostCurrentBytes;
        public ulong HostPeakBytes;
        public ulong DeviceCurrentBytes;
        public ulong DevicePeakBytes;
    }

    /// <summary>Owns the compute backend, threads and logging. Every other handle is made from one and
    /// keeps it alive, so it may be disposed first. Used by one thread at a time.</summary>
    public sealed class Context : IDisposable
    {
        internal readonly ContextHandle Handle;

        public Context() : this(new ContextOptions()) { }

        public Context(ContextOptions options)
        {
            var raw = new axl_context_options();
            AxlException.Check(Native.axl_context_options_init(ref raw, Native.SizeOf<axl_context_options>()));
            raw.backend = (int)options.Backend;
            raw.device = options.Device;
            raw.num_threads = options.NumThreads;
            raw.device_memory_budget = options.DeviceMemoryBudget;
            raw.log_level = (int)options.LogLevel;
            LogSink sink = null;
            if (options.Log != null)
            {
                sink = new LogSink(options.Log);
                raw.log_fn = LogSink.FunctionPointer;
                raw.log_user_data = sink.UserData;
            }
            int status = Native.axl_context_create(ref raw, out Handle);
            if (status != 0 && sink != null) sink.Abandon();
            AxlException.Check(status);
            Handle.ShareLog(sink);
        }

        /// <summary>The backend in use (CPU or CUDA).</summary>
        public Backend Backend
        {
            get
            {
                int backend;
                AxlException.Check(Native.axl_context_backend(Handle, out backend));
                return (Backend)backend;
            }
        }

        public MemoryStats MemoryStats
        {
            get
            {
                var raw = new axl_memory_stats { struct_size = (uint)Native.SizeOf<axl_memory_stats>() };
                AxlException.Check(Native.axl_context_memory_stats(Handle, ref raw));
                return new MemoryStats
                {
                    HostCurrentBytes = raw.host_current_bytes,
                    HostPeakBytes = raw.host_peak_bytes,
                    DeviceCurrentBytes = raw.device_current_bytes,
                    DevicePeakBytes = raw.device_peak_bytes,
                };
            }
        }

        /// <summary>Sets the peak counters to the current values.</summary>
        public void ResetPeakMemory()
        {
            AxlException.Check(Native.axl_context_reset_peak_memory(Handle));
        }

        public void Dispose()
        {
            Handle.Dispose();
        }
    }
}
