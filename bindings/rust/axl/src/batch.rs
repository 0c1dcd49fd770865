//! Token batches, borrowed for the duration of a call.

use std::ptr;

use axl_sys as sys;

use crate::error::{Error, Result};

/// Label that contributes no loss.
pub const IGNORE_INDEX: i32 = sys::AXL_IGNORE_INDEX;

/// A batch of `batch_size` rows of `seq_len` tokens, row-major. Position t is trained to predict
/// the token at t+1. Every slice is checked to hold `batch_size * seq_len` values, since the
/// library reads that many from each pointer.
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a> {
    batch_size: i32,
    seq_len: i32,
    tokens: &'a [i32],
    labels: Option<&'a [i32]>,
    loss_mask: Option<&'a [i32]>,
    segment_ids: Option<&'a [i32]>,
}

impl<'a> Batch<'a> {
    pub fn new(tokens: &'a [i32], batch_size: usize, seq_len: usize) -> Result<Batch<'a>> {
        let shape_error =
            || Error::invalid_argument(format!("batch shape {batch_size}x{seq_len} is too large"));
        let rows = i32::try_from(batch_size).map_err(|_| shape_error())?;
        let cols = i32::try_from(seq_len).map_err(|_| shape_error())?;
        let batch = Batch {
            batch_size: rows,
            seq_len: cols,
            tokens,
            labels: None,
            loss_mask: None,
            segment_ids: None,
        };
        batch.check_len(tokens, "tokens")?;
        Ok(batch)
    }

    /// Per-position targets ([`IGNORE_INDEX`] where no loss). Not together with a loss mask.
    pub fn with_labels(mut self, labels: &'a [i32]) -> Result<Batch<'a>> {
        self.check_len(labels, "labels")?;
        self.labels = Some(labels);
        Ok(self)
    }

    /// Nonzero where the token is a target. Not together with labels.
    pub fn with_loss_mask(mut self, loss_mask: &'a [i32]) -> Result<Batch<'a>> {
        self.check_len(loss_mask, "loss_mask")?;
        self.loss_mask = Some(loss_mask);
        Ok(self)
    }

    /// Which packed sequence each token belongs to (contiguous runs within a row).
    pub fn with_segment_ids(mut self, segment_ids: &'a [i32]) -> Result<Batch<'a>> {
        self.check_len(segment_ids, "segment_ids")?;
        self.segment_ids = Some(segment_ids);
        Ok(self)
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size as usize
    }

    pub fn seq_len(&self) -> usize {
        self.seq_len as usize
    }

    pub fn num_tokens(&self) -> usize {
        self.tokens.len()
    }

    fn check_len(&self, values: &[i32], name: &str) -> Result<()> {
        let expected = self.batch_size as usize * self.seq_len as usize;
        if values.len() != expected {
            return Err(Error::invalid_argument(format!(
                "{name} holds {} values but the batch is {}x{} = {expected}",
                values.len(),
                self.batch_size,
                self.seq_len
            )));
        }
        Ok(())
    }

    /// The C view; valid while `self`'s slices are borrowed.
    pub(crate) fn raw(&self) -> sys::axl_batch {
        let or_null = |slice: Option<&[i32]>| slice.map_or(ptr::null(), <[i32]>::as_ptr);
        sys::axl_batch {
            struct_size: std::mem::size_of::<sys::axl_batch>() as u32,
            batch_size: self.batch_size,
            seq_len: self.seq_len,
            tokens: self.tokens.as_ptr(),
            labels: or_null(self.labels),
            loss_mask: or_null(self.loss_mask),
            segment_ids: or_null(self.segment_ids),
        }
    }
}
