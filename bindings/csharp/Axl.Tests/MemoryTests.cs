using System;
using System.IO;
using NUnit.Framework;

namespace Axl.Tests
{
    [TestFixture]
    public class MemoryTests
    {
        private static long ResidentBytes()
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            GC.Collect();
            string[] fields = File.ReadAllText("/proc/self/statm").Split(' ');
            return long.Parse(fields[1]) * Environment.SystemPageSize;
        }

        [Test]
        public void AThousandModelHandlesDoNotLeak()
        {
            if (!File.Exists("/proc/self/statm")) Assert.Ignore("needs /proc/self/statm (Linux)");
            using (var dir = new ScratchDir())
            using (var ctx = new Context(new ContextOptions { NumThreads = 1 }))
            {
                TinyLlama.Memory.Write(dir.Path);
                Action cycle = () => { using (Model.Load(ctx, dir.Path)) { } };
                for (int i = 0; i < 50; i++) cycle(); // warm up allocator pools and the JIT
                ulong hostBefore = ctx.MemoryStats.HostCurrentBytes;
                long rssBefore = ResidentBytes();
                for (int i = 0; i < 1000; i++) cycle();
                long rssAfter = ResidentBytes();
                Assert.AreEqual(hostBefore, ctx.MemoryStats.HostCurrentBytes, "the context still holds bytes of disposed models");
                Assert.LessOrEqual(rssAfter, rssBefore + (8 << 20),
                                   string.Format("resident memory grew from {0} to {1} bytes over 1000 cycles", rssBefore, rssAfter));
            }
        }
    }
}
