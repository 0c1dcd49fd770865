// One SafeHandle per library handle type. A SafeHandle is released exactly once (by Dispose
// or, if never disposed, by its critical finalizer) and never while a P/Invoke that received
// it is still running. Besides the native pointer, a handle keeps alive what the library may
// still call into: the context's log sink and, for a trainer, its progress callback.
using System;
using System.Runtime.InteropServices;

namespace Axl
{
    internal abstract class AxlHandle : SafeHandle
    {
        private LogSink log;
        private GCHandle callback;

        protected AxlHandle() : base(IntPtr.Zero, true) { }

        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }

        /// <summary>Shares the context's log sink, which must outlive this handle.</summary>
        internal void ShareLog(LogSink sink)
        {
            if (sink == null) return;
            sink.AddRef();
            log = sink;
        }

        /// <summary>Takes ownership of the GCHandle passed to the library as callback user_data.</summary>
        internal void HoldCallback(GCHandle state)
        {
            callback = state;
        }

        internal LogSink Log { get { return log; } }

        protected abstract void Destroy(IntPtr native);

        protected override bool ReleaseHandle()
        {
            Destroy(handle);
            // Only now can the library no longer call the callbacks.
            if (callback.IsAllocated) callback.Free();
            if (log != null) log.Release();
            return true;
        }
    }

    internal sealed class ContextHandle : AxlHandle
    {
        protected override void Destroy(IntPtr native) { Native.axl_context_destroy(native); }
    }

    internal sealed class QuantConfigHandle : AxlHandle
    {
        protected override void Destroy(IntPtr native) { Native.axl_quant_config_destroy(native); }
    }

    internal sealed class ModelHandle : AxlHandle
    {
        protected override void Destroy(IntPtr native) { Native.axl_model_destroy(native); }
    }

    internal sealed class LoraHandle : AxlHandle
    {
        protected override void Destroy(IntPtr native) { Native.axl_lora_destroy(native); }
    }

    internal sealed class OptimizerHandle : AxlHandle
    {
        protected override void Destroy(IntPtr native) { Native.axl_optimizer_destroy(native); }
    }

    internal sealed class TrainerHandle : AxlHandle
    {
        protected override void Destroy(IntPtr native) { Native.axl_trainer_destroy(native); }
    }
}
