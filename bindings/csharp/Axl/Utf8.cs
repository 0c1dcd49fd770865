using System;
using System.Runtime.InteropServices;
using System.Text;

namespace Axl
{
    /// <summary>NUL-terminated UTF-8, converted by hand: Mono and older .NET lack a UTF-8 string marshaller.</summary>
    internal static class Utf8
    {
        internal static byte[] ToNative(string text, string paramName)
        {
            if (text == null) throw new ArgumentNullException(paramName);
            if (text.IndexOf('\0') >= 0) throw new ArgumentException("contains a NUL character", paramName);
            byte[] bytes = new byte[Encoding.UTF8.GetByteCount(text) + 1];
            Encoding.UTF8.GetBytes(text, 0, text.Length, bytes, 0);
            return bytes;
        }

        internal static string FromNative(IntPtr text)
        {
            if (text == IntPtr.Zero) return "";
            int length = 0;
            while (Marshal.ReadByte(text, length) != 0) length++;
            byte[] bytes = new byte[length];
            Marshal.Copy(text, bytes, 0, length);
            return Encoding.UTF8.GetString(bytes);
        }
    }
}
