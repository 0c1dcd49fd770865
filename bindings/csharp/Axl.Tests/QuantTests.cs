using System;
using System.IO;
using NUnit.Framework;

namespace Axl.Tests
{
    /// <summary>Quantize on load (NF4), weight accounting per format, the model cache and merge-and-export.</summary>
    [TestFixture]
    public class QuantTests
    {
        private const int BatchSize = 2, SeqLen = 8;

        private static Context NewContext()
        {
            return new Context(new ContextOptions { NumThreads = 1 });
        }

        [Test]
        public void QuantConfigSettersCheckTheirArguments()
        {
            using (var quant = new QuantConfig())
            {
                foreach (WeightDtype dtype in Enum.GetValues(typeof(WeightDtype))) quant.SetWeightDtype(dtype);
                var e = Assert.Throws<AxlException>(() => quant.SetWeightDtype((WeightDtype)99));
                Assert.AreEqual(ErrorCode.InvalidArgument, e.Code);
                quant.SetFormat(QuantFormat.Int8Row);
                e = Assert.Throws<AxlException>(() => quant.SetDoubleQuant(true));
                Assert.AreEqual(ErrorCode.InvalidArgument, e.Code);
                quant.AddSkipModule("lm_head");
            }
        }

        [Test]
        public void Nf4ModelCountsCachesAndExports()
        {
            using (var dir = new ScratchDir())
            using (var ctx = NewContext())
            {
                string modelDir = Path.Combine(dir.Path, "model");
                Directory.CreateDirectory(modelDir);
                TinyLlama.Quant.Write(modelDir);
                Model model;
                using (var quant = new QuantConfig())
                {
                    quant.SetFormat(QuantFormat.Nf4);
                    quant.SetBlockSize(64);
                    quant.SetDoubleQuant(true);
                    quant.SetWeightDtype(WeightDtype.F32);
                    model = Model.Load(ctx, modelDir, new ModelOptions { Quant = quant });
                }
                using (model)
                {
                    ulong nf4 = model.WeightBytes(QuantFormat.Nf4);
                    Assert.Greater(nf4, 0UL, "no NF4 weights after an NF4 load");
                    ulong total = 0;
                    foreach (QuantFormat f in Enum.GetValues(typeof(QuantFormat))) total += model.WeightBytes(f);
                    Assert.AreEqual(model.Info.WeightBytes, total);

                    var batch = new Batch(TinyLlama.ArithmeticTokens(BatchSize, SeqLen, TinyLlama.Quant.Vocab), BatchSize, SeqLen);
                    float[] logits = model.Forward(null, batch);

                    string cache = Path.Combine(dir.Path, "model.axlcache");
                    model.SaveCache(cache);
                    Assert.IsTrue(File.Exists(cache));
                    using (var cached = Model.LoadCache(ctx, cache))
                    {
                        Assert.AreEqual(model.Info, cached.Info);
                        Assert.AreEqual(nf4, cached.WeightBytes(QuantFormat.Nf4));
                        CollectionAssert.AreEqual(logits, cached.Forward(null, batch));

                        using (var fp4 = new QuantConfig())
                        {
                            fp4.SetFormat(QuantFormat.Fp4);
                            var e = Assert.Throws<AxlException>(() => Model.LoadCache(ctx, cache, new ModelOptions { Quant = fp4 }));
                            Assert.AreEqual(ErrorCode.InvalidArgument, e.Code);
                        }

                        string export = Path.Combine(dir.Path, "merged");
                        using (var lora = new Lora(cached, new LoraOptions { Rank = 4, Init = LoraInit.RandomB, Seed = 3 }))
                            lora.MergeAndExport(export);
                        string config = Path.Combine(export, "config.json");
                        Assert.IsTrue(File.Exists(config));
                        StringAssert.DoesNotContain("quantization_config", File.ReadAllText(config));
                        Assert.IsNotEmpty(Directory.GetFiles(export, "*.safetensors"));
                        using (var merged = Model.Load(ctx, export))
                        {
                            Assert.AreEqual(TinyLlama.Quant.Vocab, merged.Info.VocabSize);
                            Assert.AreEqual(0UL, merged.WeightBytes(QuantFormat.Nf4));
                        }
                    }
                }
            }
        }
    }
}
