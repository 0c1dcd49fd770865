using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Runtime.InteropServices;
using NUnit.Framework;

namespace Axl.Tests
{
    /// <summary>Compares the struct mirrors in Native.cs with what the C compiler makes of axl.h, as printed by
    /// bindings/layout/axl_layout.c (built by scripts/test-bindings.sh; path in AXL_LAYOUT_FILE).</summary>
    [TestFixture]
    public class LayoutTests
    {
        private static readonly Type[] Mirrors =
        {
            typeof(axl_progress), typeof(axl_host_allocator), typeof(axl_context_options), typeof(axl_memory_stats),
            typeof(axl_model_options), typeof(axl_model_info), typeof(axl_batch), typeof(axl_lora_options),
            typeof(axl_eval_result), typeof(axl_optimizer_options), typeof(axl_trainer_options), typeof(axl_step_result),
        };

        [Test]
        public void StructsMatchTheCLayout()
        {
            string path = Environment.GetEnvironmentVariable("AXL_LAYOUT_FILE");
            if (string.IsNullOrEmpty(path)) Assert.Ignore("AXL_LAYOUT_FILE is not set (scripts/test-bindings.sh sets it)");
            var layout = new Dictionary<string, Dictionary<string, long>>();
            foreach (string line in File.ReadAllLines(path))
            {
                string[] parts = line.Split(' ');
                if (!layout.ContainsKey(parts[0])) layout[parts[0]] = new Dictionary<string, long>();
                layout[parts[0]][parts[1]] = long.Parse(parts[2]);
            }
            Assert.AreEqual(layout.Count, Mirrors.Length, "the probe knows structs that Native.cs does not mirror");
            foreach (Type mirror in Mirrors)
            {
                Assert.IsTrue(layout.ContainsKey(mirror.Name), mirror.Name + " is not in the C layout");
                Dictionary<string, long> c = layout[mirror.Name];
                Assert.AreEqual(c["sizeof"], Marshal.SizeOf(mirror), "size of " + mirror.Name);
                var fields = mirror.GetFields();
                Assert.AreEqual(c.Count - 1, fields.Length, mirror.Name + ": field count");
                foreach (var field in fields)
                {
                    Assert.IsTrue(c.ContainsKey(field.Name), mirror.Name + "." + field.Name + " is not in the C layout");
                    Assert.AreEqual(c[field.Name], (long)Marshal.OffsetOf(mirror, field.Name), "offset of " + mirror.Name + "." + field.Name);
                }
            }
        }

        [Test]
        public void TheLibraryIsTheVersionTheseBindingsMirror()
        {
            Assert.AreEqual(0u, Library.VersionNumber / 10000, "major version of " + Library.Version);
        }
    }
}
