using System;

namespace Axl
{
    /// <summary>The library's status codes (AXL_ERR_*). New codes may appear; treat unknown values as errors.</summary>
    public enum ErrorCode
    {
        InvalidArgument = 1,
        OutOfMemory = 2,
        Io = 3,
        Format = 4,
        Unsupported = 5,
        NotFound = 6,
        Shape = 7,
        Numeric = 8,
        Cancelled = 9,
        Backend = 10,
        State = 11,
        Internal = 12,
    }

    /// <summary>A failed library call: the status code and the library's message naming the problem.</summary>
    [Serializable]
    public class AxlException : Exception
    {
        public AxlException(ErrorCode code, string message) : base(message)
        {
            Code = code;
        }

        public ErrorCode Code { get; private set; }

        /// <summary>The library's short description of the code ("not found", ...).</summary>
        public string Description { get { return Utf8.FromNative(Native.axl_status_string((int)Code)); } }

        /// <summary>Throws the error of the call that just returned <paramref name="status"/>.</summary>
        internal static void Check(int status)
        {
            AxlException failure = FromStatus(status);
            if (failure != null) throw failure;
        }

        /// <summary>The error of the call that just returned <paramref name="status"/>, or null if it succeeded.
        /// Must run on the calling thread right after that call: the message is the library's thread-local one,
        /// kept until the next call.</summary>
        internal static AxlException FromStatus(int status)
        {
            if (status == 0) return null;
            string message = Utf8.FromNative(Native.axl_last_error());
            if (message.Length == 0) message = Utf8.FromNative(Native.axl_status_string(status));
            return new AxlException((ErrorCode)status, message);
        }
    }
}
