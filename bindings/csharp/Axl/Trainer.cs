using System;
using System.Runtime.InteropServices;

namespace Axl
{
    /// <summary>The values of the C option gradient_checkpointing: what a step keeps of each layer between its
    /// forward and its backward.</summary>
    public enum Checkpointing
    {
        /// <summary>Every activation; no recomputation.</summary>
        None = 0,
        /// <summary>Each layer's input; the layer is recomputed in backward.</summary>
        Layers = 1,
        /// <summary>As Layers, with the inputs in pinned host memory (CUDA backend; as Layers on the CPU).</summary>
        LayersOffload = 2,
    }

    /// <summary>Options of a <see cref="Trainer"/>, initialised to the library's defaults.</summary>
    public sealed class TrainerOptions
    {
        public TrainerOptions()
        {
            var raw = new axl_trainer_options();
            AxlException.Check(Native.axl_trainer_options_init(ref raw, Native.SizeOf<axl_trainer_options>()));
            GradAccumSteps = raw.grad_accum_steps;
            GradientCheckpointing = raw.gradient_checkpointing != 0;
            OffloadActivations = raw.gradient_checkpointing == (int)Checkpointing.LayersOffload;
        }

        /// <summary>Micro-batches per optimizer step.</summary>
        public int GradAccumSteps { get; set; }
        /// <summary>Recompute layer activations in backward.</summary>
        public bool GradientCheckpointing { get; set; }
        /// <summary>With GradientCheckpointing, keep the checkpointed layer inputs in pinned host memory
        /// (<see cref="Checkpointing.LayersOffload"/>; the CUDA backend, plain checkpointing on the CPU).</summary>
        public bool OffloadActivations { get; set; }

        internal int CheckpointingValue =>
            (int)(!GradientCheckpointing ? Checkpointing.None
                  : OffloadActivations ? Checkpointing.LayersOffload : Checkpointing.Layers);
        /// <summary>Called per layer of each step's forward and backward, on the thread calling
        /// <see cref="Trainer.Step"/>. An exception it throws cancels the step (its gradients are discarded) and
        /// is rethrown by Step.</summary>
        public Action<Progress> Progress { get; set; }
    }

    /// <summary>What one <see cref="Trainer.Step"/> did.</summary>
    public struct StepResult
    {
        /// <summary>Mean loss over this micro-batch's target tokens.</summary>
        public double Loss;
        /// <summary>Global gradient norm before clipping (NaN if no update).</summary>
        public double GradNorm;
        /// <summary>Learning rate of the update (NaN if no update).</summary>
        public double Lr;
        public long NumTokens;
        /// <summary>Optimizer steps taken so far, after this call.</summary>
        public long OptimizerStep;
        /// <summary>Whether this call applied an optimizer update.</summary>
        public bool Updated;
    }

    /// <summary>Runs training steps of its optimizer's adapter. Used by one thread at a time; while it lives, the
    /// adapter must not be used on other threads.</summary>
    public sealed class Trainer : IDisposable
    {
        internal readonly TrainerHandle Handle;
        private readonly ProgressRelay relay;

        public Trainer(Optimizer optimizer, TrainerOptions options = null)
        {
            options = options ?? new TrainerOptions();
            var raw = new axl_trainer_options();
            AxlException.Check(Native.axl_trainer_options_init(ref raw, Native.SizeOf<axl_trainer_options>()));
            raw.grad_accum_steps = options.GradAccumSteps;
            raw.gradient_checkpointing = options.CheckpointingValue;
            GCHandle relayHandle = default(GCHandle);
            if (options.Progress != null)
            {
                relay = new ProgressRelay(options.Progress);
                relayHandle = GCHandle.Alloc(relay);
                raw.progress_fn = ProgressRelay.FunctionPointer;
                raw.progress_user_data = GCHandle.ToIntPtr(relayHandle);
            }
            int status = Native.axl_trainer_create(optimizer.Handle, ref raw, out Handle);
            if (status != 0 && relayHandle.IsAllocated) relayHandle.Free();
            AxlException.Check(status);
            // The library calls the relay until the trainer is destroyed: the handle frees it then.
            if (relayHandle.IsAllocated) Handle.HoldCallback(relayHandle);
            Handle.ShareLog(optimizer.Handle.Log);
        }

        /// <summary>Forward and backward of one micro-batch; every GradAccumSteps-th call also applies the optimizer
        /// update. Non-finite loss or gradients fail with <see cref="ErrorCode.Numeric"/> and leave adapter and
        /// optimizer unchanged.</summary>
        public StepResult Step(Batch batch)
        {
            if (batch == null) throw new ArgumentNullException("batch");
            var result = new axl_step_result();
            AxlException.Check(Native.axl_step_result_init(ref result, Native.SizeOf<axl_step_result>()));
            int status = batch.Call((ref axl_batch b) => Native.axl_trainer_step(Handle, ref b, ref result));
            AxlException failure = AxlException.FromStatus(status);
            if (relay != null) relay.RethrowFailure();
            if (failure != null) throw failure;
            return new StepResult
            {
                Loss = result.loss,
                GradNorm = result.grad_norm,
                Lr = result.lr,
                NumTokens = result.num_tokens,
                OptimizerStep = result.optimizer_step,
                Updated = result.updated != 0,
            };
        }

        /// <summary>Zeroes the gradients of micro-batches not yet applied.</summary>
        public void DiscardGradients()
        {
            AxlException.Check(Native.axl_trainer_discard_gradients(Handle));
        }

        public void Dispose()
        {
            Handle.Dispose();
        }
    }
}
