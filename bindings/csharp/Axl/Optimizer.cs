using System;

namespace Axl
{
    /// <summary>Learning-rate schedule after warmup.</summary>
    public enum Schedule
    {
        Constant = 0,
        /// <summary>Linear decay to MinLrRatio*Lr at TotalSteps.</summary>
        Linear = 1,
        /// <summary>Half-cosine decay to MinLrRatio*Lr at TotalSteps.</summary>
        Cosine = 2,
    }

    /// <summary>Tunables that may change between steps.</summary>
    public enum OptimizerParam
    {
        LearningRate = 1,
        WeightDecay = 2,
        MaxGradNorm = 3,
    }

    /// <summary>Options of an AdamW <see cref="Optimizer"/>, initialised to the library's defaults.</summary>
    public sealed class OptimizerOptions
    {
        public OptimizerOptions()
        {
            var raw = new axl_optimizer_options();
            AxlException.Check(Native.axl_optimizer_options_init(ref raw, Native.SizeOf<axl_optimizer_options>()));
            Lr = raw.lr;
            Beta1 = raw.beta1;
            Beta2 = raw.beta2;
            Eps = raw.eps;
            WeightDecay = raw.weight_decay;
            Schedule = (Schedule)raw.schedule;
            WarmupSteps = raw.warmup_steps;
            TotalSteps = raw.total_steps;
            MinLrRatio = raw.min_lr_ratio;
            MaxGradNorm = raw.max_grad_norm;
        }

        /// <summary>Peak learning rate.</summary>
        public double Lr { get; set; }
        public double Beta1 { get; set; }
        public double Beta2 { get; set; }
        public double Eps { get; set; }
        public double WeightDecay { get; set; }
        public Schedule Schedule { get; set; }
        public long WarmupSteps { get; set; }
        /// <summary>Needed by the decaying schedules.</summary>
        public long TotalSteps { get; set; }
        public double MinLrRatio { get; set; }
        /// <summary>Global-norm clipping; 0 disables.</summary>
        public double MaxGradNorm { get; set; }
    }

    /// <summary>AdamW over an adapter's parameters; keeps the adapter alive. Used by one thread at a time.</summary>
    public sealed class Optimizer : IDisposable
    {
        internal readonly OptimizerHandle Handle;

        public Optimizer(Lora lora, OptimizerOptions options = null)
        {
            options = options ?? new OptimizerOptions();
            var raw = new axl_optimizer_options();
            AxlException.Check(Native.axl_optimizer_options_init(ref raw, Native.SizeOf<axl_optimizer_options>()));
            raw.type = 0; // AXL_OPTIMIZER_ADAMW
            raw.lr = options.Lr;
            raw.beta1 = options.Beta1;
            raw.beta2 = options.Beta2;
            raw.eps = options.Eps;
            raw.weight_decay = options.WeightDecay;
            raw.schedule = (int)options.Schedule;
            raw.warmup_steps = options.WarmupSteps;
            raw.total_steps = options.TotalSteps;
            raw.min_lr_ratio = options.MinLrRatio;
            raw.max_grad_norm = options.MaxGradNorm;
            AxlException.Check(Native.axl_optimizer_create(lora.Handle, ref raw, out Handle));
            Handle.ShareLog(lora.Handle.Log);
        }

        public void SetParam(OptimizerParam param, double value)
        {
            AxlException.Check(Native.axl_optimizer_set_param(Handle, (int)param, value));
        }

        public double GetParam(OptimizerParam param)
        {
            double value;
            AxlException.Check(Native.axl_optimizer_get_param(Handle, (int)param, out value));
            return value;
        }

        /// <summary>The learning rate the schedule gives at optimizer step <paramref name="step"/> (0-based).</summary>
        public double LrAt(long step)
        {
            double lr;
            AxlException.Check(Native.axl_optimizer_lr_at(Handle, step, out lr));
            return lr;
        }

        public void Dispose()
        {
            Handle.Dispose();
        }
    }
}
