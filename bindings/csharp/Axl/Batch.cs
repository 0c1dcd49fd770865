using System;

namespace Axl
{
    /// <summary>
    /// <see cref="BatchSize"/> rows of <see cref="SeqLen"/> tokens, row-major. Position t is trained to predict
    /// the token at t+1. Labels (<see cref="IgnoreIndex"/> where no loss), LossMask (nonzero where a token is a
    /// target) and SegmentIds (packed sequences) are optional; Labels and LossMask exclude each other. Every
    /// array must hold BatchSize*SeqLen values (checked here: the library reads that many).
    /// </summary>
    public sealed class Batch
    {
        /// <summary>Label value that contributes no loss.</summary>
        public const int IgnoreIndex = -100;

        public Batch(int[] tokens, int batchSize, int seqLen)
        {
            if (batchSize <= 0 || seqLen <= 0) throw new ArgumentOutOfRangeException("batchSize", "the batch shape must be positive");
            BatchSize = batchSize;
            SeqLen = seqLen;
            Tokens = Checked(tokens, "tokens");
        }

        public int BatchSize { get; private set; }
        public int SeqLen { get; private set; }
        public int[] Tokens { get; private set; }
        public int[] Labels { get; private set; }
        public int[] LossMask { get; private set; }
        public int[] SegmentIds { get; private set; }

        public Batch WithLabels(int[] labels)
        {
            Labels = Checked(labels, "labels");
            return this;
        }

        public Batch WithLossMask(int[] lossMask)
        {
            LossMask = Checked(lossMask, "lossMask");
            return this;
        }

        public Batch WithSegmentIds(int[] segmentIds)
        {
            SegmentIds = Checked(segmentIds, "segmentIds");
            return this;
        }

        private int[] Checked(int[] values, string name)
        {
            if (values == null) throw new ArgumentNullException(name);
            long expected = (long)BatchSize * SeqLen;
            if (values.Length != expected)
                throw new ArgumentException(string.Format("{0} holds {1} values but the batch is {2}x{3} = {4}",
                                                          name, values.Length, BatchSize, SeqLen, expected), name);
            return values;
        }

        internal delegate int NativeCall(ref axl_batch batch);

        /// <summary>Runs <paramref name="call"/> with the batch's arrays pinned, returning its status.</summary>
        internal unsafe int Call(NativeCall call)
        {
            fixed (int* tokens = Tokens)
            fixed (int* labels = Labels)
            fixed (int* lossMask = LossMask)
            fixed (int* segmentIds = SegmentIds)
            {
                var raw = new axl_batch();
                AxlException.Check(Native.axl_batch_init(ref raw, Native.SizeOf<axl_batch>()));
                raw.batch_size = BatchSize;
                raw.seq_len = SeqLen;
                raw.tokens = (IntPtr)tokens;
                raw.labels = (IntPtr)labels;
                raw.loss_mask = (IntPtr)lossMask;
                raw.segment_ids = (IntPtr)segmentIds;
                return call(ref raw);
            }
        }
    }
}
