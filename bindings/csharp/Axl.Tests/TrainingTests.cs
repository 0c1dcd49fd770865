using System;
using System.Collections.Generic;
using System.IO;
using System.Threading;
using NUnit.Framework;

namespace Axl.Tests
{
    [TestFixture]
    public class TrainingTests
    {
        private const int BatchSize = 2, SeqLen = 16;

        private static Context NewContext(Action<LogLevel, string> log = null)
        {
            var options = new ContextOptions { NumThreads = 1 };
            if (log != null)
            {
                options.Log = log;
                options.LogLevel = LogLevel.Info;
            }
            return new Context(options);
        }

        private static Batch NewBatch()
        {
            return new Batch(TinyLlama.ArithmeticTokens(BatchSize, SeqLen, TinyLlama.Train.Vocab), BatchSize, SeqLen);
        }

        private static Model LoadTrainModel(Context ctx, ScratchDir dir)
        {
            TinyLlama.Train.Write(dir.Path);
            return Model.Load(ctx, dir.Path);
        }

        [Test]
        public void TrainsSavesAndReloadsTheSameAdapter()
        {
            using (var dir = new ScratchDir())
            using (var ctx = NewContext())
            {
                TinyLlama.Train.Write(dir.Path);
                int tensorsLoaded = 0;
                var modelOptions = new ModelOptions
                {
                    Progress = p =>
                    {
                        Assert.AreEqual(Stage.Load, p.Stage);
                        tensorsLoaded++;
                    },
                };
                using (var model = Model.Load(ctx, dir.Path, modelOptions))
                {
                    Assert.Greater(tensorsLoaded, 0, "the load progress callback was never called");
                    Assert.AreEqual("llama", model.Architecture);
                    Assert.AreEqual(TinyLlama.Train.Vocab, model.Info.VocabSize);
                    Assert.AreEqual(TinyLlama.Train.Layers, model.Info.NumLayers);

                    Batch batch = NewBatch();
                    float[] baseLogits = model.Forward(null, batch);
                    Assert.AreEqual(BatchSize * SeqLen * TinyLlama.Train.Vocab, baseLogits.Length);

                    using (var lora = new Lora(model, new LoraOptions { Rank = 4, Alpha = 8, Seed = 7 }))
                    {
                        Assert.Greater(lora.NumParameters, 0);
                        int reports = 0;
                        using (var optimizer = new Optimizer(lora, new OptimizerOptions { Lr = 1e-2 }))
                        using (var trainer = new Trainer(optimizer, new TrainerOptions
                        {
                            Progress = p =>
                            {
                                Assert.IsTrue(p.Stage == Stage.Forward || p.Stage == Stage.Backward);
                                reports++;
                            },
                        }))
                        {
                            Assert.AreEqual(1e-2, optimizer.GetParam(OptimizerParam.LearningRate));
                            StepResult first = trainer.Step(batch), last = first;
                            for (int i = 0; i < 4; i++) last = trainer.Step(batch);
                            Assert.Greater(reports, 0, "the training progress callback was never called");
                            Assert.IsFalse(double.IsNaN(first.Loss));
                            Assert.Less(last.Loss, first.Loss);
                            Assert.IsTrue(last.Updated);
                            Assert.AreEqual(5, last.OptimizerStep);
                        }

                        float[] trainedLogits = model.Forward(lora, batch);
                        CollectionAssert.AreNotEqual(baseLogits, trainedLogits, "training did not change the adapter's output");
                        string adapterDir = Path.Combine(dir.Path, "adapter");
                        lora.Save(adapterDir);
                        using (var reloaded = Lora.Load(model, adapterDir))
                        {
                            CollectionAssert.AreEqual(trainedLogits, model.Forward(reloaded, batch), "logits differ after save and reload");
                            EvalResult eval = model.Evaluate(reloaded, batch);
                            Assert.AreEqual(BatchSize * (SeqLen - 1), eval.NumTokens);
                            Assert.IsFalse(double.IsNaN(eval.Loss));
                        }
                    }
                }
            }
        }

        [Test]
        public void ErrorsArriveAsAxlExceptionsWithTheLibraryMessage()
        {
            using (var dir = new ScratchDir())
            using (var ctx = NewContext())
            {
                string missing = Path.Combine(dir.Path, "no-such-model");
                var notFound = Assert.Throws<AxlException>(() => Model.Load(ctx, missing));
                Assert.AreEqual(ErrorCode.NotFound, notFound.Code);
                StringAssert.StartsWith("axl_model_load", notFound.Message);
                StringAssert.Contains("no-such-model", notFound.Message);
                Assert.AreEqual("not found", notFound.Description);

                using (var model = LoadTrainModel(ctx, dir))
                {
                    var badRank = Assert.Throws<AxlException>(() => new Lora(model, new LoraOptions { Rank = 0 }));
                    Assert.AreEqual(ErrorCode.InvalidArgument, badRank.Code);
                    StringAssert.Contains("rank", badRank.Message);

                    var badTarget = Assert.Throws<AxlException>(() => new Lora(model, new LoraOptions { TargetModules = "no_such_proj" }));
                    Assert.AreEqual(ErrorCode.NotFound, badTarget.Code);
                    StringAssert.Contains("no_such_proj", badTarget.Message);

                    Assert.Throws<ArgumentException>(() => new Batch(new[] { 1, 2, 3 }, 2, 2));

                    var lora = new Lora(model);
                    lora.Dispose();
                    Assert.Throws<ObjectDisposedException>(() => { long unused = lora.NumParameters; });
                }
            }
        }

        [Test]
        public void AProgressExceptionCancelsTheStepAndIsRethrown()
        {
            using (var dir = new ScratchDir())
            using (var ctx = NewContext())
            using (var model = LoadTrainModel(ctx, dir))
            using (var lora = new Lora(model))
            using (var optimizer = new Optimizer(lora, new OptimizerOptions { Lr = 1e-2 }))
            {
                Batch batch = NewBatch();
                var positions = new long[] { 0, 5 };
                float[] before = model.Forward(lora, batch, positions);
                var options = new TrainerOptions { Progress = p => { throw new OperationCanceledException("stop from the callback"); } };
                using (var trainer = new Trainer(optimizer, options))
                {
                    var thrown = Assert.Throws<OperationCanceledException>(() => trainer.Step(batch));
                    Assert.AreEqual("stop from the callback", thrown.Message);
                }
                CollectionAssert.AreEqual(before, model.Forward(lora, batch, positions), "a cancelled step changed the adapter");
            }
        }

        [Test]
        public void OffloadTrainsAsCheckpointingOnTheCpu()
        {
            var defaults = new TrainerOptions();
            Assert.IsTrue(defaults.GradientCheckpointing);
            Assert.IsFalse(defaults.OffloadActivations);
            using (var dir = new ScratchDir())
            using (var ctx = NewContext())
            using (var model = LoadTrainModel(ctx, dir))
            {
                Batch batch = NewBatch();
                var losses = new double[2];
                for (int i = 0; i < 2; i++)
                {
                    using (var lora = new Lora(model, new LoraOptions { Seed = 3 }))
                    using (var optimizer = new Optimizer(lora))
                    using (var trainer = new Trainer(optimizer, new TrainerOptions { OffloadActivations = i == 1 }))
                    {
                        trainer.Step(batch);
                        losses[i] = trainer.Step(batch).Loss;
                    }
                }
                Assert.AreEqual(losses[0], losses[1], "offload changed the CPU step");
            }
        }

        [Test]
        public void AModelIsSharedAcrossThreads()
        {
            using (var dir = new ScratchDir())
            using (var ctx = NewContext())
            using (var model = LoadTrainModel(ctx, dir))
            {
                Batch batch = NewBatch();
                Func<float[]> forward = () =>
                {
                    using (var lora = new Lora(model, new LoraOptions { Rank = 2, Seed = 3 }))
                        return model.Forward(lora, batch);
                };
                float[] expected = forward();
                var results = new float[4][];
                var threads = new List<Thread>();
                for (int i = 0; i < results.Length; i++)
                {
                    int slot = i;
                    var thread = new Thread(() => results[slot] = forward());
                    threads.Add(thread);
                    thread.Start();
                }
                foreach (Thread thread in threads) thread.Join();
                foreach (float[] logits in results) CollectionAssert.AreEqual(expected, logits);
            }
        }

        [Test]
        public void LogMessagesArriveWhileAnyHandleLives()
        {
            var lines = new List<string>();
            using (var dir = new ScratchDir())
            {
                Model model;
                using (var ctx = NewContext((level, message) => { lock (lines) lines.Add(message); }))
                    model = LoadTrainModel(ctx, dir);
                // The model keeps the context, and so the log delegate, alive.
                using (model)
                using (new Lora(model)) { }
            }
            lock (lines)
                Assert.IsTrue(lines.Exists(line => line.Contains("loaded llama model")), string.Join("\n", lines.ToArray()));
        }
    }
}
