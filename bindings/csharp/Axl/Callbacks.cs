// Progress and log callbacks. The library gets a static trampoline (a delegate held in a
// static field, so it is never collected) and, as user_data, a GCHandle to the state object.
// No exception crosses into native code: a progress callback's exception cancels the running
// operation and is rethrown, with its original stack, from the call that ran it.
using System;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using System.Threading;

namespace Axl
{
    /// <summary>Which long operation a progress report is about.</summary>
    public enum Stage
    {
        Load = 1,
        Forward = 2,
        Backward = 3,
    }

    /// <summary>One progress report.</summary>
    public struct Progress
    {
        public Progress(Stage stage, long done, long total, string what) : this()
        {
            Stage = stage;
            Done = done;
            Total = total;
            What = what;
        }

        public Stage Stage { get; private set; }
        public long Done { get; private set; }
        public long Total { get; private set; }
        /// <summary>The unit being worked on (a tensor name...).</summary>
        public string What { get; private set; }
    }

    /// <summary>Severity of a log message.</summary>
    public enum LogLevel
    {
        Error = 0,
        Warn = 1,
        Info = 2,
        Debug = 3,
    }

    /// <summary>Relays progress reports to a delegate and keeps the first exception it throws.</summary>
    internal sealed class ProgressRelay
    {
        private static readonly axl_progress_fn Trampoline = OnProgress;
        internal static readonly IntPtr FunctionPointer = Marshal.GetFunctionPointerForDelegate(Trampoline);

        private readonly Action<Progress> callback;
        private ExceptionDispatchInfo failure;

        internal ProgressRelay(Action<Progress> callback)
        {
            this.callback = callback;
        }

        /// <summary>Rethrows what the callback threw during the last call, if anything.</summary>
        internal void RethrowFailure()
        {
            ExceptionDispatchInfo thrown = failure;
            failure = null;
            if (thrown != null) thrown.Throw();
        }

        private static unsafe int OnProgress(IntPtr userData, IntPtr progress)
        {
            try
            {
                var relay = (ProgressRelay)GCHandle.FromIntPtr(userData).Target;
                if (relay.failure != null) return 1;
                try
                {
                    axl_progress* p = (axl_progress*)progress;
                    relay.callback(new Progress((Stage)p->stage, p->done, p->total, Utf8.FromNative(p->what)));
                    return 0;
                }
                catch (Exception e)
                {
                    relay.failure = ExceptionDispatchInfo.Capture(e);
                    return 1;
                }
            }
            catch
            {
                return 1;
            }
        }
    }

    /// <summary>A context's log delegate, shared by every handle made from the context (the library may log
    /// through the context while any of them lives); its GCHandle is freed with the last one.</summary>
    internal sealed class LogSink
    {
        private static readonly axl_log_fn Trampoline = OnLog;
        internal static readonly IntPtr FunctionPointer = Marshal.GetFunctionPointerForDelegate(Trampoline);

        private readonly Action<LogLevel, string> callback;
        private GCHandle self;
        private int references;

        internal LogSink(Action<LogLevel, string> callback)
        {
            this.callback = callback;
            self = GCHandle.Alloc(this);
        }

        internal IntPtr UserData { get { return GCHandle.ToIntPtr(self); } }

        internal void AddRef()
        {
            Interlocked.Increment(ref references);
        }

        internal void Release()
        {
            if (Interlocked.Decrement(ref references) == 0) self.Free();
        }

        /// <summary>Frees a sink no handle took (the context could not be created).</summary>
        internal void Abandon()
        {
            if (references == 0) self.Free();
        }

        private static void OnLog(IntPtr userData, int level, IntPtr message)
        {
            try
            {
                var sink = (LogSink)GCHandle.FromIntPtr(userData).Target;
                sink.callback((LogLevel)level, Utf8.FromNative(message));
            }
            catch
            {
                // A log sink has nowhere to report its own failure: it may run on any thread.
            }
        }
    }
}
