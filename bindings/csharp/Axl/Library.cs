namespace Axl
{
    /// <summary>The loaded libaxl.</summary>
    public static class Library
    {
        /// <summary>Version as "MAJOR.MINOR.PATCH".</summary>
        public static string Version { get { return Utf8.FromNative(Native.axl_version_string()); } }

        /// <summary>Version as MAJOR*10000 + MINOR*100 + PATCH.</summary>
        public static uint VersionNumber { get { return Native.axl_version(); } }
    }
}
